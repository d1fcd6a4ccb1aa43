//! A CNCF distribution registry (`github.com/distribution/distribution/v3`, built from its Go
//! module like the e2e's other components) on 127.0.0.1, for the e2e, `bench flux` and `cargo
//! xtask image --check`; the pulls it served, read from its access log ([`Pulls`]); and the e2e
//! step that pushes the provider's image to it and pulls it back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::Shell;

use super::procs::{Processes, free_port, wait_until};
use crate::image;

/// The repository the provider is pushed to, below the registry (as in the spec's registry).
pub const PROVIDER_REPOSITORY: &str = "billing-platform/payment-provider";

/// A registry process on a loopback port, stopped by pid with the [`Processes`] that started it.
pub struct LocalRegistry {
    pub addr: SocketAddr,
    /// Its output: one access-log line a request ([`Pulls::read`]).
    pub log: PathBuf,
}

impl LocalRegistry {
    /// Starts `binary` with its storage under `dir` and waits until `/v2/` answers.
    pub fn start(binary: &Path, dir: &Path, procs: &mut Processes) -> anyhow::Result<Self> {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)
            .with_context(|| format!("creating {}", storage.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join("config.yml");
        std::fs::write(&config, config_yaml(addr, &storage))
            .with_context(|| format!("writing {}", config.display()))?;
        // v3 exports traces over OTLP by default; there is no collector here.
        procs.spawn(
            "registry",
            binary,
            &["serve".to_owned(), config.display().to_string()],
            &[("OTEL_TRACES_EXPORTER", "none")],
        )?;
        let url = format!("http://{addr}/v2/");
        wait_until(
            "the registry to answer /v2/",
            Duration::from_secs(30),
            || {
                procs.check_alive()?;
                Ok(std::net::TcpStream::connect(addr).is_ok() && api_answers(addr))
            },
        )
        .with_context(|| format!("the registry did not come up at {url}"))?;
        Ok(Self {
            addr,
            log: procs.log_path("registry"),
        })
    }
}

/// The registry's configuration: loopback only, filesystem storage, no auth, no TLS; an access
/// log line a request (what [`Pulls`] counts), nothing else below warnings.
fn config_yaml(addr: SocketAddr, storage: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: billing-platform-e2e-only\n\
         health:\n  storagedriver:\n    enabled: false\n",
        storage.display()
    )
}

/// Requests for content the registry answered: what a registry host would count against its
/// clients (source-controller asks nothing for a digest it already holds; a new pin costs a
/// manifest and the layer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pulls {
    /// `HEAD /v2/<name>/manifests/<ref>`: a reference checked (a tag resolved, a push's check).
    pub manifest_heads: u64,
    /// `GET /v2/<name>/manifests/<ref>`: a manifest downloaded.
    pub manifest_gets: u64,
    /// `GET /v2/<name>/blobs/<digest>`: a config or layer downloaded.
    pub blob_gets: u64,
    /// Bytes of those blobs.
    pub blob_bytes: u64,
}

impl Pulls {
    /// Counts the access-log lines of `log` (the registry's output, Apache combined format).
    pub fn read(log: &Path) -> anyhow::Result<Pulls> {
        let text = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        Ok(Pulls::count(&String::from_utf8_lossy(&text)))
    }

    fn count(text: &str) -> Pulls {
        let mut pulls = Pulls::default();
        for line in text.lines() {
            // `… "HEAD /v2/a/b/manifests/production HTTP/1.1" 200 0 "" "agent"`
            let mut quoted = line.split('"');
            let (Some(_), Some(request), Some(answer)) =
                (quoted.next(), quoted.next(), quoted.next())
            else {
                continue;
            };
            let mut request = request.split(' ');
            let (Some(method), Some(path)) = (request.next(), request.next()) else {
                continue;
            };
            let mut answer = answer.split_whitespace();
            let ok = answer.next().is_some_and(|status| status.starts_with('2'));
            let bytes: u64 = answer.next().and_then(|b| b.parse().ok()).unwrap_or(0);
            if !ok || !path.starts_with("/v2/") {
                continue;
            }
            // `/v2/<name>/manifests/<reference>` or `/v2/<name>/blobs/<digest>`: the kind is the
            // segment before the last (a repository name may hold `manifests` or `blobs` too).
            match (method, path.rsplit('/').nth(1).unwrap_or("")) {
                ("HEAD", "manifests") => pulls.manifest_heads += 1,
                ("GET", "manifests") => pulls.manifest_gets += 1,
                ("GET", "blobs") => {
                    pulls.blob_gets += 1;
                    pulls.blob_bytes += bytes;
                }
                _ => {}
            }
        }
        pulls
    }

    /// What was served between `earlier` and `self`.
    pub fn since(self, earlier: Pulls) -> Pulls {
        Pulls {
            manifest_heads: self.manifest_heads.saturating_sub(earlier.manifest_heads),
            manifest_gets: self.manifest_gets.saturating_sub(earlier.manifest_gets),
            blob_gets: self.blob_gets.saturating_sub(earlier.blob_gets),
            blob_bytes: self.blob_bytes.saturating_sub(earlier.blob_bytes),
        }
    }
}

/// `GET /v2/` answers 200 (the API version check every client starts with).
fn api_answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// What the e2e's image step leaves for later steps (a real node pulls from `registry`).
pub struct Pushed {
    pub registry: SocketAddr,
    /// `127.0.0.1:PORT/billing-platform/payment-provider:TAG`.
    pub reference: String,
    pub digest: String,
    /// The step's line in the summary.
    pub summary: String,
}

/// Builds the provider's production image, pushes it to a registry started in `dir`, pulls its
/// manifest back by digest, and checks that the served tree's production Deployment pins it.
pub fn push_provider(
    sh: &Shell,
    root: &Path,
    registry_binary: &Path,
    flux: &Path,
    dir: &Path,
    procs: &mut Processes,
) -> anyhow::Result<Pushed> {
    let built = image::build(root, image::Created::Epoch)?;
    let registry = LocalRegistry::start(registry_binary, dir, procs)?;
    let round_trip = image::check::registry_round_trip(
        sh,
        &built.written,
        registry.addr,
        PROVIDER_REPOSITORY,
        &built.version,
    )?;
    let deployment: PathBuf = flux.join("apps/payment-provider/production/deployment.yaml");
    let text = std::fs::read_to_string(&deployment)
        .with_context(|| format!("cannot read {}", deployment.display()))?;
    let pinned = format!("@{}", built.written.manifest_digest);
    if !text.contains(&pinned) {
        bail!(
            "{} does not pin the image built from this checkout ({}): run `cargo xtask image --pin`",
            deployment.display(),
            built.written.manifest_digest
        );
    }
    Ok(Pushed {
        registry: registry.addr,
        reference: format!("{}/{PROVIDER_REPOSITORY}:{}", registry.addr, built.version),
        digest: built.written.manifest_digest.clone(),
        summary: format!("{round_trip}; {} pins it", deployment.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_listens_on_loopback_with_local_storage_only() {
        let yaml = config_yaml(
            "127.0.0.1:5000".parse().expect("an address"),
            Path::new("/r/storage"),
        );
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("YAML");
        assert_eq!(config["http"]["addr"].as_str(), Some("127.0.0.1:5000"));
        assert_eq!(
            config["storage"]["filesystem"]["rootdirectory"].as_str(),
            Some("/r/storage")
        );
        assert!(config["http"].get("tls").is_none() && config.get("auth").is_none());
        assert_eq!(
            config["log"]["accesslog"]["disabled"].as_bool(),
            Some(false)
        );
    }

    #[test]
    fn pulls_are_counted_from_the_access_log_and_pushes_are_not() {
        let log = r#"time="x" level=warning msg="a warning, not a request"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "go-containerregistry/v0.21.6"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "HEAD /v2/m/shop/manifests/production HTTP/1.1" 200 512 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "GET /v2/m/shop/manifests/sha256:ab HTTP/1.1" 200 512 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "GET /v2/m/shop/blobs/sha256:cd HTTP/1.1" 200 1400 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "GET /v2/bench/manifests/teams/t/blobs/sha256:ab HTTP/1.1" 200 600 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "GET /v2/m/shop/blobs/sha256:ef HTTP/1.1" 307 0 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "HEAD /v2/m/other/manifests/production HTTP/1.1" 404 0 "" "flux"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "PUT /v2/m/shop/manifests/production HTTP/1.1" 201 0 "" "skopeo/1.9.3"
127.0.0.1 - - [07/Dec/2026:03:40:15 +0000] "HEAD /v2/m/shop/blobs/sha256:cd HTTP/1.1" 200 0 "" "skopeo/1.9.3"
"#;
        let pulls = Pulls::count(log);
        assert_eq!(
            pulls,
            Pulls {
                manifest_heads: 1,
                manifest_gets: 1,
                blob_gets: 2,
                blob_bytes: 2000,
            }
        );
        assert_eq!(pulls.since(pulls), Pulls::default());
    }
}
