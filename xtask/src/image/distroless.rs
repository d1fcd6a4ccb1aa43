//! The provider's image content: what `gcr.io/distroless/static:nonroot` gives a static binary
//! (the three users, their home and `/tmp`), the binary at a fixed path, and nothing more: no
//! shell, no package manager, no libc, no certificates (the provider makes no TLS calls).

use std::collections::BTreeMap;

use super::oci::{Config, Entry, Image, Layer};

/// Where the binary lives in the image (the Dockerfile's path too).
pub const BINARY_PATH: &str = "/payment-provider";
/// distroless's `nonroot`: numeric, so Kubernetes' `runAsNonRoot` can verify it.
pub const NONROOT: u64 = 65532;
/// The provider's listening port (its `PROVIDER_LISTEN` default and the spec's container port).
pub const PORT: u16 = 9000;

/// `/etc/passwd` of distroless static: root, nobody, nonroot, none with a login shell.
const PASSWD: &str = "\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
";
const GROUP: &str = "\
root:x:0:
nobody:x:65534:
nonroot:x:65532:
";

/// What is known about the build besides the binary: goes into labels and annotations.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// `org.opencontainers.image.source`: the repository URL.
    pub source: String,
    /// `org.opencontainers.image.revision`: see `sources::Sources::revision`.
    pub revision: String,
    /// `org.opencontainers.image.version`: the provider crate's version.
    pub version: String,
    /// Seconds since the epoch: `created` everywhere.
    pub created: u64,
}

/// The provider's image: a base layer (users, directories) that rarely changes, and the binary's
/// layer on top, so a node that has the base keeps it across releases.
pub fn provider_image(binary: Vec<u8>, provenance: &Provenance) -> anyhow::Result<Image> {
    let created = super::oci::rfc3339(provenance.created)?;
    let metadata: BTreeMap<String, String> = [
        ("org.opencontainers.image.source", provenance.source.clone()),
        (
            "org.opencontainers.image.revision",
            provenance.revision.clone(),
        ),
        (
            "org.opencontainers.image.version",
            provenance.version.clone(),
        ),
        ("org.opencontainers.image.created", created),
        (
            "org.opencontainers.image.title",
            "payment-provider".to_owned(),
        ),
        (
            "org.opencontainers.image.description",
            "Antaeus-compatible payment provider: charges invoices at random over HTTP".to_owned(),
        ),
        ("org.opencontainers.image.licenses", "Apache-2.0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Ok(Image {
        layers: vec![
            Layer::new(
                "cargo xtask image: distroless-equivalent base",
                base_entries(),
            ),
            Layer::new(
                "cargo xtask image: payment-provider (static musl, release)",
                vec![Entry::file(BINARY_PATH, 0o555, binary)],
            ),
        ],
        config: Config {
            entrypoint: vec![BINARY_PATH.to_owned()],
            user: Some(format!("{NONROOT}:{NONROOT}")),
            env: vec![format!("PROVIDER_LISTEN=0.0.0.0:{PORT}")],
            exposed_ports: vec![format!("{PORT}/tcp")],
            working_dir: Some("/home/nonroot".to_owned()),
            labels: metadata.clone(),
            ..Config::default()
        },
        created: provenance.created,
        annotations: metadata,
        ref_name: provenance.version.clone(),
    })
}

/// The base layer's entries: every path the unpacked root file system has besides the binary.
pub fn base_entries() -> Vec<Entry> {
    vec![
        Entry::dir("/etc", 0o755),
        Entry::file("/etc/passwd", 0o644, PASSWD),
        Entry::file("/etc/group", 0o644, GROUP),
        Entry::dir("/home", 0o755),
        Entry::dir("/home/nonroot", 0o700).owned_by(NONROOT, NONROOT),
        Entry::dir("/root", 0o700),
        Entry::dir("/tmp", 0o1777),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance {
        Provenance {
            source: "https://example.invalid/repo".into(),
            revision: "sha256:0".into(),
            version: "0.1.0".into(),
            created: 0,
        }
    }

    #[test]
    fn the_image_runs_the_binary_as_nonroot_on_port_9000() {
        let image = provider_image(b"\x7fELF".to_vec(), &provenance()).expect("valid");
        assert_eq!(image.config.user.as_deref(), Some("65532:65532"));
        assert_eq!(image.config.entrypoint, ["/payment-provider"]);
        assert_eq!(image.config.env, ["PROVIDER_LISTEN=0.0.0.0:9000"]);
        assert_eq!(image.config.exposed_ports, ["9000/tcp"]);
        for key in ["source", "revision", "version", "created"] {
            let key = format!("org.opencontainers.image.{key}");
            assert!(image.config.labels.contains_key(&key), "{key}");
            assert_eq!(image.config.labels.get(&key), image.annotations.get(&key));
        }
        assert_eq!(
            image.annotations["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_users_are_root_nobody_and_nonroot_without_a_shell() {
        let users: Vec<(&str, &str)> = PASSWD
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split(':').collect();
                (fields[0], fields[2])
            })
            .collect();
        assert_eq!(
            users,
            [("root", "0"), ("nobody", "65534"), ("nonroot", "65532")]
        );
        assert!(PASSWD.lines().all(|l| l.ends_with(":/sbin/nologin")));
        let home = base_entries()
            .into_iter()
            .find(|e| e.path == "/home/nonroot")
            .expect("listed");
        assert_eq!((home.uid, home.gid, home.mode), (NONROOT, NONROOT, 0o700));
    }
}
