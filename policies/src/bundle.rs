//! The compiled rule set and the offline enforcer: every expression compiled once, then run
//! over any number of objects.

use std::sync::Arc;

use cel::{Env, Program, Value};

use crate::evaluate::{self, Failures, Site};
use crate::report::{Exempted, Report, Violation};
use crate::request::RequestParts;
use crate::rules::NamedMatch;
use crate::{Error, Exemption, Rule, SourcedObject, UserInfo, kinds, rules};

/// The rules shipped with the platform.
const BUILTIN_RULES: &str = include_str!("../rules.yaml");

/// Namespaces Kubernetes and Flux run their own components in. Neither enforcer checks them:
/// the admission bindings exclude them (denying kube-proxy or a Flux controller an update would
/// break the cluster: Flux's controllers need API tokens), and the offline check mirrors that so
/// the two always agree. Only the platform's bootstrap writes to them; no tenant has rights there.
pub const UNCHECKED_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "flux-system",
];

/// The ConfigMap that holds, in each namespace, the platform's settings that rules with
/// `params: true` read as `params.data` (the image repository, the digests allowed, …). In the
/// cluster it is each binding's per-namespace `paramRef`; offline, the one among the checked
/// objects. Only the platform writes it (rule `tenant-limits-protected`).
pub const PARAMS_CONFIG_MAP: &str = "platform-policy";

/// What a check is run for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckContext {
    /// The environment the objects are for (`production`, `staging`, …); rules limited to other
    /// environments are left out, and `None` leaves out every environment-limited rule.
    pub environment: Option<String>,
    /// Who sends the requests of objects that do not say (`SourcedObject::admission.user`);
    /// `None`: [`UserInfo::checker`], a user with no standing.
    pub user: Option<UserInfo>,
}

/// A rule with its expressions compiled.
struct Compiled {
    match_conditions: Vec<Program>,
    /// The rule's own variables; the shared ones are evaluated once per object.
    variables: Vec<(String, Program)>,
    /// Indices into `Bundle::shared` of the shared variables the rule defines.
    shared: Vec<usize>,
    validations: Vec<(Program, Option<Program>)>,
}

/// The policy bundle: rules parsed and compiled, ready to check objects or become admission
/// policies.
pub struct Bundle {
    env: Arc<Env>,
    rules: Vec<Rule>,
    compiled: Vec<Compiled>,
    /// Variables that every rule defining them defines identically (`podSpec`, `containers`):
    /// evaluated once per object instead of once per rule, which is most of the work.
    shared: Vec<(String, Program)>,
    /// The rules file's named match lists, for documentation.
    named_matches: Vec<NamedMatch>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("rules", &self.rules)
            .finish()
    }
}

/// The identity of one object, read once.
pub(crate) struct Meta<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Meta<'a> {
    pub(crate) fn of(object: &'a serde_json::Value) -> Self {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or("")
        };
        let (group, version) = kinds::split_api_version(text("/apiVersion"));
        Meta {
            group,
            version,
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }
}

impl Bundle {
    /// The platform's rules (`policies/rules.yaml`, embedded at build time), compiled once per
    /// process: spec validation, rendering and checking all share the same compiled bundle.
    pub fn builtin() -> Result<&'static Bundle, Error> {
        static BUILTIN: std::sync::OnceLock<Bundle> = std::sync::OnceLock::new();
        if let Some(bundle) = BUILTIN.get() {
            return Ok(bundle);
        }
        // Two threads may compile it at once; one result is kept, both are the same rules.
        let bundle = Bundle::from_yaml(BUILTIN_RULES)?;
        Ok(BUILTIN.get_or_init(|| bundle))
    }

    /// Rules from YAML text in the format of `policies/rules.yaml`, compiled.
    pub fn from_yaml(text: &str) -> Result<Bundle, Error> {
        let (rules, named_matches) = rules::parse(text)?;
        let env = evaluate::environment();
        let shared_names = shared_variables(&rules);
        let compiled = rules
            .iter()
            .map(|rule| compile_rule(&env, rule, &shared_names))
            .collect::<Result<_, _>>()?;
        let shared = shared_names
            .iter()
            .map(|(name, expression)| {
                // Each was already compiled, with its rules' own restrictions, in compile_rule.
                let program = evaluate::compile(&env, expression, Site::BodyWithParams)
                    .expect("shared variables were compiled with their rules");
                (name.clone(), program)
            })
            .collect();
        Ok(Bundle {
            env,
            rules,
            compiled,
            shared,
            named_matches,
        })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The match lists the rules file names in its `shared` section (`podControllers`, …), in
    /// file order, so documentation can name a rule's match list instead of spelling it out.
    pub fn named_matches(&self) -> &[NamedMatch] {
        &self.named_matches
    }

    /// One rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Checks exemptions against the bundle and compiles their conditions, in rule order.
    pub(crate) fn compile_exemptions<'e>(
        &self,
        exemptions: &'e [Exemption],
    ) -> Result<Vec<(usize, &'e Exemption, Program)>, Error> {
        let mut compiled = Vec::with_capacity(exemptions.len());
        for exemption in exemptions {
            exemption.validate()?;
            let Some(index) = self.rules.iter().position(|r| r.name == exemption.rule) else {
                return Err(Error::InvalidExemption {
                    rule: exemption.rule.clone(),
                    object: exemption.object(),
                    reason: "no rule has that name; see `cargo xtask policy check --help`".into(),
                });
            };
            let rule = &self.rules[index];
            if !rule
                .matches
                .iter()
                .any(|m| m.kinds.contains(&exemption.kind))
            {
                return Err(Error::InvalidExemption {
                    rule: exemption.rule.clone(),
                    object: exemption.object(),
                    reason: format!("rule {} never applies to a {}", rule.name, exemption.kind),
                });
            }
            let program =
                evaluate::compile(&self.env, &exemption.condition(), Site::MatchCondition)
                    .map_err(|message| Error::Compile {
                        rule: exemption.rule.clone(),
                        field: format!("exemption for {}", exemption.object()),
                        expression: exemption.condition(),
                        message,
                    })?;
            compiled.push((index, exemption, program));
        }
        Ok(compiled)
    }

    /// Runs every applicable rule over every object, the way the API server would admit each
    /// one's request (a `CREATE` by the context's user unless the object says otherwise).
    ///
    /// Exempted (rule, object) pairs are not evaluated but listed in the report with their
    /// reason. Rules with `params: true` read the [`PARAMS_CONFIG_MAP`] ConfigMap of the
    /// object's namespace among `objects`; without one they are a violation, as the cluster's
    /// `parameterNotFoundAction: Deny` makes them. Fails only on invalid exemptions; broken
    /// objects and expressions that fail to evaluate are violations (the cluster's
    /// `failurePolicy: Fail` rejects them too).
    pub fn check(
        &self,
        context: &CheckContext,
        objects: &[SourcedObject],
        exemptions: &[Exemption],
    ) -> Result<Report, Error> {
        let exemptions = self.compile_exemptions(exemptions)?;
        let mut used = vec![false; exemptions.len()];
        let environment = context.environment.as_deref();
        let default_user = context.user.clone().unwrap_or_else(UserInfo::checker);
        let active: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].applies_in(environment))
            .collect();
        let params = namespace_params(objects);
        let mut report = Report {
            environment: context.environment.clone(),
            objects_checked: 0,
            objects_skipped: 0,
            rules: active.len(),
            violations: Vec::new(),
            exempted: Vec::new(),
            unused_exemptions: Vec::new(),
        };

        for sourced in objects {
            let admission = &sourced.admission;
            let parts = request_parts(sourced, &default_user);
            let meta = Meta::of(sourced.subject());
            if UNCHECKED_NAMESPACES.contains(&meta.namespace) {
                report.objects_skipped += 1;
                continue;
            }
            report.objects_checked += 1;
            let matching: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| {
                    self.rules[i].matches_request(
                        parts.resource_group,
                        parts.resource,
                        parts.sub_resource,
                        parts.operation,
                    )
                })
                .collect();
            if matching.is_empty() {
                continue;
            }
            let request = parts.to_json();
            let namespace_params = params.get(meta.namespace).copied();
            let mut root = evaluate::object_context(
                &self.env,
                evaluate::to_cel(&sourced.object),
                admission
                    .old_object
                    .as_ref()
                    .map_or(Value::Null, evaluate::to_cel),
                evaluate::to_cel(&request),
                namespace_params.map_or(Value::Null, evaluate::to_cel),
            );
            let mut needed = vec![false; self.shared.len()];
            for &index in &matching {
                for &shared in &self.compiled[index].shared {
                    needed[shared] = true;
                }
            }
            let mut shared_failures = Failures::new();
            evaluate::bind_variables_where(&mut root, &self.shared, &needed, &mut shared_failures);
            let file = sourced.file.display().to_string();
            let violation = |rule: &Rule, message: String| Violation {
                rule: rule.name.clone(),
                severity: rule.severity,
                kind: meta.kind.to_owned(),
                namespace: meta.namespace.to_owned(),
                name: meta.name.to_owned(),
                file: file.clone(),
                message,
            };

            'rules: for index in matching {
                let (rule, compiled) = (&self.rules[index], &self.compiled[index]);
                for (i, condition) in compiled.match_conditions.iter().enumerate() {
                    match evaluate::eval_bool(condition, &root) {
                        Ok(true) => {}
                        Ok(false) => continue 'rules,
                        Err(e) => {
                            let name = &rule.match_conditions[i].name;
                            report.violations.push(violation(
                                rule,
                                format!("match condition {name} failed to evaluate: {e}"),
                            ));
                            continue 'rules;
                        }
                    }
                }
                for (e, (rule_index, exemption, condition)) in exemptions.iter().enumerate() {
                    // A condition that errors is not an exemption: the rule then runs and
                    // reports whatever is wrong with the object.
                    if *rule_index == index && evaluate::eval_bool(condition, &root) == Ok(false) {
                        used[e] = true;
                        report.exempted.push(Exempted {
                            rule: rule.name.clone(),
                            kind: meta.kind.to_owned(),
                            namespace: meta.namespace.to_owned(),
                            name: meta.name.to_owned(),
                            file: file.clone(),
                            reason: exemption.reason.clone(),
                        });
                        continue 'rules;
                    }
                }
                if rule.params && namespace_params.is_none() {
                    report.violations.push(violation(
                        rule,
                        format!(
                            "namespace `{}` has no ConfigMap {PARAMS_CONFIG_MAP} with the platform's settings, so the cluster denies it (parameterNotFoundAction: Deny); the platform writes one per service namespace",
                            meta.namespace
                        ),
                    ));
                    continue;
                }
                let mut failures = shared_failures.clone();
                let scope = evaluate::with_variables(&root, &compiled.variables, &mut failures);
                for (i, (check, message_expression)) in compiled.validations.iter().enumerate() {
                    let validation = &rule.validations[i];
                    let message = match evaluate::eval_bool(check, &scope) {
                        Ok(true) => continue,
                        Ok(false) => message_expression
                            .as_ref()
                            .and_then(|m| match m.execute(&scope) {
                                Ok(Value::String(s)) => Some(s.to_string()),
                                _ => None,
                            })
                            .unwrap_or_else(|| validation.message.clone()),
                        Err(e) => format!(
                            "expression failed to evaluate ({}): {}",
                            evaluate::explain_failure(&validation.expression, &e, &failures),
                            validation.message
                        ),
                    };
                    report.violations.push(violation(rule, message));
                }
            }
        }

        report.unused_exemptions = exemptions
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|((_, exemption, _), _)| (*exemption).clone())
            .collect();
        Ok(report)
    }
}

/// The request the API server would build for `sourced`, sent by its own user or `default_user`.
pub(crate) fn request_parts<'a>(
    sourced: &'a SourcedObject,
    default_user: &'a UserInfo,
) -> RequestParts<'a> {
    let admission = &sourced.admission;
    let meta = Meta::of(sourced.subject());
    let (resource_group, resource) = match &admission.resource {
        Some((group, resource)) => (group.as_str(), resource.as_str()),
        None => (
            meta.group,
            kinds::lookup(meta.group, meta.kind).map_or("", |k| k.resource),
        ),
    };
    RequestParts {
        group: meta.group,
        version: meta.version,
        kind: meta.kind,
        resource_group,
        resource,
        sub_resource: admission.sub_resource.as_deref().unwrap_or(""),
        namespace: meta.namespace,
        name: meta.name,
        operation: admission.operation,
        user: admission.user.as_ref().unwrap_or(default_user),
    }
}

/// The platform's settings of each namespace: the [`PARAMS_CONFIG_MAP`] ConfigMap among the
/// objects (the last one wins, as the last apply would).
pub(crate) fn namespace_params(
    objects: &[SourcedObject],
) -> std::collections::HashMap<&str, &serde_json::Value> {
    objects
        .iter()
        .map(|o| &o.object)
        .filter(|o| {
            o["apiVersion"] == "v1"
                && o["kind"] == "ConfigMap"
                && o["metadata"]["name"] == PARAMS_CONFIG_MAP
        })
        .filter_map(|o| Some((o["metadata"]["namespace"].as_str()?, o)))
        .collect()
}

/// The variables shared by every rule that defines them, with their expressions, in order of
/// first definition (so each comes after the ones it uses). A variable qualifies when every
/// definition is identical and it only uses other shared variables.
fn shared_variables(rules: &[Rule]) -> Vec<(String, String)> {
    let mut definitions: Vec<(String, String, bool)> = Vec::new();
    for variable in rules.iter().flat_map(|r| &r.variables) {
        match definitions.iter_mut().find(|(n, _, _)| *n == variable.name) {
            Some((_, expression, same)) => *same &= *expression == variable.expression,
            None => definitions.push((variable.name.clone(), variable.expression.clone(), true)),
        }
    }
    loop {
        let shared: Vec<String> = definitions
            .iter()
            .filter(|(_, _, same)| *same)
            .map(|(n, _, _)| n.clone())
            .collect();
        let mut changed = false;
        for (_, expression, same) in definitions.iter_mut().filter(|(_, _, same)| *same) {
            if referenced_variables(expression).any(|r| !shared.iter().any(|s| s == r)) {
                *same = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    definitions
        .into_iter()
        .filter(|(_, _, same)| *same)
        .map(|(name, expression, _)| (name, expression))
        .collect()
}

/// Names `x` an expression reads as `variables.x`.
fn referenced_variables(expression: &str) -> impl Iterator<Item = &str> {
    expression.split("variables.").skip(1).map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

fn compile_rule(env: &Env, rule: &Rule, shared: &[(String, String)]) -> Result<Compiled, Error> {
    let body = if rule.params {
        Site::BodyWithParams
    } else {
        Site::Body
    };
    let compile = |field: String, expression: &str, site: Site| {
        evaluate::compile(env, expression, site).map_err(|message| Error::Compile {
            rule: rule.name.clone(),
            field,
            expression: expression.to_owned(),
            message,
        })
    };
    let match_conditions = rule
        .match_conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            compile(
                format!("matchConditions[{i}]"),
                &c.expression,
                Site::MatchCondition,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut variables = Vec::new();
    let mut shared_indices = Vec::new();
    for (i, v) in rule.variables.iter().enumerate() {
        let field = format!("variables[{i}] ({})", v.name);
        let program = compile(field, &v.expression, body)?;
        match shared.iter().position(|(name, _)| *name == v.name) {
            Some(index) => shared_indices.push(index),
            None => variables.push((v.name.clone(), program)),
        }
    }
    let validations = rule
        .validations
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let check = compile(format!("validations[{i}].expression"), &v.expression, body)?;
            let message = v
                .message_expression
                .as_deref()
                .map(|m| compile(format!("validations[{i}].messageExpression"), m, body))
                .transpose()?;
            Ok((check, message))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Compiled {
        match_conditions,
        variables,
        shared: shared_indices,
        validations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, find_mut, synthetic_objects};
    use crate::{Admission, Operation, Severity};

    fn production() -> CheckContext {
        CheckContext {
            environment: Some("production".into()),
            user: None,
        }
    }

    fn check(objects: &[SourcedObject], exemptions: &[Exemption]) -> Report {
        Bundle::builtin()
            .expect("the builtin rules compile")
            .check(&production(), objects, exemptions)
            .expect("exemptions are valid")
    }

    fn deployment(objects: &mut [SourcedObject]) -> &mut serde_json::Value {
        find_mut(objects, "Deployment")
    }

    fn rules_violated(report: &Report) -> Vec<&str> {
        let mut rules: Vec<&str> = report.violations.iter().map(|v| v.rule.as_str()).collect();
        rules.dedup();
        rules
    }

    fn exemption(rule: &str, kind: &str, namespace: &str, name: &str) -> Exemption {
        Exemption {
            rule: rule.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            reason: "the stock image runs as root".into(),
            scanner_checks: Vec::new(),
        }
    }

    /// `object` changed by `change`, sent as an UPDATE by `user`.
    fn update(
        object: &serde_json::Value,
        user: UserInfo,
        change: impl FnOnce(&mut serde_json::Value),
    ) -> SourcedObject {
        let mut new = object.clone();
        change(&mut new);
        SourcedObject {
            file: "update.yaml".into(),
            object: new,
            admission: Admission {
                operation: Operation::Update,
                user: Some(user),
                old_object: Some(object.clone()),
                ..Admission::default()
            },
        }
    }

    /// The synthetic platform plus `requests`; only the requests' violations are returned.
    fn judge(requests: Vec<SourcedObject>) -> Report {
        let mut objects = synthetic_objects(1);
        let platform = objects.len();
        objects.extend(requests);
        let mut report = check(&objects, &[]);
        let files: Vec<String> = objects[platform..]
            .iter()
            .map(|o| o.file.display().to_string())
            .collect();
        report.violations.retain(|v| files.contains(&v.file));
        report
    }

    fn developer() -> UserInfo {
        UserInfo::user("alice@example.com", &["team-0"])
    }

    #[test]
    fn the_builtin_rules_parse_and_compile() {
        let bundle = Bundle::builtin().expect("compiles");
        assert!(bundle.rules().len() >= 40, "{} rules", bundle.rules().len());
        assert!(bundle.rule("probes-required").is_some());
    }

    #[test]
    fn a_compliant_platform_has_no_violations_in_any_environment() {
        let objects = synthetic_objects(3);
        for environment in [
            None,
            Some("production".to_owned()),
            Some("staging".to_owned()),
        ] {
            let context = CheckContext {
                environment,
                user: None,
            };
            let report = Bundle::builtin()
                .expect("compiles")
                .check(&context, &objects, &[])
                .expect("no exemptions");
            assert_eq!(report.violations, [], "{report}");
            assert_eq!(report.objects_checked, objects.len());
        }
    }

    #[test]
    fn removing_a_probe_fails_probes_required_naming_the_container() {
        let mut objects = synthetic_objects(1);
        let containers = &mut deployment(&mut objects)["spec"]["template"]["spec"]["containers"];
        containers[0]
            .as_object_mut()
            .expect("container")
            .remove("readinessProbe");
        let report = check(&objects, &[]);
        assert_eq!(rules_violated(&report), ["probes-required"], "{report}");
        assert!(report.violations[0].message.contains("app"), "{report}");
        assert!(report.has_errors());
    }

    #[test]
    fn the_latest_tag_fails_the_tag_and_digest_rules() {
        let mut objects = synthetic_objects(1);
        let repository = format!("{}/{}", testing::REGISTRY, testing::service_name(0));
        deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["image"] =
            format!("{repository}:latest").into();
        let report = check(&objects, &[]);
        assert_eq!(
            rules_violated(&report),
            [
                "image-tag-pinned",
                "image-digest-pinned",
                "image-digest-from-spec"
            ],
            "{report}"
        );
        let outside_production = Bundle::builtin()
            .expect("compiles")
            .check(&CheckContext::default(), &objects, &[])
            .expect("valid");
        assert_eq!(
            rules_violated(&outside_production),
            ["image-tag-pinned", "image-digest-from-spec"]
        );
    }

    #[test]
    fn an_image_from_another_registry_or_digest_is_refused() {
        let mut objects = synthetic_objects(1);
        let image = format!("docker.io/attacker/x:1.0@{}", testing::DIGEST);
        deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["image"] =
            image.into();
        assert_eq!(
            rules_violated(&check(&objects, &[])),
            ["image-from-platform-registry"]
        );
        let other = format!(
            "{}/{}:1.4.2@sha256:{}",
            testing::REGISTRY,
            testing::service_name(0),
            "b".repeat(64)
        );
        deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["image"] =
            other.into();
        let report = check(&objects, &[]);
        assert_eq!(rules_violated(&report), ["image-digest-from-spec"]);
        assert!(
            report.violations[0].message.contains(testing::DIGEST),
            "{report}"
        );
    }

    #[test]
    fn a_privileged_container_fails_no_privileged() {
        let mut objects = synthetic_objects(1);
        deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["securityContext"]
            ["privileged"] = true.into();
        let report = check(&objects, &[]);
        assert_eq!(rules_violated(&report), ["no-privileged"], "{report}");
    }

    #[test]
    fn an_ephemeral_container_is_held_to_the_same_bar() {
        let mut objects = synthetic_objects(1);
        deployment(&mut objects)["spec"]["template"]["spec"]["ephemeralContainers"] = serde_json::json!([{
            "name": "debugger",
            "image": format!("{}/{}:1.4.2@{}", testing::REGISTRY, testing::service_name(0), testing::DIGEST),
            "securityContext": {"privileged": true, "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
        }]);
        let report = check(&objects, &[]);
        assert_eq!(rules_violated(&report), ["no-privileged"], "{report}");
        assert!(report.violations[0].message.contains("debugger"));
    }

    #[test]
    fn a_wildcard_role_fails_rbac_no_wildcards() {
        let mut objects = synthetic_objects(1);
        find_mut(&mut objects, "Role")["rules"][0]["verbs"] = serde_json::json!(["*"]);
        let report = check(&objects, &[]);
        assert_eq!(rules_violated(&report), ["rbac-no-wildcards"], "{report}");
        assert_eq!(report.violations[0].kind, "Role");
        assert!(report.violations[0].file.ends_with("developer-rbac.yaml"));
    }

    #[test]
    fn an_exemption_waives_one_rule_for_one_object_and_is_reported() {
        let mut objects = synthetic_objects(2);
        let pod_spec = &mut deployment(&mut objects)["spec"]["template"]["spec"];
        pod_spec["securityContext"]["runAsNonRoot"] = false.into();
        pod_spec["securityContext"]["runAsUser"] = 0.into();
        let exemption = exemption("run-as-non-root", "Deployment", "svc-0000", "svc-0000");
        assert_eq!(rules_violated(&check(&objects, &[])), ["run-as-non-root"]);
        let report = check(&objects, std::slice::from_ref(&exemption));
        assert_eq!(report.violations, []);
        assert_eq!(report.exempted.len(), 1);
        assert_eq!(report.exempted[0].reason, "the stock image runs as root");
        assert!(
            report
                .to_string()
                .contains("exempted: the stock image runs as root")
        );
        assert_eq!(report.unused_exemptions, []);
    }

    #[test]
    fn an_exemption_matching_nothing_is_reported_as_unused() {
        let exemption = exemption("run-as-non-root", "Deployment", "antaeus", "antaeus");
        let report = check(&synthetic_objects(1), std::slice::from_ref(&exemption));
        assert_eq!(report.unused_exemptions, [exemption]);
        assert!(report.to_string().contains("unused"));
    }

    #[test]
    fn an_exemption_for_an_unknown_rule_is_an_error() {
        let err = Bundle::builtin()
            .expect("compiles")
            .check(
                &production(),
                &[],
                &[exemption("no-such-rule", "Deployment", "a", "a")],
            )
            .expect_err("unknown rule");
        assert!(err.to_string().contains("no-such-rule"), "{err}");
    }

    #[test]
    fn an_exemption_for_a_kind_the_rule_never_matches_is_an_error() {
        let err = Bundle::builtin()
            .expect("compiles")
            .check(
                &production(),
                &[],
                &[exemption("rbac-no-wildcards", "Deployment", "a", "a")],
            )
            .expect_err("wrong kind");
        assert!(
            err.to_string().contains("never applies to a Deployment"),
            "{err}"
        );
    }

    #[test]
    fn an_object_missing_required_structure_is_a_violation_naming_the_cause_not_a_panic() {
        let mut objects = synthetic_objects(1);
        objects.push(SourcedObject::new(
            "broken.yaml",
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x", "namespace": "svc-0000"}, "spec": {}}),
        ));
        let report = check(&objects, &[]);
        assert!(!report.violations.is_empty());
        for v in &report.violations {
            assert!(v.message.contains("failed to evaluate"), "{report}");
            // The cause, not CEL's "undeclared reference to 'variables'".
            assert!(
                !v.message.contains("Undeclared reference"),
                "{}: {}",
                v.rule,
                v.message
            );
        }
    }

    #[test]
    fn a_namespace_without_platform_settings_is_denied_by_the_rules_that_read_them() {
        let mut objects = synthetic_objects(1);
        objects.retain(|o| o.object["kind"] != "ConfigMap");
        let report = check(&objects, &[]);
        let rules = rules_violated(&report);
        assert!(rules.contains(&"image-from-platform-registry"), "{report}");
        assert!(rules.contains(&"service-account-pinned"), "{report}");
        assert!(
            report
                .violations
                .iter()
                .all(|v| v.message.contains("has no ConfigMap platform-policy")),
            "{report}"
        );
    }

    #[test]
    fn kubernetes_own_namespaces_are_skipped_as_the_bindings_skip_them() {
        let mut objects = synthetic_objects(1);
        let object = deployment(&mut objects);
        object["metadata"]["namespace"] = "kube-system".into();
        object["spec"]["template"]["spec"]["hostNetwork"] = true.into();
        let report = check(&objects, &[]);
        assert_eq!(report.violations, []);
        assert_eq!(report.objects_skipped, 1);
    }

    #[test]
    fn a_developer_may_scale_and_restart_but_not_change_the_image() {
        let objects = synthetic_objects(1);
        let live = objects
            .iter()
            .find(|o| o.object["kind"] == "Deployment")
            .expect("a Deployment")
            .object
            .clone();
        let scaled = update(&live, developer(), |d| d["spec"]["replicas"] = 3.into());
        let restarted = update(&live, developer(), |d| {
            d["spec"]["template"]["metadata"]["annotations"] =
                serde_json::json!({"kubectl.kubernetes.io/restartedAt": "2026-12-02T06:00:00Z"});
        });
        assert_eq!(judge(vec![scaled, restarted]).violations, []);

        let image = update(&live, developer(), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                format!("{}/svc-0000:9.9.9@{}", testing::REGISTRY, testing::DIGEST).into();
        });
        let report = judge(vec![image]);
        assert_eq!(
            rules_violated(&report),
            ["developer-changes-limited"],
            "{report}"
        );
        let switched_off = update(&live, developer(), |d| {
            d["metadata"]["annotations"] =
                serde_json::json!({"kustomize.toolkit.fluxcd.io/reconcile": "disabled"});
        });
        let report = judge(vec![switched_off]);
        assert_eq!(
            rules_violated(&report),
            ["developer-changes-limited", "flux-controls-platform-only"],
            "{report}"
        );
        // The same changes from git (the tenant account) are the tenant's to make.
        let from_git = update(&live, testing::tenant("svc-0000"), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"] =
                serde_json::json!([{"name": "X", "value": "1"}]);
        });
        assert_eq!(judge(vec![from_git]).violations, []);
    }

    #[test]
    fn scaling_beyond_the_specs_maximum_is_refused_through_the_scale_subresource_too() {
        let scale = |replicas: i64| SourcedObject {
            file: "scale.yaml".into(),
            object: serde_json::json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "svc-0000", "namespace": "svc-0000"},
                "spec": {"replicas": replicas}}),
            admission: Admission {
                operation: Operation::Update,
                user: Some(developer()),
                sub_resource: Some("scale".into()),
                resource: Some(("apps".into(), "deployments".into())),
                old_object: Some(serde_json::json!({"apiVersion": "autoscaling/v1",
                    "kind": "Scale", "metadata": {"name": "svc-0000", "namespace": "svc-0000"},
                    "spec": {"replicas": 2}})),
            },
        };
        assert_eq!(judge(vec![scale(4)]).violations, []);
        let report = judge(vec![scale(10_000)]);
        assert_eq!(rules_violated(&report), ["replicas-bounded"], "{report}");
        assert!(report.violations[0].message.contains("10000 exceed 4"));
    }

    #[test]
    fn an_update_that_leaves_the_pod_spec_alone_is_not_judged_again() {
        // A ReplicaSet made from an old template (a digest the spec no longer pins), scaled
        // down by the controller: refusing it would wedge the rollout.
        let old_image = format!(
            "{}/svc-0000:1.4.1@sha256:{}",
            testing::REGISTRY,
            "c".repeat(64)
        );
        let mut replica_set = testing::deployment("svc-0000", &testing::labels("svc-0000", "t"));
        replica_set["kind"] = "ReplicaSet".into();
        replica_set["spec"]["template"]["spec"]["containers"][0]["image"] = old_image.into();
        let controller = UserInfo::service_account("kube-system", "replicaset-controller");
        let scaled_down = update(&replica_set, controller.clone(), |r| {
            r["spec"]["replicas"] = 0.into();
        });
        assert_eq!(judge(vec![scaled_down]).violations, []);
        let changed = update(&replica_set, controller, |r| {
            r["spec"]["template"]["spec"]["hostNetwork"] = true.into();
        });
        assert!(!judge(vec![changed]).violations.is_empty());
    }

    #[test]
    fn only_the_platform_may_change_what_sets_a_tenants_limits() {
        let objects = synthetic_objects(1);
        let namespace = objects
            .iter()
            .find(|o| o.object["kind"] == "Namespace")
            .expect("a Namespace")
            .object
            .clone();
        let relabel = |user: UserInfo| {
            update(&namespace, user, |n| {
                n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged".into();
            })
        };
        let report = judge(vec![relabel(testing::tenant("svc-0000"))]);
        assert_eq!(
            rules_violated(&report),
            ["tenant-limits-protected"],
            "{report}"
        );
        assert!(
            report.violations[0]
                .message
                .contains("only the platform may update Namespace")
        );
        assert_eq!(judge(vec![relabel(testing::platform())]).violations, []);
        let delete_quota = SourcedObject {
            file: "delete.yaml".into(),
            object: serde_json::Value::Null,
            admission: Admission {
                operation: Operation::Delete,
                user: Some(testing::tenant("svc-0000")),
                old_object: objects
                    .iter()
                    .find(|o| o.object["kind"] == "ResourceQuota")
                    .map(|o| o.object.clone()),
                ..Admission::default()
            },
        };
        let report = judge(vec![delete_quota]);
        assert_eq!(
            rules_violated(&report),
            ["tenant-limits-protected"],
            "{report}"
        );
    }

    #[test]
    fn a_variable_two_rules_define_differently_is_evaluated_per_rule() {
        let rules = r#"
rules:
  - name: first
    description: d
    severity: error
    match: [{apiGroup: "", kinds: [Service]}]
    variables: [{name: v, expression: "1"}, {name: same, expression: "object.metadata.name"}]
    validations: [{expression: "variables.v == 2 && variables.same == 'a'", message: first saw v=1}]
  - name: second
    description: d
    severity: error
    match: [{apiGroup: "", kinds: [Service]}]
    variables: [{name: v, expression: "2"}, {name: same, expression: "object.metadata.name"}]
    validations: [{expression: "variables.v == 2 && variables.same == 'a'", message: second saw v=1}]
"#;
        let bundle = Bundle::from_yaml(rules).expect("valid rules");
        assert_eq!(bundle.shared.len(), 1, "only `same` is shared");
        let objects = [SourcedObject::new(
            "s.yaml",
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "a", "namespace": "n"}}),
        )];
        let report = bundle
            .check(&CheckContext::default(), &objects, &[])
            .expect("valid");
        assert_eq!(rules_violated(&report), ["first"], "{report}");
    }

    #[test]
    fn warnings_do_not_fail_the_check() {
        let mut objects = synthetic_objects(1);
        find_mut(&mut objects, "NetworkPolicy")["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("policyTypes");
        let report = check(&objects, &[]);
        assert_eq!(report.warnings(), 1, "{report}");
        assert_eq!(report.violations[0].severity, Severity::Warning);
        assert!(!report.has_errors());
    }
}
