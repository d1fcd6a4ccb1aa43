//! What the run expects, discovered from the `flux/` tree of the checkout rather than hard-coded:
//! the bootstrap entry point of an environment, every Flux Kustomization reachable from it, and the
//! objects each one applies (rendered with `kubectl kustomize`, as Flux would). A Kustomization
//! reading an OCIRepository resolves its path in the tree directory the artifact holds (the
//! source's `billing-platform/artifact-directory` annotation), which the run publishes.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
pub use infra::flux::artifact_directory;
use serde_json::Value;
use xshell::{Shell, cmd};

/// One Flux Kustomization of the tree and what it applies.
#[derive(Debug, Clone)]
pub struct FluxKustomization {
    pub name: String,
    pub namespace: String,
    /// The tree directory it applies, relative to the repository and without a leading `./`
    /// (for an OCI source: inside the directory its artifact holds).
    pub path: String,
    /// Its source: `(kind, name)` in its own namespace.
    pub source: (String, String),
    pub service_account: Option<String>,
    pub objects: Vec<Value>,
}

/// The environment's tree: the bootstrap objects and every Kustomization reachable from them.
#[derive(Debug)]
pub struct Tree {
    pub bootstrap: Vec<Value>,
    pub kustomizations: Vec<FluxKustomization>,
}

impl Tree {
    /// Renders `flux/clusters/<env>` and follows every Kustomization's `spec.path`.
    pub fn discover(sh: &Shell, root: &Path, env: &str) -> anyhow::Result<Self> {
        let entry = root.join("flux").join("clusters").join(env);
        if !entry.join("kustomization.yaml").is_file() {
            bail!(
                "{} has no kustomization.yaml: the tree has no entry point for environment {env}; run `cargo xtask gen` (or pick another with --env)",
                entry.display()
            );
        }
        let bootstrap = render(sh, &entry)?;
        let mut kustomizations: Vec<FluxKustomization> = Vec::new();
        let mut queue: Vec<Value> = bootstrap
            .iter()
            .filter(|o| is_flux_kustomization(o))
            .cloned()
            .collect();
        let mut seen = BTreeSet::new();
        // Every OCIRepository seen so far: each is applied next to the Kustomization reading it.
        let mut oci: Vec<Value> = bootstrap
            .iter()
            .filter(|o| str_at(o, "/kind") == "OCIRepository")
            .cloned()
            .collect();
        while let Some(object) = queue.pop() {
            let name = str_at(&object, "/metadata/name").to_string();
            let namespace = str_at(&object, "/metadata/namespace").to_string();
            if !seen.insert((namespace.clone(), name.clone())) {
                continue;
            }
            let source = (
                str_at(&object, "/spec/sourceRef/kind").to_string(),
                str_at(&object, "/spec/sourceRef/name").to_string(),
            );
            let relative = str_at(&object, "/spec/path")
                .trim_start_matches("./")
                .trim_end_matches('/');
            let path = if source.0 == "OCIRepository" {
                let repository = oci
                    .iter()
                    .find(|o| {
                        str_at(o, "/metadata/namespace") == namespace
                            && str_at(o, "/metadata/name") == source.1
                    })
                    .with_context(|| {
                        format!(
                            "Kustomization {namespace}/{name} reads OCIRepository {namespace}/{}, which the tree does not apply before it",
                            source.1
                        )
                    })?;
                let dir = artifact_directory(repository).with_context(|| {
                    format!(
                        "OCIRepository {namespace}/{} does not name its tree directory",
                        source.1
                    )
                })?;
                if relative.is_empty() {
                    dir.to_string()
                } else {
                    format!("{dir}/{relative}")
                }
            } else {
                relative.to_string()
            };
            let dir = root.join(&path);
            let mut objects = render(sh, &dir).with_context(|| {
                format!("Kustomization {namespace}/{name} points at {path}, which does not build")
            })?;
            let target_namespace = object
                .pointer("/spec/targetNamespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(target) = &target_namespace {
                // Flux sets the target namespace on every namespaced object it applies.
                for o in &mut objects {
                    if !is_cluster_scoped(o) {
                        o["metadata"]["namespace"] = Value::String(target.clone());
                    }
                }
            }
            queue.extend(objects.iter().filter(|o| is_flux_kustomization(o)).cloned());
            oci.extend(
                objects
                    .iter()
                    .filter(|o| str_at(o, "/kind") == "OCIRepository")
                    .cloned(),
            );
            kustomizations.push(FluxKustomization {
                name,
                namespace,
                path,
                source,
                service_account: object
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                objects,
            });
        }
        kustomizations.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(Tree {
            bootstrap,
            kustomizations,
        })
    }

    /// Every object of the tree (bootstrap included), each once.
    pub fn objects(&self) -> Vec<&Value> {
        let mut seen = BTreeSet::new();
        self.bootstrap
            .iter()
            .chain(self.kustomizations.iter().flat_map(|k| k.objects.iter()))
            .filter(|o| seen.insert(key(o)))
            .collect()
    }

    /// Objects of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects()
            .into_iter()
            .filter(|o| str_at(o, "/kind") == kind)
            .collect()
    }

    /// The Kustomization that applies the object `kind namespace/name`.
    pub fn applied_by(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&FluxKustomization> {
        self.kustomizations.iter().find(|k| {
            k.objects.iter().any(|o| {
                str_at(o, "/kind") == kind
                    && str_at(o, "/metadata/namespace") == namespace
                    && str_at(o, "/metadata/name") == name
            })
        })
    }

    /// Distinct URLs of the tree's GitRepositories (rewritten to the loopback server).
    pub fn git_urls(&self) -> Vec<String> {
        let urls: BTreeSet<String> = self
            .of_kind("GitRepository")
            .into_iter()
            .filter_map(|o| o.pointer("/spec/url").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        urls.into_iter().collect()
    }

    /// The branch the GitRepositories follow (`main` when they do not say).
    pub fn git_branch(&self) -> String {
        self.of_kind("GitRepository")
            .into_iter()
            .find_map(|o| o.pointer("/spec/ref/branch").and_then(Value::as_str))
            .unwrap_or("main")
            .to_string()
    }
}

/// `kubectl kustomize DIR`, one JSON value per document.
pub fn render(sh: &Shell, dir: &Path) -> anyhow::Result<Vec<Value>> {
    let yaml = cmd!(sh, "kubectl kustomize {dir}")
        .quiet()
        .read()
        .with_context(|| format!("`kubectl kustomize {}` failed", dir.display()))?;
    parse_documents(&yaml).with_context(|| format!("rendering {}", dir.display()))
}

/// Multi-document YAML into JSON values, empty documents skipped.
pub fn parse_documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The string at a JSON pointer, or "" (absent fields read as empty: cluster-scoped namespaces).
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `kind namespace/name`, for messages and de-duplication.
pub fn key(object: &Value) -> String {
    format!(
        "{} {}/{}",
        str_at(object, "/kind"),
        str_at(object, "/metadata/namespace"),
        str_at(object, "/metadata/name")
    )
}

fn is_flux_kustomization(object: &Value) -> bool {
    str_at(object, "/kind") == "Kustomization"
        && str_at(object, "/apiVersion").starts_with("kustomize.toolkit.fluxcd.io/")
}

/// Kinds the tree may hold that have no namespace.
pub fn is_cluster_scoped(object: &Value) -> bool {
    matches!(
        str_at(object, "/kind"),
        "Namespace"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "ValidatingWebhookConfiguration"
            | "MutatingWebhookConfiguration"
            | "PriorityClass"
            | "StorageClass"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn discovery_follows_kustomization_paths_and_applies_target_namespaces() {
        crate::testing::require_kubectl();
        let sh = Shell::new().unwrap();
        let root = std::env::temp_dir().join(format!("e2e-tree-test-{}", std::process::id()));
        write(
            &root,
            "flux/clusters/staging/kustomization.yaml",
            "resources: [sync.yaml]\n",
        );
        write(
            &root,
            "flux/clusters/staging/sync.yaml",
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: flux-system, namespace: flux-system}\nspec: {url: https://example.invalid/repo, ref: {branch: trunk}}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps, namespace: flux-system}\nspec: {path: ./flux/apps, serviceAccountName: kustomize-controller, sourceRef: {kind: GitRepository, name: flux-system}}\n",
        );
        write(
            &root,
            "flux/apps/kustomization.yaml",
            "resources: [svc.yaml]\n",
        );
        write(
            &root,
            "flux/apps/svc.yaml",
            // The service reads its OCI artifact, which holds flux/svc at its root.
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata: {name: svc, namespace: svc, annotations: {billing-platform/artifact-directory: flux/svc}}\nspec: {url: oci://127.0.0.1:1/m/svc, ref: {digest: \"sha256:1\"}}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: svc, namespace: svc}\nspec: {path: ./, targetNamespace: svc, sourceRef: {kind: OCIRepository, name: svc}}\n",
        );
        write(
            &root,
            "flux/svc/kustomization.yaml",
            "resources: [cm.yaml]\n",
        );
        write(
            &root,
            "flux/svc/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        );
        let tree = Tree::discover(&sh, &root, "staging").unwrap();
        let names: Vec<&str> = tree
            .kustomizations
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["apps", "svc"]);
        let applier = tree.applied_by("ConfigMap", "svc", "cm").unwrap();
        assert_eq!(applier.path, "flux/svc");
        assert_eq!(applier.source, ("OCIRepository".into(), "svc".into()));
        assert_eq!(
            tree.kustomizations[0].source,
            ("GitRepository".into(), "flux-system".into())
        );
        assert_eq!(tree.git_urls(), ["https://example.invalid/repo"]);
        assert_eq!(tree.git_branch(), "trunk");
        assert_eq!(
            tree.kustomizations[0].service_account.as_deref(),
            Some("kustomize-controller")
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_missing_environment_names_the_folder_and_the_fix() {
        let sh = Shell::new().unwrap();
        let err = Tree::discover(&sh, Path::new("/nonexistent"), "qa").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/flux/clusters/qa"), "{text}");
        assert!(text.contains("cargo xtask gen"), "{text}");
    }
}
