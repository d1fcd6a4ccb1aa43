//! The SBOM of the provider binary: a CycloneDX 1.5 JSON document of every crate compiled into it,
//! written next to the image layout (not into the image: the image stays the binary plus a few
//! KiB, and the SBOM can be attached to the pushed image by a registry tool; its content is bound
//! to the image by the digest and revision it names).
//!
//! The crates are the provider's dependency graph as `cargo metadata` resolves it for the musl
//! target, following normal dependencies only (build scripts and dev-dependencies are not in the
//! binary; proc-macros are listed, since they generate code that is). The metadata resolve unifies
//! features over the whole workspace, so an optional dependency another member switches on may be
//! listed although the provider's build leaves it out: the list errs towards more, never fewer.
//! Versions and SHA-256 checksums come from `Cargo.lock`. The document has no random serial
//! number and no timestamp: it is a function of the lock file and the image, like the image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use cyclonedx_bom::external_models::spdx::SpdxExpression;
use cyclonedx_bom::models::component::Classification;
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::{Tool, Tools};
use cyclonedx_bom::prelude::*;
use xshell::{Shell, cmd};

/// One crate of the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub license: Option<String>,
    /// SHA-256 of the `.crate` file, from `Cargo.lock` (workspace members have none).
    pub checksum: Option<String>,
    /// `name@version` of its normal dependencies.
    pub dependencies: Vec<String>,
}

impl Crate {
    fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }
}

/// What the SBOM says about the image it belongs to.
pub struct Subject<'a> {
    pub binary: &'a str,
    pub version: &'a str,
    pub image_digest: &'a str,
    pub revision: &'a str,
}

/// Writes the SBOM of `package`'s binary for `target` to `out`; returns the number of crates.
pub fn write(
    root: &Path,
    package: &str,
    target: &str,
    subject: &Subject,
    out: &Path,
) -> anyhow::Result<usize> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata = cmd!(
        sh,
        "{cargo} metadata --format-version 1 --locked --filter-platform {target}"
    )
    .quiet()
    .read()
    .context("cargo metadata failed (see its output above)")?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("cargo metadata printed invalid JSON")?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .with_context(|| format!("cannot read {}", root.join("Cargo.lock").display()))?;
    let crates = binary_crates(&metadata, &lock, package)?;
    let json = document(&crates, subject)?;
    std::fs::write(out, json).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(crates.len())
}

/// The crates reachable from `package` through normal dependencies, sorted by name and version.
pub fn binary_crates(
    metadata: &serde_json::Value,
    lock: &str,
    package: &str,
) -> anyhow::Result<Vec<Crate>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let by_id: BTreeMap<&str, &serde_json::Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let root = packages
        .iter()
        .find(|p| p["name"] == package && p["source"].is_null())
        .and_then(|p| p["id"].as_str())
        .with_context(|| format!("cargo metadata has no workspace package {package}"))?;
    let nodes: BTreeMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata has no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let checksums = lock_checksums(lock)?;

    let mut seen = BTreeSet::new();
    let mut pending = vec![root];
    let mut crates = Vec::new();
    while let Some(id) = pending.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = nodes
            .get(id)
            .with_context(|| format!("{id} is not in cargo metadata's resolve graph"))?;
        let normal: Vec<&str> = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|dep| dep["pkg"].as_str())
            .collect();
        let package = by_id
            .get(id)
            .with_context(|| format!("{id} is in the resolve graph but not among the packages"))?;
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let version = package["version"].as_str().unwrap_or_default().to_owned();
        let mut dependencies: Vec<String> = normal
            .iter()
            .filter_map(|dep| {
                let p = by_id.get(dep)?;
                Some(format!(
                    "{}@{}",
                    p["name"].as_str()?,
                    p["version"].as_str()?
                ))
            })
            .collect();
        dependencies.sort();
        crates.push(Crate {
            checksum: checksums.get(&(name.clone(), version.clone())).cloned(),
            license: package["license"].as_str().map(str::to_owned),
            name,
            version,
            dependencies,
        });
        pending.extend(normal);
    }
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(crates)
}

/// `(name, version) → checksum` of every registry package in `Cargo.lock`.
fn lock_checksums(lock: &str) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let lock: toml::Table = toml::from_str(lock).context("Cargo.lock is not valid TOML")?;
    let mut out = BTreeMap::new();
    for package in lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let field = |key: &str| package.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        if let (Some(name), Some(version), Some(checksum)) =
            (field("name"), field("version"), field("checksum"))
        {
            out.insert((name, version), checksum);
        }
    }
    Ok(out)
}

/// The CycloneDX 1.5 JSON document, validated by the CycloneDX library before it is returned.
fn document(crates: &[Crate], subject: &Subject) -> anyhow::Result<Vec<u8>> {
    let Some(binary) = crates.iter().find(|c| c.checksum.is_none()) else {
        bail!("no workspace package among the crates: the SBOM would have no subject");
    };
    let components: Vec<Component> = crates
        .iter()
        .filter(|c| c.key() != binary.key())
        .map(|c| {
            let mut component =
                Component::new(Classification::Library, &c.name, &c.version, Some(c.purl()));
            component.purl = Purl::new("cargo", &c.name, &c.version).ok();
            component.licenses = c.license.as_deref().map(licenses);
            component.hashes = c.checksum.as_ref().map(|sum| {
                Hashes(vec![Hash {
                    alg: HashAlgorithm::SHA_256,
                    content: HashValue(sum.clone()),
                }])
            });
            component
        })
        .collect();
    let purls: BTreeMap<String, String> = crates.iter().map(|c| (c.key(), c.purl())).collect();
    let dependencies = crates
        .iter()
        .map(|c| Dependency {
            dependency_ref: c.purl(),
            dependencies: c
                .dependencies
                .iter()
                .filter_map(|d| purls.get(d).cloned())
                .collect(),
        })
        .collect();
    let mut subject_component = Component::new(
        Classification::Application,
        subject.binary,
        subject.version,
        Some(binary.purl()),
    );
    subject_component.licenses = binary.license.as_deref().map(licenses);
    subject_component.properties = Some(Properties(vec![
        Property::new(
            "billing-platform:image-manifest-digest",
            subject.image_digest,
        ),
        Property::new("billing-platform:image-revision", subject.revision),
    ]));
    let bom = Bom {
        version: 1,
        serial_number: Some(
            UrnUuid::new(serial_number(subject.image_digest))
                .map_err(|e| anyhow::anyhow!("a UUID made from the digest is invalid: {e:?}"))?,
        ),
        metadata: Some(Metadata {
            tools: Some(Tools::List(vec![Tool::new(
                "billing-platform",
                "cargo xtask image",
                env!("CARGO_PKG_VERSION"),
            )])),
            component: Some(subject_component),
            ..Metadata::default()
        }),
        components: Some(Components(components)),
        dependencies: Some(Dependencies(dependencies)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    let result = bom.validate_version(SpecVersion::V1_5);
    if !result.passed() {
        bail!("the SBOM does not validate as CycloneDX 1.5: {result:?}");
    }
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .map_err(|e| anyhow::anyhow!("cannot write the SBOM as JSON: {e}"))?;
    out.push(b'\n');
    Ok(out)
}

/// Cargo's `license` field as CycloneDX licenses: an SPDX expression, with the old `MIT/Apache-2.0`
/// slash syntax read as `OR` (as cargo does); a field that is no SPDX expression at all is kept
/// as a named license rather than dropped.
fn licenses(field: &str) -> Licenses {
    Licenses(vec![match SpdxExpression::parse_lax(field.to_owned()) {
        Ok(expression) => LicenseChoice::Expression(expression),
        Err(_) => LicenseChoice::License(License::named_license(field)),
    }])
}

/// A `urn:uuid:` made from the image digest (UUID version 8, "custom"): the same image always has
/// the same SBOM serial number, and two images never share one.
fn serial_number(digest: &str) -> String {
    let hex: Vec<char> = super::oci::sha256(digest.as_bytes())
        .trim_start_matches("sha256:")
        .chars()
        .take(32)
        .collect();
    let mut hex = hex;
    hex[12] = '8';
    // RFC 9562 variant bits `10xx`.
    hex[16] = ['8', '9', 'a', 'b'][hex[16].to_digit(16).unwrap_or(0) as usize % 4];
    let s: String = hex.into_iter().collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolve graph: app → lib (normal), app → helper (build only), app → tester (dev only),
    /// lib → leaf (normal).
    fn metadata() -> serde_json::Value {
        let dep = |pkg: &str, kind: serde_json::Value| serde_json::json!({"pkg": pkg, "dep_kinds": [{"kind": kind, "target": null}]});
        serde_json::json!({
            "packages": [
                {"id": "app", "name": "app", "version": "0.1.0", "source": null, "license": "Apache-2.0"},
                {"id": "lib", "name": "lib", "version": "1.0.0", "source": "registry+x", "license": "MIT/Apache-2.0"},
                {"id": "leaf", "name": "leaf", "version": "2.0.0", "source": "registry+x", "license": "MIT"},
                {"id": "helper", "name": "helper", "version": "1.0.0", "source": "registry+x", "license": "MIT"},
                {"id": "tester", "name": "tester", "version": "1.0.0", "source": "registry+x", "license": "MIT"}
            ],
            "resolve": {"nodes": [
                {"id": "app", "deps": [dep("lib", serde_json::Value::Null), dep("helper", "build".into()), dep("tester", "dev".into())]},
                {"id": "lib", "deps": [dep("leaf", serde_json::Value::Null)]},
                {"id": "leaf", "deps": []},
                {"id": "helper", "deps": []},
                {"id": "tester", "deps": []}
            ]}
        })
    }

    const LOCK: &str = r#"
[[package]]
name = "app"
version = "0.1.0"

[[package]]
name = "lib"
version = "1.0.0"
checksum = "1111111111111111111111111111111111111111111111111111111111111111"

[[package]]
name = "leaf"
version = "2.0.0"
checksum = "2222222222222222222222222222222222222222222222222222222222222222"
"#;

    #[test]
    fn only_normal_dependencies_reachable_from_the_binary_are_listed() {
        let crates = binary_crates(&metadata(), LOCK, "app").expect("resolves");
        let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "leaf", "lib"]);
        let lib = crates.iter().find(|c| c.name == "lib").expect("listed");
        assert_eq!(lib.dependencies, ["leaf@2.0.0"]);
        assert_eq!(
            lib.checksum.as_deref(),
            Some("1111111111111111111111111111111111111111111111111111111111111111")
        );
    }

    #[test]
    fn the_document_is_cyclonedx_with_purls_hashes_and_the_image_digest_and_is_deterministic() {
        let crates = binary_crates(&metadata(), LOCK, "app").expect("resolves");
        let subject = Subject {
            binary: "app",
            version: "0.1.0",
            image_digest: "sha256:abc",
            revision: "sha256:def",
        };
        let bytes = document(&crates, &subject).expect("valid");
        assert_eq!(bytes, document(&crates, &subject).expect("valid"));
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["bomFormat"], "CycloneDX");
        assert_eq!(json["specVersion"], "1.5");
        assert!(
            json.get("metadata")
                .and_then(|m| m.get("timestamp"))
                .is_none()
        );
        let components = json["components"].as_array().expect("components");
        assert_eq!(
            components.len(),
            2,
            "the subject is the metadata component, not a library"
        );
        assert_eq!(components[1]["purl"], "pkg:cargo/lib@1.0.0");
        assert_eq!(components[1]["hashes"][0]["alg"], "SHA-256");
        assert_eq!(
            components[1]["licenses"][0]["expression"],
            "MIT OR Apache-2.0"
        );
        let properties = json["metadata"]["component"]["properties"].to_string();
        assert!(properties.contains("sha256:abc"), "{properties}");
        let serial = json["serialNumber"].as_str().expect("serial");
        assert!(
            serial.starts_with("urn:uuid:") && serial.len() == 45,
            "{serial}"
        );
    }

    #[test]
    fn a_package_that_is_not_in_the_workspace_is_named() {
        let err = binary_crates(&metadata(), LOCK, "nope")
            .expect_err("missing")
            .to_string();
        assert_eq!(err, "cargo metadata has no workspace package nope");
    }
}
