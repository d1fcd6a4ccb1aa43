//! `cargo xtask bench gen`: the whole `gen` and `verify` commands, as users run them, on a
//! synthetic spec written as TOML files (`infra::synthetic::sources`: 10 services a team, two
//! environments, call edges, load balancers, exemptions), at each size asked for and, in the same
//! run, a tenth of the smallest so growth is visible.
//!
//! Each command is a child process of this executable (the same build `cargo xtask` runs): wall
//! time, and peak RSS from `wait4`'s resource usage. Baselines from the same run: `cp -r` of the
//! generated `flux/` (what writing that many files costs the file system alone) for `gen`, and
//! `verify --kustomize-all` (the real `kubectl kustomize` on every directory) at the smallest
//! size for `verify`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

#[derive(clap::Args)]
pub struct BenchGen {
    /// Platform sizes in services, comma-separated; a tenth of the smallest is measured too.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    services: Vec<usize>,
    /// Services per team.
    #[arg(long, default_value_t = 10)]
    per_team: usize,
    /// Runs of each command; the fastest is reported (peak RSS of the same run).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Leave out the `verify --kustomize-all` baseline (one kubectl process per directory).
    #[arg(long)]
    no_kubectl_baseline: bool,
    /// Keep the specs and trees here instead of a scratch directory removed at the end.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// One command's cost.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall: Duration,
    /// Peak resident set size in bytes.
    rss: u64,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.2} s {:>5} MB",
            self.wall.as_secs_f64(),
            self.rss / 1_000_000
        )
    }
}

/// Every figure of one size.
struct Size {
    services: usize,
    objects: usize,
    files: usize,
    fresh: Cost,
    current: Cost,
    verify: Cost,
    copy: Cost,
}

impl BenchGen {
    pub fn run(self) -> anyhow::Result<()> {
        let mut sizes = self.services.clone();
        sizes.sort_unstable();
        sizes.dedup();
        anyhow::ensure!(
            sizes.first().is_some_and(|&n| n >= 10),
            "--services: give sizes of at least 10 services (a tenth of the smallest is the baseline)"
        );
        sizes.insert(0, sizes[0] / 10);
        let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
        let work = match &self.keep {
            Some(dir) => dir.clone(),
            None => scratch.path().to_owned(),
        };
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let profile = if cfg!(debug_assertions) {
            "dev profile (as `cargo xtask` runs)"
        } else {
            "release profile"
        };
        println!(
            "bench gen: {profile}; synthetic spec, {} services a team, 2 environments; each command a child process, fastest of {} run(s), peak RSS from wait4",
            self.per_team,
            self.runs.max(1)
        );
        let mut rows = Vec::new();
        for &services in &sizes {
            let row = self.measure(&exe, &work, services)?;
            println!(
                "  measured {services} services: gen {} | again {} | verify {}",
                row.fresh, row.current, row.verify
            );
            rows.push(row);
        }
        let baseline = if self.no_kubectl_baseline {
            None
        } else {
            let small = &rows[0];
            let (spec, out) = dirs(&work, small.services);
            Some(self.best(|| {
                run_child(
                    Command::new(&exe)
                        .arg("verify")
                        .arg("--kustomize-all")
                        .arg("--spec")
                        .arg(&spec)
                        .arg("--root")
                        .arg(&out),
                )
                .map(|(cost, _)| cost)
            })?)
        };
        report(&rows, baseline);
        Ok(())
    }

    /// The fastest of `runs` runs of `once`.
    fn best(&self, mut once: impl FnMut() -> anyhow::Result<Cost>) -> anyhow::Result<Cost> {
        let mut best: Option<Cost> = None;
        for _ in 0..self.runs.max(1) {
            let cost = once()?;
            if best.is_none_or(|b| cost.wall < b.wall) {
                best = Some(cost);
            }
        }
        Ok(best.expect("at least one run"))
    }

    fn measure(&self, exe: &Path, work: &Path, services: usize) -> anyhow::Result<Size> {
        let (spec, out) = dirs(work, services);
        write_spec(&spec, services, services.div_ceil(self.per_team.max(1)))?;
        let gen_cmd = || {
            let mut cmd = Command::new(exe);
            cmd.arg("gen")
                .arg("--spec")
                .arg(&spec)
                .arg("--root")
                .arg(&out);
            cmd
        };
        let mut printed = String::new();
        let fresh = self.best(|| {
            remove(&out)?;
            let (cost, stdout) = run_child(&mut gen_cmd())?;
            printed = stdout;
            Ok(cost)
        })?;
        let (objects, files) = counts(&printed)
            .with_context(|| format!("cannot read the counts of `gen`'s output:\n{printed}"))?;
        let current = self.best(|| run_child(&mut gen_cmd()).map(|(cost, _)| cost))?;
        let verify = self.best(|| {
            run_child(
                Command::new(exe)
                    .arg("verify")
                    .arg("--spec")
                    .arg(&spec)
                    .arg("--root")
                    .arg(&out),
            )
            .map(|(cost, _)| cost)
        })?;
        let copy_to = work.join(format!("copy-{services}"));
        let copy = self.best(|| {
            remove(&copy_to)?;
            run_child(
                Command::new("cp")
                    .arg("-r")
                    .arg(out.join("flux"))
                    .arg(&copy_to),
            )
            .map(|(cost, _)| cost)
        })?;
        remove(&copy_to)?;
        Ok(Size {
            services,
            objects,
            files,
            fresh,
            current,
            verify,
            copy,
        })
    }
}

/// The spec and output directories of one size.
fn dirs(work: &Path, services: usize) -> (PathBuf, PathBuf) {
    (
        work.join(format!("spec-{services}")),
        work.join(format!("tree-{services}")),
    )
}

fn remove(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the synthetic platform's `platform.toml` and `services/*.toml` under `dir`.
pub(crate) fn write_spec(dir: &Path, services: usize, teams: usize) -> anyhow::Result<()> {
    remove(dir)?;
    let (platform, service_files) = infra::synthetic::sources(services, teams.max(1));
    for file in std::iter::once(&platform).chain(&service_files) {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `(objects, files)` from `gen`'s `objects: 3 Deployment, …` and `files: N written, …` lines.
fn counts(stdout: &str) -> Option<(usize, usize)> {
    let line = |prefix: &str| stdout.lines().find_map(|l| l.strip_prefix(prefix));
    let objects = line("objects: ")?
        .split(", ")
        .map(|part| part.split(' ').next()?.parse::<usize>().ok())
        .sum::<Option<usize>>()?;
    let written = line("files: ")?.split(' ').next()?.parse().ok()?;
    Some((objects, written))
}

/// Runs `cmd` to its end: its cost and its stdout; a failure quotes its stderr.
fn run_child(cmd: &mut Command) -> anyhow::Result<(Cost, String)> {
    use std::os::unix::process::ExitStatusExt as _;
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let pid = child.id() as libc::pid_t;
    // Read both pipes while the child runs (a full pipe would stall it), then reap it with
    // wait4 for its own peak RSS (std's wait does not return resource usage).
    let std::process::Child { stdout, stderr, .. } = child;
    let (stdout, stderr) = std::thread::scope(|scope| {
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            scope.spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let out = read(stdout.map(|p| Box::new(p) as _));
        let err = read(stderr.map(|p| Box::new(p) as _));
        (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        )
    });
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(
        reaped == pid,
        "cannot wait for {shown}: {}",
        std::io::Error::last_os_error()
    );
    let status = std::process::ExitStatus::from_raw(status);
    anyhow::ensure!(
        status.success(),
        "{shown} failed ({status}):\n{}",
        stderr.trim()
    );
    // Linux reports ru_maxrss in KiB.
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok((Cost { wall, rss }, stdout))
}

fn report(rows: &[Size], kubectl_verify: Option<Cost>) {
    println!();
    println!(
        "{:>8} {:>8} {:>8} | {:<16} | {:<16} | {:<16} | {:<16}",
        "services", "objects", "files", "gen, fresh", "gen, current", "verify", "cp -r of flux/"
    );
    for row in rows {
        println!(
            "{:>8} {:>8} {:>8} | {} | {} | {} | {}",
            row.services, row.objects, row.files, row.fresh, row.current, row.verify, row.copy
        );
    }
    let secs = |c: Cost| c.wall.as_secs_f64().max(1e-9);
    println!();
    for row in rows {
        println!(
            "{:>6} services: gen {:>8.0} objects/s, {:>8.0} files/s, {:.1}x the cp -r of its files; verify {:>8.0} objects/s",
            row.services,
            row.objects as f64 / secs(row.fresh),
            row.files as f64 / secs(row.fresh),
            secs(row.fresh) / secs(row.copy),
            row.objects as f64 / secs(row.verify),
        );
    }
    let first = &rows[0];
    for row in &rows[1..] {
        let factor = row.services as f64 / first.services as f64;
        println!(
            "growth {}→{} services ({factor:.0}x): gen {:.1}x, verify {:.1}x, gen peak RSS {:.1}x, verify peak RSS {:.1}x",
            first.services,
            row.services,
            secs(row.fresh) / secs(first.fresh),
            secs(row.verify) / secs(first.verify),
            row.fresh.rss as f64 / first.fresh.rss.max(1) as f64,
            row.verify.rss as f64 / first.verify.rss.max(1) as f64,
        );
    }
    if let Some(all) = kubectl_verify {
        println!(
            "baseline at {} services: verify --kustomize-all (kubectl on every directory) {all}; verify is {:.1}x faster",
            first.services,
            secs(all) / secs(first.verify)
        );
    }
    println!(
        "goals: verify < 5 s at 1,000 services and < 60 s at 10,000; gen peak RSS < 300 MB at 10,000"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_are_read_from_gens_output() {
        let out = "objects: 2 Deployment, 10 Namespace\nfiles: 7 written, 0 unchanged, 0 removed\n";
        assert_eq!(counts(out), Some((12, 7)));
        assert_eq!(counts("objects: many\n"), None);
    }

    #[test]
    fn a_child_reports_its_own_peak_rss_and_a_failure_quotes_stderr() {
        // `sh` allocating nothing much stays small; a failing child names itself and its stderr.
        let (cost, out) = run_child(Command::new("sh").args(["-c", "echo hi"])).expect("runs");
        assert_eq!(out, "hi\n");
        assert!(cost.rss > 0 && cost.rss < 100_000_000, "{cost:?}");
        let err = run_child(Command::new("sh").args(["-c", "echo broken >&2; exit 3"]))
            .expect_err("fails");
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
