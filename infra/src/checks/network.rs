//! Checks of NetworkPolicies: selectors that select pods, namespace AND pod selector in one peer
//! (two peers are ORed), ports the pods or peers really serve, and default-deny coverage of every
//! workload.

use serde_json::Value;

use super::selectors::{Labels, matching_namespaces, selects};
use super::{Cluster, Pods, ns_of};

/// Namespaces the cluster provides (not in the tree) that policies may name: DNS lives here.
const CLUSTER_NAMESPACES: &[&str] = &["kube-system"];

/// Reports each direction in which no default-deny policy of `ns` covers pods with `labels`.
pub(super) fn check_default_deny(
    cluster: &Cluster<'_>,
    ns: &str,
    labels: &Labels<'_>,
    report: &mut impl FnMut(String),
) {
    for direction in ["Ingress", "Egress"] {
        let covered = cluster
            .policies
            .get(ns)
            .into_iter()
            .flatten()
            .any(|policy| {
                is_deny_all(policy, direction) && selects(&policy["spec"]["podSelector"], labels)
            });
        if !covered {
            report(format!(
                "its pods are not covered by a default-deny NetworkPolicy for {direction} (empty podSelector, policyTypes [{direction}], no rules)"
            ));
        }
    }
}

pub(super) fn is_deny_all(policy: &Value, direction: &str) -> bool {
    let field = if direction == "Ingress" {
        "ingress"
    } else {
        "egress"
    };
    let types_ok = policy["spec"]["policyTypes"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == direction));
    let no_rules = policy["spec"][field].as_array().is_none_or(Vec::is_empty);
    types_ok && no_rules
}

pub(super) fn check_policy(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    let pod_selector = &value["spec"]["podSelector"];
    let local: Vec<&Pods<'_>> = cluster
        .pods
        .get(ns)
        .into_iter()
        .flatten()
        .filter(|p| selects(pod_selector, &p.labels))
        .collect();
    let selects_all = pod_selector.as_object().is_none_or(|m| {
        m.values()
            .all(|v| v.as_object().is_some_and(|o| o.is_empty()))
    });
    if local.is_empty() && !selects_all {
        report(format!(
            "podSelector {pod_selector} selects no pod in namespace `{ns}`"
        ));
    }
    if !cluster.namespaces.contains_key(ns) {
        report(format!("namespace `{ns}` is not declared in the tree"));
    }
    for (field, peers_field) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in value["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let peers: Vec<&Value> = rule[peers_field].as_array().into_iter().flatten().collect();
            let mut peer_pods: Vec<&Pods<'_>> = Vec::new();
            let mut external = peers.is_empty();
            for (j, peer) in peers.iter().enumerate() {
                let at = format!("{field}[{i}].{peers_field}[{j}]");
                if !peer["ipBlock"].is_null() {
                    external = true;
                    continue;
                }
                match (
                    peer["namespaceSelector"].is_null(),
                    peer["podSelector"].is_null(),
                ) {
                    (false, true) => {
                        report(format!(
                            "{at} has a namespaceSelector without a podSelector: it admits every pod of the matched namespaces (a podSelector in a separate peer item is ORed, not ANDed)"
                        ));
                        continue;
                    }
                    (true, false) => {
                        report(format!(
                            "{at} has a podSelector without a namespaceSelector: it matches pods of `{ns}` only (a namespaceSelector in a separate peer item is ORed, not ANDed)"
                        ));
                        continue;
                    }
                    _ => {}
                }
                let namespaces = matching_namespaces(cluster, &peer["namespaceSelector"]);
                let names_cluster_namespace = CLUSTER_NAMESPACES.iter().any(|cns| {
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == *cns
                });
                if names_cluster_namespace {
                    external = true;
                    continue;
                }
                let matched: Vec<&Pods<'_>> = namespaces
                    .iter()
                    .flat_map(|n| cluster.pods.get(n).into_iter().flatten())
                    .filter(|p| selects(&peer["podSelector"], &p.labels))
                    .collect();
                if matched.is_empty() {
                    report(format!(
                        "{at} names no workload: no pod matches its namespaceSelector and podSelector"
                    ));
                }
                peer_pods.extend(matched);
            }
            // Ingress ports are the selected pods' ports; egress ports are the peers' ports.
            let owners: &[&Pods<'_>] = if field == "ingress" {
                &local
            } else {
                &peer_pods
            };
            if owners.is_empty() || (field == "egress" && external) {
                continue;
            }
            for port in rule["ports"].as_array().into_iter().flatten() {
                let number = &port["port"];
                if !number.is_null() && !owners.iter().any(|p| p.has_port(number)) {
                    let whose = if field == "ingress" {
                        "the pods it selects"
                    } else {
                        "the peers it allows"
                    };
                    report(format!(
                        "{field}[{i}] allows port {number}, which is not a container port of {whose}"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::tests::{assert_found, broken};
    use serde_json::json;

    const PROVIDER_POLICIES: &str =
        "flux/tenants/production/payments/payment-provider/network-policies.yaml";

    #[test]
    fn a_network_policy_whose_labels_match_nothing_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
                    json!("provider");
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: podSelector {{\"matchLabels\":{{\"app.kubernetes.io/name\":\"provider\"}}}} selects no pod in namespace `payment-provider`"
            ),
        );
    }

    #[test]
    fn namespace_and_pod_selectors_in_two_peers_are_reported_as_or_instead_of_and() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                let peer = v["spec"]["ingress"][0]["from"][0].clone();
                v["spec"]["ingress"][0]["from"] = json!([
                    {"namespaceSelector": peer["namespaceSelector"]},
                    {"podSelector": peer["podSelector"]},
                ]);
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[0] has a namespaceSelector without a podSelector: it admits every pod of the matched namespaces (a podSelector in a separate peer item is ORed, not ANDed)"
            ),
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[1] has a podSelector without a namespaceSelector: it matches pods of `payment-provider` only (a namespaceSelector in a separate peer item is ORed, not ANDed)"
            ),
        );
    }

    #[test]
    fn a_network_policy_on_the_wrong_port_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["ingress"][0]["ports"][0]["port"] = json!(8080);
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0] allows port 8080, which is not a container port of the pods it selects"
            ),
        );
    }

    #[test]
    fn an_egress_rule_on_a_port_the_callee_does_not_serve_is_reported() {
        let file = "flux/tenants/staging/invoicing/antaeus/network-policies.yaml";
        let found = broken(file, "NetworkPolicy", "antaeus", "allow-egress", |v| {
            v["spec"]["egress"][0]["ports"][0]["port"] = json!(8000);
        });
        assert_found(
            &found,
            &format!(
                "{file}: NetworkPolicy/antaeus/allow-egress: egress[0] allows port 8000, which is not a container port of the peers it allows"
            ),
        );
    }

    #[test]
    fn a_peer_that_names_no_workload_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] =
                    json!("antaeus-old");
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[0] names no workload: no pod matches its namespaceSelector and podSelector"
            ),
        );
    }

    #[test]
    fn a_workload_not_covered_by_default_deny_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/network-policies.yaml";
        let found = broken(file, "NetworkPolicy", "antaeus", "default-deny", |v| {
            v["spec"]["policyTypes"] = json!(["Ingress"]);
        });
        assert_found(
            &found,
            "flux/apps/antaeus/production/deployment.yaml: Deployment/antaeus/antaeus: its pods are not covered by a default-deny NetworkPolicy for Egress (empty podSelector, policyTypes [Egress], no rules)",
        );
    }
}
