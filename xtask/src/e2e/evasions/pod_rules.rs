//! Step 6a, the pod rules one at a time: copies of the tree's Deployment, each breaking one rule,
//! with the policy that must refuse it (one entry per rule of `policies/rules.yaml` that judges
//! pods).

use serde_json::{Value, json};

use super::{ANY_POLICY, HOST_PATH};

/// The repository of an image reference and what follows it (`:tag`, `@digest`).
fn split_image(image: &str) -> (&str, &str) {
    let name = image.split('@').next().unwrap_or(image);
    match name.rfind(':') {
        Some(at) if at > name.rfind('/').unwrap_or(0) => image.split_at(at),
        _ => image.split_at(name.len()),
    }
}

/// An edit of a copy of the tree's Deployment.
type Edit = Box<dyn Fn(&mut Value)>;

/// Copies of the tree's Deployment each breaking one pod rule: what the tenant's Flux account
/// (git) may not carry. Each entry: what, the policy that must refuse it, the edit of the copy.
pub(super) fn pod_rules(image: &str) -> Vec<(&'static str, &'static [&'static str], Edit)> {
    let (repository, reference) = split_image(image);
    let (host, path) = repository.split_once('/').unwrap_or((repository, ""));
    let uppercase = format!("{}/{path}{reference}", host.to_uppercase());
    let host_suffix = format!("{host}.evil.example/{path}{reference}");
    let repository_suffix = format!("{repository}-evil{reference}");
    vec![
        (
            "runs as the Flux account through the deprecated serviceAccount field",
            &["platform-service-account-pinned"],
            Box::new(|d: &mut Value| {
                let p = &mut d["spec"]["template"]["spec"];
                if let Some(p) = p.as_object_mut() {
                    p.remove("serviceAccountName");
                }
                p["serviceAccount"] = json!("flux-reconciler");
            }),
        ),
        (
            "adds an init container with CAP_SYS_ADMIN",
            &["platform-drop-all-capabilities"],
            Box::new(|d: &mut Value| {
                let p = &mut d["spec"]["template"]["spec"];
                let mut init = p["containers"][0].clone();
                if let Some(c) = init.as_object_mut() {
                    for field in ["livenessProbe", "readinessProbe", "startupProbe", "ports"] {
                        c.remove(field);
                    }
                }
                init["name"] = json!("e2e-init");
                init["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
                p["initContainers"] = json!([init]);
            }),
        ),
        (
            "adds a sidecar (restartPolicy Always init container) from docker.io",
            ANY_POLICY,
            Box::new(|d: &mut Value| {
                let p = &mut d["spec"]["template"]["spec"];
                let mut init = p["containers"][0].clone();
                if let Some(c) = init.as_object_mut() {
                    c.remove("ports");
                }
                init["name"] = json!("e2e-sidecar");
                init["image"] = json!("docker.io/attacker/x:1.0");
                init["restartPolicy"] = json!("Always");
                p["initContainers"] = json!([init]);
            }),
        ),
        (
            "runs a container seccomp Unconfined under a RuntimeDefault pod",
            &["platform-seccomp-runtime-default"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
                    json!({"type": "Unconfined"});
            }),
        ),
        (
            "annotates the pod template AppArmor unconfined",
            &["platform-apparmor-not-unconfined"],
            Box::new(|d: &mut Value| {
                let name = d["spec"]["template"]["spec"]["containers"][0]["name"].clone();
                let key = format!(
                    "container.apparmor.security.beta.kubernetes.io/{}",
                    name.as_str().unwrap_or("")
                );
                d["spec"]["template"]["metadata"]["annotations"][key.as_str()] =
                    json!("unconfined");
            }),
        ),
        (
            "sets the unsafe sysctl kernel.msgmax",
            &["platform-safe-sysctls-only"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["securityContext"]["sysctls"] =
                    json!([{"name": "kernel.msgmax", "value": "65536"}]);
            }),
        ),
        (
            "unmasks /proc (procMount Unmasked, hostUsers false)",
            &["platform-proc-mount-default"],
            Box::new(|d: &mut Value| {
                let p = &mut d["spec"]["template"]["spec"];
                p["hostUsers"] = json!(false);
                p["containers"][0]["securityContext"]["procMount"] = json!("Unmasked");
            }),
        ),
        (
            "points its liveness probe at 169.254.169.254 (the cloud metadata service)",
            &["platform-no-probe-host"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] =
                    json!("169.254.169.254");
            }),
        ),
        (
            "binds hostPort 9000",
            &["platform-no-host-ports"],
            Box::new(|d: &mut Value| {
                let c = &mut d["spec"]["template"]["spec"]["containers"][0];
                c["ports"] = json!([{"containerPort": 9000, "hostPort": 9000, "protocol": "TCP"}]);
            }),
        ),
        (
            "shares the node's network namespace",
            &["platform-no-host-namespaces", "platform-no-host-ports"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
            }),
        ),
        (
            "mounts the node's / (hostPath)",
            HOST_PATH,
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["volumes"] =
                    json!([{"name": "host", "hostPath": {"path": "/"}}]);
            }),
        ),
        (
            "runs its container as uid 0 under a runAsNonRoot pod",
            &["platform-run-as-non-root"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] =
                    json!(0);
            }),
        ),
        (
            "allows privilege escalation",
            &["platform-no-privilege-escalation"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] =
                    json!(true);
            }),
        ),
        (
            "writes to its root filesystem",
            &["platform-read-only-root-filesystem"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
                    json!(false);
            }),
        ),
        (
            "sets SELinux type spc_t (unconfined)",
            &["platform-selinux-options-restricted"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["securityContext"]["seLinuxOptions"] =
                    json!({"type": "spc_t"});
            }),
        ),
        (
            "mounts its ServiceAccount token (automountServiceAccountToken true)",
            &["platform-no-service-account-token"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["automountServiceAccountToken"] = json!(true);
            }),
        ),
        (
            "reads a Secret through env valueFrom.secretKeyRef",
            &["platform-secret-refs-declared"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "S",
                    "valueFrom": {"secretKeyRef": {"name": "any", "key": "k"}}}]);
            }),
        ),
        (
            "mounts a Secret through a projected volume",
            &["platform-secret-refs-declared"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "s",
                    "projected": {"sources": [{"secret": {"name": "any"}}]}}]);
            }),
        ),
        (
            "tolerates the control plane's taint",
            &["platform-no-node-targeting"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["tolerations"] = json!([{
                    "key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                    "effect": "NoSchedule"}]);
            }),
        ),
        (
            "tolerates the unschedulable taint (lands on cordoned nodes being drained)",
            &["platform-no-node-targeting"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["tolerations"] = json!([{
                    "key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                    "effect": "NoSchedule"}]);
            }),
        ),
        (
            "sets priorityClassName system-cluster-critical",
            &["platform-no-critical-priority"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["priorityClassName"] =
                    json!("system-cluster-critical");
            }),
        ),
        (
            "mounts an image volume from docker.io",
            &["platform-volume-types-restricted"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "tools",
                    "image": {"reference": "docker.io/attacker/tools:1.0"}}]);
            }),
        ),
        (
            "names its registry in upper case",
            ANY_POLICY,
            Box::new(move |d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(uppercase);
            }),
        ),
        (
            "uses a registry whose name starts with the platform's",
            ANY_POLICY,
            Box::new(move |d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(host_suffix);
            }),
        ),
        (
            "uses a repository whose name starts with its own",
            ANY_POLICY,
            Box::new(move |d: &mut Value| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(repository_suffix);
            }),
        ),
        (
            "labels the Deployment kustomize.toolkit.fluxcd.io/reconcile=disabled (a label)",
            &["platform-flux-controls-platform-only"],
            Box::new(|d: &mut Value| {
                d["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/reconcile"] =
                    json!("disabled");
            }),
        ),
        (
            "gives the Deployment a foreign finalizer",
            &["platform-no-foreign-finalizers"],
            Box::new(|d: &mut Value| {
                d["metadata"]["finalizers"] = json!(["attacker.example.com/keep"]);
            }),
        ),
        (
            "gives its pods a foreign finalizer through the pod template",
            &["platform-no-template-finalizers"],
            Box::new(|d: &mut Value| {
                d["spec"]["template"]["metadata"]["finalizers"] =
                    json!(["attacker.example.com/keep"]);
            }),
        ),
        (
            "applies a paused Deployment",
            &["platform-no-paused-deployment"],
            Box::new(|d: &mut Value| {
                d["spec"]["paused"] = json!(true);
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_splits_into_its_repository_and_its_tag_and_digest() {
        assert_eq!(
            split_image("ghcr.io/b/p:0.1.0@sha256:abc"),
            ("ghcr.io/b/p", ":0.1.0@sha256:abc")
        );
        assert_eq!(
            split_image("localhost:5000/b/p"),
            ("localhost:5000/b/p", "")
        );
        assert_eq!(
            split_image("localhost:5000/b/p:1"),
            ("localhost:5000/b/p", ":1")
        );
    }
}
