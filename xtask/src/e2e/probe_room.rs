//! Room for the run's own probe pods in the tree's namespaces. They are scaffolding, not a
//! tenant's workload (a provider binary on Antaeus' side, intruders the network must drop), so
//! the tree's admission policies (which pin images and accounts per namespace) and quotas (sized
//! for the tenants' own pods) are opened for exactly these pod names while they are created, then
//! restored. Flux would take both back at its next apply, so its platform layers are suspended
//! meanwhile (`flux suspend kustomization`). Every change is made under the run's own field
//! manager: Flux's drift correction takes back what `kubectl patch` sets, not other managers'.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use xshell::Shell;

use super::cluster::Cluster;
use super::flux::FLUX_NAMESPACE;
use super::procs::wait_until;

/// The field manager of the run's changes to the tree's objects.
const FIELD_MANAGER: &str = "e2e-probe-pods";
/// The tree's ResourceQuota in each service namespace.
const QUOTA: &str = "platform-quota";
/// The bootstrap sync: it applies the platform Kustomizations, not the bindings or the quotas.
const SYNC: &str = "flux-system";

/// What `open` changed, for `close` to put back.
pub struct Room {
    bindings: Vec<String>,
    /// Each namespace with a quota, and the quota's `spec.hard` from the tree.
    quotas: Vec<(String, Value)>,
}

/// `kubectl patch TARGET… --type merge` under the run's field manager.
fn merge_patch(sh: &Shell, cluster: &Cluster, target: &[&str], patch: &str) -> anyhow::Result<()> {
    let mut args = vec!["patch"];
    args.extend_from_slice(target);
    args.extend([
        "--type",
        "merge",
        "--field-manager",
        FIELD_MANAGER,
        "-p",
        patch,
    ]);
    cluster
        .kubectl(sh, &args, None)
        .with_context(|| format!("patching {}", target.join(" ")))
}

/// The platform Kustomizations that apply the bindings and the quotas: every one the tree puts
/// in Flux's namespace (`infrastructure`, each `teams-<bucket>`, each team's `namespaces-<team>`
/// and `tenants-<team>`) but the bootstrap sync.
fn platform_layers(sh: &Shell, cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let listed = cluster.kubectl_read(
        sh,
        &[
            "get",
            "kustomizations.kustomize.toolkit.fluxcd.io",
            "-n",
            FLUX_NAMESPACE,
            "-l",
            "app.kubernetes.io/managed-by=cargo-xtask-gen",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )?;
    let layers: Vec<String> = listed
        .split_whitespace()
        .filter(|name| *name != SYNC)
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        layers.iter().any(|name| name == "infrastructure"),
        "the tree's platform Kustomizations are not in {FLUX_NAMESPACE}: found {layers:?}"
    );
    Ok(layers)
}

fn suspend(sh: &Shell, cluster: &Cluster, patch: &str) -> anyhow::Result<()> {
    for name in platform_layers(sh, cluster)? {
        merge_patch(
            sh,
            cluster,
            &["kustomization", &name, "-n", FLUX_NAMESPACE],
            patch,
        )?;
    }
    Ok(())
}

fn quota(sh: &Shell, cluster: &Cluster, ns: &str) -> anyhow::Result<Option<Value>> {
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
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_str(&json).context("kubectl printed no JSON")?,
    ))
}

fn set_quota(sh: &Shell, cluster: &Cluster, ns: &str, hard: &Value) -> anyhow::Result<()> {
    let patch = json!({"spec": {"hard": hard}}).to_string();
    merge_patch(sh, cluster, &["resourcequota", QUOTA, "-n", ns], &patch)
}

/// Every limit of `hard` out of reach (bytes for memory and storage, counts for the rest).
fn out_of_reach(hard: &Value) -> Value {
    let wide = hard
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .map(|k| {
            let bytes = k.contains("memory") || k.contains("storage");
            (k.clone(), json!(if bytes { "1000Gi" } else { "1000" }))
        });
    Value::Object(wide.collect())
}

/// Suspends Flux's platform layers, lets the pods `names` past every binding of the tree and
/// raises the quota of each of `namespaces` that has one.
pub fn open(
    sh: &Shell,
    cluster: &Cluster,
    names: &[&str],
    namespaces: &[&str],
) -> anyhow::Result<Room> {
    suspend(sh, cluster, r#"{"spec":{"suspend":true}}"#)?;
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
    // The tree's bindings carry no exclusions of their own: `close` removes the field.
    let exclude = json!({"spec": {"matchResources": {"excludeResourceRules": [{
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods"],
        "resourceNames": names,
    }]}}})
    .to_string();
    for binding in &bindings {
        merge_patch(sh, cluster, &[binding], &exclude)?;
    }
    let mut quotas = Vec::new();
    for ns in namespaces {
        let Some(before) = quota(sh, cluster, ns)? else {
            continue;
        };
        let hard = before["spec"]["hard"].clone();
        set_quota(sh, cluster, ns, &out_of_reach(&hard))?;
        // Quota admission reads status.hard, which the controller-manager copies from spec;
        // compared as the API server writes both (it normalises quantities: 1000 → 1k).
        wait_until(
            &format!("{ns}/{QUOTA} to take its raised limits"),
            Duration::from_secs(30),
            || {
                let now = quota(sh, cluster, ns)?.unwrap_or_default();
                Ok(now["spec"]["hard"] != hard && now["spec"]["hard"] == now["status"]["hard"])
            },
        )?;
        quotas.push(((*ns).to_owned(), hard));
    }
    Ok(Room { bindings, quotas })
}

impl Room {
    /// Restores the bindings and quotas, then resumes Flux; tries every step, returns the first
    /// failure.
    pub fn close(self, sh: &Shell, cluster: &Cluster) -> anyhow::Result<()> {
        let unexclude = r#"{"spec":{"matchResources":{"excludeResourceRules":null}}}"#;
        let mut results: Vec<anyhow::Result<()>> = Vec::new();
        for binding in &self.bindings {
            results.push(merge_patch(sh, cluster, &[binding], unexclude));
        }
        for (ns, hard) in &self.quotas {
            results.push(set_quota(sh, cluster, ns, hard));
        }
        results.push(suspend(sh, cluster, r#"{"spec":{"suspend":null}}"#));
        results.into_iter().collect()
    }
}
