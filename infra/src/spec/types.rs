//! The spec's types: typed structs for `platform.toml` and `services/<name>.toml`, and the
//! validated [`Spec`] rendering reads.
//!
//! Parsing rejects unknown fields (`deny_unknown_fields`); what parsing cannot check is
//! [`super::validate`]'s job. These types depend on nothing else in the crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One spec file: the name it is reported under (relative to the workspace root) and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Display path, e.g. `infra/services/antaeus.toml`.
    pub path: String,
    /// The TOML text.
    pub text: String,
}

/// `platform.toml`: what the platform team owns.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformFile {
    pub platform: Platform,
    pub teams: Vec<Team>,
    pub environments: Vec<Environment>,
}

/// Platform-wide settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The `app.kubernetes.io/part-of` value of every object.
    pub name: String,
    /// The registry every image lives under, e.g. `ghcr.io/billing-platform`.
    pub registry: String,
    /// The team that owns the platform (everything not owned by a service's team).
    pub owner: String,
    /// The git repository Flux reconciles this tree from.
    pub git: Git,
    /// Where the tree's directories are published as OCI artifacts (default below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
}

impl Platform {
    /// The OCI repository the artifacts live under (`<service>` for an app directory,
    /// `teams/<team>/…` for a team's): `[platform.artifacts] repository`, or
    /// `<registry>/manifests` when the spec does not say.
    pub fn artifact_repository(&self) -> String {
        match &self.artifacts {
            Some(artifacts) => artifacts.repository.clone(),
            None => format!("{}/manifests", self.registry),
        }
    }
}

/// Where `cargo xtask publish` pushes the tree's artifacts (`<repository>/<service>`,
/// `<repository>/teams/<team>/namespaces|tenants`) and the OCIRepositories pull them from, by the
/// digest the tree pins.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// `host[:port]/path`, e.g. `ghcr.io/billing-platform/manifests`.
    pub repository: String,
}

/// Where Flux pulls the tree from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Git {
    pub url: String,
    pub branch: String,
}

/// A team: who its developers are and its review handle.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub name: String,
    /// The GitHub team that reviews the team's files, e.g. `@billing-platform/billing`.
    pub github: String,
    /// Identity-provider groups the team's developers come in as.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Individual users, for people not (yet) in a group.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A cluster the platform runs in.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    /// Images must be pinned by digest here (the release pipeline writes the digest into the spec).
    #[serde(default)]
    pub require_digest: bool,
    /// Scanner checks skipped for every Deployment here (e.g. digests in an environment that
    /// follows tags), each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanner_skips: Vec<ScannerSkip>,
}

/// `services/<name>.toml`: one service, owned by its team. The name is the file's stem.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(skip)]
    pub name: String,
    pub team: String,
    /// Repository under the platform registry, e.g. `antaeus`.
    pub image: String,
    /// Default tag; environments may override it.
    pub tag: String,
    #[serde(default = "one")]
    pub replicas: i32,
    pub ports: Vec<Port>,
    pub resources: Resources,
    pub probes: Probes,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Writable emptyDir mounts (the root filesystem is read-only unless exempted).
    #[serde(default)]
    pub scratch_dirs: Vec<String>,
    /// Numeric user to run as (images such as distroless `nonroot` use 65532).
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub expose: Expose,
    /// Services allowed to call this one, and on which port.
    #[serde(default)]
    pub callers: Vec<Caller>,
    /// Grants the team `pods/exec` in the service's namespace.
    #[serde(default)]
    pub exec: bool,
    /// The most replicas the Deployment may be scaled to, by hand in an emergency or through
    /// git; the namespace's ResourceQuota is sized from it. Default: twice the most replicas
    /// any environment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    #[serde(default)]
    pub automount_service_account_token: bool,
    #[serde(default)]
    pub policy_exemptions: Vec<ExemptionSpec>,
    /// Per-environment overrides, keyed by environment name.
    #[serde(default)]
    pub environments: BTreeMap<String, Override>,
}

fn one() -> i32 {
    1
}

/// A container port; the Service exposes it under the same number and name.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    pub port: i32,
}

/// Requests and limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub requests: Quantities,
    pub limits: Quantities,
}

/// CPU and memory quantities in Kubernetes notation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    pub cpu: String,
    pub memory: String,
}

/// The three probes; startup is optional, liveness and readiness are not.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    #[serde(default)]
    pub startup: Option<Probe>,
    pub liveness: Probe,
    pub readiness: Probe,
}

/// An HTTP GET probe.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub path: String,
    pub port: i32,
    #[serde(default)]
    pub initial_delay_seconds: i32,
    #[serde(default = "ten")]
    pub period_seconds: i32,
    #[serde(default = "one")]
    pub timeout_seconds: i32,
    #[serde(default = "three")]
    pub failure_threshold: i32,
}

fn ten() -> i32 {
    10
}

fn three() -> i32 {
    3
}

impl Probe {
    /// The longest this probe can keep failing before it gives up, in seconds.
    pub fn budget_seconds(&self) -> i64 {
        i64::from(self.initial_delay_seconds)
            + i64::from(self.period_seconds) * i64::from(self.failure_threshold)
    }
}

/// An environment variable: a literal, the in-cluster URL of another service, or a key of a
/// Secret (the only way a service's pods may reference a Secret: the platform settings allow
/// exactly the Secrets named here).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<ServiceUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKey>,
}

/// One key of a Secret in the service's namespace (created there by whoever provisions it).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// `http://<service>.<namespace>.svc.cluster.local:<port><path>`, derived from the callee's Service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUrl {
    pub service: String,
    /// Defaults to the callee's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default)]
    pub path: String,
}

/// How the service is reachable.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Expose {
    /// ClusterIP: only declared callers reach it.
    #[default]
    Cluster,
    /// A LoadBalancer Service, reachable from outside the cluster on every port.
    LoadBalancer,
}

/// A service allowed to call this one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    pub service: String,
    pub port: i32,
}

/// A policy rule this service's Deployment is exempt from, and why.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptionSpec {
    pub rule: String,
    pub reason: String,
    /// Checks of the independent scanner (checkov IDs such as `CKV_K8S_23`) that the same
    /// exemption covers: rendered as `checkov.io/skipN` annotations carrying the same reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanner_checks: Vec<String>,
}

/// A scanner check skipped for every workload of an environment, and why.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSkip {
    pub check: String,
    pub reason: String,
}

/// Per-environment overrides of a service.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Where `digest` comes from; required with a digest, so no digest is a stand-in nobody owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_source: Option<DigestSource>,
    /// Who builds an `external` image and pins its digest (required for `external` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// Where a pinned digest comes from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DigestSource {
    /// The image this repository builds (`cargo xtask image`): `cargo xtask verify` rebuilds it
    /// and fails unless the digest is the built image's.
    Build,
    /// An image built elsewhere; `digest_reason` says by whom and how the digest is pinned.
    External,
}

/// The whole validated platform: what rendering reads.
#[derive(Clone, Debug)]
pub struct Spec {
    pub platform: Platform,
    pub teams: Vec<Team>,
    pub environments: Vec<Environment>,
    /// Sorted by name.
    pub services: Vec<Service>,
}

impl Service {
    /// The most replicas the Deployment may run ([`Service::max_replicas`] or its default).
    pub fn replicas_ceiling(&self) -> i32 {
        self.max_replicas.unwrap_or_else(|| {
            let most = self
                .environments
                .values()
                .filter_map(|o| o.replicas)
                .chain([self.replicas])
                .max()
                .unwrap_or(1);
            most.saturating_mul(2)
        })
    }

    /// The Secrets the spec lets the service's pods reference, sorted, each once.
    pub fn declared_secrets(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .env
            .iter()
            .filter_map(|v| v.secret.as_ref().map(|s| s.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl Spec {
    /// The team called `name` (validation guarantees every reference resolves).
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// Each declared team that has services, in declaration order, with its services in the
    /// spec's order: what the tree renders per team. A service naming no declared team (which
    /// validation refuses) is in no group.
    pub fn services_by_team(&self) -> Vec<(&Team, Vec<&Service>)> {
        let mut by_team: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
        for service in &self.services {
            by_team.entry(&service.team).or_default().push(service);
        }
        self.teams
            .iter()
            .filter_map(|team| Some((team, by_team.remove(team.name.as_str())?)))
            .collect()
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.services[i])
    }
}

impl Service {
    /// The image reference in `environment`: `registry/image:tag[@digest]`.
    pub fn image_ref(&self, registry: &str, environment: &str) -> String {
        let over = self.environments.get(environment);
        let tag = over.and_then(|o| o.tag.as_deref()).unwrap_or(&self.tag);
        match over.and_then(|o| o.digest.as_deref()) {
            Some(digest) => format!("{registry}/{}:{tag}@{digest}", self.image),
            None => format!("{registry}/{}:{tag}", self.image),
        }
    }

    /// `(environment, digest)` of every digest this repository builds (`digest_source = "build"`).
    pub fn built_digests(&self) -> impl Iterator<Item = (&str, &str)> {
        self.environments.iter().filter_map(|(env, over)| {
            match (over.digest_source, over.digest.as_deref()) {
                (Some(DigestSource::Build), Some(digest)) => Some((env.as_str(), digest)),
                _ => None,
            }
        })
    }

    /// Replicas in `environment`.
    pub fn replicas_in(&self, environment: &str) -> i32 {
        self.environments
            .get(environment)
            .and_then(|o| o.replicas)
            .unwrap_or(self.replicas)
    }

    /// Whether `port` is one of the declared container ports.
    pub fn declares_port(&self, port: i32) -> bool {
        self.ports.iter().any(|p| p.port == port)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn production_images_carry_a_digest_and_staging_images_a_tag() {
        let spec = crate::testing::spec();
        let provider = spec.service("payment-provider").expect("declared");
        let production = provider.image_ref(&spec.platform.registry, "production");
        assert!(production.contains("@sha256:"), "{production}");
        let staging = provider.image_ref(&spec.platform.registry, "staging");
        assert!(!staging.contains('@') && staging.contains(':'), "{staging}");
    }
}
