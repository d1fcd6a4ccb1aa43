//! The provider's production digest in the spec: read it, and (`--pin`) write the built image's
//! digest into `infra/services/payment-provider.toml` with its comments and layout kept, then
//! regenerate `flux/` through the same code path as `cargo xtask gen`.

use std::path::Path;

use anyhow::{Context, bail};

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
}
