//! Cross-object checks over a rendered tree: selectors that select nothing, ports that are not
//! container ports, OR-instead-of-AND peers, workloads without default-deny, RBAC outside its
//! namespace or pointing at nothing, Flux paths and sources that do not exist.
//!
//! They read only `(file, cluster, object)` entries, so they run on any [`Tree`] — the default one,
//! a synthetic one, or a deliberately broken one in the tests — and report every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::tree::{Tree, describe};

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

/// Namespaces the cluster provides (not in the tree) that policies may name: DNS lives here.
const CLUSTER_NAMESPACES: &[&str] = &["kube-system"];
/// ClusterRoles every cluster has.
const BUILTIN_CLUSTER_ROLES: &[&str] = &["cluster-admin", "admin", "edit", "view"];
/// Accounts Flux's installation creates, which platform Kustomizations may name.
const FLUX_ACCOUNTS: &[(&str, &str)] = &[("flux-system", "kustomize-controller")];

/// Which API group a resource lives in, for the resources Roles commonly name.
const RESOURCE_GROUPS: &[(&str, &str)] = &[
    ("pods", ""),
    ("pods/log", ""),
    ("pods/exec", ""),
    ("pods/portforward", ""),
    ("services", ""),
    ("endpoints", ""),
    ("configmaps", ""),
    ("secrets", ""),
    ("serviceaccounts", ""),
    ("persistentvolumeclaims", ""),
    ("deployments", "apps"),
    ("deployments/scale", "apps"),
    ("replicasets", "apps"),
    ("statefulsets", "apps"),
    ("daemonsets", "apps"),
    ("jobs", "batch"),
    ("cronjobs", "batch"),
    ("ingresses", "networking.k8s.io"),
    ("networkpolicies", "networking.k8s.io"),
    ("roles", "rbac.authorization.k8s.io"),
    ("rolebindings", "rbac.authorization.k8s.io"),
    ("poddisruptionbudgets", "policy"),
    ("endpointslices", "discovery.k8s.io"),
];

type Labels<'a> = BTreeMap<&'a str, &'a str>;

fn labels_of(value: &Value) -> Labels<'_> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a LabelSelector (as JSON) selects `labels`. An absent or empty selector selects all.
pub fn selects(selector: &Value, labels: &Labels<'_>) -> bool {
    let match_labels_ok = selector["matchLabels"].as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k.as_str()).copied() == v.as_str())
    });
    let expressions_ok = selector["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let actual = labels.get(key).copied();
            match e["operator"].as_str().unwrap_or("") {
                "In" => actual.is_some_and(|a| values.contains(&a)),
                "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        })
    });
    match_labels_ok && expressions_ok
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
    git_repositories: BTreeSet<(&'a str, &'a str)>,
    kustomizations: BTreeSet<(&'a str, &'a str)>,
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
                cluster.git_repositories.insert((ns, name));
            }
            "Kustomization" => {
                cluster.kustomizations.insert((ns, name));
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
                "Deployment" | "StatefulSet" | "DaemonSet" => check_workload(cluster, value, &mut report),
                "Service" => check_service(cluster, value, &mut report),
                "NetworkPolicy" => check_network_policy(cluster, value, &mut report),
                "RoleBinding" => check_role_binding(cluster, value, &mut report),
                "ClusterRoleBinding" => report(
                    "grants cluster-wide rights: the platform grants rights per service namespace only (use a RoleBinding)".into(),
                ),
                "Role" => check_role(value, &mut report),
                "Kustomization" if value["apiVersion"].as_str().is_some_and(|v| v.starts_with("kustomize.toolkit.fluxcd.io/")) => {
                    check_kustomization(tree, cluster, value, &mut report)
                }
                _ => {}
            }
        }
    }
    findings.sort();
    findings
}

fn check_workload(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    let template = &value["spec"]["template"];
    let labels = labels_of(&template["metadata"]["labels"]);
    if !selects(&value["spec"]["selector"], &labels) {
        report("spec.selector does not match the pod template's labels".into());
    }
    let pods = cluster
        .pods
        .get(ns)
        .and_then(|all| all.iter().find(|p| p.workload == describe(value)));
    for container in template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            let port = if port.is_null() {
                &container[probe]["tcpSocket"]["port"]
            } else {
                port
            };
            if !port.is_null() && !pods.is_some_and(|p| p.has_port(port)) {
                report(format!(
                    "container `{}` {probe} targets port {port}, which is not a declared container port",
                    container["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    let account = template["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if account != "default" && !cluster.service_accounts.contains(&(ns, account)) {
        report(format!(
            "runs as ServiceAccount `{account}`, which does not exist in namespace `{ns}`"
        ));
    }
    if !cluster.namespaces.contains_key(ns) {
        report(format!("namespace `{ns}` is not declared in the tree"));
    }
    for direction in ["Ingress", "Egress"] {
        let covered = cluster
            .policies
            .get(ns)
            .into_iter()
            .flatten()
            .any(|policy| {
                is_deny_all(policy, direction) && selects(&policy["spec"]["podSelector"], &labels)
            });
        if !covered {
            report(format!(
                "its pods are not covered by a default-deny NetworkPolicy for {direction} (empty podSelector, policyTypes [{direction}], no rules)"
            ));
        }
    }
}

fn is_deny_all(policy: &Value, direction: &str) -> bool {
    let field = if direction == "Ingress" {
        "ingress"
    } else {
        "egress"
    };
    let types_ok = policy["spec"]["policyTypes"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == direction));
    let no_rules = policy["spec"][field].as_array().is_none_or(Vec::is_empty);
    types_ok && no_rules
}

fn check_service(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    let selector = &value["spec"]["selector"];
    let Some(selector_map) = selector.as_object() else {
        report("has no selector: it selects no pod (and would need hand-made Endpoints)".into());
        return;
    };
    let selected: Vec<&Pods<'_>> = cluster
        .pods
        .get(ns)
        .into_iter()
        .flatten()
        .filter(|p| {
            selector_map
                .iter()
                .all(|(k, v)| p.labels.get(k.as_str()).copied() == v.as_str())
        })
        .collect();
    if selected.is_empty() {
        report(format!(
            "selector {selector} selects no pod in namespace `{ns}`"
        ));
        return;
    }
    for port in value["spec"]["ports"].as_array().into_iter().flatten() {
        let target = if port["targetPort"].is_null() {
            &port["port"]
        } else {
            &port["targetPort"]
        };
        if !selected.iter().all(|p| p.has_port(target)) {
            report(format!(
                "targetPort {target} is not a container port of the pods it selects"
            ));
        }
    }
}

fn check_network_policy(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    let pod_selector = &value["spec"]["podSelector"];
    let local: Vec<&Pods<'_>> = cluster
        .pods
        .get(ns)
        .into_iter()
        .flatten()
        .filter(|p| selects(pod_selector, &p.labels))
        .collect();
    let selects_all = pod_selector.as_object().is_none_or(|m| {
        m.values()
            .all(|v| v.as_object().is_some_and(|o| o.is_empty()))
    });
    if local.is_empty() && !selects_all {
        report(format!(
            "podSelector {pod_selector} selects no pod in namespace `{ns}`"
        ));
    }
    if !cluster.namespaces.contains_key(ns) {
        report(format!("namespace `{ns}` is not declared in the tree"));
    }
    for (field, peers_field) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in value["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let peers: Vec<&Value> = rule[peers_field].as_array().into_iter().flatten().collect();
            let mut peer_pods: Vec<&Pods<'_>> = Vec::new();
            let mut external = peers.is_empty();
            for (j, peer) in peers.iter().enumerate() {
                let at = format!("{field}[{i}].{peers_field}[{j}]");
                if !peer["ipBlock"].is_null() {
                    external = true;
                    continue;
                }
                match (
                    peer["namespaceSelector"].is_null(),
                    peer["podSelector"].is_null(),
                ) {
                    (false, true) => {
                        report(format!(
                            "{at} has a namespaceSelector without a podSelector: it admits every pod of the matched namespaces (a podSelector in a separate peer item is ORed, not ANDed)"
                        ));
                        continue;
                    }
                    (true, false) => {
                        report(format!(
                            "{at} has a podSelector without a namespaceSelector: it matches pods of `{ns}` only (a namespaceSelector in a separate peer item is ORed, not ANDed)"
                        ));
                        continue;
                    }
                    _ => {}
                }
                let namespaces = matching_namespaces(cluster, &peer["namespaceSelector"]);
                let names_cluster_namespace = CLUSTER_NAMESPACES.iter().any(|cns| {
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == *cns
                });
                if names_cluster_namespace {
                    external = true;
                    continue;
                }
                let matched: Vec<&Pods<'_>> = namespaces
                    .iter()
                    .flat_map(|n| cluster.pods.get(n).into_iter().flatten())
                    .filter(|p| selects(&peer["podSelector"], &p.labels))
                    .collect();
                if matched.is_empty() {
                    report(format!(
                        "{at} names no workload: no pod matches its namespaceSelector and podSelector"
                    ));
                }
                peer_pods.extend(matched);
            }
            // Ingress ports are the selected pods' ports; egress ports are the peers' ports.
            let owners: &[&Pods<'_>] = if field == "ingress" {
                &local
            } else {
                &peer_pods
            };
            if owners.is_empty() || (field == "egress" && external) {
                continue;
            }
            for port in rule["ports"].as_array().into_iter().flatten() {
                let number = &port["port"];
                if !number.is_null() && !owners.iter().any(|p| p.has_port(number)) {
                    let whose = if field == "ingress" {
                        "the pods it selects"
                    } else {
                        "the peers it allows"
                    };
                    report(format!(
                        "{field}[{i}] allows port {number}, which is not a container port of {whose}"
                    ));
                }
            }
        }
    }
}

/// Namespaces a selector matches; a `kubernetes.io/metadata.name` label is looked up directly.
fn matching_namespaces<'a>(cluster: &Cluster<'a>, selector: &Value) -> Vec<&'a str> {
    if let Some(name) = selector["matchLabels"]["kubernetes.io/metadata.name"].as_str() {
        return cluster
            .namespaces
            .get_key_value(name)
            .filter(|(_, labels)| selects(selector, labels))
            .map(|(name, _)| vec![*name])
            .unwrap_or_default();
    }
    cluster
        .namespaces
        .iter()
        .filter(|(_, labels)| selects(selector, labels))
        .map(|(name, _)| *name)
        .collect()
}

fn check_role_binding(cluster: &Cluster<'_>, value: &Value, report: &mut impl FnMut(String)) {
    let ns = ns_of(value);
    match cluster.namespaces.get(ns) {
        None => report(format!(
            "grants rights in namespace `{ns}`, which is not declared in the tree"
        )),
        Some(ns_labels) => {
            let service = value["metadata"]["labels"]["app.kubernetes.io/name"].as_str();
            let owner = ns_labels.get("app.kubernetes.io/name").copied();
            if let Some(service) = service
                && owner != Some(service)
            {
                report(format!(
                    "grants rights in namespace `{ns}`, outside its service `{service}`'s namespace"
                ));
            }
        }
    }
    let role_ref = &value["roleRef"];
    let role = role_ref["name"].as_str().unwrap_or("");
    match role_ref["kind"].as_str().unwrap_or("") {
        "Role" if !cluster.roles.contains(&(ns, role)) => {
            report(format!(
                "references Role `{role}`, which does not exist in namespace `{ns}`"
            ));
        }
        "ClusterRole"
            if !BUILTIN_CLUSTER_ROLES.contains(&role) && !cluster.cluster_roles.contains(role) =>
        {
            report(format!(
                "references ClusterRole `{role}`, which is neither built in nor in the tree"
            ));
        }
        _ => {}
    }
    for subject in value["subjects"].as_array().into_iter().flatten() {
        if subject["kind"] != "ServiceAccount" {
            continue;
        }
        let name = subject["name"].as_str().unwrap_or("");
        let sa_ns = subject["namespace"].as_str().unwrap_or(ns);
        if sa_ns != ns {
            report(format!(
                "grants rights in `{ns}` to ServiceAccount `{sa_ns}/{name}` of another namespace"
            ));
        } else if !cluster.service_accounts.contains(&(sa_ns, name)) {
            report(format!(
                "references ServiceAccount `{sa_ns}/{name}`, which does not exist"
            ));
        }
    }
}

fn check_role(value: &Value, report: &mut impl FnMut(String)) {
    for (i, rule) in value["rules"].as_array().into_iter().flatten().enumerate() {
        let groups: Vec<&str> = rule["apiGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if groups.contains(&"*") {
            continue;
        }
        for resource in rule["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let Some((_, home)) = RESOURCE_GROUPS.iter().find(|(r, _)| *r == resource) else {
                continue;
            };
            if !groups.contains(home) {
                let shown: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
                report(format!(
                    "rules[{i}] grants `{resource}` under API group(s) [{}], where it does not exist: it lives in {home:?}, so the rule grants nothing",
                    shown.join(", ")
                ));
            }
        }
    }
}

fn check_kustomization(
    tree: &Tree,
    cluster: &Cluster<'_>,
    value: &Value,
    report: &mut impl FnMut(String),
) {
    let ns = ns_of(value);
    let spec = &value["spec"];
    let path = spec["path"].as_str().unwrap_or("");
    let dir = path.trim_start_matches("./").trim_end_matches('/');
    if !tree.has_root(dir) {
        report(format!(
            "spec.path `{path}` is not a generated directory with a kustomization.yaml"
        ));
    }
    let source = &spec["sourceRef"];
    let source_ns = source["namespace"].as_str().unwrap_or(ns);
    let source_name = source["name"].as_str().unwrap_or("");
    if source_ns != ns {
        report(format!(
            "spec.sourceRef points into namespace `{source_ns}`: cross-namespace refs are blocked by --no-cross-namespace-refs"
        ));
    } else if source["kind"] == "GitRepository"
        && !cluster.git_repositories.contains(&(ns, source_name))
    {
        report(format!(
            "spec.sourceRef names GitRepository `{ns}/{source_name}`, which does not exist"
        ));
    }
    match spec["serviceAccountName"].as_str() {
        None => report(
            "spec.serviceAccountName is empty: under --default-service-account it would run as a powerless account".into(),
        ),
        Some(account) => {
            let installed = FLUX_ACCOUNTS.contains(&(ns, account));
            if !installed && !cluster.service_accounts.contains(&(ns, account)) {
                report(format!("spec.serviceAccountName `{account}` does not exist in namespace `{ns}`"));
            }
        }
    }
    for dependency in spec["dependsOn"].as_array().into_iter().flatten() {
        let dep_ns = dependency["namespace"].as_str().unwrap_or(ns);
        let dep = dependency["name"].as_str().unwrap_or("");
        if !cluster.kustomizations.contains(&(dep_ns, dep)) {
            report(format!(
                "spec.dependsOn names Kustomization `{dep_ns}/{dep}`, which does not exist"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;
    use crate::spec::Spec;
    use serde_json::json;

    fn default_tree() -> Tree {
        crate::render(&Spec::embedded().expect("the shipped spec is valid")).expect("renders")
    }

    /// The default tree with the object `kind/namespace/name` in `file_part` edited by `edit`.
    fn broken(
        file_part: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        edit: impl Fn(&mut Value),
    ) -> Vec<String> {
        let tree = default_tree();
        let mut rebuilt = Tree::new();
        let mut edited = 0;
        for root in tree.roots() {
            rebuilt.add_root(root);
        }
        let mut files: BTreeMap<(String, String), Vec<Object>> = BTreeMap::new();
        for entry in tree.entries() {
            let mut value = entry.object.value().clone();
            if entry.file.contains(file_part)
                && value["kind"] == kind
                && value["metadata"]["name"] == name
                && value["metadata"]["namespace"].as_str().unwrap_or("") == namespace
            {
                edit(&mut value);
                edited += 1;
            }
            files
                .entry((entry.cluster.to_owned(), entry.file.to_owned()))
                .or_default()
                .push(Object::new(&value).expect("a JSON value serialises"));
        }
        assert_eq!(edited, 1, "the fixture edit must hit exactly one object");
        for ((cluster, file), objects) in files {
            rebuilt
                .add_objects(&cluster, &file, objects)
                .expect("unique paths");
        }
        run(&rebuilt).iter().map(ToString::to_string).collect()
    }

    fn assert_found(found: &[String], expected: &str) {
        assert!(
            found.iter().any(|f| f == expected),
            "expected `{expected}` among {found:#?}"
        );
    }

    const PROVIDER_POLICIES: &str = "flux/apps/payment-provider/production/network-policies.yaml";

    #[test]
    fn the_default_tree_passes_every_check() {
        assert_eq!(run(&default_tree()), Vec::<Finding>::new());
    }

    #[test]
    fn a_network_policy_whose_labels_match_nothing_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
                    json!("provider");
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: podSelector {{\"matchLabels\":{{\"app.kubernetes.io/name\":\"provider\"}}}} selects no pod in namespace `payment-provider`"
            ),
        );
    }

    #[test]
    fn namespace_and_pod_selectors_in_two_peers_are_reported_as_or_instead_of_and() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                let peer = v["spec"]["ingress"][0]["from"][0].clone();
                v["spec"]["ingress"][0]["from"] = json!([
                    {"namespaceSelector": peer["namespaceSelector"]},
                    {"podSelector": peer["podSelector"]},
                ]);
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[0] has a namespaceSelector without a podSelector: it admits every pod of the matched namespaces (a podSelector in a separate peer item is ORed, not ANDed)"
            ),
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[1] has a podSelector without a namespaceSelector: it matches pods of `payment-provider` only (a namespaceSelector in a separate peer item is ORed, not ANDed)"
            ),
        );
    }

    #[test]
    fn a_network_policy_on_the_wrong_port_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["ingress"][0]["ports"][0]["port"] = json!(8080);
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0] allows port 8080, which is not a container port of the pods it selects"
            ),
        );
    }

    #[test]
    fn an_egress_rule_on_a_port_the_callee_does_not_serve_is_reported() {
        let file = "flux/apps/antaeus/staging/network-policies.yaml";
        let found = broken(file, "NetworkPolicy", "antaeus", "allow-egress", |v| {
            v["spec"]["egress"][0]["ports"][0]["port"] = json!(8000);
        });
        assert_found(
            &found,
            &format!(
                "{file}: NetworkPolicy/antaeus/allow-egress: egress[0] allows port 8000, which is not a container port of the peers it allows"
            ),
        );
    }

    #[test]
    fn a_peer_that_names_no_workload_is_reported() {
        let found = broken(
            PROVIDER_POLICIES,
            "NetworkPolicy",
            "payment-provider",
            "allow-ingress",
            |v| {
                v["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] =
                    json!("antaeus-old");
            },
        );
        assert_found(
            &found,
            &format!(
                "{PROVIDER_POLICIES}: NetworkPolicy/payment-provider/allow-ingress: ingress[0].from[0] names no workload: no pod matches its namespaceSelector and podSelector"
            ),
        );
    }

    #[test]
    fn a_role_granting_deployments_under_the_core_group_is_reported() {
        let file = "flux/tenants/production/antaeus/developer-rbac.yaml";
        let found = broken(file, "Role", "antaeus", "developer", |v| {
            v["rules"][0]["apiGroups"] = json!([""]);
        });
        assert_found(
            &found,
            &format!(
                "{file}: Role/antaeus/developer: rules[0] grants `deployments` under API group(s) [\"\"], where it does not exist: it lives in \"apps\", so the rule grants nothing"
            ),
        );
    }

    #[test]
    fn a_role_binding_to_a_missing_role_is_reported() {
        let file = "flux/tenants/production/antaeus/developer-rbac.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "developer", |v| {
            v["roleRef"]["name"] = json!("developers");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/developer: references Role `developers`, which does not exist in namespace `antaeus`"
            ),
        );
    }

    #[test]
    fn a_role_binding_to_a_missing_service_account_is_reported() {
        let file = "flux/tenants/staging/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["subjects"][0]["name"] = json!("flux");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/flux-reconciler: references ServiceAccount `antaeus/flux`, which does not exist"
            ),
        );
    }

    #[test]
    fn a_role_binding_outside_its_service_namespace_is_reported() {
        let file = "flux/tenants/staging/antaeus/developer-rbac.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "developer", |v| {
            v["metadata"]["namespace"] = json!("payment-provider");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/payment-provider/developer: grants rights in namespace `payment-provider`, outside its service `antaeus`'s namespace"
            ),
        );
    }

    #[test]
    fn a_binding_for_a_service_account_of_another_namespace_is_reported() {
        let file = "flux/tenants/staging/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["subjects"][0]["namespace"] = json!("payment-provider");
        });
        assert_found(
            &found,
            &format!(
                "{file}: RoleBinding/antaeus/flux-reconciler: grants rights in `antaeus` to ServiceAccount `payment-provider/flux-reconciler` of another namespace"
            ),
        );
    }

    #[test]
    fn a_kustomization_path_that_does_not_exist_is_reported() {
        let file = "flux/tenants/production/antaeus/sync.yaml";
        let found = broken(file, "Kustomization", "antaeus", "antaeus", |v| {
            v["spec"]["path"] = json!("./flux/apps/antaeus/prod");
        });
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/antaeus/antaeus: spec.path `./flux/apps/antaeus/prod` is not a generated directory with a kustomization.yaml"
            ),
        );
    }

    #[test]
    fn a_kustomization_without_a_service_account_is_reported() {
        let file = "flux/clusters/production/infrastructure.yaml";
        let found = broken(
            file,
            "Kustomization",
            "flux-system",
            "infrastructure",
            |v| {
                v["spec"]
                    .as_object_mut()
                    .expect("spec")
                    .remove("serviceAccountName");
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/flux-system/infrastructure: spec.serviceAccountName is empty: under --default-service-account it would run as a powerless account"
            ),
        );
    }

    #[test]
    fn a_service_selecting_nothing_is_reported() {
        let file = "flux/apps/payment-provider/production/service.yaml";
        let found = broken(
            file,
            "Service",
            "payment-provider",
            "payment-provider",
            |v| {
                v["spec"]["selector"]["app.kubernetes.io/name"] = json!("payments");
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Service/payment-provider/payment-provider: selector {{\"app.kubernetes.io/name\":\"payments\"}} selects no pod in namespace `payment-provider`"
            ),
        );
    }

    #[test]
    fn a_service_target_port_that_is_not_a_container_port_is_reported() {
        let file = "flux/apps/payment-provider/production/service.yaml";
        let found = broken(
            file,
            "Service",
            "payment-provider",
            "payment-provider",
            |v| {
                v["spec"]["ports"][0]["targetPort"] = json!(9090);
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Service/payment-provider/payment-provider: targetPort 9090 is not a container port of the pods it selects"
            ),
        );
    }

    #[test]
    fn a_probe_on_an_undeclared_port_is_reported() {
        let file = "flux/apps/antaeus/production/deployment.yaml";
        let found = broken(file, "Deployment", "antaeus", "antaeus", |v| {
            v["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] =
                json!(8080);
        });
        assert_found(
            &found,
            &format!(
                "{file}: Deployment/antaeus/antaeus: container `antaeus` livenessProbe targets port 8080, which is not a declared container port"
            ),
        );
    }

    #[test]
    fn a_workload_not_covered_by_default_deny_is_reported() {
        let file = "flux/apps/antaeus/production/network-policies.yaml";
        let found = broken(file, "NetworkPolicy", "antaeus", "default-deny", |v| {
            v["spec"]["policyTypes"] = json!(["Ingress"]);
        });
        assert_found(
            &found,
            "flux/apps/antaeus/production/deployment.yaml: Deployment/antaeus/antaeus: its pods are not covered by a default-deny NetworkPolicy for Egress (empty podSelector, policyTypes [Egress], no rules)",
        );
    }

    #[test]
    fn a_cluster_role_binding_is_reported() {
        let file = "flux/tenants/production/antaeus/flux-tenant.yaml";
        let found = broken(file, "RoleBinding", "antaeus", "flux-reconciler", |v| {
            v["kind"] = json!("ClusterRoleBinding");
        });
        assert_found(
            &found,
            &format!(
                "{file}: ClusterRoleBinding/antaeus/flux-reconciler: grants cluster-wide rights: the platform grants rights per service namespace only (use a RoleBinding)"
            ),
        );
    }

    #[test]
    fn selectors_follow_match_expressions() {
        let labels: Labels<'_> = BTreeMap::from([("tier", "web")]);
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(selects(&json!({}), &labels));
    }
}
