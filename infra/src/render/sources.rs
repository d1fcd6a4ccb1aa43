//! The tree's Flux sources: the bootstrap GitRepository `flux-system`, holding only the cluster's
//! entry point, its infrastructure and the teams' files, and an OCIRepository for every other
//! directory Flux applies (each team's two, each service's app directory), pinned to the digest
//! of its artifact.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::layout::Artifact;
use crate::flux::{
    GitRef, GitRepositorySpec, LayerSelector, OCIRepository, OCIRepositorySpec, OciRef, media_types,
};
use crate::spec::Spec;
use crate::tree::root_kustomization;
use crate::{Error, artifact, meta};

/// The digest of the artifact of the root `dir` holding `files` (`(name relative to dir,
/// bytes)`) and the `kustomization.yaml` the tree derives for it: what the tree pins and `cargo
/// xtask publish` builds from the same files on disk.
pub(super) fn pin(dir: &str, files: &[(&str, &[u8])]) -> Result<String, Error> {
    let kustomization = root_kustomization(
        dir,
        files.iter().map(|(name, _)| (*name).to_owned()).collect(),
    )?;
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .copied()
        .chain([("kustomization.yaml", kustomization.as_bytes())])
        .collect();
    Ok(artifact::build(dir, &entries)?.digest)
}

/// The OCIRepository pulling `artifact` at `digest`, with `metadata` and the annotation naming
/// the directory it holds. Pinned: source-controller asks the registry nothing until the tree
/// pins another digest, and a push to the registry changes nothing the tree does not name.
pub(super) fn artifact_source(
    mut metadata: ObjectMeta,
    artifact: &Artifact,
    digest: String,
) -> OCIRepository {
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(meta::ARTIFACT_DIRECTORY.to_owned(), artifact.dir.clone());
    OCIRepository::with_metadata(
        metadata,
        OCIRepositorySpec {
            interval: "10m".into(),
            url: artifact.url(),
            reference: OciRef { digest },
            layer_selector: LayerSelector {
                media_type: media_types::CONTENT.into(),
                operation: "extract".into(),
            },
        },
    )
}

/// A source of the platform's repository holding `dirs` and nothing else: the clone checks out
/// only them (`sparseCheckout`: at 1,000 services the whole tree is 22,600 files, written for
/// every clone otherwise) and the ignore rules keep only them in the artifact.
pub(super) fn platform_source(spec: &Spec, dirs: &[&str]) -> GitRepositorySpec {
    GitRepositorySpec {
        interval: "1m".into(),
        url: spec.platform.git.url.clone(),
        reference: GitRef {
            branch: Some(spec.platform.git.branch.clone()),
        },
        ignore: Some(only_directories(dirs)),
        sparse_checkout: Some(dirs.iter().map(|d| (*d).to_owned()).collect()),
        timeout: None,
    }
}

/// `.sourceignore` patterns that keep `dirs` and drop everything else. A gitignore pattern cannot
/// re-include a file whose parent directory is excluded, so each level on the way to any of them
/// is re-included once, a parent's level before its children's (each pattern matches one level,
/// so siblings do not undo each other).
///
/// `flux/apps/x` → `/*`, `!/flux/`, `/flux/*`, `!/flux/apps/`, `/flux/apps/*`, `!/flux/apps/x/`.
fn only_directories(dirs: &[&str]) -> String {
    // `./a/b/` and `a/b` are the same directory to Flux; the patterns need the bare form.
    let bare: Vec<&str> = dirs
        .iter()
        .map(|d| d.trim_start_matches("./").trim_matches('/'))
        .collect();
    let kept: std::collections::BTreeSet<&str> = bare.iter().copied().collect();
    let mut levels = std::collections::BTreeSet::new();
    for dir in &bare {
        let mut end = 0;
        for part in dir.split('/') {
            end += part.len();
            levels.insert(&dir[..end]);
            end += 1;
        }
    }
    let mut out = String::from("/*\n");
    for level in levels {
        // Inside a kept directory everything is kept already.
        if kept.iter().any(|k| {
            level
                .strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            continue;
        }
        out.push_str(&format!("!/{level}/\n"));
        if !kept.contains(level) {
            out.push_str(&format!("/{level}/*\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_is_kept_level_by_level() {
        assert_eq!(
            only_directories(&["flux/apps/antaeus/production"]),
            "/*\n!/flux/\n/flux/*\n!/flux/apps/\n/flux/apps/*\n!/flux/apps/antaeus/\n/flux/apps/antaeus/*\n!/flux/apps/antaeus/production/\n"
        );
    }

    #[test]
    fn several_directories_keep_exactly_their_files_as_git_reads_the_patterns() {
        let patterns = only_directories(&[
            "flux/tenants/production/payments",
            "./flux/namespaces/production/payments/",
            "flux/namespaces/production/payments/nested",
        ]);
        // Each level once, parents first; nothing inside a kept directory.
        assert_eq!(
            patterns,
            "/*\n!/flux/\n/flux/*\n!/flux/namespaces/\n/flux/namespaces/*\n!/flux/namespaces/production/\n/flux/namespaces/production/*\n!/flux/namespaces/production/payments/\n!/flux/tenants/\n/flux/tenants/*\n!/flux/tenants/production/\n/flux/tenants/production/*\n!/flux/tenants/production/payments/\n"
        );
        // git's own reading of them. source-controller reads them with go-git, whose matcher
        // differs from git's in general (it has no "a parent is excluded" rule) but not on these
        // patterns, where every level is re-included before anything under it is: the e2e's
        // real source-controller serves the bootstrap's and each team's artifact from them.
        let dir = tempfile::tempdir().expect("a scratch dir");
        let files = [
            "flux/tenants/production/payments/a/sync.yaml",
            "flux/tenants/production/payments-other/sync.yaml",
            "flux/tenants/production/invoicing/sync.yaml",
            "flux/tenants/staging/payments/sync.yaml",
            "flux/namespaces/production/payments/nested/ns.yaml",
            "flux/namespaces/production/payments/kustomization.yaml",
            "flux/apps/payments/production/deployment.yaml",
            "flux/clusters/production/flux-system.yaml",
            "README.md",
        ];
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, "x").expect("write");
        }
        std::fs::write(dir.path().join(".gitignore"), &patterns).expect("write");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("utf-8")
        };
        git(&["init", "-q"]);
        let kept = git(&["ls-files", "--others", "--exclude-standard"]);
        assert_eq!(
            kept.lines().collect::<Vec<_>>(),
            [
                "flux/namespaces/production/payments/kustomization.yaml",
                "flux/namespaces/production/payments/nested/ns.yaml",
                "flux/tenants/production/payments/a/sync.yaml",
            ]
        );
    }
}
