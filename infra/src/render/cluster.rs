//! What each cluster gets before any team: the bootstrap sync (`flux-system`), `infrastructure`,
//! a Kustomization `teams-<bucket>` for each directory of teams' files, the tenants' ClusterRole,
//! the Flux install's settings as a kustomize component (the lockdown flags, the workers), and the
//! helpers the team files share ([`platform_kustomization`]).

use super::layout::{
    cluster_dir, environment_roots, infrastructure_dir, lockdown_dir, team_bucket, teams_dir,
    teams_root_dir,
};
use super::{FLUX_NAMESPACE, PLATFORM_RECONCILER, sources, tenant};
use crate::Error;
use crate::flux::{
    DependsOn, GitRepository, Kustomization, KustomizationSpec, KustomizeComponent, KustomizePatch,
    PatchTarget, SourceRef,
};
use crate::meta;
use crate::spec::{Service, Spec, Team};
use crate::tree::{Object, Tree};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Flux's multi-tenancy lockdown, as Flux's docs give it: each flag, and the controllers that take
/// it (a regular expression over the install's Deployment names, which kustomize anchors).
/// `--no-cross-namespace-refs`: a Kustomization only uses a source in its own namespace.
/// `--no-remote-bases`: no kustomize bases fetched over the network at build time.
/// `--default-service-account`: a Kustomization naming no account impersonates the powerless
/// `default` account of its namespace instead of acting as the controller itself.
pub const LOCKDOWN: [(&str, &str); 3] = [
    (
        "--no-cross-namespace-refs=true",
        "(kustomize-controller|helm-controller|notification-controller|image-reflector-controller|image-automation-controller)",
    ),
    ("--no-remote-bases=true", "kustomize-controller"),
    (
        "--default-service-account=default",
        "(kustomize-controller|helm-controller)",
    ),
];

/// kustomize-controller's workers (`--concurrent`) for a platform of `services` services: about
/// one per ten services, rounded up to a power of two, at least Flux's default 4, at most 64. Each
/// service's Kustomization holds a worker while it waits for its rollout: with the default 4,
/// `cargo xtask bench flux` took 157 s for the 122 Kustomizations of 100 services, and 1,000
/// services did not finish in 15 minutes (docs/benchmarks.md, "Flux at scale"). Powers of two,
/// because a new value restarts kustomize-controller (its Deployment's args change), which then
/// reconciles every Kustomization again: a platform growing from 2 to 1,000 services restarts it
/// 4 times (at 41, 81, 161 and 321 services), not 100.
pub fn kustomize_workers(services: usize) -> usize {
    services.div_ceil(10).next_power_of_two().clamp(4, 64)
}

/// The Flux install's settings the tree owns, as a component of JSON 6902 patches appending each
/// flag to the first container's args of the Deployments it names: the lockdown flags, then
/// kustomize-controller's workers sized to `services`.
pub fn lockdown(services: usize) -> KustomizeComponent {
    let workers = format!("--concurrent={}", kustomize_workers(services));
    KustomizeComponent::new(
        LOCKDOWN
            .iter()
            .map(|(flag, controllers)| (*flag, *controllers))
            .chain([(workers.as_str(), "kustomize-controller")])
            .map(|(flag, controllers)| KustomizePatch {
                patch: format!(
                    "- op: add\n  path: /spec/template/spec/containers/0/args/-\n  value: {flag}\n"
                ),
                target: PatchTarget {
                    kind: "Deployment".into(),
                    name: controllers.into(),
                },
            })
            .collect(),
    )
}

/// The cluster layer of `env`: its roots, the bootstrap sync, `infrastructure`, the tenants'
/// ClusterRole and the Flux install's component. Each team's part is [`super::team`]'s.
/// `teams` are the teams with services ([`Spec::services_by_team`]).
pub(super) fn render(
    spec: &Spec,
    env: &str,
    teams: &[(&Team, Vec<&Service>)],
    tree: &mut Tree,
) -> Result<(), Error> {
    for dir in environment_roots(env) {
        tree.add_root(&dir);
    }
    let cluster = cluster_dir(env);
    let infrastructure = infrastructure_dir(env);
    // The teams' buckets that hold a team with services: each a root of the bootstrap source,
    // applied by its own Kustomization (see `layout::team_bucket`).
    let buckets: std::collections::BTreeSet<String> = teams
        .iter()
        .map(|(team, _)| team_bucket(&team.name))
        .collect();
    let bucket_dirs: Vec<String> = buckets.iter().map(|b| teams_dir(env, b)).collect();
    // What `flux bootstrap` writes, minus gotk-components.yaml (Flux is installed separately):
    // the repository and the Kustomization that reconciles this directory. The bootstrap source
    // holds this cluster's directory, its infrastructure and its teams' files, nothing of the
    // teams' directories (artifacts, pinned in the teams' files) or the other environments'.
    let teams_root = teams_root_dir(env);
    let mut checked_out = vec![cluster.as_str(), infrastructure.as_str()];
    if !buckets.is_empty() {
        checked_out.push(&teams_root);
    }
    let source = GitRepository::with_metadata(
        flux_meta(spec, FLUX_NAMESPACE),
        sources::platform_source(spec, &checked_out),
    );
    let git = ("GitRepository", FLUX_NAMESPACE);
    // The sync does not wait: its children are Kustomizations with their own health.
    let sync = platform_kustomization(spec, FLUX_NAMESPACE, git, &cluster, false, "3m", &[]);
    tree.add_objects(
        env,
        &format!("{cluster}/flux-system.yaml"),
        vec![Object::new(&source)?, Object::new(&sync)?],
    )?;
    tree.add_component(&lockdown_dir(env), &lockdown(spec.services.len()))?;
    let infra = platform_kustomization(
        spec,
        "infrastructure",
        git,
        &infrastructure,
        true,
        "5m",
        &[],
    );
    tree.add_objects(
        env,
        &format!("{cluster}/infrastructure.yaml"),
        vec![Object::new(&infra)?],
    )?;
    // Each bucket's Kustomization applies the teams' Kustomizations and does not wait for them
    // (a Kustomization waiting on Kustomizations holds a worker they need).
    if !buckets.is_empty() {
        let mut teams = Vec::new();
        for (bucket, dir) in buckets.iter().zip(&bucket_dirs) {
            tree.add_root(dir);
            let name = format!("teams-{bucket}");
            teams.push(Object::new(&platform_kustomization(
                spec,
                &name,
                git,
                dir,
                false,
                "5m",
                &[],
            ))?);
        }
        tree.add_objects(env, &format!("{cluster}/teams.yaml"), teams)?;
    }
    tree.add_objects(
        env,
        &format!("{infrastructure}/tenant-role.yaml"),
        vec![Object::new(&tenant::tenant_role(spec))?],
    )
}

/// Metadata of a platform object `name` in `flux-system`.
pub(super) fn flux_meta(spec: &Spec, name: &str) -> ObjectMeta {
    let platform = &spec.platform;
    meta::object_meta(
        name,
        Some(FLUX_NAMESPACE),
        meta::labels(&platform.name, name, &platform.owner),
    )
}

/// A platform Kustomization in `flux-system`: `path` of `source` (`(kind, name)`; a tree path
/// for the git source, `./` for an artifact), applied as the platform's reconciler after `after`.
pub(super) fn platform_kustomization(
    spec: &Spec,
    name: &str,
    source: (&str, &str),
    path: &str,
    wait: bool,
    timeout: &str,
    after: &[&str],
) -> Kustomization {
    Kustomization::with_metadata(
        flux_meta(spec, name),
        KustomizationSpec {
            interval: "10m".into(),
            retry_interval: Some("1m".into()),
            timeout: timeout.into(),
            path: format!("./{}", path.trim_start_matches("./")),
            prune: true,
            wait,
            source_ref: SourceRef {
                kind: source.0.into(),
                name: source.1.into(),
            },
            depends_on: after
                .iter()
                .map(|name| DependsOn {
                    name: (*name).to_owned(),
                    namespace: None,
                })
                .collect(),
            service_account_name: PLATFORM_RECONCILER.into(),
            target_namespace: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::testing::{self, find};

    #[test]
    fn kustomize_controller_gets_a_worker_per_ten_services_in_powers_of_two() {
        let workers: Vec<usize> = [1, 2, 40, 41, 80, 81, 100, 320, 321, 1000, 10_000]
            .into_iter()
            .map(super::kustomize_workers)
            .collect();
        assert_eq!(workers, [4, 4, 4, 8, 8, 16, 16, 32, 64, 64, 64]);
    }

    #[test]
    fn the_platform_kustomizations_chain_and_name_the_controller_account() {
        let tree = testing::tree();
        let namespaces = find(
            tree,
            "Kustomization",
            "flux-system",
            "namespaces-invoicing",
            &crate::render::layout::team_file("production", "invoicing"),
        );
        // A team's Kustomizations read the artifacts of its two directories, pinned in its file;
        // the bootstrap source holds the cluster's directory and its infrastructure.
        assert_eq!(namespaces["spec"]["path"], "./");
        assert_eq!(namespaces["spec"]["dependsOn"][0]["name"], "infrastructure");
        assert_eq!(
            namespaces["spec"]["sourceRef"],
            serde_json::json!({"kind": "OCIRepository", "name": "namespaces-invoicing"})
        );
        let team_source = find(
            tree,
            "OCIRepository",
            "flux-system",
            "namespaces-invoicing",
            &crate::render::layout::team_file("production", "invoicing"),
        );
        assert_eq!(
            team_source["metadata"]["annotations"]["billing-platform/artifact-directory"],
            "flux/namespaces/production/invoicing"
        );
        assert_eq!(
            team_source["spec"]["url"],
            "oci://ghcr.io/billing-platform/manifests/teams/invoicing/namespaces"
        );
        let bootstrap = find(
            tree,
            "GitRepository",
            "flux-system",
            "flux-system",
            "clusters/production/flux-system.yaml",
        );
        // The clone checks out those directories alone, and the teams' files.
        assert_eq!(
            bootstrap["spec"]["sparseCheckout"],
            serde_json::json!([
                "flux/clusters/production",
                "flux/infrastructure/production",
                "flux/teams/production"
            ])
        );
        let ignore = bootstrap["spec"]["ignore"].as_str().expect("ignore");
        assert!(ignore.contains("!/flux/clusters/production/\n"), "{ignore}");
        assert!(
            ignore.contains("!/flux/infrastructure/production/\n"),
            "{ignore}"
        );
        assert!(
            !ignore.contains("!/flux/apps/") && !ignore.contains("!/flux/tenants/"),
            "{ignore}"
        );
        let tenants = find(
            tree,
            "Kustomization",
            "flux-system",
            "tenants-invoicing",
            &crate::render::layout::team_file("production", "invoicing"),
        );
        assert_eq!(tenants["spec"]["path"], "./");
        assert_eq!(tenants["spec"]["sourceRef"]["name"], "tenants-invoicing");
        assert_eq!(tenants["spec"]["dependsOn"][0]["name"], "infrastructure");
        assert_eq!(
            tenants["spec"]["dependsOn"][1]["name"],
            "namespaces-invoicing"
        );
        assert_eq!(
            tenants["spec"]["serviceAccountName"],
            "kustomize-controller"
        );
        assert_eq!(tenants["spec"]["prune"], true);
        // No Kustomization waits on Kustomizations (see the renderer): neither the sync nor a
        // team's tenants.
        assert_eq!(tenants["spec"]["wait"], false);
        let sync = find(
            tree,
            "Kustomization",
            "antaeus",
            "antaeus",
            "tenants/production",
        );
        assert_eq!(sync["spec"]["serviceAccountName"], "flux-reconciler");
        // The service's artifact holds its app directory at its root.
        assert_eq!(sync["spec"]["path"], "./");
        assert_eq!(sync["spec"]["sourceRef"]["kind"], "OCIRepository");
        // 90 × 10 s startup budget + 2 min: the rollout wait must outlast Antaeus's slow start.
        assert_eq!(sync["spec"]["timeout"], "17m");
        assert_eq!(tenants["spec"]["timeout"], "5m");
    }

    #[test]
    fn each_team_has_its_own_namespaces_and_tenants_roots_and_a_team_without_services_none() {
        let tree = testing::tree();
        let roots: Vec<&str> = tree.roots().collect();
        for team in ["invoicing", "payments"] {
            for layer in ["namespaces", "tenants"] {
                let dir = format!("flux/{layer}/production/{team}");
                assert!(roots.contains(&dir.as_str()), "{dir} in {roots:?}");
            }
        }
        let platform_only: Vec<&str> = testing::spec()
            .teams
            .iter()
            .map(|t| t.name.as_str())
            .filter(|t| !testing::spec().services.iter().any(|s| &s.team == t))
            .collect();
        for team in platform_only {
            assert!(
                !roots.iter().any(|r| r.ends_with(&format!("/{team}"))),
                "{team}"
            );
        }
    }
}
