//! `cargo xtask gen`: renders the platform spec into `flux/` and `.github/CODEOWNERS`, and the
//! rule table of `docs/policies.md` from the rules ([`crate::docs`]).
//!
//! One write path: `gen` and `verify` both call [`generate`], which goes through
//! [`ensure_file_contents`]; in check mode nothing is written and every stale, missing or stray
//! file is reported with a diff and the fixing command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use infra::{Spec, Tree};

/// The directory every generated file but CODEOWNERS lives in; anything else in it is stray.
pub(crate) const GENERATED_DIR: &str = "flux";

#[derive(clap::Args)]
pub struct Gen {
    /// Load the spec from this directory (`platform.toml` + `services/*.toml`) instead of the
    /// built-in `infra/` one.
    #[arg(long, value_name = "DIR")]
    spec: Option<PathBuf>,
    /// Write `flux/` and `.github/CODEOWNERS` under this directory instead of the workspace root
    /// (e.g. a scratch git repository for an end-to-end run); the workspace's docs are then left
    /// alone.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl Gen {
    pub fn run(self) -> anyhow::Result<()> {
        let spec = load_spec(self.spec.as_deref())?;
        let in_workspace = self.root.is_none();
        let root = self.root.unwrap_or_else(crate::project_root);
        let (tree, mut outcome) = generate_streaming(&root, &spec, Mode::Write)?;
        if in_workspace {
            crate::docs::generate_docs(&root, Mode::Write, &mut outcome)?;
        }
        let kinds = tree
            .kind_counts()
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("objects: {kinds}");
        println!(
            "files: {} written, {} unchanged, {} removed",
            outcome.written.len(),
            outcome.unchanged,
            outcome.removed.len()
        );
        for path in outcome.written.iter().chain(&outcome.removed) {
            println!("  {path}");
        }
        Ok(())
    }
}

/// The built-in spec, or the one in `dir`.
pub(crate) fn load_spec(dir: Option<&Path>) -> anyhow::Result<Spec> {
    Ok(match dir {
        Some(dir) => Spec::load(dir)?,
        None => Spec::embedded()?,
    })
}

/// Write the tree, or only compare it with what is on disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Write,
    Check,
}

/// What [`generate`] did (write mode) or found (check mode).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Files written (write mode) or that would be (check mode).
    pub written: Vec<String>,
    pub unchanged: usize,
    /// Stray files deleted (write mode) or found (check mode).
    pub removed: Vec<String>,
    /// Check mode: one entry per stale, missing or stray file, with its diff and the fix.
    pub problems: Vec<String>,
}

/// Brings `root` in line with `tree` (write mode) or reports every difference (check mode).
pub(crate) fn generate(root: &Path, tree: &Tree, mode: Mode) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    finish(root, tree, mode, &mut outcome)?;
    Ok(outcome)
}

/// [`generate`] for `spec`, each file written (or compared) as soon as it is rendered: memory
/// holds a batch of services, not the tree. The tree returned keeps paths and counts only.
pub(crate) fn generate_streaming(
    root: &Path,
    spec: &Spec,
    mode: Mode,
) -> anyhow::Result<(Tree, Outcome)> {
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(Outcome::default()));
    let sink = {
        let (root, outcome) = (root.to_owned(), outcome.clone());
        Box::new(move |path: &str, text: &str| {
            let mut outcome = outcome.lock().unwrap_or_else(|p| p.into_inner());
            ensure_file_contents(&root, path, text, mode, "cargo xtask gen", &mut outcome)
                .map_err(Into::into)
        })
    };
    let tree = infra::render_into(spec, Tree::streaming(sink))?;
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(|p| p.into_inner()));
    finish(root, &tree, mode, &mut outcome)?;
    Ok((tree, outcome))
}

/// Writes what the tree still holds (all of a full tree, the kustomization files of a streaming
/// one) and deletes (or reports) every file under `flux/` the tree does not generate.
fn finish(root: &Path, tree: &Tree, mode: Mode, outcome: &mut Outcome) -> anyhow::Result<()> {
    tree.render_each(|path, contents| {
        ensure_file_contents(root, path, contents, mode, "cargo xtask gen", outcome)
    })?;
    let paths: BTreeSet<String> = tree.paths().collect();
    for stray in stray_files(root, &paths)? {
        match mode {
            Mode::Write => {
                let full = root.join(&stray);
                std::fs::remove_file(&full)
                    .with_context(|| format!("cannot remove stray file {}", full.display()))?;
                remove_empty_parents(root, &full);
            }
            Mode::Check => outcome.problems.push(format!(
                "{stray}: stray file in the generated directory `{GENERATED_DIR}/` (gen would delete it): run `cargo xtask gen`"
            )),
        }
        outcome.removed.push(stray);
    }
    Ok(())
}

/// The single place generated files are written; `fix` is the command that regenerates `path`.
pub(crate) fn ensure_file_contents(
    root: &Path,
    path: &str,
    contents: &str,
    mode: Mode,
    fix: &str,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let full = root.join(path);
    let current = match std::fs::read_to_string(&full) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", full.display())),
    };
    if current.as_deref() == Some(contents) {
        outcome.unchanged += 1;
        return Ok(());
    }
    outcome.written.push(path.to_owned());
    match mode {
        Mode::Write => {
            if let Some(dir) = full.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&full, contents)
                .with_context(|| format!("cannot write {}", full.display()))?;
        }
        Mode::Check => {
            let name = fix.trim_start_matches("cargo xtask ");
            let problem = match current {
                None => format!("{path}: missing ({name} would create it): run `{fix}`"),
                Some(old) => {
                    let diff = similar::TextDiff::from_lines(old.as_str(), contents)
                        .unified_diff()
                        .context_radius(2)
                        .header(
                            &format!("a/{path} (committed)"),
                            &format!("b/{path} (generated)"),
                        )
                        .to_string();
                    format!("{path}: stale, differs from what {name} writes: run `{fix}`\n{diff}")
                }
            };
            outcome.problems.push(problem);
        }
    }
    Ok(())
}

/// Files under the generated directory that the tree does not produce, relative to `root`.
fn stray_files(root: &Path, files: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let mut stray = Vec::new();
    let mut pending = vec![root.join(GENERATED_DIR)];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .expect("walked from inside root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !files.contains(&relative) {
                stray.push(relative);
            }
        }
    }
    stray.sort();
    Ok(stray)
}

/// Removes directories left empty by a deletion, up to the generated directory.
fn remove_empty_parents(root: &Path, file: &Path) {
    let top = root.join(GENERATED_DIR);
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == top || !d.starts_with(&top) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh scratch directory, removed when the returned guard drops (also on failure).
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let guard = tempfile::tempdir().expect("a scratch dir");
        let dir = guard.path().to_owned();
        (guard, dir)
    }

    #[test]
    fn streaming_gen_writes_the_bytes_of_the_whole_tree_and_removes_strays_alike() {
        let (_a, whole) = scratch();
        let (_b, streamed) = scratch();
        let spec = infra::testing::spec();
        let first = generate(&whole, infra::testing::tree(), Mode::Write).expect("writes");
        std::fs::create_dir_all(streamed.join("flux/apps/gone")).expect("mkdir");
        std::fs::write(streamed.join("flux/apps/gone/old.yaml"), "x").expect("write");
        let (tree, outcome) = generate_streaming(&streamed, spec, Mode::Write).expect("writes");
        assert_eq!(outcome.written.len(), first.written.len());
        assert_eq!(outcome.removed, ["flux/apps/gone/old.yaml"]);
        assert_eq!(
            tree.entries().count(),
            0,
            "a streaming tree keeps no objects"
        );
        assert_eq!(tree.kind_counts(), infra::testing::tree().kind_counts());
        for path in &first.written {
            assert_eq!(
                std::fs::read_to_string(streamed.join(path)).expect("streamed"),
                std::fs::read_to_string(whole.join(path)).expect("whole"),
                "{path}"
            );
        }
        // Check mode streams too: the written tree is current, a changed file is reported.
        let (_, current) = generate_streaming(&streamed, spec, Mode::Check).expect("reads");
        assert_eq!(current.problems, Vec::<String>::new());
        let file = streamed.join("flux/apps/antaeus/production/service.yaml");
        std::fs::write(&file, "changed").expect("write");
        let (_, stale) = generate_streaming(&streamed, spec, Mode::Check).expect("reads");
        assert_eq!(stale.problems.len(), 1, "{:?}", stale.problems);
        assert!(stale.problems[0].starts_with("flux/apps/antaeus/production/service.yaml: stale"));
    }

    #[test]
    fn a_file_the_sink_cannot_write_fails_gen_naming_the_file() {
        let (_guard, dir) = scratch();
        // `flux` is a file: nothing under it can be created.
        std::fs::write(dir.join("flux"), "not a directory").expect("write");
        let err = generate_streaming(&dir, infra::testing::spec(), Mode::Write)
            .expect_err("cannot write under a file");
        let chain = format!("{err:#}");
        assert!(chain.starts_with("cannot write flux/"), "{chain}");
        assert!(chain.contains("Not a directory"), "{chain}");
    }

    #[test]
    fn the_committed_flux_tree_and_codeowners_are_current() {
        let outcome = generate(&crate::project_root(), infra::testing::tree(), Mode::Check)
            .expect("the workspace is readable");
        assert!(
            outcome.problems.is_empty(),
            "the committed tree is stale; run `cargo xtask gen`:\n{}",
            outcome.problems.join("\n")
        );
    }

    #[test]
    fn generating_twice_changes_nothing_the_second_time() {
        let (_scratch, dir) = scratch();
        let tree = infra::testing::tree();
        let first = generate(&dir, tree, Mode::Write).expect("writes");
        assert!(!first.written.is_empty());
        let second = generate(&dir, tree, Mode::Write).expect("writes");
        assert!(second.written.is_empty() && second.removed.is_empty());
        assert_eq!(second.unchanged, first.written.len());
    }

    #[test]
    fn check_mode_reports_stale_missing_and_stray_files_with_the_fix() {
        let (_scratch, dir) = scratch();
        let tree = infra::testing::tree();
        generate(&dir, tree, Mode::Write).expect("writes");
        let stale = "flux/apps/antaeus/production/service.yaml";
        let text = std::fs::read_to_string(dir.join(stale)).expect("generated");
        std::fs::write(dir.join(stale), text.replace("port: 8000", "port: 8001"))
            .expect("writable");
        std::fs::remove_file(dir.join("flux/clusters/staging/infrastructure.yaml"))
            .expect("generated");
        std::fs::write(
            dir.join("flux/apps/antaeus/production/extra.yaml"),
            "kind: ConfigMap\n",
        )
        .expect("writable");

        let outcome = generate(&dir, tree, Mode::Check).expect("reads");
        let all = outcome.problems.join("\n");
        assert_eq!(outcome.problems.len(), 3, "{all}");
        assert!(
            all.contains(&format!(
                "{stale}: stale, differs from what gen writes: run `cargo xtask gen`"
            )),
            "{all}"
        );
        assert!(
            all.contains("-  - port: 8001") || all.contains("-    port: 8001"),
            "{all}"
        );
        assert!(all.contains("flux/clusters/staging/infrastructure.yaml: missing (gen would create it): run `cargo xtask gen`"), "{all}");
        assert!(
            all.contains("flux/apps/antaeus/production/extra.yaml: stray file"),
            "{all}"
        );
        assert!(
            dir.join("flux/apps/antaeus/production/extra.yaml").exists(),
            "check mode must not delete"
        );

        let fixed = generate(&dir, tree, Mode::Write).expect("writes");
        assert_eq!(fixed.removed, ["flux/apps/antaeus/production/extra.yaml"]);
        assert!(
            generate(&dir, tree, Mode::Check)
                .expect("reads")
                .problems
                .is_empty()
        );
    }

    #[test]
    fn gen_deletes_a_service_it_no_longer_generates_and_its_empty_directories() {
        let (_scratch, dir) = scratch();
        generate(&dir, infra::testing::tree(), Mode::Write).expect("writes");
        let old = dir.join("flux/apps/old-service/production");
        std::fs::create_dir_all(&old).expect("writable");
        std::fs::write(old.join("deployment.yaml"), "kind: Deployment\n").expect("writable");
        let outcome = generate(&dir, infra::testing::tree(), Mode::Write).expect("writes");
        assert_eq!(
            outcome.removed,
            ["flux/apps/old-service/production/deployment.yaml"]
        );
        assert!(!dir.join("flux/apps/old-service").exists());
    }
}
