//! Synthetic platforms for benchmarks and tests: `n` services rendered as the objects the
//! generator emits for each, all compliant with the bundle.

use std::path::PathBuf;

use serde_json::json;

use crate::SourcedObject;

/// The objects of `n` services, each in its own namespace: Namespace, ServiceAccount,
/// Deployment, Service, developer Role and RoleBinding, Flux tenant RoleBinding, and two
/// NetworkPolicies (default deny, allow from the caller) — 9 objects per service, every one
/// passing every rule.
pub fn synthetic_objects(n: usize) -> Vec<SourcedObject> {
    (0..n).flat_map(service).collect()
}

fn sourced(service: &str, file: &str, object: serde_json::Value) -> SourcedObject {
    SourcedObject {
        file: PathBuf::from(format!("flux/apps/{service}/{file}")),
        object,
    }
}

fn service(i: usize) -> Vec<SourcedObject> {
    let name = format!("svc-{i:04}");
    let ns = name.as_str();
    let labels = json!({
        "app.kubernetes.io/name": ns,
        "app.kubernetes.io/part-of": "billing-platform",
        "app.kubernetes.io/managed-by": "cargo-xtask-gen",
        "platform.billing.dev/team": format!("team-{}", i % 10),
    });
    let selector = json!({"app.kubernetes.io/name": ns});
    let probe = json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10});
    vec![
        sourced(
            ns,
            "namespace.yaml",
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels},
            }),
        ),
        sourced(
            ns,
            "serviceaccount.yaml",
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": ns, "namespace": ns, "labels": labels},
                "automountServiceAccountToken": false,
            }),
        ),
        sourced(
            ns,
            "deployment.yaml",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": ns, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": ns,
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [{
                                "name": "app",
                                "image": format!("registry.example.com/billing/{ns}:1.4.2@sha256:{}", "a".repeat(64)),
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
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }],
                        },
                    },
                },
            }),
        ),
        sourced(
            ns,
            "service.yaml",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": ns, "namespace": ns, "labels": labels},
                "spec": {
                    "type": "ClusterIP", "selector": selector,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                },
            }),
        ),
        sourced(
            ns,
            "role.yaml",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": format!("{ns}-developer"), "namespace": ns, "labels": labels},
                "rules": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [ns],
                     "verbs": ["get", "list", "watch", "patch", "update"]},
                    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": [ns],
                     "verbs": ["get", "patch", "update"]},
                    {"apiGroups": [""], "resources": ["pods", "pods/log", "events"],
                     "verbs": ["get", "list", "watch"]},
                ],
            }),
        ),
        sourced(
            ns,
            "rolebinding.yaml",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("{ns}-developer"), "namespace": ns, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{ns}-developer")},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("team-{}", i % 10)}],
            }),
        ),
        sourced(
            ns,
            "tenant.yaml",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("flux-{ns}"), "namespace": ns, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": format!("flux-{ns}"), "namespace": ns}],
            }),
        ),
        sourced(
            ns,
            "networkpolicy-default-deny.yaml",
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": ns, "labels": labels},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            }),
        ),
        sourced(
            ns,
            "networkpolicy-allow.yaml",
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("allow-{ns}"), "namespace": ns, "labels": labels},
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
                },
            }),
        ),
    ]
}
