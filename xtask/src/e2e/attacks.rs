//! Step 6a: attacks on the tenancy promises, on the real API server, as a developer of the
//! provider's team and as the provider's Flux tenant account. Every attack must be refused (by
//! RBAC or by an admission policy, the refusal is printed), and the legitimate emergency actions
//! (scale within the spec's maximum, restart) must still be admitted.
//!
//! Changes are sent with `--dry-run=server`: RBAC and admission decide exactly as for a real
//! request, and an attack that is wrongly admitted leaves nothing behind to spoil later steps.
//!
//! This module runs the attacks and reads the refusals; the tables are beside it, in the order
//! they run: [`workload`] (the Deployment, its pods and Flux's switches on them), [`namespace`]
//! (the tenant account against its namespace's guards), [`sources`] (the Flux sources that keep
//! each tenant to its part of the repository), then `evasions.rs` (each pod rule, every
//! pod kind) and `side_doors.rs` (subresources and other objects). [`who`] is who sends them.

mod namespace;
mod sources;
mod who;
mod workload;

use anyhow::bail;
use serde_json::{Value, json};
use xshell::Shell;

use super::checks::{CLIENT_SERVICE, PROVIDER_SERVICE};
use super::cluster::Cluster;
use super::evasions;
use super::tree::{Tree, str_at};
pub(super) use who::Who;
use who::{developer_of, kubectl_as, tenant_of};
pub(super) use workload::debug_container;

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
    let mut all = workload::attacks(&developer, &tenant, &targets);
    all.extend(namespace::attacks(&tenant, &client_tenant, &targets));
    let sources = sources::Sources::of(tree, ns)?;
    all.extend(sources::attacks(&developer, &tenant, ns, &sources));
    all.extend(sources::editor_attacks(ns, &sources));
    all.extend(evasions::attacks(&developer, &tenant, &targets));
    // The editor's rights exist only while the attacks run: removed whatever happened, and both
    // failures reported if both happen.
    let editor = sources::editor_rbac().to_string();
    let outcome = cluster
        .kubectl(sh, &["apply", "-f", "-"], Some(&editor))
        .and_then(|()| run_all(sh, cluster, all, &mut lines));
    let removed = cluster.kubectl(
        sh,
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        Some(&editor),
    );
    match (outcome, removed) {
        (Ok(()), Ok(())) => {}
        (Err(err), Ok(())) | (Ok(()), Err(err)) => return Err(err),
        (Err(err), Err(cleanup)) => {
            return Err(err.context(format!(
                "and the editor's ClusterRole and binding {} were not removed: {cleanup:#}",
                sources::EDITOR
            )));
        }
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

/// Runs every attack, each line of evidence into `lines`; fails listing every attack that held.
fn run_all(
    sh: &Shell,
    cluster: &Cluster,
    all: Vec<Attack>,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
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
    Ok(())
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
}
