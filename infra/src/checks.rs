//! Cross-object checks over a rendered tree: selectors that select nothing, ports that are not
//! container ports, OR-instead-of-AND peers, workloads without default-deny, RBAC outside its
//! namespace or pointing at nothing, Flux paths and sources that do not exist.
//!
//! They read only `(file, cluster, object)` entries, so they run on any [`Tree`] — the default one,
//! a synthetic one, or a deliberately broken one in the tests — and report every problem. This
//! module indexes each cluster's objects once; [`workload`], [`network`], [`rbac`] and [`flux`]
//! check one concern each, with [`selectors`] as the label-selector semantics they share.

mod flux;
mod network;
mod rbac;
pub mod selectors;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::tree::{Tree, describe};
pub use selectors::selects;
use selectors::{Labels, labels_of};

/// One failed check: the file, the object (`Kind/namespace/name`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub file: String,
    pub object: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.object, self.message)
    }
}

/// A pod template of a workload, as the checks need it.
struct Pods<'a> {
    workload: String,
    labels: Labels<'a>,
    /// `(name, number)` of every container port.
    ports: Vec<(Option<&'a str>, i64)>,
}

impl Pods<'_> {
    fn has_port(&self, port: &Value) -> bool {
        match port {
            Value::Number(n) => self.ports.iter().any(|(_, p)| Some(*p) == n.as_i64()),
            Value::String(s) => self.ports.iter().any(|(name, _)| *name == Some(s.as_str())),
            _ => false,
        }
    }
}

/// What one cluster holds, indexed for the checks.
#[derive(Default)]
struct Cluster<'a> {
    namespaces: BTreeMap<&'a str, Labels<'a>>,
    pods: BTreeMap<&'a str, Vec<Pods<'a>>>,
    service_accounts: BTreeSet<(&'a str, &'a str)>,
    roles: BTreeSet<(&'a str, &'a str)>,
    cluster_roles: BTreeSet<&'a str>,
    git_repositories: BTreeMap<(&'a str, &'a str), &'a Value>,
    oci_repositories: BTreeMap<(&'a str, &'a str), &'a Value>,
    kustomizations: BTreeSet<(&'a str, &'a str)>,
    /// The generated directories (roots) whose build applies a Flux Kustomization, with one file
    /// holding one.
    applying_kustomizations: BTreeMap<&'a str, &'a str>,
    policies: BTreeMap<&'a str, Vec<&'a Value>>,
    objects: Vec<(&'a str, &'a Value)>,
}

fn ns_of(value: &Value) -> &str {
    value["metadata"]["namespace"].as_str().unwrap_or("default")
}

fn name_of(value: &Value) -> &str {
    value["metadata"]["name"].as_str().unwrap_or("")
}

/// Runs every check over every cluster of `tree`; findings are sorted by file then object.
pub fn run(tree: &Tree) -> Vec<Finding> {
    let mut clusters: BTreeMap<&str, Cluster<'_>> = BTreeMap::new();
    for entry in tree.entries() {
        let value = entry.object.value();
        let cluster = clusters.entry(entry.cluster).or_default();
        cluster.objects.push((entry.file, value));
        let (ns, name) = (ns_of(value), name_of(value));
        match value["kind"].as_str().unwrap_or("") {
            "Namespace" => {
                let mut labels = labels_of(&value["metadata"]["labels"]);
                labels.insert("kubernetes.io/metadata.name", name);
                cluster.namespaces.insert(name, labels);
            }
            "Deployment" | "StatefulSet" | "DaemonSet" => {
                let template = &value["spec"]["template"];
                let ports = template["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .filter_map(|p| Some((p["name"].as_str(), p["containerPort"].as_i64()?)))
                    .collect();
                cluster.pods.entry(ns).or_default().push(Pods {
                    workload: describe(value),
                    labels: labels_of(&template["metadata"]["labels"]),
                    ports,
                });
            }
            "ServiceAccount" => {
                cluster.service_accounts.insert((ns, name));
            }
            "Role" => {
                cluster.roles.insert((ns, name));
            }
            "ClusterRole" => {
                cluster.cluster_roles.insert(name);
            }
            "GitRepository" => {
                cluster.git_repositories.insert((ns, name), value);
            }
            "OCIRepository" => {
                cluster.oci_repositories.insert((ns, name), value);
            }
            "Kustomization" if flux::is_flux_kustomization(value) => {
                cluster.kustomizations.insert((ns, name));
                if let Some(root) = tree.root_of(entry.file) {
                    cluster
                        .applying_kustomizations
                        .entry(root)
                        .or_insert(entry.file);
                }
            }
            "NetworkPolicy" => cluster.policies.entry(ns).or_default().push(value),
            _ => {}
        }
    }
    let mut findings = Vec::new();
    for cluster in clusters.values() {
        for (file, value) in &cluster.objects {
            let mut report = |message: String| {
                findings.push(Finding {
                    file: (*file).to_owned(),
                    object: describe(value),
                    message,
                });
            };
            match value["kind"].as_str().unwrap_or("") {
                "Deployment" | "StatefulSet" | "DaemonSet" => {
                    workload::check_workload(cluster, value, &mut report)
                }
                "Service" => workload::check_service(cluster, value, &mut report),
                "NetworkPolicy" => network::check_policy(cluster, value, &mut report),
                "RoleBinding" => rbac::check_role_binding(cluster, value, &mut report),
                "ClusterRoleBinding" => rbac::check_cluster_role_binding(&mut report),
                "Role" => rbac::check_role(value, &mut report),
                "Kustomization" if flux::is_flux_kustomization(value) => {
                    flux::check_kustomization(tree, cluster, value, &mut report)
                }
                "OCIRepository" => flux::check_oci_repository(tree, value, &mut report),
                _ => {}
            }
        }
    }
    findings.sort();
    findings
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing;

    /// The findings on the default tree with one object edited (see [`testing::edited`]).
    pub(crate) fn broken(
        file_part: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        edit: impl Fn(&mut Value),
    ) -> Vec<String> {
        let tree = testing::edited(file_part, kind, namespace, name, edit);
        run(&tree).iter().map(ToString::to_string).collect()
    }

    pub(crate) fn assert_found(found: &[String], expected: &str) {
        assert!(
            found.iter().any(|f| f == expected),
            "expected `{expected}` among {found:#?}"
        );
    }

    #[test]
    fn the_default_tree_passes_every_check() {
        assert_eq!(run(testing::tree()), Vec::<Finding>::new());
    }
}
