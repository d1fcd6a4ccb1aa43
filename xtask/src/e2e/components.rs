//! The real binaries the end-to-end run needs, built from their Go modules through small wrapper
//! modules under `e2e/<component>/`, and cached by component and version.
//!
//! `go install pkg@version` refuses modules whose go.mod has `replace` directives (kubernetes, etcd
//! and the Flux controllers all do), so each component is built from a wrapper module that requires
//! it and re-states the upstream replaces with versions. The wrapper go.mod files are generated
//! from the upstream go.mod by `cargo xtask e2e --update-modules` (never hand-copied) and committed
//! with their go.sum, so a build is reproducible and verified (see `gomod`). The table of
//! components and versions is [`pinned`].

mod pinned;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

pub use pinned::{COMPONENTS, Component, Stamp};

/// Paths of the built binaries, by binary name.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The cached binary `name` (as listed in [`COMPONENTS`]).
    pub fn path(&self, name: &str) -> PathBuf {
        let component = COMPONENTS
            .iter()
            .find(|c| c.binaries.iter().any(|(bin, _)| *bin == name))
            .expect("binary names passed here come from the COMPONENTS table");
        self.dir
            .join(format!("{}-{}", component.name, component.version))
            .join(name)
    }
}

/// `~/.cache/billing-platform/e2e-bin`: stable, so CI on the same machine reuses it.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("billing-platform").join("e2e-bin"))
}

/// The wrapper module folder of a component.
pub(super) fn wrapper_dir(root: &Path, component: &Component) -> PathBuf {
    root.join("e2e").join(component.name)
}

/// The `-ldflags` for a component: stripped, plus version variables where the program reads them.
pub fn ldflags(component: &Component) -> String {
    let mut flags = String::from("-s -w");
    if component.stamp == Stamp::Kubernetes {
        let version = component.version;
        let mut parts = version.trim_start_matches('v').split('.');
        let major = parts.next().unwrap_or("0");
        let minor = parts.next().unwrap_or("0");
        for package in [
            "k8s.io/component-base/version",
            "k8s.io/client-go/pkg/version",
        ] {
            for (var, value) in [
                ("gitVersion", version),
                ("gitMajor", major),
                ("gitMinor", minor),
                ("gitTreeState", "clean"),
                ("gitCommit", "0000000000000000000000000000000000000000"),
                ("buildDate", "1970-01-01T00:00:00Z"),
            ] {
                flags.push_str(&format!(" -X {package}.{var}={value}"));
            }
        }
    }
    flags
}

/// The binaries, all of which must already be built (the run inside the namespace has no network
/// to build with: the outer run built them).
pub fn cached() -> anyhow::Result<Binaries> {
    let bins = Binaries { dir: cache_dir()? };
    if let Some((_, bin, _)) = missing(&bins).first() {
        bail!(
            "{} is missing: run `cargo xtask e2e --build-only`",
            bins.path(bin).display()
        );
    }
    Ok(bins)
}

/// Every binary of [`COMPONENTS`] not in the cache yet, with its component and main package.
fn missing(bins: &Binaries) -> Vec<(&'static Component, &'static str, &'static str)> {
    COMPONENTS
        .iter()
        .flat_map(|c| {
            c.binaries
                .iter()
                .map(move |(bin, package)| (c, *bin, *package))
        })
        .filter(|(_, bin, _)| !bins.path(bin).is_file())
        .collect()
}

/// Builds every missing binary (background priority) and returns where they are. Each binary is
/// looked up on its own, so a component that gains a binary (kubelet) builds just that one.
pub fn build_all(sh: &Shell, root: &Path) -> anyhow::Result<Binaries> {
    let dir = cache_dir()?;
    let bins = Binaries { dir: dir.clone() };
    let started = Instant::now();
    for component in COMPONENTS {
        check_wrapper(root, component)?;
    }
    let todo = missing(&bins);
    for (component, bin, package) in &todo {
        let t0 = Instant::now();
        eprintln!(
            "e2e: building {bin} ({} {}) …",
            component.module, component.version
        );
        go_build(sh, root, component, package, &bins.path(bin))?;
        eprintln!("e2e: built {bin} in {:.0?}", t0.elapsed());
    }
    if !todo.is_empty() {
        eprintln!(
            "e2e: builds took {:.0?}; binaries in {}",
            started.elapsed(),
            dir.display()
        );
    } else {
        eprintln!("e2e: every binary is cached in {}", dir.display());
    }
    Ok(bins)
}

/// Builds (or finds in the cache) the one binary `name` of [`COMPONENTS`], for a command that
/// needs only it (`cargo xtask image --check` needs the registry, not the control plane).
pub fn build_named(sh: &Shell, root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let component = COMPONENTS
        .iter()
        .find(|c| c.binaries.iter().any(|(bin, _)| *bin == name))
        .with_context(|| format!("no e2e component builds a binary named {name}"))?;
    let package = component
        .binaries
        .iter()
        .find(|(bin, _)| *bin == name)
        .map(|(_, package)| *package)
        .expect("found by this binary name");
    let out = Binaries { dir: cache_dir()? }.path(name);
    if !out.is_file() {
        check_wrapper(root, component)?;
        let t0 = Instant::now();
        eprintln!(
            "e2e: building {name} ({} {}) …",
            component.module, component.version
        );
        go_build(sh, root, component, package, &out)?;
        eprintln!("e2e: built {name} in {:.0?}", t0.elapsed());
    }
    Ok(out)
}

/// Fails with the fixing command when a wrapper go.mod does not pin the version in [`COMPONENTS`].
fn check_wrapper(root: &Path, component: &Component) -> anyhow::Result<()> {
    let go_mod = wrapper_dir(root, component).join("go.mod");
    let text = std::fs::read_to_string(&go_mod).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask e2e --update-modules`",
            go_mod.display()
        )
    })?;
    let pinned = text.lines().any(|line| {
        let line = line.trim().trim_start_matches("require").trim();
        line.split_whitespace()
            .take(2)
            .eq([component.module, component.version])
    });
    if !pinned {
        bail!(
            "{} does not require {} {}: run `cargo xtask e2e --update-modules`",
            go_mod.display(),
            component.module,
            component.version
        );
    }
    Ok(())
}

/// `go build` of one main package inside the wrapper module, at background priority.
fn go_build(
    sh: &Shell,
    root: &Path,
    component: &Component,
    package: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let parent = out.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = out.with_extension("tmp");
    let ldflags = ldflags(component);
    let _dir = sh.push_dir(wrapper_dir(root, component));
    let _env = go_env(sh, component);
    // Two parallel compile jobs at nice 19: the machine's cores are shared with other builds.
    let output = cmd!(
        sh,
        "nice -n 19 go build -mod=readonly -trimpath -ldflags {ldflags} -o {tmp} {package}"
    )
    .env("GOFLAGS", "-p=2 -buildvcs=false")
    .ignore_status()
    .output()
    .context("cannot run `go`: install Go 1.26 or newer and put it on PATH")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(line) = network_failure(&stderr) {
            bail!(
                "cannot build {package}: the Go module proxy is unreachable ({line}); this step needs the network or a warm module cache"
            );
        }
        bail!(
            "go build {package} failed in e2e/{}:\n{stderr}",
            component.name
        );
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

/// The environment every `go` command of a component needs.
pub(super) fn go_env<'a>(sh: &'a Shell, component: &Component) -> Option<xshell::PushEnv<'a>> {
    component
        .no_sumdb
        .map(|prefix| sh.push_env("GONOSUMDB", prefix))
}

/// The first line of Go's output that says the network or the proxy failed, if any.
pub fn network_failure(stderr: &str) -> Option<&str> {
    const SIGNS: &[&str] = &[
        "dial tcp",
        "no such host",
        "connection refused",
        "i/o timeout",
        "TLS handshake timeout",
        "network is unreachable",
        "proxyconnect",
        "403 Forbidden",
        "module lookup disabled by GOPROXY=off",
    ];
    stderr
        .lines()
        .find(|line| SIGNS.iter().any(|sign| line.contains(sign)))
        .map(str::trim)
}

/// The folder of a downloaded module (for its `config/` manifests), downloading it if needed.
pub fn module_dir(sh: &Shell, root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let component = COMPONENTS
        .iter()
        .find(|c| c.name == name)
        .expect("component names passed here come from the COMPONENTS table");
    let _dir = sh.push_dir(wrapper_dir(root, component));
    let module = format!("{}@{}", component.module, component.version);
    let json = cmd!(sh, "go mod download -json {module}")
        .quiet()
        .read()
        .with_context(|| format!("go mod download {module} failed"))?;
    let info: serde_json::Value =
        serde_json::from_str(&json).context("go mod download printed no JSON")?;
    let dir = info["Dir"]
        .as_str()
        .with_context(|| format!("go mod download {module} gave no folder: {json}"))?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str) -> &'static Component {
        COMPONENTS.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn kubernetes_binaries_are_stamped_with_their_version() {
        let flags = ldflags(component("kubernetes"));
        assert!(flags.contains("-X k8s.io/component-base/version.gitVersion=v1.36.3"));
        assert!(flags.contains("-X k8s.io/component-base/version.gitMinor=36"));
        assert!(flags.contains("-X k8s.io/client-go/pkg/version.gitMajor=1"));
        assert_eq!(ldflags(component("etcd")), "-s -w");
    }

    #[test]
    fn a_proxy_refusal_is_recognised_as_a_network_failure() {
        let stderr = "go: downloading x\ngo: example.com/m@v1: Get \"https://proxy/x\": dial tcp: lookup proxy: no such host\n";
        assert!(network_failure(stderr).unwrap().contains("dial tcp"));
        assert_eq!(network_failure("main.go:3: undefined: x"), None);
    }

    #[test]
    fn a_wrapper_pinning_another_version_names_the_fixing_command() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let root = scratch.path().to_owned();
        let kwok = component("kwok");
        std::fs::create_dir_all(wrapper_dir(&root, kwok)).unwrap();
        std::fs::write(
            wrapper_dir(&root, kwok).join("go.mod"),
            "module x\n\nrequire sigs.k8s.io/kwok v0.7.0\n",
        )
        .unwrap();
        let err = check_wrapper(&root, kwok).unwrap_err().to_string();
        assert!(err.contains("cargo xtask e2e --update-modules"), "{err}");
        std::fs::write(
            wrapper_dir(&root, kwok).join("go.mod"),
            format!("module x\n\nrequire sigs.k8s.io/kwok {}\n", kwok.version),
        )
        .unwrap();
        check_wrapper(&root, kwok).unwrap();
    }

    #[test]
    fn the_committed_wrappers_pin_the_versions_of_the_table() {
        let root = crate::project_root();
        for component in COMPONENTS {
            check_wrapper(&root, component).unwrap();
        }
    }

    #[test]
    fn a_cache_without_a_new_binary_of_a_component_is_not_complete() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let bins = Binaries {
            dir: scratch.path().to_owned(),
        };
        // A warm cache from before kubelet was added: the control-plane binaries only.
        for bin in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let path = bins.path(bin);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        let kubernetes: Vec<&str> = missing(&bins)
            .into_iter()
            .filter(|(c, _, _)| c.name == "kubernetes")
            .map(|(_, bin, _)| bin)
            .collect();
        assert_eq!(kubernetes, ["kubelet", "kube-proxy"]);
    }

    #[test]
    fn binaries_are_cached_by_component_and_version() {
        let bins = Binaries {
            dir: PathBuf::from("/c"),
        };
        assert_eq!(
            bins.path("kube-scheduler"),
            PathBuf::from("/c/kubernetes-v1.36.3/kube-scheduler")
        );
    }
}
