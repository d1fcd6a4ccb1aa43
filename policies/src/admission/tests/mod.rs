//! Tests of the generated admission objects: their shape, names, labels and snapshot here;
//! that the cluster and the offline check agree, in [`agreement`].

mod agreement;

use super::*;
use crate::evaluate::{self, Site};
use crate::exemption::tests::antaeus as antaeus_root;

fn labels() -> AdmissionLabels {
    AdmissionLabels {
        common: BTreeMap::from([("app.kubernetes.io/part-of".to_owned(), "billing".to_owned())]),
        rule_key: "billing-platform/rule".to_owned(),
        severity_key: "billing-platform/severity".to_owned(),
        description_key: "billing-platform/description".to_owned(),
    }
}

fn objects(
    env: &str,
    exemptions: &[Exemption],
) -> Vec<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)> {
    Bundle::builtin()
        .expect("compiles")
        .admission_objects(env, exemptions, &labels())
        .expect("valid")
}

/// Evaluates a generated policy the way the API server does, using only the policy and
/// binding objects: resource rules (group, resource, subresource, operation), match
/// conditions, the binding's paramRef, variables, validations. Returns `None` when the
/// policy does not apply, else the messages of the failed validations.

#[test]
fn every_rule_becomes_one_policy_and_one_binding_in_rule_order() {
    let bundle = Bundle::builtin().expect("compiles");
    let generated = objects("production", &[]);
    assert_eq!(generated.len(), bundle.rules().len());
    for ((policy, binding), rule) in generated.iter().zip(bundle.rules()) {
        let name = format!("platform-{}", rule.name);
        assert_eq!(policy.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(rule.policy_name(), name);
        assert_eq!(binding.spec.policy_name, name);
        let spec = policy.spec.as_ref().expect("spec");
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let expected: &[&str] = match rule.severity {
            Severity::Error => &["Deny"],
            Severity::Warning => &["Warn", "Audit"],
        };
        assert_eq!(binding.spec.validation_actions, expected, "{}", rule.name);
    }
    let staging = objects("staging", &[]);
    assert_eq!(
        staging.len(),
        bundle.rules().len() - 1,
        "image-digest-pinned is production-only"
    );
}

#[test]
fn policies_carry_the_callers_labels_and_are_selectable_by_rule_and_severity() {
    let (policy, binding) = &objects("production", &[])[0];
    for meta in [&policy.metadata, &binding.metadata] {
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/part-of"], "billing");
        assert_eq!(labels["billing-platform/rule"], "probes-required");
        assert_eq!(labels["billing-platform/severity"], "error");
        assert!(
            meta.annotations.as_ref().expect("annotations")["billing-platform/description"]
                .contains("livenessProbe")
        );
    }
}

#[test]
fn rules_on_subresources_and_params_say_so_in_the_policy_and_binding() {
    let objects = objects("production", &[]);
    let find = |name: &str| {
        objects
            .iter()
            .find(|(p, _)| p.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name}"))
    };
    let (policy, binding) = find("platform-replicas-bounded");
    let spec = policy.spec.as_ref().expect("spec");
    let resources = spec
        .match_constraints
        .as_ref()
        .and_then(|m| m.resource_rules.as_ref())
        .expect("rules")[0]
        .resources
        .clone();
    assert_eq!(
        resources,
        Some(vec![
            "deployments".to_owned(),
            "deployments/scale".to_owned()
        ])
    );
    assert_eq!(
        spec.param_kind.as_ref().and_then(|k| k.kind.as_deref()),
        Some("ConfigMap")
    );
    let param_ref = binding.spec.param_ref.as_ref().expect("paramRef");
    assert_eq!(param_ref.name.as_deref(), Some(PARAMS_CONFIG_MAP));
    assert_eq!(
        param_ref.namespace, None,
        "each request reads its own namespace's"
    );
    assert_eq!(
        param_ref.parameter_not_found_action.as_deref(),
        Some("Deny")
    );
    let (policy, _) = find("platform-no-privileged");
    let pods = &policy
        .spec
        .as_ref()
        .and_then(|s| s.match_constraints.as_ref())
        .and_then(|m| m.resource_rules.as_ref())
        .expect("rules")[0];
    assert_eq!(
        pods.resources,
        Some(vec![
            "pods".to_owned(),
            "pods/ephemeralcontainers".to_owned()
        ])
    );
    let (policy, _) = find("platform-tenant-limits-protected");
    let ops = policy
        .spec
        .as_ref()
        .and_then(|s| s.match_constraints.as_ref())
        .and_then(|m| m.resource_rules.as_ref())
        .expect("rules")[0]
        .operations
        .clone();
    assert_eq!(
        ops,
        Some(vec![
            "CREATE".to_owned(),
            "UPDATE".to_owned(),
            "DELETE".to_owned()
        ])
    );
}

#[test]
fn every_expression_in_the_generated_policies_compiles_offline() {
    let env = evaluate::environment();
    for (policy, _) in objects("production", &[antaeus_root()]) {
        let spec = policy.spec.expect("spec");
        let site = if spec.param_kind.is_some() {
            Site::BodyWithParams
        } else {
            Site::Body
        };
        for c in spec.match_conditions.iter().flatten() {
            evaluate::compile(&env, &c.expression, Site::MatchCondition)
                .unwrap_or_else(|e| panic!("{}: {e}", c.expression));
        }
        let body = spec
            .variables
            .iter()
            .flatten()
            .map(|v| v.expression.clone())
            .chain(spec.validations.iter().flatten().flat_map(|v| {
                std::iter::once(v.expression.clone()).chain(v.message_expression.clone())
            }));
        for expression in body {
            evaluate::compile(&env, &expression, site)
                .unwrap_or_else(|e| panic!("{expression}: {e}"));
        }
    }
}

#[test]

fn bindings_leave_out_kubernetes_and_flux_own_namespaces() {
    let (_, binding) = &objects("production", &[])[0];
    let selector = binding
        .spec
        .match_resources
        .as_ref()
        .and_then(|m| m.namespace_selector.as_ref());
    let requirement = &selector
        .and_then(|s| s.match_expressions.as_ref())
        .expect("expressions")[0];
    assert_eq!(requirement.operator, "NotIn");
    assert_eq!(
        requirement.values.as_deref(),
        Some(
            &[
                "kube-system".to_owned(),
                "kube-public".to_owned(),
                "kube-node-lease".to_owned(),
                "flux-system".to_owned()
            ][..]
        )
    );
}

#[test]
fn generated_admission_objects_are_stable() {
    insta::assert_yaml_snapshot!(objects("production", &[antaeus_root()]));
}
