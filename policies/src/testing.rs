//! Synthetic platforms for tests and benchmarks: `n` services as the objects the generator emits
//! for each (same labels, same split between what the platform and the tenant apply, same
//! platform settings), every one passing every rule. `policies` cannot depend on the generator
//! (`infra` depends on it), so this mirrors its shape; infra's own tests check the real tree.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{Admission, PARAMS_CONFIG_MAP, SourcedObject, UserInfo};

/// The registry the synthetic images live in.
pub const REGISTRY: &str = "ghcr.io/billing-platform";
/// The digest every synthetic image is pinned to.
pub const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// The generator's tenant account, in every service namespace.
pub const TENANT_ACCOUNT: &str = "flux-reconciler";
/// The generator's ClusterRole for tenant accounts.
pub const TENANT_ROLE: &str = "flux-tenant";

/// The platform's Flux reconciler: what applies clusters/, infrastructure/ and tenants/.
pub fn platform() -> UserInfo {
    UserInfo::service_account("flux-system", "kustomize-controller")
}

/// The tenant account of `namespace`: what applies apps/<service>/.
pub fn tenant(namespace: &str) -> UserInfo {
    UserInfo::service_account(namespace, TENANT_ACCOUNT)
}

/// The name of synthetic service `i`.
pub fn service_name(i: usize) -> String {
    format!("svc-{i:04}")
}

/// The objects of `n` services, each in its own namespace, plus the cluster-scoped tenant
/// ClusterRole: 15 objects per service, every one passing every rule in every environment.
pub fn synthetic_objects(n: usize) -> Vec<SourcedObject> {
    let mut objects = vec![applied(
        "flux/infrastructure/production/tenant-role.yaml",
        platform(),
        tenant_role(),
    )];
    objects.extend((0..n).flat_map(service));
    objects
}

/// The objects of one service (see [`synthetic_objects`]).
pub fn service(i: usize) -> Vec<SourcedObject> {
    let name = service_name(i);
    let ns = name.as_str();
    let team = format!("team-{}", i % 10);
    let labels = labels(ns, &team);
    let selector = json!({"app.kubernetes.io/name": ns});
    let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": labels});
    let tenants = |file: &str| format!("flux/tenants/production/{ns}/{file}");
    let apps = |file: &str| format!("flux/apps/{ns}/production/{file}");
    let platform_objects = [
        (
            "flux/infrastructure/production/namespaces.yaml".to_owned(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}),
        ),
        (
            tenants("platform-policy.yaml"),
            params(ns, &format!("{REGISTRY}/{ns}"), DIGEST, "cluster"),
        ),
        (
            tenants("quota.yaml"),
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("platform-quota"),
                "spec": {"hard": {"pods": "6", "requests.cpu": "300m", "requests.memory": "384Mi",
                    "limits.cpu": "3", "limits.memory": "768Mi"}}}),
        ),
        (
            tenants("quota.yaml"),
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("platform-limits"),
                "spec": {"limits": [{"type": "Container",
                    "max": {"cpu": "500m", "memory": "128Mi"},
                    "default": {"cpu": "500m", "memory": "128Mi"},
                    "defaultRequest": {"cpu": "50m", "memory": "64Mi"}}]}}),
        ),
        (
            tenants("flux-tenant.yaml"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(TENANT_ACCOUNT),
                "automountServiceAccountToken": false}),
        ),
        (
            tenants("flux-tenant.yaml"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": meta(TENANT_ACCOUNT),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": TENANT_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": TENANT_ACCOUNT, "namespace": ns}]}),
        ),
        (
            tenants("developer-rbac.yaml"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta("developer"),
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"],
                 "verbs": ["get", "list", "watch", "patch", "update"]},
                {"apiGroups": ["apps"], "resources": ["deployments/scale"],
                 "verbs": ["get", "patch", "update"]},
                {"apiGroups": [""], "resources": ["pods", "pods/log", "events"],
                 "verbs": ["get", "list", "watch"]},
            ]}),
        ),
        (
            tenants("developer-rbac.yaml"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": meta("developer"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "developer"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": team}]}),
        ),
        (
            tenants("network-policies.yaml"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": meta("default-deny"),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        ),
        (
            tenants("network-policies.yaml"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("allow-ingress"),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "caller"}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "caller"}},
                    }],
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }],
            }}),
        ),
    ];
    let tenant_objects = [
        (
            apps("service-account.yaml"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(ns),
                "automountServiceAccountToken": false}),
        ),
        (apps("deployment.yaml"), deployment(ns, &labels)),
        (
            apps("service.yaml"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(ns),
                "spec": {"type": "ClusterIP", "selector": selector,
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]}}),
        ),
        (
            apps("pod-disruption-budget.yaml"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(ns),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}}),
        ),
    ];
    platform_objects
        .into_iter()
        .map(|(file, object)| applied(&file, platform(), object))
        .chain(
            tenant_objects
                .into_iter()
                .map(|(file, object)| applied(&file, tenant(ns), object)),
        )
        .collect()
}

/// The generator's labels for a service's objects.
pub fn labels(service: &str, team: &str) -> Value {
    json!({
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/part-of": "billing",
        "app.kubernetes.io/managed-by": "cargo-xtask-gen",
        "billing-platform/team": team,
    })
}

/// The platform settings of `namespace` (the ConfigMap rules with `params: true` read).
pub fn params(namespace: &str, repository: &str, digests: &str, expose: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": PARAMS_CONFIG_MAP, "namespace": namespace},
        "data": {
            "serviceAccount": namespace,
            "reconciler": TENANT_ACCOUNT,
            "imageRepository": repository,
            "imageDigests": digests,
            "secrets": "",
            "maxReplicas": "4",
            "expose": expose,
            "bindableRoles": format!("Role/developer,ClusterRole/{TENANT_ROLE}"),
        },
    })
}

/// A compliant Deployment of service `ns`, as the generator writes it.
pub fn deployment(ns: &str, labels: &Value) -> Value {
    let probe = json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": ns, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": ns}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": ns,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "app",
                        "image": format!("{REGISTRY}/{ns}:1.4.2@{DIGEST}"),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "livenessProbe": probe,
                        "readinessProbe": probe,
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "privileged": false,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    })
}

/// The ClusterRole tenant accounts are bound to in their namespace.
pub fn tenant_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": TENANT_ROLE, "labels": labels("platform", "platform")},
        "rules": [
            {"apiGroups": ["", "apps", "policy"],
             "resources": ["serviceaccounts", "services", "deployments", "poddisruptionbudgets"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ],
    })
}

/// `object` read from `file`, created by `user`.
pub fn applied(file: &str, user: UserInfo, object: Value) -> SourcedObject {
    SourcedObject {
        file: PathBuf::from(file),
        object,
        admission: Admission::create_as(user),
    }
}

/// The first object of `kind` in `objects`.
pub fn find_mut<'a>(objects: &'a mut [SourcedObject], kind: &str) -> &'a mut Value {
    &mut objects
        .iter_mut()
        .find(|o| o.object["kind"] == kind)
        .unwrap_or_else(|| panic!("the synthetic set has a {kind}"))
        .object
}
