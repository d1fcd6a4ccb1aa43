//! The real node's pod network: the CNI bridge (with host-local addresses from the node's
//! `podCIDR`, allocated by the controller-manager), loopback and portmap plugins of Debian's
//! containernetworking-plugins, written once the node has registered and been given its range.

use std::path::Path;

use anyhow::Context;

/// The bridge the node's pods hang off (inside the run's network namespace only).
pub const BRIDGE: &str = "cni0";

/// Writes the conflist containerd's CRI plugin watches; the node turns Ready once it is there.
/// host-local keeps its allocations under the run folder instead of /var/lib/cni.
pub fn write_config(conf_dir: &Path, data_dir: &Path, pod_cidr: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = conf_dir.join("10-e2e-bridge.conflist");
    std::fs::write(&path, conflist(pod_cidr, data_dir)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn conflist(pod_cidr: &str, data_dir: &Path) -> anyhow::Result<String> {
    let gateway = gateway(pod_cidr)?;
    let value = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "e2e-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                // No masquerade: the namespace has no outside to reach, and NetworkPolicies must
                // see the real pod source address.
                "ipMasq": false,
                // A pod reaching itself through its Service comes back over the same port.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir.display().to_string(),
                    "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    });
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The first address of an IPv4 CIDR (`10.244.1.0/24` → `10.244.1.1`): the bridge's own.
fn gateway(cidr: &str) -> anyhow::Result<String> {
    let (network, _) = cidr
        .split_once('/')
        .with_context(|| format!("the node's podCIDR {cidr:?} is not a CIDR"))?;
    let address: std::net::Ipv4Addr = network
        .parse()
        .with_context(|| format!("the node's podCIDR {cidr:?} is not IPv4"))?;
    Ok(std::net::Ipv4Addr::from(u32::from(address) + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_gets_the_first_address_of_the_node_range() {
        let text = conflist("10.244.1.0/24", Path::new("/r/cni/data")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ipam = &value["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][0][0]["gateway"], "10.244.1.1");
        assert_eq!(ipam["dataDir"], "/r/cni/data");
        assert_eq!(value["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn a_range_that_is_not_ipv4_is_refused_with_its_value() {
        let err = gateway("fd00::/64").unwrap_err().to_string();
        assert!(err.contains("fd00::/64"), "{err}");
    }
}
