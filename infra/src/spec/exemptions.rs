//! Policy exemptions: what the spec exempts each object from, and why, as the policy engine and
//! the scanner consume them (one type, the policy engine's).
//!
//! A service declares `[[policy_exemptions]]`; other spec settings imply one (a mounted token).
//! The platform is their only source, never a label a tenant could set itself. What a service
//! may do that others may not (be exposed, pull its own image, read its declared Secrets) is not
//! an exemption but the namespace's platform settings (see `render::tenant`).

use policies::Exemption;

use super::types::{Environment, Service, Spec};

/// Rules whose exemption changes what is rendered (the rest only inform the policy engine).
pub mod rules {
    /// The pod may run as root: `runAsNonRoot` is not set.
    pub const RUN_AS_NON_ROOT: &str = "run-as-non-root";
    /// The root filesystem stays writable.
    pub const READ_ONLY_ROOT_FILESYSTEM: &str = "read-only-root-filesystem";
}

impl Spec {
    /// Every policy exemption, one per (rule, object): what the policy engine must skip, and why.
    pub fn exemptions(&self) -> Vec<Exemption> {
        let mut out: Vec<Exemption> = self
            .services
            .iter()
            .flat_map(|service| {
                service.policy_exemptions.iter().map(|e| Exemption {
                    rule: e.rule.clone(),
                    kind: "Deployment".to_owned(),
                    namespace: service.name.clone(),
                    name: service.name.clone(),
                    reason: e.reason.clone(),
                    scanner_checks: e.scanner_checks.clone(),
                })
            })
            .collect();
        // What the spec declares elsewhere is an exemption too, so the policy engine and the
        // cluster learn it from the platform (never from a label a tenant could set on itself).
        for service in &self.services {
            if service.automount_service_account_token {
                out.push(Exemption {
                    rule: "no-service-account-token".to_owned(),
                    kind: "Deployment".to_owned(),
                    namespace: service.name.clone(),
                    name: service.name.clone(),
                    reason: "the spec declares it calls the Kubernetes API (automount_service_account_token = true)"
                        .to_owned(),
                    scanner_checks: Vec::new(),
                });
            }
        }
        out.sort();
        out
    }
}

impl Service {
    /// Whether the spec exempts this service from `rule`.
    pub fn is_exempt(&self, rule: &str) -> bool {
        self.policy_exemptions.iter().any(|e| e.rule == rule)
    }

    /// `(check, reason)` of every scanner check skipped for this service's Deployment in
    /// `environment`: the environment's skips, then the service's exemptions.
    pub fn scanner_skips<'a>(&'a self, environment: &'a Environment) -> Vec<(&'a str, &'a str)> {
        environment
            .scanner_skips
            .iter()
            .map(|s| (s.check.as_str(), s.reason.as_str()))
            .chain(self.policy_exemptions.iter().flat_map(|e| {
                e.scanner_checks
                    .iter()
                    .map(|check| (check.as_str(), e.reason.as_str()))
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_antaeus_image_is_an_explicit_exemption_with_a_reason() {
        let spec = crate::testing::spec();
        let exemptions = spec.exemptions();
        assert!(exemptions.iter().any(|e| e.rule == rules::RUN_AS_NON_ROOT
            && e.kind == "Deployment"
            && e.namespace == "antaeus"
            && e.name == "antaeus"
            && !e.reason.is_empty()));
        assert!(exemptions.iter().all(|e| e.name == "antaeus"));
    }
}
