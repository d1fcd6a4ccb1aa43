//! The control plane on 127.0.0.1: a CA and certificates from the `openssl` CLI, etcd,
//! kube-apiserver (real TLS, RBAC, service-account keys), controller-manager, scheduler and kwok
//! with one fake node, each waited for before the next starts.
//!
//! About 400 lines and one file: `Cluster::start` is one ordered bring-up whose parts share the
//! paths and ports it chose, and the kubectl helpers every step calls sit on the same type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use xshell::{Shell, cmd};

use super::components::{self, Binaries};
use super::pki::{ADMIN, CONTROLLER_MANAGER, Identity, generate_ca, issue, write_identity};
use super::procs::{Processes, free_port, wait_until};

/// The name of kwok's fake node: every pod the real node does not take (Antaeus' image is not
/// built here) is scheduled to it.
pub const NODE: &str = "kwok-node-0";
/// Pod addresses: the controller-manager gives each node a /24 of it (kwok's node the first).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
const KWOK_POD_CIDR: &str = "10.244.0.0/24";
/// Service addresses (kube-proxy and kube-router are told the same range): a /16, as a cluster
/// of thousands of Services needs (`bench flux` at 1,000 services ran out of a /24: "failed to
/// allocate a serviceIP … range is full").
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// What a benchmark may change in the control plane it starts (the e2e keeps the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Pods kwok's node takes; its CPU and memory grow with it (a quarter core and a quarter
    /// GiB a pod, never under the default's 32 and 256Gi), so the scheduler never runs short.
    pub pods: u32,
    /// The controller-manager's and scheduler's API rate limit (QPS; burst twice that), instead
    /// of their defaults (QPS/burst 20/30 and 50/100), so that creating thousands of pods
    /// measures Flux, not them.
    pub client_qps: Option<u32>,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            pods: 110,
            client_qps: None,
        }
    }
}

/// A running control plane and the files a client needs to reach it.
pub struct Cluster {
    pub dir: PathBuf,
    /// Kubeconfig of the admin identity (client certificate in group `system:masters`).
    pub admin: PathBuf,
    pub server: String,
}

impl Cluster {
    /// Starts everything in order and waits for each part; processes are owned by `procs`.
    pub fn start(
        sh: &Shell,
        root: &Path,
        bins: &Binaries,
        dir: &Path,
        procs: &mut Processes,
    ) -> anyhow::Result<Self> {
        Self::start_sized(sh, root, bins, dir, procs, Sizing::default())
    }

    /// [`Cluster::start`] with a kwok node and client rate limits sized for a benchmark.
    pub fn start_sized(
        sh: &Shell,
        root: &Path,
        bins: &Binaries,
        dir: &Path,
        procs: &mut Processes,
        sizing: Sizing,
    ) -> anyhow::Result<Self> {
        let rate_limit = |qps: u32| {
            vec![
                format!("--kube-api-qps={qps}"),
                format!("--kube-api-burst={}", 2 * qps),
            ]
        };
        let rate_limit = sizing.client_qps.map(rate_limit).unwrap_or_default();
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
        generate_ca(sh, &pki)?;
        issue(
            sh,
            &pki,
            "apiserver",
            "kube-apiserver",
            &[],
            "subjectAltName = IP:127.0.0.1,DNS:localhost\nextendedKeyUsage = serverAuth",
        )?;
        // Service-account tokens are signed with this key by the apiserver (TokenRequest) and the
        // controller-manager; the apiserver verifies them with its public half.
        cmd!(
            sh,
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {pki}/sa.key"
        )
        .quiet()
        .ignore_stderr()
        .run()?;
        cmd!(
            sh,
            "openssl pkey -in {pki}/sa.key -pubout -out {pki}/sa.pub"
        )
        .quiet()
        .run()?;
        // The API server's client certificate towards kubelets (logs, exec, port-forward).
        issue(
            sh,
            &pki,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            "extendedKeyUsage = clientAuth",
        )?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        procs.spawn(
            "etcd",
            &bins.path("etcd"),
            &strings(&[
                "--name=e2e",
                &format!("--data-dir={}", dir.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=e2e={peer_url}"),
                "--listen-metrics-urls=",
                // A throwaway cluster: durability buys nothing, fsync costs seconds on a busy disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            &[],
        )?;
        wait_until(
            "etcd to accept connections",
            Duration::from_secs(30),
            || {
                procs.check_alive()?;
                Ok(std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok())
            },
        )?;

        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let p = |name: &str| pki.join(name).display().to_string();
        procs.spawn(
            "kube-apiserver",
            &bins.path("kube-apiserver"),
            &strings(&[
                &format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={port}"),
                &format!("--cert-dir={}", dir.join("apiserver").display()),
                &format!("--tls-cert-file={}", p("apiserver.crt")),
                &format!("--tls-private-key-file={}", p("apiserver.key")),
                &format!("--client-ca-file={}", p("ca.crt")),
                &format!("--service-account-issuer={server}"),
                &format!("--service-account-key-file={}", p("sa.pub")),
                &format!("--service-account-signing-key-file={}", p("sa.key")),
                &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                // The Node authorizer and NodeRestriction confine the real node's kubelet to its
                // own node and pods; PodNodeSelector and PodTolerationRestriction read the
                // namespace annotations that place the provider's pods on it (`node::placement`).
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction",
                &format!("--kubelet-client-certificate={}", p("apiserver-kubelet-client.crt")),
                &format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
                &format!("--kubelet-certificate-authority={}", p("ca.crt")),
                // Else logs and exec resolve the node's name through the host's resolver.
                "--kubelet-preferred-address-types=InternalIP",
                // The admission policies, not the apiserver, must be what refuses privileged pods.
                "--allow-privileged=true",
                "--profiling=false",
            ]),
            &[],
        )?;
        let admin = write_identity(sh, dir, &pki, &server, &ADMIN)?;
        let ready = wait_until("kube-apiserver /readyz", Duration::from_secs(120), || {
            procs.check_alive()?;
            let ok = cmd!(
                sh,
                "kubectl --kubeconfig {admin} --request-timeout=5s get --raw /readyz"
            )
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|body| body.trim() == "ok");
            Ok(ok)
        })?;
        eprintln!("e2e: kube-apiserver ready at {server} ({ready:.1?})");

        let kubeconfig = format!("--kubeconfig={}", admin.display());
        let auth = [
            format!("--authentication-kubeconfig={}", admin.display()),
            format!("--authorization-kubeconfig={}", admin.display()),
        ];
        let kcm_identity = write_identity(sh, dir, &pki, &server, &CONTROLLER_MANAGER)?;
        let mut kcm = strings(&[
            &format!("--kubeconfig={}", kcm_identity.display()),
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", free_port()?),
            "--leader-elect=false",
            &format!("--service-account-private-key-file={}", p("sa.key")),
            &format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=true",
            &format!("--cluster-cidr={CLUSTER_CIDR}"),
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // The real node's CNI bridge takes its range from the Node object.
            "--allocate-node-cidrs=true",
            "--node-cidr-mask-size=24",
        ]);
        kcm.extend(auth.iter().cloned());
        kcm.extend(rate_limit.iter().cloned());
        procs.spawn(
            "kube-controller-manager",
            &bins.path("kube-controller-manager"),
            &kcm,
            &[],
        )?;
        let mut scheduler = strings(&[
            &kubeconfig,
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", free_port()?),
            "--leader-elect=false",
        ]);
        scheduler.extend(auth.iter().cloned());
        scheduler.extend(rate_limit.iter().cloned());
        procs.spawn(
            "kube-scheduler",
            &bins.path("kube-scheduler"),
            &scheduler,
            &[],
        )?;
        // kwok plays "stages" on nodes and pods; the module ships the fast ones (node Ready with a
        // lease heartbeat, pods Running and Ready at once) under kustomize/stage/fast.
        let stages = components::module_dir(sh, root, "kwok")?
            .join("kustomize")
            .join("stage")
            .join("fast");
        let kwok_config = dir.join("kwok.yaml");
        let stages = cmd!(sh, "kubectl kustomize {stages}").quiet().read()?;
        std::fs::write(&kwok_config, stages)?;
        procs.spawn(
            "kwok",
            &bins.path("kwok"),
            &strings(&[
                &kubeconfig,
                &format!("--config={}", kwok_config.display()),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--manage-single-node=",
                &format!("--cidr={KWOK_POD_CIDR}"),
                "--node-ip=10.244.0.1",
                "--node-lease-duration-seconds=40",
            ]),
            &[],
        )?;

        let cluster = Cluster {
            dir: dir.to_path_buf(),
            admin,
            server,
        };
        let node = node_manifest(sizing.pods);
        cluster.kubectl(sh, &["apply", "-f", "-"], Some(&node))?;
        let took = wait_until(
            "the kwok node Ready and the default ServiceAccount (controller-manager)",
            Duration::from_secs(120),
            || {
                procs.check_alive()?;
                let ready = cluster.kubectl_read(
                    sh,
                    &[
                        "get",
                        "node",
                        NODE,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    ],
                )?;
                let sa = cluster.kubectl_read(
                    sh,
                    &[
                        "get",
                        "serviceaccount",
                        "default",
                        "-n",
                        "default",
                        "-o",
                        "name",
                    ],
                );
                Ok(ready.trim() == "True" && sa.is_ok())
            },
        )?;
        eprintln!("e2e: controller-manager, scheduler and kwok node ready ({took:.1?})");
        Ok(cluster)
    }

    /// Writes a kubeconfig for a client certificate with this subject (for the Flux controllers).
    pub fn identity(
        &self,
        sh: &Shell,
        file: &str,
        common_name: &str,
        groups: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let identity = Identity {
            file,
            common_name,
            groups,
        };
        write_identity(
            sh,
            &self.dir,
            &self.dir.join("pki"),
            &self.server,
            &identity,
        )
    }

    /// `kubectl --kubeconfig admin ARGS` with optional stdin; fails with kubectl's stderr.
    pub fn kubectl(&self, sh: &Shell, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
        self.kubectl_output(sh, args, stdin).map(|_| ())
    }

    /// `kubectl` as admin, returning stdout.
    pub fn kubectl_read(&self, sh: &Shell, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_output(sh, args, None)
    }

    /// `kubectl` as admin: `Ok(stdout)` if kubectl succeeded, `Err(stderr)` if the API server
    /// (or kubectl) refused; the outer error only if kubectl could not run at all.
    pub fn kubectl_result(
        &self,
        sh: &Shell,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<Result<String, String>> {
        let admin = &self.admin;
        // Every call is bounded: a wedged apiserver fails the run instead of hanging it.
        let mut command = cmd!(
            sh,
            "kubectl --kubeconfig {admin} --request-timeout=60s {args...}"
        )
        .quiet()
        .ignore_status();
        if let Some(input) = stdin {
            command = command.stdin(input);
        }
        let output = command
            .output()
            .context("cannot run kubectl: put kubectl on PATH")?;
        Ok(if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        })
    }

    /// `GET path` with no credentials at all (an anonymous request), over TLS trusting the run's
    /// CA: `(HTTP status, body)`. `openssl s_client` rather than kubectl, which prompts for a
    /// username when it has no credentials.
    pub fn anonymous_get(&self, sh: &Shell, path: &str) -> anyhow::Result<(u16, String)> {
        let address = self
            .server
            .strip_prefix("https://")
            .context("the API server URL is https")?;
        let ca = self.dir.join("pki").join("ca.crt");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        let output = cmd!(
            sh,
            "openssl s_client -quiet -verify_return_error -CAfile {ca} -connect {address}"
        )
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .stdin(request)
        .output()
        .context("cannot run openssl s_client")?;
        let response = String::from_utf8_lossy(&output.stdout).into_owned();
        let status = response
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no HTTP response from {address}: {}", response.trim()))?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, body)| body.to_owned());
        Ok((status, body))
    }

    /// `kubectl` as admin, returning stdout or an error carrying stderr.
    pub fn kubectl_output(
        &self,
        sh: &Shell,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<String> {
        self.kubectl_result(sh, args, stdin)?.map_err(|stderr| {
            anyhow::anyhow!("kubectl {} failed: {}", args.join(" "), stderr.trim())
        })
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The kwok node: kwok manages nodes with this annotation and reports them Ready; no taint, so
/// the Deployments of the tree schedule onto it unchanged. Its podCIDR is set, so the
/// controller-manager hands the real node another range.
fn node_manifest(pods: u32) -> String {
    let cpu = (pods / 4).max(32).to_string();
    let memory = format!("{}Gi", (pods / 4).max(256));
    let pods = pods.to_string();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"podCIDR": KWOK_POD_CIDR, "podCIDRs": [KWOK_POD_CIDR]},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_kwok_node_is_the_e2es_and_a_bench_node_grows_with_its_pods() {
        let node: serde_json::Value =
            serde_json::from_str(&node_manifest(Sizing::default().pods)).unwrap();
        let capacity = &node["status"]["capacity"];
        assert_eq!(capacity["cpu"], "32");
        assert_eq!(capacity["memory"], "256Gi");
        assert_eq!(capacity["pods"], "110");
        let node: serde_json::Value = serde_json::from_str(&node_manifest(4000)).unwrap();
        let allocatable = &node["status"]["allocatable"];
        assert_eq!(allocatable["cpu"], "1000");
        assert_eq!(allocatable["memory"], "1000Gi");
        assert_eq!(allocatable["pods"], "4000");
    }
}
