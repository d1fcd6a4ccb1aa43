//! What each cluster gets before any service: the bootstrap sync (`flux-system`), the platform
//! Kustomizations (`infrastructure`, then for each team `namespaces-<team>` with the team's
//! Namespaces, then `tenants-<team>`, both from the team's own source `team-<team>`), and the
//! Flux install's settings as a kustomize component (the lockdown flags, the workers).

use super::layout::{
    cluster_dir, environment_roots, infrastructure_dir, lockdown_dir, namespaces_dir, team_roots,
    tenants_dir,
};
use super::{FLUX_NAMESPACE, PLATFORM_RECONCILER, sources, tenant};
use crate::Error;
use crate::flux::{
    DependsOn, GitRepository, Kustomization, KustomizationSpec, KustomizeComponent, KustomizePatch,
    PatchTarget, SourceRef,
};
use crate::meta;
use crate::spec::Spec;
use crate::tree::{Object, Tree};

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
/// 5 times, not 100.
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

/// The cluster layer of `env`: its roots, the bootstrap sync, the platform Kustomizations, the
/// Namespaces and the lockdown component.
pub(super) fn render(spec: &Spec, env: &str, tree: &mut Tree) -> Result<(), Error> {
    let platform = &spec.platform;
    let owner = &platform.owner;
    for dir in environment_roots(env) {
        tree.add_root(&dir);
    }
    let cluster = cluster_dir(env);

    // What `flux bootstrap` writes, minus gotk-components.yaml (Flux is installed separately):
    // the repository and the Kustomization that reconciles this directory.
    let flux_meta = |name: &str| {
        meta::object_meta(
            name,
            Some(FLUX_NAMESPACE),
            meta::labels(&platform.name, name, owner),
        )
    };
    // Every platform source holds only the directories its Kustomizations apply:
    // kustomize-controller downloads and unpacks a source's whole artifact for each Kustomization
    // it reconciles, and the whole tree is 25 MB at 1,000 services (docs/benchmarks.md, "Flux at
    // scale").
    let git_source = |name: &str, dirs: &[&str]| {
        GitRepository::with_metadata(flux_meta(name), sources::platform_source(spec, dirs))
    };
    let infrastructure = infrastructure_dir(env);
    // The bootstrap source: this cluster's directory and its infrastructure, nothing of the
    // teams' or the other environments'.
    let source = git_source(FLUX_NAMESPACE, &[&cluster, &infrastructure]);
    let platform_kustomization =
        |name: &str, source: &str, path: &str, wait: bool, timeout: String, after: &[&str]| {
            Kustomization::with_metadata(
                flux_meta(name),
                KustomizationSpec {
                    interval: "10m".into(),
                    retry_interval: Some("1m".into()),
                    timeout,
                    path: format!("./{path}"),
                    prune: true,
                    wait,
                    source_ref: SourceRef {
                        kind: "GitRepository".into(),
                        name: source.into(),
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
        };
    // The sync does not wait: its children are Kustomizations with their own health.
    let sync = platform_kustomization(
        FLUX_NAMESPACE,
        FLUX_NAMESPACE,
        &cluster,
        false,
        "3m".into(),
        &[],
    );
    tree.add_objects(
        env,
        &format!("{cluster}/flux-system.yaml"),
        vec![Object::new(&source)?, Object::new(&sync)?],
    )?;
    tree.add_component(&lockdown_dir(env), &lockdown(spec.services.len()))?;
    let infra = platform_kustomization(
        "infrastructure",
        FLUX_NAMESPACE,
        &infrastructure,
        true,
        "5m".into(),
        &[],
    );
    tree.add_objects(
        env,
        &format!("{cluster}/infrastructure.yaml"),
        vec![Object::new(&infra)?],
    )?;
    // Per team: its Namespaces and their settings, then its tenants. One pair of roots a team
    // keeps each kustomize build as small as a team (see the layout's note on build time).
    let mut by_team: std::collections::BTreeMap<&str, Vec<&crate::spec::Service>> =
        std::collections::BTreeMap::new();
    for service in &spec.services {
        by_team
            .entry(service.team.as_str())
            .or_default()
            .push(service);
    }
    for team in &spec.teams {
        let Some(services) = by_team.get(team.name.as_str()) else {
            continue;
        };
        for dir in team_roots(env, &team.name) {
            tree.add_root(&dir);
        }
        // The team's own source: its two directories. Every new commit still costs a clone for
        // it, but each of its Kustomizations unpacks a team, not the tree.
        let team_source_name = format!("team-{}", team.name);
        let team_source = git_source(
            &team_source_name,
            &[
                &namespaces_dir(env, &team.name),
                &tenants_dir(env, &team.name),
            ],
        );
        let namespaces_name = format!("namespaces-{}", team.name);
        let namespaces_kustomization = platform_kustomization(
            &namespaces_name,
            &team_source_name,
            &namespaces_dir(env, &team.name),
            true,
            "5m".into(),
            &["infrastructure"],
        );
        // A team's tenants apply its services' sources and Kustomizations and do not wait for
        // them: each service's Kustomization waits for its own rollout and reports it. A
        // Kustomization waiting on Kustomizations holds one of kustomize-controller's workers
        // (4 by default) while the ones it waits for queue for a worker of the same controller:
        // with four teams or more nothing moved until the waits timed out (`cargo xtask bench
        // flux`, docs/benchmarks.md).
        let tenants_kustomization = platform_kustomization(
            &format!("tenants-{}", team.name),
            &team_source_name,
            &tenants_dir(env, &team.name),
            false,
            "5m".into(),
            &["infrastructure", &namespaces_name],
        );
        tree.add_objects(
            env,
            &format!("{cluster}/teams/{}.yaml", team.name),
            vec![
                Object::new(&team_source)?,
                Object::new(&namespaces_kustomization)?,
                Object::new(&tenants_kustomization)?,
            ],
        )?;
        let namespaces = services
            .iter()
            .map(|service| Object::new(&tenant::namespace(spec, service)))
            .collect::<Result<Vec<_>, _>>()?;
        tree.add_objects(
            env,
            &format!("{}/namespaces.yaml", namespaces_dir(env, &team.name)),
            namespaces,
        )?;
    }
    tree.add_objects(
        env,
        &format!("{infrastructure}/tenant-role.yaml"),
        vec![Object::new(&tenant::tenant_role(spec))?],
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
            "clusters/production/teams/invoicing.yaml",
        );
        assert_eq!(
            namespaces["spec"]["path"],
            "./flux/namespaces/production/invoicing"
        );
        assert_eq!(namespaces["spec"]["dependsOn"][0]["name"], "infrastructure");
        // A team's Kustomizations read the team's source, which holds its two directories only;
        // the bootstrap source holds the cluster's directory and its infrastructure.
        assert_eq!(namespaces["spec"]["sourceRef"]["name"], "team-invoicing");
        let team_source = find(
            tree,
            "GitRepository",
            "flux-system",
            "team-invoicing",
            "clusters/production/teams/invoicing.yaml",
        );
        let ignore = team_source["spec"]["ignore"].as_str().expect("ignore");
        assert!(
            ignore.contains("!/flux/namespaces/production/invoicing/\n"),
            "{ignore}"
        );
        assert!(
            ignore.contains("!/flux/tenants/production/invoicing/\n"),
            "{ignore}"
        );
        assert!(
            !ignore.contains("payments") && !ignore.contains("staging"),
            "{ignore}"
        );
        let bootstrap = find(
            tree,
            "GitRepository",
            "flux-system",
            "flux-system",
            "clusters/production/flux-system.yaml",
        );
        // The clones check out those directories alone.
        assert_eq!(
            team_source["spec"]["sparseCheckout"],
            serde_json::json!([
                "flux/namespaces/production/invoicing",
                "flux/tenants/production/invoicing"
            ])
        );
        assert_eq!(
            bootstrap["spec"]["sparseCheckout"],
            serde_json::json!(["flux/clusters/production", "flux/infrastructure/production"])
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
            "clusters/production/teams/invoicing.yaml",
        );
        assert_eq!(
            tenants["spec"]["path"],
            "./flux/tenants/production/invoicing"
        );
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
