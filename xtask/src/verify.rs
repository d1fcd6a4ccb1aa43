//! `cargo xtask verify`: the committed tree is current, every directory Flux points at builds with
//! `kubectl kustomize`, and the cross-object checks and the policy bundle pass; every problem is
//! listed, not the first.

use std::path::{Path, PathBuf};

use infra::{Spec, Tree};
use policies::{Admission, Bundle, CheckContext, Report, Severity, SourcedObject};

use crate::generate::{Mode, generate, load_spec};

#[derive(clap::Args)]
pub struct Verify {
    /// Load the spec from this directory instead of the built-in `infra/` one.
    #[arg(long, value_name = "DIR")]
    spec: Option<PathBuf>,
    /// Check the tree under this directory instead of the workspace root (the workspace's
    /// generated docs are then not checked).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl Verify {
    pub fn run(self) -> anyhow::Result<()> {
        let in_workspace = self.root.is_none();
        let root = self.root.unwrap_or_else(crate::project_root);
        let spec = load_spec(self.spec.as_deref())?;
        let tree = infra::render(&spec)?;
        let mut generated = generate(&root, &tree, Mode::Check)?;
        if in_workspace {
            crate::docs::generate_docs(&root, Mode::Check, &mut generated)?;
        }
        let mut problems = generated.problems;
        let roots: Vec<&str> = tree.roots().collect();
        let kustomize = kustomize_all(&root, &roots);
        problems.extend(kustomize);
        problems.extend(infra::checks::run(&tree).iter().map(ToString::to_string));
        let reports = policy_reports(&spec, &tree)?;
        for report in &reports {
            print!("{report}");
            problems.extend(
                report
                    .violations
                    .iter()
                    .filter(|v| v.severity == Severity::Error)
                    .map(|v| {
                        format!(
                            "{}: {}/{}/{}: policy {}: {}",
                            v.file, v.kind, v.namespace, v.name, v.rule, v.message
                        )
                    }),
            );
            problems.extend(report.unused_exemptions.iter().map(|e| {
                format!(
                    "policy exemption {} for {} matches no object: remove it from the spec or fix its name",
                    e.rule,
                    e.object()
                )
            }));
        }
        // Its own step: the digests this repository builds are the images it builds now.
        let image_pins = crate::image::spec_pin_problems(&crate::project_root(), &spec)?;
        let built_pins = spec
            .services
            .iter()
            .map(|s| s.built_digests().count())
            .sum::<usize>();
        problems.extend(image_pins);
        if problems.is_empty() {
            println!(
                "verify: ok ({} objects, {} kustomize builds, cross-object checks, {} policy reports and {built_pins} built-image digest(s) passed)",
                tree.objects().count(),
                roots.len(),
                reports.len()
            );
            return Ok(());
        }
        for problem in &problems {
            eprintln!("{problem}");
        }
        anyhow::bail!("verify found {} problem(s)", problems.len())
    }
}

/// The policy bundle over each environment's objects, with the spec's exemptions: the same rules
/// and exemptions the cluster enforces through the admission policies in the tree.
pub(crate) fn policy_reports(spec: &Spec, tree: &Tree) -> anyhow::Result<Vec<Report>> {
    let bundle = Bundle::builtin()?;
    let exemptions = spec.exemptions();
    // Environments are independent: one thread each, results in the spec's order.
    std::thread::scope(|scope| {
        let handles: Vec<_> = spec
            .environments
            .iter()
            .map(|env| {
                let exemptions = &exemptions;
                scope.spawn(move || {
                    let objects: Vec<SourcedObject> = tree
                        .entries()
                        .filter(|entry| entry.cluster == env.name)
                        .map(|entry| SourcedObject {
                            file: entry.file.into(),
                            object: entry.object.value().clone(),
                            admission: Admission::create_as(infra::render::applier(entry.file)),
                        })
                        .collect();
                    let context = CheckContext {
                        environment: Some(env.name.clone()),
                        user: None,
                    };
                    bundle.check(&context, &objects, exemptions)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| Ok(h.join().expect("a policy check does not panic")?))
            .collect()
    })
}

/// Builds every directory with `kubectl kustomize`, spread over the machine's cores.
fn kustomize_all(root: &Path, dirs: &[&str]) -> Vec<String> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(dirs.len().max(1));
    let chunk = dirs.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|dir| kustomize(root, dir))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a kustomize worker does not panic"))
            .collect()
    })
}

/// `None` when `kubectl kustomize DIR` builds, else the problem with kubectl's own message.
fn kustomize(root: &Path, dir: &str) -> Option<String> {
    crate::kustomize::build(&root.join(dir))
        .err()
        .map(|problem| format!("{dir}: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_kustomization_fails_to_build_and_names_the_directory() {
        crate::testing::require_kubectl();
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let dir = scratch.path().to_owned();
        std::fs::create_dir_all(dir.join("empty")).expect("temp dir is writable");
        let problem = kustomize(&dir, "empty").expect("no kustomization.yaml: the build fails");
        assert!(
            problem.starts_with("empty: `kubectl kustomize ")
                && problem.contains("/empty` fails: "),
            "{problem}"
        );
    }

    #[test]
    fn every_committed_flux_directory_builds_with_kubectl_kustomize() {
        crate::testing::require_kubectl();
        let roots: Vec<&str> = infra::testing::tree().roots().collect();
        assert_eq!(
            kustomize_all(&crate::project_root(), &roots),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_default_tree_has_no_policy_violations_and_lists_its_exemptions() {
        let spec = infra::testing::spec();
        let reports = policy_reports(spec, infra::testing::tree()).expect("the bundle runs");
        assert_eq!(reports.len(), spec.environments.len());
        for report in &reports {
            assert_eq!(report.violations, [], "{report}");
            assert_eq!(report.unused_exemptions, [], "{report}");
            let exempted: Vec<_> = report
                .exempted
                .iter()
                .map(|e| (e.rule.as_str(), e.kind.as_str(), e.name.as_str()))
                .collect();
            assert!(
                exempted.contains(&("run-as-non-root", "Deployment", "antaeus")),
                "{report}"
            );
            // Antaeus' LoadBalancer is not an exemption any more: its namespace's platform
            // settings expose it, so no-external-services passes it as it is.
            assert!(
                !exempted
                    .iter()
                    .any(|(rule, _, _)| *rule == "no-external-services"),
                "{report}"
            );
        }
    }
}
