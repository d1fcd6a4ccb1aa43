//! Tests of the bundle: shared helpers and the bundle as a whole here; objects created in
//! [`creates`], requests that change or delete live objects in [`updates`].

mod creates;
mod updates;

use super::*;
use crate::report::Report;
use crate::testing::{self, find_mut, synthetic_objects};
use crate::{Admission, Operation, Severity};
use crate::{Exemption, SourcedObject};

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

/// A copy of the first object of `kind` among `objects`: the live object a request changes.
fn live(objects: &[SourcedObject], kind: &str) -> serde_json::Value {
    objects
        .iter()
        .find(|o| o.object["kind"] == kind)
        .unwrap_or_else(|| panic!("the synthetic set has a {kind}"))
        .object
        .clone()
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
