//! Step 6, changes through git only: a commit that makes one service's manifests reach into the
//! other service's namespace (and beyond its tenant's rights) must fail its Kustomization and leave
//! nothing behind; its revert must recover; a replicas change, made in the spec and rendered by
//! `gen` ([`SpecCopy`]), must roll out with no human apply. Before each commit the tree's artifacts
//! are published from the work tree, as CI does before a merge (the revert's were published
//! before); the service's Kustomization reads the artifact its tenant's source pins.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use super::artifacts::{self, Published};
use super::checks::{self, CLIENT_SERVICE, PROVIDER_SERVICE};
use super::cluster::Cluster;
use super::flux::{self, request_reconcile};
use super::git::Repo;
use super::procs::{Processes, wait_until};
use super::spec_copy::SpecCopy;
use super::tree::{FluxKustomization, Tree, str_at};

const MARKER: &str = "e2e-tenancy-violation";

/// What the cluster was first given: the tree served from `repo` and the artifacts published
/// for it.
pub struct Served<'a> {
    pub tree: &'a Tree,
    pub repo: &'a Repo,
    pub published: &'a Published,
}

/// Runs the three commits (the third only with `spec`: a tree given with `--flux-dir` has none to
/// render it from); returns one line per held property.
pub fn run(
    sh: &Shell,
    cluster: &Cluster,
    served: &Served<'_>,
    spec: Option<&SpecCopy>,
    procs: &mut Processes,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let Served {
        tree,
        repo,
        published,
    } = *served;
    let mut held = Vec::new();
    let (service, deployment) = service_deployment(tree, CLIENT_SERVICE)?;
    let dir = repo.work.join(&service.path);
    let chain = chain(tree, service)?;

    // 1. The violation: a ConfigMap for the other service's namespace and a ClusterRoleBinding
    // (cluster-wide, so no targetNamespace can fold it back into the tenant's own namespace).
    let violation = serde_json::json!([
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": MARKER, "namespace": PROVIDER_SERVICE}, "data": {"from": CLIENT_SERVICE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": MARKER},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]},
    ]);
    let mut file = String::new();
    for object in violation.as_array().expect("a literal array") {
        file.push_str("---\n");
        file.push_str(&serde_yaml_ng::to_string(object)?);
    }
    std::fs::write(dir.join(format!("{MARKER}.yaml")), file)?;
    add_resource(&dir.join("kustomization.yaml"), &format!("{MARKER}.yaml"))?;
    // Pinned as `gen` would pin it (a hand-made change no reviewer should have let through):
    // what stops it must be the tenant's account, not the pin.
    if service.source.0 == "OCIRepository" {
        artifacts::repin(sh, repo, tree, service)?;
    }
    // Published first, as CI does before the merge that pins it.
    let violating = artifacts::publish(sh, repo, tree)?;
    let commit = repo.commit(sh, "tenancy violation: reach into another namespace")?;
    let revision = violating.revision(service, &commit).to_owned();
    let started = Instant::now();
    poke(sh, cluster, &chain)?;
    let message = wait_until(
        &format!(
            "Kustomization {}/{} to fail on the violation",
            service.namespace, service.name
        ),
        timeout,
        || {
            procs.check_alive()?;
            poke(sh, cluster, &chain)?;
            let state = state_of(sh, cluster, service)?;
            Ok(state.ready == Some(false) && state.attempted.contains(&revision))
        },
    )
    .and_then(|_| state_of(sh, cluster, service).map(|s| s.message))?;
    // Denied for the tenant's identity: proof that Flux impersonated the service's account.
    let tenant = format!(
        "system:serviceaccount:{}:{}",
        service.namespace,
        service.service_account.as_deref().unwrap_or("default")
    );
    if !message.to_lowercase().contains("forbidden") || !message.contains(&tenant) {
        bail!("the violation failed, but not as a refusal to {tenant}: {message}");
    }
    let leaked = checks::leaked(sh, cluster, PROVIDER_SERVICE, MARKER)?;
    if !leaked.is_empty() {
        bail!(
            "the violation left {} in namespace {PROVIDER_SERVICE}",
            leaked.join(", ")
        );
    }
    let binding = &violation[1];
    if checks::exists(sh, cluster, binding) {
        bail!("the violation created ClusterRoleBinding {MARKER}");
    }
    held.push(format!(
        "violation commit refused in {:.0?} as tenant {}: {}",
        started.elapsed(),
        service.service_account.as_deref().unwrap_or("?"),
        first_line(&message)
    ));

    // 2. The revert recovers: the tree is again the one published when it was first served.
    let revert = repo.revert_last(sh)?;
    let revision = published.revision(service, &revert).to_owned();
    let started = Instant::now();
    wait_ready_at(sh, cluster, service, &chain, procs, &revision, timeout)?;
    held.push(format!("revert recovered in {:.0?}", started.elapsed()));

    // 3. A replicas change rolls out through Flux: spec → `gen` → commit, as a team would.
    let Some(spec) = spec else {
        held.push(
            "replicas change skipped: the tree came from --flux-dir, not from this checkout's spec"
                .to_string(),
        );
        return Ok(held);
    };
    let ns = str_at(deployment, "/metadata/namespace").to_string();
    let name = str_at(deployment, "/metadata/name").to_string();
    let served = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let scaled = spec.scale(CLIENT_SERVICE, 1)?;
    if scaled.before != served {
        bail!(
            "{} says {} = {}, but the served Deployment {ns}/{name} has {served} replicas: the tree is not the spec's",
            scaled.file,
            scaled.key,
            scaled.before
        );
    }
    spec.render(sh)?;
    let (before, after) = (scaled.before, scaled.after);
    let scaled_published = artifacts::publish(sh, repo, tree)?;
    let commit = repo.commit(
        sh,
        &format!(
            "scale {CLIENT_SERVICE} through the spec: {} {} {before} → {after}",
            scaled.file, scaled.key
        ),
    )?;
    let revision = scaled_published.revision(service, &commit).to_owned();
    let started = Instant::now();
    wait_ready_at(sh, cluster, service, &chain, procs, &revision, timeout)?;
    wait_until(
        &format!("Deployment {ns}/{name} to have {after} available replicas"),
        timeout,
        || {
            let live: Value = serde_json::from_str(
                &cluster
                    .kubectl_read(sh, &["get", "deployment", "-n", &ns, &name, "-o", "json"])?,
            )?;
            let spec = live.pointer("/spec/replicas").and_then(Value::as_i64);
            let available = live
                .pointer("/status/availableReplicas")
                .and_then(Value::as_i64);
            Ok(spec == Some(after) && available == Some(after))
        },
    )?;
    held.push(format!(
        "replicas {before} → {after} of {ns}/{name} ({} `{}`, rendered by gen) rolled out through Flux in {:.0?}",
        scaled.file,
        scaled.key,
        started.elapsed()
    ));
    Ok(held)
}

/// The Kustomization that applies `service`'s Deployment, and that Deployment.
fn service_deployment<'a>(
    tree: &'a Tree,
    service: &str,
) -> anyhow::Result<(&'a FluxKustomization, &'a Value)> {
    let deployment = tree
        .of_kind("Deployment")
        .into_iter()
        .find(|d| str_at(d, "/metadata/namespace") == service)
        .with_context(|| format!("the tree has no Deployment in namespace {service}"))?;
    let applier = tree
        .applied_by("Deployment", service, str_at(deployment, "/metadata/name"))
        .with_context(|| {
            format!("no Kustomization of the tree applies the {service} Deployment")
        })?;
    Ok((applier, deployment))
}

/// What a commit has to travel through to reach `service`, in order, as `(kind, namespace,
/// name)`: from the bootstrap's git source down, each source and the Kustomization that applies
/// the next one (the team's tenants artifact, then the service's own).
fn chain(
    tree: &Tree,
    service: &FluxKustomization,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let link = |k: &FluxKustomization| {
        [
            (
                k.source.0.to_lowercase(),
                k.namespace.clone(),
                k.source.1.clone(),
            ),
            (
                "kustomization".to_owned(),
                k.namespace.clone(),
                k.name.clone(),
            ),
        ]
    };
    let mut chain: Vec<(String, String, String)> = link(service).to_vec();
    let mut current = service;
    for _ in 0..8 {
        match tree.applied_by(&current.source.0, &current.namespace, &current.source.1) {
            // The bootstrap applies its own source: the top.
            Some(applier)
                if applier.namespace == current.namespace && applier.name == current.name =>
            {
                return Ok(chain);
            }
            Some(applier) => {
                chain.splice(0..0, link(applier));
                current = applier;
            }
            None => return Ok(chain),
        }
    }
    bail!(
        "the sources above Kustomization {}/{} nest deeper than 8",
        service.namespace,
        service.name
    )
}

/// Asks every link of `chain` to look at the new revision now (what `flux reconcile` does).
fn poke(sh: &Shell, cluster: &Cluster, chain: &[(String, String, String)]) -> anyhow::Result<()> {
    for (kind, namespace, name) in chain {
        request_reconcile(sh, cluster, kind, namespace, name)?;
    }
    Ok(())
}

fn state_of(
    sh: &Shell,
    cluster: &Cluster,
    service: &FluxKustomization,
) -> anyhow::Result<flux::State> {
    flux::states(sh, cluster)?
        .into_iter()
        .find(|s| s.namespace == service.namespace && s.name == service.name)
        .with_context(|| {
            format!(
                "Kustomization {}/{} is gone",
                service.namespace, service.name
            )
        })
}

fn wait_ready_at(
    sh: &Shell,
    cluster: &Cluster,
    service: &FluxKustomization,
    chain: &[(String, String, String)],
    procs: &mut Processes,
    revision: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut polls = 0u32;
    wait_until(
        &format!(
            "Kustomization {}/{} Ready at {revision}",
            service.namespace, service.name
        ),
        timeout,
        || {
            procs.check_alive()?;
            // Ask again every ten seconds: a request that lands mid-reconcile is folded into it.
            if polls.is_multiple_of(20) {
                poke(sh, cluster, chain)?;
            }
            polls += 1;
            let state = state_of(sh, cluster, service)?;
            // Attempted too: a revert publishes the digest that was applied before the
            // violation, so only the attempt says Flux has looked since.
            if state.ready_at(revision) && state.attempted.contains(revision) {
                return Ok(true);
            }
            bail!("{}: {}", state.reason, state.message)
        },
    )
    .map(|_| ())
}

/// Appends `file` to the `resources:` of a kustomization.yaml.
fn add_resource(kustomization: &Path, file: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(kustomization)
        .with_context(|| format!("reading {}", kustomization.display()))?;
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", kustomization.display()))?;
    let resources = doc
        .get_mut("resources")
        .and_then(serde_yaml_ng::Value::as_sequence_mut)
        .with_context(|| format!("{} has no resources list", kustomization.display()))?;
    resources.push(serde_yaml_ng::Value::String(file.into()));
    std::fs::write(kustomization, serde_yaml_ng::to_string(&doc)?)?;
    Ok(())
}

/// The first line of a condition message, at most 400 characters (cut on a char boundary).
fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(400) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(500) + "\nsecond";
        assert_eq!(first_line(&text).chars().count(), 400);
        assert_eq!(first_line("short\nsecond"), "short");
    }

    #[test]
    fn a_resource_is_appended_to_the_kustomization() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let dir = scratch.path().to_owned();
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kustomization.yaml");
        std::fs::write(&file, "# header\nresources:\n- deployment.yaml\n").unwrap();
        add_resource(&file, "extra.yaml").unwrap();
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(doc["resources"][1].as_str(), Some("extra.yaml"));
    }
}
