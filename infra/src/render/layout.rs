//! Where everything lands in `flux/`: one function per directory, so a path is written once.
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
