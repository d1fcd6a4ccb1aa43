//! `cargo xtask image --reproducible`: two fresh `git clone`s of HEAD in two folders of different
//! depth each build the image; the manifest digests must be equal (and equal this checkout's when
//! its inputs are committed).
//!
//! Cost: both clones build with the workspace's own target directory, so the dependencies (the
//! bulk of a cold release build) are compiled once and shared; the workspace crates are cleaned
//! and rebuilt from each clone's path (`cargo clean -p provider` before each build), which is
//! exactly what path independence must survive. Each clone pays one LTO link of the provider.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::{Built, Created, build_in};
use crate::dist::TARGET;

/// Builds the image in two fresh clones of HEAD; returns a summary line, or the difference.
pub fn check(root: &Path, this_checkout: &Built) -> anyhow::Result<String> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let head = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .read()
        .context("git rev-parse HEAD failed")?;
    let target_dir = crate::dist::target_dir(&sh)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch folder for the clones")?;
    let folders = [
        scratch.path().join("a"),
        scratch
            .path()
            .join("second")
            .join("clone-with-a-longer-path"),
    ];
    let mut digests = Vec::new();
    for folder in &folders {
        let started = Instant::now();
        cmd!(sh, "git clone --quiet --no-hardlinks {root} {folder}")
            .run()
            .with_context(|| {
                format!("cannot clone {} into {}", root.display(), folder.display())
            })?;
        let clone = Shell::new()?;
        clone.change_dir(folder);
        cmd!(clone, "git checkout --quiet --detach {head}").run()?;
        let _target = clone.push_env("CARGO_TARGET_DIR", &target_dir);
        // Without this, cargo may find the provider fresh (its sources are older than the last
        // build's output) and reuse a binary compiled from another path.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        cmd!(
            clone,
            "{cargo} clean --quiet --release --target {TARGET} -p provider"
        )
        .run()?;
        let built = build_in(&clone, folder, Created::Epoch, &scratch.path().join("out"))?;
        if built.sources.is_dirty() {
            bail!(
                "the fresh clone in {} is dirty: {:?}",
                folder.display(),
                built.sources.dirty
            );
        }
        eprintln!(
            "image: clone {} built {} in {:.0?}",
            folder.display(),
            built.written.manifest_digest,
            started.elapsed()
        );
        digests.push(built.written.manifest_digest);
    }
    if digests[0] != digests[1] {
        bail!(
            "not reproducible: the clone in {} built {}, the one in {} built {}",
            folders[0].display(),
            digests[0],
            folders[1].display(),
            digests[1]
        );
    }
    let ours = &this_checkout.written.manifest_digest;
    let comparison = if this_checkout.sources.is_dirty() {
        format!("this checkout has uncommitted inputs, so it built {ours}")
    } else if ours == &digests[0] {
        "the same as this checkout".to_owned()
    } else {
        bail!(
            "this checkout's inputs are committed but it built {ours}, the clones {}",
            digests[0]
        );
    };
    Ok(format!(
        "reproducible: two fresh clones of {head:.12} in two folders built {} ({comparison})",
        digests[0]
    ))
}
