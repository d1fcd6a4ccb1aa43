//! Flux and kustomize types: only the fields the tree uses, serialised in the API's own field names.
//!
//! `GitRepository` is `source.toolkit.fluxcd.io/v1`, `Kustomization` is
//! `kustomize.toolkit.fluxcd.io/v1` (Flux 2.x GA APIs); `KustomizeConfig` is the
//! `kustomization.yaml` file `kubectl kustomize` reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A Flux git source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRepository {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: GitRepositorySpec,
}

impl GitRepository {
    pub fn new(metadata: ObjectMeta, spec: GitRepositorySpec) -> GitRepository {
        GitRepository {
            api_version: "source.toolkit.fluxcd.io/v1".to_owned(),
            kind: "GitRepository".to_owned(),
            metadata,
            spec,
        }
    }
}

/// `GitRepository.spec`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    pub interval: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: GitRef,
    /// `.sourceignore`-style patterns: what the artifact leaves out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The git reference to follow.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// A Flux Kustomization: apply a path of a source, as a service account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: KustomizationSpec,
}

impl Kustomization {
    pub fn new(metadata: ObjectMeta, spec: KustomizationSpec) -> Kustomization {
        Kustomization {
            api_version: "kustomize.toolkit.fluxcd.io/v1".to_owned(),
            kind: "Kustomization".to_owned(),
            metadata,
            spec,
        }
    }
}

/// `Kustomization.spec`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec {
    pub interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
    pub timeout: String,
    /// Path inside the source artifact, e.g. `./flux/apps/antaeus/production`.
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

/// Reference to a source in the Kustomization's own namespace (cross-namespace refs are locked down).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub kind: String,
    pub name: String,
}

/// A Kustomization that must be ready first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
