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
///
/// The binary does not depend on where things are on the build machine, so `cargo xtask image`
/// gets the same bytes from any checkout (and `dist`, `image` and the bench share one build):
/// - cargo compiles workspace members with paths relative to the workspace root, so the
///   checkout's own path never reaches the binary;
/// - registry crates are compiled from `$CARGO_HOME/registry/src/…`, and generated code from the
///   target directory: both prefixes are remapped (`--remap-path-prefix`) to `/cargo` and
///   `/target`, so panic locations read the same on every machine. Cargo keeps `RUSTFLAGS` out of
///   `-C metadata`, so the different flags of two machines do not change symbol hashes (checked:
///   two builds whose flags differed only in a remapped path gave the same bytes);
/// - the flags replace any `RUSTFLAGS` of the environment or of a cargo config, which would
///   otherwise change the binary behind the image's back; `[profile.release]` and the toolchain
///   of `rust-toolchain.toml` fix the rest. (Cargo's `trim-paths` would do the same and is still
///   unstable in cargo 1.95.)
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
    let target_dir = target_dir(sh)?;
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            eprintln!(
                "note: {var} is ignored by the provider's release build (its flags are fixed for reproducibility)"
            );
        }
    }
    cmd!(
        sh,
        "{cargo} build --release --locked --target {TARGET} -p provider {targets...}"
    )
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        release_rustflags(&cargo_home()?, &target_dir),
    )
    .env_remove("RUSTFLAGS")
    .run()
    .context("the release build of the provider failed (see cargo's output above)")?;
    Ok(target_dir.join(TARGET).join("release"))
}

/// The release build's whole `RUSTFLAGS`, in cargo's encoded form (0x1f between flags, so paths
/// with spaces survive).
fn release_rustflags(cargo_home: &Path, target_dir: &Path) -> String {
    [
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/target", target_dir.display()),
    ]
    .join("\u{1f}")
}

/// Where cargo keeps the registry's sources: `$CARGO_HOME`, else `~/.cargo`, as cargo resolves it.
fn cargo_home() -> anyhow::Result<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(dir) if !dir.is_empty() => Ok(std::path::absolute(PathBuf::from(dir))?),
        _ => Ok(PathBuf::from(
            std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?,
        )
        .join(".cargo")),
    }
}

/// Cargo's target directory as cargo itself resolves it (`CARGO_TARGET_DIR`, config, or default).
pub(crate) fn target_dir(sh: &Shell) -> anyhow::Result<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_flags_remap_the_cargo_home_and_target_directory_and_keep_spaces() {
        let flags = release_rustflags(Path::new("/home/a b/.cargo"), Path::new("/w/target"));
        assert_eq!(
            flags.split('\u{1f}').collect::<Vec<_>>(),
            [
                "--remap-path-prefix=/home/a b/.cargo=/cargo",
                "--remap-path-prefix=/w/target=/target"
            ]
        );
    }
}
