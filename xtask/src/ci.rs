//! `cargo xtask ci`: the whole gate that `.ci/run` calls, in the order a failure is cheapest to find.

use std::time::Instant;

use anyhow::Context;
use xshell::{Shell, cmd};

/// Run formatting, lints, every test, the tree verification and the second-opinion scanner.
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
        let mut steps: Vec<(&str, std::time::Duration)> = Vec::new();
        let mut step = |name: &'static str, f: &dyn Fn() -> anyhow::Result<()>| {
            println!("==> {name}");
            let started = Instant::now();
            f().with_context(|| format!("ci step `{name}` failed"))?;
            steps.push((name, started.elapsed()));
            anyhow::Ok(())
        };
        step("fmt", &|| Ok(cmd!(sh, "cargo fmt --all -- --check").run()?))?;
        step("clippy", &|| {
            Ok(cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?)
        })?;
        step("test", &|| Ok(cmd!(sh, "cargo test --workspace").run()?))?;
        step("verify", &|| Ok(cmd!(sh, "cargo xtask verify").run()?))?;
        step("checkov", &|| {
            Ok(cmd!(sh, "cargo xtask policy checkov").run()?)
        })?;
        step("dist", &|| Ok(cmd!(sh, "cargo xtask dist").run()?))?;
        if !self.no_e2e {
            step("e2e", &|| Ok(cmd!(sh, "cargo xtask e2e").run()?))?;
        }
        println!("==> ci passed");
        for (name, took) in &steps {
            println!("    {name:<8} {:>7.1}s", took.as_secs_f64());
        }
        Ok(())
    }
}
