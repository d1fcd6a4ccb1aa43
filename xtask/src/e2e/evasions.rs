//! Step 6a, second table: the pod rules attacked one at a time, on a copy of the tree's own
//! Deployment applied by the tenant's Flux account (so the refusal must name that rule, not some
//! other defect of the copy), and the same pod template sent through every kind a pod can come
//! from. The subresources and other objects are in `side_doors.rs`.
//!
//! (Over ~400 lines for the same reason as `attacks.rs`: one entry per rule, in one place.)

use serde_json::{Value, json};

use super::attacks::{Attack, Targets, Who, strings};
use super::side_doors;

// What a refusal must name: a rule's ValidatingAdmissionPolicy (`platform-<rule>`), or RBAC.
const HOST_PATH: &[&str] = &["platform-no-host-path"];
pub(super) const RBAC: &[&str] = &["forbidden by RBAC"];
/// The namespace's ResourceQuota (object counts included).
pub(super) const QUOTA: &[&str] = &["refused by ResourceQuota"];
/// The image rules (which one answers first depends on the environment).
pub(super) const IMAGE: &[&str] = &[
    "platform-image-from-platform-registry",
    "platform-image-digest-pinned",
    "platform-image-digest-from-spec",
    "platform-image-tag-pinned",
];
/// Any of the platform's policies (a change several rules refuse).
pub(super) const ANY_POLICY: &[&str] = &["denied by platform-"];

/// `kubectl ARGS` as is (reads, raw requests, and commands that take no `--dry-run`).
pub(super) fn raw(
    who: &Who,
    what: &str,
    args: &[&str],
    stdin: Option<String>,
    by: &'static [&'static str],
) -> Attack {
    Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(args),
        stdin,
        denied_by: by,
    }
}

/// `kubectl ARGS --dry-run=server`.
pub(super) fn dry(who: &Who, what: &str, args: &[&str], by: &'static [&'static str]) -> Attack {
    let mut args = strings(args);
    args.push("--dry-run=server".to_owned());
    raw(
        who,
        what,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
        by,
    )
}

/// `kubectl apply --server-side` of one object, dry-run, under a field manager of its own.
pub(super) fn apply(who: &Who, what: &str, object: &Value, by: &'static [&'static str]) -> Attack {
    raw(
        who,
        what,
        &[
            "apply",
            "--server-side",
            "--field-manager=e2e-attack",
            "--dry-run=server",
            "-f",
            "-",
        ],
        Some(object.to_string()),
        by,
    )
}

/// The tree's Deployment under another name, its pod spec changed by `edit`.
pub(super) fn copy_with(deployment: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut copy = deployment.clone();
    copy["metadata"]["name"] = json!("e2e-attack");
    edit(&mut copy);
    copy
}

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
fn pod_rules(image: &str) -> Vec<(&'static str, &'static [&'static str], Edit)> {
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

/// The tree's pod template under each kind a pod can come from, with `edit` applied to its pod
/// spec: every kind the policies match must be judged the same.
fn pod_kinds(deployment: &Value, edit: impl Fn(&mut Value)) -> Vec<Value> {
    let ns = &deployment["metadata"]["namespace"];
    let meta = json!({"name": "e2e-attack", "namespace": ns});
    let mut template = deployment["spec"]["template"].clone();
    edit(&mut template["spec"]);
    let selector = deployment["spec"]["selector"].clone();
    let mut run_once = template.clone();
    run_once["spec"]["restartPolicy"] = json!("Never");
    vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e2e-attack",
            "namespace": ns, "labels": template["metadata"]["labels"]}, "spec": template["spec"]}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta,
            "spec": {"selector": selector["matchLabels"], "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
            "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"serviceName": "e2e-attack", "selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"template": run_once}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
            "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": run_once}}}}),
    ]
}

pub(super) fn attacks(developer: &Who, tenant: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets {
        ns,
        deployment,
        max_replicas,
        image,
        pod,
        ..
    } = *targets;
    let admin = Who::admin();
    let over = max_replicas + 1;
    let mut attacks = Vec::new();

    // The tenant's Flux account applies copies of its Deployment, each breaking one rule.
    for (what, by, edit) in pod_rules(image) {
        attacks.push(apply(
            tenant,
            &format!("applies a Deployment that {what}"),
            &copy_with(deployment, edit),
            by,
        ));
    }
    attacks.push(apply(
        tenant,
        &format!("applies a Deployment of {over} replicas (max_replicas + 1)"),
        &copy_with(deployment, |d| {
            d["spec"]["replicas"] = json!(max_replicas + 1)
        }),
        &["platform-replicas-bounded"],
    ));

    // Every kind a pod comes from is judged (as the admin: only the platform may create them),
    // here with a change Pod Security admission does not look at, so the policy must refuse it.
    for object in pod_kinds(deployment, |p| {
        p["serviceAccountName"] = json!("flux-reconciler")
    }) {
        let kind = object["kind"].as_str().unwrap_or("?").to_owned();
        attacks.push(apply(
            &admin,
            &format!("creates a {kind} that runs as the Flux account"),
            &object,
            &["platform-service-account-pinned"],
        ));
    }
    // An ephemeral container Pod Security `restricted` admits, from an outside image: the policies
    // themselves must judge pods/ephemeralcontainers.
    let debugger = json!({"spec": {"ephemeralContainers": [{"name": "e2e-debugger",
        "image": "docker.io/library/busybox:1.36", "command": ["sh"], "stdin": true, "tty": true,
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true,
        "seccompProfile": {"type": "RuntimeDefault"}}}]}});
    attacks.push(dry(
        &admin,
        "adds a restricted-compliant ephemeral container from docker.io",
        &[
            "patch",
            &format!("pod/{pod}"),
            "-n",
            ns,
            "--subresource=ephemeralcontainers",
            "-p",
            &debugger.to_string(),
        ],
        IMAGE,
    ));
    // And the tenant may not create any of them but a Deployment.
    for object in pod_kinds(deployment, |_| {}) {
        let kind = object["kind"].as_str().unwrap_or("?").to_owned();
        attacks.push(apply(
            tenant,
            &format!("creates a {kind} (compliant)"),
            &object,
            RBAC,
        ));
    }

    attacks.extend(side_doors::developer_attacks(developer, targets));
    attacks.extend(side_doors::tenant_objects(tenant, targets));

    attacks
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
