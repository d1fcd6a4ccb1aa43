//! Spec → typed objects → [`Tree`]: every environment fully rendered, no overlays.
//!
//! Per environment: [`cluster`] (bootstrap sync, platform Kustomizations, Namespaces), then
//! [`services`] (each service's files, one table of builders: [`tenant`], [`workload`],
//! [`network`]), then [`admission`] (the policy bundle); once for all: [`codeowners`]. Where each
//! file lands is [`layout`]'s.

mod admission;
mod cluster;
mod codeowners;
pub mod layout;
mod network;
mod services;
mod tenant;
mod workload;

use std::collections::BTreeMap;

use crate::Error;
use crate::meta;
use crate::spec::{self, Spec};
use crate::tree::Tree;
pub use layout::{app_dir, cluster_dir, infrastructure_dir, tenants_dir};
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

/// Renders the whole tree for `spec`: every environment, plus `.github/CODEOWNERS`.
pub fn render(spec: &Spec) -> Result<Tree, Error> {
    let mut tree = Tree::new();
    // Compiled once per process (shared with validation and checks); every environment gets the
    // same rules, less those limited to other environments.
    let bundle = policies::Bundle::builtin().map_err(Error::Policy)?;
    let exemptions = spec.exemptions();
    for env in &spec.environments {
        cluster::render(spec, &env.name, &mut tree)?;
        services::render(spec, &env.name, &mut tree)?;
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
        for entry in tree.entries() {
            let name = format!(
                "{}__{}",
                entry
                    .file
                    .trim_start_matches("flux/")
                    .replace(['/', '.'], "_"),
                entry.object.describe().replace('/', "_")
            );
            insta::assert_yaml_snapshot!(name, entry.object.value());
        }
        insta::assert_snapshot!("codeowners", testing::files()[codeowners::PATH]);
    }

    #[test]
    fn rendering_twice_gives_identical_bytes() {
        let again = render(testing::spec()).expect("renders");
        assert_eq!(&again.render().expect("renders"), testing::files());
    }
}
