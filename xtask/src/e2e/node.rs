//! The real node next to kwok's fake one: containerd, the CNI bridge, kubelet and kube-proxy
//! (from the kubernetes component), inside the run's namespace, registered as `real-node-0` with
//! a label and a taint that only the provider's namespace (and the run's own probe pods) tolerate.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use xshell::Shell;

use super::cluster::Cluster;
use super::cni;
use super::components::Binaries;
use super::containerd::Containerd;
use super::netns::Inside;
use super::pki::issue;
use super::procs::{Processes, free_port, wait_until};

/// The real node's name.
pub const NODE: &str = "real-node-0";
/// Label and taint key of the real node: pods land there only by asking for it.
pub const PLACEMENT_KEY: &str = "billing-platform.dev/real-node";
/// The namespace whose pods run for real (the provider's image is built by this project).
pub const REAL_NAMESPACE: &str = "payment-provider";

/// A registered, Ready node and when it got there.
pub struct RealNode {
    pub name: String,
    pub ip: String,
    pub pod_cidr: String,
    /// From starting the kubelet to the node's Ready condition.
    pub ready_after: Duration,
}

/// Starts the kubelet and kube-proxy against the running containerd, hands the CNI plugin the
/// node's range once the controller-manager allocated it, and waits for the node to be Ready.
pub fn start(
    sh: &Shell,
    cluster: &Cluster,
    bins: &Binaries,
    containerd: &Containerd,
    inside: &Inside,
    procs: &mut Processes,
) -> anyhow::Result<RealNode> {
    let dir = cluster.dir.join("node");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pki = cluster.dir.join("pki");
    let kubelet_kubeconfig = cluster.identity(
        sh,
        "kubelet",
        &format!("system:node:{NODE}"),
        &["system:nodes"],
    )?;
    // The kubelet's serving certificate, signed by the run's CA, so the API server verifies it
    // when it proxies logs and exec (`--kubelet-certificate-authority`).
    issue(
        sh,
        &pki,
        "kubelet-serving",
        &format!("system:node:{NODE}"),
        &["system:nodes"],
        &format!(
            "subjectAltName = IP:{},DNS:{NODE}\nextendedKeyUsage = serverAuth",
            inside.node_ip
        ),
    )?;
    let config = dir.join("kubelet.json");
    let resolv = dir.join("resolv.conf");
    // No cluster DNS in this run: pods get an empty resolver config, not the host's.
    std::fs::write(&resolv, "")?;
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&kubelet_config(
            &pki,
            &dir,
            containerd,
            inside,
            &resolv,
            free_port()?,
        ))?,
    )?;
    let started = Instant::now();
    procs.spawn(
        "kubelet",
        &bins.path("kubelet"),
        &[
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubelet_kubeconfig.display()),
            format!("--root-dir={}", dir.join("kubelet").display()),
            format!("--hostname-override={NODE}"),
            format!("--node-ip={}", inside.node_ip),
            format!("--node-labels={PLACEMENT_KEY}=true"),
            "--v=1".to_string(),
        ],
        &[],
    )?;
    let pod_cidr = wait_until(
        "the kubelet to register the node and the controller-manager to give it a podCIDR",
        Duration::from_secs(60),
        || {
            procs.check_alive()?;
            let cidr = cluster
                .kubectl_read(sh, &["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"])
                .unwrap_or_default();
            Ok(!cidr.trim().is_empty())
        },
    )
    .and_then(|_| {
        cluster.kubectl_read(sh, &["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"])
    })?
    .trim()
    .to_string();
    cni::write_config(
        &containerd.cni_conf_dir,
        &cluster.dir.join("cni").join("data"),
        &pod_cidr,
    )?;
    start_kube_proxy(sh, cluster, bins, &dir, procs)?;
    wait_until("the real node to be Ready", Duration::from_secs(60), || {
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
        Ok(ready.trim() == "True")
    })?;
    Ok(RealNode {
        name: NODE.to_string(),
        ip: inside.node_ip.clone(),
        pod_cidr,
        ready_after: started.elapsed(),
    })
}

/// The KubeletConfiguration: webhook authentication and authorization against the run's CA and
/// API server, cgroupfs under the run's own cgroup (these hosts are cgroup v1), every folder under
/// the run folder, and the kernel defaults checked, never written (the run binds the values it
/// expects over /proc/sys in its own mount namespace).
fn kubelet_config(
    pki: &Path,
    dir: &Path,
    containerd: &Containerd,
    inside: &Inside,
    resolv: &Path,
    healthz_port: u16,
) -> Value {
    let p = |name: &str| pki.join(name).display().to_string();
    let endpoint = format!("unix://{}", containerd.socket.display());
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": inside.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": p("ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": p("kubelet-serving.crt"),
        "tlsPrivateKeyFile": p("kubelet-serving.key"),
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": inside.cgroup_root,
        "failCgroupV1": false,
        "failSwapOn": false,
        "protectKernelDefaults": true,
        "podLogsDir": dir.join("pod-logs").display().to_string(),
        "resolvConf": resolv.display().to_string(),
        "clusterDomain": "cluster.local",
        "serializeImagePulls": false,
        // The run's disk is shared with everything else on the machine: never evict for it.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "registerWithTaints": [
            {"key": PLACEMENT_KEY, "value": "true", "effect": "NoSchedule"},
        ],
        "staticPodPath": "",
    })
}

/// kube-proxy in iptables mode, as `system:kube-proxy` (bound to `system:node-proxier` by the
/// API server's bootstrap policy). Conntrack sizing off: `nf_conntrack_max` is global.
fn start_kube_proxy(
    sh: &Shell,
    cluster: &Cluster,
    bins: &Binaries,
    dir: &Path,
    procs: &mut Processes,
) -> anyhow::Result<()> {
    let kubeconfig = cluster.identity(sh, "kube-proxy", "system:kube-proxy", &[])?;
    let config = dir.join("kube-proxy.json");
    let value = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig.display().to_string()},
        "hostnameOverride": NODE,
        "mode": "iptables",
        "clusterCIDR": super::cluster::CLUSTER_CIDR,
        "healthzBindAddress": format!("127.0.0.1:{}", free_port()?),
        "metricsBindAddress": format!("127.0.0.1:{}", free_port()?),
        "nodePortAddresses": ["primary"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    });
    std::fs::write(&config, serde_json::to_string_pretty(&value)?)?;
    procs.spawn(
        "kube-proxy",
        &bins.path("kube-proxy"),
        &[
            format!("--config={}", config.display()),
            "--v=1".to_string(),
        ],
        &[],
    )?;
    Ok(())
}

/// Namespace annotations of the run (not the tree) that put every pod of the provider's namespace
/// on the real node: PodNodeSelector adds the node's label to their nodeSelector and
/// PodTolerationRestriction gives them the toleration of its taint. Applied server-side under the
/// run's own field manager before Flux starts, so Flux's apply of the Namespace keeps them.
pub fn placement(sh: &Shell, cluster: &Cluster) -> anyhow::Result<()> {
    let toleration = json!([{"key": PLACEMENT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]);
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": REAL_NAMESPACE,
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": format!("{PLACEMENT_KEY}=true"),
                "scheduler.alpha.kubernetes.io/defaultTolerations": toleration.to_string(),
            },
        },
    });
    cluster.kubectl(
        sh,
        &[
            "apply",
            "--server-side",
            "--field-manager=billing-platform-e2e",
            "-f",
            "-",
        ],
        Some(&namespace.to_string()),
    )
}

/// What a pod of the run itself needs to land on the real node in any namespace.
pub fn pod_placement() -> (Value, Value) {
    (
        json!({PLACEMENT_KEY: "true"}),
        json!([{"key": PLACEMENT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelet_checks_kernel_defaults_and_stays_under_the_run_folder() {
        let containerd = Containerd {
            socket: "/r/containerd/containerd.sock".into(),
            cni_conf_dir: "/r/cni/net.d".into(),
        };
        let inside = Inside {
            node_ip: "172.30.255.1".into(),
            cgroup_root: "/billing-platform-e2e-1".into(),
        };
        let config = kubelet_config(
            Path::new("/r/pki"),
            Path::new("/r/node"),
            &containerd,
            &inside,
            Path::new("/r/node/resolv.conf"),
            1234,
        );
        assert_eq!(config["protectKernelDefaults"], true);
        assert_eq!(config["cgroupRoot"], "/billing-platform-e2e-1");
        assert_eq!(
            config["containerRuntimeEndpoint"],
            "unix:///r/containerd/containerd.sock"
        );
        assert_eq!(config["podLogsDir"], "/r/node/pod-logs");
        assert_eq!(config["readOnlyPort"], 0);
        assert_eq!(config["registerWithTaints"][0]["key"], PLACEMENT_KEY);
    }
}
