//! A generated directory, read from disk, as the Flux OCI artifact the tree pins: its files
//! handed to [`infra::artifact::build`], the format's one owner (`gen` computes the pin from the
//! files it renders with the same function).

use std::path::Path;

use anyhow::{Context, bail};
use infra::render::Artifact;

/// A directory's artifact, assembled in memory from the files on disk.
#[derive(Debug)]
pub struct Built {
    pub artifact: Artifact,
    /// Files in the layer.
    pub files: usize,
    /// Its digest (what the tree pins and Flux reports as its revision) and blobs.
    pub oci: infra::artifact::Built,
}

/// Builds `artifact` from the files under `root/<artifact.dir>`.
pub fn build(root: &Path, artifact: &Artifact) -> anyhow::Result<Built> {
    let dir = root.join(&artifact.dir);
    let files = read_files(&dir)?;
    if files.is_empty() {
        bail!(
            "{}: no files to publish to {}; run `cargo xtask gen`",
            dir.display(),
            artifact.repository
        );
    }
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    Ok(Built {
        artifact: artifact.clone(),
        files: files.len(),
        oci: infra::artifact::build(&artifact.dir, &borrowed)?,
    })
}

/// Every regular file under `dir` as `(path relative to dir, bytes)`. A symbolic link or any
/// other kind of entry is refused (source-controller would skip it, so what Flux applies would
/// silently differ from the directory).
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Artifact {
        Artifact {
            env: "production".into(),
            dir: "flux/apps/shop/production".into(),
            repository: "127.0.0.1:5000/manifests/shop".into(),
            pinned_in: "flux/tenants/production/shops/shop/sync.yaml".into(),
        }
    }

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join("flux/apps/shop/production").join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
    }

    #[test]
    fn the_files_on_disk_are_what_the_artifact_holds() {
        let files = [
            ("kustomization.yaml", "resources: [a.yaml]\n"),
            ("a.yaml", "kind: A\n"),
            ("nested/b.yaml", "kind: B\n"),
        ];
        let dir = tempfile::tempdir().expect("dir");
        write(dir.path(), &files);
        let built = build(dir.path(), &artifact()).expect("builds");
        let expected = infra::artifact::build(
            "flux/apps/shop/production",
            &files.map(|(name, text)| (name, text.as_bytes())),
        )
        .expect("builds");
        assert_eq!(built.oci, expected);
        assert_eq!(built.files, 3);
    }

    #[test]
    fn a_missing_directory_or_a_symbolic_link_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let err = build(dir.path(), &artifact()).expect_err("nothing to publish");
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
        let err = build(dir.path(), &artifact()).expect_err("a link");
        assert!(
            err.to_string()
                .contains("b.yaml: not a regular file or directory (a symbolic link?)"),
            "{err}"
        );
    }
}
