//! What the provider's image is a function of, and how its provenance is stated without making
//! the digest depend on the commit that pins it.
//!
//! The trap: the digest is committed into `infra/services/payment-provider.toml` and `flux/`. If
//! the image carried the HEAD commit (its id or time), the pin commit would change the image it
//! pins, and no pin could ever be current. So the image depends on its inputs alone:
//!
//! - **revision** (`org.opencontainers.image.revision`) = `sha256:` of the output of
//!   `git ls-tree HEAD -- <INPUTS>` (one line of mode, type, object id and path per input): git's
//!   own content address of exactly the files that make the image. It does not change when the
//!   spec or `flux/` does, nor when a branch is squash- or rebase-merged (new commits, same
//!   trees), and a shallow clone has HEAD's trees, so it gives the same value. Anyone can check a
//!   label against a commit: `git ls-tree <commit> -- <INPUTS> | sha256sum`.
//! - **timestamps** (config `created`, history, the `created` label, every tar mtime) = the Unix
//!   epoch, as ko, jib and Bazel's rules_oci do. A commit time would differ between a branch
//!   commit and its squash-merged copy, and between a full and a shallow clone's idea of "the
//!   last commit that touched the inputs". `SOURCE_DATE_EPOCH` is honoured by a plain
//!   `cargo xtask image` (and `--push`) for whoever wants dated images, but such an image is not
//!   the production one: `--pin`, `--check` and `verify` always build at the epoch.
//! - **dirty inputs**: the binary is built from the working tree, so an uncommitted change to an
//!   input (tracked or untracked, per `git status`) would make an image the commit cannot
//!   reproduce. It is reported on every build, `--pin` refuses it, and `verify` names it.

use std::path::Path;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Paths (relative to the workspace root) whose content decides the image: the provider's
/// sources, the lock file and manifests that choose its dependencies, the toolchain and cargo
/// configuration, and the code that builds and assembles it. Not `infra/` or `flux/`, which hold
/// the pin.
pub const INPUTS: &[&str] = &[
    ".cargo/config.toml",
    "Cargo.lock",
    "Cargo.toml",
    "provider",
    "rust-toolchain.toml",
    "xtask/Cargo.toml",
    "xtask/src/dist.rs",
    "xtask/src/image",
];

/// The environment variable of the reproducible-builds convention.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The state of the inputs in one checkout.
#[derive(Clone, Debug)]
pub struct Sources {
    /// `sha256:…` of `git ls-tree HEAD -- INPUTS`.
    pub revision: String,
    /// `git status --porcelain` lines of inputs that differ from HEAD (empty: clean).
    pub dirty: Vec<String>,
}

impl Sources {
    /// Reads the inputs' state in the checkout at `root`.
    pub fn read(root: &Path) -> anyhow::Result<Self> {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let listing = cmd!(sh, "git ls-tree HEAD -- {INPUTS...}")
            .quiet()
            .read()
            .with_context(|| {
                format!(
                    "cannot list the image's inputs with `git ls-tree HEAD` in {}: `cargo xtask image` needs a git checkout with at least one commit",
                    root.display()
                )
            })?;
        if listing.trim().is_empty() {
            bail!(
                "git ls-tree HEAD lists none of the image's inputs ({}) in {}",
                INPUTS.join(", "),
                root.display()
            );
        }
        let status = cmd!(
            sh,
            "git status --porcelain=v1 --untracked-files=all -- {INPUTS...}"
        )
        .quiet()
        .read()
        .context("cannot run `git status` on the image's inputs")?;
        Ok(Self {
            revision: revision_of(&listing),
            dirty: status.lines().map(str::to_owned).collect(),
        })
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}

/// `sha256:` of the ls-tree listing as git prints it, with its final newline (what
/// `git ls-tree … | sha256sum` hashes).
pub fn revision_of(listing: &str) -> String {
    let mut text = listing.trim_end().to_owned();
    text.push('\n');
    super::oci::sha256(text.as_bytes())
}

/// When the image says it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The Unix epoch: the production image, the same in every environment.
    Epoch,
    /// `SOURCE_DATE_EPOCH` seconds, asked for by the environment.
    SourceDateEpoch(u64),
}

impl Created {
    /// `SOURCE_DATE_EPOCH` if set (a malformed value is an error, not ignored), else the epoch.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var(SOURCE_DATE_EPOCH) {
            Ok(value) => parse_source_date_epoch(&value).map(Created::SourceDateEpoch),
            Err(std::env::VarError::NotPresent) => Ok(Created::Epoch),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!(
                    "{SOURCE_DATE_EPOCH} is not valid UTF-8: set it to seconds since 1970 or unset it"
                )
            }
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Created::Epoch => 0,
            Created::SourceDateEpoch(seconds) => seconds,
        }
    }

    /// How the time was chosen, for the command's output.
    pub fn describe(self) -> String {
        match self {
            Created::Epoch => "the Unix epoch: the production image's fixed time".to_owned(),
            Created::SourceDateEpoch(s) => format!(
                "{SOURCE_DATE_EPOCH}={s}: not the production image, which is built at the epoch"
            ),
        }
    }
}

fn parse_source_date_epoch(value: &str) -> anyhow::Result<u64> {
    value.trim().parse().map_err(|_| {
        anyhow::anyhow!("{SOURCE_DATE_EPOCH}={value:?} is not a number of seconds since 1970: fix it or unset it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let sh = Shell::new().expect("a shell");
        sh.change_dir(dir);
        cmd!(sh, "git {args...}").quiet().run().expect("git works");
    }

    /// A repository with one commit holding a provider file and a spec file.
    fn repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("provider/src")).expect("writable");
        std::fs::create_dir_all(root.join("infra/services")).expect("writable");
        std::fs::write(root.join("provider/src/main.rs"), "fn main() {}\n").expect("writable");
        std::fs::write(root.join("Cargo.lock"), "# lock\n").expect("writable");
        std::fs::write(root.join("infra/services/p.toml"), "digest = \"a\"\n").expect("writable");
        git(root, &["init", "-q"]);
        git(
            root,
            &["-c", "user.name=t", "-c", "user.email=t@t", "add", "."],
        );
        git(
            root,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "one",
            ],
        );
        dir
    }

    #[test]
    fn the_revision_ignores_the_pin_and_follows_the_inputs() {
        let repo = repository();
        let root = repo.path();
        let first = Sources::read(root).expect("a checkout");
        assert!(!first.is_dirty(), "{:?}", first.dirty);
        // The pin commit: only the spec changes, so the revision (and the image) stay the same.
        std::fs::write(root.join("infra/services/p.toml"), "digest = \"b\"\n").expect("writable");
        git(
            root,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qam",
                "pin",
            ],
        );
        let after_pin = Sources::read(root).expect("a checkout");
        assert_eq!(first.revision, after_pin.revision);
        // An uncommitted change to an input is dirty; committed, it changes the revision.
        std::fs::write(root.join("provider/src/main.rs"), "fn main() { }\n").expect("writable");
        let dirty = Sources::read(root).expect("a checkout");
        assert_eq!(dirty.dirty, [" M provider/src/main.rs"]);
        git(
            root,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qam",
                "change",
            ],
        );
        let changed = Sources::read(root).expect("a checkout");
        assert!(!changed.is_dirty());
        assert_ne!(changed.revision, first.revision);
        // An untracked file under an input is dirty too (a new module cargo would compile).
        std::fs::write(root.join("provider/src/new.rs"), "").expect("writable");
        assert_eq!(
            Sources::read(root).expect("a checkout").dirty,
            ["?? provider/src/new.rs"]
        );
    }

    #[test]
    fn the_revision_is_what_sha256sum_prints_for_the_listing() {
        // `printf 'a\n' | sha256sum`
        assert_eq!(
            revision_of("a"),
            "sha256:87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"
        );
    }

    #[test]
    fn a_directory_that_is_not_a_checkout_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let err = Sources::read(dir.path()).expect_err("no git").to_string();
        assert!(err.contains("needs a git checkout"), "{err}");
    }

    #[test]
    fn a_malformed_source_date_epoch_is_an_error_not_ignored() {
        assert_eq!(
            parse_source_date_epoch("1700000000").expect("valid"),
            1_700_000_000
        );
        let err = parse_source_date_epoch("yesterday")
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("is not a number of seconds since 1970"),
            "{err}"
        );
    }
}
