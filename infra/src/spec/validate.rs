//! Semantic validation of the spec: everything parsing alone cannot check (names, references,
//! ports, images, replicas, exemptions), every problem in every file, each with its file, line,
//! field and fix.
//!
//! Depends on the spec's types and on [`super::problems`]; the loader calls [`validate`]. A
//! service's checks run in a fixed order (workload, env, scratch dirs, callers, exemptions,
//! environments), so the problem list reads in the order of a service file.

mod calls;
mod environments;
mod exemptions;
mod platform;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use super::problems::{Problem, Seg, Sink};
use super::syntax::is_tag;
use super::types::{PlatformFile, Service, SourceFile};

/// What a service's checks may look up: what the platform and the other service files declare.
struct Declared<'a> {
    teams: BTreeSet<&'a str>,
    /// Environment name → whether it requires images pinned by digest.
    environments: BTreeMap<&'a str, bool>,
    /// Services that parsed, by name.
    services: BTreeMap<&'a str, &'a Service>,
    /// Every service file's name, also of those that failed to parse (their error is reported
    /// already; a reference to them is not a second one).
    all_names: &'a BTreeSet<String>,
}

/// Checks everything that parsing alone cannot: names, references, ports, images, replicas.
pub(crate) fn validate(
    platform_source: &SourceFile,
    platform: &PlatformFile,
    services: &[(&SourceFile, Service)],
    all_names: &BTreeSet<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let declared = Declared {
        teams: platform.teams.iter().map(|t| t.name.as_str()).collect(),
        environments: platform
            .environments
            .iter()
            .map(|e| (e.name.as_str(), e.require_digest))
            .collect(),
        services: services.iter().map(|(_, s)| (s.name.as_str(), s)).collect(),
        all_names,
    };
    {
        let mut sink = Sink::new(platform_source, &mut out);
        platform::check(&mut sink, platform, &declared.teams);
    }
    let mut seen = BTreeSet::new();
    for (source, service) in services {
        let mut sink = Sink::new(source, &mut out);
        if !seen.insert(service.name.as_str()) {
            sink.push(&[], format!("service `{}` is declared twice", service.name));
        }
        workload::check(&mut sink, service, &declared);
        calls::check_env(&mut sink, service, &declared);
        workload::check_scratch_dirs(&mut sink, service);
        calls::check_callers(&mut sink, service, &declared);
        exemptions::check(&mut sink, service);
        environments::check(&mut sink, service, &declared);
    }
    out
}

fn not_dns(what: &str, value: &str) -> String {
    format!(
        "{what} `{value}` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)"
    )
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

#[cfg(test)]
mod tests {
    use crate::testing::SpecFiles;

    #[test]
    fn the_minimal_spec_has_no_problems() {
        assert_eq!(SpecFiles::minimal().problems(), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let both = SpecFiles::minimal()
            .edit(
                "web",
                "tag = \"2.0.0\"\nreplicas = 1",
                "tag = \"latest\"\nreplicas = 0",
            )
            .problems();
        assert_eq!(both.len(), 2, "{both:#?}");
        let across_files = SpecFiles::minimal()
            .edit("web", "tag = \"2.0.0\"", "tag = \"latest\"")
            .edit("platform", "owner = \"platform\"", "owner = \"ops\"")
            .problems();
        assert_eq!(across_files.len(), 2, "{across_files:#?}");
    }
}
