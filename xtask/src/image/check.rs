//! `cargo xtask image --check`: the image as tools nobody here wrote see it. Debian's `skopeo`
//! reads the layout and the archive (digest, config), `umoci` unpacks it the way a runtime would
//! (the root file system must hold exactly the expected entries, the binary must run `--help`
//! from it, the runtime config must run as 65532), and a CNCF distribution registry on 127.0.0.1
//! stores it and serves the same manifest back by digest, to our client and to skopeo's.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::oci::{Entry, Kind, Written};
use super::registry::{self, Reference};

/// Debian packages of the tools, installed with apt when missing (as `.ci/run` does).
const TOOLS: &[&str] = &["skopeo", "umoci"];

/// Installs skopeo and umoci with apt if missing (as root), else fails with the command to run.
pub fn ensure_tools(sh: &Shell) -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|tool| {
            cmd!(sh, "which {tool}")
                .quiet()
                .ignore_stdout()
                .run()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = cmd!(sh, "id -u")
        .quiet()
        .read()
        .is_ok_and(|uid| uid.trim() == "0");
    if !is_root {
        bail!(
            "{} not installed: run `sudo apt-get install -y {}`",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    let names = missing.join(" ");
    eprintln!("image: installing {names} with apt-get");
    cmd!(sh, "apt-get update -qq")
        .run()
        .context("apt-get update failed")?;
    cmd!(sh, "apt-get install -y -qq {missing...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("cannot install {names}: run `apt-get install -y {names}`"))?;
    Ok(())
}

/// What skopeo reads from the layout and from the archive; fails unless both are the image.
pub fn skopeo(sh: &Shell, written: &Written, ref_name: &str, user: &str) -> anyhow::Result<String> {
    let layout = format!("oci:{}:{ref_name}", written.dir.display());
    let archive = format!("oci-archive:{}", written.tar.display());
    for source in [&layout, &archive] {
        let inspect: serde_json::Value = serde_json::from_str(
            &cmd!(sh, "skopeo inspect {source}")
                .quiet()
                .read()
                .with_context(|| format!("skopeo inspect {source} failed"))?,
        )
        .context("skopeo inspect printed invalid JSON")?;
        if inspect["Digest"] != written.manifest_digest.as_str() {
            bail!(
                "skopeo inspect {source} reports digest {}, not {}",
                inspect["Digest"],
                written.manifest_digest
            );
        }
        if inspect["Layers"].as_array().map_or(0, Vec::len) != written.layers.len() {
            bail!(
                "skopeo inspect {source} lists {} layers, not {}",
                inspect["Layers"],
                written.layers.len()
            );
        }
    }
    let config: serde_json::Value = serde_json::from_str(
        &cmd!(sh, "skopeo inspect --config {layout}")
            .quiet()
            .read()
            .context("skopeo inspect --config failed")?,
    )
    .context("skopeo inspect --config printed invalid JSON")?;
    if config["config"]["User"] != user {
        bail!(
            "skopeo sees the config's user as {}, not {user}",
            config["config"]["User"]
        );
    }
    Ok(format!(
        "skopeo inspect: digest {} from the layout and the archive, {} layers, user {}",
        written.manifest_digest,
        written.layers.len(),
        config["config"]["User"].as_str().unwrap_or_default()
    ))
}

/// Unpacks with umoci and compares the root file system with `expected`, entry by entry; runs
/// `binary --help` from it; checks the runtime config's user.
pub fn umoci(
    sh: &Shell,
    written: &Written,
    ref_name: &str,
    expected: &[Entry],
    binary: &str,
    uid: u64,
) -> anyhow::Result<String> {
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let bundle = scratch.path().join("bundle");
    let image = format!("{}:{ref_name}", written.dir.display());
    cmd!(sh, "umoci unpack --image {image} {bundle}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("umoci unpack --image {image} failed"))?;
    let rootfs = bundle.join("rootfs");
    let found = list_tree(&rootfs)?;
    let wanted: BTreeSet<String> = expected.iter().map(describe).collect();
    if found != wanted {
        let extra: Vec<_> = found.difference(&wanted).collect();
        let missing: Vec<_> = wanted.difference(&found).collect();
        bail!(
            "the unpacked root file system differs from the image's entries: unexpected {extra:?}, missing {missing:?}"
        );
    }
    let program = rootfs.join(binary.trim_start_matches('/'));
    let help = cmd!(sh, "{program} --help")
        .quiet()
        .read()
        .with_context(|| {
            format!("{binary} --help failed when run from the unpacked root file system")
        })?;
    let first_line = help.lines().next().unwrap_or_default().to_owned();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).context("umoci wrote no config.json")?,
    )
    .context("umoci's config.json is not JSON")?;
    let user = &config["process"]["user"];
    if user["uid"] != uid || user["gid"] != uid {
        bail!("umoci's runtime config runs as {user}, not {uid}:{uid}");
    }
    Ok(format!(
        "umoci unpack: exactly the {} expected entries, `{binary} --help` runs (\"{first_line}\"), runtime user {uid}:{uid}",
        wanted.len()
    ))
}

/// Pushes to a CNCF registry on 127.0.0.1 and pulls the manifest back by digest (our client) and
/// inspects it (skopeo, another client); both must give back exactly the bytes pushed.
pub fn registry_round_trip(
    sh: &Shell,
    written: &Written,
    address: std::net::SocketAddr,
    repository: &str,
    tag: &str,
) -> anyhow::Result<String> {
    let reference: Reference = format!("{address}/{repository}:{tag}").parse()?;
    let started = std::time::Instant::now();
    let pushed = registry::push(&written.dir, &written.manifest_digest, &reference)?;
    let pushed_in = started.elapsed();
    let manifest = super::oci::read_blob(&written.dir, &written.manifest_digest)?;
    let by_digest = registry::pull_manifest(&reference, &pushed)?;
    if by_digest != manifest {
        bail!(
            "{reference}: the manifest pulled back by digest {pushed} differs from the one pushed"
        );
    }
    let by_tag = registry::pull_manifest(&reference, tag)?;
    if by_tag != manifest {
        bail!("{reference}: the manifest pulled back by tag differs from the one pushed");
    }
    let docker = format!("docker://{address}/{repository}@{pushed}");
    let inspect: serde_json::Value = serde_json::from_str(
        &cmd!(sh, "skopeo inspect --tls-verify=false {docker}")
            .quiet()
            .read()
            .with_context(|| format!("skopeo inspect {docker} failed"))?,
    )
    .context("skopeo inspect printed invalid JSON")?;
    if inspect["Digest"] != pushed.as_str() {
        bail!(
            "skopeo pulls {} from the registry, not {pushed}",
            inspect["Digest"]
        );
    }
    Ok(format!(
        "registry round trip: pushed {reference} in {:.0?}, the registry answered {pushed}; pulled back by digest and by tag, byte for byte the same; skopeo agrees",
        pushed_in
    ))
}

/// `path type mode uid:gid` of an expected entry, as [`list_tree`] describes what it finds.
fn describe(entry: &Entry) -> String {
    let kind = match entry.kind {
        Kind::Dir => "dir",
        Kind::File(_) => "file",
        Kind::Symlink(_) => "link",
    };
    let mode = if matches!(entry.kind, Kind::Symlink(_)) {
        0o777
    } else {
        entry.mode
    };
    format!("{} {kind} {mode:o} {}:{}", entry.path, entry.uid, entry.gid)
}

/// Every entry under `rootfs` as `path type mode uid:gid`, the root itself excluded.
fn list_tree(rootfs: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![rootfs.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let kind = if meta.file_type().is_symlink() {
                "link"
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir"
            } else {
                "file"
            };
            let relative = path.strip_prefix(rootfs).expect("walked from rootfs");
            found.insert(format!(
                "/{} {kind} {:o} {}:{}",
                relative.display(),
                meta.permissions().mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
        }
    }
    Ok(found)
}
