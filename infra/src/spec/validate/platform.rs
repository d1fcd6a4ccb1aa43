//! Validation of `platform.toml`: the platform, its teams and its environments.

use std::collections::BTreeSet;

use super::not_dns;
use crate::spec::problems::{Seg, Sink};
use crate::spec::syntax::{is_dns_label, is_registry_repository, is_repository, is_scanner_check};
use crate::spec::types::PlatformFile;

pub(super) fn check(sink: &mut Sink<'_>, file: &PlatformFile, teams: &BTreeSet<&str>) {
    use Seg::{Index, Key};
    let p = &file.platform;
    if !is_dns_label(&p.name) {
        sink.push(
            &[Key("platform"), Key("name")],
            not_dns("platform name", &p.name),
        );
    }
    let registry_ok = is_repository(&p.registry) && p.registry.contains('.');
    if !registry_ok {
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
    match &p.artifacts {
        Some(artifacts) if !is_registry_repository(&artifacts.repository) => sink.push(
            &[Key("platform"), Key("artifacts"), Key("repository")],
            format!(
                "`{}` is not an OCI repository such as `ghcr.io/our-org/manifests` (registry host, lowercase path; no scheme, tag or digest)",
                artifacts.repository
            ),
        ),
        // The default must be one too (a registry path whose first part is no host is not).
        None if registry_ok && !is_registry_repository(&p.artifact_repository()) => sink.push(
            &[Key("platform"), Key("registry")],
            format!(
                "the artifact repository it implies, `{}`, has no registry host; set [platform.artifacts] repository",
                p.artifact_repository()
            ),
        ),
        _ => {}
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

#[cfg(test)]
mod tests {
    use crate::testing::{Case, SpecFiles, assert_cases, assert_has};

    #[test]
    fn names_that_are_not_dns_labels_are_rejected() {
        let found = SpecFiles::minimal()
            .edit("platform", "name = \"backend\"", "name = \"Backend_Team\"")
            .problems();
        assert!(found.iter().any(|p| p.starts_with("infra/platform.toml:21:8: teams[2].name: team name `Backend_Team` is not a DNS-1123 label")), "{found:#?}");
    }

    #[test]
    fn a_platform_owner_that_is_not_a_team_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("platform", "owner = \"platform\"", "owner = \"ops\"")
            .problems();
        assert_has(
            &found,
            "infra/platform.toml:4:9: platform.owner: team `ops` is not declared under [[teams]]",
        );
    }

    const CASES: &[Case] = &[
        (
            "a registry without a host",
            "platform",
            "registry = \"ghcr.io/shop-org\"",
            "registry = \"shop\"",
            "platform.registry: `shop` is not a registry path such as `ghcr.io/our-org` (host with a dot, lowercase path)",
        ),
        (
            "a git url that is not https or ssh",
            "platform",
            "url = \"https://github.com",
            "url = \"git@github.com:x",
            "platform.git.url: `git@github.com:x/shop-org/platform` is not an https://, ssh:// or http:// git URL",
        ),
        (
            "an artifact repository with a scheme",
            "platform",
            "branch = \"main\"",
            "branch = \"main\"\n\n[platform.artifacts]\nrepository = \"oci://ghcr.io/shop-org/manifests\"",
            "platform.artifacts.repository: `oci://ghcr.io/shop-org/manifests` is not an OCI repository such as `ghcr.io/our-org/manifests` (registry host, lowercase path; no scheme, tag or digest)",
        ),
        (
            "a registry whose first part is no host, without an artifact repository",
            "platform",
            "registry = \"ghcr.io/shop-org\"",
            "registry = \"shop-org/ghcr.io\"",
            "platform.registry: the artifact repository it implies, `shop-org/ghcr.io/manifests`, has no registry host; set [platform.artifacts] repository",
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
            "name = \"frontend\"",
            "name = \"platform\"",
            "teams[1].name: team `platform` is declared twice",
        ),
        (
            "a github handle without @",
            "platform",
            "github = \"@shop-org/frontend\"",
            "github = \"frontend\"",
            "teams[1].github: `frontend` is not a GitHub handle such as `@org/team`",
        ),
        (
            "a team nobody is in",
            "platform",
            "groups = [\"shop:frontend-developers\"]",
            "groups = []",
            "teams[1]: team `frontend` has no groups and no users: nobody could deploy its services",
        ),
        (
            "an empty group name",
            "platform",
            "groups = [\"shop:frontend-developers\"]",
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
            "a scanner skip that is not a check ID",
            "platform",
            "name = \"staging\"",
            "name = \"staging\"\nscanner_skips = [{ check = \"K8S_43\", reason = \"tags\" }]",
            "environments[1].scanner_skips[0].check: `K8S_43` is not a checkov check ID such as `CKV_K8S_43`",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        assert_cases(CASES);
    }
}
