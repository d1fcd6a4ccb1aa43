//! containerd for the real node: Debian's package with its own config, root, state, socket and
//! opt folder under the run folder, runc without systemd, the CNI plugins from
//! containernetworking-plugins, and a registry host config that sends `ghcr.io` pulls to the run's
//! loopback registry (so the tree's own image references resolve, digest and all).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use xshell::{Shell, cmd};

use super::procs::{Processes, wait_until};

/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The sandbox (pause) image name containerd is told to use; the run imports it under this name.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// A running containerd and the paths a client needs.
pub struct Containerd {
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
}

impl Containerd {
    /// Writes the config and the registry mirror, starts containerd and waits for its socket.
    /// `registry` is the loopback registry's `host:port` that serves the `ghcr.io` repositories.
    pub fn start(
        sh: &Shell,
        dir: &Path,
        registry: &str,
        procs: &mut Processes,
    ) -> anyhow::Result<Self> {
        let base = dir.join("containerd");
        let cni_conf_dir = dir.join("cni").join("net.d");
        let certs = base.join("certs.d");
        for sub in [&cni_conf_dir, &certs.join("ghcr.io")] {
            std::fs::create_dir_all(sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        std::fs::write(
            certs.join("ghcr.io").join("hosts.toml"),
            hosts_toml(registry),
        )?;
        let socket = base.join("containerd.sock");
        let config = base.join("config.toml");
        std::fs::write(&config, config_toml(&base, &socket, &cni_conf_dir, &certs))?;
        procs.spawn(
            "containerd",
            Path::new("containerd"),
            &["--config".to_string(), config.display().to_string()],
            &[],
        )?;
        let containerd = Self {
            socket,
            cni_conf_dir,
        };
        wait_until("containerd to answer", Duration::from_secs(30), || {
            procs.check_alive()?;
            Ok(containerd.ctr(sh, &["version"]).is_ok())
        })?;
        Ok(containerd)
    }

    /// `ctr --address <socket> -n k8s.io ARGS` (the CRI plugin's namespace), returning stdout.
    pub fn ctr(&self, sh: &Shell, args: &[&str]) -> anyhow::Result<String> {
        let socket = &self.socket;
        cmd!(sh, "ctr --address {socket} -n k8s.io {args...}")
            .quiet()
            .read()
            .with_context(|| format!("ctr {} failed", args.join(" ")))
    }

    /// Imports an OCI-layout tar (the pause image) under `name`.
    pub fn import(&self, sh: &Shell, tar: &Path, name: &str) -> anyhow::Result<()> {
        let tar = tar.display().to_string();
        let base = name.rsplit_once(':').map_or(name, |(base, _)| base);
        self.ctr(
            sh,
            &["images", "import", "--base-name", base, "--digests", &tar],
        )?;
        Ok(())
    }

    /// The host pid of a running container's main process (for what the node sees of it).
    pub fn task_pid(&self, sh: &Shell, container_id: &str) -> anyhow::Result<u32> {
        let list = self.ctr(sh, &["tasks", "ls"])?;
        list.lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == container_id).then(|| words.next()?.parse().ok())?
            })
            .with_context(|| format!("containerd runs no task {container_id}: {list}"))
    }
}

/// containerd 1.6's config (version 2). Everything under `base`; the CRI plugin with runc (no
/// systemd here, so cgroupfs), overlayfs, and the two settings these machines need:
/// `restrict_oom_score_adj` (no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, and sandboxes
/// fail with "can't get final child's PID from pipe") and `netns_mounts_under_state_dir` (else
/// pods' network namespaces are pinned under /run/netns).
fn config_toml(base: &Path, socket: &Path, cni_conf_dir: &Path, certs: &Path) -> String {
    let b = base.display();
    format!(
        r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{b}/containerd.sock.ttrpc"

[debug]
  address = "{b}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        socket = socket.display(),
        conf = cni_conf_dir.display(),
        certs = certs.display(),
    )
}

/// `ghcr.io` resolved and pulled from the loopback registry over plain HTTP (it listens on
/// 127.0.0.1 inside the run's namespace only); the tree's references stay as they are.
fn hosts_toml(registry: &str) -> String {
    format!(
        "server = \"https://ghcr.io\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_run_folder() {
        let text = config_toml(
            Path::new("/r/containerd"),
            Path::new("/r/containerd/containerd.sock"),
            Path::new("/r/cni/net.d"),
            Path::new("/r/containerd/certs.d"),
        );
        let value: toml::Value = toml::from_str(&text).expect("the config is TOML");
        assert_eq!(value["root"].as_str(), Some("/r/containerd/root"));
        let cri = &value["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(cri["netns_mounts_under_state_dir"].as_bool(), Some(true));
        assert_eq!(
            cri["registry"]["config_path"].as_str(),
            Some("/r/containerd/certs.d")
        );
        let runc = &cri["containerd"]["runtimes"]["runc"]["options"];
        assert_eq!(runc["SystemdCgroup"].as_bool(), Some(false));
    }

    #[test]
    fn ghcr_pulls_go_to_the_loopback_registry() {
        let value: toml::Value = toml::from_str(&hosts_toml("127.0.0.1:5000")).unwrap();
        assert_eq!(value["server"].as_str(), Some("https://ghcr.io"));
        let host = &value["host"]["http://127.0.0.1:5000"];
        assert_eq!(host["capabilities"].as_array().map(Vec::len), Some(2));
    }
}
