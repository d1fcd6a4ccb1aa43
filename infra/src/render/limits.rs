//! What a tenant may consume, applied by the platform into its namespace: a ResourceQuota sized
//! from the spec (pods up to the service's `max_replicas` plus a rollout's surge, their requests
//! and limits, no storage, load balancers only where exposed, bounded object counts), a second quota that holds pods of
//! Kubernetes' own priority classes at zero, and a LimitRange that caps each container at the
//! limits the spec declares (and fills them in for any pod that names none).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec, ScopeSelector,
    ScopedResourceSelectorRequirement,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::services::ServiceCtx;
use super::workload::quantities;
use crate::Error;
use crate::spec::{Expose, syntax};
use crate::tree::Object;

/// The quota on everything the namespace runs.
pub const QUOTA: &str = "platform-quota";
/// The quota that keeps pods of Kubernetes' own priority classes out.
pub const CRITICAL_QUOTA: &str = "platform-critical-priority";
/// The per-container limits.
pub const LIMIT_RANGE: &str = "platform-limits";
/// The priority classes Kubernetes keeps for its own pods.
pub const CRITICAL_CLASSES: &[&str] = &["system-node-critical", "system-cluster-critical"];

/// Object counts per namespace, so a tenant cannot fill etcd (a ConfigMap holds up to 1 MiB):
/// room for what the tree applies and what Kubernetes adds (`kube-root-ca.crt`, the `default`
/// account), with a little headroom. One PodDisruptionBudget only: a pod under two cannot be
/// evicted at all, so a second one would block every drain.
pub const OBJECT_COUNTS: &[(&str, &str)] = &[
    // kube-root-ca.crt, platform-policy, and the service's own.
    ("configmaps", "10"),
    // default, flux-reconciler, the service's own.
    ("count/serviceaccounts", "5"),
    // The service's Deployment, and its successor while Flux prunes a rename.
    ("count/deployments.apps", "2"),
    ("count/poddisruptionbudgets.policy", "1"),
];

/// Pods a Deployment at `max` replicas can have during a rollout (maxSurge 25%, rounded up).
pub fn pod_ceiling(max: i32) -> i64 {
    let max = i64::from(max.max(1));
    max + (max + 3) / 4
}

pub(super) fn limits(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let service = ctx.service;
    let pods = pod_ceiling(service.replicas_ceiling());
    let times = |q: &str, what: &str| -> Result<Quantity, Error> {
        let milli = syntax::milli_units(q).ok_or_else(|| {
            Error::Reference(format!(
                "service `{}`: {what} `{q}` is not a quantity",
                service.name
            ))
        })?;
        Ok(quantity(milli * pods as u128, what.ends_with("cpu")))
    };
    let (requests, limits) = (&service.resources.requests, &service.resources.limits);
    let exposed_ports = match service.expose {
        Expose::LoadBalancer => service.ports.len(),
        Expose::Cluster => 0,
    };
    let mut hard = BTreeMap::from([
        ("pods".to_owned(), Quantity(pods.to_string())),
        (
            "requests.cpu".to_owned(),
            times(&requests.cpu, "requests.cpu")?,
        ),
        ("limits.cpu".to_owned(), times(&limits.cpu, "limits.cpu")?),
        (
            "requests.memory".to_owned(),
            times(&requests.memory, "requests.memory")?,
        ),
        (
            "limits.memory".to_owned(),
            times(&limits.memory, "limits.memory")?,
        ),
        // No storage on this platform: no claims, no bytes of it.
        ("persistentvolumeclaims".to_owned(), Quantity("0".into())),
        ("requests.storage".to_owned(), Quantity("0".into())),
        ("services".to_owned(), Quantity("1".into())),
        (
            "services.loadbalancers".to_owned(),
            Quantity(usize::from(exposed_ports > 0).to_string()),
        ),
        // A LoadBalancer allocates a node port per port; nothing else may.
        (
            "services.nodeports".to_owned(),
            Quantity(exposed_ports.to_string()),
        ),
    ]);
    hard.extend(
        OBJECT_COUNTS
            .iter()
            .map(|(name, count)| ((*name).to_owned(), Quantity((*count).to_owned()))),
    );
    let quota = ResourceQuota {
        metadata: ctx.metadata(QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        status: None,
    };
    let critical = ResourceQuota {
        metadata: ctx.metadata(CRITICAL_QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([("pods".to_owned(), Quantity("0".into()))])),
            scope_selector: Some(ScopeSelector {
                match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                    scope_name: "PriorityClass".into(),
                    operator: "In".into(),
                    values: Some(CRITICAL_CLASSES.iter().map(|c| (*c).to_owned()).collect()),
                }]),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let range = LimitRange {
        metadata: ctx.metadata(LIMIT_RANGE),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                max: Some(quantities(limits)),
                default: Some(quantities(limits)),
                default_request: Some(quantities(requests)),
                ..Default::default()
            }],
        }),
    };
    Ok(vec![
        Object::new(&quota)?,
        Object::new(&critical)?,
        Object::new(&range)?,
    ])
}

/// `milli` thousandths as a quantity: millicores for CPU, the largest exact binary unit for
/// memory.
fn quantity(milli: u128, cpu: bool) -> Quantity {
    if cpu {
        return Quantity(if milli.is_multiple_of(1000) {
            (milli / 1000).to_string()
        } else {
            format!("{milli}m")
        });
    }
    let bytes = milli.div_ceil(1000);
    for (suffix, unit) in [("Gi", 1u128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return Quantity(format!("{}{suffix}", bytes / unit));
        }
    }
    Quantity(bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, find};

    #[test]
    fn the_quota_covers_a_rollout_at_the_most_replicas_and_nothing_more() {
        assert_eq!(pod_ceiling(6), 8);
        assert_eq!(pod_ceiling(1), 2);
        let quota = find(
            testing::tree(),
            "ResourceQuota",
            "payment-provider",
            QUOTA,
            "production",
        );
        // 3 replicas in production → at most 6, plus a 25% surge: 8 pods of 50m / 500m CPU.
        let hard = &quota["spec"]["hard"];
        assert_eq!(hard["pods"], "8");
        assert_eq!(hard["requests.cpu"], "400m");
        assert_eq!(hard["limits.cpu"], "4");
        assert_eq!(hard["limits.memory"], "1Gi");
        assert_eq!(hard["services.loadbalancers"], "0");
        assert_eq!(hard["persistentvolumeclaims"], "0");
        assert_eq!(hard["count/poddisruptionbudgets.policy"], "1");
        assert_eq!(hard["configmaps"], "10");
    }

    #[test]
    fn kubernetes_own_priority_classes_get_no_pods() {
        let quota = find(
            testing::tree(),
            "ResourceQuota",
            "antaeus",
            CRITICAL_QUOTA,
            "staging",
        );
        assert_eq!(quota["spec"]["hard"]["pods"], "0");
        let values = &quota["spec"]["scopeSelector"]["matchExpressions"][0]["values"];
        assert_eq!(values, &serde_json::json!(CRITICAL_CLASSES));
    }

    #[test]
    fn an_exposed_service_gets_one_load_balancer_and_its_node_ports() {
        let quota = find(
            testing::tree(),
            "ResourceQuota",
            "antaeus",
            QUOTA,
            "staging",
        );
        assert_eq!(quota["spec"]["hard"]["services.loadbalancers"], "1");
        assert_eq!(quota["spec"]["hard"]["services.nodeports"], "1");
    }

    #[test]
    fn memory_quantities_keep_the_largest_exact_unit() {
        assert_eq!(quantity(1536 * (1 << 20) * 1000, false).0, "1536Mi");
        assert_eq!(quantity(2 * (1 << 30) * 1000, false).0, "2Gi");
        assert_eq!(quantity(1500, true).0, "1500m");
        assert_eq!(quantity(3000, true).0, "3");
    }
}
