//! Flux's multi-tenancy lockdown on the running kustomize-controller: the flags come from the
//! tree's generated component (`flux/clusters/<env>/flux-lockdown/`) applied by real kustomize to
//! the controller module's own `config/manager` Deployment (what a bootstrap listing the
//! component would run), are checked on the process's command line, and are shown to hold by two
//! Kustomizations only the flags refuse (the admission policies leave `flux-system` to the
//! platform, so nothing else stands in their way there).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use super::cluster::Cluster;
use super::flux::{self, FLUX_NAMESPACE};
use super::procs::wait_until;
use super::tree::{self, Tree};

/// The args of the `manager` container of Deployment `controller` in the build of `dir`.
fn manager_args(sh: &Shell, dir: &Path, controller: &str) -> anyhow::Result<Vec<String>> {
    let objects = tree::render(sh, dir)?;
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == controller)
        .with_context(|| format!("{} builds no Deployment {controller}", dir.display()))?;
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .with_context(|| format!("Deployment {controller} has no containers"))?;
    Ok(containers
        .first()
        .and_then(|c| c["args"].as_array())
        .map(|args| {
            args.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// Copies the files of `from` (one level: kustomize directories here are flat) into `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().expect("a file has a name");
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            std::fs::write(to.join(name), bytes)
                .with_context(|| format!("writing into {}", to.display()))?;
        }
    }
    Ok(())
}

/// The flags the tree's lockdown `component` adds to `controller`'s Deployment from its module's
/// `config/manager`, in order. `scratch` holds the kustomization that lists both.
pub fn flags(
    sh: &Shell,
    module: &Path,
    component: &Path,
    scratch: &Path,
    controller: &str,
) -> anyhow::Result<Vec<String>> {
    if !component.join("kustomization.yaml").is_file() {
        bail!(
            "{} has no kustomization.yaml: the tree carries no lockdown component; run `cargo xtask gen`",
            component.display()
        );
    }
    // kustomize takes no absolute directory (and the module cache is read-only): both copies sit
    // side by side under `scratch`, as in a bootstrap repository.
    let manager = scratch.join("manager");
    copy_dir(&module.join("config").join("manager"), &manager)?;
    copy_dir(component, &scratch.join("flux-lockdown"))?;
    std::fs::write(
        scratch.join("kustomization.yaml"),
        "resources: [manager]\ncomponents: [flux-lockdown]\n",
    )
    .with_context(|| format!("writing {}", scratch.display()))?;
    let base = manager_args(sh, &manager, controller)?;
    let locked = manager_args(sh, scratch, controller)?;
    let added: Vec<String> = locked.into_iter().filter(|a| !base.contains(a)).collect();
    if added.is_empty() {
        bail!(
            "the lockdown component {} adds no flag to {controller}'s own Deployment",
            component.display()
        );
    }
    Ok(added)
}

/// The running controller has every lockdown flag on its command line, and two Kustomizations
/// in `flux-system` are refused by the controller itself: one using a tenant's source from
/// another namespace (`--no-cross-namespace-refs`), one naming no account
/// (`--default-service-account`: it runs as the powerless `default`, so its apply is forbidden).
pub fn check(
    sh: &Shell,
    cluster: &Cluster,
    tree: &Tree,
    pid: u32,
    flags: &[String],
) -> anyhow::Result<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("reading kustomize-controller's command line (pid {pid})"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let missing: Vec<&String> = flags.iter().filter(|f| !args.contains(f)).collect();
    if !missing.is_empty() {
        bail!("kustomize-controller (pid {pid}) runs without {missing:?}: {args:?}");
    }
    let mut lines = vec![format!(
        "kustomize-controller (pid {pid}) runs with {}",
        flags.join(" ")
    )];

    let tenant = tree
        .kustomizations
        .iter()
        .find(|k| k.namespace != FLUX_NAMESPACE)
        .context("the tree has no tenant Kustomization to borrow a source from")?;
    let infrastructure = tree
        .kustomizations
        .iter()
        .find(|k| k.namespace == FLUX_NAMESPACE && k.name == "infrastructure")
        .context("the tree has no flux-system/infrastructure Kustomization")?;
    let cross = "lockdown-cross-namespace";
    let unnamed = "lockdown-no-account";
    let probe = |name: &str, source: Value, account: Option<&str>, path: &str| {
        let mut spec = serde_json::json!({
            "interval": "1m",
            "path": path,
            "prune": false,
            "sourceRef": source,
            "targetNamespace": FLUX_NAMESPACE,
        });
        if let Some(account) = account {
            spec["serviceAccountName"] = Value::String(account.into());
        }
        serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
            "spec": spec,
        })
    };
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        // A path that exists in no artifact: were the source used, the failure would differ.
        probe(cross, serde_json::json!({
            "kind": tenant.source.0, "name": tenant.source.1, "namespace": tenant.namespace,
        }), Some(infra::render::PLATFORM_RECONCILER), "./lockdown-probe-applies-nothing"),
        // The platform's infrastructure, from the platform's source (which holds nothing of the
        // tenants'): applied as the controller it would succeed; as `default` it is forbidden.
        probe(unnamed, serde_json::json!({"kind": "GitRepository", "name": FLUX_NAMESPACE}),
            None, &format!("./{}", infrastructure.path)),
    ]});
    cluster.kubectl(sh, &["apply", "-f", "-"], Some(&list.to_string()))?;
    let default_account = format!("system:serviceaccount:{FLUX_NAMESPACE}:default");
    let mut verdict: Option<(String, String)> = None;
    let outcome = wait_until(
        "kustomize-controller to refuse both lockdown probes",
        Duration::from_secs(90),
        || {
            let states = flux::states(sh, cluster)?;
            let state = |name: &str| {
                states
                    .iter()
                    .find(|s| s.namespace == FLUX_NAMESPACE && s.name == name)
                    .map(|s| (s.ready, s.reason.clone(), s.message.clone()))
                    .unwrap_or((None, "not reconciled yet".into(), String::new()))
            };
            let (cross_ready, cross_reason, cross_message) = state(cross);
            let (unnamed_ready, unnamed_reason, unnamed_message) = state(unnamed);
            if cross_ready == Some(true) || unnamed_ready == Some(true) {
                bail!(
                    "a lockdown probe became Ready: {cross}: {cross_reason}; {unnamed}: {unnamed_reason}"
                );
            }
            // Ready stays Unknown until the controller records the generation it judged; the
            // reason and message already say why it refused.
            let cross_refused = cross_reason == "AccessDenied";
            let unnamed_refused = unnamed_message.contains(&default_account);
            if cross_refused && unnamed_refused {
                verdict = Some((cross_message, unnamed_message));
                return Ok(true);
            }
            bail!(
                "{cross}: {cross_reason}: {cross_message}; {unnamed}: {unnamed_reason}: {unnamed_message}"
            )
        },
    );
    // Remove the probes whatever happened (prune is off: deleting them deletes nothing else).
    let cleanup = cluster.kubectl(
        sh,
        &[
            "delete",
            "kustomization",
            "--namespace",
            FLUX_NAMESPACE,
            cross,
            unnamed,
            "--ignore-not-found",
            "--timeout=60s",
        ],
        None,
    );
    outcome?;
    let (cross_message, unnamed_message) = verdict.context("the wait returned no verdict")?;
    cleanup.context("deleting the lockdown probes")?;
    let short = |m: &str| m.chars().take(160).collect::<String>();
    lines.push(format!(
        "refused  {cross} (source {}/{}): {}",
        tenant.namespace,
        tenant.name,
        short(&cross_message)
    ));
    lines.push(format!(
        "refused  {unnamed} (no serviceAccountName): {}",
        short(&unnamed_message)
    ));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module laid out like Flux's: `config/manager/{kustomization,deployment}.yaml`.
    fn module(dir: &Path) -> std::path::PathBuf {
        let manager = dir.join("module").join("config").join("manager");
        std::fs::create_dir_all(&manager).expect("mkdir");
        std::fs::write(
            manager.join("kustomization.yaml"),
            "resources: [deployment.yaml]\n",
        )
        .expect("write");
        std::fs::write(
            manager.join("deployment.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kustomize-controller}\nspec:\n  selector: {matchLabels: {app: k}}\n  template:\n    metadata: {labels: {app: k}}\n    spec:\n      containers:\n      - name: manager\n        image: fluxcd/kustomize-controller\n        args: [--watch-all-namespaces, --log-level=info]\n",
        )
        .expect("write");
        dir.join("module")
    }

    fn component(dir: &Path, text: &str) -> std::path::PathBuf {
        let component = dir.join("flux-lockdown");
        std::fs::create_dir_all(&component).expect("mkdir");
        std::fs::write(component.join("kustomization.yaml"), text).expect("write");
        component
    }

    #[test]
    fn the_flags_are_what_the_trees_component_adds_to_the_controllers_own_deployment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sh = Shell::new().expect("shell");
        let text = serde_yaml_ng::to_string(&infra::render::lockdown(2)).expect("serialises");
        let flags = flags(
            &sh,
            &module(dir.path()),
            &component(dir.path(), &text),
            &dir.path().join("scratch"),
            "kustomize-controller",
        )
        .expect("builds");
        let mut expected: Vec<&str> = infra::render::LOCKDOWN.iter().map(|(f, _)| *f).collect();
        expected.push("--concurrent=4");
        assert_eq!(flags, expected);
    }

    #[test]
    fn a_component_that_adds_no_flag_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sh = Shell::new().expect("shell");
        // A component whose one patch targets another controller.
        let empty = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n- patch: |\n    - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: --no-remote-bases=true\n  target: {kind: Deployment, name: helm-controller}\n";
        let err = flags(
            &sh,
            &module(dir.path()),
            &component(dir.path(), empty),
            &dir.path().join("scratch"),
            "kustomize-controller",
        )
        .expect_err("no flag added");
        assert!(format!("{err:#}").contains("adds no flag"), "{err:#}");
    }
}
