//! Every file a service gets in an environment, as one table of `(directory, file, builder)`
//! rows, and the loop that renders every service on every core.
//!
//! A new object kind (a HorizontalPodAutoscaler, say) is one builder function and one row in
//! [`FILES`]; a builder that returns no objects writes no file, which is how conditional files
//! (the PodDisruptionBudget only above one replica) are expressed.

use std::collections::BTreeMap;

use super::layout::{app_dir, settings_dir, tenant_dir};
use super::{limits, network, sources, tenant, workload};
use crate::Error;
use crate::meta;
use crate::spec::{self, Spec};
use crate::tree::{Object, Tree, objects_text};

/// What a builder renders from: one service in one environment.
pub(super) struct ServiceCtx<'a> {
    pub spec: &'a Spec,
    pub service: &'a spec::Service,
    pub env: &'a str,
    /// `(callee, port)` of every service this one may call.
    pub callees: &'a [(&'a str, i32)],
    /// The digest of the service's app directory as an OCI artifact ([`crate::artifact`]): set
    /// once its files are rendered, for the tenant's source to pin.
    pub app_digest: Option<String>,
}

impl ServiceCtx<'_> {
    /// The labels of every object of this service.
    pub fn labels(&self) -> BTreeMap<String, String> {
        meta::labels(
            &self.spec.platform.name,
            &self.service.name,
            &self.service.team,
        )
    }

    /// Metadata of an object called `name` in the service's namespace.
    pub fn metadata(
        &self,
        name: &str,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        meta::object_meta(name, Some(&self.service.name), self.labels())
    }
}

/// Renders the objects of one file; none means the file is not written.
pub(super) type Builder = fn(&ServiceCtx<'_>) -> Result<Vec<Object>, Error>;

/// Which of a service's directories a file lands in.
#[derive(Clone, Copy, Debug)]
pub(super) enum Dir {
    /// [`settings_dir`]: with the team's Namespaces, applied by the platform's reconciler
    /// before any tenant object: what the admission policies read about the namespace must be
    /// there before anything they judge is applied.
    Settings,
    /// [`tenant_dir`]: applied by the platform's reconciler (the tenant, RBAC, limits, network
    /// policies, the sync).
    Tenant,
    /// [`app_dir`]: applied as the service's own tenant account (the workload).
    App,
}

/// Every file of a service in an environment.
pub(super) const FILES: &[(Dir, &str, Builder)] = &[
    (Dir::Tenant, "flux-tenant.yaml", tenant::flux_tenant),
    (Dir::Tenant, "developer-rbac.yaml", tenant::developer_rbac),
    (
        Dir::Settings,
        "platform-policy.yaml",
        tenant::platform_settings,
    ),
    (Dir::Tenant, "limits.yaml", limits::limits),
    // Platform-owned: a tenant could otherwise delete its default-deny or allow everything.
    (Dir::Tenant, "network-policies.yaml", network::policies),
    (Dir::Tenant, "sync.yaml", tenant::sync),
    (Dir::App, "service-account.yaml", workload::service_account),
    (Dir::App, "deployment.yaml", workload::deployment),
    (Dir::App, "service.yaml", workload::service),
    (
        Dir::App,
        "pod-disruption-budget.yaml",
        workload::pod_disruption_budget,
    ),
];

/// One typed object as the one object of a file.
pub(super) fn one<T: serde::Serialize>(object: &T) -> Result<Vec<Object>, Error> {
    Ok(vec![Object::new(object)?])
}

/// Services rendered at once before they go into the tree: what a streaming tree holds.
const BATCH: usize = 256;

/// Renders `services` (one team's) in `env` into `tree`, a batch of services at a time; returns
/// `(path, bytes)` of each file outside the app directories (the team's namespaces and tenants
/// directories hold them), from which the team's artifacts are pinned.
pub(super) fn render(
    spec: &Spec,
    env: &str,
    services: &[&spec::Service],
    callees: &Callees<'_>,
    tree: &mut Tree,
) -> Result<Vec<(String, String)>, Error> {
    let mut team_files = Vec::new();
    for batch in services.chunks(BATCH) {
        for service in render_batch(spec, env, callees, batch)? {
            tree.add_root(&service.app_dir);
            for (path, objects) in service.files {
                if !path.starts_with(&service.app_dir) {
                    team_files.push((path.clone(), objects_text(&objects)));
                }
                tree.add_objects(env, &path, objects)?;
            }
        }
    }
    Ok(team_files)
}

/// `(callee, port)` of every service each service may call.
pub(super) type Callees<'a> = BTreeMap<&'a str, Vec<(&'a str, i32)>>;

/// Serialises `services` on every core; the result is in the services' order (the tree is
/// ordered by path, so nothing depends on which thread finished first).
fn render_batch(
    spec: &Spec,
    env: &str,
    callees: &Callees<'_>,
    services: &[&spec::Service],
) -> Result<Vec<ServiceFiles>, Error> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = services.len().div_ceil(workers).max(1);
    let rendered: Vec<Result<Vec<ServiceFiles>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = services
            .chunks(chunk)
            .map(|services| {
                scope.spawn(move || {
                    services
                        .iter()
                        .map(|&service| {
                            let ctx = ServiceCtx {
                                spec,
                                service,
                                env,
                                callees: callees
                                    .get(service.name.as_str())
                                    .map_or(&[], Vec::as_slice),
                                app_digest: None,
                            };
                            service_files(&ctx)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rendering a service does not panic"))
            .collect()
    });
    let mut out = Vec::with_capacity(services.len());
    for files in rendered {
        out.extend(files?);
    }
    Ok(out)
}

/// One service's files in one environment: its tenant files and its app directory.
struct ServiceFiles {
    app_dir: String,
    files: Vec<(String, Vec<Object>)>,
}

/// Renders the app directory first: its files (and the `kustomization.yaml` the tree derives for
/// it) make the artifact whose digest the tenant's source pins.
fn service_files(ctx: &ServiceCtx<'_>) -> Result<ServiceFiles, Error> {
    let (service, team) = (&ctx.service.name, &ctx.service.team);
    let settings = settings_dir(service, team, ctx.env);
    let tenant = tenant_dir(service, team, ctx.env);
    let app = app_dir(&ctx.service.name, ctx.env);
    let mut files = Vec::with_capacity(FILES.len());
    let mut app_texts: Vec<(&str, String)> = Vec::new();
    for (dir, file, build) in FILES.iter().filter(|(dir, ..)| matches!(dir, Dir::App)) {
        let objects = build(ctx)?;
        if objects.is_empty() {
            continue;
        }
        app_texts.push((file, objects_text(&objects)));
        files.push((
            format!("{}/{file}", dir_of(*dir, &settings, &tenant, &app)),
            objects,
        ));
    }
    let app_files: Vec<(&str, &[u8])> = app_texts
        .iter()
        .map(|(file, text)| (*file, text.as_bytes()))
        .collect();
    let ctx = ServiceCtx {
        app_digest: Some(sources::pin(&app, &app_files)?),
        ..*ctx
    };
    for (dir, file, build) in FILES.iter().filter(|(dir, ..)| !matches!(dir, Dir::App)) {
        let objects = build(&ctx)?;
        if objects.is_empty() {
            continue;
        }
        files.push((
            format!("{}/{file}", dir_of(*dir, &settings, &tenant, &app)),
            objects,
        ));
    }
    Ok(ServiceFiles {
        app_dir: app,
        files,
    })
}

fn dir_of<'a>(dir: Dir, settings: &'a str, tenant: &'a str, app: &'a str) -> &'a str {
    match dir {
        Dir::Settings => settings,
        Dir::Tenant => tenant,
        Dir::App => app,
    }
}

/// `(callee, port)` pairs each service may call, from the callees' `[[callers]]`.
pub(super) fn callees(spec: &Spec) -> Callees<'_> {
    let mut out: BTreeMap<&str, Vec<(&str, i32)>> = BTreeMap::new();
    for callee in &spec.services {
        for caller in &callee.callers {
            out.entry(caller.service.as_str())
                .or_default()
                .push((callee.name.as_str(), caller.port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn a_pod_disruption_budget_exists_only_where_replicas_exceed_one() {
        let files = testing::files();
        assert!(
            files.contains_key("flux/apps/payment-provider/production/pod-disruption-budget.yaml")
        );
        assert!(!files.contains_key("flux/apps/antaeus/production/pod-disruption-budget.yaml"));
    }

    #[test]
    fn every_row_of_the_table_lands_in_the_default_tree() {
        let files = testing::files();
        for (dir, file, _) in FILES {
            let path = match dir {
                Dir::Settings => {
                    format!(
                        "{}/{file}",
                        settings_dir("payment-provider", "payments", "production")
                    )
                }
                Dir::Tenant => format!(
                    "{}/{file}",
                    tenant_dir("payment-provider", "payments", "production")
                ),
                Dir::App => format!("{}/{file}", app_dir("payment-provider", "production")),
            };
            assert!(files.contains_key(&path), "{path} is missing");
        }
    }
}
