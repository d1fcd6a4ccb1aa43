//! Validation of who a service calls and who calls it: env vars (literal, a callee's URL, or a
//! Secret's key) and
//! `[[callers]]`, cross-checked so a declared call is one the network policies allow.

use std::collections::{BTreeMap, BTreeSet};

use super::Declared;
use crate::spec::problems::{Seg, Sink};
use crate::spec::syntax::{is_dns_subdomain, is_env_name, is_secret_key};
use crate::spec::types::{Service, ServiceUrl};

pub(super) fn check_env(sink: &mut Sink<'_>, s: &Service, declared: &Declared<'_>) {
    use Seg::{Index, Key};
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
        let sources = [
            var.value.is_some(),
            var.service_url.is_some(),
            var.secret.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            sink.push(
                &[Key("env"), Index(i)],
                format!(
                    "`{}` needs exactly one of `value`, `service_url` or `secret`",
                    var.name
                ),
            );
        } else if let Some(url) = &var.service_url
            && (declared.services.contains_key(url.service.as_str())
                || !declared.all_names.contains(&url.service))
        {
            check_service_url(sink, s, i, url, &declared.services);
        } else if let Some(secret) = &var.secret {
            if !is_dns_subdomain(&secret.name) {
                sink.push(
                    &[Key("env"), Index(i), Key("secret"), Key("name")],
                    format!("`{}` is not a Secret name (a DNS subdomain)", secret.name),
                );
            }
            if !is_secret_key(&secret.key) {
                sink.push(
                    &[Key("env"), Index(i), Key("secret"), Key("key")],
                    format!(
                        "`{}` is not a Secret key (letters, digits, `-`, `_`, `.`)",
                        secret.key
                    ),
                );
            }
        }
    }
}

pub(super) fn check_callers(sink: &mut Sink<'_>, s: &Service, declared: &Declared<'_>) {
    use Seg::{Index, Key};
    for (i, caller) in s.callers.iter().enumerate() {
        // A service whose file failed to parse still exists: its own error is reported already.
        if !declared.all_names.contains(&caller.service) {
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
}

fn check_service_url(
    sink: &mut Sink<'_>,
    s: &Service,
    i: usize,
    url: &ServiceUrl,
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

#[cfg(test)]
mod tests {
    use crate::testing::{Case, SpecFiles, assert_cases, assert_has};

    #[test]
    fn a_caller_that_is_not_a_service_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("api", "service = \"web\"", "service = \"webb\"")
            .problems();
        assert_has(
            &found,
            "infra/services/api.toml:24:11: callers[0].service: caller `webb` is not a declared service (no infra/services/webb.toml)",
        );
    }

    #[test]
    fn a_caller_port_that_is_not_a_container_port_is_rejected() {
        let found = SpecFiles::minimal()
            .edit(
                "api",
                "service = \"web\"\nport = 8080",
                "service = \"web\"\nport = 8081",
            )
            .problems();
        assert_has(
            &found,
            "infra/services/api.toml:25:8: callers[0].port: port 8081 is not a declared container port of `api`",
        );
    }

    #[test]
    fn a_service_url_to_a_service_that_does_not_allow_the_caller_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("api", "[[callers]]\nservice = \"web\"\nport = 8080", "")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:30:27: env[0].service_url.service: `api` does not list `web` among its callers on port 8080: its network policy would drop these calls (add it to infra/services/api.toml [[callers]])",
        );
    }

    #[test]
    fn an_env_var_with_both_value_and_service_url_is_rejected() {
        let found = SpecFiles::minimal()
            .edit("web", "service_url = {", "value = \"x\"\nservice_url = {")
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:28:1: env[0]: `API_URL` needs exactly one of `value`, `service_url` or `secret`",
        );
    }

    const CASES: &[Case] = &[
        (
            "an env var name with a dash",
            "web",
            "name = \"API_URL\"",
            "name = \"API-URL\"",
            "env[0].name: `API-URL` is not a valid environment variable name",
        ),
        (
            "an env var set twice",
            "web",
            "[[policy_exemptions]]",
            "[[env]]\nname = \"API_URL\"\nvalue = \"x\"\n\n[[policy_exemptions]]",
            "env[1].name: `API_URL` is set twice",
        ),
        (
            "a service url to an unknown service",
            "web",
            "service = \"api\"",
            "service = \"ledger\"",
            "env[0].service_url.service: `ledger` is not a declared service",
        ),
        (
            "a service url on an undeclared port",
            "web",
            "path = \"/v1\"",
            "path = \"/v1\", port = 9100",
            "env[0].service_url.port: port 9100 is not a declared container port of `api`",
        ),
        (
            "a service url path without a slash",
            "web",
            "path = \"/v1\"",
            "path = \"v1\"",
            "env[0].service_url.path: path `v1` must start with `/`",
        ),
        (
            "a service calling itself",
            "api",
            "service = \"web\"",
            "service = \"api\"",
            "callers[0].service: a service cannot be its own caller",
        ),
    ];

    #[test]
    fn each_error_class_names_its_field_and_says_what_is_wrong() {
        assert_cases(CASES);
    }

    #[test]
    fn a_secret_env_var_names_a_secret_and_a_key() {
        let found = SpecFiles::minimal()
            .edit(
                "web",
                "service_url = { service = \"api\", path = \"/v1\" }",
                "secret = { name = \"Db_Password\", key = \"pass/word\" }",
            )
            .problems();
        assert_has(
            &found,
            "infra/services/web.toml:30:19: env[0].secret.name: `Db_Password` is not a Secret name (a DNS subdomain)",
        );
        assert_has(
            &found,
            "infra/services/web.toml:30:40: env[0].secret.key: `pass/word` is not a Secret key (letters, digits, `-`, `_`, `.`)",
        );
    }
}
