//! The served tree's OCI artifacts: every OCIRepository (each team's two, each tenant's) pins an
//! artifact by digest on the run's registry, and this step publishes there the tree directory each one names (its
//! `billing-platform/artifact-directory`), from the work tree, with `cargo xtask publish`'s own
//! builder and pusher (skopeo), after checking it builds exactly the pinned digest. What it
//! returns says which revision each Kustomization must reach: the commit for a git source, the
//! pinned digest for an OCI one.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use xshell::Shell;

use super::git::Repo;
use super::tree::{self, FluxKustomization, Tree, artifact_directory, str_at};
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

/// Builds the artifact of every OCIRepository of `tree` from the files of `repo`'s work tree,
/// checks it is the digest the work tree pins now (read again from the directories that apply
/// the sources: a commit since the discovery may have pinned another), and pushes it through an
/// OCI layout next to the work tree.
pub fn publish(sh: &Shell, repo: &Repo, tree: &Tree) -> anyhow::Result<Published> {
    let (work, layout) = (&repo.work, &repo.work.with_file_name("artifacts"));
    let repositories = current_sources(sh, work, tree)?;
    let built = repositories
        .iter()
        .map(|repository| {
            let (artifact, pin) = artifact_of(repository)?;
            let built = publish::build(work, &artifact)?;
            anyhow::ensure!(
                built.oci.digest == pin,
                "{} builds {}, but its OCIRepository pins {pin}: the served tree is stale or edited by hand",
                artifact.dir,
                built.oci.digest
            );
            Ok(built)
        })
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
                    built.oci.digest.clone(),
                )
            })
            .collect(),
    })
}

/// The OCIRepositories of `tree` as the work tree under `work` holds them now: each directory that
/// applies one built again.
fn current_sources(sh: &Shell, work: &Path, tree: &Tree) -> anyhow::Result<Vec<Value>> {
    let id = |o: &Value| {
        (
            str_at(o, "/metadata/namespace").to_owned(),
            str_at(o, "/metadata/name").to_owned(),
        )
    };
    let mut dirs = BTreeSet::new();
    let mut applied = BTreeSet::new();
    for k in &tree.kustomizations {
        for o in k
            .objects
            .iter()
            .filter(|o| str_at(o, "/kind") == "OCIRepository")
        {
            dirs.insert(k.path.as_str());
            applied.insert(id(o));
        }
    }
    // A source nobody applies would be published by no one, and nothing would wait for it.
    if let Some((namespace, name)) = tree
        .of_kind("OCIRepository")
        .into_iter()
        .map(id)
        .find(|source| !applied.contains(source))
    {
        anyhow::bail!("no Kustomization applies OCIRepository {namespace}/{name}");
    }
    let mut out = Vec::new();
    for dir in dirs {
        out.extend(
            tree::render(sh, &work.join(dir))?
                .into_iter()
                .filter(|o| str_at(o, "/kind") == "OCIRepository"),
        );
    }
    Ok(out)
}

/// Pins in the work tree the artifact `kustomization`'s directory builds now, as `gen` would
/// after a change to the spec, for a change made by hand to that directory (the e2e's violation,
/// as if a reviewer had let it through): the new pin changes the directory that holds it, which
/// may be an artifact itself (a team's tenants), pinned in turn, up to the git source.
pub fn repin(
    sh: &Shell,
    repo: &Repo,
    tree: &Tree,
    kustomization: &FluxKustomization,
) -> anyhow::Result<()> {
    let (mut namespace, mut name) = (
        kustomization.namespace.clone(),
        kustomization.source.1.clone(),
    );
    for _ in 0..8 {
        let applier = tree
            .applied_by("OCIRepository", &namespace, &name)
            .with_context(|| {
                format!("no Kustomization applies OCIRepository {namespace}/{name}")
            })?;
        // The source as the work tree holds it now: its applier's directory built again.
        let repository = tree::render(sh, &repo.work.join(&applier.path))?
            .into_iter()
            .find(|o| {
                str_at(o, "/kind") == "OCIRepository"
                    && str_at(o, "/metadata/namespace") == namespace
                    && str_at(o, "/metadata/name") == name
            })
            .with_context(|| format!("{} has no OCIRepository {namespace}/{name}", applier.path))?;
        let (artifact, old) = artifact_of(&repository)?;
        let new = publish::build(&repo.work, &artifact)?.oci.digest;
        if new == old {
            return Ok(());
        }
        replace_pin(&repo.work.join(&applier.path), &old, &new).with_context(|| {
            format!(
                "re-pinning OCIRepository {namespace}/{name} under {}",
                applier.path
            )
        })?;
        if applier.source.0 != "OCIRepository" {
            return Ok(());
        }
        (namespace, name) = (applier.namespace.clone(), applier.source.1.clone());
    }
    anyhow::bail!(
        "the pins of {} nest deeper than 8 artifacts",
        kustomization.path
    )
}

/// Replaces the pin `old` by `new` in the one file under `dir` that holds it.
fn replace_pin(dir: &Path, old: &str, new: &str) -> anyhow::Result<()> {
    let mut changed = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let pinned = format!("digest: {old}\n");
            if text.contains(&pinned) {
                std::fs::write(&path, text.replace(&pinned, &format!("digest: {new}\n")))
                    .with_context(|| format!("writing {}", path.display()))?;
                changed.push(path);
            }
        }
    }
    anyhow::ensure!(
        changed.len() == 1,
        "the pin {old} is in {} files, not one",
        changed.len()
    );
    Ok(())
}

/// What an OCIRepository of the tree pulls: its URL and the directory its artifact holds, and
/// the digest it pins.
fn artifact_of(repository: &Value) -> anyhow::Result<(infra::render::Artifact, String)> {
    let (namespace, name) = (
        str_at(repository, "/metadata/namespace"),
        str_at(repository, "/metadata/name"),
    );
    let what = format!("OCIRepository {namespace}/{name}");
    let url = str_at(repository, "/spec/url");
    let pin = str_at(repository, "/spec/ref/digest");
    let dir = artifact_directory(repository)
        .with_context(|| format!("{what} does not name the tree directory its artifact holds"))?;
    let registry_repository = url
        .strip_prefix("oci://")
        .with_context(|| format!("{what}: spec.url {url:?} is not an oci:// URL"))?;
    anyhow::ensure!(
        !pin.is_empty(),
        "{what}: spec.ref.digest is empty: the tree pins every artifact"
    );
    let artifact = infra::render::Artifact {
        env: String::new(),
        dir: dir.to_owned(),
        repository: registry_repository.to_owned(),
        pinned_in: String::new(),
    };
    Ok((artifact, pin.to_owned()))
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
            "spec": {"url": "oci://127.0.0.1:5000/m/shop", "ref": {"digest": "sha256:1"}},
        });
        let (artifact, pin) = artifact_of(&repository).expect("complete");
        assert_eq!(artifact.repository, "127.0.0.1:5000/m/shop");
        assert_eq!(pin, "sha256:1");
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
