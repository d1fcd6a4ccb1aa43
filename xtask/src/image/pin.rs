//! The provider's production digest in the spec: read it, and (`--pin`) write the built image's
//! digest into `infra/services/payment-provider.toml` with its comments and layout kept, then
//! regenerate `flux/` through the same code path as `cargo xtask gen`; and `verify`'s step that
//! every digest the spec says this repository builds is the image built now.

use std::path::Path;

use anyhow::{Context, bail};

use super::{BINARY, Built, Created, build};
use crate::generate::{Mode, generate, load_spec};

/// The service file the provider's digest is pinned in, relative to the workspace root.
pub const SERVICE_FILE: &str = "infra/services/payment-provider.toml";

/// The `[environments.production] digest` of the service file in `root`, if it has one.
pub fn pinned(root: &Path) -> anyhow::Result<Option<String>> {
    let path = root.join(SERVICE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    Ok(doc
        .get("environments")
        .and_then(|e| e.get("production"))
        .and_then(|p| p.get("digest"))
        .and_then(|d| d.as_str())
        .map(str::to_owned))
}

/// `text` with `[environments.production] digest = "<digest>"`, everything else as it was.
pub fn with_digest(text: &str, digest: &str) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().context("the service file is not valid TOML")?;
    let production = doc
        .get_mut("environments")
        .and_then(|e| e.get_mut("production"))
        .and_then(|p| p.as_table_like_mut())
        .context("the service file has no [environments.production] table to pin the digest in")?;
    match production.get_mut("digest") {
        Some(item) => {
            let Some(value) = item.as_value_mut() else {
                bail!("[environments.production] digest is not a string");
            };
            // Keep the comments and spacing around the old value.
            let decor = value.decor().clone();
            *value = toml_edit::Value::from(digest);
            *value.decor_mut() = decor;
        }
        None => {
            production.insert("digest", toml_edit::value(digest));
        }
    }
    Ok(doc.to_string())
}

/// Writes `digest` into the service file and regenerates `flux/`; returns whether the pin changed.
pub fn pin(root: &Path, digest: &str) -> anyhow::Result<bool> {
    let path = root.join(SERVICE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let new = with_digest(&text, digest)
        .with_context(|| format!("cannot pin the digest in {}", path.display()))?;
    let changed = new != text;
    if changed {
        std::fs::write(&path, &new).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // From the files on disk: the spec embedded in this xtask binary predates the edit.
    let spec = load_spec(Some(&root.join("infra")))?;
    let tree = infra::render(&spec)?;
    let outcome = generate(root, &tree, Mode::Write)?;
    println!(
        "pin: {SERVICE_FILE} [environments.production] digest = {digest}{}; flux/: {} written, {} unchanged",
        if changed { "" } else { " (already)" },
        outcome.written.len(),
        outcome.unchanged
    );
    for file in &outcome.written {
        println!("  {file}");
    }
    Ok(changed)
}

/// `None` when the spec's production digest is this image's, else the problem and its fix.
pub fn pin_problem(root: &Path, built: &Built) -> anyhow::Result<Option<String>> {
    let pinned = pinned(root)?;
    Ok(mismatch(
        built,
        &format!("{}: [environments.production] digest", SERVICE_FILE),
        pinned.as_deref(),
    ))
}

/// `None` when `pinned` is the built image's digest, else what is wrong with `what` and the fix.
fn mismatch(built: &Built, what: &str, pinned: Option<&str>) -> Option<String> {
    let digest = &built.written.manifest_digest;
    if pinned == Some(digest.as_str()) {
        return None;
    }
    let pinned = pinned.unwrap_or("no digest");
    Some(if built.sources.is_dirty() {
        format!(
            "{what} is {pinned}, but the image built from this working tree is {digest} and its inputs have uncommitted changes ({}): commit them, then run `cargo xtask image --pin`",
            built.sources.dirty.join(", ")
        )
    } else {
        format!(
            "{what} is {pinned}, not the digest of the image built from this commit ({digest}): run `cargo xtask image --pin`"
        )
    })
}

/// The `verify` step for images this repository builds: every digest the spec marks
/// `digest_source = "build"` must be the digest of the image built from this checkout. A spec
/// without such a digest (a synthetic one, say) builds nothing; with one, the cost is cargo's
/// no-op release build and the assembly when nothing changed.
pub fn spec_pin_problems(root: &Path, spec: &infra::Spec) -> anyhow::Result<Vec<String>> {
    let pins: Vec<(&str, &str, &str)> = spec
        .services
        .iter()
        .flat_map(|s| {
            s.built_digests()
                .map(move |(env, digest)| (s.name.as_str(), env, digest))
        })
        .collect();
    if pins.is_empty() {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    let mut built = None;
    for (service, env, digest) in pins {
        let what = format!("{service}: environments.{env}.digest");
        let image = spec
            .service(service)
            .map(|s| s.image.as_str())
            .unwrap_or_default();
        if image != BINARY {
            problems.push(format!(
                "{what} says digest_source = \"build\", but `cargo xtask image` builds only the {BINARY} image, not `{image}`: mark it digest_source = \"external\" with a digest_reason"
            ));
            continue;
        }
        if built.is_none() {
            built = Some(build(root, Created::Epoch)?);
        }
        let built = built.as_ref().expect("built just above");
        problems.extend(mismatch(built, &what, Some(digest)));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# The provider.
team = \"payments\"

[environments.production]
replicas = 3
digest = \"sha256:aaaa\" # pinned by cargo xtask image --pin

[environments.staging]
replicas = 2
";

    #[test]
    fn pinning_changes_only_the_digest_and_keeps_comments_and_layout() {
        let new = with_digest(FILE, "sha256:bbbb").expect("pins");
        assert_eq!(new, FILE.replace("sha256:aaaa", "sha256:bbbb"));
    }

    #[test]
    fn a_production_table_without_a_digest_gets_one() {
        let file = "[environments.production]\nreplicas = 3\n";
        let new = with_digest(file, "sha256:cccc").expect("pins");
        assert_eq!(
            new,
            "[environments.production]\nreplicas = 3\ndigest = \"sha256:cccc\"\n"
        );
    }

    #[test]
    fn a_file_without_a_production_table_is_refused_with_the_reason() {
        let err = with_digest("team = \"x\"\n", "sha256:c")
            .expect_err("no table")
            .to_string();
        assert!(err.contains("no [environments.production] table"), "{err}");
    }

    #[test]
    fn the_committed_service_file_has_a_production_digest() {
        let digest = pinned(&crate::project_root())
            .expect("readable")
            .expect("pinned");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
    }

    /// The shipped spec with every digest marked as `source`.
    fn spec_with(source: infra::spec::DigestSource) -> infra::Spec {
        let mut spec = infra::Spec::embedded().expect("the shipped spec is valid");
        for service in &mut spec.services {
            for over in service.environments.values_mut() {
                if over.digest.is_some() {
                    over.digest_source = Some(source);
                }
            }
        }
        spec
    }

    #[test]
    fn a_spec_without_built_digests_builds_nothing() {
        // A root that is no checkout: any build would fail.
        let spec = spec_with(infra::spec::DigestSource::External);
        let problems =
            spec_pin_problems(Path::new("/nonexistent"), &spec).expect("nothing to build");
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn a_built_digest_of_an_image_this_repository_does_not_build_is_refused() {
        let mut spec = spec_with(infra::spec::DigestSource::External);
        let antaeus = spec
            .services
            .iter_mut()
            .find(|s| s.name == "antaeus")
            .expect("declared");
        antaeus
            .environments
            .get_mut("production")
            .expect("pinned")
            .digest_source = Some(infra::spec::DigestSource::Build);
        let problems =
            spec_pin_problems(Path::new("/nonexistent"), &spec).expect("nothing to build");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("antaeus: environments.production.digest says digest_source = \"build\", but `cargo xtask image` builds only the payment-provider image"),
            "{}",
            problems[0]
        );
    }
}
