//! The run's own pods on the real node: one on Antaeus' side (namespace `antaeus`, label
//! `app.kubernetes.io/name=antaeus`) and intruders, all from the provider's pod template (its
//! image, probes and security context; admitted by name past the tree's policy bindings, which
//! pin images and accounts per namespace, for their creation only), serving as
//! providers so their probes are real, and sending charges with `payment-provider charge` through
//! `kubectl exec`: the distroless image has no shell or curl.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::cluster::Cluster;
use super::node;
use super::procs::wait_until;
use super::tree::str_at;

/// Where the image keeps the provider binary (`cargo xtask image`'s distroless layout).
pub const BINARY: &str = "/payment-provider";
pub const INTRUDER_NAMESPACE: &str = "e2e-intruder";
/// The field manager of the run's changes to the tree's policy bindings.
const FIELD_MANAGER: &str = "e2e-probe-pods";
/// The tree's ResourceQuota in each service namespace.
const QUOTA: &str = "platform-quota";

/// A pod of the run: where it is and what it is called.
#[derive(Clone, Debug)]
pub struct ProbePod {
    pub namespace: String,
    pub name: String,
    /// Its `app.kubernetes.io/name` label: what the NetworkPolicies select on.
    pub app: String,
}

impl ProbePod {
    pub fn new(namespace: &str, name: &str, app: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            app: app.into(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}/{} (app.kubernetes.io/name={})",
            self.namespace, self.name, self.app
        )
    }
}

/// Adds to every admission policy binding of the tree an `excludeResourceRules` entry for the
/// pods named `names`; returns the bindings changed. The tree's bindings carry no exclusions of
/// their own (`restore_bindings` removes the field). The run's own field manager: Flux takes
/// back fields that `kubectl patch` set (its drift correction), not those of other managers.
fn admit_by_name(sh: &Shell, cluster: &Cluster, names: &[&str]) -> anyhow::Result<Vec<String>> {
    let listed = cluster.kubectl_read(
        sh,
        &[
            "get",
            "validatingadmissionpolicybindings",
            "-l",
            "app.kubernetes.io/managed-by=cargo-xtask-gen",
            "-o",
            "name",
        ],
    )?;
    let bindings: Vec<String> = listed.lines().map(str::to_owned).collect();
    let patch = json!({"spec": {"matchResources": {"excludeResourceRules": [{
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods"],
        "resourceNames": names,
    }]}}})
    .to_string();
    for binding in &bindings {
        cluster
            .kubectl(
                sh,
                &[
                    "patch",
                    binding,
                    "--type",
                    "merge",
                    "--field-manager",
                    FIELD_MANAGER,
                    "-p",
                    &patch,
                ],
                None,
            )
            .with_context(|| format!("letting the run's pods past {binding}"))?;
    }
    Ok(bindings)
}

/// Suspends (or resumes) Flux's platform Kustomizations, as `flux suspend|resume kustomization`.
fn suspend_platform(sh: &Shell, cluster: &Cluster, suspend: bool) -> anyhow::Result<()> {
    let patch = if suspend {
        r#"{"spec":{"suspend":true}}"#
    } else {
        r#"{"spec":{"suspend":null}}"#
    };
    for name in ["infrastructure", "tenants"] {
        cluster
            .kubectl(
                sh,
                &[
                    "patch",
                    "kustomization",
                    name,
                    "-n",
                    super::flux::FLUX_NAMESPACE,
                    "--type",
                    "merge",
                    "--field-manager",
                    FIELD_MANAGER,
                    "-p",
                    patch,
                ],
                None,
            )
            .with_context(|| format!("setting suspend={suspend} on Kustomization {name}"))?;
    }
    Ok(())
}

/// The tree's `platform-quota` of each namespace that has one, before `widen_quotas` raised it.
type Quotas = Vec<(String, Value)>;

/// Raises every limit of each namespace's `platform-quota` out of reach; returns the originals.
fn widen_quotas(sh: &Shell, cluster: &Cluster, namespaces: &[&str]) -> anyhow::Result<Quotas> {
    let mut out = Vec::new();
    for ns in namespaces {
        let json = cluster.kubectl_read(
            sh,
            &[
                "get",
                "resourcequota",
                QUOTA,
                "-n",
                ns,
                "--ignore-not-found",
                "-o",
                "json",
            ],
        )?;
        if json.trim().is_empty() {
            continue;
        }
        let quota: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
        let hard = quota["spec"]["hard"].clone();
        let wide: serde_json::Map<String, Value> = hard
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|k| {
                        let bytes = k.contains("memory") || k.contains("storage");
                        (k.clone(), json!(if bytes { "1000Gi" } else { "1000" }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let wide = Value::Object(wide);
        set_quota(sh, cluster, ns, &wide)?;
        out.push(((*ns).to_owned(), hard));
        // Quota admission reads status.hard, which the controller-manager copies from spec.
        wait_until(
            &format!("{ns}/{QUOTA} to take its raised limits"),
            Duration::from_secs(30),
            || {
                let json = cluster
                    .kubectl_read(sh, &["get", "resourcequota", QUOTA, "-n", ns, "-o", "json"])?;
                let quota: Value =
                    serde_json::from_str(&json).context("kubectl printed no JSON")?;
                // Compared as the API server writes both (it normalises quantities: 1000 → 1k).
                Ok(quota["spec"]["hard"] == quota["status"]["hard"]
                    && quota["spec"]["hard"] != *hard_before(&out, ns))
            },
        )?;
    }
    Ok(out)
}

/// The limits `widen_quotas` recorded for `ns`.
fn hard_before<'a>(quotas: &'a Quotas, ns: &str) -> &'a Value {
    quotas
        .iter()
        .find(|(n, _)| n == ns)
        .map_or(&Value::Null, |(_, hard)| hard)
}

fn restore_quotas(sh: &Shell, cluster: &Cluster, quotas: &Quotas) -> anyhow::Result<()> {
    for (ns, hard) in quotas {
        set_quota(sh, cluster, ns, hard)?;
    }
    Ok(())
}

fn set_quota(sh: &Shell, cluster: &Cluster, ns: &str, hard: &Value) -> anyhow::Result<()> {
    let patch = json!({"spec": {"hard": hard}}).to_string();
    cluster
        .kubectl(
            sh,
            &[
                "patch",
                "resourcequota",
                QUOTA,
                "-n",
                ns,
                "--type",
                "merge",
                "--field-manager",
                FIELD_MANAGER,
                "-p",
                &patch,
            ],
            None,
        )
        .with_context(|| format!("setting {ns}/{QUOTA}"))
}

/// Removes the exclusion `admit_by_name` added from each binding.
fn restore_bindings(sh: &Shell, cluster: &Cluster, bindings: &[String]) -> anyhow::Result<()> {
    let patch = r#"{"spec":{"matchResources":{"excludeResourceRules":null}}}"#;
    for binding in bindings {
        cluster
            .kubectl(
                sh,
                &[
                    "patch",
                    binding,
                    "--type",
                    "merge",
                    "--field-manager",
                    FIELD_MANAGER,
                    "-p",
                    patch,
                ],
                None,
            )
            .with_context(|| format!("restoring {binding}"))?;
    }
    Ok(())
}

/// The pod object: the provider's pod template with the run's name, labels, placement on the real
/// node, and `/etc/hosts` entries for `hosts` (there is no cluster DNS in this run).
pub fn manifest(template: &Value, pod: &ProbePod, hosts: &[(String, String)]) -> Value {
    let mut spec = template["spec"].clone();
    let (selector, tolerations) = node::pod_placement();
    spec["nodeSelector"] = selector;
    spec["tolerations"] = tolerations;
    // The provider's ServiceAccount exists in its own namespace only.
    spec["serviceAccountName"] = json!("default");
    spec["terminationGracePeriodSeconds"] = json!(2);
    spec["hostAliases"] = hosts
        .iter()
        .map(|(ip, name)| json!({"ip": ip, "hostnames": [name]}))
        .collect();
    if let Some(containers) = spec["containers"].as_array_mut() {
        for container in containers {
            if let Some(c) = container.as_object_mut() {
                c.remove("env");
            }
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": {"app.kubernetes.io/name": pod.app, "billing-platform.dev/e2e": "probe"},
        },
        "spec": spec,
    })
}

/// Creates the pods (and the intruders' namespace) and waits until each is Ready through its own
/// probes; the namespace's `default` ServiceAccount may take a moment to appear.
pub fn create(
    sh: &Shell,
    cluster: &Cluster,
    template: &Value,
    pods: &[ProbePod],
    hosts: &[(String, String)],
) -> anyhow::Result<Duration> {
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INTRUDER_NAMESPACE}});
    cluster.kubectl(sh, &["apply", "-f", "-"], Some(&namespace.to_string()))?;
    let items: Vec<Value> = pods.iter().map(|p| manifest(template, p, hosts)).collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    // The run's pods are scaffolding, not a tenant's workload: a provider binary on Antaeus' side
    // and intruders that must be dropped by the network, not by admission. The tree's policy
    // bindings let exactly these pod names through while they are created, then are restored.
    // Each try lets them through again: Flux may be re-applying the bindings meanwhile.
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut bindings = Vec::new();
    // Their namespaces' quotas are sized for the tenants' own pods: room for these, meanwhile.
    let mut namespaces: Vec<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    // Flux would take both back at its next apply: the platform layers pause meanwhile
    // (`flux suspend`), and resume once the tree's bindings and quotas are restored.
    suspend_platform(sh, cluster, true)?;
    let quotas = widen_quotas(sh, cluster, &namespaces)?;
    let created = wait_until(
        "the run's pods to be created",
        Duration::from_secs(30),
        || {
            bindings = admit_by_name(sh, cluster, &names)?;
            cluster.kubectl(sh, &["apply", "-f", "-"], Some(&list))?;
            Ok(true)
        },
    );
    let restored = restore_bindings(sh, cluster, &bindings);
    let quotas_restored = restore_quotas(sh, cluster, &quotas);
    let resumed = suspend_platform(sh, cluster, false);
    created?;
    restored?;
    quotas_restored?;
    resumed?;
    wait_until(
        "the run's pods to be Ready on the real node",
        Duration::from_secs(90),
        || {
            for pod in pods {
                let ready = cluster.kubectl_read(
                    sh,
                    &[
                        "get",
                        "pod",
                        "-n",
                        &pod.namespace,
                        &pod.name,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    ],
                )?;
                if ready.trim() != "True" {
                    bail!("{} is not Ready yet", pod.describe());
                }
            }
            Ok(true)
        },
    )
}

/// What one request of `payment-provider charge` got: an answer, or why there was none.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered { status: u16, body: String },
    NoAnswer(String),
}

impl Outcome {
    /// What stock Antaeus can read: `200` and a JSON object with a boolean `result`.
    pub fn is_antaeus_readable(&self) -> bool {
        match self {
            Outcome::Answered { status: 200, body } => {
                serde_json::from_str::<Value>(body).is_ok_and(|v| v["result"].is_boolean())
            }
            _ => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Answered { status, body } => format!("{status} {body}"),
            Outcome::NoAnswer(error) => format!("no answer ({error})"),
        }
    }
}

/// `payment-provider charge URL ARGS…` in `pod`: one outcome per request line it printed.
pub fn charge(
    sh: &Shell,
    cluster: &Cluster,
    pod: &ProbePod,
    url: &str,
    args: &[&str],
) -> anyhow::Result<Vec<Outcome>> {
    let admin = &cluster.admin;
    let (ns, name) = (&pod.namespace, &pod.name);
    let output = cmd!(
        sh,
        "kubectl --kubeconfig {admin} --request-timeout=60s exec -n {ns} {name} -- {BINARY} charge {url} {args...}"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("cannot run kubectl exec")?;
    let outcomes = parse_lines(&String::from_utf8_lossy(&output.stdout));
    if outcomes.is_empty() {
        bail!(
            "`kubectl exec {}` printed no charge line: {}",
            pod.describe(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(outcomes)
}

/// The charge client's JSON lines (`{"status":200,"body":"…","ms":1.2}` or `{"error":"…"}`).
pub fn parse_lines(stdout: &str) -> Vec<Outcome> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| match (v["status"].as_u64(), v["error"].as_str()) {
            (Some(status), _) => Some(Outcome::Answered {
                status: status as u16,
                body: str_at(&v, "/body").to_string(),
            }),
            (None, Some(error)) => Some(Outcome::NoAnswer(error.to_string())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_lines_are_read_as_answers_or_their_absence() {
        let out = "{\"status\":200,\"body\":\"{\\\"result\\\":true}\",\"ms\":1.2}\n{\"error\":\"connection refused\",\"ms\":0.4}\nnoise\n";
        let outcomes = parse_lines(out);
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes[0].is_antaeus_readable());
        assert_eq!(outcomes[1], Outcome::NoAnswer("connection refused".into()));
        let bad = Outcome::Answered {
            status: 400,
            body: "{\"error\":\"x\"}".into(),
        };
        assert!(!bad.is_antaeus_readable());
    }

    #[test]
    fn probe_pods_take_the_template_and_land_on_the_real_node() {
        let template = json!({"spec": {
            "serviceAccountName": "payment-provider",
            "automountServiceAccountToken": false,
            "containers": [{"name": "p", "image": "i@sha256:0", "env": [{"name": "A", "value": "1"}]}],
        }});
        let pod = ProbePod::new("antaeus", "client", "antaeus");
        let hosts = [("10.96.0.9".to_string(), "svc.example".to_string())];
        let m = manifest(&template, &pod, &hosts);
        assert_eq!(m["metadata"]["labels"]["app.kubernetes.io/name"], "antaeus");
        assert_eq!(m["spec"]["nodeSelector"][node::PLACEMENT_KEY], "true");
        assert_eq!(m["spec"]["hostAliases"][0]["hostnames"][0], "svc.example");
        assert_eq!(m["spec"]["serviceAccountName"], "default");
        assert_eq!(m["spec"]["automountServiceAccountToken"], false);
        assert!(m["spec"]["containers"][0].get("env").is_none());
    }
}
