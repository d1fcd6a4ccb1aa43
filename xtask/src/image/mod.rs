//! `cargo xtask image`: the provider's OCI image, built in Rust without Docker or a daemon, the
//! same to the byte from any clone, with the digest as the build's output (as ko does for Go and
//! jib for Java).
//!
//! - [`oci`]: the generic assembler (entries + config + timestamp → layout, tar, digest), also
//!   used for other static binaries (the e2e's `pause` image);
//! - [`distroless`]: the provider's content (distroless-equivalent base + the binary);
//! - [`sources`]: what the image is a function of, and the digest scheme (why the image carries
//!   no commit id or commit time);
//! - [`sbom`]: the CycloneDX SBOM next to the layout; [`registry`]: push/pull over the OCI
//!   distribution API; [`pin`]: the production digest in the spec; [`check`]: skopeo, umoci and a
//!   real registry; [`reproducible`]: two fresh clones, one digest.

pub mod check;
pub mod distroless;
pub mod oci;
pub mod pin;
pub mod registry;
mod reproducible;
pub mod sbom;
pub mod sources;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::Shell;

pub use pin::spec_pin_problems;
pub use sources::{Created, Sources};

/// The workspace package and binary the image ships.
const PACKAGE: &str = "provider";
const BINARY: &str = "payment-provider";
/// `org.opencontainers.image.source` (a test checks it against `[platform.git] url`; it lives here,
/// among the image's inputs, so that the spec stays out of them).
const SOURCE: &str = "https://github.com/billing-platform/billing";
/// Goal of issue 10: the binary plus a few KiB.
const SIZE_GOAL: u64 = 3 * 1024 * 1024 / 2;

/// Build the provider's OCI image (target/image/), and optionally push, pin and check it.
#[derive(clap::Args)]
pub struct Image {
    /// Push to this registry (plain HTTP on a loopback address only; see the error for others)
    /// and print the digest it returns.
    #[arg(long, value_name = "REGISTRY/REPO:TAG")]
    push: Option<registry::Reference>,
    /// Write the digest into infra/services/payment-provider.toml ([environments.production]
    /// digest) and regenerate flux/; refused while the image's inputs have uncommitted changes.
    #[arg(long)]
    pin: bool,
    /// Check the image with skopeo and umoci (exact files, `--help` runs, user 65532), push it to
    /// a CNCF registry on 127.0.0.1 and pull it back by digest, and require the production pin
    /// to be this image.
    #[arg(long)]
    check: bool,
    /// Build the image from two fresh clones of HEAD in two folders and require one digest.
    #[arg(long)]
    reproducible: bool,
}

/// One built image and what went into it.
pub struct Built {
    pub written: oci::Written,
    /// The provider crate's version: the tag and `org.opencontainers.image.version`.
    pub version: String,
    pub sources: Sources,
    pub created: Created,
    /// Every entry of every layer (what an unpacked root file system must hold).
    pub entries: Vec<oci::Entry>,
    pub binary_size: u64,
    pub cargo_time: Duration,
    pub assemble_time: Duration,
}

impl Image {
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::project_root();
        // The production image is the one at the epoch; only a plain build or push follows
        // SOURCE_DATE_EPOCH (see `sources`).
        let env_created = Created::from_env()?;
        let created = if self.pin || self.check || self.reproducible {
            if let Created::SourceDateEpoch(_) = env_created {
                if self.pin {
                    bail!(
                        "{} is set: the pinned digest must be the one `cargo xtask verify` rebuilds anywhere, at the epoch; unset it and run `cargo xtask image --pin`",
                        sources::SOURCE_DATE_EPOCH
                    );
                }
                eprintln!(
                    "note: {} is ignored by --check and --reproducible: they check the production image",
                    sources::SOURCE_DATE_EPOCH
                );
            }
            Created::Epoch
        } else {
            env_created
        };
        let built = build(&root, created)?;
        let sh = Shell::new()?;
        sh.change_dir(&root);
        let sbom_path = built.written.dir.with_extension("cdx.json");
        let crates = sbom::write(
            &root,
            PACKAGE,
            crate::dist::TARGET,
            &sbom::Subject {
                binary: BINARY,
                version: &built.version,
                image_digest: &built.written.manifest_digest,
                revision: &image_revision(&built.sources),
            },
            &sbom_path,
        )?;
        print_summary(&root, &built, &sbom_path, crates);

        if let Some(reference) = &self.push {
            let digest = registry::push(
                &built.written.dir,
                &built.written.manifest_digest,
                reference,
            )?;
            println!("pushed:   {reference}@{digest}");
        }
        if self.pin {
            if built.sources.is_dirty() {
                bail!(
                    "the image's inputs have uncommitted changes, so this image is not the commit's:\n  {}\ncommit them, then run `cargo xtask image --pin`",
                    built.sources.dirty.join("\n  ")
                );
            }
            pin::pin(&root, &built.written.manifest_digest)?;
        }
        let mut problems = Vec::new();
        if self.check {
            check::ensure_tools(&sh)?;
            println!(
                "{}",
                check::skopeo(&sh, &built.written, &built.version, &user())?
            );
            println!(
                "{}",
                check::umoci(
                    &sh,
                    &built.written,
                    &built.version,
                    &built.entries,
                    distroless::BINARY_PATH,
                    distroless::NONROOT
                )?
            );
            println!("{}", round_trip(&sh, &root, &built)?);
            if let Some(problem) = pin::pin_problem(&root, &built)? {
                problems.push(problem);
            } else {
                println!("pin: {} pins this image", pin::SERVICE_FILE);
            }
        }
        if self.reproducible {
            println!("{}", reproducible::check(&root, &built)?);
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(())
    }
}

/// Builds the production-shaped image of the checkout at `root` into `<target>/image/`.
pub fn build(root: &Path, created: Created) -> anyhow::Result<Built> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let out = crate::dist::target_dir(&sh)?.join("image");
    build_in(&sh, root, created, &out)
}

/// Builds the image of the checkout at `root` (with `sh` in it) into `out/payment-provider{,.tar}`.
fn build_in(sh: &Shell, root: &Path, created: Created, out: &Path) -> anyhow::Result<Built> {
    let sources = Sources::read(root)?;
    let started = Instant::now();
    let binary_path = crate::dist::build_release(sh, &["--bin", BINARY])?.join(BINARY);
    crate::dist::check_static(sh, &binary_path)?;
    let cargo_time = started.elapsed();
    let started = Instant::now();
    let binary = std::fs::read(&binary_path)
        .with_context(|| format!("cannot read {}", binary_path.display()))?;
    let binary_size = binary.len() as u64;
    let version = package_version(root)?;
    let image = distroless::provider_image(
        binary,
        &distroless::Provenance {
            source: SOURCE.to_owned(),
            revision: image_revision(&sources),
            version: version.clone(),
            created: created.seconds(),
        },
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let written = oci::write(&image, &out.join(BINARY))?;
    Ok(Built {
        written,
        version,
        sources,
        created,
        entries: image.layers.into_iter().flat_map(|l| l.entries).collect(),
        binary_size,
        cargo_time,
        assemble_time: started.elapsed(),
    })
}

/// The revision label: the inputs' content address, marked `-dirty` when the working tree's
/// inputs differ from HEAD's (then the image is not the commit's, and its digest says so).
fn image_revision(sources: &Sources) -> String {
    if sources.is_dirty() {
        format!("{}-dirty", sources.revision)
    } else {
        sources.revision.clone()
    }
}

/// `version` of `provider/Cargo.toml`.
fn package_version(root: &Path) -> anyhow::Result<String> {
    let path = root.join(PACKAGE).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    manifest
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no package.version", path.display()))
}

fn user() -> String {
    format!("{0}:{0}", distroless::NONROOT)
}

/// Starts the CNCF registry on 127.0.0.1 (built and cached like the e2e's components), pushes,
/// pulls back, and stops it by pid.
fn round_trip(sh: &Shell, root: &Path, built: &Built) -> anyhow::Result<String> {
    let binary = crate::e2e::components::build_named(sh, root, "registry")?;
    let scratch = tempfile::tempdir().context("cannot create a folder for the registry")?;
    let mut procs = crate::e2e::procs::Processes::new(&scratch.path().join("logs"))?;
    let registry = crate::e2e::registry::LocalRegistry::start(&binary, scratch.path(), &mut procs)?;
    check::registry_round_trip(
        sh,
        &built.written,
        registry.addr,
        crate::e2e::registry::PROVIDER_REPOSITORY,
        &built.version,
    )
}

fn print_summary(root: &Path, built: &Built, sbom: &Path, crates: usize) {
    let w = &built.written;
    let shown = |p: &Path| -> PathBuf {
        p.strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    println!(
        "image:    {} (OCI layout), {}",
        shown(&w.dir).display(),
        shown(&w.tar).display()
    );
    println!(
        "manifest: {} ({} bytes)",
        w.manifest_digest, w.manifest_size
    );
    println!("config:   {} ({} bytes)", w.config_digest, w.config_size);
    for (n, layer) in w.layers.iter().enumerate() {
        println!(
            "layer {}:  {} {} compressed, {} uncompressed",
            n + 1,
            layer.digest,
            size(layer.compressed),
            size(layer.uncompressed)
        );
    }
    let uncompressed: u64 = w.layers.iter().map(|l| l.uncompressed).sum();
    println!(
        "total:    {} compressed (what a registry stores and a node pulls; goal < {}: {}), {} uncompressed layers; binary {}",
        size(w.total_size()),
        size(SIZE_GOAL),
        if w.total_size() < SIZE_GOAL {
            "met"
        } else {
            "NOT met"
        },
        size(uncompressed),
        size(built.binary_size)
    );
    println!(
        "revision: {} (sha256 of `git ls-tree HEAD -- {}`)",
        image_revision(&built.sources),
        sources::INPUTS.join(" ")
    );
    println!(
        "created:  {} ({})",
        oci::rfc3339(built.created.seconds()).unwrap_or_default(),
        built.created.describe()
    );
    println!(
        "sbom:     {} (CycloneDX 1.5, {crates} crates)",
        shown(sbom).display()
    );
    println!(
        "time:     cargo build {:.1}s, assemble {:.2}s",
        built.cargo_time.as_secs_f64(),
        built.assemble_time.as_secs_f64()
    );
    match pin::pin_problem(root, built) {
        Ok(None) => println!("pin:      {} pins this image", pin::SERVICE_FILE),
        Ok(Some(problem)) => println!("pin:      stale: {problem}"),
        Err(err) => println!("pin:      cannot read it: {err:#}"),
    }
    if built.sources.is_dirty() {
        eprintln!(
            "warning: uncommitted changes to the image's inputs (the image is marked -dirty and cannot be pinned):\n  {}",
            built.sources.dirty.join("\n  ")
        );
    }
}

/// `1.23 MiB`, `4.5 KiB`, `512 B`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_label_is_the_platforms_git_url() {
        let spec = infra::Spec::embedded().expect("the shipped spec is valid");
        assert_eq!(spec.platform.git.url, SOURCE);
    }

    #[test]
    fn a_dirty_checkout_is_marked_in_the_revision_so_it_never_matches_a_pin() {
        let clean = Sources {
            revision: "sha256:ab".into(),
            dirty: vec![],
        };
        let dirty = Sources {
            revision: "sha256:ab".into(),
            dirty: vec![" M provider/src/main.rs".into()],
        };
        assert_eq!(image_revision(&clean), "sha256:ab");
        assert_eq!(image_revision(&dirty), "sha256:ab-dirty");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(4608), "4.5 KiB");
        assert_eq!(size(1_320_672), "1.26 MiB");
    }
}
