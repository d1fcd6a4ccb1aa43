//! Step 6a, side doors of the tenant's Flux account: what it may write besides its Deployment
//! (its platform-policy ConfigMap and Flux account, Services, Endpoints, PodDisruptionBudgets) and
//! what it may not write at all (Leases, the policies' bindings, ephemeral containers).

use serde_json::json;

use super::resize_to_64_cpus;
use crate::e2e::attacks::{Attack, Targets, Who, debug_container};
use crate::e2e::evasions::{QUOTA, RBAC, apply, dry, raw};

/// What the tenant's Flux account may write besides Deployments: Services, ServiceAccounts,
/// ConfigMaps, PodDisruptionBudgets; and what it may not write at all.
pub(in crate::e2e) fn tenant_objects(tenant: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets {
        ns,
        deployment,
        name,
        pod,
        ..
    } = *targets;
    let resize = resize_to_64_cpus(deployment);
    let meta = json!({"name": "e2e-attack", "namespace": ns});
    let selector = json!({"matchLabels": {"app.kubernetes.io/name": name}});
    vec![
        dry(
            tenant,
            "raises maxReplicas in its platform-policy ConfigMap",
            &[
                "patch",
                "configmap/platform-policy",
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"data":{"maxReplicas":"10000"}}"#,
            ],
            &["platform-tenant-limits-protected"],
        ),
        dry(
            tenant,
            "deletes its platform-policy ConfigMap",
            &["delete", "configmap/platform-policy", "-n", ns],
            &["platform-tenant-limits-protected"],
        ),
        raw(
            tenant,
            "deletes every ConfigMap at once (deletecollection)",
            &[
                "delete",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/configmaps?dryRun=All"),
            ],
            None,
            RBAC,
        ),
        apply(
            tenant,
            "creates a platform-policy ConfigMap in another namespace",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "platform-policy",
                "namespace": "antaeus"}, "data": {"maxReplicas": "10000"}}),
            RBAC,
        ),
        dry(
            tenant,
            "turns on token automount for the Flux account",
            &[
                "patch",
                "serviceaccount/flux-reconciler",
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"automountServiceAccountToken":true}"#,
            ],
            &["platform-tenant-limits-protected"],
        ),
        apply(
            tenant,
            "creates a NodePort Service",
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"type": "NodePort",
                "selector": selector["matchLabels"], "ports": [{"port": 9000}]}}),
            &["platform-no-external-services"],
        ),
        dry(
            tenant,
            "turns its Service into a LoadBalancer",
            &[
                "patch",
                &format!("service/{name}"),
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"type":"LoadBalancer"}}"#,
            ],
            &["platform-no-external-services"],
        ),
        dry(
            tenant,
            "adds externalIPs to its Service",
            &[
                "patch",
                &format!("service/{name}"),
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"externalIPs":["10.96.0.10"]}}"#,
            ],
            &["platform-no-external-ips"],
        ),
        dry(
            tenant,
            "adds a foreign finalizer to its Service with a JSON patch",
            &[
                "patch",
                &format!("service/{name}"),
                "-n",
                ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/metadata/finalizers","value":["attacker.example.com/keep"]}]"#,
            ],
            &["platform-no-foreign-finalizers"],
        ),
        dry(
            tenant,
            "annotates its Service kustomize.toolkit.fluxcd.io/prune=disabled",
            &[
                "annotate",
                &format!("service/{name}"),
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/prune=disabled",
            ],
            &["platform-flux-controls-platform-only"],
        ),
        dry(
            tenant,
            "pauses its Deployment",
            &[
                "patch",
                &format!("deployment/{name}"),
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"paused":true}}"#,
            ],
            &["platform-no-paused-deployment"],
        ),
        apply(
            tenant,
            "creates Endpoints pointing at kube-dns",
            &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                "subsets": [{"addresses": [{"ip": "10.96.0.10"}], "ports": [{"port": 53}]}]}),
            RBAC,
        ),
        apply(
            tenant,
            "creates an EndpointSlice that joins its Service with another address",
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e2e-attack",
                "namespace": ns, "labels": {"kubernetes.io/service-name": name}}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.96.0.10"]}], "ports": [{"port": 9000}]}),
            RBAC,
        ),
        apply(
            tenant,
            "creates a PodDisruptionBudget of maxUnavailable 0",
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
                "spec": {"maxUnavailable": 0, "selector": selector}}),
            &["platform-pdb-allows-disruption"],
        ),
        apply(
            tenant,
            "creates a second PodDisruptionBudget over the same pods (no pod under two can be evicted)",
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
                "spec": {"maxUnavailable": 1, "selector": selector}}),
            QUOTA,
        ),
        apply(
            tenant,
            "writes an Event",
            &json!({"apiVersion": "v1", "kind": "Event", "metadata": meta,
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns}, "reason": "E2eAttack",
                "message": "forged", "type": "Normal"}),
            RBAC,
        ),
        apply(
            tenant,
            "takes a Lease",
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": "e2e-attack"}}),
            RBAC,
        ),
        dry(
            tenant,
            "deletes the binding of the no-privileged policy",
            &[
                "delete",
                "validatingadmissionpolicybinding/platform-no-privileged",
            ],
            RBAC,
        ),
        dry(
            tenant,
            "adds an ephemeral debug container",
            &[
                "patch",
                &format!("pod/{pod}"),
                "-n",
                ns,
                "--subresource=ephemeralcontainers",
                "-p",
                &debug_container(),
            ],
            RBAC,
        ),
        dry(
            tenant,
            "resizes a running pod to 64 CPUs (pods/resize)",
            &[
                "patch",
                &format!("pod/{pod}"),
                "-n",
                ns,
                "--subresource=resize",
                "-p",
                &resize,
            ],
            RBAC,
        ),
    ]
}
