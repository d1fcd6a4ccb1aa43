//! Assertions on the live cluster once Flux has reconciled the tree: objects and rollouts,
//! admission policies, the RBAC matrix, and the network reachability of the rendered tree.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

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

/// One row of the RBAC matrix.
pub struct Access {
    pub group: String,
    pub namespace: String,
    pub verb: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub expected: bool,
    pub allowed: bool,
}

/// Step 5: `kubectl auth can-i` for each team group found in the tree's RoleBindings, in its own
/// service's namespace and in the others'.
pub fn rbac_matrix(sh: &Shell, cluster: &Cluster, tree: &Tree) -> anyhow::Result<Vec<Access>> {
    let service_namespaces: BTreeSet<String> = tree
        .of_kind("Deployment")
        .into_iter()
        .map(|d| str_at(d, "/metadata/namespace").to_string())
        .collect();
    let mut teams: Vec<(String, String, bool)> = Vec::new();
    for binding in tree.of_kind("RoleBinding") {
        let ns = str_at(binding, "/metadata/namespace");
        if !service_namespaces.contains(ns) {
            continue;
        }
        let role = str_at(binding, "/roleRef/name");
        let grants_exec = tree.of_kind("Role").into_iter().any(|r| {
            str_at(r, "/metadata/namespace") == ns
                && str_at(r, "/metadata/name") == role
                && r["rules"].as_array().is_some_and(|rules| {
                    rules.iter().any(|rule| {
                        rule["resources"]
                            .as_array()
                            .is_some_and(|res| res.iter().any(|r| r == "pods/exec"))
                    })
                })
        });
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            if subject["kind"] == "Group" {
                teams.push((str_at(subject, "/name").into(), ns.into(), grants_exec));
            }
        }
    }
    if teams.is_empty() {
        bail!("the tree binds no Group in a service namespace: no developer RoleBinding to test");
    }
    const OWN: &[(&str, &str, &str, bool)] = &[
        ("get", "deployments", "", true),
        ("patch", "deployments", "", true),
        ("update", "deployments", "", true),
        ("patch", "deployments", "scale", true),
        ("update", "deployments", "scale", true),
        ("list", "pods", "", true),
        ("get", "pods", "log", true),
        ("create", "deployments", "", false),
        ("delete", "deployments", "", false),
        ("create", "pods", "", false),
        ("create", "jobs", "", false),
        ("get", "secrets", "", false),
        ("list", "secrets", "", false),
        ("create", "rolebindings", "", false),
        ("create", "roles", "", false),
    ];
    const OTHER: &[(&str, &str, &str)] = &[
        ("get", "deployments", ""),
        ("patch", "deployments", ""),
        ("list", "pods", ""),
        ("get", "pods", "log"),
        ("get", "secrets", ""),
    ];
    let mut rows = Vec::new();
    for (group, own, grants_exec) in &teams {
        let mut checks: Vec<(String, &'static str, &'static str, &'static str, bool)> = OWN
            .iter()
            .map(|(v, r, s, e)| (own.clone(), *v, *r, *s, *e))
            .collect();
        checks.push((own.clone(), "create", "pods", "exec", *grants_exec));
        for other in service_namespaces.iter().filter(|ns| *ns != own) {
            checks.extend(
                OTHER
                    .iter()
                    .map(|(v, r, s)| (other.clone(), *v, *r, *s, false)),
            );
        }
        for (namespace, verb, resource, subresource, expected) in checks {
            let allowed = can_i(sh, cluster, group, &namespace, verb, resource, subresource)?;
            rows.push(Access {
                group: group.clone(),
                namespace,
                verb,
                resource,
                subresource,
                expected,
                allowed,
            });
        }
    }
    Ok(rows)
}

fn can_i(
    sh: &Shell,
    cluster: &Cluster,
    group: &str,
    namespace: &str,
    verb: &str,
    resource: &str,
    subresource: &str,
) -> anyhow::Result<bool> {
    let admin = &cluster.admin;
    let user = format!("--as=e2e-member-of-{group}");
    let as_group = format!("--as-group={group}");
    let sub = (!subresource.is_empty()).then(|| format!("--subresource={subresource}"));
    let output = cmd!(
        sh,
        "kubectl --kubeconfig {admin} --request-timeout=30s auth can-i {verb} {resource} {sub...} -n {namespace} {user} {as_group}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!(
            "kubectl auth can-i {verb} {resource} gave {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The matrix as a table; `ok` is whether the answer matches what the design promises.
pub fn format_matrix(rows: &[Access]) -> String {
    let mut out = format!(
        "{:<34} {:<18} {:<26} {:<8} {:<8} {}\n",
        "group", "namespace", "verb resource", "expect", "got", "ok"
    );
    for row in rows {
        let what = if row.subresource.is_empty() {
            format!("{} {}", row.verb, row.resource)
        } else {
            format!("{} {}/{}", row.verb, row.resource, row.subresource)
        };
        let yn = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!(
            "{:<34} {:<18} {:<26} {:<8} {:<8} {}\n",
            row.group,
            row.namespace,
            what,
            yn(row.expected),
            yn(row.allowed),
            if row.expected == row.allowed {
                "ok"
            } else {
                "WRONG"
            }
        ));
    }
    out
}

/// Step 7: netpol-analyzer over the rendered tree; the provider is reachable from Antaeus only,
/// on the provider's container port. Returns the connectivity list.
pub fn connectivity(
    sh: &Shell,
    netpolicy: &Path,
    tree: &Tree,
    dir: &Path,
) -> anyhow::Result<String> {
    let out_dir = dir.join("netpol");
    std::fs::create_dir_all(&out_dir)?;
    let objects: Vec<Value> = tree
        .objects()
        .into_iter()
        .filter(|o| !str_at(o, "/apiVersion").contains("fluxcd.io"))
        .cloned()
        .collect();
    let mut yaml = String::new();
    for object in &objects {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(object)?);
    }
    std::fs::write(out_dir.join("tree.yaml"), yaml)?;
    let output = cmd!(sh, "{netpolicy} list --dirpath {out_dir}")
        .quiet()
        .ignore_status()
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "netpolicy list failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let provider_ports: BTreeSet<String> = tree
        .of_kind("Deployment")
        .into_iter()
        .filter(|d| str_at(d, "/metadata/namespace") == PROVIDER_SERVICE)
        .flat_map(|d| {
            d.pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .filter_map(|p| p["containerPort"].as_i64())
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    check_provider_reachability(&text, &provider_ports)?;
    Ok(text)
}

/// Every line `src => dst : conns` whose destination is in the provider's namespace must come
/// from Antaeus's namespace and allow TCP on the provider's port only; and there must be one.
pub fn check_provider_reachability(
    list: &str,
    provider_ports: &BTreeSet<String>,
) -> anyhow::Result<()> {
    if provider_ports.is_empty() {
        bail!("the tree has no {PROVIDER_SERVICE} Deployment with a container port");
    }
    let mut allowed_from_client = false;
    for line in list.lines() {
        let Some((src, rest)) = line.split_once("=>") else {
            continue;
        };
        let Some((dst, conns)) = rest.split_once(':') else {
            continue;
        };
        let (src, dst, conns) = (src.trim(), dst.trim(), conns.trim());
        if !dst.starts_with(&format!("{PROVIDER_SERVICE}/")) {
            continue;
        }
        let from_client = src.starts_with(&format!("{CLIENT_SERVICE}/"));
        let expected_conns: Vec<String> =
            provider_ports.iter().map(|p| format!("TCP {p}")).collect();
        if !from_client || conns != expected_conns.join(",") {
            bail!(
                "{PROVIDER_SERVICE} is reachable as `{line}`: only {CLIENT_SERVICE} on {} may reach it",
                expected_conns.join(",")
            );
        }
        allowed_from_client = true;
    }
    if !allowed_from_client {
        bail!("{CLIENT_SERVICE} cannot reach {PROVIDER_SERVICE} at all in the connectivity list");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> BTreeSet<String> {
        ["9000".to_string()].into()
    }

    #[test]
    fn only_antaeus_on_the_provider_port_passes() {
        let list = "0.0.0.0-255.255.255.255 => antaeus/antaeus[Deployment] : TCP 8000\nantaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 9000\n";
        check_provider_reachability(list, &ports()).unwrap();
    }

    #[test]
    fn another_source_reaching_the_provider_fails() {
        let list = "antaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 9000\n0.0.0.0-255.255.255.255 => payment-provider/payment-provider[Deployment] : All Connections\n";
        let err = check_provider_reachability(list, &ports()).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0-255.255.255.255"), "{err}");
    }

    #[test]
    fn a_wrong_port_fails() {
        let list = "antaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 8000\n";
        assert!(check_provider_reachability(list, &ports()).is_err());
    }

    #[test]
    fn no_connection_at_all_fails() {
        let err = check_provider_reachability("", &ports()).unwrap_err();
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }

    #[test]
    fn the_matrix_marks_unexpected_answers() {
        let rows = [Access {
            group: "team".into(),
            namespace: "ns".into(),
            verb: "get",
            resource: "secrets",
            subresource: "",
            expected: false,
            allowed: true,
        }];
        let table = format_matrix(&rows);
        assert!(table.contains("get secrets"), "{table}");
        assert!(table.contains("WRONG"), "{table}");
    }
}
