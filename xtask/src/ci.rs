//! `cargo xtask ci`: the whole gate that `.ci/run` calls, in the order a failure is cheapest to find.

use std::time::Instant;

use anyhow::Context;
use xshell::{Shell, cmd};

/// Run formatting, lints, every test, the tree verification, the second-opinion scanner, the
/// provider's binary and image checks, and the end-to-end run.
#[derive(clap::Args)]
pub struct Ci {
    /// Skip the end-to-end run on a real control plane (it needs the Go module proxy on a cold machine).
    #[arg(long)]
    no_e2e: bool,
}

impl Ci {
    pub fn run(self) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        sh.change_dir(crate::project_root());
        // Snapshots are checked, never written, in CI: a stale `.snap` fails instead of updating.
        let _insta = sh.push_env("INSTA_UPDATE", "no");
        let mut timings: Vec<(&str, std::time::Duration)> = Vec::new();
        let mut tally = Tally::default();
        let mut step = |name: &'static str, f: &mut dyn FnMut() -> anyhow::Result<()>| {
            println!("==> {name}");
            let started = Instant::now();
            f().with_context(|| format!("ci step `{name}` failed"))?;
            timings.push((name, started.elapsed()));
            anyhow::Ok(())
        };
        step("fmt", &mut || {
            Ok(cmd!(sh, "cargo fmt --all -- --check").run()?)
        })?;
        step("clippy", &mut || {
            Ok(cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?)
        })?;
        step("test", &mut || {
            tally = run_counting_tests(&sh)?;
            anyhow::ensure!(tally.ok, "cargo test --workspace failed");
            Ok(())
        })?;
        step("verify", &mut || Ok(cmd!(sh, "cargo xtask verify").run()?))?;
        // The vendored Flux CRD schemas match the controller modules the e2e pins.
        step("crds", &mut || {
            Ok(cmd!(sh, "cargo xtask crds --check").run()?)
        })?;
        step("checkov", &mut || {
            Ok(cmd!(sh, "cargo xtask policy checkov").run()?)
        })?;
        step("dist", &mut || Ok(cmd!(sh, "cargo xtask dist").run()?))?;
        // skopeo, umoci and a real registry over the image; two fresh clones, one digest.
        step("image", &mut || {
            Ok(cmd!(sh, "cargo xtask image --check --reproducible").run()?)
        })?;
        if !self.no_e2e {
            step("e2e", &mut || Ok(cmd!(sh, "cargo xtask e2e").run()?))?;
        }
        println!("==> ci passed");
        for (name, took) in &timings {
            println!("    {name:<8} {:>7.1}s", took.as_secs_f64());
        }
        // The plain closing line CI reads: every test `cargo test` ran in this gate.
        println!("ci: {} passed, {} failed", tally.passed, tally.failed);
        Ok(())
    }
}

/// Tests counted from cargo's `test result:` lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ok: bool,
}

/// Runs `cargo test --workspace`, echoing its output line by line while counting its results.
fn run_counting_tests(sh: &Shell) -> anyhow::Result<Tally> {
    use std::io::BufRead;
    let mut child = std::process::Command::new("cargo")
        .args(["test", "--workspace"])
        .current_dir(sh.current_dir())
        .env("INSTA_UPDATE", "no")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut tally = Tally::default();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo test output")?;
        println!("{line}");
        let (passed, failed) = parse_test_result(&line);
        tally.passed += passed;
        tally.failed += failed;
    }
    tally.ok = child.wait().context("cargo test did not finish")?.success();
    Ok(tally)
}

/// `(passed, failed)` from a libtest summary line such as
/// `test result: ok. 12 passed; 0 failed; 0 ignored; …`; `(0, 0)` for any other line.
fn parse_test_result(line: &str) -> (u64, u64) {
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return (0, 0);
    };
    let count = |word: &str| {
        rest.split(';')
            .filter_map(|part| part.trim().rsplit_once(' '))
            .find(|(_, label)| *label == word)
            .and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    (count("passed"), count("failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summary_lines_are_counted_and_other_lines_are_not() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.27s"
            ),
            (12, 0)
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 46 passed; 1 failed; 0 ignored; 0 measured"),
            (46, 1)
        );
        assert_eq!(parse_test_result("test foo ... ok"), (0, 0));
    }
}
