//! `cargo xtask verify`: the committed tree is current, every directory Flux points at builds the
//! way `kubectl kustomize` builds it ([`crate::kustomize::builds`]), and the cross-object checks
//! and the policy bundle pass; every problem is listed, not the first.

use std::path::PathBuf;

use infra::{Spec, Tree};
use policies::{Admission, Bundle, CheckContext, Report, Severity, SourcedRef};

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
    /// Build every directory Flux points at with `kubectl kustomize` (one process each: minutes
    /// at thousands of services) instead of the in-process build checked against the real tool
    /// on the first and last directory of each shape.
    #[arg(long)]
    kustomize_all: bool,
}

impl Verify {
    pub fn run(self) -> anyhow::Result<()> {
        let in_workspace = self.root.is_none();
        let root = self.root.unwrap_or_else(crate::project_root);
        let spec = load_spec(self.spec.as_deref())?;
        // The process ends with this command: its tree (every object twice, as YAML and JSON)
        // is left for the OS to reclaim instead of being freed object by object (~2% of CPU).
        let tree: &Tree = Box::leak(Box::new(infra::render(&spec)?));
        // The steps only read the tree: the file comparison and the kustomize builds (mostly
        // disk and kubectl processes), the cross-object checks and the policy bundle (one thread
        // per environment) run side by side.
        let (files, checks, reports) = std::thread::scope(|scope| {
            let files = scope.spawn(|| -> anyhow::Result<_> {
                let mut generated = generate(&root, tree, Mode::Check)?;
                if in_workspace {
                    crate::docs::generate_docs(&root, Mode::Check, &mut generated)?;
                }
                // Paths on disk that are not the rendered tree's: their roots go to the real tool.
                let differing: Vec<String> = generated
                    .written
                    .iter()
                    .chain(&generated.removed)
                    .cloned()
                    .collect();
                let builds =
                    crate::kustomize::builds::check(&root, tree, &differing, self.kustomize_all);
                Ok((generated.problems, builds))
            });
            let checks = scope.spawn(|| infra::checks::run(tree));
            let reports = policy_reports(&spec, tree);
            (
                files.join().expect("the file check does not panic"),
                checks.join().expect("the cross-object checks do not panic"),
                reports,
            )
        });
        let (mut problems, builds) = files?;
        problems.extend(builds.problems);
        problems.extend(checks.iter().map(ToString::to_string));
        let reports = reports?;
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
                "verify: ok ({} objects; {} directories build: {} with `kubectl kustomize`, {} in process; cross-object checks, {} policy reports and {built_pins} built-image digest(s) passed)",
                tree.objects().count(),
                builds.real.len() + builds.modelled,
                builds.real.len(),
                builds.modelled,
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
                    // The tree's own objects, borrowed; each file's request is a CREATE by the
                    // identity that applies the file (one Admission per file, not per object).
                    let entries: Vec<_> = tree
                        .entries()
                        .filter(|entry| entry.cluster == env.name)
                        .collect();
                    let mut admissions: std::collections::HashMap<&str, Admission> =
                        std::collections::HashMap::new();
                    for entry in &entries {
                        admissions.entry(entry.file).or_insert_with(|| {
                            Admission::create_as(infra::render::applier(entry.file))
                        });
                    }
                    let objects: Vec<SourcedRef> = entries
                        .iter()
                        .map(|entry| SourcedRef {
                            file: std::path::Path::new(entry.file),
                            object: entry.object.value(),
                            admission: &admissions[entry.file],
                        })
                        .collect();
                    let context = CheckContext {
                        environment: Some(env.name.clone()),
                        user: None,
                    };
                    bundle.check_borrowed(&context, &objects, exemptions)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| Ok(h.join().expect("a policy check does not panic")?))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
