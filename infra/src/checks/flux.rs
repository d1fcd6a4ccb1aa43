//! Checks of Flux Kustomizations: paths that are generated roots (inside what their source's
//! artifact holds), sources in their own namespace that exist, a service account always named,
//! dependencies that exist, no wait on a directory that applies Kustomizations; and of
//! OCIRepositories: each names the generated directory its artifact holds.

use serde_json::Value;

use super::{Cluster, ns_of};
use crate::flux::artifact_directory;
use crate::meta::ARTIFACT_DIRECTORY;
use crate::tree::Tree;

/// Accounts Flux's installation creates, which platform Kustomizations may name.
const FLUX_ACCOUNTS: &[(&str, &str)] = &[("flux-system", "kustomize-controller")];

/// A Flux Kustomization, not a kustomize `kustomization.yaml` object of the same kind name.
pub(super) fn is_flux_kustomization(value: &Value) -> bool {
    value["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("kustomize.toolkit.fluxcd.io/"))
}

pub(super) fn check_kustomization(
    tree: &Tree,
    cluster: &Cluster<'_>,
    value: &Value,
    report: &mut impl FnMut(String),
) {
    let ns = ns_of(value);
    let spec = &value["spec"];
    let path = spec["path"].as_str().unwrap_or("");
    let source = &spec["sourceRef"];
    let source_ns = source["namespace"].as_str().unwrap_or(ns);
    let source_name = source["name"].as_str().unwrap_or("");
    // The tree directory the path names: a git source holds the tree's own paths, an OCI
    // artifact one directory at its root. A source that does not resolve is reported once, and
    // the path is not checked against a directory it does not name.
    let mut base = String::new();
    let mut resolved = false;
    if source_ns != ns {
        report(format!(
            "spec.sourceRef points into namespace `{source_ns}`: cross-namespace refs are blocked by --no-cross-namespace-refs"
        ));
    } else if source["kind"] == "GitRepository" {
        match cluster.git_repositories.get(&(ns, source_name)) {
            None => report(format!(
                "spec.sourceRef names GitRepository `{ns}/{source_name}`, which does not exist"
            )),
            Some(repository) => {
                resolved = true;
                check_inside_checkout(repository, path, report);
            }
        }
    } else if source["kind"] == "OCIRepository" {
        match cluster.oci_repositories.get(&(ns, source_name)) {
            None => report(format!(
                "spec.sourceRef names OCIRepository `{ns}/{source_name}`, which does not exist"
            )),
            Some(repository) => {
                if let Some(dir) = artifact_directory(repository) {
                    base = format!("{dir}/");
                    resolved = true;
                }
            }
        }
    } else {
        report(format!(
            "spec.sourceRef is a {}: the platform's sources are GitRepositories and OCIRepositories",
            source["kind"].as_str().unwrap_or("source without a kind")
        ));
    }
    let relative = path.trim_start_matches("./").trim_end_matches('/');
    let dir = format!("{base}{relative}");
    let dir = dir.trim_end_matches('/');
    let inside = if base.is_empty() {
        String::new()
    } else {
        format!(" (in the artifact of `{}`)", base.trim_end_matches('/'))
    };
    if resolved && !tree.has_root(dir) {
        report(format!(
            "spec.path `{path}`{inside} is not a generated directory with a kustomization.yaml"
        ));
    }
    // Waiting on Kustomizations, by `wait` over a directory that applies them or by a health
    // check naming one.
    let waits_on = if spec["wait"] == true {
        cluster.applying_kustomizations.get(dir).map(|file| {
            format!(
                "spec.wait is true and spec.path `{path}`{inside} applies Kustomizations ({file})"
            )
        })
    } else {
        None
    };
    let health_check = spec["healthChecks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|check| check["kind"] == "Kustomization")
        .map(|check| {
            format!(
                "spec.healthChecks waits for Kustomization {}/{}",
                check["namespace"].as_str().unwrap_or(ns),
                check["name"].as_str().unwrap_or("")
            )
        });
    for waiting in waits_on.into_iter().chain(health_check) {
        report(format!(
            "{waiting}: it would hold one of kustomize-controller's workers while they queue for one (with as many such Kustomizations as workers, nothing moves until the wait times out); let them report their own health"
        ));
    }
    match spec["serviceAccountName"].as_str() {
        None => report(
            "spec.serviceAccountName is empty: under --default-service-account it would run as a powerless account".into(),
        ),
        Some(account) => {
            let installed = FLUX_ACCOUNTS.contains(&(ns, account));
            if !installed && !cluster.service_accounts.contains(&(ns, account)) {
                report(format!("spec.serviceAccountName `{account}` does not exist in namespace `{ns}`"));
            }
        }
    }
    for dependency in spec["dependsOn"].as_array().into_iter().flatten() {
        let dep_ns = dependency["namespace"].as_str().unwrap_or(ns);
        let dep = dependency["name"].as_str().unwrap_or("");
        if !cluster.kustomizations.contains(&(dep_ns, dep)) {
            report(format!(
                "spec.dependsOn names Kustomization `{dep_ns}/{dep}`, which does not exist"
            ));
        }
    }
}

/// A sparse checkout writes only its directories: the artifact holds nothing else.
fn check_inside_checkout(repository: &Value, path: &str, report: &mut impl FnMut(String)) {
    let Some(dirs) = repository["spec"]["sparseCheckout"].as_array() else {
        return;
    };
    let dir = path.trim_start_matches("./").trim_end_matches('/');
    let dirs: Vec<&str> = dirs.iter().filter_map(Value::as_str).collect();
    let inside = dirs.iter().any(|d| {
        let d = d.trim_start_matches("./").trim_end_matches('/');
        dir.strip_prefix(d)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if !inside {
        report(format!(
            "spec.path `{path}` is outside the directories GitRepository `{}/{}` checks out (spec.sparseCheckout: {}): its artifact does not hold it",
            ns_of(repository),
            repository["metadata"]["name"].as_str().unwrap_or(""),
            dirs.join(", ")
        ));
    }
}

/// An OCIRepository names the generated directory its artifact holds, so the paths of the
/// Kustomizations reading it resolve (and people and the e2e know what it holds).
pub(super) fn check_oci_repository(tree: &Tree, value: &Value, report: &mut impl FnMut(String)) {
    match artifact_directory(value) {
        None => report(format!(
            "metadata.annotations has no `{ARTIFACT_DIRECTORY}`: nothing says which generated directory its artifact holds"
        )),
        Some(dir) if !tree.has_root(dir) => report(format!(
            "metadata.annotations `{ARTIFACT_DIRECTORY}: {dir}` is not a generated directory with a kustomization.yaml"
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::tests::{assert_found, broken};
    use serde_json::json;

    #[test]
    fn a_kustomization_path_that_does_not_exist_is_reported() {
        // A git source: the path is the tree's own.
        let file = "flux/clusters/production/infrastructure.yaml";
        let found = broken(
            file,
            "Kustomization",
            "flux-system",
            "infrastructure",
            |v| v["spec"]["path"] = json!("./flux/infrastructure/prod"),
        );
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/flux-system/infrastructure: spec.path `./flux/infrastructure/prod` is not a generated directory with a kustomization.yaml"
            ),
        );
        // An OCI source: the path is inside the directory its artifact holds.
        let file = "flux/tenants/production/invoicing/antaeus/sync.yaml";
        let found = broken(file, "Kustomization", "antaeus", "antaeus", |v| {
            v["spec"]["path"] = json!("./production");
        });
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/antaeus/antaeus: spec.path `./production` (in the artifact of `flux/apps/antaeus/production`) is not a generated directory with a kustomization.yaml"
            ),
        );
    }

    #[test]
    fn an_oci_source_that_does_not_say_what_it_holds_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/sync.yaml";
        let found = broken(file, "OCIRepository", "antaeus", "antaeus", |v| {
            v["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("annotations");
        });
        assert_found(
            &found,
            &format!(
                "{file}: OCIRepository/antaeus/antaeus: metadata.annotations has no `billing-platform/artifact-directory`: nothing says which generated directory its artifact holds"
            ),
        );
        // Reported once, on the source: its Kustomization's path names no directory to check.
        assert_eq!(found.len(), 1, "{found:#?}");
        let found = broken(file, "OCIRepository", "antaeus", "antaeus", |v| {
            v["metadata"]["annotations"]["billing-platform/artifact-directory"] =
                json!("flux/apps/antaeus");
        });
        assert_found(
            &found,
            &format!(
                "{file}: OCIRepository/antaeus/antaeus: metadata.annotations `billing-platform/artifact-directory: flux/apps/antaeus` is not a generated directory with a kustomization.yaml"
            ),
        );
        // The Kustomization reading it now resolves its path in the wrong directory too.
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/antaeus/antaeus: spec.path `./` (in the artifact of `flux/apps/antaeus`) is not a generated directory with a kustomization.yaml"
            ),
        );
    }

    #[test]
    fn a_source_that_does_not_exist_is_reported() {
        let file = "flux/tenants/production/invoicing/antaeus/sync.yaml";
        let found = broken(file, "Kustomization", "antaeus", "antaeus", |v| {
            v["spec"]["sourceRef"]["name"] = json!("other");
        });
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/antaeus/antaeus: spec.sourceRef names OCIRepository `antaeus/other`, which does not exist"
            ),
        );
        let found = broken(file, "Kustomization", "antaeus", "antaeus", |v| {
            v["spec"]["sourceRef"]["kind"] = json!("Bucket");
        });
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/antaeus/antaeus: spec.sourceRef is a Bucket: the platform's sources are GitRepositories and OCIRepositories"
            ),
        );
    }

    #[test]
    fn a_kustomization_waiting_on_kustomizations_is_reported() {
        let file = &crate::render::layout::team_file("production", "invoicing");
        let found = broken(
            file,
            "Kustomization",
            "flux-system",
            "tenants-invoicing",
            |v| v["spec"]["wait"] = json!(true),
        );
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/flux-system/tenants-invoicing: spec.wait is true and spec.path `./` (in the artifact of `flux/tenants/production/invoicing`) applies Kustomizations (flux/tenants/production/invoicing/antaeus/sync.yaml): it would hold one of kustomize-controller's workers while they queue for one (with as many such Kustomizations as workers, nothing moves until the wait times out); let them report their own health"
            ),
        );
        // A service's Kustomization waits for its rollout: its directory applies no Kustomization.
        assert!(
            !found
                .iter()
                .any(|f| f.contains("Kustomization/antaeus/antaeus")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_path_outside_its_sources_sparse_checkout_is_reported() {
        let file = "flux/clusters/production/flux-system.yaml";
        let found = broken(file, "GitRepository", "flux-system", "flux-system", |v| {
            v["spec"]["sparseCheckout"] = json!([
                "flux/clusters/production",
                "flux/infrastructure/production-other"
            ])
        });
        assert_found(
            &found,
            "flux/clusters/production/infrastructure.yaml: Kustomization/flux-system/infrastructure: spec.path `./flux/infrastructure/production` is outside the directories GitRepository `flux-system/flux-system` checks out (spec.sparseCheckout: flux/clusters/production, flux/infrastructure/production-other): its artifact does not hold it",
        );
        // The sync's own path is checked out: not reported.
        assert!(
            !found
                .iter()
                .any(|f| f.contains("Kustomization/flux-system/flux-system: spec.path")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_health_check_naming_a_kustomization_is_reported() {
        let file = "flux/clusters/production/infrastructure.yaml";
        let found = broken(
            file,
            "Kustomization",
            "flux-system",
            "infrastructure",
            |v| {
                v["spec"]["healthChecks"] = json!([{
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "name": "tenants-invoicing",
                }])
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/flux-system/infrastructure: spec.healthChecks waits for Kustomization flux-system/tenants-invoicing: it would hold one of kustomize-controller's workers while they queue for one (with as many such Kustomizations as workers, nothing moves until the wait times out); let them report their own health"
            ),
        );
    }

    #[test]
    fn a_kustomization_without_a_service_account_is_reported() {
        let file = "flux/clusters/production/infrastructure.yaml";
        let found = broken(
            file,
            "Kustomization",
            "flux-system",
            "infrastructure",
            |v| {
                v["spec"]
                    .as_object_mut()
                    .expect("spec")
                    .remove("serviceAccountName");
            },
        );
        assert_found(
            &found,
            &format!(
                "{file}: Kustomization/flux-system/infrastructure: spec.serviceAccountName is empty: under --default-service-account it would run as a powerless account"
            ),
        );
    }
}
