//! `cargo xtask policy checkov`: checkov's Kubernetes checks over the rendered manifests, the
//! independent second opinion on the policy bundle (pinned, in a cached virtualenv).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// checkov release the second opinion is pinned to; bump deliberately, its checks change.
const CHECKOV_VERSION: &str = "3.3.30";

#[derive(clap::Args)]
pub(crate) struct Checkov {
    /// Directories or files to scan (kustomize directories are built first); default `flux/`.
    paths: Vec<PathBuf>,
}

impl Checkov {
    pub(crate) fn run(self) -> anyhow::Result<()> {
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
        let objects = crate::policy::load(&paths)?;
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
