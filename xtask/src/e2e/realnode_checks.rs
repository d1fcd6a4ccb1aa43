//! Step 8, the real node: the provider's pods from the tree run the built image by digest, Ready
//! through their own probes with the tree's security context as the node sees it; Antaeus' side
//! charges through the Service's name and gets answers Antaeus can read; intruders are dropped
//! (`intruders`, with its control); a pod drains on SIGTERM (`drain`); `/metrics` counted the
//! charges.
//!
//! Just over ~400 lines and one file: the five assertions share one [`RealRun`] and one
//! [`Setup`] of probe pods, and two of them (intruders, drain) already live in their own modules.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use super::checks::{CLIENT_SERVICE, PROVIDER_SERVICE};
use super::cluster::Cluster;
use super::containerd::Containerd;
use super::drain;
use super::intruders;
use super::node::RealNode;
use super::probe_pods::{self, INTRUDER_NAMESPACE, Outcome, ProbePod};
use super::procs::wait_until;
use super::timestamps::{condition_time, event_time};
use super::tree::{Tree, str_at};

/// How long a dataplane change may take to show (kube-router rebuilds its chains in up to ~30s).
pub const CONVERGE: Duration = Duration::from_secs(60);
const CHARGES: usize = 5;

/// What the checks need to know about the run.
pub struct RealRun<'a> {
    pub sh: &'a Shell,
    pub cluster: &'a Cluster,
    pub tree: &'a Tree,
    pub node: &'a RealNode,
    pub containerd: &'a Containerd,
    /// The digest of the image the run built and pushed (`sha256:…`).
    pub digest: String,
    /// When the node's bring-up started (containerd first): the timeline's zero.
    pub node_started: SystemTime,
    pub node_ready: Duration,
}

/// The five assertions, each with its evidence (or why it failed).
pub fn run(run: &RealRun) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut out = Vec::new();
    let mut timeline: Vec<(String, f64)> =
        vec![("node Ready".into(), run.node_ready.as_secs_f64())];
    out.push((
        "8.1 provider pods on the real node",
        provider_pods(run, &mut timeline),
    ));
    let setup = Setup::new(run);
    let Ok(setup) = setup else {
        let err = setup.err().expect("not Ok");
        for name in [
            "8.2 Antaeus' side charges",
            "8.3 intruders dropped",
            "8.4 SIGTERM drain",
            "8.5 /metrics",
        ] {
            out.push((
                name,
                Err(anyhow::anyhow!(
                    "the run's probe pods did not start: {err:#}"
                )),
            ));
        }
        return out;
    };
    timeline.push(("probe pods Ready".into(), since(run.node_started)));
    let before = charges_counted(run);
    out.push((
        "8.2 Antaeus' side charges",
        client_charges(run, &setup, &mut timeline),
    ));
    out.push(("8.5 /metrics", before.and_then(|before| {
        let after = charges_counted(run)?;
        if after - before != CHARGES as f64 {
            bail!("provider_charges_total went {before} → {after} over the provider's pods: +{}, the client sent {CHARGES}", after - before);
        }
        Ok(format!("provider_charges_total {before} → {after} summed over the provider's pods: +{CHARGES}, the client's {CHARGES} charges"))
    })));
    out.push((
        "8.3 intruders dropped",
        intruders::run(run, &setup, &mut timeline),
    ));
    out.push(("8.4 SIGTERM drain", drain::run(run, &setup.client)));
    println!("8. real node timeline (seconds from the start of its bring-up):");
    for (what, at) in &timeline {
        println!("   {at:>6.1}s  {what}");
    }
    out
}

pub(super) fn since(t: SystemTime) -> f64 {
    t.elapsed().map_or(0.0, |d| d.as_secs_f64())
}

/// 1: every provider pod is on the real node, Ready, running the built digest as the tree's
/// security context says, seen from the node (the container's /proc).
fn provider_pods(run: &RealRun, timeline: &mut Vec<(String, f64)>) -> anyhow::Result<String> {
    let pods = provider_pod_list(run)?;
    let mut lines = Vec::new();
    let mut pulled_at: Vec<f64> = Vec::new();
    let mut ready_at: Vec<f64> = Vec::new();
    for pod in &pods {
        let name = str_at(pod, "/metadata/name");
        let node = str_at(pod, "/spec/nodeName");
        if node != run.node.name {
            bail!(
                "{PROVIDER_SERVICE}/{name} runs on {node:?}, not on the real node {}",
                run.node.name
            );
        }
        let status = &pod["status"]["containerStatuses"][0];
        let image_id = str_at(status, "/imageID");
        if !image_id.ends_with(&run.digest) || status["ready"] != true {
            bail!(
                "{PROVIDER_SERVICE}/{name}: ready={} imageID {image_id:?}, the run built {}",
                status["ready"],
                run.digest
            );
        }
        let container = str_at(status, "/containerID").trim_start_matches("containerd://");
        let pid = run.containerd.task_pid(run.sh, container)?;
        lines.push(format!("{name}: {}", seen_from_node(pid)?));
        if let Some(t) = condition_time(pod, "Ready") {
            ready_at.push(t);
        }
        pulled_at.extend(event_time(run, name, "Pulled"));
    }
    let spec_image = str_at(&pods[0], "/spec/containers/0/image").to_string();
    let antaeus = run.cluster.kubectl_read(
        run.sh,
        &[
            "get",
            "pods",
            "-n",
            CLIENT_SERVICE,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}@{.spec.nodeName} {end}",
        ],
    )?;
    let zero = run
        .node_started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if let Some(t) = pulled_at.iter().cloned().reduce(f64::min) {
        timeline.push((
            "provider image pulled (first Pulled event)".into(),
            t - zero,
        ));
    }
    if let Some(t) = ready_at.iter().cloned().reduce(f64::max) {
        timeline.push((format!("all {} provider pods Ready", pods.len()), t - zero));
    }
    println!("8.1 provider pods (image {spec_image}):");
    for line in &lines {
        println!("   {line}");
    }
    Ok(format!(
        "{} pods Ready on {} via their /readyz probe, image {} (the built digest); uid 65532, no capabilities, read-only root as the node sees them; Antaeus on kwok: {}",
        pods.len(),
        run.node.name,
        spec_image,
        antaeus.trim()
    ))
}

fn provider_pod_list(run: &RealRun) -> anyhow::Result<Vec<Value>> {
    let json = run.cluster.kubectl_read(
        run.sh,
        &[
            "get",
            "pods",
            "-n",
            PROVIDER_SERVICE,
            "-l",
            "app.kubernetes.io/name=payment-provider",
            "-o",
            "json",
        ],
    )?;
    let list: Value = serde_json::from_str(&json)?;
    let pods: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect();
    if pods.is_empty() {
        bail!("no {PROVIDER_SERVICE} pods exist");
    }
    Ok(pods)
}

/// `uid=… gid=… CapEff=… NoNewPrivs=… Seccomp=… root ro` from /proc/<pid>, failing on a value the
/// tree's security context forbids.
fn seen_from_node(pid: u32) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (uid, gid, cap_eff, cap_bnd) =
        (field("Uid"), field("Gid"), field("CapEff"), field("CapBnd"));
    let (no_new_privs, seccomp) = (field("NoNewPrivs"), field("Seccomp"));
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let root_ro = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|l| {
            l.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|o| o == "ro"))
        });
    let line = format!(
        "pid {pid}: uid {} gid {} CapEff {} CapBnd {} NoNewPrivs {} Seccomp {} (2 = filter), root {}",
        uid.join("/"),
        gid.join("/"),
        cap_eff.join(""),
        cap_bnd.join(""),
        no_new_privs.join(""),
        seccomp.join(""),
        if root_ro { "ro" } else { "rw" }
    );
    let zero = "0000000000000000";
    if uid.iter().any(|u| *u != "65532")
        || gid.iter().any(|g| *g != "65532")
        || cap_eff.join("") != zero
        || cap_bnd.join("") != zero
        || no_new_privs.join("") != "1"
        || seccomp.join("") != "2"
        || !root_ro
    {
        bail!("the container's process breaks the tree's security context: {line}");
    }
    Ok(line)
}

/// The pods of the run and the URL the tree gives Antaeus.
pub struct Setup {
    pub client: ProbePod,
    pub(super) intruders: Vec<ProbePod>,
    pub(super) url: String,
}

impl Setup {
    fn new(run: &RealRun) -> anyhow::Result<Self> {
        let (deployment, url) = antaeus_endpoint(run.tree)?;
        let _ = deployment;
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split([':', '/']).next())
            .context("PAYMENT_PROVIDER_ENDPOINT has no host")?
            .to_string();
        let service_ip = run.cluster.kubectl_read(
            run.sh,
            &[
                "get",
                "service",
                "-n",
                PROVIDER_SERVICE,
                PROVIDER_SERVICE,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )?;
        let template = run
            .tree
            .of_kind("Deployment")
            .into_iter()
            .find(|d| str_at(d, "/metadata/namespace") == PROVIDER_SERVICE)
            .context("the tree has no provider Deployment")?;
        let template = template["spec"]["template"].clone();
        let client = ProbePod::new(CLIENT_SERVICE, "e2e-antaeus-side", "antaeus");
        let intruders = vec![
            ProbePod::new(INTRUDER_NAMESPACE, "e2e-intruder-antaeus-labels", "antaeus"),
            ProbePod::new(CLIENT_SERVICE, "e2e-intruder-unlabelled", "e2e-intruder"),
            ProbePod::new(PROVIDER_SERVICE, "e2e-intruder-neighbour", "e2e-intruder"),
        ];
        let all: Vec<ProbePod> = std::iter::once(client.clone())
            .chain(intruders.iter().cloned())
            .collect();
        probe_pods::create(
            run.sh,
            run.cluster,
            &template,
            &all,
            &[(service_ip.trim().to_string(), host)],
        )?;
        Ok(Self {
            client,
            intruders,
            url,
        })
    }
}

/// Antaeus' Deployment and its `PAYMENT_PROVIDER_ENDPOINT`.
fn antaeus_endpoint(tree: &Tree) -> anyhow::Result<(Value, String)> {
    let deployment = tree
        .of_kind("Deployment")
        .into_iter()
        .find(|d| str_at(d, "/metadata/namespace") == CLIENT_SERVICE)
        .context("the tree has no Antaeus Deployment")?;
    let url = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["env"].as_array().into_iter().flatten())
        .find(|e| e["name"] == "PAYMENT_PROVIDER_ENDPOINT")
        .and_then(|e| e["value"].as_str())
        .context("Antaeus' Deployment sets no PAYMENT_PROVIDER_ENDPOINT")?;
    Ok((deployment.clone(), url.to_string()))
}

/// 2: the Antaeus-side pod gets Antaeus-readable answers at the tree's URL (polled: a pod just
/// created may wait for kube-router to add it to the allowed set).
fn client_charges(
    run: &RealRun,
    setup: &Setup,
    timeline: &mut Vec<(String, f64)>,
) -> anyhow::Result<String> {
    let url = &setup.url;
    let mut first = None;
    let took = wait_until(
        &format!("{} to get an answer from {url}", setup.client.describe()),
        CONVERGE,
        || {
            let outcome = probe_pods::charge(
                run.sh,
                run.cluster,
                &setup.client,
                url,
                &["--timeout", "2s"],
            )?;
            let ok = outcome.iter().all(Outcome::is_antaeus_readable);
            if ok {
                first = outcome.first().cloned();
            } else {
                bail!(
                    "{}",
                    outcome.first().map(Outcome::describe).unwrap_or_default()
                );
            }
            Ok(ok)
        },
    )?;
    timeline.push(("first charge answered".into(), since(run.node_started)));
    let more = probe_pods::charge(
        run.sh,
        run.cluster,
        &setup.client,
        url,
        &["--count", &(CHARGES - 1).to_string(), "--timeout", "5s"],
    )?;
    if more.len() != CHARGES - 1 || !more.iter().all(Outcome::is_antaeus_readable) {
        bail!(
            "of {} more charges from {}, not all were Antaeus-readable: {:?}",
            CHARGES - 1,
            setup.client.describe(),
            more
        );
    }
    let results: Vec<String> = std::iter::once(first.clone().expect("set when Ok(true)"))
        .chain(more)
        .map(|o| o.describe())
        .collect();
    Ok(format!(
        "{} POST {url} (stock Antaeus' request, through the Service's name and ClusterIP; first answer after {took:.1?}): {}",
        setup.client.describe(),
        results.join(", ")
    ))
}

/// Sum of `provider_charges_total` over the provider's pods, read through the API server's pod
/// proxy (the node's own address may reach its pods; Antaeus' side is not needed for it).
fn charges_counted(run: &RealRun) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for pod in provider_pod_list(run)? {
        let name = str_at(&pod, "/metadata/name");
        let path = format!("/api/v1/namespaces/{PROVIDER_SERVICE}/pods/{name}:9000/proxy/metrics");
        let text = run.cluster.kubectl_read(run.sh, &["get", "--raw", &path])?;
        total += sum_metric(&text, "provider_charges_total");
    }
    Ok(total)
}

/// The sum of every sample of `metric` in Prometheus/OpenMetrics text.
pub fn sum_metric(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_by_name_only() {
        let text = "# TYPE provider_charges counter\nprovider_charges_total{result=\"true\",replayed=\"false\"} 3\nprovider_charges_total{result=\"false\",replayed=\"false\"} 2\nprovider_charges_total_created 17\nprovider_http_requests_total{route=\"/readyz\"} 40\n";
        assert_eq!(sum_metric(text, "provider_charges_total"), 5.0);
    }
}
