//! The rule data model, as written in `policies/rules.yaml`.

use serde::{Deserialize, Serialize};

use crate::{Error, Operation, kinds};

/// How bad a violation is: errors fail `policy check` and are denied in the cluster; warnings
/// are printed, returned to `kubectl` as warnings and written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`, so reports can align the column with `{:<8}`.
        f.pad(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One rule: what it matches, the CEL that decides, and why it exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Kebab-case name; also the name of the rule's admission policy and its fixture folder.
    pub name: String,
    /// What the rule enforces and why, in a sentence or two.
    pub description: String,
    pub severity: Severity,
    /// The kinds the rule applies to, per API group.
    #[serde(rename = "match")]
    pub matches: Vec<MatchGroup>,
    /// Environments the rule applies in; empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// The operations the rule judges (default `CREATE` and `UPDATE`). A rule that lists
    /// `DELETE` sees `object == null` and the deleted object as `oldObject`.
    #[serde(default = "create_and_update")]
    pub operations: Vec<Operation>,
    /// The rule reads `params`: the platform's settings for the object's namespace, the
    /// ConfigMap [`crate::PARAMS_CONFIG_MAP`] there (a per-namespace `paramRef` in the cluster).
    /// Such rules match namespaced kinds only; a namespace without the ConfigMap is denied.
    #[serde(default)]
    pub params: bool,
    /// Preconditions (VAP `matchConditions`): the rule applies only where all are true. They
    /// see `object`, `oldObject` and `request`, not `variables`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_conditions: Vec<NamedExpression>,
    /// Named intermediate values (VAP `variables`), each able to use the ones before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<NamedExpression>,
    /// Every validation must be true for the object to pass.
    pub validations: Vec<Validation>,
    /// The same check in other tools, for the rule table in `docs/policies.md`.
    #[serde(default)]
    pub equivalents: Equivalents,
}

/// Kinds of one API group that a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchGroup {
    /// The API group; empty for the core group (Pods, Services).
    pub api_group: String,
    pub kinds: Vec<String>,
    /// Subresources judged too, e.g. `scale` (`deployments/scale`) or `ephemeralcontainers`
    /// (`pods/ephemeralcontainers`, what `kubectl debug` writes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subresources: Vec<String>,
}

fn create_and_update() -> Vec<Operation> {
    vec![Operation::Create, Operation::Update]
}

/// A named CEL expression: a variable or a match condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedExpression {
    pub name: String,
    pub expression: String,
}

/// One CEL check with the message shown when it is false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validation {
    pub expression: String,
    pub message: String,
    /// A CEL expression producing the message, naming the offending container or rule; the
    /// static `message` is used when it fails to evaluate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expression: Option<String>,
}

/// Identifiers of equivalent checks in other tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Equivalents {
    #[serde(default)]
    pub checkov: Vec<String>,
    #[serde(default)]
    pub kube_linter: Vec<String>,
    #[serde(default)]
    pub kyverno: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Anchors reused by the rules; only its named match lists are read, to name them in docs.
    #[serde(default)]
    shared: serde_yaml_ng::Mapping,
    rules: Vec<Rule>,
}

/// A match list of the rules file's `shared` section under its name (`podControllers`), so
/// documentation can say `podControllers` instead of listing eight kinds for each rule.
pub type NamedMatch = (String, Vec<MatchGroup>);

impl Rule {
    /// Whether the rule applies to objects of this API group and kind.
    pub fn matches_kind(&self, group: &str, kind: &str) -> bool {
        self.matches
            .iter()
            .any(|m| m.api_group == group && m.kinds.iter().any(|k| k == kind))
    }

    /// Whether the rule judges a request: `operation` on `resource` (plural) of `group`, on
    /// its subresource `sub_resource` (empty for the object itself).
    pub fn matches_request(
        &self,
        group: &str,
        resource: &str,
        sub_resource: &str,
        operation: Operation,
    ) -> bool {
        self.operations.contains(&operation)
            && self.matches.iter().any(|m| {
                m.api_group == group
                    && (sub_resource.is_empty() || m.subresources.iter().any(|s| s == sub_resource))
                    && m.kinds.iter().any(|kind| {
                        kinds::lookup(group, kind).is_some_and(|info| info.resource == resource)
                    })
            })
    }

    /// The name of the rule's ValidatingAdmissionPolicy and binding in the cluster.
    pub fn policy_name(&self) -> String {
        format!("{}{}", crate::admission::NAME_PREFIX, self.name)
    }

    /// Whether the rule applies in `environment`; `None` (no environment given) leaves out the
    /// rules that are limited to some environments.
    pub fn applies_in(&self, environment: Option<&str>) -> bool {
        self.environments.is_empty()
            || environment.is_some_and(|env| self.environments.iter().any(|e| e == env))
    }
}

/// Parses a rules file and checks the invariants serde cannot: names, kinds, uniqueness; also
/// returns the named match lists of its `shared` section, in file order.
pub(crate) fn parse(text: &str) -> Result<(Vec<Rule>, Vec<NamedMatch>), Error> {
    let file: RulesFile = serde_yaml_ng::from_str(text).map_err(Error::RulesYaml)?;
    let named = file
        .shared
        .iter()
        .filter_map(|(name, value)| {
            let groups = serde_yaml_ng::from_value::<Vec<MatchGroup>>(value.clone()).ok()?;
            Some((name.as_str()?.to_owned(), groups))
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for rule in &file.rules {
        let invalid = |reason: String| Error::InvalidRule {
            rule: rule.name.clone(),
            reason,
        };
        if !is_kebab_case(&rule.name) || rule.name.len() > 50 {
            return Err(invalid(
                "names are kebab-case ([a-z0-9-]) and at most 50 characters".into(),
            ));
        }
        if !seen.insert(rule.name.clone()) {
            return Err(invalid("the name is used by another rule".into()));
        }
        if rule.validations.is_empty() {
            return Err(invalid("it has no validations".into()));
        }
        if rule.matches.iter().all(|m| m.kinds.is_empty()) {
            return Err(invalid("it matches no kinds".into()));
        }
        if rule.operations.is_empty() {
            return Err(invalid("it judges no operation".into()));
        }
        for group in &rule.matches {
            for kind in &group.kinds {
                let Some(info) = kinds::lookup(&group.api_group, kind) else {
                    return Err(invalid(format!(
                        "kind {kind} in API group `{}` is not in the kind table (policies/src/kinds.rs)",
                        group.api_group
                    )));
                };
                // A per-namespace paramRef on a cluster-scoped request is a configuration error
                // in the API server.
                if rule.params && !info.namespaced {
                    return Err(invalid(format!(
                        "it reads params (per-namespace settings) but matches the cluster-scoped kind {kind}"
                    )));
                }
            }
        }
        for (i, variable) in rule.variables.iter().enumerate() {
            if !is_cel_identifier(&variable.name) {
                return Err(invalid(format!(
                    "variables[{i}] name `{}` is not a CEL identifier (or is a reserved word)",
                    variable.name
                )));
            }
        }
        for (i, condition) in rule.match_conditions.iter().enumerate() {
            if !is_kebab_case(&condition.name) {
                return Err(invalid(format!(
                    "matchConditions[{i}] name `{}` is not kebab-case",
                    condition.name
                )));
            }
        }
    }
    Ok((file.rules, named))
}

pub(crate) fn is_kebab_case(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Words the CEL grammar reserves: the API server refuses them as variable names even where the
/// Rust evaluator would accept them (found by the end-to-end run, with `namespace`).
const CEL_RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
];

fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !CEL_RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
rules:
  - name: NAME
    description: d
    severity: error
    match: [{apiGroup: KIND_GROUP, kinds: [KIND]}]
    validations: [{expression: "true", message: m}]
"#;

    fn minimal(name: &str, group: &str, kind: &str) -> String {
        MINIMAL
            .replace("NAME", name)
            .replace("KIND_GROUP", &format!("\"{group}\""))
            .replace("KIND", kind)
    }

    #[test]
    fn a_minimal_rule_parses() {
        let rules = parse(&minimal("ok-rule", "apps", "Deployment"))
            .expect("valid rule")
            .0;
        assert_eq!(rules[0].name, "ok-rule");
        assert!(rules[0].matches_kind("apps", "Deployment"));
        assert!(!rules[0].matches_kind("", "Deployment"));
    }

    #[test]
    fn a_rule_naming_an_unknown_kind_is_rejected_with_the_rule_name() {
        let err = parse(&minimal("bad-kind", "apps", "Widget")).expect_err("unknown kind");
        let text = err.to_string();
        assert!(text.contains("bad-kind"), "{text}");
        assert!(text.contains("Widget"), "{text}");
    }

    #[test]
    fn a_rule_name_that_is_not_kebab_case_is_rejected() {
        let err = parse(&minimal("Bad_Name", "apps", "Deployment")).expect_err("bad name");
        assert!(err.to_string().contains("kebab-case"), "{err}");
    }

    #[test]
    fn environment_limited_rules_apply_only_in_their_environments() {
        let mut rule = parse(&minimal("r", "apps", "Deployment")).expect("valid").0[0].clone();
        assert!(rule.applies_in(None));
        rule.environments = vec!["production".into()];
        assert!(rule.applies_in(Some("production")));
        assert!(!rule.applies_in(Some("staging")));
        assert!(!rule.applies_in(None));
    }

    #[test]
    fn the_shared_sections_match_lists_are_named_and_its_other_anchors_left_out() {
        let text = format!(
            "shared:\n  pods: &pods [{{apiGroup: \"\", kinds: [Pod]}}]\n  podSpec: {{name: podSpec, expression: object.spec}}\n{}",
            minimal("r", "", "Pod")
        );
        let (_, named) = parse(&text).expect("valid");
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].0, "pods");
        assert_eq!(named[0].1[0].kinds, ["Pod"]);
    }

    #[test]
    fn a_variable_named_with_a_cel_reserved_word_is_rejected() {
        let text = minimal("reserved", "apps", "Deployment").replace(
            "    validations:",
            "    variables: [{name: namespace, expression: \"object.metadata.name\"}]\n    validations:",
        );
        let err = parse(&text).expect_err("`namespace` is reserved in CEL");
        assert_eq!(
            err.to_string(),
            "rule `reserved` is invalid: variables[0] name `namespace` is not a CEL identifier (or is a reserved word)"
        );
    }
}
