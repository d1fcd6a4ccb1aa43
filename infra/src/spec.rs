//! The platform spec: typed structs for `platform.toml` and `services/<name>.toml`, and how they load.
//!
//! The platform team owns `platform.toml` (platform, teams, environments); each service's team owns
//! `services/<name>.toml`, so CODEOWNERS can hand each team its own part of the spec. Parsing rejects
//! unknown fields; [`crate::validate`] then collects every semantic problem with its file, line and
//! field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::validate::{Problem, Problems};

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

/// An environment variable: a literal, or the in-cluster URL of another service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<ServiceUrl>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// Rules whose exemption changes what is rendered (the rest only inform the policy engine).
pub mod rules {
    /// The pod may run as root: `runAsNonRoot` is not set.
    pub const RUN_AS_NON_ROOT: &str = "run-as-non-root";
    /// The root filesystem stays writable.
    pub const READ_ONLY_ROOT_FILESYSTEM: &str = "read-only-root-filesystem";
}

/// A policy exemption for one object, as the policy engine consumes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exemption {
    pub rule: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    /// Scanner (checkov) checks the same exemption covers.
    pub scanner_checks: Vec<String>,
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

/// The spec as shipped in this repository, embedded at build time (see `build.rs`).
const EMBEDDED_PLATFORM: &str = include_str!("../platform.toml");
include!(concat!(env!("OUT_DIR"), "/embedded_services.rs"));

impl Spec {
    /// The default platform: `infra/platform.toml` and `infra/services/*.toml` as built in.
    pub fn embedded() -> Result<Spec, Error> {
        let platform = SourceFile {
            path: "infra/platform.toml".to_owned(),
            text: EMBEDDED_PLATFORM.to_owned(),
        };
        let services: Vec<SourceFile> = EMBEDDED_SERVICES
            .iter()
            .map(|(file, text)| SourceFile {
                path: format!("infra/services/{file}"),
                text: (*text).to_owned(),
            })
            .collect();
        Spec::parse(&platform, &services)
    }

    /// Loads `DIR/platform.toml` and every `DIR/services/*.toml`.
    pub fn load(dir: &Path) -> Result<Spec, Error> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let platform_path = dir.join("platform.toml");
        let platform = SourceFile {
            path: platform_path.display().to_string(),
            text: read(&platform_path)?,
        };
        let services_dir = dir.join("services");
        let entries = std::fs::read_dir(&services_dir).map_err(|source| Error::Read {
            path: services_dir.clone(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: services_dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut services = Vec::with_capacity(paths.len());
        for path in paths {
            services.push(SourceFile {
                path: path.display().to_string(),
                text: read(&path)?,
            });
        }
        Spec::parse(&platform, &services)
    }

    /// Parses and validates: every syntax and semantic problem of every file is reported at once.
    pub fn parse(platform: &SourceFile, services: &[SourceFile]) -> Result<Spec, Error> {
        let mut problems = Vec::new();
        let platform_file = match toml::from_str::<PlatformFile>(&platform.text) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                problems.push(Problem::from_toml(platform, &err));
                None
            }
        };
        let mut parsed_services = Vec::with_capacity(services.len());
        for source in services {
            match toml::from_str::<Service>(&source.text) {
                Ok(mut service) => {
                    service.name = file_stem(&source.path).to_owned();
                    parsed_services.push((source, service));
                }
                Err(err) => problems.push(Problem::from_toml(source, &err)),
            }
        }
        let Some(platform_file) = platform_file else {
            return Err(Error::Invalid(Problems(problems)));
        };
        let all_names = services
            .iter()
            .map(|s| file_stem(&s.path).to_owned())
            .collect();
        problems.extend(crate::validate::validate(
            platform,
            &platform_file,
            &parsed_services,
            &all_names,
        ));
        if !problems.is_empty() {
            return Err(Error::Invalid(Problems(problems)));
        }
        let mut services: Vec<Service> = parsed_services.into_iter().map(|(_, s)| s).collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Spec {
            platform: platform_file.platform,
            teams: platform_file.teams,
            environments: platform_file.environments,
            services,
        })
    }

    /// The team called `name` (validation guarantees every reference resolves).
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.services[i])
    }

    /// Every policy exemption, one per (rule, object): what the policy engine must skip, and why.
    pub fn exemptions(&self) -> Vec<Exemption> {
        let mut out: Vec<Exemption> = self
            .services
            .iter()
            .flat_map(|service| {
                service.policy_exemptions.iter().map(|e| Exemption {
                    rule: e.rule.clone(),
                    kind: "Deployment".to_owned(),
                    namespace: service.name.clone(),
                    name: service.name.clone(),
                    reason: e.reason.clone(),
                    scanner_checks: e.scanner_checks.clone(),
                })
            })
            .collect();
        // What the spec declares elsewhere is an exemption too, so the policy engine and the
        // cluster learn it from the platform (never from a label a tenant could set on itself).
        for service in &self.services {
            if service.expose == Expose::LoadBalancer {
                out.push(Exemption {
                    rule: "no-external-services".to_owned(),
                    kind: "Service".to_owned(),
                    namespace: service.name.clone(),
                    name: service.name.clone(),
                    reason: "the spec exposes it outside the cluster (expose = \"load-balancer\")"
                        .to_owned(),
                    scanner_checks: Vec::new(),
                });
            }
            if service.automount_service_account_token {
                out.push(Exemption {
                    rule: "no-service-account-token".to_owned(),
                    kind: "Deployment".to_owned(),
                    namespace: service.name.clone(),
                    name: service.name.clone(),
                    reason: "the spec declares it calls the Kubernetes API (automount_service_account_token = true)"
                        .to_owned(),
                    scanner_checks: Vec::new(),
                });
            }
        }
        out.sort();
        out
    }

    /// [`Spec::exemptions`] in the policy engine's terms.
    pub fn policy_exemptions(&self) -> Vec<policies::Exemption> {
        self.exemptions()
            .into_iter()
            .map(|e| policies::Exemption {
                rule: e.rule,
                kind: e.kind,
                namespace: e.namespace,
                name: e.name,
                reason: e.reason,
            })
            .collect()
    }
}

impl Service {
    /// Whether the spec exempts this service from `rule`.
    pub fn is_exempt(&self, rule: &str) -> bool {
        self.policy_exemptions.iter().any(|e| e.rule == rule)
    }

    /// The image reference in `environment`: `registry/image:tag[@digest]`.
    pub fn image_ref(&self, registry: &str, environment: &str) -> String {
        let over = self.environments.get(environment);
        let tag = over.and_then(|o| o.tag.as_deref()).unwrap_or(&self.tag);
        match over.and_then(|o| o.digest.as_deref()) {
            Some(digest) => format!("{registry}/{}:{tag}@{digest}", self.image),
            None => format!("{registry}/{}:{tag}", self.image),
        }
    }

    /// `(check, reason)` of every scanner check skipped for this service's Deployment in
    /// `environment`: the environment's skips, then the service's exemptions.
    pub fn scanner_skips<'a>(&'a self, environment: &'a Environment) -> Vec<(&'a str, &'a str)> {
        environment
            .scanner_skips
            .iter()
            .map(|s| (s.check.as_str(), s.reason.as_str()))
            .chain(self.policy_exemptions.iter().flat_map(|e| {
                e.scanner_checks
                    .iter()
                    .map(|check| (check.as_str(), e.reason.as_str()))
            }))
            .collect()
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

fn file_stem(path: &str) -> &str {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    base.strip_suffix(".toml").unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_spec_loads_both_services_and_two_environments() {
        let spec = Spec::embedded().expect("the shipped spec is valid");
        let names: Vec<_> = spec.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["antaeus", "payment-provider"]);
        let envs: Vec<_> = spec.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(envs, ["production", "staging"]);
    }

    #[test]
    fn loading_from_the_directory_matches_the_embedded_spec() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded = Spec::load(dir).expect("the shipped spec is valid");
        let embedded = Spec::embedded().expect("the shipped spec is valid");
        assert_eq!(format!("{loaded:?}"), format!("{embedded:?}"));
    }

    #[test]
    fn production_images_carry_a_digest_and_staging_images_a_tag() {
        let spec = Spec::embedded().expect("the shipped spec is valid");
        let provider = spec.service("payment-provider").expect("declared");
        let production = provider.image_ref(&spec.platform.registry, "production");
        assert!(production.contains("@sha256:"), "{production}");
        let staging = provider.image_ref(&spec.platform.registry, "staging");
        assert!(!staging.contains('@') && staging.contains(':'), "{staging}");
    }

    #[test]
    fn the_stock_antaeus_image_is_an_explicit_exemption_with_a_reason() {
        let spec = Spec::embedded().expect("the shipped spec is valid");
        let exemptions = spec.exemptions();
        assert!(exemptions.iter().any(|e| e.rule == rules::RUN_AS_NON_ROOT
            && e.kind == "Deployment"
            && e.namespace == "antaeus"
            && e.name == "antaeus"
            && !e.reason.is_empty()));
        assert!(exemptions.iter().all(|e| e.name == "antaeus"));
    }

    #[test]
    fn loading_a_missing_directory_names_the_path() {
        let err = Spec::load(Path::new("/nonexistent/spec")).expect_err("no such directory");
        assert!(
            err.to_string().contains("/nonexistent/spec/platform.toml"),
            "{err}"
        );
    }
}
