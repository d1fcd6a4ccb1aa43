//! The run's own mount + network namespace: the real node needs iptables, a bridge, per-namespace
//! sysctls and fixed host paths (`/run/containerd`, `/run/xtables.lock`, `/var/log/containers`),
//! so the whole run (control plane, git server, Flux, node) happens inside a namespace it creates
//! and the host's interfaces, firewall rules, sysctls and folders are never touched.
//!
//! The e2e re-executes itself under `unshare --mount --net --propagation private` rather than
//! `nsenter`-ing each process: every process it starts, every `kubectl` call and its own git
//! server thread are then inside without per-call plumbing, and the outer process, which never
//! enters, is left to sweep up (by pid and cgroup) and to prove that the host is as it was.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::host::{self, RunCgroup, Snapshot};

/// The hidden flag that tells the re-executed e2e it runs inside the namespace, and where.
pub const INSIDE_FLAG: &str = "--inside-namespace";

/// Programs the real node runs and the Debian package each comes from.
const PREREQUISITES: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/lib/cni/host-local", "containernetworking-plugins"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("/usr/lib/cni/portmap", "containernetworking-plugins"),
    ("iptables", "iptables"),
    ("ipset", "ipset"),
    ("conntrack", "conntrack"),
    ("nft", "nftables"),
    ("gcc", "gcc"),
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
];

/// Fails with one line naming every missing Debian package and the command that installs them.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for (program, package) in PREREQUISITES {
        if !on_path(program) && !missing.contains(package) {
            missing.push(package);
        }
    }
    if !missing.is_empty() {
        bail!(
            "the e2e's real node needs the Debian packages {}: run `apt-get install -y {}` (.ci/run does)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(program).is_file())
}

/// The pid of the re-executed e2e, for the outer signal handler to forward SIGTERM to.
static INNER: AtomicU32 = AtomicU32::new(0);

/// Runs this e2e again inside a new mount + network namespace (the same arguments plus
/// [`INSIDE_FLAG`] `dir`), waits for it, then kills whatever it left, removes the run's cgroups
/// and compares the host with the snapshot taken before. The inner run's failure is returned
/// after the sweep; a host that changed is a failure too.
pub fn run_inside(sh: &Shell, dir: &Path) -> anyhow::Result<()> {
    let before = Snapshot::take(sh);
    let cgroup = RunCgroup::create(&run_name(dir))?;
    let exe = std::env::current_exe().context("finding the xtask binary to re-execute")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut child = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .arg(&exe)
        .args(&args)
        .arg(INSIDE_FLAG)
        .arg(dir)
        .spawn()
        .context("cannot run unshare (util-linux) to create the run's namespaces")?;
    INNER.store(child.id(), Ordering::SeqCst);
    // Ctrl-C reaches the whole process group (the inner run stops its own processes); SIGTERM to
    // this process is forwarded. Either way this process lives on to sweep.
    let _ = ctrlc::set_handler(|| {
        let pid = INNER.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    });
    let status = child
        .wait()
        .context("waiting for the e2e inside its namespace")?;
    let namespaces = std::fs::read_to_string(dir.join("namespaces")).unwrap_or_default();
    let swept = host::sweep(&cgroup, namespaces.split_whitespace().collect());
    let removed = cgroup.remove();
    let after = Snapshot::take(sh);
    let report = before.compare(&after);
    match (&swept, &removed, &report) {
        (Ok(killed), Ok(dirs), Ok(same)) => println!(
            "   teardown: {killed} leftover processes killed, {dirs} cgroup dirs removed; host unchanged: {same}"
        ),
        _ => {
            for err in [swept.err(), removed.err(), report.err()]
                .into_iter()
                .flatten()
            {
                eprintln!("e2e: teardown: {err:#}");
            }
            bail!("the run left something behind on the host (see above)");
        }
    }
    if !status.success() {
        bail!("the e2e inside its namespace failed ({status})");
    }
    Ok(())
}

/// The name of the run's cgroups: the run folder's name, unique per run.
fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "billing-platform-e2e".into())
}

/// What the inner run set up: the node's address and the cgroup the kubelet puts pods under.
pub struct Inside {
    /// The node's IP: on a veth pair whose two ends both stay inside (the kernel has no `dummy`).
    pub node_ip: String,
    /// The run's cgroup, relative to each hierarchy's root (the kubelet's `cgroupRoot`).
    pub cgroup_root: String,
}

pub const NODE_IP: &str = "172.30.255.1";

/// Sets up the namespace the inner run was started in: records its namespace ids for the outer
/// sweep, joins the run's cgroups, brings loopback up, puts fresh folders over the fixed host
/// paths the node writes to, gives the kubelet the kernel values it insists on (files bound over
/// `/proc/sys` entries, in this mount namespace only), turns on this network namespace's
/// forwarding and bridge filtering, and adds the node's address.
pub fn enter(sh: &Shell, dir: &Path) -> anyhow::Result<Inside> {
    let ids: Vec<String> = ["mnt", "net"]
        .iter()
        .map(|ns| std::fs::read_link(format!("/proc/self/ns/{ns}")))
        .map(|link| link.map(|l| l.display().to_string()))
        .collect::<Result<_, _>>()
        .context("reading /proc/self/ns")?;
    if ids.iter().any(|id| host::host_namespaces().contains(id)) {
        bail!(
            "{INSIDE_FLAG} is for the e2e's own re-execution under unshare: run `cargo xtask e2e`"
        );
    }
    std::fs::write(dir.join("namespaces"), ids.join("\n"))?;
    let cgroup = RunCgroup::open(&run_name(dir));
    cgroup.join(std::process::id())?;

    cmd!(sh, "ip link set lo up").quiet().run()?;
    // Fixed paths the node's programs write to, each covered by a folder of the run: the shim
    // sockets and netns files under /run, iptables' /run/xtables.lock, the kubelet's
    // /var/log/containers links, libcni's /var/lib/cni cache.
    for (path, name) in [
        ("/run", "run"),
        ("/var/log", "var-log"),
        ("/var/lib", "var-lib"),
    ] {
        let source = dir.join("host").join(name);
        std::fs::create_dir_all(&source)?;
        cmd!(sh, "mount --bind {source} {path}").quiet().run()?;
    }
    // The kubelet checks these kernel values (protectKernelDefaults) and would write them if
    // allowed: they are global, not per namespace, so files holding the values it expects are
    // bound over them here, where only this mount namespace sees them.
    let sysctl = dir.join("host").join("sysctl");
    std::fs::create_dir_all(&sysctl)?;
    for (key, value) in KUBELET_SYSCTLS {
        let file = sysctl.join(key.replace('/', "."));
        std::fs::write(&file, format!("{value}\n"))?;
        let target = format!("/proc/sys/{key}");
        cmd!(sh, "mount --bind {file} {target}").quiet().run()?;
    }
    // Per network namespace: routing between the bridge and the node, and iptables for bridged
    // pod-to-pod traffic (without it NetworkPolicies cannot see packets between pods of a node).
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        std::fs::write(format!("/proc/sys/{key}"), value)
            .with_context(|| format!("setting {key} in the run's network namespace"))?;
    }
    let ip = format!("{NODE_IP}/24");
    cmd!(sh, "ip link add e2e-node type veth peer name e2e-node-peer")
        .quiet()
        .run()?;
    cmd!(sh, "ip addr add {ip} dev e2e-node").quiet().run()?;
    cmd!(sh, "ip link set e2e-node up").quiet().run()?;
    cmd!(sh, "ip link set e2e-node-peer up").quiet().run()?;
    // A default route, so Service IPs are routable from the node itself (they exist only as
    // kube-proxy's DNAT rules).
    cmd!(sh, "ip route add default dev e2e-node")
        .quiet()
        .run()?;
    Ok(Inside {
        node_ip: NODE_IP.to_string(),
        cgroup_root: format!("/{}", run_name(dir)),
    })
}

/// The kernel values the kubelet requires (its `setupKernelTunables`), as it expects them.
pub const KUBELET_SYSCTLS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prerequisite_names_a_debian_package() {
        for (program, package) in PREREQUISITES {
            assert!(!program.is_empty() && !package.is_empty());
        }
        assert!(on_path("sh"), "sh is on every PATH");
        assert!(!on_path("/nonexistent/program"));
    }

    #[test]
    fn the_run_cgroup_is_named_after_the_run_folder() {
        assert_eq!(
            run_name(Path::new("/tmp/billing-platform-e2e-42")),
            "billing-platform-e2e-42"
        );
    }
}
