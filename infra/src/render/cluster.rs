//! What each cluster gets before any service: the bootstrap sync (`flux-system`), the platform
//! Kustomizations `infrastructure` then `tenants`, the Namespaces of the infrastructure layer, and
//! the Flux install's lockdown flags as a kustomize component.

use super::layout::{
    cluster_dir, environment_roots, infrastructure_dir, lockdown_dir, tenants_dir,
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
    // Tenants wait for every service's Kustomization, which waits for its rollout: the slowest
    // service start (Antaeus compiles at start) sets the budget.
    let slowest = spec
        .services
        .iter()
        .map(service_timeout_minutes)
        .max()
        .unwrap_or(5);
    let tenants_kustomization = platform_kustomization(
        "tenants",
        &tenants_dir(env),
        true,
        format!("{}m", slowest + 5),
        &["infrastructure"],
    );
    tree.add_objects(
        env,
        &format!("{cluster}/tenants.yaml"),
        vec![Object::new(&tenants_kustomization)?],
    )?;

    let namespaces = spec
        .services
        .iter()
        .map(|service| Object::new(&tenant::namespace(spec, service)))
        .collect::<Result<Vec<_>, _>>()?;
    tree.add_objects(
        env,
        &format!("{infrastructure}/namespaces.yaml"),
        namespaces,
    )?;
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
        let tenants = find(
            tree,
            "Kustomization",
            "flux-system",
            "tenants",
            "clusters/production",
        );
        assert_eq!(tenants["spec"]["dependsOn"][0]["name"], "infrastructure");
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
    }
}
