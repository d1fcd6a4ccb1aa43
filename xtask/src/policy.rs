//! `cargo xtask policy`: run the policy bundle over manifests, get checkov's second opinion, or
//! time the bundle over a synthetic platform.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use policies::{Bundle, CheckContext, Exemption, Report, SourcedObject};

/// checkov release the second opinion is pinned to; bump deliberately, its checks change.
const CHECKOV_VERSION: &str = "3.3.30";

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
    Checkov(Checkov),
    /// Time compiling the bundle and checking a synthetic platform; prints figures, never fails
    /// on time.
    Bench(Bench),
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
}

#[derive(clap::Args)]
struct Checkov {
    /// Directories or files to scan (kustomize directories are built first); default `flux/`.
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct Bench {
    /// Number of synthetic services (9 objects each).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Runs to take the best of.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Policy {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Check(cmd) => cmd.run(),
            Command::Checkov(cmd) => cmd.run(),
            Command::Bench(cmd) => {
                println!("{}", policies::bench::measure(cmd.services, cmd.runs)?);
                Ok(())
            }
        }
    }
}

impl Check {
    fn run(self) -> anyhow::Result<()> {
        let report = self.report()?;
        match self.format {
            Format::Text => print!("{report}"),
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        }
        if report.has_errors() {
            bail!(
                "{} policy violations at error severity; fix the manifests or add an exemption with a reason",
                report.errors()
            );
        }
        Ok(())
    }

    /// Loads the manifests and exemptions and runs the bundle over them.
    pub(crate) fn report(&self) -> anyhow::Result<Report> {
        let bundle = Bundle::builtin().context("the built-in policy bundle does not compile")?;
        let objects = load(&self.paths)?;
        let exemptions: Vec<Exemption> = match &self.exemptions {
            Some(path) => policies::load_exemptions(path)?,
            None => Vec::new(),
        };
        let context = CheckContext {
            environment: self.environment.clone(),
        };
        Ok(bundle.check(&context, &objects, &exemptions)?)
    }
}

fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<SourcedObject>> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(policies::load_manifests(path)?);
    }
    Ok(objects)
}

impl Checkov {
    fn run(self) -> anyhow::Result<()> {
        let paths = if self.paths.is_empty() {
            let flux = crate::project_root().join("flux");
            if !flux.is_dir() {
                bail!(
                    "{} does not exist; run `cargo xtask gen` first",
                    flux.display()
                );
            }
            vec![flux]
        } else {
            self.paths
        };
        let objects = load(&paths)?;
        if objects.is_empty() {
            bail!("no manifests found under {paths:?}; run `cargo xtask gen` first");
        }
        let checkov = ensure_checkov()?;

        // checkov's kubernetes framework reads plain manifests: kustomize directories are
        // rendered first, one file per source so failures point back at it.
        let rendered = tempfile::Builder::new()
            .prefix("xtask-checkov-")
            .tempdir()
            .context("cannot create a scratch folder for checkov")?;
        let mut sources = Vec::new();
        for (i, group) in objects.chunk_by(|a, b| a.file == b.file).enumerate() {
            let name = format!("{i:04}.yaml");
            let documents: Vec<String> = group
                .iter()
                .map(|o| serde_json::to_string(&o.object))
                .collect::<Result<_, _>>()?;
            std::fs::write(rendered.path().join(&name), documents.join("\n---\n"))?;
            sources.push((name, group[0].file.display().to_string()));
        }

        let sh = xshell::Shell::new()?;
        let dir = rendered.path();
        let output = xshell::cmd!(
            sh,
            "{checkov} -d {dir} --framework kubernetes --skip-download --compact --quiet -o json"
        )
        .quiet()
        .ignore_status()
        .output()?;
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "checkov printed no JSON report (exit {:?}): {}",
                    output.status.code(),
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        let summary = checkov_summary(&json, &sources)?;
        print!("{summary}");
        if summary.failed > 0 {
            bail!(
                "checkov: {} failed checks; fix them or skip each in the manifest with a \
                 `checkov.io/skip<N>: <CHECK_ID>=<reason>` annotation",
                summary.failed
            );
        }
        Ok(())
    }
}

/// Counts and failures from checkov's JSON report.
#[derive(Debug, PartialEq)]
struct CheckovSummary {
    passed: u64,
    failed: u64,
    skipped: u64,
    resources: u64,
    /// `(check id, resource, source file, check name)`.
    failures: Vec<(String, String, String, String)>,
}

impl std::fmt::Display for CheckovSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (id, resource, file, name) in &self.failures {
            writeln!(f, "failed  {id}  {resource}  {file}  {name}")?;
        }
        writeln!(
            f,
            "checkov {CHECKOV_VERSION}: {} resources, {} passed, {} failed, {} skipped",
            self.resources, self.passed, self.failed, self.skipped
        )
    }
}

/// Reads checkov's JSON (one report, or a list of one per framework), mapping rendered file
/// names back to the manifests they came from.
fn checkov_summary(
    json: &serde_json::Value,
    sources: &[(String, String)],
) -> anyhow::Result<CheckovSummary> {
    let reports: Vec<&serde_json::Value> = match json {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut summary = CheckovSummary {
        passed: 0,
        failed: 0,
        skipped: 0,
        resources: 0,
        failures: Vec::new(),
    };
    for report in reports {
        let counts = report
            .get("summary")
            .context("checkov's report has no summary")?;
        let count = |key: &str| counts.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        summary.passed += count("passed");
        summary.failed += count("failed");
        summary.skipped += count("skipped");
        summary.resources += count("resource_count");
        let failed = report
            .pointer("/results/failed_checks")
            .and_then(|f| f.as_array());
        for check in failed.into_iter().flatten() {
            let text = |key: &str| check.get(key).and_then(|v| v.as_str()).unwrap_or("");
            let rendered = text("file_path").trim_start_matches('/');
            let file = sources
                .iter()
                .find(|(name, _)| name == rendered)
                .map_or(rendered, |(_, source)| source.as_str());
            summary.failures.push((
                text("check_id").to_owned(),
                text("resource").to_owned(),
                file.to_owned(),
                text("check_name").to_owned(),
            ));
        }
    }
    summary.failures.sort();
    Ok(summary)
}

/// The checkov executable of a virtualenv in a stable cache folder, created (and checkov
/// installed from PyPI at the pinned version) on first use, reused after.
fn ensure_checkov() -> anyhow::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: cannot place the checkov virtualenv")?;
    let venv = cache.join("billing-platform").join("checkov-venv");
    let checkov = venv.join("bin").join("checkov");
    let pip = venv.join("bin").join("pip");
    let sh = xshell::Shell::new()?;
    let installed = checkov.is_file()
        && xshell::cmd!(sh, "{pip} show checkov")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|info| {
                info.lines()
                    .any(|l| l == format!("Version: {CHECKOV_VERSION}"))
            });
    if !installed {
        eprintln!(
            "installing checkov {CHECKOV_VERSION} into {}",
            venv.display()
        );
        xshell::cmd!(sh, "python3 -m venv {venv}")
            .run()
            .context("creating the checkov virtualenv needs python3 with the venv module")?;
        let requirement = format!("checkov=={CHECKOV_VERSION}");
        xshell::cmd!(
            sh,
            "{pip} install --quiet --disable-pip-version-check {requirement}"
        )
        .run()
        .with_context(|| format!("installing {requirement} from PyPI failed"))?;
    }
    Ok(checkov)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kustomize directory holding one compliant service, the way `gen` lays out an app.
    fn compliant_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = policies::bench::synthetic_objects(1);
        let mut resources = Vec::new();
        for object in &objects {
            let name = object
                .file
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
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

    fn check(dir: &tempfile::TempDir) -> Check {
        Check {
            paths: vec![dir.path().to_owned()],
            format: Format::Text,
            environment: Some("production".into()),
            exemptions: None,
        }
    }

    #[test]
    fn a_compliant_kustomize_tree_passes_the_check() {
        let dir = compliant_tree();
        let report = check(&dir).report().expect("loads and checks");
        assert_eq!(report.violations, [], "{report}");
        assert_eq!(report.objects_checked, 9);
        check(&dir).run().expect("no errors, exit zero");
    }

    /// Rewrites one file of a tree copy through `change`, one JSON document per object.
    fn edit_documents(path: &Path, change: impl Fn(&mut serde_json::Value)) {
        let documents: Vec<String> = policies::load_manifests(path)
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
        type Mistake = (&'static str, &'static str, fn(&mut serde_json::Value));
        let app = "flux/apps/payment-provider/production";
        let tenant = "flux/tenants/production/payment-provider";
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
            let check = || Check {
                paths: vec![dir.clone()],
                format: Format::Text,
                environment: Some("production".into()),
                exemptions: None,
            };
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
        let dir = compliant_tree();
        edit(&dir, "deployment.yaml", |d| {
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

    #[test]
    fn checkov_failures_point_at_the_source_manifest() {
        let json = serde_json::json!({
            "check_type": "kubernetes",
            "results": {"failed_checks": [{
                "check_id": "CKV_K8S_14", "check_name": "Image Tag should be fixed",
                "resource": "Deployment.shop.api", "file_path": "/0001.yaml",
            }]},
            "summary": {"passed": 10, "failed": 1, "skipped": 2, "resource_count": 3},
        });
        let sources = [(
            "0001.yaml".to_owned(),
            "flux/apps/api/kustomization.yaml".to_owned(),
        )];
        let summary = checkov_summary(&json, &sources).expect("valid report");
        assert_eq!(
            (summary.passed, summary.failed, summary.skipped),
            (10, 1, 2)
        );
        assert_eq!(summary.failures[0].2, "flux/apps/api/kustomization.yaml");
        assert!(summary.to_string().contains("1 failed, 2 skipped"));
    }
}
