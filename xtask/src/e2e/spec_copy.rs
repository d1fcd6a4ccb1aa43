//! The e2e's changes to the served tree go the documented way: it edits its own copy of the spec
//! (`infra/platform.toml`, `infra/services/<service>.toml`) with `toml_edit`, so comments and
//! layout stay as a person would leave them, renders that copy with `cargo xtask gen --spec
//! <copy>/infra --root <copy>` run as a child of this very executable, and the caller commits the
//! result for Flux. No generated file is edited by hand, except in the one case no spec renders:
//! a tree given with `--flux-dir`, whose git URLs and OCI registries [`rewrite_urls`] rewrites in
//! its YAML.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// The spec folder inside a checkout, as `cargo xtask gen --spec` takes it.
const SPEC_DIR: &str = "infra";

/// The spec of the working clone the e2e commits from.
pub struct SpecCopy {
    /// The working clone: the spec is under `infra/`, the tree is rendered into `flux/`.
    root: PathBuf,
    /// The environment the run bootstraps (whose replicas a change must reach).
    env: String,
}

/// A replicas change: which key of which file, from what to what.
#[derive(Debug, PartialEq, Eq)]
pub struct Scaled {
    /// The file, relative to the clone (`infra/services/<service>.toml`).
    pub file: String,
    /// The dotted key that was changed (`replicas` or `environments.<env>.replicas`).
    pub key: String,
    pub before: i64,
    pub after: i64,
}

impl SpecCopy {
    pub fn new(root: &Path, env: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            env: env.to_string(),
        }
    }

    /// Points `[platform.git] url` (every GitRepository the generator writes) at `url`.
    pub fn set_git_url(&self, url: &str) -> anyhow::Result<()> {
        let file = format!("{SPEC_DIR}/platform.toml");
        self.edit(&file, |text| with_git_url(text, &file, url))
    }

    /// Points `[platform.artifacts] repository` (every OCIRepository of the tree) at `repository`.
    pub fn set_artifact_repository(&self, repository: &str) -> anyhow::Result<()> {
        let file = format!("{SPEC_DIR}/platform.toml");
        self.edit(&file, |text| {
            with_artifact_repository(text, &file, repository)
        })
    }

    /// Adds `by` to the replicas `service` runs in the run's environment: its
    /// `[environments.<env>] replicas` when the file sets one, else its top-level `replicas`.
    pub fn scale(&self, service: &str, by: i64) -> anyhow::Result<Scaled> {
        let file = format!("{SPEC_DIR}/services/{service}.toml");
        let mut scaled = None;
        self.edit(&file, |text| {
            let (new, change) = with_more_replicas(text, &file, &self.env, by)?;
            scaled = Some(change);
            Ok(new)
        })?;
        Ok(scaled.expect("edit ran the closure, which set it"))
    }

    /// `cargo xtask gen --spec <clone>/infra --root <clone>`, as a child of the running xtask;
    /// returns gen's summary lines.
    pub fn render(&self, sh: &Shell) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("finding the xtask binary to run `gen` with")?;
        let spec = self.root.join(SPEC_DIR);
        let root = &self.root;
        cmd!(sh, "{exe} gen --spec {spec} --root {root}")
            .quiet()
            .read()
            .with_context(|| {
                format!(
                    "`cargo xtask gen --spec {} --root {}` failed on the e2e's copy of the spec",
                    spec.display(),
                    root.display()
                )
            })
    }

    /// Rewrites `file` (relative to the clone) through `change`.
    fn edit(
        &self,
        file: &str,
        change: impl FnOnce(&str) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        let path = self.root.join(file);
        if !path.is_file() {
            bail!(
                "{file} does not exist in the e2e's copy of the spec ({}): no such service or spec file",
                self.root.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let new = change(&text)?;
        std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
    }
}

/// `text` (the platform file `file`) with `[platform.git] url = "<url>"`, all else as it was.
fn with_git_url(text: &str, file: &str, url: &str) -> anyhow::Result<String> {
    let mut doc = parse(text, file)?;
    let value = doc
        .get_mut("platform")
        .and_then(|p| p.get_mut("git"))
        .and_then(|g| g.get_mut("url"))
        .and_then(toml_edit::Item::as_value_mut)
        .with_context(|| format!("{file} has no key `platform.git.url` to point at {url}"))?;
    if !value.is_str() {
        bail!("{file}: `platform.git.url` is not a string");
    }
    replace_keeping_decor(value, toml_edit::Value::from(url));
    Ok(doc.to_string())
}

/// `text` (the platform file `file`) with `[platform.artifacts] repository = "<repository>"`
/// (the section is added when the file relies on the default), all else as it was.
fn with_artifact_repository(text: &str, file: &str, repository: &str) -> anyhow::Result<String> {
    let mut doc = parse(text, file)?;
    let platform = doc
        .get_mut("platform")
        .and_then(toml_edit::Item::as_table_like_mut)
        .with_context(|| format!("{file} has no [platform] table"))?;
    let artifacts = platform
        .entry("artifacts")
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .with_context(|| format!("{file}: `platform.artifacts` is not a table"))?;
    match artifacts
        .get_mut("repository")
        .and_then(toml_edit::Item::as_value_mut)
    {
        Some(value) => replace_keeping_decor(value, toml_edit::Value::from(repository)),
        None => {
            artifacts.insert("repository", toml_edit::value(repository));
        }
    }
    Ok(doc.to_string())
}

/// `text` (the service file `file`) with `by` more replicas in `env`, and what changed.
fn with_more_replicas(
    text: &str,
    file: &str,
    env: &str,
    by: i64,
) -> anyhow::Result<(String, Scaled)> {
    let mut doc = parse(text, file)?;
    // The environment's override wins over the service's default, so it is the one to change.
    let in_env = doc
        .get("environments")
        .and_then(|e| e.get(env))
        .and_then(|e| e.get("replicas"))
        .is_some();
    let (key, item) = if in_env {
        (
            format!("environments.{env}.replicas"),
            doc["environments"][env].get_mut("replicas"),
        )
    } else {
        ("replicas".to_string(), doc.get_mut("replicas"))
    };
    let value = item
        .and_then(toml_edit::Item::as_value_mut)
        .with_context(|| {
            format!(
                "{file} has no key `replicas` (nor `environments.{env}.replicas`) to change; write the service's count, e.g. `replicas = 1`"
            )
        })?;
    let before = value
        .as_integer()
        .with_context(|| format!("{file}: `{key}` is not an integer"))?;
    let after = before + by;
    replace_keeping_decor(value, toml_edit::Value::from(after));
    let scaled = Scaled {
        file: file.to_string(),
        key,
        before,
        after,
    };
    Ok((doc.to_string(), scaled))
}

fn parse(text: &str, file: &str) -> anyhow::Result<toml_edit::DocumentMut> {
    text.parse()
        .with_context(|| format!("{file} is not valid TOML"))
}

/// Puts `new` in place of `value`, keeping the comments and spacing around the old one.
fn replace_keeping_decor(value: &mut toml_edit::Value, new: toml_edit::Value) {
    let decor = value.decor().clone();
    *value = new;
    *value.decor_mut() = decor;
}

/// Replaces each GitRepository URL of the tree by the loopback one, and the registry of each
/// OCIRepository URL by `registry` (`HOST:PORT`), in every YAML file under `flux/`: only for a
/// tree given with `--flux-dir`, which no spec of this checkout renders.
pub fn rewrite_urls(dir: &Path, urls: &[String], to: &str, registry: &str) -> anyhow::Result<()> {
    if urls.is_empty() {
        bail!(
            "{} has no GitRepository: Flux would have nothing to reconcile",
            dir.display()
        );
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rewrite_urls(&path, urls, to, registry)?;
        } else {
            rewrite_file(&path, urls, to, registry)?;
        }
    }
    Ok(())
}

fn rewrite_file(path: &Path, urls: &[String], to: &str, registry: &str) -> anyhow::Result<()> {
    if path.extension().is_none_or(|e| e != "yaml" && e != "yml") {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let mut new = text.clone();
    for url in urls {
        new = new.replace(&format!("url: {url}\n"), &format!("url: {to}\n"));
    }
    let new: String = new
        .split_inclusive('\n')
        .map(|line| {
            let Some((indent, rest)) = line.split_once("url: oci://") else {
                return line.to_owned();
            };
            match rest.split_once('/') {
                Some((_host, path)) if indent.trim().is_empty() => {
                    format!("{indent}url: oci://{registry}/{path}")
                }
                _ => line.to_owned(),
            }
        })
        .collect();
    if new != text {
        std::fs::write(path, new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLATFORM: &str = "\
# The platform.
[platform]
name = \"billing\"

[platform.git]
url = \"https://github.com/billing-platform/billing\" # where Flux pulls from
branch = \"main\"
";

    const SERVICE: &str = "\
# A service.
team = \"invoicing\"
replicas = 1 # one: the data is scratch

[environments.production]
digest = \"sha256:aaaa\"
";

    #[test]
    fn the_git_url_edit_changes_the_url_and_nothing_else() {
        let new = with_git_url(PLATFORM, "infra/platform.toml", "http://127.0.0.1:1/b.git")
            .expect("edits");
        assert_eq!(
            new,
            PLATFORM.replace(
                "https://github.com/billing-platform/billing",
                "http://127.0.0.1:1/b.git"
            )
        );
    }

    #[test]
    fn the_artifact_repository_is_set_or_its_section_added() {
        let added = with_artifact_repository(PLATFORM, "p.toml", "127.0.0.1:1/m").expect("adds");
        assert_eq!(
            added,
            format!("{PLATFORM}\n[platform.artifacts]\nrepository = \"127.0.0.1:1/m\"\n")
        );
        let set = with_artifact_repository(&added, "p.toml", "127.0.0.1:2/n").expect("sets");
        assert_eq!(set, added.replace("127.0.0.1:1/m", "127.0.0.1:2/n"));
        let err = with_artifact_repository("x = 1\n", "p.toml", "r").expect_err("no platform");
        assert_eq!(err.to_string(), "p.toml has no [platform] table");
    }

    #[test]
    fn a_platform_file_without_a_git_url_names_the_file_and_the_key() {
        let err = with_git_url(
            "[platform]\nname = \"x\"\n",
            "infra/platform.toml",
            "http://x",
        )
        .expect_err("no url")
        .to_string();
        assert_eq!(
            err,
            "infra/platform.toml has no key `platform.git.url` to point at http://x"
        );
    }

    #[test]
    fn the_replicas_edit_changes_the_replicas_and_nothing_else() {
        let (new, scaled) =
            with_more_replicas(SERVICE, "infra/services/a.toml", "production", 1).expect("edits");
        assert_eq!(new, SERVICE.replace("replicas = 1 #", "replicas = 2 #"));
        assert_eq!(
            scaled,
            Scaled {
                file: "infra/services/a.toml".into(),
                key: "replicas".into(),
                before: 1,
                after: 2
            }
        );
    }

    #[test]
    fn the_environments_own_replicas_are_the_ones_changed() {
        let text = "replicas = 2\n\n[environments.production]\nreplicas = 3\n\n[environments.staging]\nreplicas = 2\n";
        let (new, scaled) = with_more_replicas(text, "s.toml", "production", 1).expect("edits");
        assert_eq!(
            new,
            "replicas = 2\n\n[environments.production]\nreplicas = 4\n\n[environments.staging]\nreplicas = 2\n"
        );
        assert_eq!(scaled.key, "environments.production.replicas");
        assert_eq!((scaled.before, scaled.after), (3, 4));
        // Staging has its own too; an environment without one falls back to the service's.
        let (_, scaled) = with_more_replicas(text, "s.toml", "qa", 1).expect("edits");
        assert_eq!((scaled.key.as_str(), scaled.before), ("replicas", 2));
    }

    #[test]
    fn a_service_file_without_replicas_names_the_file_and_the_key() {
        let err = with_more_replicas("team = \"x\"\n", "infra/services/a.toml", "production", 1)
            .expect_err("no replicas")
            .to_string();
        assert!(
            err.starts_with(
                "infra/services/a.toml has no key `replicas` (nor `environments.production.replicas`)"
            ),
            "{err}"
        );
        let err = with_more_replicas("replicas = \"2\"\n", "s.toml", "production", 1)
            .expect_err("a string")
            .to_string();
        assert_eq!(err, "s.toml: `replicas` is not an integer");
    }

    #[test]
    fn a_missing_service_names_its_file() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let copy = SpecCopy::new(scratch.path(), "production");
        let err = copy.scale("nope", 1).expect_err("no such file").to_string();
        assert!(
            err.starts_with(
                "infra/services/nope.toml does not exist in the e2e's copy of the spec"
            ),
            "{err}"
        );
    }

    #[test]
    fn edits_land_in_the_copy_and_the_copy_still_loads_as_a_spec() {
        // The shipped spec, copied: the edits must keep it a valid spec with the new values.
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let root = scratch.path();
        let shipped = crate::project_root().join(SPEC_DIR);
        std::fs::create_dir_all(root.join("infra/services")).unwrap();
        std::fs::copy(
            shipped.join("platform.toml"),
            root.join("infra/platform.toml"),
        )
        .unwrap();
        for entry in std::fs::read_dir(shipped.join("services")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(
                &path,
                root.join("infra/services").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
        let copy = SpecCopy::new(root, "production");
        copy.set_git_url("http://127.0.0.1:1/billing-platform.git")
            .expect("sets the url");
        copy.set_artifact_repository("127.0.0.1:2/billing-platform/manifests")
            .expect("sets the repository");
        let scaled = copy.scale("antaeus", 1).expect("scales");
        let spec = infra::Spec::load(&root.join(SPEC_DIR)).expect("still a valid spec");
        assert_eq!(
            spec.platform.git.url,
            "http://127.0.0.1:1/billing-platform.git"
        );
        assert_eq!(
            spec.platform.artifact_repository(),
            "127.0.0.1:2/billing-platform/manifests"
        );
        let antaeus = spec.service("antaeus").expect("declared");
        assert_eq!(i64::from(antaeus.replicas), scaled.after);
        assert_eq!(scaled.after, scaled.before + 1);
    }

    #[test]
    fn git_urls_are_rewritten_in_yaml_files_only() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let dir = scratch.path().to_owned();
        std::fs::create_dir_all(dir.join("tenants")).unwrap();
        let yaml = "spec:\n  url: https://example.invalid/repo\n---\nspec:\n  url: oci://ghcr.io/org/manifests/shop\n";
        std::fs::write(dir.join("tenants/sync.yaml"), yaml).unwrap();
        std::fs::write(dir.join("notes.txt"), yaml).unwrap();
        let urls = ["https://example.invalid/repo".to_string()];
        rewrite_urls(&dir, &urls, "http://127.0.0.1:1/r.git", "127.0.0.1:2").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("tenants/sync.yaml")).unwrap(),
            "spec:\n  url: http://127.0.0.1:1/r.git\n---\nspec:\n  url: oci://127.0.0.1:2/org/manifests/shop\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            yaml
        );
    }

    #[test]
    fn a_tree_without_git_repositories_is_refused() {
        let err =
            rewrite_urls(Path::new("/nonexistent"), &[], "http://x", "127.0.0.1:1").unwrap_err();
        assert!(err.to_string().contains("has no GitRepository"), "{err}");
    }
}
