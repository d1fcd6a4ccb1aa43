//! What each cluster gets before any service: the bootstrap sync (`flux-system`), the platform
//! Kustomizations (`infrastructure`, then for each team `namespaces-<team>` with the team's
//! Namespaces, then `tenants-<team>`), and the Flux install's lockdown flags as a kustomize
//! component.

use super::layout::{
    cluster_dir, environment_roots, infrastructure_dir, lockdown_dir, namespaces_dir, team_roots,
    tenants_dir,
};
use super::{FLUX_NAMESPACE, PLATFORM_RECONCILER, service_timeout_minutes, tenant};
use crate::Error;
use crate::flux::{
    DependsOn, GitRef, GitRepository, GitRepositorySpec, Kustomization, KustomizationSpec,
    KustomizeComponent, KustomizePatch, PatchTarget, SourceRef,
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

/// The lockdown flags as a component of JSON 6902 patches appending each flag to the first
/// container's args of the Deployments it names.
pub fn lockdown() -> KustomizeComponent {
    KustomizeComponent::new(
        LOCKDOWN
            .iter()
            .map(|(flag, controllers)| KustomizePatch {
                patch: format!(
                    "- op: add\n  path: /spec/template/spec/containers/0/args/-\n  value: {flag}\n"
                ),
                target: PatchTarget {
                    kind: "Deployment".into(),
                    name: (*controllers).into(),
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
    let source = GitRepository::with_metadata(
        flux_meta(FLUX_NAMESPACE),
        GitRepositorySpec {
            interval: "1m".into(),
            url: platform.git.url.clone(),
            reference: GitRef {
                branch: Some(platform.git.branch.clone()),
            },
            ..Default::default()
        },
    );
    let platform_kustomization =
        |name: &str, path: &str, wait: bool, timeout: String, after: &[&str]| {
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
                        name: FLUX_NAMESPACE.into(),
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
    let sync = platform_kustomization(FLUX_NAMESPACE, &cluster, false, "3m".into(), &[]);
    tree.add_objects(
        env,
        &format!("{cluster}/flux-system.yaml"),
        vec![Object::new(&source)?, Object::new(&sync)?],
    )?;
    tree.add_component(&lockdown_dir(env), &lockdown())?;
    let infrastructure = infrastructure_dir(env);
    let infra = platform_kustomization("infrastructure", &infrastructure, true, "5m".into(), &[]);
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
        let namespaces_name = format!("namespaces-{}", team.name);
        let namespaces_kustomization = platform_kustomization(
            &namespaces_name,
            &namespaces_dir(env, &team.name),
            true,
            "5m".into(),
            &["infrastructure"],
        );
        // A team's tenants wait for each of its services' Kustomizations, which wait for their
        // rollouts: the team's slowest service start (Antaeus compiles at start) sets the budget.
        let slowest = services
            .iter()
            .map(|service| service_timeout_minutes(service))
            .max()
            .unwrap_or(5);
        let tenants_kustomization = platform_kustomization(
            &format!("tenants-{}", team.name),
            &tenants_dir(env, &team.name),
            true,
            format!("{}m", slowest + 5),
            &["infrastructure", &namespaces_name],
        );
        tree.add_objects(
            env,
            &format!("{cluster}/teams/{}.yaml", team.name),
            vec![
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
        assert_eq!(tenants["spec"]["wait"], true);
        let sync = find(
            tree,
            "Kustomization",
            "antaeus",
            "antaeus",
            "tenants/production",
        );
        assert_eq!(sync["spec"]["serviceAccountName"], "flux-reconciler");
        assert_eq!(sync["spec"]["path"], "./flux/apps/antaeus/production");
        // 90 × 10 s startup budget + 2 min: the rollout wait must outlast Antaeus's slow start.
        assert_eq!(sync["spec"]["timeout"], "17m");
        // The team's tenants wait for it; another team's do not.
        assert_eq!(tenants["spec"]["timeout"], "22m");
        let payments = find(
            tree,
            "Kustomization",
            "flux-system",
            "tenants-payments",
            "clusters/production/teams/payments.yaml",
        );
        assert_ne!(payments["spec"]["timeout"], "22m");
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
