//! `policy check` inside this project's `flux/`: what `verify` knows comes from the platform
//! spec (its exemptions, each namespace's settings, the identity that applies each file) and
//! each file's environment from its path, one report per environment.

use anyhow::bail;
use policies::{Bundle, Exemption, Report, SourcedObject};

use super::Check;

/// One report per environment of the files in `objects`, all inside the project's `flux/`.
pub(super) fn reports(
    check: &Check,
    bundle: &Bundle,
    objects: Vec<SourcedObject>,
    mut exemptions: Vec<Exemption>,
) -> anyhow::Result<Vec<Report>> {
    // Inside the project's own tree: what verify knows, from the platform spec.
    let spec = crate::generate::load_spec(None)?;
    let tree = infra::render(&spec)?;
    exemptions.extend(spec.exemptions());
    let root = crate::project_root();
    let mut by_environment: std::collections::BTreeMap<String, Vec<SourcedObject>> =
        std::collections::BTreeMap::new();
    for mut object in objects {
        let relative = object
            .file
            .strip_prefix(&root)
            .unwrap_or(&object.file)
            .to_owned();
        let file = relative.to_string_lossy().into_owned();
        let environment = match (&check.environment, environment_of(&file)) {
            (Some(chosen), _) => chosen.clone(),
            (None, Some(env)) => env,
            (None, None) => bail!(
                "{file}: cannot tell which environment it is for; name it with --environment (or --raw)"
            ),
        };
        if object.admission.user.is_none() && check.as_user.is_none() {
            object.admission.user = Some(infra::render::applier(&file));
        }
        by_environment.entry(environment).or_default().push(object);
    }
    let mut reports = Vec::new();
    for (environment, mut objects) in by_environment {
        eprintln!(
            "policy check: {} objects of this project's flux/ for environment {environment}: the platform spec's exemptions and namespace settings apply, each object is judged as the identity that applies it (--raw checks the files as they are)",
            objects.len()
        );
        // The namespaces' settings, as the cluster has them, unless the files hold them.
        let present: Vec<(String, String)> = objects.iter().map(|o| identity(&o.object)).collect();
        let settings: Vec<SourcedObject> = tree
            .entries()
            .filter(|e| e.cluster == environment)
            .filter(|e| {
                let v = e.object.value();
                v["kind"] == "ConfigMap"
                    && v["metadata"]["name"] == policies::PARAMS_CONFIG_MAP
                    && !present.contains(&identity(v))
            })
            .map(|e| SourcedObject {
                file: e.file.into(),
                object: e.object.value().clone(),
                admission: policies::Admission::create_as(infra::render::applier(e.file)),
            })
            .collect();
        let context_objects = settings.len();
        objects.extend(settings);
        let mut report = bundle.check(&check.context(Some(environment)), &objects, &exemptions)?;
        report.objects_checked -= context_objects;
        // Exemptions for objects of other files are not unused, only not checked here.
        report.unused_exemptions.clear();
        reports.push(report);
    }
    Ok(reports)
}

/// `(namespace, name)` of an object.
fn identity(object: &serde_json::Value) -> (String, String) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// Whether `path` is `dir` or lies inside it (both resolved).
pub(super) fn is_inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(path), Ok(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// The environment a file of the tree is for, from its path: `flux/clusters/<env>/…`,
/// `flux/infrastructure/<env>/…`, `flux/teams/<env>/…`, `flux/namespaces/<env>/…`,
/// `flux/tenants/<env>/…`, `flux/apps/<service>/<env>/…`.
fn environment_of(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.strip_prefix("flux/")?.split('/').collect();
    let env = match *parts.first()? {
        "apps" => parts.get(2)?,
        "clusters" | "infrastructure" | "teams" | "namespaces" | "tenants" => parts.get(1)?,
        _ => return None,
    };
    (!env.ends_with(".yaml")).then(|| (*env).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_own_tree_passes_with_the_specs_exemptions_one_report_per_environment() {
        crate::testing::require_kubectl();
        let check = Check {
            environment: None,
            ..crate::policy::tests::check_paths(vec![crate::project_root().join("flux")])
        };
        let reports = check.reports().expect("the tree loads and checks");
        let environments: Vec<_> = reports.iter().map(|r| r.environment.clone()).collect();
        assert_eq!(
            environments,
            [Some("production".to_owned()), Some("staging".to_owned())]
        );
        for report in &reports {
            assert!(!report.has_errors(), "{report}");
            assert!(
                report.exempted.iter().any(|e| e.rule == "run-as-non-root"),
                "{report}"
            );
        }
        // Raw, the same files trip Antaeus' documented exemptions: the flag is the old check.
        let raw = Check {
            raw: true,
            environment: Some("production".into()),
            ..check
        };
        assert!(raw.reports().expect("checks")[0].has_errors());
    }

    #[test]
    fn the_environment_of_a_tree_file_comes_from_its_path() {
        assert_eq!(
            environment_of("flux/apps/antaeus/staging/kustomization.yaml").as_deref(),
            Some("staging")
        );
        assert_eq!(
            environment_of("flux/tenants/production/invoicing/antaeus/limits.yaml").as_deref(),
            Some("production")
        );
        assert_eq!(environment_of("flux/README.yaml"), None);
        assert_eq!(environment_of("elsewhere/x.yaml"), None);
    }
}
