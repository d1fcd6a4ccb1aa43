//! Validation of a service's per-environment overrides: declared environments, tags, replicas,
//! and digests where the environment requires them.

use super::{Declared, check_tag};
use crate::spec::problems::{Seg, Sink};
use crate::spec::syntax::is_digest;
use crate::spec::types::Service;

pub(super) fn check(sink: &mut Sink<'_>, s: &Service, declared: &Declared<'_>) {
    use Seg::Key;
    for (env, over) in &s.environments {
        let Some(&require_digest) = declared.environments.get(env.as_str()) else {
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
    for (env, require_digest) in &declared.environments {
        if *require_digest && !s.environments.contains_key(*env) {
            sink.push(
                &[Key("environments")],
                format!("environment `{env}` requires images pinned by digest: add [environments.{env}] with `digest`"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{Case, SpecFiles, assert_cases, assert_has};

    #[test]
    fn production_without_a_digest_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("web", "digest = \"sha256:", "tag = \"2.0.1\"\n#")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:41:1: environments.production.digest: environment `production` requires images pinned by digest: set `digest = \"sha256:…\"`",
        );
    }

    #[test]
    fn zero_replicas_are_rejected() {
        let found = SpecFiles::minimal()
            .edit("api", "replicas = 3", "replicas = 0")
            .problems();
        assert_has(
            &found,
            "infra/services/api.toml:29:12: environments.production.replicas: replicas must be at least 1, not 0",
        );
    }

    #[test]
    fn an_override_for_an_undeclared_environment_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("api", "[environments.staging]", "[environments.qa]")
            .problems();
        assert_has(
            &found,
            "infra/services/api.toml:31:1: environments.qa: environment `qa` is not declared in platform.toml",
        );
    }

    const CASES: &[Case] = &[
        (
            "a malformed digest",
            "api",
            "digest = \"sha256:2222",
            "digest = \"sha256:XYZ",
            "environments.production.digest: `sha256:XYZ222222222222222222222222222222222222222222222222222222222222` is not a digest of the form `sha256:<64 hex digits>`",
        ),
        (
            "an override with a latest tag",
            "api",
            "[environments.staging]",
            "[environments.staging]\ntag = \"latest\"",
            "environments.staging.tag: the tag `latest` is not allowed: name a release",
        ),
        (
            "a service without a production section",
            "web",
            "[environments.production]\ndigest",
            "[environments.qa]\ndigest",
            "environments: environment `production` requires images pinned by digest: add [environments.production] with `digest`",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        assert_cases(CASES);
    }
}
