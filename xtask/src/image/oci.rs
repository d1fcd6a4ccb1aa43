//! A generic OCI image assembler: layers listed entry by entry, a config and one timestamp in; an
//! OCI image layout directory, the same layout as a `.tar`, and the manifest digest out.
//!
//! One file of about 570 lines of code (its tests below them): the image's types, its validation
//! and the byte-exact encoders (tar entries, gzip, canonical JSON, the layout) make one format
//! whose reproducibility is argued in one place; split, each part would only pass the others' types.
//!
//! Nothing here knows about the payment provider, so any static binary can be packed the same way
//! (the provider's image in [`super::distroless`], the kubelet's `pause` image in the e2e), and
//! its encoders (tar, gzip, JSON, descriptors, the layout) also write the Flux artifacts of
//! `cargo xtask publish`:
//!
//! ```ignore
//! let image = oci::Image {
//!     layers: vec![oci::Layer::new("pause", vec![oci::Entry::file("/pause", 0o555, bytes)])],
//!     config: oci::Config { entrypoint: vec!["/pause".into()], ..Default::default() },
//!     created: 0,
//!     annotations: Default::default(),
//!     ref_name: "3.10".into(),
//! };
//! let written = oci::write(&image, &target.join("image/pause"))?; // …/pause/ and …/pause.tar
//! println!("{}", written.manifest_digest);
//! ```
//!
//! The output is a function of the [`Image`] value alone, to the byte:
//! - every entry is listed explicitly (path, mode, owner, contents); no file system is read, so no
//!   umask, owner, atime or extended attribute of the build machine leaks in;
//! - tar entries are sorted by path, in plain ustar headers (no pax headers, so no pids, atimes or
//!   ctimes), user and group names empty, every mtime = [`Image::created`];
//! - gzip headers carry no file name and mtime 0; the compressor is the locked `flate2` version;
//! - JSON documents are written with sorted keys and no whitespace: `oci-spec` keeps labels and
//!   annotations in `HashMap`s, whose iteration order changes from one process to the next;
//! - the platform is always linux/amd64 (the workspace builds static x86_64 musl binaries).
//!
//! Longer than most modules: one entry point whose parts (validation, tar, gzip, JSON, layout)
//! only make sense together, and tests for each of them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};

/// The annotation of `index.json` that names a manifest inside a layout (`oci:DIR:REF` in skopeo).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One file system entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute and normalised: `/etc/passwd`, never `etc/passwd`, `/etc/` or `/a/../b`.
    pub path: String,
    /// Permission bits, including setuid/setgid/sticky (`0o1777` for `/tmp`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A symbolic link to this target (stored as given).
    #[allow(dead_code)] // for images that need one; the provider's has none
    Symlink(String),
}

impl Entry {
    /// A directory owned by root.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::new(path, mode, Kind::Dir)
    }

    /// A regular file owned by root.
    pub fn file(path: &str, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        Self::new(path, mode, Kind::File(contents.into()))
    }

    /// A symbolic link owned by root (mode 0777, as links always are).
    #[allow(dead_code)] // for images that need one; the provider's has none
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, 0o777, Kind::Symlink(target.to_owned()))
    }

    /// The same entry owned by `uid:gid`.
    pub fn owned_by(self, uid: u64, gid: u64) -> Self {
        Self { uid, gid, ..self }
    }

    fn new(path: &str, mode: u32, kind: Kind) -> Self {
        Self {
            path: path.to_owned(),
            mode,
            uid: 0,
            gid: 0,
            kind,
        }
    }
}

/// One layer: its entries (any order; they are sorted) and the history line that describes it.
#[derive(Clone, Debug)]
pub struct Layer {
    pub created_by: String,
    pub entries: Vec<Entry>,
}

impl Layer {
    pub fn new(created_by: &str, entries: Vec<Entry>) -> Self {
        Self {
            created_by: created_by.to_owned(),
            entries,
        }
    }
}

/// The runtime defaults of the image config (`docker inspect`'s `Config`); empty fields are left out.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `uid:gid`, numerically, so Kubernetes' `runAsNonRoot` can check it without `/etc/passwd`.
    pub user: Option<String>,
    /// `NAME=value` lines.
    pub env: Vec<String>,
    /// `9000/tcp`-style keys.
    pub exposed_ports: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Everything an image is made of; [`write`] turns it into a layout.
#[derive(Clone, Debug)]
pub struct Image {
    /// Bottom first. A path may appear in several layers (the upper one wins); a parent directory
    /// must be listed in the same layer or a lower one.
    pub layers: Vec<Layer>,
    pub config: Config,
    /// Seconds since the Unix epoch: the config's `created`, every history line and every tar mtime.
    pub created: u64,
    /// Annotations of the manifest (what registries show), e.g. `org.opencontainers.image.source`.
    pub annotations: BTreeMap<String, String>,
    /// The manifest's name inside the layout's `index.json` (`oci:DIR:REF_NAME` in skopeo).
    pub ref_name: String,
}

/// What [`write`] produced.
#[derive(Clone, Debug)]
pub struct Written {
    /// `sha256:…` of the manifest: the image's identity, what a deployment pins.
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub config_size: u64,
    /// Bottom first.
    pub layers: Vec<LayerSizes>,
    /// The OCI image layout directory.
    pub dir: PathBuf,
    /// The same layout as one tar archive (`oci-archive:` in skopeo, `ctr images import`).
    pub tar: PathBuf,
}

#[derive(Clone, Debug)]
pub struct LayerSizes {
    /// `sha256:…` of the compressed blob.
    pub digest: String,
    pub compressed: u64,
    pub uncompressed: u64,
}

impl Written {
    /// Bytes a registry stores and a node pulls: manifest, config and compressed layers.
    pub fn total_size(&self) -> u64 {
        self.manifest_size
            + self.config_size
            + self.layers.iter().map(|l| l.compressed).sum::<u64>()
    }
}

/// Writes `image` as an OCI image layout into `dir` (replacing what was there) and as `dir.tar`.
pub fn write(image: &Image, dir: &Path) -> anyhow::Result<Written> {
    validate(image)?;
    let created = rfc3339(image.created)?;
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for layer in &image.layers {
        let tar = layer_tar(&layer.entries, image.created)?;
        let gzipped = gzip(&tar)?;
        let digest = sha256(&gzipped);
        diff_ids.push(sha256(&tar));
        layer_descriptors.push(descriptor(
            MediaType::ImageLayerGzip,
            &digest,
            gzipped.len(),
        )?);
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(layer.created_by.clone())
                .build()?,
        );
        layers.push(LayerSizes {
            digest: digest.clone(),
            compressed: gzipped.len() as u64,
            uncompressed: tar.len() as u64,
        });
        blobs.push((digest, gzipped));
    }

    let config = image_config(image, &created, diff_ids, history)?;
    let config_digest = sha256(&config);
    let config_descriptor = descriptor(MediaType::ImageConfig, &config_digest, config.len())?;
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(layer_descriptors);
    if !image.annotations.is_empty() {
        manifest = manifest.annotations(
            image
                .annotations
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let manifest = canonical_json(&manifest.build()?)?;
    let manifest_digest = sha256(&manifest);

    let mut manifest_descriptor =
        descriptor(MediaType::ImageManifest, &manifest_digest, manifest.len())?;
    manifest_descriptor.set_annotations(Some(
        [(REF_NAME.to_owned(), image.ref_name.clone())]
            .into_iter()
            .collect(),
    ));
    let index = canonical_json(
        &ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_descriptor])
            .build()?,
    )?;
    let written = Written {
        manifest_size: manifest.len() as u64,
        config_digest: config_digest.clone(),
        config_size: config.len() as u64,
        manifest_digest: manifest_digest.clone(),
        layers,
        dir: dir.to_owned(),
        tar: dir.with_extension("tar"),
    };
    blobs.push((config_digest, config));
    blobs.push((manifest_digest, manifest));
    blobs.sort();
    blobs.dedup_by(|a, b| a.0 == b.0);

    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
    ];
    for (digest, bytes) in blobs {
        let hex = digest
            .strip_prefix("sha256:")
            .expect("sha256() names its algorithm");
        files.push((format!("blobs/sha256/{hex}"), bytes));
    }
    write_layout(dir, &files)?;
    write_layout_tar(&written.tar, &files, image.created)?;
    Ok(written)
}

/// `sha256:<hex>` of `bytes` (the Flux artifacts' too: one function).
pub use infra::artifact::sha256;

/// Reads a blob of a layout written by [`write`], checking it against its digest.
pub fn read_blob(dir: &Path, digest: &str) -> anyhow::Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("{digest} is not a sha256 digest"))?;
    let path = dir.join("blobs").join("sha256").join(hex);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if sha256(&bytes) != digest {
        bail!(
            "{} does not hash to its name: the layout is damaged; rebuild it",
            path.display()
        );
    }
    Ok(bytes)
}

/// Serialises with sorted keys and no whitespace, so equal values give equal bytes in any process.
pub fn canonical_json(value: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    // serde_json's `Value` map is a BTreeMap (the workspace does not enable `preserve_order`):
    // going through it sorts every object's keys, whatever order the HashMaps iterated in.
    let value = serde_json::to_value(value).context("cannot serialise an OCI document")?;
    Ok(serde_json::to_vec(&sorted(value)).expect("a JSON value serialises"))
}

/// Rebuilds every object with its keys in order, even if `preserve_order` is switched on later.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let ordered: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(ordered.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// The descriptor of a blob: its media type, digest and size.
pub fn descriptor(media_type: MediaType, digest: &str, size: usize) -> anyhow::Result<Descriptor> {
    let digest: Digest = digest.parse().context("a sha256 digest parses")?;
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size as u64)
        .build()?)
}

fn image_config(
    image: &Image,
    created: &str,
    diff_ids: Vec<String>,
    history: Vec<oci_spec::image::History>,
) -> anyhow::Result<Vec<u8>> {
    let c = &image.config;
    let mut config = ConfigBuilder::default();
    if !c.entrypoint.is_empty() {
        config = config.entrypoint(c.entrypoint.clone());
    }
    if !c.cmd.is_empty() {
        config = config.cmd(c.cmd.clone());
    }
    if let Some(user) = &c.user {
        config = config.user(user.clone());
    }
    if !c.env.is_empty() {
        config = config.env(c.env.clone());
    }
    if !c.exposed_ports.is_empty() {
        config = config.exposed_ports(c.exposed_ports.clone());
    }
    if let Some(dir) = &c.working_dir {
        config = config.working_dir(dir.clone());
    }
    if !c.labels.is_empty() {
        config = config.labels(
            c.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let configuration = ImageConfigurationBuilder::default()
        .created(created.to_owned())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()?,
        )
        .history(history)
        .build()?;
    canonical_json(&configuration)
}

/// Every problem of the entries at once, naming the layer and the path.
fn validate(image: &Image) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut dirs: std::collections::BTreeSet<&str> = ["/"].into_iter().collect();
    for (n, layer) in image.layers.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        let mut entries: Vec<&Entry> = layer.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for entry in entries {
            let at = format!("layer {n} ({}): {}", layer.created_by, entry.path);
            let path = entry.path.as_str();
            let normal = path.starts_with('/')
                && path.len() > 1
                && !path.ends_with('/')
                && path[1..]
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !normal {
                problems.push(format!(
                    "{at}: not an absolute, normalised path such as /etc/passwd"
                ));
                continue;
            }
            // Directory entries get a trailing slash in the archive: 99 bytes leave room for it
            // in the 100-byte ustar name field (no prefix field, no extension headers).
            if path.len() > 99 {
                problems.push(format!(
                    "{at}: longer than 99 bytes, which a plain ustar header cannot hold"
                ));
            }
            if !seen.insert(path) {
                problems.push(format!("{at}: listed twice in the layer"));
            }
            if entry.mode > 0o7777 {
                problems.push(format!("{at}: mode {:o} has bits beyond 7777", entry.mode));
            }
            let parent = path
                .rsplit_once('/')
                .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
            if !dirs.contains(parent) {
                problems.push(format!(
                    "{at}: its parent directory {parent} is not listed in this layer or a lower one"
                ));
            }
            if let Kind::Symlink(target) = &entry.kind
                && target.is_empty()
            {
                problems.push(format!("{at}: symbolic link with an empty target"));
            }
            if entry.kind == Kind::Dir {
                dirs.insert(path);
            }
        }
    }
    if image.ref_name.is_empty() {
        problems.push("the image has no ref_name for index.json".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("invalid image entries:\n  {}", problems.join("\n  "))
    }
}

/// One layer as an uncompressed tar: sorted, plain ustar headers, every mtime `mtime`.
pub fn layer_tar(entries: &[Entry], mtime: u64) -> anyhow::Result<Vec<u8>> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        let name = entry.path.trim_start_matches('/');
        let (kind, data, name): (tar::EntryType, &[u8], String) = match &entry.kind {
            Kind::Dir => (tar::EntryType::Directory, &[], format!("{name}/")),
            Kind::File(bytes) => (tar::EntryType::Regular, bytes, name.to_owned()),
            Kind::Symlink(_) => (tar::EntryType::Symlink, &[], name.to_owned()),
        };
        let mut header = plain_header(&name, kind, entry.mode, data.len() as u64, mtime)?;
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        if let Kind::Symlink(target) = &entry.kind {
            header.set_link_name(target).with_context(|| {
                format!(
                    "{}: link target {target:?} does not fit a ustar header",
                    entry.path
                )
            })?;
        }
        header.set_cksum();
        builder
            .append(&header, data)
            .context("writing a tar entry into memory")?;
    }
    builder.into_inner().context("finishing a layer tar")
}

/// A ustar header with the name written as given (the tar crate's `set_path` drops a directory's
/// trailing slash), empty user and group names, and the given type, mode, size and mtime.
fn plain_header(
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
) -> anyhow::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    let field = &mut header.as_old_mut().name;
    if name.len() > field.len() {
        bail!("{name}: longer than a ustar name field");
    }
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    Ok(header)
}

/// Gzip with no file name and mtime 0 in its header, at the best compression level.
pub fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).context("compressing a layer")?;
    encoder.finish().context("compressing a layer")
}

/// `1970-01-01T00:00:00Z`-style UTC time of `seconds` since the epoch.
pub fn rfc3339(seconds: u64) -> anyhow::Result<String> {
    let seconds = i64::try_from(seconds).context("timestamp out of range")?;
    let time = time::OffsetDateTime::from_unix_timestamp(seconds)
        .with_context(|| format!("{seconds} is not a representable timestamp"))?;
    time.format(&time::format_description::well_known::Rfc3339)
        .context("formatting a timestamp")
}

/// Writes the layout `files` (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) into `dir`,
/// replacing what was there.
pub fn write_layout(dir: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot remove {}", dir.display())),
    }
    for (name, bytes) in files {
        let path = dir.join(name);
        let parent = path.parent().expect("layout files live in a directory");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn write_layout_tar(path: &Path, files: &[(String, Vec<u8>)], mtime: u64) -> anyhow::Result<()> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = plain_header(dir, tar::EntryType::Directory, 0o755, 0, mtime)?;
        header.set_cksum();
        builder
            .append(&header, &[][..])
            .context("writing the layout tar")?;
    }
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, bytes) in sorted {
        let header = plain_header(
            name,
            tar::EntryType::Regular,
            0o644,
            bytes.len() as u64,
            mtime,
        )?;
        builder
            .append(&header, bytes.as_slice())
            .context("writing the layout tar")?;
    }
    let bytes = builder.into_inner().context("finishing the layout tar")?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Image {
        Image {
            layers: vec![
                Layer::new(
                    "base",
                    vec![
                        Entry::dir("/tmp", 0o1777),
                        Entry::dir("/etc", 0o755),
                        Entry::file("/etc/hostname", 0o644, "box\n"),
                        Entry::symlink("/etc/alias", "hostname"),
                    ],
                ),
                Layer::new(
                    "app",
                    vec![Entry::file("/app", 0o555, vec![0x7f, b'E', b'L', b'F']).owned_by(0, 0)],
                ),
            ],
            config: Config {
                entrypoint: vec!["/app".into()],
                user: Some("65532:65532".into()),
                exposed_ports: vec!["9000/tcp".into(), "9001/tcp".into()],
                labels: [
                    ("b".to_owned(), "2".to_owned()),
                    ("a".to_owned(), "1".to_owned()),
                ]
                .into(),
                ..Config::default()
            },
            created: 0,
            annotations: [(
                "org.opencontainers.image.version".to_owned(),
                "1".to_owned(),
            )]
            .into(),
            ref_name: "1".into(),
        }
    }

    fn entries_of(tar: &[u8]) -> Vec<(String, u32, u64, u64, u64, tar::EntryType)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .expect("a tar")
            .map(|e| {
                let e = e.expect("an entry");
                let h = e.header();
                (
                    String::from_utf8(h.path_bytes().to_vec()).expect("utf-8"),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.mtime().expect("mtime"),
                    h.size().expect("size"),
                    h.entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn the_same_image_written_twice_has_the_same_bytes_and_digest() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let a = write(&tiny(), &scratch.path().join("a")).expect("writes");
        let b = write(&tiny(), &scratch.path().join("b")).expect("writes");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(
            std::fs::read(&a.tar).expect("written"),
            std::fs::read(&b.tar).expect("written")
        );
        let mut changed = tiny();
        changed.created = 1;
        let c = write(&changed, &scratch.path().join("c")).expect("writes");
        assert_ne!(
            a.manifest_digest, c.manifest_digest,
            "the timestamp is part of the image"
        );
    }

    #[test]
    fn layers_are_sorted_plain_ustar_with_the_given_owner_mode_and_timestamp() {
        let mut image = tiny();
        image.created = 1_700_000_000;
        image.layers[0].entries.push(Entry::dir("/home", 0o755));
        image.layers[0]
            .entries
            .push(Entry::dir("/home/nonroot", 0o700).owned_by(65532, 65532));
        let tar = layer_tar(&image.layers[0].entries, image.created).expect("a tar");
        let entries = entries_of(&tar);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/alias",
                "etc/hostname",
                "home/",
                "home/nonroot/",
                "tmp/"
            ]
        );
        let home = entries
            .iter()
            .find(|e| e.0 == "home/nonroot/")
            .expect("listed");
        assert_eq!((home.1, home.2, home.3), (0o700, 65532, 1_700_000_000));
        assert_eq!(
            entries.iter().find(|e| e.0 == "tmp/").expect("listed").1,
            0o1777
        );
        assert!(entries.iter().all(|e| !matches!(
            e.5,
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader | tar::EntryType::GNULongName
        )));
        // Empty user and group names: only the numeric owner is stored.
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().expect("a tar") {
            let entry = entry.expect("an entry");
            assert_eq!(entry.header().username_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn the_layout_holds_the_manifest_config_and_layers_named_by_their_digests() {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let written = write(&tiny(), &scratch.path().join("img")).expect("writes");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(written.dir.join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["manifests"][0]["digest"], written.manifest_digest);
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "1");
        let manifest: serde_json::Value = serde_json::from_slice(
            &read_blob(&written.dir, &written.manifest_digest).expect("blob"),
        )
        .expect("json");
        assert_eq!(manifest["config"]["digest"], written.config_digest);
        assert_eq!(manifest["layers"].as_array().expect("layers").len(), 2);
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.version"],
            "1"
        );
        let config_bytes = read_blob(&written.dir, &written.config_digest).expect("blob");
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).expect("json");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().expect("ids").len(),
            2
        );
        // Sorted keys: the labels come out a, b whatever order the HashMap iterated in.
        let text = String::from_utf8(config_bytes).expect("utf-8");
        assert!(text.contains(r#""Labels":{"a":"1","b":"2"}"#), "{text}");
        for layer in &written.layers {
            assert!(layer.compressed > 0 && layer.uncompressed >= 1024);
        }
        let archived = entries_of(&std::fs::read(&written.tar).expect("tar"));
        let names: Vec<&str> = archived.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
        assert!(names.contains(&"index.json") && names.contains(&"oci-layout"));
        assert_eq!(names.len(), 2 + 2 + 4, "{names:?}");
    }

    #[test]
    fn bad_entries_are_all_reported_with_their_layer_and_path() {
        let mut image = tiny();
        image.layers[1].entries = vec![
            Entry::file("relative", 0o644, ""),
            Entry::file("/usr/bin/x", 0o644, ""),
            Entry::file("/app", 0o17777, ""),
            Entry::file("/app", 0o644, ""),
            Entry::file("/a/../b", 0o644, ""),
        ];
        let err = write(
            &image,
            &tempfile::tempdir().expect("scratch").path().join("x"),
        )
        .expect_err("invalid")
        .to_string();
        assert!(
            err.contains("layer 1 (app): relative: not an absolute, normalised path"),
            "{err}"
        );
        assert!(
            err.contains("layer 1 (app): /usr/bin/x: its parent directory /usr/bin is not listed"),
            "{err}"
        );
        assert!(
            err.contains("/app: mode 17777 has bits beyond 7777"),
            "{err}"
        );
        assert!(err.contains("/app: listed twice in the layer"), "{err}");
        assert!(
            err.contains("/a/../b: not an absolute, normalised path"),
            "{err}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0).expect("valid"), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_764_000_000).expect("valid"),
            "2025-11-24T16:00:00Z"
        );
    }
}
