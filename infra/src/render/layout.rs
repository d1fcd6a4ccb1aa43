//! Where everything lands in `flux/`: one function per directory, so a path is written once; and
//! which directories are published as OCI artifacts ([`artifacts`]).
//!
//! Per environment `<env>`:
//! - `flux/clusters/<env>/`: the entry point a cluster is bootstrapped with;
//! - `flux/infrastructure/<env>/`: what is cluster-wide: the tenants' ClusterRole and the policy
//!   bundle (under `policies/`);
//! - `flux/teams/<env>/<bucket>/<team>.yaml`: each team's sources and Kustomizations, the teams
//!   spread over [`TEAM_BUCKETS`] directories;
//! - `flux/namespaces/<env>/<team>/`: the team's Namespaces and each namespace's platform settings
//!   (under `<service>/`), applied before anything of the team's tenants;
//! - `flux/tenants/<env>/<team>/<service>/`: each service's Flux tenant, developer RBAC and sync;
//! - `flux/apps/<service>/<env>/`: each service's workload.
//!
//! The cluster, infrastructure and teams' directories, each team's namespaces and tenants
//! directories and every app directory are *roots*: directories Flux points at, each given a derived
//! `kustomization.yaml` by the [`crate::Tree`]. Nothing that grows with the number of services
//! shares one root beyond a team's or a bucket of teams': kustomize's build time grows with the square of a
//! directory's objects (4,000 objects take ~25 s here), so one directory of every tenant would
//! take minutes at 1,000 services, in `verify` and in Flux's kustomize-controller alike.

use crate::spec::{Service, Spec};

/// A generated directory as an OCI artifact ([`crate::artifact`]): its files at the artifact's
/// root, pushed by `cargo xtask publish` to `repository` and pulled by an OCIRepository by the
/// digest the tree pins in `pinned_in`. Every directory Flux points at but the cluster's entry
/// point, its infrastructure and the teams' files (which the bootstrap GitRepository holds) is
/// one: each service's app directory (pinned in its tenant's `sync.yaml`) and each team's
/// namespaces and tenants directories (pinned in the team's file). A commit thus reaches a cluster
/// as one clone of the bootstrap source plus one pull for each directory it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub env: String,
    /// The tree directory the artifact holds, e.g. `flux/apps/antaeus/production`.
    pub dir: String,
    /// Below `[platform.artifacts] repository`, without scheme or tag: `<service>` for an app
    /// directory, `teams/<team>/namespaces` and `teams/<team>/tenants` for a team's.
    pub repository: String,
    /// The generated file whose OCIRepository pins the artifact's digest.
    pub pinned_in: String,
}

impl Artifact {
    /// The OCIRepository's `spec.url`.
    pub fn url(&self) -> String {
        format!("oci://{}", self.repository)
    }
}

/// The tag an artifact is pushed under: `flux-<hex of its digest>`, so the registry keeps every
/// pinned version (registries may collect untagged ones) and no tag ever moves. Flux pulls by
/// digest, not by tag. Not `sha256-<hex>`: OCI 1.1 gives that tag to the referrers (signatures,
/// SBOMs) of the digest on registries without the referrers API, which would overwrite it.
pub fn artifact_tag(digest: &str) -> String {
    format!("flux-{}", digest.strip_prefix("sha256:").unwrap_or(digest))
}

/// The artifact of `service`'s app directory in `env`.
pub fn artifact(spec: &Spec, service: &Service, env: &str) -> Artifact {
    Artifact {
        env: env.to_owned(),
        dir: app_dir(&service.name, env),
        repository: format!("{}/{}", spec.platform.artifact_repository(), service.name),
        pinned_in: format!(
            "{}/sync.yaml",
            tenant_dir(&service.name, &service.team, env)
        ),
    }
}

/// The artifacts of `team`'s namespaces and tenants directories in `env`, in that order.
pub fn team_artifacts(spec: &Spec, team: &str, env: &str) -> [Artifact; 2] {
    let artifact = |dir: String, kind: &str| Artifact {
        env: env.to_owned(),
        dir,
        repository: format!(
            "{}/teams/{team}/{kind}",
            spec.platform.artifact_repository()
        ),
        pinned_in: team_file(env, team),
    };
    [
        artifact(namespaces_dir(env, team), "namespaces"),
        artifact(tenants_dir(env, team), "tenants"),
    ]
}

/// Every artifact of `spec`, by environment: each team's (of the teams with services), then each
/// service's.
pub fn artifacts(spec: &Spec) -> Vec<Artifact> {
    let mut out = Vec::new();
    for env in &spec.environments {
        for (team, _) in spec.services_by_team() {
            out.extend(team_artifacts(spec, &team.name, &env.name));
        }
        out.extend(
            spec.services
                .iter()
                .map(|service| artifact(spec, service, &env.name)),
        );
    }
    out
}

/// How many directories the teams' files are spread over (see [`team_bucket`]).
pub const TEAM_BUCKETS: u8 = 16;

/// The bucket of `team` (`00` to `0f`): from a hash of its name, so it never changes as teams
/// come and go (moving a team's file to another directory would have one Kustomization prune what
/// another applies). Buckets keep every directory Flux builds small: kustomize's build time grows
/// with the square of a directory's objects, and one directory of every team's four objects
/// took ~24 s to build at 1,000 teams, in `verify` and in kustomize-controller on every commit.
pub fn team_bucket(team: &str) -> String {
    let digest = crate::artifact::sha256(team.as_bytes());
    let first = u8::from_str_radix(&digest["sha256:".len().."sha256:".len() + 2], 16)
        .expect("a sha256 digest is hex");
    format!("{:02x}", first % TEAM_BUCKETS)
}

/// Every bucket's directory of `env` (what the bootstrap source checks out of them).
pub fn teams_root_dir(env: &str) -> String {
    format!("flux/teams/{env}")
}

/// The directory of the teams' files of `bucket` in `env`, applied by the Kustomization
/// `teams-<bucket>` of the cluster's entry point, from the bootstrap source.
pub fn teams_dir(env: &str, bucket: &str) -> String {
    format!("{}/{bucket}", teams_root_dir(env))
}

/// The file of `team` in `env`: the sources (pinned artifacts) and Kustomizations of its two
/// directories, in its bucket's directory.
pub fn team_file(env: &str, team: &str) -> String {
    format!("{}/{team}.yaml", teams_dir(env, &team_bucket(team)))
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
