//! `cargo xtask dist`: builds the fully static (musl) `payment-provider` and proves it is static.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

/// The target the shipped binary is built for: musl links statically with no C toolchain needed.
pub(crate) const TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(clap::Args)]
pub struct Dist {}

impl Dist {
    pub fn run(self) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        sh.change_dir(crate::project_root());
        let binary = build_release(&sh, &["--bin", "payment-provider"])?.join("payment-provider");
        let description = check_static(&sh, &binary)?;
        let size = file_size(&binary)?;
        println!("{}", binary.display());
        println!(
            "size: {size} bytes ({:.2} MiB)",
            size as f64 / (1024.0 * 1024.0)
        );
        println!("file: {description}");
        Ok(())
    }
}

/// Builds `targets` (cargo target selectors such as `--bin x`) of the provider crate in release
/// mode for [`TARGET`], adding the target with rustup first if missing; returns the output directory.
pub(crate) fn build_release(sh: &Shell, targets: &[&str]) -> anyhow::Result<PathBuf> {
    let installed = cmd!(sh, "rustup target list --installed")
        .read()
        .context("cannot list rustup targets: install rustup, or run `rustup target add x86_64-unknown-linux-musl`")?;
    if !installed.lines().any(|line| line.trim() == TARGET) {
        cmd!(sh, "rustup target add {TARGET}")
            .run()
            .with_context(|| {
                format!("cannot add the {TARGET} target: run `rustup target add {TARGET}` by hand")
            })?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    cmd!(
        sh,
        "{cargo} build --release --locked --target {TARGET} -p provider {targets...}"
    )
    .run()
    .context("the release build of the provider failed (see cargo's output above)")?;
    Ok(target_dir(sh)?.join(TARGET).join("release"))
}

/// Cargo's target directory as cargo itself resolves it (`CARGO_TARGET_DIR`, config, or default).
fn target_dir(sh: &Shell) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps").read()?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("cargo metadata printed invalid JSON")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Runs `file` on `binary` and fails unless it reports a statically linked executable.
pub(crate) fn check_static(sh: &Shell, binary: &Path) -> anyhow::Result<String> {
    let description = cmd!(sh, "file --brief {binary}")
        .read()
        .context("cannot run `file`: install it with `apt-get install -y file`")?;
    // `static-pie linked` is what file(1) prints for musl's default static position-independent output.
    if !(description.contains("statically linked") || description.contains("static-pie linked")) {
        bail!(
            "{} is not statically linked: file says {description:?}",
            binary.display()
        );
    }
    Ok(description)
}

pub(crate) fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}
