//! Checks of workloads and Services: selectors that match their pods, probes and target ports on
//! real container ports, accounts and namespaces that exist.

use serde_json::Value;

use super::network::check_default_deny;
use super::selectors::{labels_of, selects};
use super::{Cluster, Pods, ns_of};
use crate::tree::describe;

pub(super) fn check_workload(
    cluster: &Cluster<'_>,
    value: &Value,
    report: &mut impl FnMut(String),
) {
    let ns = ns_of(value);
    let template = &value["spec"]["template"];
    let labels = labels_of(&template["metadata"]["labels"]);
    if !selects(&value["spec"]["selector"], &labels) {
        report("spec.selector does not match the pod template's labels".into());
    }
    let pods = cluster
        .pods
        .get(ns)
        .and_then(|all| all.iter().find(|p| p.workload == describe(value)));
    for container in template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            let port = if port.is_null() {
                &container[probe]["tcpSocket"]["port"]
            } else {
                port
            };
            if !port.is_null() && !pods.is_some_and(|p| p.has_port(port)) {
                report(format!(
                    "container `{}` {probe} targets port {port}, which is not a declared container port",
                    container["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    let account = template["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if account != "default" && !cluster.service_accounts.contains(&(ns, account)) {
        report(format!(
            "runs as ServiceAccount `{account}`, which does not exist in namespace `{ns}`"
        ));
    }
    if !cluster.namespaces.contains_key(ns) {
        report(format!("namespace `{ns}` is not declared in the tree"));
    }
    check_default_deny(cluster, ns, &labels, report);
}

pub(super) fn check_service(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    let selector = &value["spec"]["selector"];
    let Some(selector_map) = selector.as_object() else {
        report("has no selector: it selects no pod (and would need hand-made Endpoints)".into());
        return;
    };
    let selected: Vec<&Pods<'_>> = cluster
        .pods
        .get(ns)
        .into_iter()
        .flatten()
        .filter(|p| {
            selector_map
                .iter()
                .all(|(k, v)| p.labels.get(k.as_str()).copied() == v.as_str())
        })
        .collect();
    if selected.is_empty() {
        report(format!(
            "selector {selector} selects no pod in namespace `{ns}`"
        ));
        return;
    }
    for port in value["spec"]["ports"].as_array().into_iter().flatten() {
        let target = if port["targetPort"].is_null() {
            &port["port"]
        } else {
            &port["targetPort"]
        };
        if !selected.iter().all(|p| p.has_port(target)) {
            report(format!(
                "targetPort {target} is not a container port of the pods it selects"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::tests::{assert_found, broken};
    use serde_json::json;

    #[test]
    fn a_service_selecting_nothing_is_reported() {
        let file = "flux/apps/payment-provider/production/service.yaml";
        let found = broken(
            file,
            "Service",
            "payment-provider",
            "payment-provider",
            |v| {
                v["spec"]["selector"]["app.kubernetes.io/name"] = json!("payments");
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Service/payment-provider/payment-provider: selector {{\"app.kubernetes.io/name\":\"payments\"}} selects no pod in namespace `payment-provider`"
            ),
        );
    }

    #[test]
    fn a_service_target_port_that_is_not_a_container_port_is_reported() {
        let file = "flux/apps/payment-provider/production/service.yaml";
        let found = broken(
            file,
            "Service",
            "payment-provider",
            "payment-provider",
            |v| {
                v["spec"]["ports"][0]["targetPort"] = json!(9090);
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Service/payment-provider/payment-provider: targetPort 9090 is not a container port of the pods it selects"
            ),
        );
    }

    #[test]
    fn a_probe_on_an_undeclared_port_is_reported() {
        let file = "flux/apps/antaeus/production/deployment.yaml";
        let found = broken(file, "Deployment", "antaeus", "antaeus", |v| {
            v["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] =
                json!(8080);
        });
        assert_found(
            &found,
            &format!(
                "{file}: Deployment/antaeus/antaeus: container `antaeus` livenessProbe targets port 8080, which is not a declared container port"
            ),
        );
    }
}
