//! Step 6: attacks on the tenancy promises, on the real API server, as a developer of the
//! provider's team and as the provider's Flux tenant account. Every attack must be refused (by
//! RBAC or by an admission policy, the refusal is printed), and the legitimate emergency actions
//! (scale within the spec's maximum, restart) must still be admitted.
//!
//! Changes are sent with `--dry-run=server`: RBAC and admission decide exactly as for a real
//! request, and an attack that is wrongly admitted leaves nothing behind to spoil later steps.
//!
//! (Over ~400 lines for one reason: most of it is the table of attacks, one entry per attack of
//! issue 9, which reads best in one place.)

use anyhow::bail;
use serde_json::{Value, json};
use xshell::Shell;

use super::checks::{CLIENT_SERVICE, PROVIDER_SERVICE};
use super::cluster::Cluster;
use super::evasions;
use super::tree::{Tree, str_at};

/// Who sends a request: impersonated by the admin, as `kubectl --as/--as-group` does.
#[derive(Clone)]
pub struct Who {
    pub label: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl Who {
    /// The cluster admin itself (no impersonation): the platform.
    pub(super) fn admin() -> Who {
        Who {
            label: "admin".to_owned(),
            user: String::new(),
            groups: Vec::new(),
        }
    }

    fn args(&self) -> Vec<String> {
        if self.user.is_empty() {
            return Vec::new();
        }
        let mut args = vec![format!("--as={}", self.user)];
        args.extend(self.groups.iter().map(|g| format!("--as-group={g}")));
        args
    }
}

/// One request that must be refused (or, for a legitimate action, admitted).
pub(super) struct Attack {
    pub(super) who: Who,
    pub(super) what: String,
    pub(super) args: Vec<String>,
    pub(super) stdin: Option<String>,
    /// The policies of which one must be the refusal's (empty: any refusal, RBAC included): an
    /// attack meant for one rule must not pass as refused because something else broke.
    pub(super) denied_by: &'static [&'static str],
}

/// What a refusal said: the policy that denied it, a ResourceQuota, Pod Security admission, or RBAC.
fn refusal(stderr: &str) -> Option<String> {
    if let Some(rest) = stderr.split("ValidatingAdmissionPolicy '").nth(1) {
        let policy = rest.split('\'').next().unwrap_or("?");
        let message = stderr
            .split("denied request: ")
            .nth(1)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        return Some(format!("denied by {policy}: {}", cut(message, 160)));
    }
    // ResourceQuota and Pod Security admission answer 403 too: name them, not RBAC.
    if let Some(rest) = stderr.split("exceeded quota: ").nth(1) {
        let why = rest.lines().next().unwrap_or(rest);
        return Some(format!("refused by ResourceQuota {}", cut(why, 160)));
    }
    if let Some(rest) = stderr.split("violates PodSecurity ").nth(1) {
        let why = rest.lines().next().unwrap_or(rest);
        return Some(format!(
            "denied by Pod Security admission: {}",
            cut(why, 160)
        ));
    }
    if let Some(rest) = stderr.split(" is forbidden: ").nth(1) {
        let why = rest.lines().next().unwrap_or(rest).trim_end_matches('.');
        return Some(format!("forbidden by RBAC: {}", cut(why, 160)));
    }
    if stderr.contains("Unauthorized") {
        return Some("unauthorized".to_owned());
    }
    None
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Runs every attack and legitimate action; one line of evidence each, or every attack that held.
pub fn run(sh: &Shell, cluster: &Cluster, tree: &Tree) -> anyhow::Result<Vec<String>> {
    let ns = PROVIDER_SERVICE;
    let developer = developer_of(tree, ns)?;
    let tenant = tenant_of(tree, ns)?;
    let client_tenant = tenant_of(tree, CLIENT_SERVICE)?;
    let deployment = tree
        .of_kind("Deployment")
        .into_iter()
        .find(|d| str_at(d, "/metadata/namespace") == ns)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the tree has no Deployment in {ns}"))?;
    let name = str_at(&deployment, "/metadata/name").to_owned();
    let image = str_at(&deployment, "/spec/template/spec/containers/0/image").to_owned();
    let antaeus = tree
        .of_kind("Deployment")
        .into_iter()
        .find(|d| str_at(d, "/metadata/namespace") == CLIENT_SERVICE)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the tree has no Deployment in {CLIENT_SERVICE}"))?;
    let pod = cluster
        .kubectl_read(sh, &["get", "pods", "-n", ns, "-o", "name"])?
        .lines()
        .next()
        .map(|p| p.trim_start_matches("pod/").to_owned())
        .ok_or_else(|| anyhow::anyhow!("no pod of {ns} runs: nothing to debug"))?;
    let mut lines = Vec::new();

    // The legitimate emergency actions first: if these are refused the platform is unusable.
    for (what, args) in legitimate(ns, &name) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = kubectl_as(sh, cluster, &developer, &args, None)?;
        if let Err(stderr) = output {
            bail!(
                "legitimate action refused: {} {what}: {}",
                developer.label,
                stderr.trim()
            );
        }
        lines.push(format!("admitted  {} {what}", developer.label));
    }

    // The tenant's Flux account applies what git carries: a compliant copy of its Deployment
    // under another name is admitted (the control of the pod-rule attacks, which change one field
    // of that copy each).
    let control = evasions::copy_with(&deployment, |_| {});
    let apply = [
        "apply",
        "--server-side",
        "--field-manager=e2e-attack",
        "--dry-run=server",
        "-f",
        "-",
    ];
    if let Err(stderr) = kubectl_as(sh, cluster, &tenant, &apply, Some(&control.to_string()))? {
        bail!(
            "legitimate action refused: {} applies a compliant copy of {name}: {}",
            tenant.label,
            stderr.trim()
        );
    }
    lines.push(format!(
        "admitted  {} applies a compliant copy of {name} (the control of the pod-rule attacks)",
        tenant.label
    ));

    let max_replicas = tree
        .of_kind("ConfigMap")
        .into_iter()
        .find(|c| {
            str_at(c, "/metadata/namespace") == ns
                && str_at(c, "/metadata/name") == "platform-policy"
        })
        .and_then(|c| str_at(c, "/data/maxReplicas").parse::<u32>().ok())
        .ok_or_else(|| anyhow::anyhow!("the tree has no platform-policy maxReplicas in {ns}"))?;
    let targets = Targets {
        ns,
        deployment: &deployment,
        max_replicas,
        name: &name,
        image: &image,
        pod: &pod,
        antaeus: &antaeus,
    };
    let mut all = attacks(&developer, &tenant, &client_tenant, &targets);
    all.extend(evasions::attacks(&developer, &tenant, &targets));
    // Every attack runs: one that got through must not hide the next one.
    let mut held = Vec::new();
    for attack in all {
        let args: Vec<&str> = attack.args.iter().map(String::as_str).collect();
        let who = &attack.who.label;
        match kubectl_as(sh, cluster, &attack.who, &args, attack.stdin.as_deref())? {
            Ok(_) => held.push(format!(
                "attack admitted: {who} {} (kubectl {})",
                attack.what,
                attack.args.join(" ")
            )),
            Err(stderr) => match refusal(&stderr) {
                Some(why)
                    if attack.denied_by.is_empty()
                        || attack.denied_by.iter().any(|p| why.contains(p)) =>
                {
                    lines.push(format!("refused   {who} {}: {why}", attack.what));
                }
                Some(why) => held.push(format!(
                    "attack {who} {} refused, but not by {}: {why}",
                    attack.what,
                    attack.denied_by.join(" or ")
                )),
                None => held.push(format!(
                    "attack {who} {} failed, but not as a refusal: {}",
                    attack.what,
                    stderr.trim()
                )),
            },
        }
    }
    if !held.is_empty() {
        bail!("{} of the attacks held:\n{}", held.len(), held.join("\n"));
    }
    let (status, body) = cluster.anonymous_get(sh, &format!("/api/v1/namespaces/{ns}/secrets"))?;
    match status {
        401 | 403 => {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            lines.push(format!(
                "refused   anonymous list secrets in {ns}: HTTP {status}: {}",
                cut(&message, 160)
            ));
        }
        200 => bail!("an anonymous request listed the Secrets of {ns}"),
        other => bail!(
            "the anonymous request got HTTP {other}, not a refusal: {}",
            cut(body.trim(), 300)
        ),
    }
    Ok(lines)
}

/// `kubectl ARGS --as …`: `Ok(stdout)` if the API server admitted it, `Err(stderr)` if not.
pub(super) fn kubectl_as(
    sh: &Shell,
    cluster: &Cluster,
    who: &Who,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Result<String, String>> {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(who.args());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    cluster.kubectl_result(sh, &all, stdin)
}

/// The first Group the tree's developer RoleBinding in `namespace` binds.
fn developer_of(tree: &Tree, namespace: &str) -> anyhow::Result<Who> {
    let group = tree
        .of_kind("RoleBinding")
        .into_iter()
        .filter(|b| {
            str_at(b, "/metadata/namespace") == namespace && str_at(b, "/roleRef/kind") == "Role"
        })
        .flat_map(|b| b["subjects"].as_array().cloned().unwrap_or_default())
        .find(|s| s["kind"] == "Group")
        .map(|s| str_at(&s, "/name").to_owned())
        .ok_or_else(|| anyhow::anyhow!("the tree binds no developer Group in {namespace}"))?;
    Ok(Who {
        label: format!("developer ({group})"),
        user: format!("e2e-developer@{namespace}"),
        groups: vec![group, "system:authenticated".to_owned()],
    })
}

/// The account the tree's Kustomization in `namespace` applies as.
fn tenant_of(tree: &Tree, namespace: &str) -> anyhow::Result<Who> {
    let account = tree
        .kustomizations
        .iter()
        .find(|k| k.namespace == namespace)
        .and_then(|k| k.service_account.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("the tree has no Kustomization with an account in {namespace}")
        })?;
    let user = format!("system:serviceaccount:{namespace}:{account}");
    Ok(Who {
        label: format!("tenant {user}"),
        user,
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
    })
}

pub(super) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// What an emergency needs: scale within the spec's maximum, restart the rollout.
fn legitimate(ns: &str, name: &str) -> Vec<(String, Vec<String>)> {
    let deployment = format!("deployment/{name}");
    vec![
        (
            format!("scale {deployment} to 3"),
            strings(&[
                "scale",
                &deployment,
                "-n",
                ns,
                "--replicas=3",
                "--dry-run=server",
            ]),
        ),
        // `kubectl rollout restart` takes no --dry-run: this is the patch it sends.
        (
            format!("restart {deployment}"),
            strings(&[
                "patch",
                &deployment,
                "-n",
                ns,
                "--type",
                "strategic",
                "-p",
                &json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": "2026-12-02T00:00:00Z"
                }}}}})
                .to_string(),
                "--dry-run=server",
            ]),
        ),
    ]
}

/// What the attacks aim at, from the tree and the live cluster.
pub(super) struct Targets<'a> {
    /// The provider's namespace.
    pub(super) ns: &'a str,
    /// Its Deployment as the tree has it, and the most replicas its platform settings allow.
    pub(super) deployment: &'a Value,
    pub(super) max_replicas: u32,
    /// Its Deployment, the image the tree gives it, one of its pods.
    pub(super) name: &'a str,
    pub(super) image: &'a str,
    pub(super) pod: &'a str,
    /// Antaeus' Deployment as the tree has it (the exempt one).
    pub(super) antaeus: &'a Value,
}

/// A strategic-merge patch of the Deployment's pod spec, as `kubectl patch` sends it.
fn pod_patch(pod_spec: Value) -> String {
    json!({"spec": {"template": {"spec": pod_spec}}}).to_string()
}

fn attacks(developer: &Who, tenant: &Who, client_tenant: &Who, targets: &Targets) -> Vec<Attack> {
    let Targets {
        ns,
        name,
        image,
        pod,
        antaeus,
        ..
    } = *targets;
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
    let run = |who: &Who, what: &str, args: &[&str]| Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(args)
            .into_iter()
            .chain(["--dry-run=server".to_owned()])
            .collect(),
        stdin: None,
        denied_by: &[],
    };
    let apply = |who: &Who, what: &str, object: Value| Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(&["apply", "--server-side", "--dry-run=server", "-f", "-"]),
        stdin: Some(object.to_string()),
        denied_by: &[],
    };
    let container = |extra: Value| {
        let mut c = json!({"name": "payment-provider"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        json!({"containers": [c]})
    };
    let mut attacks = vec![
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
            "annotates its GitRepository reconcile=disabled",
            &[
                "annotate",
                &format!("gitrepository/{ns}"),
                "-n",
                ns,
                "kustomize.toolkit.fluxcd.io/reconcile=disabled",
            ],
        ),
        Attack {
            who: tenant.clone(),
            what: "suspends its GitRepository".to_owned(),
            args: strings(&[
                "patch",
                &format!("gitrepository/{ns}"),
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"suspend":true}}"#,
                "--dry-run=server",
            ]),
            stdin: None,
            denied_by: &[],
        },
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
        Attack {
            who: developer.clone(),
            what: "pauses the Deployment and adds a foreign finalizer".to_owned(),
            args: strings(&[
                "patch",
                &deployment,
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":["attacker.example.com/keep"]},"spec":{"paused":true}}"#,
                "--dry-run=server",
            ]),
            stdin: None,
            denied_by: &[],
        },
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

/// The ephemeral container `kubectl debug --profile=general` would add.
pub(super) fn debug_container() -> String {
    json!({"spec": {"ephemeralContainers": [{"name": "e2e-debugger", "image": "docker.io/library/busybox:1.36",
        "command": ["sh"], "stdin": true, "tty": true,
        "securityContext": {"privileged": true}}]}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_rbac_and_by_admission_policies_are_told_apart_from_other_errors() {
        let vap = "Error from server (Forbidden): admission webhook... ValidatingAdmissionPolicy 'platform-replicas-bounded' with binding 'platform-replicas-bounded' denied request: replicas 10000 exceed 6\n";
        assert_eq!(
            refusal(vap).as_deref(),
            Some("denied by platform-replicas-bounded: replicas 10000 exceed 6")
        );
        let rbac = "Error from server (Forbidden): rolebindings.rbac.authorization.k8s.io is forbidden: User \"system:serviceaccount:p:flux-reconciler\" cannot create resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"p\"\n";
        assert!(refusal(rbac).is_some_and(|r| r.starts_with("forbidden by RBAC: User")));
        let quota = "Error from server (Forbidden): poddisruptionbudgets.policy \"x\" is forbidden: exceeded quota: platform-quota, requested: count/poddisruptionbudgets.policy=1, used: count/poddisruptionbudgets.policy=1, limited: count/poddisruptionbudgets.policy=1\n";
        assert!(
            refusal(quota)
                .is_some_and(|r| r.starts_with("refused by ResourceQuota platform-quota"))
        );
        let pod_security = "Error from server (Forbidden): pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"debugger\" must not set securityContext.privileged=true)\n";
        assert!(
            refusal(pod_security)
                .is_some_and(|r| r.starts_with("denied by Pod Security admission: \"restricted"))
        );
        assert_eq!(
            refusal("error: unable to recognize \"STDIN\": no matches for kind"),
            None
        );
        assert_eq!(
            refusal("Error from server (NotFound): deployments.apps \"x\" not found"),
            None
        );
    }

    #[test]
    fn the_replacement_image_keeps_the_repository_and_pins_a_digest_nobody_pinned() {
        assert_eq!(
            other_digest("ghcr.io/b/p:0.1.0@sha256:abc"),
            format!("ghcr.io/b/p:0.1.0@sha256:{}", "0".repeat(64))
        );
    }
}
