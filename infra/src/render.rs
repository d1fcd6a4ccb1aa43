//! Spec → typed objects → [`Tree`]: every environment fully rendered, no overlays.
//!
//! Per environment: [`cluster`] (bootstrap sync, infrastructure, the Flux install's component),
//! then each [`team`] (its Namespaces, its services' files from one table of builders in
//! [`services`]: [`tenant`], [`workload`], [`network`]; then the pins of its directories), then
//! [`admission`] (the policy bundle); once for all: [`codeowners`]. Where each file lands, and
//! which directories are artifacts, is [`layout`]'s; [`sources`] builds the Flux sources.

mod admission;
mod cluster;
mod codeowners;
pub mod layout;
mod limits;
mod network;
mod services;
mod sources;
mod team;
mod tenant;
mod workload;

use std::collections::BTreeMap;

use crate::Error;
use crate::meta;
use crate::spec::{self, Spec};
use crate::tree::Tree;
pub use cluster::{LOCKDOWN, kustomize_workers, lockdown};
pub use layout::{
    Artifact, app_dir, artifact, artifact_tag, artifacts, cluster_dir, infrastructure_dir,
    lockdown_dir, namespaces_dir, team_artifacts, tenants_dir,
};
pub use workload::service_url;

/// Namespace of the Flux controllers and the platform's own Kustomizations.
pub const FLUX_NAMESPACE: &str = "flux-system";
/// Flux's own controller account: the platform Kustomizations name it explicitly, so the
/// `--default-service-account` lockdown (which only applies when the name is empty) leaves them be.
pub const PLATFORM_RECONCILER: &str = "kustomize-controller";
/// The account Flux impersonates for each service, in the service's namespace.
pub const TENANT_RECONCILER: &str = "flux-reconciler";
/// The developer Role and RoleBinding in each service namespace.
pub const DEVELOPER_ROLE: &str = "developer";
/// The ClusterRole every tenant account is bound to, in its own namespace only.
pub const TENANT_ROLE: &str = "flux-tenant";

/// Who applies the objects of a generated `file` in the cluster: the service's tenant account
/// for its app directory (`flux/apps/<service>/…`), the platform's reconciler for everything
/// else. The offline policy check judges each object as that identity, as the cluster will.
pub fn applier(file: &str) -> policies::UserInfo {
    match file
        .strip_prefix("flux/apps/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((service, _)) => policies::UserInfo::service_account(service, TENANT_RECONCILER),
        None => policies::UserInfo::service_account(FLUX_NAMESPACE, PLATFORM_RECONCILER),
    }
}

/// Renders the whole tree for `spec`: every environment, plus `.github/CODEOWNERS`.
pub fn render(spec: &Spec) -> Result<Tree, Error> {
    render_into(spec, Tree::new())
}

/// Renders the whole tree for `spec` into `tree` (a [`Tree::streaming`] one hands each file to
/// its sink as soon as it is rendered).
pub fn render_into(spec: &Spec, mut tree: Tree) -> Result<Tree, Error> {
    // Compiled once per process (shared with validation and checks); every environment gets the
    // same rules, less those limited to other environments.
    let bundle = policies::Bundle::builtin().map_err(Error::Policy)?;
    let exemptions = spec.exemptions();
    // Each team renders its own services: a service of no declared team would be left out.
    let teams = spec.services_by_team();
    if teams
        .iter()
        .map(|(_, services)| services.len())
        .sum::<usize>()
        != spec.services.len()
    {
        let service = spec
            .services
            .iter()
            .find(|s| spec.team(&s.team).is_none())
            .expect("a service is in no team's group");
        return Err(Error::Reference(format!(
            "service `{}` names team `{}`, which is not declared",
            service.name, service.team
        )));
    }
    let callees = services::callees(spec);
    for env in &spec.environments {
        cluster::render(spec, &env.name, &teams, &mut tree)?;
        for (team, services) in &teams {
            team::render(spec, &env.name, &team.name, services, &callees, &mut tree)?;
        }
        admission::render(spec, &env.name, bundle, &exemptions, &mut tree)?;
    }
    tree.add_text(codeowners::PATH, codeowners::render(spec))?;
    Ok(tree)
}

/// The labels of every object of `service`.
fn labels(spec: &Spec, service: &spec::Service) -> BTreeMap<String, String> {
    meta::labels(&spec.platform.name, &service.name, &service.team)
}

/// Minutes a service's rollout may take: its startup (or readiness) budget plus two minutes to
/// pull and schedule, at least five.
fn service_timeout_minutes(service: &spec::Service) -> i64 {
    let probe = service
        .probes
        .startup
        .as_ref()
        .unwrap_or(&service.probes.readiness);
    let seconds = probe.budget_seconds() + 120;
    ((seconds + 59) / 60).max(5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// Stays in `infra::render` so the snapshot files keep their `infra__render__tests__` names.
    #[test]
    fn every_generated_object_matches_its_snapshot() {
        let tree = testing::tree();
        // A digest `cargo xtask image --pin` writes moves with every provider change; the
        // snapshot shows where it goes, the freshness test and `verify` check its value.
        let built: Vec<&str> = testing::spec()
            .services
            .iter()
            .flat_map(|s| s.built_digests().map(|(_, digest)| digest))
            .collect();
        for entry in tree.entries() {
            let name = format!(
                "{}__{}",
                entry
                    .file
                    .trim_start_matches("flux/")
                    .replace(['/', '.'], "_"),
                entry.object.describe().replace('/', "_")
            );
            let mut value = entry.object.value().clone();
            redact(&mut value, &built);
            // The pin of an artifact moves with every file of its directory (the
            // image digest above among them); the test of `tenant::sync` checks its value.
            if value["kind"] == "OCIRepository" {
                value["spec"]["ref"]["digest"] =
                    "sha256:<the directory's artifact, built by gen>".into();
            }
            insta::assert_yaml_snapshot!(name, value);
        }
        insta::assert_snapshot!("codeowners", testing::files()[codeowners::PATH]);
    }

    /// Replaces each of `digests` in every string of `value` by a fixed placeholder.
    fn redact(value: &mut serde_json::Value, digests: &[&str]) {
        match value {
            serde_json::Value::String(text) => {
                for digest in digests {
                    *text = text.replace(
                        digest,
                        "sha256:<built and pinned by cargo xtask image --pin>",
                    );
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, digests)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact(v, digests)),
            _ => {}
        }
    }

    #[test]
    fn app_files_are_applied_by_the_tenant_and_the_rest_by_the_platform() {
        assert_eq!(
            applier("flux/apps/antaeus/production/deployment.yaml").username,
            "system:serviceaccount:antaeus:flux-reconciler"
        );
        assert_eq!(
            applier("flux/tenants/production/invoicing/antaeus/limits.yaml").username,
            "system:serviceaccount:flux-system:kustomize-controller"
        );
    }

    #[test]
    fn the_identities_the_rules_trust_are_the_generators() {
        // rules.yaml names these accounts in CEL (match conditions cannot read parameters).
        let rules = policies::Bundle::builtin().expect("compiles");
        let text: String = rules
            .rules()
            .iter()
            .flat_map(|r| r.match_conditions.iter().map(|c| c.expression.clone()))
            .collect();
        assert!(text.contains(&format!(
            "system:serviceaccount:{FLUX_NAMESPACE}:{PLATFORM_RECONCILER}"
        )));
        assert!(text.contains(&format!("':{TENANT_RECONCILER}'")));
        assert_eq!(policies::testing::TENANT_ACCOUNT, TENANT_RECONCILER);
        assert_eq!(policies::testing::TENANT_ROLE, TENANT_ROLE);
    }

    #[test]
    fn rendering_twice_gives_identical_bytes() {
        let again = render(testing::spec()).expect("renders");
        assert_eq!(&again.render().expect("renders"), testing::files());
    }
}
