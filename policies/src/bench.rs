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

/// Figures from one benchmark run over a synthetic platform.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub services: usize,
    pub objects: usize,
    /// Rule × object evaluations (rules matching the object's kind).
    pub evaluations: usize,
    /// Parsing `rules.yaml` and compiling every expression once.
    pub compile: std::time::Duration,
    /// `Bundle::check` over all objects, best of the runs.
    pub check: std::time::Duration,
    /// Baseline measured in the same run: serialising the same objects to YAML, which `gen`
    /// does anyway to write the tree.
    pub yaml_baseline: std::time::Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ratio = self.check.as_secs_f64() / self.yaml_baseline.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "policy check: {} services, {} objects, {} rule evaluations",
            self.services, self.objects, self.evaluations
        )?;
        writeln!(f, "  compile rules once:   {:>9.2?}", self.compile)?;
        writeln!(
            f,
            "  check all objects:    {:>9.2?}  ({:.1} µs per object)",
            self.check,
            self.check.as_secs_f64() * 1e6 / self.objects.max(1) as f64
        )?;
        write!(
            f,
            "  baseline (YAML dump): {:>9.2?}  (check = {ratio:.1}× baseline)",
            self.yaml_baseline
        )
    }
}

/// Times compiling the bundle and checking `services` synthetic services (best of `runs`).
pub fn measure(services: usize, runs: usize) -> Result<Figures, crate::Error> {
    use std::time::{Duration, Instant};
    let objects = synthetic_objects(services);
    let start = Instant::now();
    let bundle = crate::Bundle::builtin()?;
    let compile = start.elapsed();
    let context = crate::CheckContext {
        environment: Some("production".into()),
    };
    let evaluations = objects
        .iter()
        .map(|o| {
            let (group, _) =
                crate::kinds::split_api_version(o.object["apiVersion"].as_str().unwrap_or(""));
            let kind = o.object["kind"].as_str().unwrap_or("");
            bundle
                .rules()
                .iter()
                .filter(|r| r.applies_in(Some("production")) && r.matches_kind(group, kind))
                .count()
        })
        .sum();
    let mut check = Duration::MAX;
    let mut yaml_baseline = Duration::MAX;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let report = bundle.check(&context, &objects, &[])?;
        check = check.min(start.elapsed());
        assert!(
            report.violations.is_empty(),
            "synthetic objects are compliant: {report}"
        );

        let start = Instant::now();
        let mut bytes = 0;
        for object in &objects {
            bytes += serde_yaml_ng::to_string(&object.object).map_or(0, |s| s.len());
        }
        yaml_baseline = yaml_baseline.min(start.elapsed());
        std::hint::black_box(bytes);
    }
    Ok(Figures {
        services,
        objects: objects.len(),
        evaluations,
        compile,
        check,
        yaml_baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_services_have_nine_objects_each_and_pass_every_rule() {
        let figures = measure(2, 1).expect("the bundle compiles");
        assert_eq!(figures.objects, 18);
        assert!(figures.evaluations > 18, "{figures}");
    }
}
