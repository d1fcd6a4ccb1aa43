//! A minimal OCI distribution client: push an image layout to a registry, pull a manifest back.
//!
//! Plain HTTP with hyper (already a workspace dependency), not a client crate: `oci-client` (the
//! well-kept one) brings reqwest and a TLS stack (rustls with ring or aws-lc, or OpenSSL), JWT and
//! more into the xtask that every `verify` compiles, for a push that in this repository only ever
//! goes to a registry on 127.0.0.1. The endpoints used are the distribution spec's:
//! `HEAD /v2/<name>/blobs/<digest>` (skip what the registry has), `POST /v2/<name>/blobs/uploads/`
//! then `PUT <location>?digest=<digest>` (a monolithic upload), `PUT /v2/<name>/manifests/<tag>`,
//! and `GET /v2/<name>/manifests/<reference>`.
//!
//! Supported: registries on a loopback address without TLS or authentication (the tests' and the
//! e2e's). Anything else is refused with the command that does it properly: `skopeo copy
//! --preserve-digests oci-archive:… docker://…` speaks TLS and reads registry credentials, and
//! keeps the digest this command computed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::oci;

pub use infra::artifact::MANIFEST_MEDIA_TYPE;
/// Per request; a layer of a few MiB over loopback takes milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `HOST:PORT/REPOSITORY:TAG`, the argument of `--push`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub addr: SocketAddr,
    /// As written (`127.0.0.1:5000`, `localhost:5000`), for messages.
    pub host: String,
    pub repository: String,
    pub tag: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.host, self.repository, self.tag)
    }
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let usage =
            "expected REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/billing/payment-provider:0.1.0";
        let (host, rest) = s
            .split_once('/')
            .with_context(|| format!("{s:?}: no registry host; {usage}"))?;
        let (repository, tag) = rest
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .with_context(|| format!("{s:?}: no tag; {usage}"))?;
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !valid_repository {
            bail!("{s:?}: repository {repository:?} must be lowercase path components; {usage}");
        }
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid_tag {
            bail!("{s:?}: tag {tag:?} is not a valid tag; {usage}");
        }
        let addr = loopback(host).ok_or_else(|| {
            anyhow::anyhow!(
                "{host}: only plain-HTTP registries on a loopback address with a port (127.0.0.1:PORT, [::1]:PORT, localhost:PORT) are supported by --push; for a registry with TLS or credentials run `skopeo copy --preserve-digests oci-archive:target/image/payment-provider.tar docker://{s}`, which keeps the digest"
            )
        })?;
        Ok(Self {
            addr,
            host: host.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// Whether `host` (`HOST:PORT`) is a registry on a loopback address, spoken to over plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    loopback(host).is_some()
}

/// The socket address of a loopback `host:port`, else `None`.
fn loopback(host: &str) -> Option<SocketAddr> {
    if let Some(port) = host.strip_prefix("localhost:") {
        return Some(SocketAddr::new(
            IpAddr::from([127, 0, 0, 1]),
            port.parse().ok()?,
        ));
    }
    let addr: SocketAddr = host.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

/// Pushes the image `manifest_digest` of the layout `dir` as `reference`; returns the digest the
/// registry reports (`Docker-Content-Digest`), after checking it is the one pushed.
pub fn push(dir: &Path, manifest_digest: &str, reference: &Reference) -> anyhow::Result<String> {
    let manifest = oci::read_blob(dir, manifest_digest)?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&manifest).context("the layout's manifest is not JSON")?;
    let mut blobs: Vec<String> = vec![
        parsed["config"]["digest"]
            .as_str()
            .context("the manifest has no config digest")?
            .to_owned(),
    ];
    for layer in parsed["layers"].as_array().into_iter().flatten() {
        blobs.push(
            layer["digest"]
                .as_str()
                .context("a layer has no digest")?
                .to_owned(),
        );
    }
    let client = Http::new(reference)?;
    client.block_on(async {
        for digest in &blobs {
            let path = format!("/v2/{}/blobs/{digest}", reference.repository);
            let (status, _, _) = client.send(Method::HEAD, &path, &[], Bytes::new()).await?;
            if status == StatusCode::OK {
                continue;
            }
            let bytes = oci::read_blob(dir, digest)?;
            upload_blob(&client, reference, digest, bytes).await?;
        }
        let path = format!("/v2/{}/manifests/{}", reference.repository, reference.tag);
        let (status, headers, body) = client
            .send(
                Method::PUT,
                &path,
                &[("content-type", MANIFEST_MEDIA_TYPE)],
                Bytes::from(manifest),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("PUT {path} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("PUT {path} answered without a Docker-Content-Digest header"))?
            .to_owned();
        if digest != manifest_digest {
            bail!("{reference} stored the manifest as {digest}, not {manifest_digest}: the registry changed it");
        }
        Ok(digest)
    })
}

/// The manifest bytes the registry serves for `reference` (a tag or a digest) in `repository`.
pub fn pull_manifest(registry: &Reference, reference: &str) -> anyhow::Result<Vec<u8>> {
    let client = Http::new(registry)?;
    client.block_on(async {
        let path = format!("/v2/{}/manifests/{reference}", registry.repository);
        let (status, _, body) = client
            .send(
                Method::GET,
                &path,
                &[("accept", MANIFEST_MEDIA_TYPE)],
                Bytes::new(),
            )
            .await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body.to_vec())
    })
}

async fn upload_blob(
    client: &Http,
    reference: &Reference,
    digest: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let start = format!("/v2/{}/blobs/uploads/", reference.repository);
    let (status, headers, body) = client.send(Method::POST, &start, &[], Bytes::new()).await?;
    if status != StatusCode::ACCEPTED {
        bail!(
            "POST {start} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("POST {start} answered without a Location header"))?;
    let path = upload_path(location, digest)?;
    let (status, _, body) = client
        .send(
            Method::PUT,
            &path,
            &[("content-type", "application/octet-stream")],
            Bytes::from(bytes),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!(
            "PUT of blob {digest} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// The path and query to PUT a monolithic upload to, from the `Location` of the POST (absolute
/// or relative, with or without a query of its own).
fn upload_path(location: &str, digest: &str) -> anyhow::Result<String> {
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    };
    if !path.starts_with('/') {
        bail!("the registry's upload Location {location:?} is not a URL or an absolute path");
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    Ok(format!("{path}{separator}digest={digest}"))
}

/// One registry over plain HTTP/1.1, on a current-thread runtime.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(reference: &Reference) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime for the registry client")?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            runtime,
            client,
            base: format!("http://{}", reference.addr),
        })
    }

    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.runtime.block_on(f)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, hyper::HeaderMap, Bytes)> {
        let uri = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("{method} {uri}: not a valid request"))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {uri}: no answer within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {uri} failed (is the registry running?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_reference_parses_into_address_repository_and_tag() {
        let r: Reference = "127.0.0.1:5000/billing/payment-provider:0.1.0"
            .parse()
            .expect("valid");
        assert_eq!(r.addr, "127.0.0.1:5000".parse().expect("an address"));
        assert_eq!(
            (r.repository.as_str(), r.tag.as_str()),
            ("billing/payment-provider", "0.1.0")
        );
        assert_eq!(
            r.to_string(),
            "127.0.0.1:5000/billing/payment-provider:0.1.0"
        );
        let r: Reference = "localhost:5001/p:v1".parse().expect("valid");
        assert_eq!(r.addr.port(), 5001);
        let r: Reference = "[::1]:5002/p:v1".parse().expect("valid");
        assert!(r.addr.ip().is_loopback());
    }

    #[test]
    fn a_remote_registry_is_refused_with_the_skopeo_command_that_pushes_it() {
        let err = "ghcr.io/billing-platform/payment-provider:0.1.0"
            .parse::<Reference>()
            .expect_err("not loopback")
            .to_string();
        assert!(
            err.starts_with("ghcr.io: only plain-HTTP registries on a loopback address"),
            "{err}"
        );
        assert!(err.contains("skopeo copy --preserve-digests oci-archive:target/image/payment-provider.tar docker://ghcr.io/billing-platform/payment-provider:0.1.0"), "{err}");
        let err = "10.0.0.1:5000/p:v1"
            .parse::<Reference>()
            .expect_err("not loopback")
            .to_string();
        assert!(err.starts_with("10.0.0.1:5000: only plain-HTTP"), "{err}");
    }

    #[test]
    fn malformed_references_say_what_is_missing() {
        let err = |s: &str| s.parse::<Reference>().expect_err("invalid").to_string();
        assert!(err("payment-provider").contains("no registry host"));
        assert!(err("127.0.0.1:5000/payment-provider").contains("no tag"));
        assert!(err("127.0.0.1:5000/Payment:v1").contains("must be lowercase path components"));
        assert!(err("127.0.0.1:5000/p:v 1").contains("is not a valid tag"));
    }

    #[test]
    fn the_upload_path_keeps_the_registrys_query_and_adds_the_digest() {
        assert_eq!(
            upload_path("/v2/p/blobs/uploads/u1?_state=x", "sha256:ab").expect("valid"),
            "/v2/p/blobs/uploads/u1?_state=x&digest=sha256:ab"
        );
        assert_eq!(
            upload_path("http://127.0.0.1:5000/v2/p/blobs/uploads/u1", "sha256:ab").expect("valid"),
            "/v2/p/blobs/uploads/u1?digest=sha256:ab"
        );
        assert!(upload_path("uploads/u1", "sha256:ab").is_err());
    }
}
