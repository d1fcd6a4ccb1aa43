//! Step 6a, second table: the pod rules attacked one at a time, on a copy of the tree's own
//! Deployment applied by the tenant's Flux account (so the refusal must name that rule, not some
//! other defect of the copy), and the same pod template sent through every kind a pod can come
//! from. The subresources and other objects are in `side_doors.rs`.
//!
//! The table of pod rules is in [`pod_rules`].

mod pod_rules;

use serde_json::{Value, json};

use super::attacks::{Attack, Targets, Who, strings};
use super::side_doors;
use pod_rules::pod_rules;

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

/// `kubectl patch OBJECT -n NAMESPACE --type=merge -p CHANGE`, dry-run.
pub(super) fn merge_patch(
    who: &Who,
    what: &str,
    object: &str,
    namespace: &str,
    change: &Value,
    by: &'static [&'static str],
) -> Attack {
    dry(
        who,
        what,
        &[
            "patch",
            object,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            &change.to_string(),
        ],
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
