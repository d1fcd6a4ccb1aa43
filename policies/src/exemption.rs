//! Exemptions: one rule waived for one object, with the reason printed in every report and
//! expressed in the cluster as a match condition of that rule's admission policy.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, kinds};

/// A rule waived for one object. Exemptions live in the platform spec and are applied by the
/// platform (as match conditions of the policy it owns), so a tenant cannot grant itself one.
///
/// An exemption of a workload also covers the objects its controller creates from it: the
/// ReplicaSets and Pods of a Deployment, the Pods of a StatefulSet, DaemonSet or Job, the Jobs
/// and Pods of a CronJob. Without that the cluster would admit the Deployment and then reject
/// every Pod it tries to start. Those are recognised by their owner reference *and* by who
/// creates them (Kubernetes' own controllers): anyone can write an owner reference, so a
/// forged owner alone borrows nothing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// The rule waived, by name.
    pub rule: String,
    /// The object's kind, e.g. `Deployment`.
    pub kind: String,
    /// The object's namespace; empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    /// Why the rule cannot hold for this object; printed in every report.
    pub reason: String,
    /// Checks of the independent scanner (checkov IDs such as `CKV_K8S_23`) that the same
    /// reason covers; the generator writes them as the scanner's skip annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanner_checks: Vec<String>,
}

/// Who creates the objects a workload controller owns: the controller-manager, with one
/// identity or (`--use-service-account-credentials`) one ServiceAccount per controller in
/// `kube-system`. Only cluster admins can act as either.
pub(crate) const CONTROLLER_REQUEST: &str = "(request.userInfo.username == 'system:kube-controller-manager' \
    || request.userInfo.username.startsWith('system:serviceaccount:kube-system:'))";

impl Exemption {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects.
    pub fn object(&self) -> String {
        crate::report::object_id(&self.kind, &self.namespace, &self.name)
    }

    /// Checks what the CEL condition relies on: a known kind, names that need no quoting.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidExemption {
            rule: self.rule.clone(),
            object: self.object(),
            reason: reason.to_owned(),
        };
        let Some(info) = kinds::lookup_kind(&self.kind) else {
            return Err(invalid("its kind is not one any rule can match"));
        };
        if self.reason.trim().is_empty() {
            return Err(invalid("it has no reason; say why the rule cannot hold"));
        }
        if !is_dns_subdomain(&self.name) {
            return Err(invalid("name is not a Kubernetes object name"));
        }
        if info.namespaced && !is_dns_subdomain(&self.namespace) {
            return Err(invalid("namespaced kinds need a namespace"));
        }
        if !info.namespaced && !self.namespace.is_empty() {
            return Err(invalid("cluster-scoped kinds take no namespace"));
        }
        Ok(())
    }

    /// The match condition's name: unique per object, at most 63 characters as the API requires.
    pub(crate) fn condition_name(&self) -> String {
        let name = format!(
            "exempt-{}-{}-{}",
            self.kind.to_ascii_lowercase(),
            self.namespace,
            self.name
        )
        .replace("--", "-");
        let name = name.trim_end_matches('-');
        if name.len() <= 63 {
            return name.to_owned();
        }
        // Long names keep a readable prefix and a stable hash of the whole, so two
        // exemptions never share a condition name.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("{}-{:08x}", &name[..54].trim_end_matches('-'), hash as u32)
    }

    /// The CEL match condition: true (the rule applies) unless the request is for the exempted
    /// object in its namespace (the offline check only evaluates the exemptions of a request's
    /// namespace, relying on the condition's first clause; a test keeps that so), or is Kubernetes' controller creating an object of the kind it makes from it,
    /// owned by it. Validated names contain only `[a-z0-9.-]`, so they are quoted safely; dots
    /// are escaped inside regular expressions.
    pub(crate) fn condition(&self) -> String {
        let (ns, name, kind) = (&self.namespace, &self.name, &self.kind);
        let regex_name = name.replace('.', "\\\\.");
        // (kind of the owned object, its owner reference) pairs.
        let owned: &[(&str, String)] = &match kind.as_str() {
            "Deployment" => vec![
                (
                    "ReplicaSet",
                    format!("o.kind == 'Deployment' && o.name == '{name}'"),
                ),
                (
                    "Pod",
                    format!("o.kind == 'ReplicaSet' && o.name.matches('^{regex_name}-[a-z0-9]+$')"),
                ),
            ],
            "CronJob" => vec![
                ("Job", format!("o.kind == 'CronJob' && o.name == '{name}'")),
                (
                    "Pod",
                    format!("o.kind == 'Job' && o.name.matches('^{regex_name}-[0-9]+$')"),
                ),
            ],
            "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                vec![("Pod", format!("o.kind == '{kind}' && o.name == '{name}'"))]
            }
            _ => Vec::new(),
        };
        let this = format!("(request.kind.kind == '{kind}' && request.name == '{name}')");
        if owned.is_empty() {
            return format!("!(request.namespace == '{ns}' && {this})");
        }
        let children: Vec<String> = owned
            .iter()
            .map(|(child, owner)| {
                format!(
                    "(request.kind.kind == '{child}' \
                     && object.metadata.ownerReferences.exists(o, {owner}))"
                )
            })
            .collect();
        format!(
            "!(request.namespace == '{ns}' && ({this} \
             || ({CONTROLLER_REQUEST} && has(object.metadata.ownerReferences) \
             && ({}))))",
            children.join(" || ")
        )
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Reads a YAML list of exemptions (the format of `cargo xtask policy check --exemptions`).
pub fn load_exemptions(path: &Path) -> Result<Vec<Exemption>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|source| Error::Yaml {
        path: path.to_owned(),
        document: 0,
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn every_condition_holds_unless_the_request_is_in_the_exemptions_namespace() {
        // Bundle::check evaluates only the exemptions of the request's namespace: sound only
        // while each condition is `!(request.namespace == '<namespace>' && …)`.
        for kind in [
            "Deployment",
            "CronJob",
            "StatefulSet",
            "Job",
            "Service",
            "ClusterRole",
        ] {
            let namespace = if kind == "ClusterRole" { "" } else { "antaeus" };
            let exemption = Exemption {
                kind: kind.into(),
                namespace: namespace.into(),
                ..antaeus()
            };
            let condition = exemption.condition();
            assert!(
                condition.starts_with(&format!("!(request.namespace == '{namespace}' && ")),
                "{condition}"
            );
            // ... and that parenthesis closes at the very end: nothing is or-ed outside it.
            let mut depth = 0;
            let closes_at = condition.char_indices().find_map(|(at, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                (c == ')' && depth == 0).then_some(at)
            });
            assert_eq!(closes_at, Some(condition.len() - 1), "{condition}");
        }
    }

    pub(crate) fn antaeus() -> Exemption {
        Exemption {
            rule: "run-as-non-root".into(),
            kind: "Deployment".into(),
            namespace: "antaeus".into(),
            name: "antaeus".into(),
            reason: "the stock image runs ./gradlew as root".into(),
            scanner_checks: Vec::new(),
        }
    }

    #[test]
    fn the_condition_names_the_object_and_its_replica_sets() {
        let condition = antaeus().condition();
        assert!(
            condition.contains("request.namespace == 'antaeus'"),
            "{condition}"
        );
        assert!(condition.contains("o.kind == 'ReplicaSet'"), "{condition}");
    }

    #[test]
    fn condition_names_are_short_enough_for_the_api_and_distinct() {
        let mut long = antaeus();
        long.name = "a".repeat(60);
        let mut other = long.clone();
        other.name = format!("{}b", "a".repeat(59));
        assert!(long.condition_name().len() <= 63);
        assert_ne!(long.condition_name(), other.condition_name());
        assert_eq!(
            antaeus().condition_name(),
            "exempt-deployment-antaeus-antaeus"
        );
    }

    #[test]
    fn an_exemption_without_a_reason_is_invalid() {
        let mut exemption = antaeus();
        exemption.reason = " ".into();
        let err = exemption.validate().expect_err("no reason");
        assert!(err.to_string().contains("no reason"), "{err}");
    }

    #[test]
    fn names_that_would_need_quoting_are_invalid() {
        let mut exemption = antaeus();
        exemption.name = "x' || true || '".into();
        assert!(exemption.validate().is_err());
    }

    #[test]
    fn cluster_scoped_exemptions_take_no_namespace() {
        let exemption = Exemption {
            rule: "rbac-no-wildcards".into(),
            kind: "ClusterRole".into(),
            namespace: String::new(),
            name: "flux-edit".into(),
            reason: "r".into(),
            scanner_checks: Vec::new(),
        };
        assert!(exemption.validate().is_ok());
        assert_eq!(exemption.object(), "ClusterRole/flux-edit");
    }
}
