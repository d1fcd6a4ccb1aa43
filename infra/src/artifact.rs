//! A generated directory as a Flux OCI artifact, the same to the byte from any clone: its files
//! at the artifact's root in one tar.gz layer of Flux's content media type, an empty config of
//! Flux's config media type (what `flux push artifact` writes and source-controller extracts),
//! and a manifest whose digest the tree pins in the OCIRepository that pulls it (`spec.ref.digest`,
//! in the tenant's `sync.yaml` or the team's file).
//! `cargo xtask gen` computes the digest from the files it renders, `cargo xtask publish` builds
//! the same bytes from the files on disk and pushes them: one format, one owner.
//!
//! The bytes are a function of the directory's name and its files' names and bytes only: tar
//! entries sorted by name in plain ustar headers (mode 0644, owner 0, mtime 0, no user or group
//! names), gzip without file name or time at the fast level of the locked `flate2` (a `cargo
//! update` of flate2 or miniz_oxide may change the compressed bytes and so every pin: the
//! freshness test then asks for `cargo xtask gen`), JSON with sorted keys and no whitespace. No
//! commit, time or repository URL: a commit that leaves a directory alone pins the same digest,
//! so its source sees nothing new and downloads nothing, and moving the repository re-pins
//! nothing.

use std::io::Write;

use serde_json::json;
use sha2::Digest as _;

use crate::Error;
use crate::flux::media_types;
use crate::meta::ARTIFACT_DIRECTORY;

/// The OCI image manifest media type (an artifact is an image manifest with its own media types).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// An artifact assembled in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// `sha256:…` of the manifest: what the OCIRepository pins and Flux reports as its revision.
    pub digest: String,
    /// `(digest, bytes)` of the config, the layer and the manifest, in that order.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Built {
    /// The manifest's bytes.
    pub fn manifest(&self) -> &[u8] {
        &self.blobs[2].1
    }
}

/// Assembles the artifact of the directory `dir` holding `files` (`(name relative to dir,
/// bytes)`, in any order).
pub fn build(dir: &str, files: &[(&str, &[u8])]) -> Result<Built, Error> {
    let fail = |source: std::io::Error| Error::Artifact {
        dir: dir.to_owned(),
        source,
    };
    let mut sorted: Vec<&(&str, &[u8])> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).map_err(fail)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append(&header, *bytes).map_err(fail)?;
    }
    let tar = tar.into_inner().map_err(fail)?;
    let mut gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).map_err(fail)?;
    let layer = gzip.finish().map_err(fail)?;
    let config = b"{}".to_vec();
    let (layer_digest, config_digest) = (sha256(&layer), sha256(&config));
    // serde_json's maps are sorted (the workspace does not enable `preserve_order`): canonical.
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": media_types::CONFIG,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_types::CONTENT,
            "digest": layer_digest,
            "size": layer.len(),
        }],
        "annotations": {
            ARTIFACT_DIRECTORY: dir,
        },
    });
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value serialises");
    let digest = sha256(&manifest);
    Ok(Built {
        digest: digest.clone(),
        blobs: vec![
            (config_digest, config),
            (layer_digest, layer),
            (digest, manifest),
        ],
    })
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const DIR: &str = "flux/apps/shop/production";

    fn files() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("kustomization.yaml", b"resources: [deployment.yaml]\n"),
            ("deployment.yaml", b"kind: Deployment\n"),
            ("nested/x.yaml", b"kind: X\n"),
        ]
    }

    #[test]
    fn the_same_files_in_any_order_give_the_same_bytes_and_any_change_a_new_digest() {
        let first = build(DIR, &files()).expect("builds");
        let mut reversed = files();
        reversed.reverse();
        assert_eq!(build(DIR, &reversed).expect("builds"), first);
        let mut changed = files();
        changed[1].1 = b"kind: Deployment \n";
        assert_ne!(build(DIR, &changed).expect("builds").digest, first.digest);
        assert_ne!(
            build("flux/apps/shop/staging", &files())
                .expect("builds")
                .digest,
            first.digest
        );
        assert_eq!(first.digest, sha256(first.manifest()));
    }

    #[test]
    fn the_layer_holds_the_files_at_its_root_as_flux_reads_them() {
        let built = build(DIR, &files()).expect("builds");
        let manifest: serde_json::Value = serde_json::from_slice(built.manifest()).expect("JSON");
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
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
            json!({"billing-platform/artifact-directory": DIR})
        );
        // Canonical: sorted keys, no whitespace.
        let text = String::from_utf8(built.manifest().to_vec()).expect("UTF-8");
        assert!(text.starts_with(r#"{"annotations":{"#), "{text}");
        assert!(!text.contains(": ") && !text.contains(", "), "{text}");
        let (config, layer) = (&built.blobs[0], &built.blobs[1]);
        assert_eq!(config.1, b"{}");
        assert_eq!(manifest["config"]["digest"], config.0.as_str());
        assert_eq!(manifest["layers"][0]["digest"], layer.0.as_str());
        assert_eq!(manifest["layers"][0]["size"], layer.1.len());
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.1.as_slice())
            .read_to_end(&mut tar)
            .expect("gzip");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64, u64, String)> = archive
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
                    header.uid().expect("uid"),
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
                    0,
                    "kind: Deployment\n".into()
                ),
                (
                    "kustomization.yaml".into(),
                    0o644,
                    0,
                    0,
                    "resources: [deployment.yaml]\n".into()
                ),
                ("nested/x.yaml".into(), 0o644, 0, 0, "kind: X\n".into()),
            ]
        );
    }

    #[test]
    fn a_name_tar_cannot_hold_is_an_error_naming_the_directory() {
        let long = "x".repeat(300);
        let err = build(DIR, &[(long.as_str(), b"")]).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "cannot build the OCI artifact of flux/apps/shop/production"
        );
    }
}
