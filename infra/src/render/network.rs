//! A service's NetworkPolicies: default-deny, DNS, declared callers in, declared callees out.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::services::ServiceCtx;
use crate::Error;
use crate::meta;
use crate::spec::Expose;
use crate::tree::Object;

pub(super) fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Namespace AND pod selector in one peer: only that service's pods in that service's namespace.
pub(super) fn service_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(meta::namespace_selector(name)),
        pod_selector: Some(meta::pod_selector(name)),
        ..Default::default()
    }
}

pub(super) fn policies(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let (service, callees) = (ctx.service, ctx.callees);
    let policy =
        |name: &str, pod_selector: LabelSelector, types: &[&str], ingress, egress| NetworkPolicy {
            metadata: ctx.metadata(name),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(pod_selector),
                policy_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
                ingress,
                egress,
            }),
        };
    let mut out = vec![
        // Everything in the namespace: nothing in, nothing out, unless allowed below.
        policy(
            "default-deny",
            LabelSelector::default(),
            &["Ingress", "Egress"],
            None,
            None,
        ),
        policy(
            "allow-dns",
            meta::pod_selector(&service.name),
            &["Egress"],
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(meta::namespace_selector("kube-system")),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "k8s-app".to_owned(),
                            "kube-dns".to_owned(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![
                    NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                    tcp(53),
                ]),
            }]),
        ),
    ];
    let mut ingress: Vec<NetworkPolicyIngressRule> = service
        .callers
        .iter()
        .map(|caller| NetworkPolicyIngressRule {
            from: Some(vec![service_peer(&caller.service)]),
            ports: Some(vec![tcp(caller.port)]),
        })
        .collect();
    if service.expose == Expose::LoadBalancer {
        // No `from`: any source, including clients outside the cluster through the load balancer.
        ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(service.ports.iter().map(|p| tcp(p.port)).collect()),
        });
    }
    if !ingress.is_empty() {
        out.push(policy(
            "allow-ingress",
            meta::pod_selector(&service.name),
            &["Ingress"],
            Some(ingress),
            None,
        ));
    }
    if !callees.is_empty() {
        let egress = callees
            .iter()
            .map(|(callee, port)| NetworkPolicyEgressRule {
                to: Some(vec![service_peer(callee)]),
                ports: Some(vec![tcp(*port)]),
            })
            .collect();
        out.push(policy(
            "allow-egress",
            meta::pod_selector(&service.name),
            &["Egress"],
            None,
            Some(egress),
        ));
    }
    out.iter().map(Object::new).collect()
}

#[cfg(test)]
mod tests {
    use crate::testing::{self, find};

    #[test]
    fn the_provider_admits_antaeus_only_with_namespace_and_pod_selector_in_one_peer() {
        let tree = testing::tree();
        let policy = find(
            tree,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            "production",
        );
        let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
        assert_eq!(rules.len(), 1);
        let from = rules[0]["from"].as_array().expect("peers");
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "antaeus"
        );
        assert_eq!(
            from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
            "antaeus"
        );
        assert_eq!(rules[0]["ports"][0]["port"], 9000);
    }
}
