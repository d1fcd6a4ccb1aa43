//! Where everything lands in `flux/`: one function per directory, so a path is written once.
//!
//! Per environment `<env>`:
//! - `flux/clusters/<env>/`: the entry point a cluster is bootstrapped with;
//! - `flux/infrastructure/<env>/`: Namespaces, the tenants' ClusterRole, each namespace's platform
//!   settings (under `settings/`) and the policy bundle (under `policies/`);
//! - `flux/tenants/<env>/<service>/`: each service's Flux tenant, developer RBAC and sync;
//! - `flux/apps/<service>/<env>/`: each service's workload.
//!
//! The first three and every app directory are *roots*: directories Flux points at, each given a
//! derived `kustomization.yaml` by the [`crate::Tree`].

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

/// The infrastructure layer of `env` (Namespaces; the policy bundle goes under it).
pub fn infrastructure_dir(env: &str) -> String {
    format!("flux/infrastructure/{env}")
}

/// The tenants layer of `env`.
pub fn tenants_dir(env: &str) -> String {
    format!("flux/tenants/{env}")
}

/// One service's tenant files in `env` (inside [`tenants_dir`], not a root of its own).
pub fn tenant_dir(service: &str, env: &str) -> String {
    format!("{}/{service}", tenants_dir(env))
}

/// One service's platform settings in `env` (inside [`infrastructure_dir`]: applied before
/// the tenants layer, so the admission policies that read them find them).
pub fn settings_dir(service: &str, env: &str) -> String {
    format!("{}/settings/{service}", infrastructure_dir(env))
}

/// The policy bundle of `env` (inside [`infrastructure_dir`]).
pub fn policies_dir(env: &str) -> String {
    format!("{}/policies", infrastructure_dir(env))
}

/// The roots every environment has, whatever its services.
pub fn environment_roots(env: &str) -> [String; 3] {
    [cluster_dir(env), infrastructure_dir(env), tenants_dir(env)]
}
