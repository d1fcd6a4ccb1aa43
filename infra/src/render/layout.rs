//! Where everything lands in `flux/`: one function per directory, so a path is written once; and
//! where each service's manifests are published as an OCI artifact ([`artifact`]).
//!
//! Per environment `<env>`:
//! - `flux/clusters/<env>/`: the entry point a cluster is bootstrapped with;
//! - `flux/infrastructure/<env>/`: what is cluster-wide: the tenants' ClusterRole and the policy
//!   bundle (under `policies/`);
//! - `flux/namespaces/<env>/<team>/`: the team's Namespaces and each namespace's platform settings
//!   (under `<service>/`), applied before anything of the team's tenants;
//! - `flux/tenants/<env>/<team>/<service>/`: each service's Flux tenant, developer RBAC and sync;
//! - `flux/apps/<service>/<env>/`: each service's workload.
//!
//! The cluster and infrastructure directories, each team's namespaces and tenants directories and
//! every app directory are *roots*: directories Flux points at, each given a derived
//! `kustomization.yaml` by the [`crate::Tree`]. Nothing that grows with the number of services
//! shares one root beyond a team's: kustomize's build time grows with the square of a
//! directory's objects (4,000 objects take ~25 s here), so one directory of every tenant would
//! take minutes at 1,000 services, in `verify` and in Flux's kustomize-controller alike.

use crate::spec::Spec;

/// One service's manifests in one environment as an OCI artifact ([`crate::artifact`]): the
/// files of [`app_dir`] at the artifact's root, pushed by `cargo xtask publish` to `repository`
/// and pulled by the tenant's OCIRepository by the digest the tree pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub service: String,
    pub env: String,
    /// The tree directory the artifact holds, e.g. `flux/apps/antaeus/production`.
    pub dir: String,
    /// `<[platform.artifacts] repository>/<service>`, without scheme or tag.
    pub repository: String,
}

impl Artifact {
    /// The OCIRepository's `spec.url`.
    pub fn url(&self) -> String {
        format!("oci://{}", self.repository)
    }
}

/// The tag an artifact is pushed under: its digest (`sha256-<hex>`, cosign's spelling), so the
/// registry keeps every pinned version and no tag ever moves. Flux pulls by digest, not by tag.
pub fn artifact_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Where `service`'s manifests for `env` are published.
pub fn artifact(spec: &Spec, service: &str, env: &str) -> Artifact {
    Artifact {
        service: service.to_owned(),
        env: env.to_owned(),
        dir: app_dir(service, env),
        repository: format!("{}/{service}", spec.platform.artifact_repository()),
    }
}

/// Every artifact of `spec`: each service in each environment, by environment then service.
pub fn artifacts(spec: &Spec) -> Vec<Artifact> {
    spec.environments
        .iter()
        .flat_map(|env| {
            spec.services
                .iter()
                .map(|service| artifact(spec, &service.name, &env.name))
        })
        .collect()
}

/// The directory Flux applies a service's workload from.
pub fn app_dir(service: &str, env: &str) -> String {
    format!("flux/apps/{service}/{env}")
}

/// The entry point a cluster of `env` is bootstrapped with.
pub fn cluster_dir(env: &str) -> String {
    format!("flux/clusters/{env}")
}

/// The kustomize component holding Flux's multi-tenancy lockdown flags for the clusters of `env`:
/// the Flux install's own `flux-system/kustomization.yaml` lists it under `components:`.
pub fn lockdown_dir(env: &str) -> String {
    format!("{}/flux-lockdown", cluster_dir(env))
}

/// The infrastructure layer of `env` (the tenants' ClusterRole; the policy bundle goes under it).
pub fn infrastructure_dir(env: &str) -> String {
    format!("flux/infrastructure/{env}")
}

/// The Namespaces of `team`'s services in `env` and their platform settings.
pub fn namespaces_dir(env: &str, team: &str) -> String {
    format!("flux/namespaces/{env}/{team}")
}

/// The tenants of `team`'s services in `env`.
pub fn tenants_dir(env: &str, team: &str) -> String {
    format!("flux/tenants/{env}/{team}")
}

/// One service's tenant files in `env` (inside its team's [`tenants_dir`], not a root).
pub fn tenant_dir(service: &str, team: &str, env: &str) -> String {
    format!("{}/{service}", tenants_dir(env, team))
}

/// One service's platform settings in `env` (inside its team's [`namespaces_dir`]: applied
/// before the team's tenants, so the admission policies that read them find them).
pub fn settings_dir(service: &str, team: &str, env: &str) -> String {
    format!("{}/{service}", namespaces_dir(env, team))
}

/// The policy bundle of `env` (inside [`infrastructure_dir`]).
pub fn policies_dir(env: &str) -> String {
    format!("{}/policies", infrastructure_dir(env))
}

/// The roots every environment has, whatever its services.
pub fn environment_roots(env: &str) -> [String; 2] {
    [cluster_dir(env), infrastructure_dir(env)]
}

/// The roots each team with services has in every environment.
pub fn team_roots(env: &str, team: &str) -> [String; 2] {
    [namespaces_dir(env, team), tenants_dir(env, team)]
}
