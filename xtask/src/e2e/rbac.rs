//! Step 5: the RBAC matrix. For every team group that the tree binds in a service namespace,
//! `kubectl auth can-i --as=… --as-group=<group>` in its own namespace and in the others'.

use std::collections::BTreeSet;

use anyhow::bail;
use xshell::{Shell, cmd};

use super::cluster::Cluster;
use super::tree::{Tree, str_at};

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

#[cfg(test)]
mod tests {
    use super::*;

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
