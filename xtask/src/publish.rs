//! `cargo xtask publish`: pushes every generated directory Flux reads as an artifact (each
//! service's `flux/apps/<service>/<env>/`, each team's `flux/namespaces/<env>/<team>/` and
//! `flux/tenants/<env>/<team>/`, as on disk) as the OCI artifact an OCIRepository of the tree
//! pins by digest, below `[platform.artifacts] repository` ([`infra::render::artifacts`] says
//! which and where, [`artifact`] builds each one),
//! tagged with its digest (`flux-<hex>`: no tag ever moves). Each artifact must be the one the
//! tree pins, at the URL the tree names, else nothing is pushed. A digest nobody pins deploys nothing, so CI can publish from
//! every pull request after `verify`, before the merge that pins it reaches the cluster.
//!
//! The artifacts go through one OCI layout (`target/publish/`, one manifest per artifact) and are
//! pushed with skopeo (Debian's package, as for `image --check`): it speaks TLS, reads registry
//! credentials (`REGISTRY_AUTH_FILE`, `skopeo login`, `~/.docker/config.json`), skips blobs the
//! registry has, and `--preserve-digests` keeps the digest computed here. A registry on a loopback
//! address (the e2e's, the benchmark's) is spoken to over plain HTTP.

mod artifact;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::generate::load_spec;
use crate::image::oci;
pub use artifact::{Built, build};
use infra::render::Artifact;

#[derive(clap::Args)]
pub struct Publish {
    /// Load the spec from this directory instead of the built-in `infra/` one.
    #[arg(long, value_name = "DIR")]
    spec: Option<PathBuf>,
    /// Publish the tree under this directory instead of the workspace root.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Only this environment's artifacts (repeatable; default: every environment).
    #[arg(long = "env", value_name = "ENV")]
    envs: Vec<String>,
    /// Build the artifacts and print their digests, push nothing.
    #[arg(long)]
    dry_run: bool,
    /// Pushes at once (skopeo processes).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

impl Publish {
    pub fn run(self) -> anyhow::Result<()> {
        let spec = load_spec(self.spec.as_deref())?;
        let root = self.root.clone().unwrap_or_else(crate::project_root);
        let started = Instant::now();
        let built = build_all(&spec, &root, &self.envs)?;
        let stale: Vec<String> = built
            .iter()
            .filter_map(|b| match pinned(&root, &b.artifact) {
                Ok(pin) if pin.digest == b.oci.digest && pin.url == b.artifact.url() => None,
                Ok(pin) if pin.url != b.artifact.url() => Some(format!(
                    "{}: the tree pulls {} from {}, but the spec publishes it to {}: flux/ was not rendered from this spec; run `cargo xtask gen` (or give publish the tree's --spec)",
                    pin.file,
                    b.artifact.dir,
                    pin.url,
                    b.artifact.url()
                )),
                Ok(pin) => Some(format!(
                    "{}: the tree pins {}, but {} builds {}: flux/ is stale or was edited by hand; run `cargo xtask gen`",
                    pin.file, pin.digest, b.artifact.dir, b.oci.digest
                )),
                Err(err) => Some(format!("{err:#}")),
            })
            .collect();
        if !stale.is_empty() {
            bail!(
                "nothing published: {} of {} artifacts are not what the tree pins:\n{}",
                stale.len(),
                built.len(),
                stale.join("\n")
            );
        }
        let layout = crate::dist::target_dir(&Shell::new()?)?.join("publish");
        write_layout(&layout, &built)?;
        for b in &built {
            println!(
                "  {}@{} ({} files from {})",
                b.artifact.repository, b.oci.digest, b.files, b.artifact.dir
            );
        }
        if self.dry_run {
            println!(
                "publish: {} artifacts built in {:.1?} (layout {}); --dry-run: nothing pushed",
                built.len(),
                started.elapsed(),
                layout.display()
            );
            return Ok(());
        }
        crate::image::check::ensure_tools(&Shell::new()?)?;
        push_all(&layout, &built, usize::from(self.jobs))?;
        println!(
            "publish: {} artifacts pushed to {} in {:.1?}",
            built.len(),
            spec.platform.artifact_repository(),
            started.elapsed()
        );
        Ok(())
    }
}

/// Builds every artifact of `envs` (every environment when empty) from the files under `root`.
pub fn build_all(spec: &infra::Spec, root: &Path, envs: &[String]) -> anyhow::Result<Vec<Built>> {
    for env in envs {
        if !spec.environments.iter().any(|e| &e.name == env) {
            let known: Vec<&str> = spec.environments.iter().map(|e| e.name.as_str()).collect();
            bail!(
                "--env {env}: no such environment (the spec has {})",
                known.join(", ")
            );
        }
    }
    infra::render::artifacts(spec)
        .iter()
        .filter(|a| envs.is_empty() || envs.contains(&a.env))
        .map(|a| artifact::build(root, a))
        .collect()
}

/// What the tree says of an artifact: the file that pins it, its OCIRepository's URL and pin.
struct Pin {
    file: String,
    url: String,
    digest: String,
}

/// Where and what the OCIRepository of `artifact` (in the file the layout says pins it) pulls.
fn pinned(root: &Path, artifact: &Artifact) -> anyhow::Result<Pin> {
    let file = &artifact.pinned_in;
    let text = std::fs::read_to_string(root.join(file))
        .with_context(|| format!("cannot read {file}; run `cargo xtask gen`"))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{file} is not YAML"))?;
        if value["kind"] == "OCIRepository"
            && infra::flux::artifact_directory(&value) == Some(artifact.dir.as_str())
        {
            let digest = value["spec"]["ref"]["digest"]
                .as_str()
                .with_context(|| {
                    format!(
                        "{file}: the OCIRepository of {} pins no digest (spec.ref.digest)",
                        artifact.dir
                    )
                })?
                .to_owned();
            let url = value["spec"]["url"].as_str().unwrap_or_default().to_owned();
            return Ok(Pin {
                file: file.clone(),
                url,
                digest,
            });
        }
    }
    bail!(
        "{file} has no OCIRepository of {}; run `cargo xtask gen`",
        artifact.dir
    )
}

/// The reference of `built` inside the layout (`oci:<layout>:<ref>` in skopeo's syntax).
fn ref_name(built: &Built) -> String {
    built.artifact.dir.clone()
}

/// One OCI layout holding every artifact, each manifest named by [`ref_name`].
pub fn write_layout(dir: &Path, built: &[Built]) -> anyhow::Result<()> {
    let manifests = built
        .iter()
        .map(|b| {
            let mut descriptor = oci::descriptor(
                oci_spec::image::MediaType::ImageManifest,
                &b.oci.digest,
                b.oci.manifest().len(),
            )?;
            descriptor.set_annotations(Some(
                [(oci::REF_NAME.to_owned(), ref_name(b))]
                    .into_iter()
                    .collect(),
            ));
            Ok(descriptor)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let index = oci::canonical_json(
        &oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::ImageIndex)
            .manifests(manifests)
            .build()?,
    )?;
    let mut blobs: Vec<(String, Vec<u8>)> = built
        .iter()
        .flat_map(|b| b.oci.blobs.iter().cloned())
        .map(|(digest, bytes)| {
            let hex = digest
                .strip_prefix("sha256:")
                .expect("sha256() names its algorithm")
                .to_owned();
            (format!("blobs/sha256/{hex}"), bytes)
        })
        .collect();
    blobs.sort();
    blobs.dedup_by(|a, b| a.0 == b.0);
    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
    ];
    files.extend(blobs);
    oci::write_layout(dir, &files)
}

/// skopeo's arguments to push `built` from `layout`: plain HTTP for a registry on a loopback
/// address, the registry's digest written to `digest_file`.
fn skopeo_args(layout: &Path, built: &Built, digest_file: &Path) -> Vec<String> {
    let mut args = vec![
        "copy".to_owned(),
        "--quiet".to_owned(),
        "--preserve-digests".to_owned(),
        format!("--digestfile={}", digest_file.display()),
    ];
    let host = built
        .artifact
        .repository
        .split('/')
        .next()
        .unwrap_or_default();
    if crate::image::registry::is_loopback(host) {
        args.push("--dest-tls-verify=false".to_owned());
    }
    args.push(format!("oci:{}:{}", layout.display(), ref_name(built)));
    args.push(format!(
        "docker://{}:{}",
        built.artifact.repository,
        infra::render::artifact_tag(&built.oci.digest)
    ));
    args
}

/// Pushes every artifact of `layout`, `jobs` at a time; every failure is reported, not the first.
pub fn push_all(layout: &Path, built: &[Built], jobs: usize) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let scratch = tempfile::tempdir().context("cannot create a folder for skopeo's digests")?;
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(built.len()) {
            scope.spawn(|| {
                while let Some(b) = built.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(err) = push_one(layout, b, scratch.path()) {
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!(
                                "{}@{}: {err:#}",
                                b.artifact.repository, b.oci.digest
                            ));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !failures.is_empty() {
        failures.sort();
        bail!(
            "{} of {} artifacts not published:\n{}",
            failures.len(),
            built.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

fn push_one(layout: &Path, built: &Built, scratch: &Path) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let digest_file = scratch.join(ref_name(built).replace('/', "_"));
    let args = skopeo_args(layout, built, &digest_file);
    cmd!(sh, "skopeo {args...}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("skopeo copy failed")?;
    let stored = std::fs::read_to_string(&digest_file)
        .with_context(|| format!("skopeo wrote no digest to {}", digest_file.display()))?;
    if stored.trim() != built.oci.digest {
        bail!(
            "the registry stored {} instead of {}",
            stored.trim(),
            built.oci.digest
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(repository: &str) -> Built {
        Built {
            artifact: infra::render::Artifact {
                env: "staging".into(),
                dir: "flux/apps/shop/staging".into(),
                repository: repository.into(),
                pinned_in: "flux/tenants/staging/shops/shop/sync.yaml".into(),
            },
            files: 1,
            oci: infra::artifact::Built {
                digest: "sha256:00ff".into(),
                blobs: Vec::new(),
            },
        }
    }

    #[test]
    fn skopeo_pushes_under_the_digest_keeping_it_and_speaks_plain_http_to_loopback_only() {
        let (layout, digest) = (Path::new("/l"), Path::new("/d"));
        assert_eq!(
            skopeo_args(layout, &built("127.0.0.1:5000/manifests/shop"), digest),
            [
                "copy",
                "--quiet",
                "--preserve-digests",
                "--digestfile=/d",
                "--dest-tls-verify=false",
                "oci:/l:flux/apps/shop/staging",
                "docker://127.0.0.1:5000/manifests/shop:flux-00ff",
            ]
        );
        let remote = skopeo_args(layout, &built("ghcr.io/org/manifests/shop"), digest);
        assert!(
            !remote.iter().any(|a| a.contains("tls-verify")),
            "{remote:?}"
        );
        assert_eq!(
            remote.last().map(String::as_str),
            Some("docker://ghcr.io/org/manifests/shop:flux-00ff")
        );
    }

    #[test]
    fn every_artifact_of_the_committed_tree_builds_and_an_unknown_environment_is_refused() {
        let spec = infra::testing::spec();
        let built = build_all(spec, &crate::project_root(), &[]).expect("builds");
        // Per environment: each team's two directories, each service's app directory.
        assert_eq!(
            built.len(),
            spec.environments.len() * (2 * 2 + spec.services.len())
        );
        let production =
            build_all(spec, &crate::project_root(), &["production".into()]).expect("builds");
        assert!(production.iter().all(|b| b.artifact.env == "production"));
        // The committed tree pins exactly what publish builds from it.
        for b in &built {
            let pin = pinned(&crate::project_root(), &b.artifact).expect("pinned");
            assert_eq!(pin.digest, b.oci.digest, "{}", b.artifact.dir);
            assert_eq!(pin.url, b.artifact.url(), "{}", b.artifact.dir);
        }
        let dir = tempfile::tempdir().expect("dir");
        write_layout(dir.path(), &production).expect("writes");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index"))
                .expect("JSON");
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["annotations"][oci::REF_NAME].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "flux/namespaces/production/invoicing",
                "flux/tenants/production/invoicing",
                "flux/namespaces/production/payments",
                "flux/tenants/production/payments",
                "flux/apps/antaeus/production",
                "flux/apps/payment-provider/production",
            ]
        );
        let err = build_all(spec, &crate::project_root(), &["prod".into()]).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "--env prod: no such environment (the spec has production, staging)"
        );
    }
}
