//! Semantic validation of the spec: every problem in every file, each with file, line, field and fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::spec::{PlatformFile, Service, SourceFile};

/// One thing wrong with the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The spec file, relative to the workspace root where known.
    pub file: String,
    /// 1-based line and column, when the field could be located.
    pub position: Option<(usize, usize)>,
    /// Dotted field path, e.g. `callers[0].service` (empty for syntax errors).
    pub field: String,
    pub message: String,
}

impl Problem {
    /// A syntax or shape error from the TOML deserialiser.
    pub(crate) fn from_toml(source: &SourceFile, err: &toml::de::Error) -> Problem {
        Problem {
            file: source.path.clone(),
            position: err.span().map(|span| line_column(&source.text, span.start)),
            field: String::new(),
            message: err.message().trim_end_matches('.').to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the platform spec has {} problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        write!(f, "fix them, then run `cargo xtask gen`")
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One step of a field path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Collects problems for one file, locating each field in the file's text.
struct Sink<'a> {
    source: &'a SourceFile,
    doc: Option<toml::Spanned<toml::de::DeTable<'a>>>,
    out: &'a mut Vec<Problem>,
}

impl<'a> Sink<'a> {
    fn new(source: &'a SourceFile, out: &'a mut Vec<Problem>) -> Sink<'a> {
        Sink {
            source,
            doc: toml::de::DeTable::parse(&source.text).ok(),
            out,
        }
    }

    fn push(&mut self, path: &[Seg<'_>], message: String) {
        let position = self
            .locate(path)
            .map(|at| line_column(&self.source.text, at));
        let mut field = String::new();
        for seg in path {
            match seg {
                Seg::Key(k) if field.is_empty() => field.push_str(k),
                Seg::Key(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Seg::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        self.out.push(Problem {
            file: self.source.path.clone(),
            position,
            field,
            message,
        });
    }

    /// Byte offset of the deepest part of `path` present in the file (defaults do not appear).
    fn locate(&self, path: &[Seg<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let Seg::Key(first) = path.first()? else {
            return None;
        };
        let (_, mut value) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == first)?;
        let mut at = value.span().start;
        for seg in &path[1..] {
            let next = match seg {
                Seg::Key(k) => value.get_ref().get(*k),
                Seg::Index(i) => value.get_ref().get(*i),
            };
            match next {
                Some(v) => {
                    value = v;
                    at = v.span().start;
                }
                None => break,
            }
        }
        Some(at)
    }
}

/// DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, ≤ 63.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// IANA service name, what a named container port must be: ≤ 15 chars, one letter at least.
fn is_port_name(name: &str) -> bool {
    is_dns_label(name)
        && name.len() <= 15
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.contains("--")
}

/// A Kubernetes quantity such as `500m`, `1.5`, `128Mi`, `1e3`.
fn is_quantity(q: &str) -> bool {
    let unsigned = q.strip_prefix(['+', '-']).unwrap_or(q);
    let digits_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(digits_end);
    let number_ok = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let suffix_ok = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    number_ok && suffix_ok
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An image repository path: lowercase components separated by `/`.
fn is_repository(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

/// Checks everything that parsing alone cannot: names, references, ports, images, replicas.
pub(crate) fn validate(
    platform_source: &SourceFile,
    platform: &PlatformFile,
    services: &[(&SourceFile, Service)],
    all_names: &BTreeSet<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let teams: BTreeSet<&str> = platform.teams.iter().map(|t| t.name.as_str()).collect();
    let environments: BTreeMap<&str, bool> = platform
        .environments
        .iter()
        .map(|e| (e.name.as_str(), e.require_digest))
        .collect();
    let by_name: BTreeMap<&str, &Service> =
        services.iter().map(|(_, s)| (s.name.as_str(), s)).collect();
    {
        let mut sink = Sink::new(platform_source, &mut out);
        validate_platform(&mut sink, platform, &teams);
    }
    let mut seen = BTreeSet::new();
    for (source, service) in services {
        let mut sink = Sink::new(source, &mut out);
        if !seen.insert(service.name.as_str()) {
            sink.push(&[], format!("service `{}` is declared twice", service.name));
        }
        validate_service(
            &mut sink,
            service,
            &teams,
            &environments,
            &by_name,
            all_names,
        );
    }
    out
}

fn validate_platform(sink: &mut Sink<'_>, file: &PlatformFile, teams: &BTreeSet<&str>) {
    use Seg::{Index, Key};
    let p = &file.platform;
    if !is_dns_label(&p.name) {
        sink.push(
            &[Key("platform"), Key("name")],
            not_dns("platform name", &p.name),
        );
    }
    if !is_repository(&p.registry) || !p.registry.contains('.') {
        sink.push(
            &[Key("platform"), Key("registry")],
            format!(
                "`{}` is not a registry path such as `ghcr.io/our-org` (host with a dot, lowercase path)",
                p.registry
            ),
        );
    }
    if !teams.contains(p.owner.as_str()) {
        sink.push(
            &[Key("platform"), Key("owner")],
            format!("team `{}` is not declared under [[teams]]", p.owner),
        );
    }
    // http:// is for a git server on loopback (the end-to-end test); clusters use https or ssh.
    let schemes = ["https://", "ssh://", "http://"];
    if !schemes.iter().any(|scheme| p.git.url.starts_with(scheme)) {
        sink.push(
            &[Key("platform"), Key("git"), Key("url")],
            format!(
                "`{}` is not an https://, ssh:// or http:// git URL",
                p.git.url
            ),
        );
    }
    if p.git.branch.trim().is_empty() {
        sink.push(
            &[Key("platform"), Key("git"), Key("branch")],
            "the branch is empty".into(),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, team) in file.teams.iter().enumerate() {
        if !is_dns_label(&team.name) {
            sink.push(
                &[Key("teams"), Index(i), Key("name")],
                not_dns("team name", &team.name),
            );
        }
        if !seen.insert(team.name.as_str()) {
            sink.push(
                &[Key("teams"), Index(i), Key("name")],
                format!("team `{}` is declared twice", team.name),
            );
        }
        if !team.github.starts_with('@') || team.github.len() < 2 {
            sink.push(
                &[Key("teams"), Index(i), Key("github")],
                format!(
                    "`{}` is not a GitHub handle such as `@org/team`",
                    team.github
                ),
            );
        }
        if team.groups.is_empty() && team.users.is_empty() {
            sink.push(
                &[Key("teams"), Index(i)],
                format!(
                    "team `{}` has no groups and no users: nobody could deploy its services",
                    team.name
                ),
            );
        }
        for (j, subject) in team.groups.iter().chain(&team.users).enumerate() {
            if subject.trim().is_empty() {
                sink.push(
                    &[Key("teams"), Index(i), Index(j)],
                    "empty group or user name".into(),
                );
            }
        }
    }
    if file.environments.is_empty() {
        sink.push(
            &[Key("environments")],
            "at least one environment is required".into(),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, env) in file.environments.iter().enumerate() {
        if !is_dns_label(&env.name) {
            sink.push(
                &[Key("environments"), Index(i), Key("name")],
                not_dns("environment name", &env.name),
            );
        }
        if !seen.insert(env.name.as_str()) {
            sink.push(
                &[Key("environments"), Index(i), Key("name")],
                format!("environment `{}` is declared twice", env.name),
            );
        }
        for (j, skip) in env.scanner_skips.iter().enumerate() {
            if !is_scanner_check(&skip.check) {
                sink.push(
                    &[
                        Key("environments"),
                        Index(i),
                        Key("scanner_skips"),
                        Index(j),
                        Key("check"),
                    ],
                    format!(
                        "`{}` is not a checkov check ID such as `CKV_K8S_43`",
                        skip.check
                    ),
                );
            }
            if skip.reason.trim().is_empty() {
                sink.push(
                    &[
                        Key("environments"),
                        Index(i),
                        Key("scanner_skips"),
                        Index(j),
                        Key("reason"),
                    ],
                    "a skipped check needs a written reason".into(),
                );
            }
        }
    }
}

/// A checkov check ID: `CKV_` or `CKV2_` then uppercase letters, digits and `_`.
fn is_scanner_check(check: &str) -> bool {
    ["CKV_", "CKV2_"].iter().any(|prefix| {
        check.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    })
}

fn not_dns(what: &str, value: &str) -> String {
    format!(
        "{what} `{value}` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)"
    )
}

fn validate_service(
    sink: &mut Sink<'_>,
    s: &Service,
    teams: &BTreeSet<&str>,
    environments: &BTreeMap<&str, bool>,
    services: &BTreeMap<&str, &Service>,
    all_names: &BTreeSet<String>,
) {
    use Seg::{Index, Key};
    if !is_dns_label(&s.name) {
        sink.push(&[], not_dns("service name (the file name)", &s.name));
    }
    if !teams.contains(s.team.as_str()) {
        sink.push(
            &[Key("team")],
            format!("team `{}` is not declared in platform.toml", s.team),
        );
    }
    if !is_repository(&s.image) {
        sink.push(
            &[Key("image")],
            format!(
                "`{}` is not an image repository name (lowercase, no tag or registry)",
                s.image
            ),
        );
    }
    check_tag(sink, &[Key("tag")], &s.tag);
    if s.replicas < 1 {
        sink.push(
            &[Key("replicas")],
            format!("replicas must be at least 1, not {}", s.replicas),
        );
    }
    if s.ports.is_empty() {
        sink.push(
            &[Key("ports")],
            "at least one container port is required".into(),
        );
    }
    let mut port_numbers = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, port) in s.ports.iter().enumerate() {
        if !(1..=65535).contains(&port.port) {
            sink.push(
                &[Key("ports"), Index(i), Key("port")],
                format!("port {} is outside 1..=65535", port.port),
            );
        }
        if !port_numbers.insert(port.port) {
            sink.push(
                &[Key("ports"), Index(i), Key("port")],
                format!("port {} is declared twice", port.port),
            );
        }
        if !is_port_name(&port.name) {
            sink.push(
                &[Key("ports"), Index(i), Key("name")],
                format!("port name `{}` is not an IANA service name (lowercase, at most 15 characters, one letter)", port.name),
            );
        }
        if !port_names.insert(port.name.as_str()) {
            sink.push(
                &[Key("ports"), Index(i), Key("name")],
                format!("port name `{}` is declared twice", port.name),
            );
        }
    }
    for (which, quantities) in [
        ("requests", &s.resources.requests),
        ("limits", &s.resources.limits),
    ] {
        for (resource, value) in [("cpu", &quantities.cpu), ("memory", &quantities.memory)] {
            if !is_quantity(value) {
                sink.push(
                    &[Key("resources"), Key(which), Key(resource)],
                    format!("`{value}` is not a Kubernetes quantity such as `500m` or `128Mi`"),
                );
            }
        }
    }
    let probes = [
        ("startup", s.probes.startup.as_ref()),
        ("liveness", Some(&s.probes.liveness)),
        ("readiness", Some(&s.probes.readiness)),
    ];
    for (which, probe) in probes {
        let Some(probe) = probe else { continue };
        if !s.declares_port(probe.port) {
            sink.push(
                &[Key("probes"), Key(which), Key("port")],
                format!(
                    "the {which} probe targets port {}, which is not a declared container port",
                    probe.port
                ),
            );
        }
        if !probe.path.starts_with('/') {
            sink.push(
                &[Key("probes"), Key(which), Key("path")],
                format!("probe path `{}` must start with `/`", probe.path),
            );
        }
        for (field, value) in [
            ("period_seconds", probe.period_seconds),
            ("timeout_seconds", probe.timeout_seconds),
            ("failure_threshold", probe.failure_threshold),
        ] {
            if value < 1 {
                sink.push(
                    &[Key("probes"), Key(which), Key(field)],
                    format!("must be at least 1, not {value}"),
                );
            }
        }
        if probe.initial_delay_seconds < 0 {
            sink.push(
                &[Key("probes"), Key(which), Key("initial_delay_seconds")],
                "must not be negative".into(),
            );
        }
    }
    let mut env_names = BTreeSet::new();
    for (i, var) in s.env.iter().enumerate() {
        if !is_env_name(&var.name) {
            sink.push(
                &[Key("env"), Index(i), Key("name")],
                format!("`{}` is not a valid environment variable name", var.name),
            );
        }
        if !env_names.insert(var.name.as_str()) {
            sink.push(
                &[Key("env"), Index(i), Key("name")],
                format!("`{}` is set twice", var.name),
            );
        }
        match (&var.value, &var.service_url) {
            (Some(_), None) => {}
            (None, Some(url))
                if services.contains_key(url.service.as_str())
                    || !all_names.contains(&url.service) =>
            {
                check_service_url(sink, s, i, url, services)
            }
            (None, Some(_)) => {}
            _ => sink.push(
                &[Key("env"), Index(i)],
                format!(
                    "`{}` needs exactly one of `value` or `service_url`",
                    var.name
                ),
            ),
        }
    }
    let mut dirs = BTreeSet::new();
    for (i, dir) in s.scratch_dirs.iter().enumerate() {
        if !dir.starts_with('/') || dir.contains("..") {
            sink.push(
                &[Key("scratch_dirs"), Index(i)],
                format!("`{dir}` is not an absolute path"),
            );
        }
        if !dirs.insert(dir.as_str()) {
            sink.push(
                &[Key("scratch_dirs"), Index(i)],
                format!("`{dir}` is listed twice"),
            );
        }
    }
    for (i, caller) in s.callers.iter().enumerate() {
        // A service whose file failed to parse still exists: its own error is reported already.
        if !all_names.contains(&caller.service) {
            sink.push(
                &[Key("callers"), Index(i), Key("service")],
                format!(
                    "caller `{}` is not a declared service (no infra/services/{}.toml)",
                    caller.service, caller.service
                ),
            );
        }
        if caller.service == s.name {
            sink.push(
                &[Key("callers"), Index(i), Key("service")],
                "a service cannot be its own caller".into(),
            );
        }
        if !s.declares_port(caller.port) {
            sink.push(
                &[Key("callers"), Index(i), Key("port")],
                format!(
                    "port {} is not a declared container port of `{}`",
                    caller.port, s.name
                ),
            );
        }
    }
    let mut rules = BTreeSet::new();
    for (i, exemption) in s.policy_exemptions.iter().enumerate() {
        if !is_dns_label(&exemption.rule) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                not_dns("rule name", &exemption.rule),
            );
        }
        if is_dns_label(&exemption.rule) && is_known_rule(&exemption.rule) == Some(false) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                format!(
                    "`{}` is not a rule of the policy bundle (see policies/rules.yaml)",
                    exemption.rule
                ),
            );
        }
        if !rules.insert(exemption.rule.as_str()) {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("rule")],
                format!("rule `{}` is exempted twice", exemption.rule),
            );
        }
        for (j, check) in exemption.scanner_checks.iter().enumerate() {
            if !is_scanner_check(check) {
                sink.push(
                    &[
                        Key("policy_exemptions"),
                        Index(i),
                        Key("scanner_checks"),
                        Index(j),
                    ],
                    format!("`{check}` is not a checkov check ID such as `CKV_K8S_23`"),
                );
            }
        }
        if exemption.reason.trim().is_empty() {
            sink.push(
                &[Key("policy_exemptions"), Index(i), Key("reason")],
                "an exemption needs a written reason".into(),
            );
        }
    }
    for (env, over) in &s.environments {
        let Some(&require_digest) = environments.get(env.as_str()) else {
            sink.push(
                &[Key("environments"), Key(env)],
                format!("environment `{env}` is not declared in platform.toml"),
            );
            continue;
        };
        if let Some(tag) = &over.tag {
            check_tag(sink, &[Key("environments"), Key(env), Key("tag")], tag);
        }
        if let Some(replicas) = over.replicas
            && replicas < 1
        {
            sink.push(
                &[Key("environments"), Key(env), Key("replicas")],
                format!("replicas must be at least 1, not {replicas}"),
            );
        }
        match &over.digest {
            Some(digest) if !is_digest(digest) => sink.push(
                &[Key("environments"), Key(env), Key("digest")],
                format!("`{digest}` is not a digest of the form `sha256:<64 hex digits>`"),
            ),
            None if require_digest => sink.push(
                &[Key("environments"), Key(env), Key("digest")],
                format!("environment `{env}` requires images pinned by digest: set `digest = \"sha256:…\"`"),
            ),
            _ => {}
        }
    }
    for (env, require_digest) in environments {
        if *require_digest && !s.environments.contains_key(*env) {
            sink.push(
                &[Key("environments")],
                format!("environment `{env}` requires images pinned by digest: add [environments.{env}] with `digest`"),
            );
        }
    }
}

fn check_tag(sink: &mut Sink<'_>, path: &[Seg<'_>], tag: &str) {
    if tag == "latest" {
        sink.push(
            path,
            "the tag `latest` is not allowed: name a release".into(),
        );
    } else if !is_tag(tag) {
        sink.push(path, format!("`{tag}` is not a valid image tag"));
    }
}

fn check_service_url(
    sink: &mut Sink<'_>,
    s: &Service,
    i: usize,
    url: &crate::spec::ServiceUrl,
    services: &BTreeMap<&str, &Service>,
) {
    use Seg::{Index, Key};
    let path = [Key("env"), Index(i), Key("service_url"), Key("service")];
    let Some(callee) = services.get(url.service.as_str()) else {
        sink.push(
            &path,
            format!("`{}` is not a declared service", url.service),
        );
        return;
    };
    let port = url.port.or(callee.ports.first().map(|p| p.port));
    if let Some(port) = url.port
        && !callee.declares_port(port)
    {
        sink.push(
            &[Key("env"), Index(i), Key("service_url"), Key("port")],
            format!(
                "port {port} is not a declared container port of `{}`",
                callee.name
            ),
        );
    }
    let allowed = callee
        .callers
        .iter()
        .any(|c| c.service == s.name && Some(c.port) == port);
    if !allowed {
        sink.push(
            &path,
            format!(
                "`{}` does not list `{}` among its callers on port {}: its network policy would drop these calls (add it to infra/services/{}.toml [[callers]])",
                callee.name,
                s.name,
                port.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                callee.name
            ),
        );
    }
    if !url.path.is_empty() && !url.path.starts_with('/') {
        sink.push(
            &[Key("env"), Index(i), Key("service_url"), Key("path")],
            format!("path `{}` must start with `/`", url.path),
        );
    }
}

/// Whether the policy bundle has a rule of this name; `None` when the bundle itself is broken:
/// rendering then reports that error with its cause.
fn is_known_rule(name: &str) -> Option<bool> {
    let bundle = policies::Bundle::builtin().ok()?;
    Some(bundle.rule(name).is_some())
}

#[cfg(test)]
mod tests {
    use crate::Error;
    use crate::spec::{SourceFile, Spec};

    const PLATFORM: &str = include_str!("../platform.toml");
    const ANTAEUS: &str = include_str!("../services/antaeus.toml");
    const PROVIDER: &str = include_str!("../services/payment-provider.toml");

    /// The shipped spec with `edit` applied to one file's text; returns every problem's text.
    fn problems(file: &str, from: &str, to: &str) -> Vec<String> {
        let edit = |name: &str, text: &str| {
            if name == file {
                assert!(
                    text.contains(from),
                    "fixture edit `{from}` must apply to {name}"
                );
                text.replacen(from, to, 1)
            } else {
                text.to_owned()
            }
        };
        let platform = SourceFile {
            path: "infra/platform.toml".into(),
            text: edit("platform", PLATFORM),
        };
        let services =
            [("antaeus", ANTAEUS), ("payment-provider", PROVIDER)].map(|(name, text)| SourceFile {
                path: format!("infra/services/{name}.toml"),
                text: edit(name, text),
            });
        match Spec::parse(&platform, &services) {
            Ok(_) => Vec::new(),
            Err(Error::Invalid(problems)) => problems.0.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected validation problems, got {other}"),
        }
    }

    fn assert_one(found: &[String], expected: &str) {
        assert!(
            found.iter().any(|p| p == expected),
            "expected `{expected}` among {found:#?}"
        );
    }

    #[test]
    fn the_shipped_spec_has_no_problems() {
        assert_eq!(problems("none", "", ""), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_rejected_with_line_and_column() {
        let found = problems("antaeus", "replicas = 1", "replica = 1");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("infra/services/antaeus.toml:8:1: unknown field `replica`"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let found = problems("platform", "[platform]", "[platform");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0] == "infra/platform.toml:5:10: unclosed table, expected `]`",
            "{found:#?}"
        );
    }

    #[test]
    fn names_that_are_not_dns_labels_are_rejected() {
        let found = problems(
            "platform",
            "name = \"payments\"",
            "name = \"Payments_Team\"",
        );
        assert!(found.iter().any(|p| p.starts_with("infra/platform.toml:27:8: teams[2].name: team name `Payments_Team` is not a DNS-1123 label")), "{found:#?}");
    }

    #[test]
    fn a_service_of_an_undeclared_team_is_rejected() {
        let found = problems("antaeus", "team = \"invoicing\"", "team = \"billing\"");
        assert_one(
            &found,
            "infra/services/antaeus.toml:4:8: team: team `billing` is not declared in platform.toml",
        );
    }

    #[test]
    fn a_caller_that_is_not_a_service_is_rejected() {
        let found = problems(
            "payment-provider",
            "service = \"antaeus\"",
            "service = \"antaeuss\"",
        );
        assert_one(
            &found,
            "infra/services/payment-provider.toml:30:11: callers[0].service: caller `antaeuss` is not a declared service (no infra/services/antaeuss.toml)",
        );
    }

    #[test]
    fn a_caller_port_that_is_not_a_container_port_is_rejected() {
        let found = problems(
            "payment-provider",
            "service = \"antaeus\"\nport = 9000",
            "service = \"antaeus\"\nport = 8080",
        );
        assert_one(
            &found,
            "infra/services/payment-provider.toml:31:8: callers[0].port: port 8080 is not a declared container port of `payment-provider`",
        );
    }

    #[test]
    fn a_probe_on_an_undeclared_port_is_rejected() {
        let found = problems(
            "payment-provider",
            "path = \"/readyz\"\nport = 9000",
            "path = \"/readyz\"\nport = 9001",
        );
        assert_one(
            &found,
            "infra/services/payment-provider.toml:25:8: probes.readiness.port: the readiness probe targets port 9001, which is not a declared container port",
        );
    }

    #[test]
    fn the_latest_tag_is_rejected() {
        let found = problems("antaeus", "tag = \"2019.1.0\"", "tag = \"latest\"");
        assert_one(
            &found,
            "infra/services/antaeus.toml:7:7: tag: the tag `latest` is not allowed: name a release",
        );
    }

    #[test]
    fn a_malformed_digest_is_rejected() {
        let found = problems(
            "payment-provider",
            "digest = \"sha256:3ed0",
            "digest = \"sha256:XYZ",
        );
        assert!(
            found.iter().any(
                |p| p.contains("environments.production.digest: `sha256:XYZ")
                    && p.ends_with("is not a digest of the form `sha256:<64 hex digits>`")
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn production_without_a_digest_is_rejected() {
        let found = problems("antaeus", "digest = \"sha256:", "tag = \"2019.1.1\"\n#");
        assert_one(
            &found,
            "infra/services/antaeus.toml:58:1: environments.production.digest: environment `production` requires images pinned by digest: set `digest = \"sha256:…\"`",
        );
    }

    #[test]
    fn zero_replicas_are_rejected() {
        let found = problems("payment-provider", "replicas = 3", "replicas = 0");
        assert_one(
            &found,
            "infra/services/payment-provider.toml:34:12: environments.production.replicas: replicas must be at least 1, not 0",
        );
    }

    #[test]
    fn an_override_for_an_undeclared_environment_is_rejected() {
        let found = problems(
            "payment-provider",
            "[environments.staging]",
            "[environments.qa]",
        );
        assert_one(
            &found,
            "infra/services/payment-provider.toml:37:1: environments.qa: environment `qa` is not declared in platform.toml",
        );
    }

    #[test]
    fn a_service_url_to_a_service_that_does_not_allow_the_caller_is_rejected() {
        let found = problems(
            "payment-provider",
            "[[callers]]\nservice = \"antaeus\"\nport = 9000",
            "",
        );
        assert_one(
            &found,
            "infra/services/antaeus.toml:46:27: env[0].service_url.service: `payment-provider` does not list `antaeus` among its callers on port 9000: its network policy would drop these calls (add it to infra/services/payment-provider.toml [[callers]])",
        );
    }

    #[test]
    fn an_env_var_with_both_value_and_service_url_is_rejected() {
        let found = problems(
            "antaeus",
            "service_url = {",
            "value = \"x\"\nservice_url = {",
        );
        assert_one(
            &found,
            "infra/services/antaeus.toml:44:1: env[0]: `PAYMENT_PROVIDER_ENDPOINT` needs exactly one of `value` or `service_url`",
        );
    }

    #[test]
    fn a_bad_quantity_is_rejected() {
        let found = problems("antaeus", "memory = \"2Gi\"", "memory = \"2 GB\"");
        assert_one(
            &found,
            "infra/services/antaeus.toml:19:32: resources.limits.memory: `2 GB` is not a Kubernetes quantity such as `500m` or `128Mi`",
        );
    }

    #[test]
    fn an_exemption_without_a_reason_is_rejected() {
        let found = problems(
            "antaeus",
            "reason = \"the stock tinjis image writes",
            "reason = \"\"\n#",
        );
        assert_one(
            &found,
            "infra/services/antaeus.toml:56:10: policy_exemptions[1].reason: an exemption needs a written reason",
        );
    }

    #[test]
    fn a_platform_owner_that_is_not_a_team_is_rejected() {
        let found = problems("platform", "owner = \"platform\"", "owner = \"ops\"");
        assert_one(
            &found,
            "infra/platform.toml:10:9: platform.owner: team `ops` is not declared under [[teams]]",
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut found = problems("antaeus", "tag = \"2019.1.0\"", "tag = \"latest\"");
        found.extend(problems(
            "antaeus",
            "team = \"invoicing\"\n",
            "team = \"nobody\"\nreplicas = 0\n",
        ));
        assert!(found.len() >= 2, "{found:#?}");
        let both = problems(
            "antaeus",
            "tag = \"2019.1.0\"\nreplicas = 1",
            "tag = \"latest\"\nreplicas = 0",
        );
        assert_eq!(both.len(), 2, "{both:#?}");
    }

    /// Each remaining error class: (what is wrong, file, edit from, edit to, expected `field: message`).
    const CASES: &[(&str, &str, &str, &str, &str)] = &[
        (
            "a registry without a host",
            "platform",
            "registry = \"ghcr.io/billing-platform\"",
            "registry = \"billing\"",
            "platform.registry: `billing` is not a registry path such as `ghcr.io/our-org` (host with a dot, lowercase path)",
        ),
        (
            "a git url that is not https or ssh",
            "platform",
            "url = \"https://github.com",
            "url = \"git@github.com:x",
            "platform.git.url: `git@github.com:x/billing-platform/billing` is not an https://, ssh:// or http:// git URL",
        ),
        (
            "an empty branch",
            "platform",
            "branch = \"main\"",
            "branch = \" \"",
            "platform.git.branch: the branch is empty",
        ),
        (
            "a team declared twice",
            "platform",
            "name = \"invoicing\"",
            "name = \"platform\"",
            "teams[1].name: team `platform` is declared twice",
        ),
        (
            "a github handle without @",
            "platform",
            "github = \"@billing-platform/invoicing\"",
            "github = \"invoicing\"",
            "teams[1].github: `invoicing` is not a GitHub handle such as `@org/team`",
        ),
        (
            "a team nobody is in",
            "platform",
            "groups = [\"billing:invoicing-developers\"]",
            "groups = []",
            "teams[1]: team `invoicing` has no groups and no users: nobody could deploy its services",
        ),
        (
            "an empty group name",
            "platform",
            "groups = [\"billing:invoicing-developers\"]",
            "groups = [\"\"]",
            "teams[1][0]: empty group or user name",
        ),
        (
            "an environment declared twice",
            "platform",
            "name = \"staging\"",
            "name = \"production\"",
            "environments[1].name: environment `production` is declared twice",
        ),
        (
            "an environment name that is not a DNS label",
            "platform",
            "name = \"staging\"",
            "name = \"Staging\"",
            "environments[1].name: environment name `Staging` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)",
        ),
        (
            "an image with a registry or tag",
            "antaeus",
            "image = \"antaeus\"",
            "image = \"Antaeus:1\"",
            "image: `Antaeus:1` is not an image repository name (lowercase, no tag or registry)",
        ),
        (
            "a malformed tag",
            "antaeus",
            "tag = \"2019.1.0\"",
            "tag = \"-bad\"",
            "tag: `-bad` is not a valid image tag",
        ),
        (
            "a replica count below one",
            "antaeus",
            "replicas = 1",
            "replicas = 0",
            "replicas: replicas must be at least 1, not 0",
        ),
        (
            "a port outside the range",
            "antaeus",
            "port = 8000\n\n[resources]",
            "port = 80000\n\n[resources]",
            "ports[0].port: port 80000 is outside 1..=65535",
        ),
        (
            "a port name that is too long",
            "antaeus",
            "name = \"http\"",
            "name = \"http-for-antaeus-api\"",
            "ports[0].name: port name `http-for-antaeus-api` is not an IANA service name (lowercase, at most 15 characters, one letter)",
        ),
        (
            "no ports at all",
            "antaeus",
            "[[ports]]\nname = \"http\"\nport = 8000",
            "ports = []",
            "ports: at least one container port is required",
        ),
        (
            "a probe path without a slash",
            "payment-provider",
            "path = \"/healthz\"",
            "path = \"healthz\"",
            "probes.liveness.path: probe path `healthz` must start with `/`",
        ),
        (
            "a probe period of zero",
            "payment-provider",
            "period_seconds = 5",
            "period_seconds = 0",
            "probes.readiness.period_seconds: must be at least 1, not 0",
        ),
        (
            "a negative initial delay",
            "payment-provider",
            "period_seconds = 5",
            "period_seconds = 5\ninitial_delay_seconds = -1",
            "probes.readiness.initial_delay_seconds: must not be negative",
        ),
        (
            "an env var name with a dash",
            "antaeus",
            "name = \"PAYMENT_PROVIDER_ENDPOINT\"",
            "name = \"PAYMENT-ENDPOINT\"",
            "env[0].name: `PAYMENT-ENDPOINT` is not a valid environment variable name",
        ),
        (
            "an env var set twice",
            "antaeus",
            "[[policy_exemptions]]",
            "[[env]]\nname = \"PAYMENT_PROVIDER_ENDPOINT\"\nvalue = \"x\"\n\n[[policy_exemptions]]",
            "env[1].name: `PAYMENT_PROVIDER_ENDPOINT` is set twice",
        ),
        (
            "a service url to an unknown service",
            "antaeus",
            "service = \"payment-provider\"",
            "service = \"ledger\"",
            "env[0].service_url.service: `ledger` is not a declared service",
        ),
        (
            "a service url on an undeclared port",
            "antaeus",
            "path = \"/v1/charges\"",
            "path = \"/v1/charges\", port = 9100",
            "env[0].service_url.port: port 9100 is not a declared container port of `payment-provider`",
        ),
        (
            "a service url path without a slash",
            "antaeus",
            "path = \"/v1/charges\"",
            "path = \"v1/charges\"",
            "env[0].service_url.path: path `v1/charges` must start with `/`",
        ),
        (
            "a relative scratch dir",
            "antaeus",
            "scratch_dirs = [\"/tmp\"]",
            "scratch_dirs = [\"tmp\"]",
            "scratch_dirs[0]: `tmp` is not an absolute path",
        ),
        (
            "a scratch dir listed twice",
            "antaeus",
            "scratch_dirs = [\"/tmp\"]",
            "scratch_dirs = [\"/tmp\", \"/tmp\"]",
            "scratch_dirs[1]: `/tmp` is listed twice",
        ),
        (
            "a service calling itself",
            "payment-provider",
            "service = \"antaeus\"",
            "service = \"payment-provider\"",
            "callers[0].service: a service cannot be its own caller",
        ),
        (
            "an exemption rule that is not a name",
            "antaeus",
            "rule = \"run-as-non-root\"",
            "rule = \"Run As Root\"",
            "policy_exemptions[0].rule: rule name `Run As Root` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)",
        ),
        (
            "an exemption of a rule the bundle does not have",
            "antaeus",
            "rule = \"run-as-non-root\"",
            "rule = \"run-as-root\"",
            "policy_exemptions[0].rule: `run-as-root` is not a rule of the policy bundle (see policies/rules.yaml)",
        ),
        (
            "an exemption listed twice",
            "antaeus",
            "rule = \"read-only-root-filesystem\"",
            "rule = \"run-as-non-root\"",
            "policy_exemptions[1].rule: rule `run-as-non-root` is exempted twice",
        ),
        (
            "an override with a latest tag",
            "antaeus",
            "[environments.staging]",
            "[environments.staging]\ntag = \"latest\"",
            "environments.staging.tag: the tag `latest` is not allowed: name a release",
        ),
        (
            "a service without a production section",
            "antaeus",
            "[environments.production]\ndigest",
            "[environments.qa]\ndigest",
            "environments: environment `production` requires images pinned by digest: add [environments.production] with `digest`",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        for (what, file, from, to, expected) in CASES {
            let found = problems(file, from, to);
            assert!(
                found.iter().any(|p| p.ends_with(&format!(": {expected}"))),
                "{what}: expected `{expected}` among {found:#?}"
            );
        }
    }

    #[test]
    fn a_service_file_name_that_is_not_a_dns_label_is_rejected() {
        let platform = SourceFile {
            path: "infra/platform.toml".into(),
            text: PLATFORM.into(),
        };
        let services = [SourceFile {
            path: "infra/services/Antaeus.toml".into(),
            text: ANTAEUS.replace(
                "service_url = { service = \"payment-provider\", path = \"/v1/charges\" }",
                "value = \"x\"",
            ),
        }];
        let err = Spec::parse(&platform, &services).expect_err("invalid name");
        assert!(err.to_string().contains("infra/services/Antaeus.toml: service name (the file name) `Antaeus` is not a DNS-1123 label"), "{err}");
    }

    #[test]
    fn the_problem_list_ends_with_the_fixing_command() {
        let platform = SourceFile {
            path: "p.toml".into(),
            text: "[platform]\nname = 1\n".into(),
        };
        let err = Spec::parse(&platform, &[]).expect_err("invalid");
        assert!(
            err.to_string()
                .ends_with("fix them, then run `cargo xtask gen`"),
            "{err}"
        );
    }
}
