//! Step 6a, first table: the provider's Deployment, its pods and Flux's switches on them, as its
//! team's developer (and the admin, for a debug container): the pod spec patched to run as the
//! Flux account, take more than its share, pull from anywhere or read Secrets; GitOps switched
//! off by annotations or suspension; ephemeral containers; placement, pausing, finalizers.

use serde_json::{Value, json};

use super::{Attack, Targets, Who, strings};
use crate::e2e::evasions;

/// A strategic-merge patch of the Deployment's pod spec, as `kubectl patch` sends it.
fn pod_patch(pod_spec: Value) -> String {
    json!({"spec": {"template": {"spec": pod_spec}}}).to_string()
}

pub(super) fn attacks(developer: &Who, tenant: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets { ns, name, pod, .. } = *targets;
    let deployment = format!("deployment/{name}");
    let patch = |who: &Who, what: &str, patch: String| Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(&[
            "patch",
            &deployment,
            "-n",
            ns,
            "--dry-run=server",
            "-p",
            &patch,
        ]),
        stdin: None,
        denied_by: &[],
    };
    let run = |who: &Who, what: &str, args: &[&str]| evasions::dry(who, what, args, &[]);
    let container = |extra: Value| {
        let mut c = json!({"name": "payment-provider"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        json!({"containers": [c]})
    };
    vec![
        // 1. Developer → namespace admin: run as the Flux account, mount its token, print it.
        patch(
            developer,
            "runs the pods as the Flux account with its token mounted and an outside image",
            pod_patch(json!({
                "serviceAccountName": "flux-reconciler",
                "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                "containers": [{"name": "payment-provider", "image": "docker.io/attacker/x:1.0",
                    "command": ["cat", "/var/run/secrets/token"]}],
            })),
        ),
        // 2. GitOps switched off.
        run(
            developer,
            "annotates the Deployment kustomize.toolkit.fluxcd.io/reconcile=disabled",
            &[
                "annotate",
                &deployment,
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/reconcile=disabled",
            ],
        ),
        run(
            developer,
            "annotates the Deployment kustomize.toolkit.fluxcd.io/ssa=Ignore",
            &[
                "annotate",
                &deployment,
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/ssa=Ignore",
            ],
        ),
        run(
            developer,
            "annotates the developer Role reconcile=disabled",
            &[
                "annotate",
                "role/developer",
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/reconcile=disabled",
            ],
        ),
        run(
            tenant,
            "annotates its OCIRepository reconcile=disabled",
            &[
                "annotate",
                &format!("ocirepository/{ns}"),
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/reconcile=disabled",
            ],
        ),
        evasions::merge_patch(
            tenant,
            "suspends its OCIRepository",
            &format!("ocirepository/{ns}"),
            ns,
            &json!({"spec": {"suspend": true}}),
            &[],
        ),
        // 4. Starving the cluster.
        run(
            developer,
            "scales to 10,000 replicas",
            &["scale", &deployment, "-n", ns, "--replicas=10000"],
        ),
        patch(
            developer,
            "asks for 1000 CPUs",
            pod_patch(container(json!({
            "resources": {"requests": {"cpu": "1000"}, "limits": {"cpu": "1000"}}}))),
        ),
        patch(
            developer,
            "sets priorityClassName system-node-critical",
            pod_patch(json!({"priorityClassName": "system-node-critical"})),
        ),
        patch(
            developer,
            "mounts a 10Ti ephemeral volume",
            pod_patch(json!({"volumes": [{"name": "big",
            "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Ti"}}}}}}]})),
        ),
        // 5. Images from anywhere, or another digest.
        patch(
            developer,
            "swaps the image for docker.io/attacker/x:1.0",
            pod_patch(container(json!({"image": "docker.io/attacker/x:1.0"}))),
        ),
        // 6. Secrets through the pod spec.
        patch(
            developer,
            "mounts a Secret volume",
            pod_patch(json!({"volumes": [{"name": "s",
            "secret": {"secretName": "any"}}]})),
        ),
        patch(
            developer,
            "reads a Secret through envFrom",
            pod_patch(container(
                json!({"envFrom": [{"secretRef": {"name": "any"}}]}),
            )),
        ),
        patch(
            developer,
            "adds imagePullSecrets",
            pod_patch(json!({"imagePullSecrets": [{"name": "any"}]})),
        ),
        // 8. Ephemeral containers: what `kubectl debug` writes, pods/ephemeralcontainers. The
        // developer has no right to it; even the admin's container must pass the pod rules.
        run(
            developer,
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
        ),
        run(
            &Who::admin(),
            "adds a privileged ephemeral debug container",
            &[
                "patch",
                &format!("pod/{pod}"),
                "-n",
                ns,
                "--subresource=ephemeralcontainers",
                "-p",
                &debug_container(),
            ],
        ),
        // 10. Placement, pausing, finalizers.
        patch(
            developer,
            "pins the pods to a node and tolerates every taint",
            pod_patch(json!({"nodeName": "any", "tolerations": [{"operator": "Exists"}]})),
        ),
        evasions::merge_patch(
            developer,
            "pauses the Deployment and adds a foreign finalizer",
            &deployment,
            ns,
            &json!({"metadata": {"finalizers": ["attacker.example.com/keep"]}, "spec": {"paused": true}}),
            &[],
        ),
    ]
}

/// The ephemeral container `kubectl debug --profile=general` would add.
pub(in crate::e2e) fn debug_container() -> String {
    json!({"spec": {"ephemeralContainers": [{"name": "e2e-debugger", "image": "docker.io/library/busybox:1.36",
        "command": ["sh"], "stdin": true, "tty": true,
        "securityContext": {"privileged": true}}]}}).to_string()
}
