//! Validation of a service's workload: its name, team, image, replicas, ports, resources, probes
//! and scratch directories.

use std::collections::BTreeSet;

use super::{Declared, check_tag, not_dns};
use crate::spec::problems::{Seg, Sink};
use crate::spec::syntax::{is_dns_label, is_port_name, is_quantity, is_repository};
use crate::spec::types::Service;

pub(super) fn check(sink: &mut Sink<'_>, s: &Service, declared: &Declared<'_>) {
    use Seg::{Index, Key};
    if !is_dns_label(&s.name) {
        sink.push(&[], not_dns("service name (the file name)", &s.name));
    }
    if !declared.teams.contains(s.team.as_str()) {
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
    if let Some(max) = s.max_replicas {
        let most = s
            .environments
            .iter()
            .filter_map(|(env, o)| o.replicas.map(|r| (r, format!("environment {env}"))))
            .chain([(s.replicas, "the default".to_owned())])
            .max_by_key(|(r, _)| *r);
        if let Some((replicas, whose)) = most
            && max < replicas
        {
            sink.push(
                &[Key("max_replicas")],
                format!("max_replicas {max} is below the {replicas} replicas of {whose}: the Deployment could not even roll out"),
            );
        }
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
}

pub(super) fn check_scratch_dirs(sink: &mut Sink<'_>, s: &Service) {
    use Seg::{Index, Key};
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
}

#[cfg(test)]
mod tests {
    use crate::testing::{API, Case, PLATFORM, SpecFiles, WEB, assert_cases, assert_has};

    #[test]
    fn a_service_of_an_undeclared_team_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("web", "team = \"frontend\"", "team = \"billing\"")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:1:8: team: team `billing` is not declared in platform.toml",
        );
    }

    #[test]
    fn the_latest_tag_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("web", "tag = \"2.0.0\"", "tag = \"latest\"")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:3:7: tag: the tag `latest` is not allowed: name a release",
        );
    }

    #[test]
    fn a_bad_quantity_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("web", "memory = \"256Mi\"", "memory = \"2 GB\"")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:13:32: resources.limits.memory: `2 GB` is not a Kubernetes quantity such as `500m` or `128Mi`",
        );
    }

    #[test]
    fn a_probe_on_an_undeclared_port_is_rejected() {
        let found = SpecFiles::minimal()
            .edit(
                "api",
                "path = \"/readyz\"\nport = 8080",
                "path = \"/readyz\"\nport = 8081",
            )
            .problems();
        assert_has(
            &found,
            "infra/services/api.toml:20:8: probes.readiness.port: the readiness probe targets port 8081, which is not a declared container port",
        );
    }

    #[test]
    fn a_service_file_name_that_is_not_a_dns_label_is_rejected() {
        let found = SpecFiles::new(PLATFORM)
            .with_service("api", API)
            .with_service("Web", WEB)
            .edit("api", "service = \"web\"", "service = \"Web\"")
            .problems();
        assert!(
            found.iter().any(|p| p.starts_with("infra/services/Web.toml: service name (the file name) `Web` is not a DNS-1123 label")),
            "{found:#?}"
        );
    }

    const CASES: &[Case] = &[
        (
            "an image with a registry or tag",
            "web",
            "image = \"web\"",
            "image = \"Web:1\"",
            "image: `Web:1` is not an image repository name (lowercase, no tag or registry)",
        ),
        (
            "a malformed tag",
            "web",
            "tag = \"2.0.0\"",
            "tag = \"-bad\"",
            "tag: `-bad` is not a valid image tag",
        ),
        (
            "a replica count below one",
            "web",
            "replicas = 1",
            "replicas = 0",
            "replicas: replicas must be at least 1, not 0",
        ),
        (
            "a port outside the range",
            "web",
            "port = 8000\n\n[resources]",
            "port = 80000\n\n[resources]",
            "ports[0].port: port 80000 is outside 1..=65535",
        ),
        (
            "a port declared twice",
            "web",
            "port = 8000\n\n[resources]",
            "port = 8000\n\n[[ports]]\nname = \"admin\"\nport = 8000\n\n[resources]",
            "ports[1].port: port 8000 is declared twice",
        ),
        (
            "a port name that is too long",
            "web",
            "name = \"http\"",
            "name = \"http-for-web-frontend\"",
            "ports[0].name: port name `http-for-web-frontend` is not an IANA service name (lowercase, at most 15 characters, one letter)",
        ),
        (
            "no ports at all",
            "web",
            "[[ports]]\nname = \"http\"\nport = 8000",
            "ports = []",
            "ports: at least one container port is required",
        ),
        (
            "a probe path without a slash",
            "api",
            "path = \"/healthz\"",
            "path = \"healthz\"",
            "probes.liveness.path: probe path `healthz` must start with `/`",
        ),
        (
            "a probe period of zero",
            "api",
            "period_seconds = 5",
            "period_seconds = 0",
            "probes.readiness.period_seconds: must be at least 1, not 0",
        ),
        (
            "a negative initial delay",
            "api",
            "period_seconds = 5",
            "period_seconds = 5\ninitial_delay_seconds = -1",
            "probes.readiness.initial_delay_seconds: must not be negative",
        ),
        (
            "a relative scratch dir",
            "web",
            "scratch_dirs = [\"/tmp\"]",
            "scratch_dirs = [\"tmp\"]",
            "scratch_dirs[0]: `tmp` is not an absolute path",
        ),
        (
            "a scratch dir listed twice",
            "web",
            "scratch_dirs = [\"/tmp\"]",
            "scratch_dirs = [\"/tmp\", \"/tmp\"]",
            "scratch_dirs[1]: `/tmp` is listed twice",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        assert_cases(CASES);
    }

    #[test]
    fn max_replicas_below_an_environments_replicas_is_rejected() {
        let found = crate::testing::SpecFiles::minimal()
            .edit("api", "replicas = 2", "replicas = 2\nmax_replicas = 1")
            .problems();
        assert!(
            found
                .iter()
                .any(|p| p.contains("max_replicas: max_replicas 1 is below the")),
            "{found:?}"
        );
    }
}
