//! Step 4, assertions on the live cluster once Flux has reconciled the tree: objects exist,
//! rollouts are Available, and the admission policies are installed and deny bad Deployments.

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use super::cluster::Cluster;
use super::tree::{Tree, is_cluster_scoped, key, str_at};

/// The two services of the platform: the provider must be reachable from Antaeus only.
pub const CLIENT_SERVICE: &str = "antaeus";
pub const PROVIDER_SERVICE: &str = "payment-provider";

/// Step 4a: every object of the tree exists; every Deployment is Available with all replicas.
pub fn objects_exist(sh: &Shell, cluster: &Cluster, tree: &Tree) -> anyhow::Result<String> {
    let objects = tree.objects();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    // `kubectl get -f` looks every object up by kind, namespace and name; NotFound names it.
    cluster
        .kubectl_output(
            sh,
            &["get", "-f", "-", "-o", "name"],
            Some(&list.to_string()),
        )
        .context("objects of the tree are missing from the cluster")?;
    let mut rollouts = Vec::new();
    for deployment in tree.of_kind("Deployment") {
        let ns = str_at(deployment, "/metadata/namespace");
        let name = str_at(deployment, "/metadata/name");
        let live: Value = serde_json::from_str(
            &cluster.kubectl_read(sh, &["get", "deployment", "-n", ns, name, "-o", "json"])?,
        )?;
        let want = live
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let available = live
            .pointer("/status/availableReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let condition = live
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
            .map(|c| str_at(c, "/status").to_string())
            .unwrap_or_default();
        if condition != "True" || available != want {
            bail!(
                "Deployment {ns}/{name} is not Available: condition Available={condition:?}, {available}/{want} replicas available"
            );
        }
        rollouts.push(format!("{ns}/{name} {available}/{want}"));
    }
    Ok(format!(
        "{} objects exist; Deployments Available: {}",
        objects.len(),
        rollouts.join(", ")
    ))
}

/// Step 4b: the tree's ValidatingAdmissionPolicies are installed and reject a Deployment with
/// probes missing, a `:latest` image, or a privileged container, while the generated one passes.
pub fn admission_policies(sh: &Shell, cluster: &Cluster, tree: &Tree) -> anyhow::Result<String> {
    let policies = tree.of_kind("ValidatingAdmissionPolicy");
    let bindings = tree.of_kind("ValidatingAdmissionPolicyBinding");
    if policies.is_empty() || bindings.is_empty() {
        bail!(
            "the tree has {} ValidatingAdmissionPolicies and {} bindings: the policy bundle is not in flux/ (merge the policies crate and run `cargo xtask gen`)",
            policies.len(),
            bindings.len()
        );
    }
    for policy in &policies {
        let name = str_at(policy, "/metadata/name");
        cluster
            .kubectl_read(
                sh,
                &["get", "validatingadmissionpolicy", name, "-o", "name"],
            )
            .with_context(|| format!("ValidatingAdmissionPolicy {name} is not installed"))?;
    }
    let deployments = tree.of_kind("Deployment");
    let mut results = Vec::new();
    // The first generated Deployment that the policies admit under a new name is the control:
    // each bad variant differs from it in one way only.
    let mut control = None;
    let mut refusals = Vec::new();
    for deployment in &deployments {
        let copy = renamed(deployment, "e2e-admission-control");
        match dry_run_create(sh, cluster, &copy) {
            Ok(()) => {
                control = Some(copy);
                break;
            }
            Err(err) => refusals.push(format!("{}: {err:#}", key(deployment))),
        }
    }
    let Some(control) = control else {
        bail!(
            "no generated Deployment is admitted when created under a new name, so no bad variant can be told apart: {}",
            refusals.join("; ")
        );
    };
    results.push(format!(
        "control {} admitted",
        str_at(&control, "/metadata/name")
    ));
    let variants: [(&str, Mutation); 3] = [
        ("probes missing", |d| {
            for c in containers(d) {
                if let Some(c) = c.as_object_mut() {
                    c.remove("livenessProbe");
                    c.remove("readinessProbe");
                    c.remove("startupProbe");
                }
            }
        }),
        ("image :latest", |d| {
            for c in containers(d) {
                let image = str_at(c, "/image");
                let repo = image.split('@').next().unwrap_or(image);
                let repo = match repo.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => r,
                    _ => repo,
                };
                c["image"] = Value::String(format!("{repo}:latest"));
            }
        }),
        ("privileged", |d| {
            for c in containers(d) {
                c["securityContext"]["privileged"] = Value::Bool(true);
                c["securityContext"]["allowPrivilegeEscalation"] = Value::Bool(true);
            }
        }),
    ];
    for (what, mutate) in variants {
        let mut bad = renamed(&control, "e2e-admission-bad");
        mutate(&mut bad);
        match dry_run_create(sh, cluster, &bad) {
            Ok(()) => bail!(
                "a Deployment with {what} was admitted: no ValidatingAdmissionPolicy denies it"
            ),
            Err(err) => {
                let text = format!("{err:#}");
                if !text.contains("ValidatingAdmissionPolicy") {
                    bail!(
                        "a Deployment with {what} was refused, but not by an admission policy: {text}"
                    );
                }
                let policy = text
                    .split("ValidatingAdmissionPolicy '")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or("?");
                results.push(format!("{what}: denied by {policy}"));
            }
        }
    }
    Ok(format!(
        "{} policies, {} bindings installed; {}",
        policies.len(),
        bindings.len(),
        results.join("; ")
    ))
}

/// One way to make a compliant Deployment non-compliant.
type Mutation = fn(&mut Value);

fn renamed(deployment: &Value, suffix: &str) -> Value {
    let mut copy = deployment.clone();
    let name = format!("{}-{suffix}", str_at(deployment, "/metadata/name"));
    copy["metadata"]["name"] = Value::String(name);
    copy
}

fn containers(deployment: &mut Value) -> Vec<&mut Value> {
    deployment
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .map(|c| c.iter_mut().collect())
        .unwrap_or_default()
}

/// `kubectl create --dry-run=server` as the admin: admission runs, nothing is stored.
fn dry_run_create(sh: &Shell, cluster: &Cluster, object: &Value) -> anyhow::Result<()> {
    cluster.kubectl(
        sh,
        &["create", "--dry-run=server", "-f", "-"],
        Some(&object.to_string()),
    )
}

/// Objects in a namespace whose name carries `marker` (to prove nothing leaked across tenants).
pub fn leaked(
    sh: &Shell,
    cluster: &Cluster,
    namespace: &str,
    marker: &str,
) -> anyhow::Result<Vec<String>> {
    let names = cluster.kubectl_read(
        sh,
        &[
            "get",
            "configmaps,secrets,deployments,services,roles,rolebindings",
            "-n",
            namespace,
            "-o",
            "name",
        ],
    )?;
    Ok(names
        .lines()
        .filter(|n| n.contains(marker))
        .map(str::to_string)
        .collect())
}

/// Whether the object described by `object` exists (cluster-scoped or namespaced).
pub fn exists(sh: &Shell, cluster: &Cluster, object: &Value) -> bool {
    let kind = str_at(object, "/kind").to_lowercase();
    let name = str_at(object, "/metadata/name");
    let mut args = vec!["get", kind.as_str(), name, "-o", "name"];
    let ns = str_at(object, "/metadata/namespace");
    if !is_cluster_scoped(object) && !ns.is_empty() {
        args.extend(["-n", ns]);
    }
    cluster.kubectl_read(sh, &args).is_ok()
}
