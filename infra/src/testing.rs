//! Shared test fixtures: the default spec and tree (built once per process), finders over a
//! tree, and small spec files to build broken specs from.
//!
//! Compiled for this crate's tests and, through the `testing` feature, for the tests of crates
//! that depend on `infra` (xtask turns it on as a dev-dependency feature). Panics are the point
//! here: a fixture that cannot be built is a failed test.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::spec::SourceFile;
use crate::{Error, Object, Spec, Tree};

/// The shipped spec (`infra/platform.toml`, `infra/services/*.toml`), parsed once.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::embedded().expect("the shipped spec is valid"))
}

/// The default tree: [`spec`] rendered, once.
pub fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| crate::render(spec()).expect("the shipped spec renders"))
}

/// The default tree's files as `cargo xtask gen` writes them (path → bytes), once.
pub fn files() -> &'static BTreeMap<String, String> {
    static FILES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    FILES.get_or_init(|| tree().render().expect("the default tree renders to text"))
}

/// Whether `value` is the object `kind/namespace/name` (namespace `""` for cluster-scoped ones).
pub fn is(value: &Value, kind: &str, namespace: &str, name: &str) -> bool {
    value["kind"] == kind
        && value["metadata"]["name"] == name
        && value["metadata"]["namespace"].as_str().unwrap_or("") == namespace
}

/// The object `kind/namespace/name` in the first file whose path contains `file_part`.
pub fn find<'a>(
    tree: &'a Tree,
    kind: &str,
    namespace: &str,
    name: &str,
    file_part: &str,
) -> &'a Value {
    tree.objects()
        .find(|(file, v)| file.contains(file_part) && is(v, kind, namespace, name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {kind}/{namespace}/{name} in a file matching {file_part}"))
}

/// The default tree with the one object `kind/namespace/name` in a file matching `file_part`
/// changed by `edit` (as JSON): a deliberately broken tree. Panics unless exactly one object
/// matches, so a fixture edit cannot silently miss.
pub fn edited(
    file_part: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    edit: impl Fn(&mut Value),
) -> Tree {
    let tree = tree();
    let mut rebuilt = Tree::new();
    for root in tree.roots() {
        rebuilt.add_root(root);
    }
    let mut edits = 0;
    let mut files: BTreeMap<(&str, &str), Vec<Object>> = BTreeMap::new();
    for entry in tree.entries() {
        let mut value = entry.object.value().clone();
        if entry.file.contains(file_part) && is(&value, kind, namespace, name) {
            edit(&mut value);
            edits += 1;
        }
        files
            .entry((entry.cluster, entry.file))
            .or_default()
            .push(Object::new(&value).expect("a JSON value serialises"));
    }
    assert_eq!(
        edits, 1,
        "the edit of {kind}/{namespace}/{name} in {file_part} must hit one object"
    );
    for ((cluster, file), objects) in files {
        rebuilt
            .add_objects(cluster, file, objects)
            .expect("the default tree's paths are unique");
    }
    rebuilt
}

/// A minimal valid `platform.toml`: teams `platform`, `frontend`, `backend`; environments
/// `production` (digests required) and `staging`. Tests that pin a line:column position pin it
/// in these texts, never in the shipped spec files.
pub const PLATFORM: &str = r#"[platform]
name = "shop"
registry = "ghcr.io/shop-org"
owner = "platform"

[platform.git]
url = "https://github.com/shop-org/platform"
branch = "main"

[[teams]]
name = "platform"
github = "@shop-org/platform"
groups = ["shop:platform"]

[[teams]]
name = "frontend"
github = "@shop-org/frontend"
groups = ["shop:frontend-developers"]

[[teams]]
name = "backend"
github = "@shop-org/backend"
users = ["oncall@shop.example"]

[[environments]]
name = "production"
require_digest = true

[[environments]]
name = "staging"
"#;

/// A minimal valid `services/web.toml`: team `frontend`, calls `api` through a service URL, runs
/// as root and writes its root filesystem by exemption.
pub const WEB: &str = r#"team = "frontend"
image = "web"
tag = "2.0.0"
replicas = 1
scratch_dirs = ["/tmp"]

[[ports]]
name = "http"
port = 8000

[resources]
requests = { cpu = "100m", memory = "64Mi" }
limits = { cpu = "1", memory = "256Mi" }

[probes.startup]
path = "/health"
port = 8000
failure_threshold = 30

[probes.liveness]
path = "/health"
port = 8000

[probes.readiness]
path = "/health"
port = 8000

[[env]]
name = "API_URL"
service_url = { service = "api", path = "/v1" }

[[policy_exemptions]]
rule = "run-as-non-root"
reason = "the vendor image runs as root"

[[policy_exemptions]]
rule = "read-only-root-filesystem"
scanner_checks = ["CKV_K8S_22"]
reason = "the vendor image writes to its working directory"

[environments.production]
digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
"#;

/// A minimal valid `services/api.toml`: team `backend`, called by `web` on its port.
pub const API: &str = r#"team = "backend"
image = "api"
tag = "1.0.0"
replicas = 2

[[ports]]
name = "http"
port = 8080

[resources]
requests = { cpu = "100m", memory = "64Mi" }
limits = { cpu = "500m", memory = "128Mi" }

[probes.liveness]
path = "/healthz"
port = 8080

[probes.readiness]
path = "/readyz"
port = 8080
period_seconds = 5

[[callers]]
service = "web"
port = 8080

[environments.production]
digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
replicas = 3

[environments.staging]
"#;

/// Spec files built in a test: a platform file and service files, edited line by line.
#[derive(Clone, Debug)]
pub struct SpecFiles {
    pub platform: SourceFile,
    pub services: Vec<SourceFile>,
}

impl SpecFiles {
    /// [`PLATFORM`] with the services [`API`] and [`WEB`].
    pub fn minimal() -> SpecFiles {
        SpecFiles::new(PLATFORM)
            .with_service("api", API)
            .with_service("web", WEB)
    }

    /// `text` as `infra/platform.toml`, with no services.
    pub fn new(text: &str) -> SpecFiles {
        SpecFiles {
            platform: SourceFile {
                path: "infra/platform.toml".to_owned(),
                text: text.to_owned(),
            },
            services: Vec::new(),
        }
    }

    /// Adds `text` as `infra/services/<name>.toml`.
    pub fn with_service(mut self, name: &str, text: &str) -> SpecFiles {
        self.services.push(SourceFile {
            path: format!("infra/services/{name}.toml"),
            text: text.to_owned(),
        });
        self
    }

    /// Replaces the first `from` with `to` in `file` (`platform` or a service's name). Panics
    /// when `from` is not there, so an edit cannot silently miss.
    pub fn edit(mut self, file: &str, from: &str, to: &str) -> SpecFiles {
        let path = match file {
            "platform" => "infra/platform.toml".to_owned(),
            service => format!("infra/services/{service}.toml"),
        };
        let source = std::iter::once(&mut self.platform)
            .chain(self.services.iter_mut())
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("no spec file {path}"));
        assert!(
            source.text.contains(from),
            "`{from}` is not in {}",
            source.path
        );
        source.text = source.text.replacen(from, to, 1);
        self
    }

    /// Parses and validates the files.
    pub fn parse(&self) -> Result<Spec, Error> {
        Spec::parse(&self.platform, &self.services)
    }

    /// Every problem as `file:line:column: field: message`; empty when the spec is valid.
    pub fn problems(&self) -> Vec<String> {
        match self.parse() {
            Ok(_) => Vec::new(),
            Err(Error::Invalid(problems)) => problems.0.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected validation problems, got {other}"),
        }
    }
}

/// One edit of [`SpecFiles::minimal`] and the problem it must produce: `(what is wrong, file,
/// from, to, the problem's "field: message")`.
pub type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Runs each [`Case`]: the edited minimal spec must report its problem (at whatever position).
pub fn assert_cases(cases: &[Case]) {
    for (what, file, from, to, expected) in cases {
        let found = SpecFiles::minimal().edit(file, from, to).problems();
        assert!(
            found.iter().any(|p| p.ends_with(&format!(": {expected}"))),
            "{what}: expected `{expected}` among {found:#?}"
        );
    }
}

/// Asserts that `expected` is one of `found`, word for word.
pub fn assert_has(found: &[String], expected: &str) {
    assert!(
        found.iter().any(|p| p == expected),
        "expected `{expected}` among {found:#?}"
    );
}
