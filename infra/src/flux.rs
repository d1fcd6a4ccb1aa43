//! Flux and kustomize types: only the fields the tree uses, serialised in the API's own field names.
//!
//! `GitRepository` and `OCIRepository` (`source.toolkit.fluxcd.io/v1`) and `Kustomization`
//! (`kustomize.toolkit.fluxcd.io/v1`) are `kube::CustomResource` types, as the kube ecosystem
//! declares CRDs: group, version and kind come from the derive, and a test walks every field the
//! tree emits through the real CRD schemas of the pinned Flux release (vendored in `infra/crds/`
//! by `cargo xtask crds`). `KustomizeConfig` is the `kustomization.yaml` file `kubectl kustomize`
//! reads (a config file, not an API object). Field order is the order the YAML shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GitRepository.spec`: a Flux git source.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    pub interval: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: GitRef,
    /// `.sourceignore`-style patterns: what the artifact leaves out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// The directories the clone checks out (source-controller ≥ 1.6): nothing else is written
    /// to disk or reaches the artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl GitRepository {
    /// A GitRepository with `metadata` (the derive's own `new` takes a name only).
    pub fn with_metadata(metadata: ObjectMeta, spec: GitRepositorySpec) -> GitRepository {
        GitRepository { metadata, spec }
    }
}

/// The git reference to follow.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// `OCIRepository.spec`: a Flux source that pulls one layer of an OCI artifact.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "OCIRepository",
    plural = "ocirepositories",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct OCIRepositorySpec {
    pub interval: String,
    /// `oci://<registry>/<repository>`, without a tag.
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: OciRef,
    pub layer_selector: LayerSelector,
}

impl OCIRepository {
    /// An OCIRepository with `metadata` (the derive's own `new` takes a name only).
    pub fn with_metadata(metadata: ObjectMeta, spec: OCIRepositorySpec) -> OCIRepository {
        OCIRepository { metadata, spec }
    }
}

/// The artifact version to pull: a digest, so git decides what runs (source-controller asks the
/// registry nothing until the tree pins another one).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciRef {
    pub digest: String,
}

/// Which layer of the artifact holds the files, and what to do with it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayerSelector {
    pub media_type: String,
    /// `extract`: unpack the tar.gz layer into the artifact Flux serves.
    pub operation: String,
}

/// The tree directory an OCIRepository's artifact holds (its `billing-platform/artifact-directory`
/// annotation), without `./` or a trailing `/`.
pub fn artifact_directory(repository: &serde_json::Value) -> Option<&str> {
    repository["metadata"]["annotations"][crate::meta::ARTIFACT_DIRECTORY]
        .as_str()
        .map(|d| d.trim_start_matches("./").trim_end_matches('/'))
}

/// The media types of a Flux artifact, as `flux push artifact` writes them: source-controller
/// extracts the content layer; the config is an empty JSON object.
pub mod media_types {
    pub const CONFIG: &str = "application/vnd.cncf.flux.config.v1+json";
    pub const CONTENT: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
}

/// `Kustomization.spec`: apply a path of a source, as a service account.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "kustomize.toolkit.fluxcd.io",
    version = "v1",
    kind = "Kustomization",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec {
    pub interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
    pub timeout: String,
    /// Path inside the source artifact, e.g. `./flux/tenants/production/payments` (a git source
    /// holds the tree's paths) or `./` (an OCI artifact holds one directory at its root).
    pub path: String,
    pub prune: bool,
    pub wait: bool,
    pub source_ref: SourceRef,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependsOn>,
    /// The account the controller impersonates; always set, so `--default-service-account` never applies.
    pub service_account_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
}

impl Kustomization {
    /// A Kustomization with `metadata` (the derive's own `new` takes a name only).
    pub fn with_metadata(metadata: ObjectMeta, spec: KustomizationSpec) -> Kustomization {
        Kustomization { metadata, spec }
    }
}

/// Reference to a source in the Kustomization's own namespace (cross-namespace refs are locked down).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub kind: String,
    pub name: String,
}

/// A Kustomization that must be ready first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependsOn {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The `kustomization.yaml` of a directory Flux points at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeConfig {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<String>,
}

impl KustomizeConfig {
    /// A kustomization listing `resources` (files or directories, relative to it).
    pub fn new(resources: Vec<String>) -> KustomizeConfig {
        KustomizeConfig {
            api_version: "kustomize.config.k8s.io/v1beta1".to_owned(),
            kind: "Kustomization".to_owned(),
            resources,
        }
    }
}

/// A kustomize `Component` (`kustomization.yaml` of `kind: Component`): patches that any
/// kustomization listing it under `components:` applies to its own resources.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeComponent {
    pub api_version: String,
    pub kind: String,
    pub patches: Vec<KustomizePatch>,
}

/// One patch of a kustomization: a JSON 6902 (or strategic merge) `patch` and the objects it targets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KustomizePatch {
    pub patch: String,
    pub target: PatchTarget,
}

/// Which objects a patch applies to; `name` is a regular expression, as kustomize reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PatchTarget {
    pub kind: String,
    pub name: String,
}

impl KustomizeComponent {
    /// A component of `patches`.
    pub fn new(patches: Vec<KustomizePatch>) -> KustomizeComponent {
        KustomizeComponent {
            api_version: "kustomize.config.k8s.io/v1alpha1".to_owned(),
            kind: "Component".to_owned(),
            patches,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::testing;

    /// `(kind, the v1 openAPIV3Schema of its CRD)`, as `cargo xtask crds` vendors them.
    fn schemas() -> [(&'static str, Value); 3] {
        let parse = |text: &str| -> Value {
            serde_yaml_ng::from_str(text).expect("a vendored schema is YAML")
        };
        [
            (
                "GitRepository",
                parse(include_str!(
                    "../crds/source.toolkit.fluxcd.io_gitrepositories.yaml"
                )),
            ),
            (
                "OCIRepository",
                parse(include_str!(
                    "../crds/source.toolkit.fluxcd.io_ocirepositories.yaml"
                )),
            ),
            (
                "Kustomization",
                parse(include_str!(
                    "../crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml"
                )),
            ),
        ]
    }

    /// Every field path of `value` that `schema` does not declare, or declares with another type.
    /// `metadata` is the API server's ObjectMeta, which CRD schemas leave open.
    fn undeclared(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
        let kind = schema["type"].as_str().unwrap_or("");
        let fits = match value {
            Value::Object(_) => kind == "object",
            Value::Array(_) => kind == "array",
            Value::String(_) => kind == "string" || schema["x-kubernetes-int-or-string"] == true,
            Value::Bool(_) => kind == "boolean",
            Value::Number(n) => kind == "number" || (kind == "integer" && n.is_i64()),
            Value::Null => false,
        };
        if !fits {
            out.push(format!(
                "{path}: {value} is not of the schema's type `{kind}`"
            ));
            return;
        }
        match value {
            Value::Object(fields) if path != ".metadata" => {
                for (key, field) in fields {
                    let at = format!("{path}.{key}");
                    match schema["properties"].get(key) {
                        Some(declared) => undeclared(field, declared, &at, out),
                        None => out.push(format!("{at}: not in the schema")),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    undeclared(item, &schema["items"], &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_flux_field_the_tree_emits_is_in_the_real_crd_schema() {
        let mut checked = 0;
        for (kind, schema) in schemas() {
            for (file, object) in testing::tree().objects() {
                if object["kind"] != kind {
                    continue;
                }
                let mut out = Vec::new();
                undeclared(object, &schema, "", &mut out);
                assert_eq!(out, Vec::<String>::new(), "{file}: {kind}");
                checked += 1;
            }
        }
        // Per environment: the bootstrap source, its Kustomization and `infrastructure`, a
        // Kustomization per bucket of teams, two sources and two Kustomizations per team with
        // services, each service's source and Kustomization.
        let spec = testing::spec();
        let teams: std::collections::BTreeSet<&str> =
            spec.services.iter().map(|s| s.team.as_str()).collect();
        let buckets: std::collections::BTreeSet<String> = teams
            .iter()
            .map(|t| crate::render::layout::team_bucket(t))
            .collect();
        let per_environment = 3 + buckets.len() + 4 * teams.len() + 2 * spec.services.len();
        assert_eq!(
            checked,
            testing::spec().environments.len() * per_environment
        );
    }

    #[test]
    fn a_misspelt_or_mistyped_field_is_reported_with_its_path() {
        let [(_, schema), _, _] = schemas();
        let object = json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "x", "anything": "goes"},
            "spec": {"url": "https://x", "interval": 1, "ref": {"brnach": "main"}},
        });
        let mut out = Vec::new();
        undeclared(&object, &schema, "", &mut out);
        assert_eq!(
            out,
            [
                ".spec.interval: 1 is not of the schema's type `string`",
                ".spec.ref.brnach: not in the schema"
            ]
        );
    }
}
