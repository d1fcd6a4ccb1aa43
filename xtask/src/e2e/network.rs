//! Step 7: network reachability of the rendered tree, by netpol-analyzer: the provider is
//! reachable from Antaeus only, on the provider's container port.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::bail;
use serde_json::Value;
use xshell::{Shell, cmd};

use super::checks::{CLIENT_SERVICE, PROVIDER_SERVICE};
use super::tree::{Tree, str_at};

/// Step 7: netpol-analyzer over the rendered tree; the provider is reachable from Antaeus only,
/// on the provider's container port. Returns the connectivity list.
pub fn connectivity(
    sh: &Shell,
    netpolicy: &Path,
    tree: &Tree,
    dir: &Path,
) -> anyhow::Result<String> {
    let out_dir = dir.join("netpol");
    std::fs::create_dir_all(&out_dir)?;
    let objects: Vec<Value> = tree
        .objects()
        .into_iter()
        .filter(|o| !str_at(o, "/apiVersion").contains("fluxcd.io"))
        .cloned()
        .collect();
    let mut yaml = String::new();
    for object in &objects {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(object)?);
    }
    std::fs::write(out_dir.join("tree.yaml"), yaml)?;
    let output = cmd!(sh, "{netpolicy} list --dirpath {out_dir}")
        .quiet()
        .ignore_status()
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "netpolicy list failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let provider_ports: BTreeSet<String> = tree
        .of_kind("Deployment")
        .into_iter()
        .filter(|d| str_at(d, "/metadata/namespace") == PROVIDER_SERVICE)
        .flat_map(|d| {
            d.pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .filter_map(|p| p["containerPort"].as_i64())
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    check_provider_reachability(&text, &provider_ports)?;
    Ok(text)
}

/// Every line `src => dst : conns` whose destination is in the provider's namespace must come
/// from Antaeus's namespace and allow TCP on the provider's port only; and there must be one.
pub fn check_provider_reachability(
    list: &str,
    provider_ports: &BTreeSet<String>,
) -> anyhow::Result<()> {
    if provider_ports.is_empty() {
        bail!("the tree has no {PROVIDER_SERVICE} Deployment with a container port");
    }
    let mut allowed_from_client = false;
    for line in list.lines() {
        let Some((src, rest)) = line.split_once("=>") else {
            continue;
        };
        let Some((dst, conns)) = rest.split_once(':') else {
            continue;
        };
        let (src, dst, conns) = (src.trim(), dst.trim(), conns.trim());
        if !dst.starts_with(&format!("{PROVIDER_SERVICE}/")) {
            continue;
        }
        let from_client = src.starts_with(&format!("{CLIENT_SERVICE}/"));
        let expected_conns: Vec<String> =
            provider_ports.iter().map(|p| format!("TCP {p}")).collect();
        if !from_client || conns != expected_conns.join(",") {
            bail!(
                "{PROVIDER_SERVICE} is reachable as `{line}`: only {CLIENT_SERVICE} on {} may reach it",
                expected_conns.join(",")
            );
        }
        allowed_from_client = true;
    }
    if !allowed_from_client {
        bail!("{CLIENT_SERVICE} cannot reach {PROVIDER_SERVICE} at all in the connectivity list");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> BTreeSet<String> {
        ["9000".to_string()].into()
    }

    #[test]
    fn only_antaeus_on_the_provider_port_passes() {
        let list = "0.0.0.0-255.255.255.255 => antaeus/antaeus[Deployment] : TCP 8000\nantaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 9000\n";
        check_provider_reachability(list, &ports()).unwrap();
    }

    #[test]
    fn another_source_reaching_the_provider_fails() {
        let list = "antaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 9000\n0.0.0.0-255.255.255.255 => payment-provider/payment-provider[Deployment] : All Connections\n";
        let err = check_provider_reachability(list, &ports()).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0-255.255.255.255"), "{err}");
    }

    #[test]
    fn a_wrong_port_fails() {
        let list = "antaeus/antaeus[Deployment] => payment-provider/payment-provider[Deployment] : TCP 8000\n";
        assert!(check_provider_reachability(list, &ports()).is_err());
    }

    #[test]
    fn no_connection_at_all_fails() {
        let err = check_provider_reachability("", &ports()).unwrap_err();
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
}
