//! Step 6a, third table: the side doors. The subresources and verbs a developer might reach for
//! besides `kubectl patch deployment` (`scale`, `status`, `resize`, `exec`, `attach`,
//! `portforward`, `proxy`, tokens, events), and what the tenant's Flux account may write besides
//! its Deployment (its platform-policy ConfigMap and Flux account, Services, Endpoints, PDBs) or
//! not at all (Leases, the policies' bindings, ephemeral containers).
//!
//! The developer's side doors are here; the tenant account's are in [`tenant`].

mod tenant;

use serde_json::{Value, json};

use super::attacks::{Attack, Targets, Who};
use super::evasions::{ANY_POLICY, RBAC, apply, dry, raw};
pub(super) use tenant::tenant_objects;

/// The pods/resize patch that gives the Deployment's first container 64 CPUs.
fn resize_to_64_cpus(deployment: &Value) -> String {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0]["name"];
    json!({"spec": {"containers": [{"name": container,
        "resources": {"requests": {"cpu": "64"}, "limits": {"cpu": "64"}}}]}})
    .to_string()
}

/// What a developer might reach for besides `kubectl patch deployment`.
pub(super) fn developer_attacks(developer: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets {
        ns,
        deployment,
        max_replicas,
        name,
        pod,
        ..
    } = *targets;
    let target = format!("deployment/{name}");
    let over = max_replicas + 1;
    let patch = |what: &str, kind: &str, body: Value, by: &'static [&'static str]| {
        dry(
            developer,
            what,
            &[
                "patch",
                &target,
                "-n",
                ns,
                &format!("--type={kind}"),
                "-p",
                &body.to_string(),
            ],
            by,
        )
    };
    let token = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}})
    .to_string();
    let resize = resize_to_64_cpus(deployment);
    let mut replaced = deployment.clone();
    replaced["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("docker.io/attacker/x:1.0");
    vec![
        patch(
            &format!("sets spec.replicas to {over} (max_replicas + 1) on the Deployment itself"),
            "merge",
            json!({"spec": {"replicas": over}}),
            &["platform-replicas-bounded"],
        ),
        dry(
            developer,
            &format!("scales to {over} (max_replicas + 1) through deployments/scale"),
            &[
                "patch",
                &target,
                "-n",
                ns,
                "--subresource=scale",
                "--type=merge",
                "-p",
                &json!({"spec": {"replicas": over}}).to_string(),
            ],
            &["platform-replicas-bounded"],
        ),
        dry(
            developer,
            "writes the Deployment's status",
            &[
                "patch",
                &target,
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"observedGeneration":0}}"#,
            ],
            RBAC,
        ),
        raw(
            developer,
            "replaces the whole Deployment (PUT) with an outside image",
            &["replace", "--dry-run=server", "-f", "-"],
            Some(replaced.to_string()),
            ANY_POLICY,
        ),
        patch(
            "adds a foreign finalizer with a JSON patch",
            "json",
            json!([{"op": "add", "path": "/metadata/finalizers", "value": ["attacker.example.com/keep"]}]),
            &[
                "platform-developer-changes-limited",
                "platform-no-foreign-finalizers",
            ],
        ),
        patch(
            "gives every pod a foreign finalizer through the pod template",
            "strategic",
            json!({"spec": {"template": {"metadata": {"finalizers": ["attacker.example.com/keep"]}}}}),
            &[
                "platform-developer-changes-limited",
                "platform-no-template-finalizers",
            ],
        ),
        patch(
            "adds a pod template label app=antaeus",
            "strategic",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "antaeus"}}}}}),
            &["platform-developer-changes-limited"],
        ),
        dry(
            developer,
            "labels the Deployment kustomize.toolkit.fluxcd.io/reconcile=disabled",
            &[
                "label",
                &target,
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/reconcile=disabled",
            ],
            &[
                "platform-developer-changes-limited",
                "platform-flux-controls-platform-only",
            ],
        ),
        dry(
            developer,
            "scales the ReplicaSets directly to 50",
            &["scale", "replicasets", "--all", "-n", ns, "--replicas=50"],
            RBAC,
        ),
        dry(
            developer,
            "deletes a pod",
            &["delete", &format!("pod/{pod}"), "-n", ns],
            RBAC,
        ),
        dry(
            developer,
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
        dry(
            developer,
            "runs a pod of its own",
            &[
                "run",
                "e2e-attack",
                "-n",
                ns,
                "--image=docker.io/library/busybox:1.36",
            ],
            RBAC,
        ),
        dry(
            developer,
            "widens its own Role",
            &[
                "patch",
                "role/developer",
                "-n",
                ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}}]"#,
            ],
            RBAC,
        ),
        dry(
            developer,
            "adds a group to its own RoleBinding",
            &[
                "patch",
                "rolebinding/developer",
                "-n",
                ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/subjects/-","value":{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:serviceaccounts"}}]"#,
            ],
            RBAC,
        ),
        // Connections to the pods: each is a POST (create) or GET on a subresource.
        raw(
            developer,
            "execs into a pod (pods/exec)",
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/pods/{pod}/exec?command=true&stdout=true"),
                "-f",
                "-",
            ],
            Some("{}".to_owned()),
            RBAC,
        ),
        raw(
            developer,
            "attaches to a pod (pods/attach)",
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/pods/{pod}/attach?stdout=true"),
                "-f",
                "-",
            ],
            Some("{}".to_owned()),
            RBAC,
        ),
        raw(
            developer,
            "port-forwards to a pod (pods/portforward)",
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/pods/{pod}/portforward?ports=9000"),
                "-f",
                "-",
            ],
            Some("{}".to_owned()),
            RBAC,
        ),
        raw(
            developer,
            "reaches a pod through the API server (pods/proxy)",
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/pods/{pod}:9000/proxy/healthz"),
            ],
            None,
            RBAC,
        ),
        raw(
            developer,
            "reaches the Service through the API server (services/proxy), past the NetworkPolicies",
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/services/{name}:9000/proxy/healthz"),
            ],
            None,
            RBAC,
        ),
        raw(
            developer,
            "mints a token for the service's ServiceAccount",
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token?dryRun=All"),
                "-f",
                "-",
            ],
            Some(token.clone()),
            RBAC,
        ),
        raw(
            developer,
            "mints a token for the Flux account",
            &[
                "create",
                "--raw",
                &format!(
                    "/api/v1/namespaces/{ns}/serviceaccounts/{}/token?dryRun=All",
                    infra::render::TENANT_RECONCILER
                ),
                "-f",
                "-",
            ],
            Some(token),
            RBAC,
        ),
        apply(
            developer,
            "writes an Event",
            &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2e-attack", "namespace": ns},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns}, "reason": "E2eAttack",
                "message": "forged", "type": "Normal"}),
            RBAC,
        ),
        apply(
            developer,
            "creates a HorizontalPodAutoscaler to 100 replicas",
            &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"scaleTargetRef":
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, "minReplicas": 1, "maxReplicas": 100}}),
            RBAC,
        ),
    ]
}
