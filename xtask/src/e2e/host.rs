//! The host side of the run's namespace: the run's cgroups (created before, removed after), the
//! sweep of whatever process is left in them or in the namespace, and a before/after snapshot of
//! what the run must not change (interfaces, nftables ruleset, sysctls, mounts, fixed paths).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One folder of the run in every mounted cgroup hierarchy (v1 controllers, `name=systemd` and the
/// unified v2 mount of a hybrid host): the kubelet wants its `cgroupRoot` in each of them.
pub struct RunCgroup {
    dirs: Vec<PathBuf>,
}

impl RunCgroup {
    /// Creates `<hierarchy>/<name>` everywhere; a cpuset folder starts empty, so it gets its
    /// parent's CPUs and memory nodes (else nothing may run in it).
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let cgroup = Self::open(name);
        for dir in &cgroup.dirs {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "creating the run's cgroup {} (cgroups must be writable: run as root)",
                    dir.display()
                )
            })?;
            if dir.parent().is_some_and(|p| p.ends_with("cpuset")) {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let parent =
                        std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cpuset").join(file))?;
                    std::fs::write(dir.join(file), parent.trim())?;
                }
            }
        }
        Ok(cgroup)
    }

    /// The folders of a run's cgroup, created or not.
    pub fn open(name: &str) -> Self {
        let dirs = hierarchies().into_iter().map(|h| h.join(name)).collect();
        Self { dirs }
    }

    /// Moves a process (and so everything it starts later) into the run's cgroup everywhere.
    pub fn join(&self, pid: u32) -> anyhow::Result<()> {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving pid {pid} into {}", dir.display()))?;
        }
        Ok(())
    }

    /// Every pid in the run's cgroups and their children.
    pub fn pids(&self) -> BTreeSet<u32> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            for sub in subdirs_deepest_first(dir) {
                let text = std::fs::read_to_string(sub.join("cgroup.procs")).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids
    }

    /// Removes every folder of the run's cgroups (children first); returns how many.
    pub fn remove(&self) -> anyhow::Result<usize> {
        let mut removed = 0;
        for dir in &self.dirs {
            for sub in subdirs_deepest_first(dir) {
                // A cgroup folder empties itself on rmdir; its files cannot be deleted one by one.
                std::fs::remove_dir(&sub)
                    .with_context(|| format!("removing cgroup {}", sub.display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Mounted cgroup hierarchies under /sys/fs/cgroup (a v2-only host has one: the root itself).
fn hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let point = left.split_whitespace().nth(4)?;
            (fstype.starts_with("cgroup") && point.starts_with(CGROUP_ROOT))
                .then(|| PathBuf::from(point))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `dir` and every folder below it, deepest first (the order rmdir needs); none if it is absent.
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subdirs_deepest_first(&entry.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// The host's own mount and network namespace ids (`mnt:[…]`, `net:[…]`).
pub fn host_namespaces() -> Vec<String> {
    ["mnt", "net"]
        .iter()
        .filter_map(|ns| std::fs::read_link(format!("/proc/1/ns/{ns}")).ok())
        .map(|l| l.display().to_string())
        .collect()
}

/// Kills (SIGKILL, by pid) every process left in the run's cgroups or in its namespaces, until
/// none is left; returns how many there were. The inner run stops what it started itself: this
/// is for what outlived it (container shims, pods' processes after a crash or Ctrl-C).
pub fn sweep(cgroup: &RunCgroup, namespaces: Vec<&str>) -> anyhow::Result<usize> {
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = cgroup.pids();
        left.extend(in_namespaces(&namespaces));
        left.remove(&std::process::id());
        if left.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() > deadline {
            bail!("processes {left:?} survived SIGKILL for 20s in the run's cgroups or namespaces");
        }
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(left.iter().map(u32::to_string))
            .stderr(std::process::Stdio::null())
            .status();
        killed.extend(left);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pids whose mount or network namespace is one of `namespaces`.
fn in_namespaces(namespaces: &[&str]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    if namespaces.is_empty() {
        return out;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for ns in ["mnt", "net"] {
            if let Ok(link) = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
                && namespaces.contains(&link.display().to_string().as_str())
            {
                out.insert(pid);
            }
        }
    }
    out
}

/// Host paths the node's programs write to by default: none may appear, disappear or change.
const FIXED_PATHS: &[&str] = &[
    "/run/netns",
    "/run/containerd",
    "/run/xtables.lock",
    "/var/run/netns",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/cni",
    "/opt/containerd",
];

/// Host sysctls the node's programs want: the kubelet's kernel values, and the per-namespace
/// ones the run sets inside (the host's must stay as they were).
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
];

/// What the host looks like from outside the run's namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    interfaces: Vec<String>,
    ruleset: String,
    sysctls: Vec<(String, String)>,
    mounts: Vec<String>,
    paths: Vec<(String, String)>,
    netns: Vec<String>,
}

impl Snapshot {
    /// Reads it all (the ruleset with `nft list ruleset`, read-only).
    pub fn take(sh: &Shell) -> Self {
        let names = |dir: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            // Mount ids change on every remount; point, root and source identify a mount.
            .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
            .collect();
        Self {
            interfaces: names("/sys/class/net"),
            ruleset: cmd!(sh, "nft list ruleset")
                .quiet()
                .ignore_stderr()
                .read()
                .unwrap_or_default(),
            sysctls: SYSCTLS
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        std::fs::read_to_string(format!("/proc/sys/{k}"))
                            .unwrap_or_else(|_| "absent".into())
                            .trim()
                            .to_string(),
                    )
                })
                .collect(),
            mounts,
            paths: FIXED_PATHS
                .iter()
                .map(|p| (p.to_string(), describe(Path::new(p))))
                .collect(),
            netns: names("/run/netns"),
        }
    }

    /// Ok with a one-line summary when nothing differs, else an error naming every difference.
    pub fn compare(&self, after: &Snapshot) -> anyhow::Result<String> {
        let mut diffs = Vec::new();
        if self.interfaces != after.interfaces {
            diffs.push(format!(
                "interfaces {:?} → {:?}",
                self.interfaces, after.interfaces
            ));
        }
        if self.ruleset != after.ruleset {
            diffs.push("the host's nftables ruleset changed".to_string());
        }
        for (b, a) in self.sysctls.iter().zip(&after.sysctls) {
            if b != a {
                diffs.push(format!("sysctl {} {} → {}", b.0, b.1, a.1));
            }
        }
        let (mb, ma): (BTreeSet<_>, BTreeSet<_>) =
            (self.mounts.iter().collect(), after.mounts.iter().collect());
        for m in ma.difference(&mb) {
            diffs.push(format!("new mount {m}"));
        }
        for m in mb.difference(&ma) {
            diffs.push(format!("mount gone {m}"));
        }
        for (b, a) in self.paths.iter().zip(&after.paths) {
            if b != a {
                diffs.push(format!("{}: {} → {}", b.0, b.1, a.1));
            }
        }
        if self.netns != after.netns {
            diffs.push(format!("/run/netns {:?} → {:?}", self.netns, after.netns));
        }
        if !diffs.is_empty() {
            bail!("the host changed: {}", diffs.join("; "));
        }
        Ok(format!(
            "{} interfaces, nftables ruleset ({} lines), {} sysctls, {} mounts, {} fixed paths, {} /run/netns entries",
            self.interfaces.len(),
            self.ruleset.lines().count(),
            self.sysctls.len(),
            self.mounts.len(),
            self.paths.len(),
            self.netns.len()
        ))
    }
}

/// `absent`, `dir (N entries)` or `file (N bytes)`.
fn describe(path: &Path) -> String {
    match std::fs::symlink_metadata(path) {
        Err(_) => "absent".into(),
        Ok(m) if m.is_dir() => format!(
            "dir ({} entries)",
            std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
        ),
        Ok(m) => format!("file ({} bytes)", m.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_host_compares_equal_and_a_new_path_is_named() {
        let sh = Shell::new().unwrap();
        let before = Snapshot::take(&sh);
        let mut after = Snapshot::take(&sh);
        before.compare(&after).unwrap();
        after.paths[0].1 = "dir (1 entries)".into();
        let err = before.compare(&after).unwrap_err().to_string();
        assert!(err.contains("/run/netns: "), "{err}");
    }

    #[test]
    fn folders_are_listed_deepest_first_for_rmdir() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("run");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let dirs = subdirs_deepest_first(&root);
        assert_eq!(dirs, [root.join("a/b"), root.join("a"), root.clone()]);
        assert!(subdirs_deepest_first(&scratch.path().join("absent")).is_empty());
    }
}
