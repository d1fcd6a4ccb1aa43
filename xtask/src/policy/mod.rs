//! `cargo xtask policy`: run the policy bundle over manifests, or get checkov's second opinion.

mod project;

use std::path::PathBuf;

use anyhow::{Context, bail};
use policies::{Bundle, CheckContext, Exemption, Report, SourcedObject, UserInfo};

#[derive(clap::Args)]
pub struct Policy {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Evaluate the policy bundle over YAML files or directories (kustomize directories are
    /// built first); exits non-zero on any error-severity violation.
    Check(Check),
    /// Run checkov's Kubernetes checks over rendered manifests as an independent second opinion;
    /// exits non-zero on any failed check.
    Checkov(crate::checkov::Checkov),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct Check {
    /// Manifest files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Environment the manifests are for (e.g. `production`): selects environment-only rules.
    #[arg(long)]
    environment: Option<String>,
    /// YAML list of exemptions ({rule, kind, namespace, name, reason}); none by default.
    #[arg(long)]
    exemptions: Option<PathBuf>,
    /// The user the requests come from, as `kubectl --as` (default: the platform's Flux
    /// reconciler, `system:serviceaccount:flux-system:kustomize-controller`). Rules that only
    /// trust the platform judge other users' requests.
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// A group of that user, as `kubectl --as-group` (repeatable).
    #[arg(long = "as-group", value_name = "GROUP", requires = "as_user")]
    as_groups: Vec<String>,
    /// Check the manifests as they are, even inside this project's `flux/` (by default there the
    /// platform spec's exemptions and settings apply, the environment comes from the path, and
    /// each object is judged as the identity that applies it, as `verify` does).
    #[arg(long)]
    raw: bool,
}

impl Policy {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Check(cmd) => cmd.run(),
            Command::Checkov(cmd) => cmd.run(),
        }
    }
}

impl Check {
    fn run(self) -> anyhow::Result<()> {
        let reports = self.reports()?;
        match self.format {
            Format::Text => {
                for report in &reports {
                    print!("{report}");
                }
            }
            Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        }
        let errors: usize = reports.iter().map(Report::errors).sum();
        if errors > 0 {
            bail!(
                "{errors} policy violations at error severity; fix the manifests or add an exemption with a reason"
            );
        }
        Ok(())
    }

    /// The one report of a check that is not split by environment (tests).
    #[cfg(test)]
    fn report(&self) -> anyhow::Result<Report> {
        let mut reports = self.reports()?;
        anyhow::ensure!(
            reports.len() == 1,
            "expected one environment, got {}",
            reports.len()
        );
        Ok(reports.remove(0))
    }

    /// Loads the manifests and exemptions and runs the bundle over them: one report, or inside
    /// this project's `flux/` one per environment the files are for.
    pub(crate) fn reports(&self) -> anyhow::Result<Vec<Report>> {
        let bundle = Bundle::builtin().context("the built-in policy bundle does not compile")?;
        let objects = load(&self.paths)?;
        let exemptions: Vec<Exemption> = match &self.exemptions {
            Some(path) => policies::load_exemptions(path)?,
            None => Vec::new(),
        };
        let flux = crate::project_root().join("flux");
        let in_project = !self.raw && self.paths.iter().all(|p| project::is_inside(p, &flux));
        if !in_project {
            return Ok(vec![bundle.check(
                &self.context(self.environment.clone()),
                &objects,
                &exemptions,
            )?]);
        }
        project::reports(self, bundle, objects, exemptions)
    }

    fn context(&self, environment: Option<String>) -> CheckContext {
        CheckContext {
            environment,
            user: Some(self.user()),
        }
    }
    /// Who the requests come from: `--as`/`--as-group`, else the platform's reconciler.
    fn user(&self) -> UserInfo {
        match &self.as_user {
            Some(name) => match name
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
            {
                Some((namespace, account)) if self.as_groups.is_empty() => {
                    UserInfo::service_account(namespace, account)
                }
                _ => {
                    let groups: Vec<&str> = self.as_groups.iter().map(String::as_str).collect();
                    UserInfo::user(name, &groups)
                }
            },
            None => UserInfo::service_account("flux-system", "kustomize-controller"),
        }
    }
}

/// Every object under `paths`, kustomize directories built with `kubectl kustomize`.
pub(crate) fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<SourcedObject>> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(policies::load_manifests(path, &crate::kustomize::build)?);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kustomize directory holding one compliant service, the way `gen` lays out an app.
    fn compliant_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = policies::testing::synthetic_objects(1);
        let mut resources = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let kind = object.object["kind"].as_str().expect("a kind");
            let name = format!("{i:02}-{}.yaml", kind.to_lowercase());
            let json = serde_json::to_string_pretty(&object.object).expect("serialisable");
            std::fs::write(dir.path().join(&name), json).expect("write manifest");
            resources.push(name);
        }
        let kustomization = serde_json::json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        });
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            kustomization.to_string(),
        )
        .expect("write kustomization");
        dir
    }

    fn edit(dir: &tempfile::TempDir, file: &str, change: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.path().join(file);
        let mut object: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        change(&mut object);
        std::fs::write(&path, object.to_string()).expect("write");
    }

    /// `policy check --environment production PATHS…` with every other flag at its default.
    pub(super) fn check_paths(paths: Vec<PathBuf>) -> Check {
        Check {
            paths,
            format: Format::Text,
            environment: Some("production".into()),
            exemptions: None,
            as_user: None,
            as_groups: Vec::new(),
            raw: false,
        }
    }

    fn check(dir: &tempfile::TempDir) -> Check {
        check_paths(vec![dir.path().to_owned()])
    }

    #[test]
    fn a_compliant_kustomize_tree_passes_the_check() {
        crate::testing::require_kubectl();
        let dir = compliant_tree();
        let report = check(&dir).report().expect("loads and checks");
        assert_eq!(report.violations, [], "{report}");
        assert_eq!(
            report.objects_checked,
            policies::testing::synthetic_objects(1).len()
        );
        check(&dir).run().expect("no errors, exit zero");
    }

    /// Rewrites one file of a tree copy through `change`, one JSON document per object.
    fn edit_documents(path: &std::path::Path, change: impl Fn(&mut serde_json::Value)) {
        let documents: Vec<String> = policies::load_manifests(path, &crate::kustomize::build)
            .expect("generated files load")
            .into_iter()
            .map(|mut sourced| {
                change(&mut sourced.object);
                sourced.object.to_string()
            })
            .collect();
        std::fs::write(path, documents.join("\n---\n")).expect("tree copy is writable");
    }

    #[test]
    fn each_classic_mistake_in_a_copy_of_the_generated_tree_fails_the_check_naming_its_rule() {
        crate::testing::require_kubectl();
        type Mistake = (&'static str, &'static str, fn(&mut serde_json::Value));
        let app = "flux/apps/payment-provider/production";
        let tenant = "flux/tenants/production/payments/payment-provider";
        let mistakes: [Mistake; 4] = [
            ("deployment.yaml", "probes-required", |d| {
                let container = &mut d["spec"]["template"]["spec"]["containers"][0];
                container
                    .as_object_mut()
                    .expect("a container is an object")
                    .remove("readinessProbe");
            }),
            ("deployment.yaml", "image-tag-pinned", |d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] =
                    "ghcr.io/billing-platform/payment-provider:latest".into();
            }),
            ("deployment.yaml", "no-privileged", |d| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
                    true.into();
            }),
            ("developer-rbac.yaml", "rbac-no-wildcards", |o| {
                if o["kind"] == "Role" {
                    o["rules"][0]["verbs"] = serde_json::json!(["*"]);
                }
            }),
        ];
        let tree = infra::testing::tree();
        for (file, rule, mistake) in mistakes {
            let scratch = tempfile::tempdir().expect("a scratch dir");
            let root = scratch.path();
            crate::generate::generate(root, tree, crate::generate::Mode::Write)
                .expect("writes a copy of the tree");
            let dir = root.join(if file == "deployment.yaml" {
                app
            } else {
                tenant
            });
            // With the namespace's platform settings, which the cluster has from the
            // infrastructure layer.
            let settings = root.join("flux/namespaces/production/payments/payment-provider");
            let check = || check_paths(vec![dir.clone(), settings.clone()]);
            // Untouched, the service's directory passes: the mistake is what fails it.
            assert!(!check().report().expect("checks").has_errors());
            edit_documents(&dir.join(file), mistake);
            // The directory has a kustomization.yaml: it goes through `kubectl kustomize`.
            let report = check().report().expect("loads and checks");
            assert!(
                report.violations_of(rule).next().is_some(),
                "{rule} not reported: {report}"
            );
            let err = check().run().expect_err("an error-severity violation");
            assert!(err.to_string().contains("policy violations"), "{err}");
        }
    }

    #[test]
    fn an_exemptions_file_waives_the_named_rule_and_is_reported() {
        crate::testing::require_kubectl();
        let dir = compliant_tree();
        edit(&dir, "12-deployment.yaml", |d| {
            d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = false.into();
        });
        let exemptions = dir.path().join("exemptions.yml");
        std::fs::write(
            &exemptions,
            "- {rule: run-as-non-root, kind: Deployment, namespace: svc-0000, name: svc-0000, reason: stock image runs as root}\n",
        )
        .expect("write exemptions");
        let mut cmd = check(&dir);
        cmd.exemptions = Some(exemptions);
        let report = cmd.report().expect("loads and checks");
        assert_eq!(report.violations, []);
        assert!(
            report
                .to_string()
                .contains("exempted: stock image runs as root")
        );
    }
}
