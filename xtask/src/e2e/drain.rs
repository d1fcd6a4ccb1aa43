//! Step 8.4, SIGTERM drain on a real pod: with a charge in flight to every provider pod (half its
//! body sent), the Deployment is scaled down by one; the terminating pod must leave the Service's
//! endpoints before its listener closes, and its in-flight charge must be answered.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::checks::PROVIDER_SERVICE;
use super::flux::request_reconcile;
use super::probe_pods::{self, BINARY, ProbePod};
use super::procs::wait_until;
use super::realnode_checks::RealRun;
use super::tree::str_at;

/// The provider's Flux Kustomization, suspended while the run changes what Flux owns (deleting
/// policies, scaling), as `flux suspend` does; resuming asks Flux to put the tree back.
pub struct FluxHold<'a> {
    run: &'a RealRun<'a>,
    namespace: String,
    name: String,
}

impl<'a> FluxHold<'a> {
    pub fn suspend(run: &'a RealRun<'a>) -> anyhow::Result<Self> {
        let k = run
            .tree
            .applied_by("Deployment", PROVIDER_SERVICE, PROVIDER_SERVICE)
            .context("no Kustomization of the tree applies the provider's Deployment")?;
        let hold = Self {
            run,
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        };
        hold.patch(true)?;
        Ok(hold)
    }

    fn patch(&self, suspend: bool) -> anyhow::Result<()> {
        let patch = format!("{{\"spec\":{{\"suspend\":{suspend}}}}}");
        self.run.cluster.kubectl(
            self.run.sh,
            &[
                "patch",
                "kustomization",
                "-n",
                &self.namespace,
                &self.name,
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        )
    }

    pub fn resume(self) -> anyhow::Result<()> {
        self.patch(false)?;
        request_reconcile(
            self.run.sh,
            self.run.cluster,
            "kustomization",
            &self.namespace,
            &self.name,
        )
    }
}

/// Runs the drain check; returns the timeline of the terminating pod as evidence.
pub fn run(run: &RealRun, client: &ProbePod) -> anyhow::Result<String> {
    let deployment = deployment(run)?;
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let drain_delay = env_of(&deployment, "PROVIDER_DRAIN_DELAY").unwrap_or_else(|| "0s".into());
    let delay = parse_seconds(&drain_delay)
        .with_context(|| format!("PROVIDER_DRAIN_DELAY={drain_delay:?} in the tree"))?;
    if replicas < 2 || delay == 0 {
        bail!(
            "the drain check needs ≥ 2 replicas and a PROVIDER_DRAIN_DELAY; the tree has {replicas} and {drain_delay:?}"
        );
    }
    let pods = ready_pods(run)?;
    for (name, ip) in &pods {
        TcpStream::connect_timeout(&addr(ip), Duration::from_secs(1))
            .with_context(|| format!("the node cannot connect to {name} at {ip}:9000 before the drain, so a closed listener could not be told apart"))?;
    }
    // The in-flight charges outlast the drain delay: answered only after the listener closed.
    let slow = format!("{}s", delay + 2);
    let timeout = format!("{}s", delay + 8);
    let mut inflight = Vec::new();
    for (name, ip) in &pods {
        let url = format!("http://{ip}:9000/v1/charges");
        let child = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", run.cluster.admin.display()))
            .args([
                "exec",
                "-n",
                &client.namespace,
                &client.name,
                "--",
                BINARY,
                "charge",
                &url,
            ])
            .args(["--slow-body", &slow, "--timeout", &timeout])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run kubectl exec")?;
        inflight.push((name.clone(), child));
    }
    // Long enough for every exec to connect and send half its body.
    std::thread::sleep(Duration::from_millis(1500));
    let flux = FluxHold::suspend(run)?;
    let scaled = Instant::now();
    let result = observe(run, &pods, replicas, scaled);
    let answers: Vec<(String, String)> = inflight
        .into_iter()
        .map(|(name, child)| {
            let out = child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (name, out)
        })
        .collect();
    let restored = run.cluster.kubectl(
        run.sh,
        &[
            "scale",
            "deployment",
            "-n",
            PROVIDER_SERVICE,
            PROVIDER_SERVICE,
            &format!("--replicas={replicas}"),
        ],
        None,
    );
    let resumed = flux.resume();
    let (victim, left, closed) = result?;
    restored?;
    resumed?;
    let answer = answers
        .iter()
        .find(|(n, _)| *n == victim)
        .map(|(_, out)| probe_pods::parse_lines(out))
        .unwrap_or_default();
    let Some(outcome) = answer.first().filter(|o| o.is_antaeus_readable()) else {
        bail!(
            "the charge in flight to {victim} across its SIGTERM got {:?}",
            answer
        );
    };
    if left >= closed {
        bail!(
            "{victim} closed its listener ({closed:.1?} after the scale-down) before it left the endpoints ({left:.1?})"
        );
    }
    Ok(format!(
        "scaled {replicas} → {}: {victim} left the Service's ready endpoints {left:.1?} after the scale-down, its listener closed at {closed:.1?} (PROVIDER_DRAIN_DELAY {drain_delay}); the charge in flight across SIGTERM (--slow-body {slow}) got {}",
        replicas - 1,
        outcome.describe()
    ))
}

/// Scales down, finds the pod being deleted, and times when it stops being a ready endpoint and
/// when its port stops accepting connections.
fn observe(
    run: &RealRun,
    pods: &[(String, String)],
    replicas: i64,
    scaled: Instant,
) -> anyhow::Result<(String, Duration, Duration)> {
    run.cluster.kubectl(
        run.sh,
        &[
            "scale",
            "deployment",
            "-n",
            PROVIDER_SERVICE,
            PROVIDER_SERVICE,
            &format!("--replicas={}", replicas - 1),
        ],
        None,
    )?;
    let mut victim = None;
    wait_until(
        "a provider pod to be deleted by the scale-down",
        Duration::from_secs(20),
        || {
            let json = run.cluster.kubectl_read(
                run.sh,
                &["get", "pods", "-n", PROVIDER_SERVICE, "-o", "json"],
            )?;
            let list: Value = serde_json::from_str(&json)?;
            victim = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p.pointer("/metadata/deletionTimestamp").is_some())
                .map(|p| str_at(p, "/metadata/name").to_string());
            Ok(victim.is_some())
        },
    )?;
    let victim = victim.expect("set when the wait succeeded");
    let ip = pods
        .iter()
        .find(|(n, _)| *n == victim)
        .map(|(_, ip)| ip.clone())
        .with_context(|| format!("{victim} was not Ready before the scale-down"))?;
    let (mut left, mut closed) = (None, None);
    wait_until(
        &format!("{victim} to leave the endpoints and close its listener"),
        Duration::from_secs(30),
        || {
            if left.is_none() && !ready_endpoint(run, &ip)? {
                left = Some(scaled.elapsed());
            }
            if closed.is_none()
                && TcpStream::connect_timeout(&addr(&ip), Duration::from_millis(300)).is_err()
            {
                closed = Some(scaled.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
            Ok(left.is_some() && closed.is_some())
        },
    )?;
    Ok((victim, left.expect("set"), closed.expect("set")))
}

/// Whether the provider Service's EndpointSlices list `ip` as ready.
fn ready_endpoint(run: &RealRun, ip: &str) -> anyhow::Result<bool> {
    let json = run.cluster.kubectl_read(
        run.sh,
        &[
            "get",
            "endpointslices",
            "-n",
            PROVIDER_SERVICE,
            "-l",
            &format!("kubernetes.io/service-name={PROVIDER_SERVICE}"),
            "-o",
            "json",
        ],
    )?;
    let list: Value = serde_json::from_str(&json)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .any(|e| {
            e["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == ip))
                && e["conditions"]["ready"] == true
        }))
}

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:9000")
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9000)))
}

fn deployment(run: &RealRun) -> anyhow::Result<Value> {
    let json = run.cluster.kubectl_read(
        run.sh,
        &[
            "get",
            "deployment",
            "-n",
            PROVIDER_SERVICE,
            PROVIDER_SERVICE,
            "-o",
            "json",
        ],
    )?;
    Ok(serde_json::from_str(&json)?)
}

/// Names and IPs of the provider's Ready pods.
fn ready_pods(run: &RealRun) -> anyhow::Result<Vec<(String, String)>> {
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
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["containerStatuses"][0]["ready"] == true
                && p.pointer("/metadata/deletionTimestamp").is_none()
        })
        .map(|p| {
            (
                str_at(p, "/metadata/name").to_string(),
                str_at(p, "/status/podIP").to_string(),
            )
        })
        .collect())
}

fn env_of(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

/// `5s`, `2m`, `500ms` → whole seconds (rounded up).
fn parse_seconds(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    match &text[digits.len()..] {
        "s" => Some(n),
        "m" => Some(n * 60),
        "ms" => Some(n.div_ceil(1000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_delays_are_read_as_the_provider_writes_them() {
        assert_eq!(parse_seconds("5s"), Some(5));
        assert_eq!(parse_seconds("2m"), Some(120));
        assert_eq!(parse_seconds("1500ms"), Some(2));
        assert_eq!(parse_seconds("soon"), None);
    }
}
