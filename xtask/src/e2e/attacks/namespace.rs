//! Step 6a, second table: the tenant's Flux account against its namespace's guards: RoleBindings
//! to admin, the Namespace's Pod Security label, quotas and limits, tokens and Secrets, exposure
//! (external IPs, ExternalName, LoadBalancer, Ingress, NetworkPolicies), a forged owner borrowing
//! Antaeus' exemptions, a 100% PodDisruptionBudget, a Kustomization with no account, and its
//! Deployment as the Flux account with another digest.

use serde_json::{Value, json};

use super::{Attack, Targets, Who, strings};
use crate::e2e::checks::CLIENT_SERVICE;
use crate::e2e::evasions;

pub(super) fn attacks(tenant: &Who, client_tenant: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets {
        ns,
        name,
        image,
        antaeus,
        ..
    } = *targets;
    let run = |who: &Who, what: &str, args: &[&str]| evasions::dry(who, what, args, &[]);
    let apply = |who: &Who, what: &str, object: Value| Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(&["apply", "--server-side", "--dry-run=server", "-f", "-"]),
        stdin: Some(object.to_string()),
        denied_by: &[],
    };
    let mut attacks = vec![
        // 3. The tenant account's escalations.
        run(
            tenant,
            "binds the developers to admin",
            &[
                "create",
                "rolebinding",
                "e2e-attack",
                "-n",
                ns,
                "--clusterrole=admin",
                "--group=billing:payments-developers",
            ],
        ),
        run(
            tenant,
            "binds system:unauthenticated to edit",
            &[
                "create",
                "rolebinding",
                "e2e-attack",
                "-n",
                ns,
                "--clusterrole=edit",
                "--group=system:unauthenticated",
            ],
        ),
        run(
            tenant,
            "relabels its Namespace to Pod Security privileged",
            &[
                "label",
                &format!("namespace/{ns}"),
                "--overwrite",
                "pod-security.kubernetes.io/enforce=privileged",
            ],
        ),
        run(
            tenant,
            "deletes its Namespace",
            &["delete", &format!("namespace/{ns}")],
        ),
        run(
            tenant,
            "deletes its ResourceQuotas",
            &["delete", "resourcequotas", "--all", "-n", ns],
        ),
        run(
            tenant,
            "deletes its LimitRanges",
            &["delete", "limitranges", "--all", "-n", ns],
        ),
        apply(
            tenant,
            "creates a ResourceQuota",
            json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"hard": {"pods": "100000"}}}),
        ),
        // `kubectl create token` takes no --dry-run: the TokenRequest it sends, dry-run.
        Attack {
            who: tenant.clone(),
            what: "mints a token (TokenRequest) for its account".to_owned(),
            args: strings(&[
                "create",
                "--raw",
                &format!(
                    "/api/v1/namespaces/{ns}/serviceaccounts/{}/token?dryRun=All",
                    infra::render::TENANT_RECONCILER
                ),
                "-f",
                "-",
            ]),
            stdin: Some(
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 31_536_000}})
                .to_string(),
            ),
            denied_by: &[],
        },
        apply(
            tenant,
            "creates a long-lived token Secret",
            json!({"apiVersion": "v1", "kind": "Secret",
            "type": "kubernetes.io/service-account-token", "metadata": {"name": "e2e-attack", "namespace": ns,
            "annotations": {"kubernetes.io/service-account.name": "flux-reconciler"}}}),
        ),
        Attack {
            who: tenant.clone(),
            what: "widens the developer Role".to_owned(),
            args: strings(&[
                "patch",
                "role/developer",
                "-n",
                ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]}}]"#,
                "--dry-run=server",
            ]),
            stdin: None,
            denied_by: &[],
        },
        // A read: nothing to dry-run.
        Attack {
            who: tenant.clone(),
            what: "reads the namespace's Secrets".to_owned(),
            args: strings(&["get", "secrets", "-n", ns]),
            stdin: None,
            denied_by: &[],
        },
        // 7. Exposure.
        apply(
            tenant,
            "creates a Service with externalIPs (CVE-2020-8554)",
            json!({"apiVersion": "v1",
            "kind": "Service", "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {
            "selector": {"app.kubernetes.io/name": ns}, "ports": [{"port": 80}], "externalIPs": ["10.96.0.10"]}}),
        ),
        apply(
            tenant,
            "creates an ExternalName Service",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"type": "ExternalName",
            "externalName": "attacker.example.com"}}),
        ),
        apply(
            tenant,
            "creates a LoadBalancer Service the spec does not expose",
            json!({"apiVersion": "v1",
            "kind": "Service", "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"type": "LoadBalancer",
            "selector": {"app.kubernetes.io/name": ns}, "ports": [{"port": 80}]}}),
        ),
        apply(
            tenant,
            "creates an Ingress",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"defaultBackend": {"service":
            {"name": ns, "port": {"number": 9000}}}}}),
        ),
        run(
            tenant,
            "deletes the default-deny NetworkPolicy",
            &["delete", "networkpolicy/default-deny", "-n", ns],
        ),
        apply(
            tenant,
            "adds an allow-all NetworkPolicy",
            json!({"apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy", "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {
            "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}),
        ),
        // 9. A forged owner reference borrowing Antaeus' exemptions (run as root).
        apply(
            client_tenant,
            "creates a root Deployment that claims Antaeus' ReplicaSet as owner",
            forged_owner(antaeus),
        ),
        // 10 (tenant). A 100% PodDisruptionBudget; a pod as the Flux account.
        apply(
            tenant,
            "creates a PodDisruptionBudget of minAvailable 100%",
            json!({"apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget", "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {
            "minAvailable": "100%", "selector": {"matchLabels": {"app.kubernetes.io/name": ns}}}}),
        ),
        // 11. A tenant Kustomization acting as the controller, or from another namespace.
        apply(
            tenant,
            "creates a Kustomization with no serviceAccountName",
            json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "10m", "prune": false,
            "path": "./", "sourceRef": {"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"}}}),
        ),
    ];
    // The tenant account itself applies a copy of its Deployment that runs as the Flux account
    // with another digest: git cannot carry that either.
    let mut copy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns}, "spec": {"template": {"spec": {
        "serviceAccountName": "flux-reconciler", "containers": [{"name": "payment-provider",
        "image": other_digest(image)}]}}}});
    copy["spec"]["template"]["spec"]["automountServiceAccountToken"] = Value::Bool(false);
    attacks.push(Attack {
        who: tenant.clone(),
        what: "applies its Deployment as the Flux account with an image of another digest"
            .to_owned(),
        args: strings(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e-attack",
            "--dry-run=server",
            "-f",
            "-",
        ]),
        stdin: Some(copy.to_string()),
        denied_by: &[],
    });
    attacks
}

/// `image` with its digest (or tag) replaced by one nobody pinned.
fn other_digest(image: &str) -> String {
    let repository = image.split('@').next().unwrap_or(image);
    format!("{repository}@sha256:{}", "0".repeat(64))
}

/// Antaeus' own Deployment (root, writable root filesystem: what its exemptions allow) under
/// another name, claiming one of Antaeus' ReplicaSets as owner: the exemptions must not follow.
fn forged_owner(antaeus: &Value) -> Value {
    let mut copy = antaeus.clone();
    copy["metadata"]["name"] = Value::String("e2e-forged-owner".to_owned());
    copy["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": format!("{CLIENT_SERVICE}-5d8f7c9b4"), "uid": "00000000-0000-0000-0000-000000000000"}]);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replacement_image_keeps_the_repository_and_pins_a_digest_nobody_pinned() {
        assert_eq!(
            other_digest("ghcr.io/b/p:0.1.0@sha256:abc"),
            format!("ghcr.io/b/p:0.1.0@sha256:{}", "0".repeat(64))
        );
    }
}
