//! The served tree's OCI artifacts: each tenant's OCIRepository follows `<repository>:<tag>` on the
//! run's registry, and this step publishes there the tree directory each one names (its
//! `billing-platform/artifact-directory`), from the commit's work tree, with `cargo xtask
//! publish`'s own builder and pusher (skopeo). What it returns says which revision each
//! Kustomization must reach: the commit for a git source, the artifact's digest for an OCI one.

use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;

use super::git::Repo;
use super::tree::{FluxKustomization, Tree, artifact_directory, str_at};
use crate::publish;

/// Pushes at once: the run's registry is on loopback, skopeo's start-up is most of a push.
const JOBS: usize = 4;

/// The digest published for each OCIRepository of the tree, by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct Published {
    digests: BTreeMap<(String, String), String>,
}

impl Published {
    /// The revision `kustomization` is Ready at: its artifact's digest, or `commit` for a git source.
    pub fn revision<'a>(&'a self, kustomization: &FluxKustomization, commit: &'a str) -> &'a str {
        match kustomization.source.0.as_str() {
            "OCIRepository" => self
                .digests
                .get(&(
                    kustomization.namespace.clone(),
                    kustomization.source.1.clone(),
                ))
                .map_or("", String::as_str),
            _ => commit,
        }
    }

    /// The digest published for the OCIRepository `namespace/name`.
    pub fn digest(&self, namespace: &str, name: &str) -> Option<&str> {
        self.digests
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(String::as_str)
    }

    /// How many artifacts, for the run's summary.
    pub fn len(&self) -> usize {
        self.digests.len()
    }
}

/// Builds the artifact of every OCIRepository of `tree` from the files of `repo`'s work tree and
/// pushes it, through an OCI layout next to the work tree.
pub fn publish(repo: &Repo, tree: &Tree) -> anyhow::Result<Published> {
    let (work, layout) = (&repo.work, &repo.work.with_file_name("artifacts"));
    let source = tree.git_urls().into_iter().next().unwrap_or_default();
    let repositories = tree.of_kind("OCIRepository");
    let artifacts = repositories
        .iter()
        .map(|repository| artifact_of(repository))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let built = artifacts
        .iter()
        .map(|artifact| publish::build(work, artifact, &source))
        .collect::<anyhow::Result<Vec<_>>>()?;
    publish::write_layout(layout, &built)?;
    publish::push_all(layout, &built, JOBS)?;
    Ok(Published {
        digests: repositories
            .iter()
            .zip(&built)
            .map(|(repository, built)| {
                (
                    (
                        str_at(repository, "/metadata/namespace").to_owned(),
                        str_at(repository, "/metadata/name").to_owned(),
                    ),
                    built.manifest_digest.clone(),
                )
            })
            .collect(),
    })
}

/// What an OCIRepository of the tree pulls: its URL, tag and the directory its artifact holds.
fn artifact_of(repository: &Value) -> anyhow::Result<infra::render::Artifact> {
    let what = format!(
        "OCIRepository {}/{}",
        str_at(repository, "/metadata/namespace"),
        str_at(repository, "/metadata/name")
    );
    let url = str_at(repository, "/spec/url");
    let tag = str_at(repository, "/spec/ref/tag");
    let dir = artifact_directory(repository)
        .with_context(|| format!("{what} does not name the tree directory its artifact holds"))?;
    let registry_repository = url
        .strip_prefix("oci://")
        .with_context(|| format!("{what}: spec.url {url:?} is not an oci:// URL"))?;
    anyhow::ensure!(
        !tag.is_empty(),
        "{what}: spec.ref.tag is empty: the run publishes by tag"
    );
    Ok(infra::render::Artifact {
        service: str_at(repository, "/metadata/name").to_owned(),
        env: tag.to_owned(),
        dir: dir.to_owned(),
        repository: registry_repository.to_owned(),
        tag: tag.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_repository_of_the_tree_says_what_to_publish_where() {
        let repository = serde_json::json!({
            "kind": "OCIRepository",
            "metadata": {"name": "shop", "namespace": "shop",
                "annotations": {"billing-platform/artifact-directory": "flux/apps/shop/staging"}},
            "spec": {"url": "oci://127.0.0.1:5000/m/shop", "ref": {"tag": "staging"}},
        });
        let artifact = artifact_of(&repository).expect("complete");
        assert_eq!(artifact.repository, "127.0.0.1:5000/m/shop");
        assert_eq!(artifact.tag, "staging");
        assert_eq!(artifact.dir, "flux/apps/shop/staging");
        let mut unnamed = repository.clone();
        unnamed["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("annotations");
        assert_eq!(
            artifact_of(&unnamed).expect_err("no directory").to_string(),
            "OCIRepository shop/shop does not name the tree directory its artifact holds"
        );
    }

    #[test]
    fn a_kustomization_reading_an_artifact_is_ready_at_its_digest_a_git_one_at_the_commit() {
        let published = Published {
            digests: BTreeMap::from([(("shop".into(), "shop".into()), "sha256:1".into())]),
        };
        let kustomization = |namespace: &str, kind: &str, name: &str| FluxKustomization {
            name: name.into(),
            namespace: namespace.into(),
            path: String::new(),
            source: (kind.into(), name.into()),
            service_account: None,
            objects: Vec::new(),
        };
        assert_eq!(
            published.revision(&kustomization("shop", "OCIRepository", "shop"), "abc"),
            "sha256:1"
        );
        assert_eq!(
            published.revision(
                &kustomization("flux-system", "GitRepository", "flux-system"),
                "abc"
            ),
            "abc"
        );
        // An artifact nobody published: no revision, so never Ready.
        assert_eq!(
            published.revision(&kustomization("other", "OCIRepository", "other"), "abc"),
            ""
        );
    }
}
