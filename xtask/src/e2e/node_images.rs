//! The real node's images: the pause image (kubernetes' own `build/pause/linux/pause.c` from the
//! module, compiled `gcc -O2 -static`), assembled by `cargo xtask image`'s OCI writer before the
//! run enters its namespace and imported into containerd with `ctr`. (The provider's image is
//! built and pushed to the loopback registry by `registry::push_provider`.)

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use super::components;
use crate::image::oci::{self, Config, Entry, Image, Layer};

/// The sandbox image's tag, as containerd is told (`containerd::PAUSE_IMAGE`).
const PAUSE_TAG: &str = "3.10";

/// The pause image as an OCI-layout tar, for `ctr images import`.
pub fn pause_tar(dir: &Path) -> PathBuf {
    dir.join("images").join("pause.tar")
}

/// Compiles pause.c from the kubernetes module and writes its image into the run folder (outside
/// the namespace: the module may have to be downloaded).
pub fn prepare(sh: &Shell, root: &Path, dir: &Path) -> anyhow::Result<()> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let source = components::module_dir(sh, root, "kubernetes")?
        .join("build")
        .join("pause")
        .join("linux")
        .join("pause.c");
    let binary = images.join("pause-binary");
    cmd!(sh, "gcc -O2 -static -o {binary} {source}")
        .quiet()
        .run()
        .with_context(|| format!("compiling {} with gcc -static", source.display()))?;
    let bytes = std::fs::read(&binary)?;
    let image = Image {
        layers: vec![Layer::new(
            "gcc -O2 -static build/pause/linux/pause.c (k8s.io/kubernetes)",
            vec![Entry::file("/pause", 0o755, bytes)],
        )],
        config: Config {
            entrypoint: vec!["/pause".into()],
            user: Some("65535:65535".into()),
            ..Config::default()
        },
        created: 0,
        annotations: Default::default(),
        ref_name: PAUSE_TAG.into(),
    };
    let written = oci::write(&image, &images.join("pause"))?;
    std::fs::rename(&written.tar, pause_tar(dir))
        .with_context(|| format!("moving {}", written.tar.display()))?;
    Ok(())
}
