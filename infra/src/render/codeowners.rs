//! `.github/CODEOWNERS`: review ownership that follows the spec's ownership.
//!
//! Later rules win: the platform team owns everything, then each team its spec file and
//! manifests. Tenants (RBAC, sync) stay with the platform team, so widening a team's rights needs
//! the platform team's review.

use crate::spec::Spec;
use crate::tree::HEADER;

/// Where the file lands, relative to the workspace root.
pub const PATH: &str = ".github/CODEOWNERS";

pub(super) fn render(spec: &Spec) -> String {
    let handle = |team: &str| spec.team(team).map_or("", |t| t.github.as_str()).to_owned();
    let mut out = format!(
        "{HEADER}\n# The platform team owns everything; each team owns its service's spec file and workload\n# manifests. Tenant RBAC and sync (flux/tenants/) stay with the platform team.\n* {}\n",
        handle(&spec.platform.owner)
    );
    for service in &spec.services {
        let owner = handle(&service.team);
        out.push_str(&format!("/infra/services/{}.toml {owner}\n", service.name));
        out.push_str(&format!("/flux/apps/{}/ {owner}\n", service.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::testing;

    #[test]
    fn codeowners_gives_each_team_its_spec_file_and_manifests() {
        let files = testing::files();
        let owners = &files[super::PATH];
        assert!(owners.contains("\n* @billing-platform/platform\n"));
        assert!(owners.contains("\n/infra/services/antaeus.toml @billing-platform/invoicing\n"));
        assert!(owners.contains("\n/flux/apps/payment-provider/ @billing-platform/payments\n"));
    }
}
