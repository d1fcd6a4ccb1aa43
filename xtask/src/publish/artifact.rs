//! One service's manifests as a Flux OCI artifact, the same to the byte from any clone: the files
//! of its app directory at the artifact's root, in one tar.gz layer of Flux's content media type,
//! with an empty config of Flux's config media type (what `flux push artifact` writes and
//! source-controller extracts). The encoders are the image's ([`crate::image::oci`]): sorted
//! plain-ustar entries, mtime 0, gzip without name or time, canonical JSON.
//!
//! The digest is a function of the files' names and bytes, the git URL and the directory only (no
//! commit, no time): a commit that leaves a service's files alone publishes the same digest, so
//! its tenant's source sees no new revision and downloads nothing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use infra::flux::media_types;
use infra::render::Artifact;
use oci_spec::image::{ImageManifestBuilder, MediaType};

use crate::image::oci::{self, Entry};

/// `org.opencontainers.image.source`: the repository the files come from (as Flux's own artifacts).
const SOURCE: &str = "org.opencontainers.image.source";

/// An artifact assembled in memory.
#[derive(Debug)]
pub struct Built {
    pub artifact: Artifact,
    /// `sha256:…` of the manifest: the revision Flux reports (`<tag>@<digest>`).
    pub manifest_digest: String,
    /// Files in the layer.
    pub files: usize,
    /// `(digest, bytes)` of the config, the layer and the manifest.
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// Builds `artifact` from the files under `root/<artifact.dir>`; `source` is the git URL the
/// manifest names.
pub fn build(root: &Path, artifact: &Artifact, source: &str) -> anyhow::Result<Built> {
    let dir = root.join(&artifact.dir);
    let files = read_files(&dir)?;
    if files.is_empty() {
        bail!(
            "{}: no files to publish for {}:{}; run `cargo xtask gen`",
            dir.display(),
            artifact.repository,
            artifact.tag
        );
    }
    let count = files.len();
    let entries: Vec<Entry> = files
        .into_iter()
        .map(|(path, bytes)| Entry::file(&format!("/{path}"), 0o644, bytes))
        .collect();
    let layer = oci::gzip(&oci::layer_tar(&entries, 0)?)?;
    let config = b"{}".to_vec();
    let (layer_digest, config_digest) = (oci::sha256(&layer), oci::sha256(&config));
    let annotations = BTreeMap::from([
        (SOURCE.to_owned(), source.to_owned()),
        (
            infra::meta::ARTIFACT_DIRECTORY.to_owned(),
            artifact.dir.clone(),
        ),
    ]);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(oci::descriptor(
            MediaType::Other(media_types::CONFIG.to_owned()),
            &config_digest,
            config.len(),
        )?)
        .layers(vec![oci::descriptor(
            MediaType::Other(media_types::CONTENT.to_owned()),
            &layer_digest,
            layer.len(),
        )?])
        .annotations(
            annotations
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .context("assembling an artifact manifest")?;
    let manifest = oci::canonical_json(&manifest)?;
    let manifest_digest = oci::sha256(&manifest);
    Ok(Built {
        artifact: artifact.clone(),
        manifest_digest: manifest_digest.clone(),
        files: count,
        blobs: vec![
            (config_digest, config),
            (layer_digest, layer),
            (manifest_digest, manifest),
        ],
    })
}

/// Every regular file under `dir` as `(path relative to dir, bytes)`, sorted by path. A symbolic
/// link or any other kind of entry is refused (source-controller would skip it, so what Flux
/// applies would silently differ from the directory).
fn read_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        let entries = std::fs::read_dir(&at).with_context(|| {
            if at == dir {
                format!(
                    "cannot read {}: the directory to publish is missing; run `cargo xtask gen`",
                    at.display()
                )
            } else {
                format!("cannot read {}", at.display())
            }
        })?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", at.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(dir)
                    .expect("every entry is below the directory walked")
                    .to_str()
                    .with_context(|| format!("{}: the name is not UTF-8", path.display()))?
                    .to_owned();
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                out.push((relative, bytes));
            } else {
                bail!(
                    "{}: not a regular file or directory (a symbolic link?): Flux would not apply it; the generated tree has none, run `cargo xtask gen`",
                    path.display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn artifact() -> Artifact {
        Artifact {
            service: "shop".into(),
            env: "production".into(),
            dir: "flux/apps/shop/production".into(),
            repository: "127.0.0.1:5000/manifests/shop".into(),
            tag: "production".into(),
        }
    }

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join("flux/apps/shop/production").join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
    }

    fn blob<'a>(built: &'a Built, digest: &str) -> &'a [u8] {
        &built
            .blobs
            .iter()
            .find(|(d, _)| d == digest)
            .expect("the blob")
            .1
    }

    #[test]
    fn the_same_files_give_the_same_digest_and_any_change_a_new_one() {
        let files = [
            ("kustomization.yaml", "resources: [a.yaml]\n"),
            ("a.yaml", "kind: A\n"),
        ];
        let (one, two) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        write(one.path(), &files);
        // Written in the other order, at another time: same names and bytes, same artifact.
        std::thread::sleep(std::time::Duration::from_millis(10));
        write(two.path(), &[files[1], files[0]]);
        let source = "https://example.invalid/repo";
        let first = build(one.path(), &artifact(), source).expect("builds");
        let second = build(two.path(), &artifact(), source).expect("builds");
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(first.blobs, second.blobs);

        write(two.path(), &[("a.yaml", "kind: B\n")]);
        let changed = build(two.path(), &artifact(), source).expect("builds");
        assert_ne!(changed.manifest_digest, first.manifest_digest);
    }

    #[test]
    fn the_layer_holds_the_directorys_files_at_its_root_as_flux_reads_them() {
        let dir = tempfile::tempdir().expect("dir");
        write(
            dir.path(),
            &[
                ("kustomization.yaml", "resources: [deployment.yaml]\n"),
                ("deployment.yaml", "kind: Deployment\n"),
                ("nested/x.yaml", "kind: X\n"),
            ],
        );
        let built = build(dir.path(), &artifact(), "https://example.invalid/repo").expect("builds");
        assert_eq!(built.files, 3);
        let manifest: serde_json::Value =
            serde_json::from_slice(blob(&built, &built.manifest_digest)).expect("JSON");
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.cncf.flux.config.v1+json"
        );
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.cncf.flux.content.v1.tar+gzip"
        );
        assert_eq!(
            manifest["annotations"],
            serde_json::json!({
                "billing-platform/artifact-directory": "flux/apps/shop/production",
                "org.opencontainers.image.source": "https://example.invalid/repo",
            })
        );
        let config = manifest["config"]["digest"].as_str().expect("digest");
        assert_eq!(blob(&built, config), b"{}");
        let layer = manifest["layers"][0]["digest"].as_str().expect("digest");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob(&built, layer))
            .read_to_end(&mut tar)
            .expect("gzip");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64, String)> = archive
            .entries()
            .expect("tar")
            .map(|entry| {
                let mut entry = entry.expect("an entry");
                let header = entry.header().clone();
                let mut text = String::new();
                entry.read_to_string(&mut text).expect("text");
                (
                    entry.path().expect("a path").display().to_string(),
                    header.mode().expect("mode"),
                    header.mtime().expect("mtime"),
                    text,
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                (
                    "deployment.yaml".into(),
                    0o644,
                    0,
                    "kind: Deployment\n".into()
                ),
                (
                    "kustomization.yaml".into(),
                    0o644,
                    0,
                    "resources: [deployment.yaml]\n".into()
                ),
                ("nested/x.yaml".into(), 0o644, 0, "kind: X\n".into()),
            ]
        );
    }

    #[test]
    fn a_missing_directory_or_a_symbolic_link_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let err = build(dir.path(), &artifact(), "x").expect_err("nothing to publish");
        assert!(
            format!("{err:#}")
                .contains("the directory to publish is missing; run `cargo xtask gen`"),
            "{err:#}"
        );
        write(dir.path(), &[("a.yaml", "kind: A\n")]);
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.path().join("flux/apps/shop/production/b.yaml"),
        )
        .expect("symlink");
        let err = build(dir.path(), &artifact(), "x").expect_err("a link");
        assert!(
            err.to_string()
                .contains("b.yaml: not a regular file or directory (a symbolic link?)"),
            "{err}"
        );
    }
}
