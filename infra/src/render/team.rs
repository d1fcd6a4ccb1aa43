//! One team in one environment: its two directories (`namespaces/<env>/<team>/` with its
//! Namespaces and each namespace's settings, `tenants/<env>/<team>/` with each service's tenant),
//! its services' files, and the team's file `flux/teams/<env>/<bucket>/<team>.yaml`: an
//! OCIRepository per directory,
//! pinned to the digest of its artifact, and the Kustomizations `namespaces-<team>` then
//! `tenants-<team>` that apply them.
//!
//! The team is rendered as a unit so that its directories are complete when the pins are
//! computed: memory holds one team's files, not the tree's.

use super::cluster::{flux_meta, platform_kustomization};
use super::layout::{Artifact, team_artifacts, team_file, team_roots};
use super::services::{self, Callees};
use super::{sources, tenant};
use crate::Error;
use crate::spec::{Service, Spec};
use crate::tree::{Object, Tree, objects_text};

/// Renders `team` (whose services are `services`) in `env` into `tree`.
pub(super) fn render(
    spec: &Spec,
    env: &str,
    team: &str,
    services: &[&Service],
    callees: &Callees<'_>,
    tree: &mut Tree,
) -> Result<(), Error> {
    for dir in team_roots(env, team) {
        tree.add_root(&dir);
    }
    let [namespaces, tenants] = team_artifacts(spec, team, env);
    let objects = services
        .iter()
        .map(|service| Object::new(&tenant::namespace(spec, service)))
        .collect::<Result<Vec<_>, _>>()?;
    let path = format!("{}/namespaces.yaml", namespaces.dir);
    let mut files = vec![(path.clone(), objects_text(&objects))];
    tree.add_objects(env, &path, objects)?;
    files.extend(services::render(spec, env, services, callees, tree)?);

    let namespaces_name = format!("namespaces-{team}");
    let tenants_name = format!("tenants-{team}");
    let source = |name: &str, artifact: &Artifact| -> Result<Object, Error> {
        // The directory is a root with no root inside it, and only the team's files land there.
        let prefix = format!("{}/", artifact.dir);
        let entries: Vec<(&str, &[u8])> = files
            .iter()
            .filter_map(|(path, text)| Some((path.strip_prefix(&prefix)?, text.as_bytes())))
            .collect();
        let digest = sources::pin(&artifact.dir, &entries)?;
        Object::new(&sources::artifact_source(
            flux_meta(spec, name),
            artifact,
            digest,
        ))
    };
    let namespaces_source = source(&namespaces_name, &namespaces)?;
    let tenants_source = source(&tenants_name, &tenants)?;
    let namespaces_kustomization = platform_kustomization(
        spec,
        &namespaces_name,
        ("OCIRepository", &namespaces_name),
        "./",
        true,
        "5m",
        &["infrastructure"],
    );
    // A team's tenants apply its services' sources and Kustomizations and do not wait for them:
    // each service's Kustomization waits for its own rollout and reports it. A Kustomization
    // waiting on Kustomizations holds one of kustomize-controller's workers while the ones it
    // waits for queue for a worker of the same controller: with as many teams as workers nothing
    // moved until the waits timed out (`cargo xtask bench flux`, docs/benchmarks.md).
    let tenants_kustomization = platform_kustomization(
        spec,
        &tenants_name,
        ("OCIRepository", &tenants_name),
        "./",
        false,
        "5m",
        &["infrastructure", &namespaces_name],
    );
    tree.add_objects(
        env,
        &team_file(env, team),
        vec![
            namespaces_source,
            Object::new(&namespaces_kustomization)?,
            tenants_source,
            Object::new(&tenants_kustomization)?,
        ],
    )
}

#[cfg(test)]
mod tests {
    use crate::testing;

    #[test]
    fn every_artifact_is_pinned_where_the_layout_says_to_the_digest_of_the_files_written() {
        let files = testing::files();
        let artifacts = crate::render::artifacts(testing::spec());
        // Per environment: each of the two teams' two directories, each of the two services'.
        assert_eq!(artifacts.len(), 2 * (2 * 2 + 2));
        for artifact in &artifacts {
            // Every file the tree writes under the directory, as `cargo xtask publish` reads it.
            let prefix = format!("{}/", artifact.dir);
            let entries: Vec<(&str, &[u8])> = files
                .iter()
                .filter_map(|(path, text)| Some((path.strip_prefix(&prefix)?, text.as_bytes())))
                .collect();
            assert!(
                entries
                    .iter()
                    .any(|(name, _)| *name == "kustomization.yaml"),
                "{}",
                artifact.dir
            );
            let built = crate::artifact::build(&artifact.dir, &entries).expect("builds");
            let pinned_in: Vec<serde_json::Value> = files[&artifact.pinned_in]
                .split("\n---\n")
                .skip(1)
                .map(|doc| serde_yaml_ng::from_str(doc).expect("YAML"))
                .collect();
            let source = pinned_in
                .iter()
                .find(|o| {
                    o["kind"] == "OCIRepository"
                        && o["metadata"]["annotations"]["billing-platform/artifact-directory"]
                            == artifact.dir.as_str()
                })
                .unwrap_or_else(|| {
                    panic!("{} pins no source of {}", artifact.pinned_in, artifact.dir)
                });
            assert_eq!(source["spec"]["url"], artifact.url());
            assert_eq!(
                source["spec"]["ref"]["digest"], built.digest,
                "{}",
                artifact.dir
            );
            assert_eq!(
                source["spec"]["layerSelector"]["mediaType"],
                "application/vnd.cncf.flux.content.v1.tar+gzip"
            );
        }
    }
}
