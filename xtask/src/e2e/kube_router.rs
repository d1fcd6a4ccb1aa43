//! The real node's NetworkPolicy dataplane: kube-router v2.1.0 in firewall-only mode (iptables +
//! ipset inside the run's network namespace; no routing, no service proxy, no CNI of its own).
//!
//! kube-router v2.1.0 is the only v2 the Go module proxy serves and security flaws are reported
//! against it: it is a test dataplane inside the run's own namespace, not a recommendation for
//! clusters. (`sigs.k8s.io/kube-network-policies` was tried first: it needs nftables `queue`,
//! which these kernels lack.)

use std::time::Duration;

use serde_json::json;
use xshell::{Shell, cmd};

use super::cluster::{Cluster, SERVICE_CIDR};
use super::components::Binaries;
use super::procs::{Processes, free_port, wait_until};

const USER: &str = "system:kube-router";

/// Grants kube-router what its network policy controller reads, starts it for `node`, and waits
/// until its filter chain exists.
pub fn start(
    sh: &Shell,
    cluster: &Cluster,
    bins: &Binaries,
    node: &str,
    procs: &mut Processes,
) -> anyhow::Result<Duration> {
    cluster.kubectl(sh, &["apply", "-f", "-"], Some(&rbac().to_string()))?;
    let kubeconfig = cluster.identity(sh, "kube-router", USER, &[])?;
    procs.spawn(
        "kube-router",
        &bins.path("kube-router"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            "--run-firewall=true".to_string(),
            "--run-router=false".to_string(),
            "--run-service-proxy=false".to_string(),
            "--run-loadbalancer=false".to_string(),
            "--enable-cni=false".to_string(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!("--hostname-override={node}"),
            format!("--health-port={}", free_port()?),
            "--metrics-port=0".to_string(),
            "--v=1".to_string(),
        ],
        &[],
    )?;
    wait_until(
        "kube-router's KUBE-ROUTER-FORWARD chain",
        Duration::from_secs(60),
        || {
            procs.check_alive()?;
            Ok(cmd!(sh, "iptables -w -S KUBE-ROUTER-FORWARD")
                .quiet()
                .ignore_stderr()
                .read()
                .is_ok())
        },
    )
}

/// Read access to what the network policy controller watches (the upstream manifest's
/// ClusterRole, less what firewall-only mode never touches).
fn rbac() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "e2e:kube-router"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "apiGroups": ["networking.k8s.io"],
                        "resources": ["networkpolicies"],
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["get", "list", "watch"],
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "e2e:kube-router"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e:kube-router"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_router_may_read_network_policies_and_write_nothing() {
        let rbac = rbac();
        let rules = rbac["items"][0]["rules"].as_array().unwrap();
        assert!(rules.iter().any(|r| r["resources"][0] == "networkpolicies"));
        for rule in rules {
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]));
        }
        assert_eq!(rbac["items"][1]["subjects"][0]["name"], USER);
    }
}
