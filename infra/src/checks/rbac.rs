//! Checks of RBAC: bindings inside their service's namespace, to Roles and accounts that exist;
//! rules that name a resource under its real API group; no cluster-wide bindings.

use serde_json::Value;

use super::{Cluster, ns_of};

/// ClusterRoles every cluster has.
const BUILTIN_CLUSTER_ROLES: &[&str] = &["cluster-admin", "admin", "edit", "view"];

/// Which API group a resource lives in, for the resources Roles commonly name.
const RESOURCE_GROUPS: &[(&str, &str)] = &[
    ("pods", ""),
    ("pods/log", ""),
    ("pods/exec", ""),
    ("pods/portforward", ""),
    ("services", ""),
    ("endpoints", ""),
    ("configmaps", ""),
    ("secrets", ""),
    ("serviceaccounts", ""),
    ("persistentvolumeclaims", ""),
    ("deployments", "apps"),
    ("deployments/scale", "apps"),
    ("replicasets", "apps"),
    ("statefulsets", "apps"),
    ("daemonsets", "apps"),
    ("jobs", "batch"),
    ("cronjobs", "batch"),
    ("ingresses", "networking.k8s.io"),
    ("networkpolicies", "networking.k8s.io"),
    ("roles", "rbac.authorization.k8s.io"),
    ("rolebindings", "rbac.authorization.k8s.io"),
    ("poddisruptionbudgets", "policy"),
    ("endpointslices", "discovery.k8s.io"),
];

/// The platform grants rights per service namespace only.
pub(super) fn check_cluster_role_binding(report: &mut impl FnMut(String)) {
    report(
        "grants cluster-wide rights: the platform grants rights per service namespace only (use a RoleBinding)".into(),
    );
}

pub(super) fn check_role_binding(
    cluster: &Cluster<'_>,
    value: &Value,
    report: &mut impl FnMut(String),
) {
    let ns = ns_of(value);
    match cluster.namespaces.get(ns) {
        None => report(format!(
            "grants rights in namespace `{ns}`, which is not declared in the tree"
        )),
        Some(ns_labels) => {
            let service = value["metadata"]["labels"]["app.kubernetes.io/name"].as_str();
            let owner = ns_labels.get("app.kubernetes.io/name").copied();
            if let Some(service) = service
                && owner != Some(service)
            {
                report(format!(
                    "grants rights in namespace `{ns}`, outside its service `{service}`'s namespace"
                ));
            }
        }
    }
    let role_ref = &value["roleRef"];
    let role = role_ref["name"].as_str().unwrap_or("");
    match role_ref["kind"].as_str().unwrap_or("") {
        "Role" if !cluster.roles.contains(&(ns, role)) => {
            report(format!(
                "references Role `{role}`, which does not exist in namespace `{ns}`"
            ));
        }
        "ClusterRole"
            if !BUILTIN_CLUSTER_ROLES.contains(&role) && !cluster.cluster_roles.contains(role) =>
        {
            report(format!(
                "references ClusterRole `{role}`, which is neither built in nor in the tree"
            ));
        }
        _ => {}
    }
    for subject in value["subjects"].as_array().into_iter().flatten() {
        if subject["kind"] != "ServiceAccount" {
            continue;
        }
        let name = subject["name"].as_str().unwrap_or("");
        let sa_ns = subject["namespace"].as_str().unwrap_or(ns);
        if sa_ns != ns {
            report(format!(
                "grants rights in `{ns}` to ServiceAccount `{sa_ns}/{name}` of another namespace"
            ));
        } else if !cluster.service_accounts.contains(&(sa_ns, name)) {
            report(format!(
                "references ServiceAccount `{sa_ns}/{name}`, which does not exist"
            ));
        }
    }
}

pub(super) fn check_role(value: &Value, report: &mut impl FnMut(String)) {
    for (i, rule) in value["rules"].as_array().into_iter().flatten().enumerate() {
        let groups: Vec<&str> = rule["apiGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if groups.contains(&"*") {
            continue;
        }
        for resource in rule["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let Some((_, home)) = RESOURCE_GROUPS.iter().find(|(r, _)| *r == resource) else {
                continue;
            };
            if !groups.contains(home) {
                let shown: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
                report(format!(
                    "rules[{i}] grants `{resource}` under API group(s) [{}], where it does not exist: it lives in {home:?}, so the rule grants nothing",
                    shown.join(", ")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::tests::{assert_found, broken};
    use serde_json::json;

    #[test]
    fn a_role_granting_deployments_under_the_core_group_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/developer-rbac.yaml";
        let found = broken(file, "Role", "antaeus", "developer", |v| {
            v["rules"][0]["apiGroups"] = json!([""]);
        });
        assert_found(
            &found,
            &format!(
                "{file}: Role/antaeus/developer: rules[0] grants `deployments` under API group(s) [\"\"], where it does not exist: it lives in \"apps\", so the rule grants nothing"
            ),
        );
    }

    #[test]
    fn a_role_binding_to_a_missing_role_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/developer-rbac.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "developer", |v| {
            v["roleRef"]["name"] = json!("developers");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/developer: references Role `developers`, which does not exist in namespace `antaeus`"
            ),
        );
    }

    #[test]
    fn a_role_binding_to_a_missing_service_account_is_reported() {
        let file = "flux/tenants/staging/invoicing/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["subjects"][0]["name"] = json!("flux");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/flux-reconciler: references ServiceAccount `antaeus/flux`, which does not exist"
            ),
        );
    }

    #[test]
    fn a_role_binding_outside_its_service_namespace_is_reported() {
        let file = "flux/tenants/staging/invoicing/antaeus/developer-rbac.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "developer", |v| {
            v["metadata"]["namespace"] = json!("payment-provider");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/payment-provider/developer: grants rights in namespace `payment-provider`, outside its service `antaeus`'s namespace"
            ),
        );
    }

    #[test]
    fn a_binding_for_a_service_account_of_another_namespace_is_reported() {
        let file = "flux/tenants/staging/invoicing/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["subjects"][0]["namespace"] = json!("payment-provider");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/flux-reconciler: grants rights in `antaeus` to ServiceAccount `payment-provider/flux-reconciler` of another namespace"
            ),
        );
    }

    #[test]
    fn a_cluster_role_binding_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["kind"] = json!("ClusterRoleBinding");
        });
        assert_found(
            &found,
            &format!(
                "{file}: ClusterRoleBinding/antaeus/flux-reconciler: grants cluster-wide rights: the platform grants rights per service namespace only (use a RoleBinding)"
            ),
        );
    }
}
