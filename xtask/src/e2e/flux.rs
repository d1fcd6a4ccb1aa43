//! Flux on the control plane: CRDs and controller RBAC from the controllers' own module `config/`
//! folders, source-controller and kustomize-controller as processes (kustomize-controller with the
//! flags of the tree's component: the multi-tenancy lockdown and its workers), the bootstrap of one
//! environment, and Ready waits with a timeline.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use super::cluster::Cluster;
use super::components::{self, Binaries};
use super::lockdown;
use super::procs::{Processes, free_port, wait_until};
use super::tree::{self, FluxKustomization, Tree, str_at};

pub const FLUX_NAMESPACE: &str = "flux-system";
const CONTROLLERS: [&str; 2] = ["source-controller", "kustomize-controller"];

/// kustomize-controller as started: its pid and the flags the tree's component gave it.
pub struct Controller {
    pub pid: u32,
    pub lockdown: Vec<String>,
}

/// Installs the CRDs and RBAC, then starts both controllers, each as its own ServiceAccount;
/// kustomize-controller with the flags the tree's lockdown `component` adds to its Deployment,
/// then `kustomize_flags` (a benchmark's `--concurrent`; the e2e passes none).
pub fn install(
    sh: &Shell,
    root: &Path,
    bins: &Binaries,
    cluster: &Cluster,
    component: &Path,
    procs: &mut Processes,
    kustomize_flags: &[String],
) -> anyhow::Result<Controller> {
    let mut lockdown = Vec::new();
    let mut started = None;
    cluster.kubectl(sh, &["create", "namespace", FLUX_NAMESPACE], None)?;
    for controller in CONTROLLERS {
        let module = components::module_dir(sh, root, controller)?;
        if controller == "kustomize-controller" {
            let scratch = cluster.dir.join("lockdown-build");
            lockdown = lockdown::flags(sh, &module, component, &scratch, controller)
                .context("the lockdown flags from the tree")?;
        }
        let crds = module.join("config").join("crd").join("bases");
        let crds = crds.display().to_string();
        // Server-side: the CRDs are larger than client-side apply's annotation limit.
        cluster.kubectl(sh, &["apply", "--server-side", "-f", &crds], None)?;
        let rbac = tree::render(sh, &module.join("config").join("rbac"))?;
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": controller_rbac(rbac, controller),
        });
        cluster.kubectl(sh, &["apply", "-f", "-"], Some(&list.to_string()))?;
    }
    cluster.kubectl(
        sh,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
        None,
    )?;

    let storage_port = free_port()?;
    let storage = format!("127.0.0.1:{storage_port}");
    let storage_path = cluster.dir.join("source-controller-storage");
    std::fs::create_dir_all(&storage_path)
        .with_context(|| format!("creating {}", storage_path.display()))?;
    for controller in CONTROLLERS {
        let kubeconfig = cluster.identity(
            sh,
            controller,
            &format!("system:serviceaccount:{FLUX_NAMESPACE}:{controller}"),
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:flux-system",
            ],
        )?;
        let mut args = vec![
            format!("--metrics-addr=127.0.0.1:{}", free_port()?),
            format!("--health-addr=127.0.0.1:{}", free_port()?),
            "--enable-leader-election=false".to_string(),
            "--log-level=info".to_string(),
        ];
        if controller == "source-controller" {
            args.extend([
                format!("--storage-path={}", storage_path.display()),
                format!("--storage-addr={storage}"),
                format!("--storage-adv-addr={storage}"),
            ]);
        } else {
            // The multi-tenancy lockdown, as the tree has it (source-controller takes no such
            // flags: it applies nothing).
            args.extend(lockdown.iter().cloned());
            // tenants dependsOn infrastructure: re-check every 5s instead of 30s, so the
            // timeline measures Flux, not a retry interval.
            args.push("--requeue-dependency=5s".to_string());
            args.extend(kustomize_flags.iter().cloned());
        }
        let bin = bins.path(controller);
        // The controllers take no --kubeconfig flag; controller-runtime reads KUBECONFIG.
        let kubeconfig = kubeconfig.display().to_string();
        let pid = procs.spawn(
            controller,
            &bin,
            &args,
            &[
                ("RUNTIME_NAMESPACE", FLUX_NAMESPACE),
                ("KUBECONFIG", &kubeconfig),
            ],
        )?;
        if controller == "kustomize-controller" {
            started = Some(pid);
        }
    }
    Ok(Controller {
        pid: started.expect("kustomize-controller is one of CONTROLLERS"),
        lockdown,
    })
}

/// The controller's `config/rbac` objects bound to its own ServiceAccount in flux-system (the
/// upstream files bind `system/default`; Flux's install rewrites them the same way).
fn controller_rbac(objects: Vec<Value>, controller: &str) -> Vec<Value> {
    let mut out = vec![serde_json::json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": controller, "namespace": FLUX_NAMESPACE},
    })];
    for mut object in objects {
        if !tree::is_cluster_scoped(&object) {
            object["metadata"]["namespace"] = Value::String(FLUX_NAMESPACE.into());
        }
        if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
            for subject in subjects {
                if subject["kind"] == "ServiceAccount" {
                    subject["name"] = Value::String(controller.into());
                    subject["namespace"] = Value::String(FLUX_NAMESPACE.into());
                }
            }
        }
        out.push(object);
    }
    out
}

/// Applies the bootstrap objects of the environment (its GitRepository already points at the
/// loopback server: the served commit carries the rewritten URL).
pub fn bootstrap(sh: &Shell, cluster: &Cluster, tree: &Tree) -> anyhow::Result<()> {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": tree.bootstrap});
    cluster.kubectl(sh, &["apply", "-f", "-"], Some(&list.to_string()))
}

/// A Kustomization's live state.
#[derive(Debug, Clone)]
pub struct State {
    pub namespace: String,
    pub name: String,
    pub ready: Option<bool>,
    pub reason: String,
    pub message: String,
    pub applied: String,
    pub attempted: String,
}

impl State {
    /// The state of one item of a `kubectl get <Flux kind> -o json` list; `applied` is read at
    /// `revision` (a JSON pointer: a Kustomization's `/status/lastAppliedRevision`, a
    /// GitRepository's `/status/artifact/revision`). Ready only for the current generation.
    pub fn of(item: &Value, revision: &str) -> State {
        let ready = item
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
        let current =
            item.pointer("/status/observedGeneration") == item.pointer("/metadata/generation");
        State {
            namespace: str_at(item, "/metadata/namespace").into(),
            name: str_at(item, "/metadata/name").into(),
            ready: match ready.map(|c| str_at(c, "/status")) {
                Some("True") if current => Some(true),
                Some("False") if current => Some(false),
                _ => None,
            },
            reason: ready
                .map(|c| str_at(c, "/reason").to_string())
                .unwrap_or_default(),
            message: ready
                .map(|c| str_at(c, "/message").to_string())
                .unwrap_or_default(),
            applied: str_at(item, revision).into(),
            attempted: str_at(item, "/status/lastAttemptedRevision").into(),
        }
    }

    /// Ready for its current generation at a revision naming `revision` (a commit, or an
    /// artifact's digest: Flux writes `<branch>@sha1:<commit>` and `<tag>@sha256:<digest>`).
    pub fn ready_at(&self, revision: &str) -> bool {
        self.ready == Some(true) && !revision.is_empty() && self.applied.contains(revision)
    }
}

/// Every Kustomization in the cluster.
pub fn states(sh: &Shell, cluster: &Cluster) -> anyhow::Result<Vec<State>> {
    let json = cluster.kubectl_read(sh, &["get", "kustomizations", "-A", "-o", "json"])?;
    let list: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .iter()
        .map(|k| State::of(k, "/status/lastAppliedRevision"))
        .collect())
}

/// Waits until every Kustomization of the tree is Ready at its `revision` (the commit for a git
/// source, the artifact's digest for an OCI one); returns seconds from `since` to each one's
/// Ready, in the order they became Ready.
pub fn wait_all_ready(
    sh: &Shell,
    cluster: &Cluster,
    tree: &Tree,
    procs: &mut Processes,
    revision: impl Fn(&FluxKustomization) -> String,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut timeline: Vec<(String, Duration)> = Vec::new();
    let expected: Vec<(String, String)> = tree
        .kustomizations
        .iter()
        .map(|k| (format!("{}/{}", k.namespace, k.name), revision(k)))
        .collect();
    let result = wait_until(
        "every Kustomization of the tree to be Ready",
        timeout,
        || {
            procs.check_alive()?;
            let states = states(sh, cluster)?;
            for state in &states {
                let id = format!("{}/{}", state.namespace, state.name);
                let ready = expected
                    .iter()
                    .any(|(k, revision)| *k == id && state.ready_at(revision));
                if ready && !timeline.iter().any(|(k, _)| *k == id) {
                    timeline.push((id, since.elapsed()));
                }
            }
            let missing: Vec<&String> = expected
                .iter()
                .map(|(id, _)| id)
                .filter(|id| !timeline.iter().any(|(k, _)| k == *id))
                .collect();
            if missing.is_empty() {
                return Ok(true);
            }
            let waiting: Vec<String> = missing
                .iter()
                .map(|id| {
                    let state = states
                        .iter()
                        .find(|s| format!("{}/{}", s.namespace, s.name) == **id);
                    match state {
                        Some(s) => format!("{id} ({}: {})", s.reason, s.message),
                        None => format!("{id} (not created yet)"),
                    }
                })
                .collect();
            bail!("still waiting for {}", waiting.join("; "))
        },
    );
    result.map(|_| timeline)
}

/// Asks Flux to look now (what `flux reconcile` does): the annotation, not a manifest apply.
pub fn request_reconcile(
    sh: &Shell,
    cluster: &Cluster,
    kind: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let stamp = format!(
        "reconcile.fluxcd.io/requestedAt={}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos()
    );
    cluster.kubectl(
        sh,
        &[
            "annotate",
            "--overwrite",
            "-n",
            namespace,
            kind,
            name,
            &stamp,
        ],
        None,
    )
}

/// Kustomization conditions and the controllers' last log lines, for a failed run.
pub fn diagnostics(sh: &Shell, cluster: &Cluster, procs: &Processes) -> String {
    report(sh, cluster, procs, None)
}

/// [`diagnostics`] for a tree of thousands of Kustomizations: only those not Ready, at most
/// `limit` of them, then how many more.
pub fn diagnostics_not_ready(
    sh: &Shell,
    cluster: &Cluster,
    procs: &Processes,
    limit: usize,
) -> String {
    report(sh, cluster, procs, Some(limit))
}

fn report(sh: &Shell, cluster: &Cluster, procs: &Processes, not_ready: Option<usize>) -> String {
    let mut out = String::from("Kustomization conditions:\n");
    match states(sh, cluster) {
        Ok(states) => {
            let total = states.len();
            let shown: Vec<State> = match not_ready {
                None => states,
                Some(_) => states
                    .into_iter()
                    .filter(|s| s.ready != Some(true))
                    .collect(),
            };
            let limit = not_ready.unwrap_or(usize::MAX);
            if not_ready.is_some() {
                out.push_str(&format!("  {} of {total} not Ready\n", shown.len()));
            }
            for s in shown.iter().take(limit) {
                out.push_str(&format!(
                    "  {}/{}: ready={:?} reason={} applied={} attempted={}\n    {}\n",
                    s.namespace, s.name, s.ready, s.reason, s.applied, s.attempted, s.message
                ));
            }
            if shown.len() > limit {
                out.push_str(&format!("  … and {} more\n", shown.len() - limit));
            }
        }
        Err(err) => out.push_str(&format!("  (cannot list them: {err:#})\n")),
    }
    for name in procs.names() {
        if CONTROLLERS.contains(&name.as_str()) || name == "kube-apiserver" {
            out.push_str(&format!(
                "last lines of {name}:\n{}\n",
                super::procs::tail(&procs.log_path(&name), 15)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_rbac_is_bound_to_the_controllers_own_service_account() {
        let objects = vec![
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kustomize-cluster-reconciler"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "system"}],
            }),
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "kustomize-leader-election-role"},
            }),
        ];
        let out = controller_rbac(objects, "kustomize-controller");
        assert_eq!(out[0]["kind"], "ServiceAccount");
        assert_eq!(out[1]["subjects"][0]["name"], "kustomize-controller");
        assert_eq!(out[1]["subjects"][0]["namespace"], "flux-system");
        assert!(out[1]["metadata"].get("namespace").is_none());
        assert_eq!(out[2]["metadata"]["namespace"], "flux-system");
    }
}
