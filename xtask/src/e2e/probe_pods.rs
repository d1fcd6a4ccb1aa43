//! The run's own pods on the real node: one on Antaeus' side (namespace `antaeus`, label
//! `app.kubernetes.io/name=antaeus`) and intruders, all from the provider's pod template (its
//! image, probes and security context; admitted by name with quota room for their creation only,
//! see `probe_room`), serving as
//! providers so their probes are real, and sending charges with `payment-provider charge` through
//! `kubectl exec`: the distroless image has no shell or curl.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::cluster::Cluster;
use super::node;
use super::probe_room;
use super::procs::wait_until;
use super::tree::str_at;

/// Where the image keeps the provider binary (`cargo xtask image`'s distroless layout).
pub const BINARY: &str = "/payment-provider";
pub const INTRUDER_NAMESPACE: &str = "e2e-intruder";

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
    // Scaffolding, not a tenant's workload: admitted by name with quota room (`probe_room`).
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut namespaces: Vec<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let room = probe_room::open(sh, cluster, &names, &namespaces)?;
    // The API server may take a moment to admit by the changed bindings.
    let created = wait_until(
        "the run's pods to be created",
        Duration::from_secs(30),
        || {
            cluster.kubectl(sh, &["apply", "-f", "-"], Some(&list))?;
            Ok(true)
        },
    );
    let closed = room.close(sh, cluster);
    created?;
    closed?;
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
