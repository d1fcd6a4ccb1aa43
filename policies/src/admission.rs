//! The in-cluster enforcer: each rule as a ValidatingAdmissionPolicy and its binding, with the
//! same expressions the offline check runs and exemptions as match conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::{Bundle, Error, Exemption, Rule, Severity, UNCHECKED_NAMESPACES, kinds};

/// Prefix of every policy and binding name, so `kubectl get validatingadmissionpolicies` shows
/// at a glance which ones the platform owns.
pub(crate) const NAME_PREFIX: &str = "platform-";

impl Bundle {
    /// One ValidatingAdmissionPolicy and one binding per rule that applies in `environment`, in
    /// rule order. Error rules deny; warning rules warn and audit. Exemptions of a rule become
    /// match conditions of its policy, so the cluster skips exactly what the offline check skips.
    pub fn admission_objects(
        &self,
        environment: &str,
        exemptions: &[Exemption],
    ) -> Result<Vec<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)>, Error> {
        let mut exemptions: Vec<&Exemption> = self
            .compile_exemptions(exemptions)?
            .into_iter()
            .map(|(_, exemption, _)| exemption)
            .collect();
        exemptions.sort();
        Ok(self
            .rules()
            .iter()
            .filter(|rule| rule.applies_in(Some(environment)))
            .map(|rule| {
                let own: Vec<&Exemption> = exemptions
                    .iter()
                    .copied()
                    .filter(|e| e.rule == rule.name)
                    .collect();
                (policy(rule, &own), binding(rule))
            })
            .collect())
    }
}

fn metadata(rule: &Rule) -> ObjectMeta {
    ObjectMeta {
        name: Some(format!("{NAME_PREFIX}{}", rule.name)),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "policies".to_owned()),
            (
                "app.kubernetes.io/part-of".to_owned(),
                "billing-platform".to_owned(),
            ),
            ("platform.billing.dev/rule".to_owned(), rule.name.clone()),
            (
                "platform.billing.dev/severity".to_owned(),
                rule.severity.to_string(),
            ),
        ])),
        annotations: Some(BTreeMap::from([(
            "platform.billing.dev/description".to_owned(),
            rule.description.clone(),
        )])),
        ..Default::default()
    }
}

fn policy(rule: &Rule, exemptions: &[&Exemption]) -> ValidatingAdmissionPolicy {
    // One resource rule per API group keeps the group/resource pairing exact.
    let resource_rules = rule
        .matches
        .iter()
        .map(|group| NamedRuleWithOperations {
            api_groups: Some(vec![group.api_group.clone()]),
            api_versions: Some(vec!["*".to_owned()]),
            operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
            resources: Some(
                group
                    .kinds
                    .iter()
                    .filter_map(|kind| kinds::lookup(&group.api_group, kind))
                    .map(|k| k.resource.to_owned())
                    .collect(),
            ),
            ..Default::default()
        })
        .collect();
    let match_conditions: Vec<MatchCondition> = rule
        .match_conditions
        .iter()
        .map(|c| MatchCondition {
            name: c.name.clone(),
            expression: c.expression.clone(),
        })
        .chain(exemptions.iter().map(|e| MatchCondition {
            name: e.condition_name(),
            expression: e.condition(),
        }))
        .collect();
    ValidatingAdmissionPolicy {
        metadata: metadata(rule),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(resource_rules),
                ..Default::default()
            }),
            match_conditions: (!match_conditions.is_empty()).then_some(match_conditions),
            variables: (!rule.variables.is_empty()).then(|| {
                rule.variables
                    .iter()
                    .map(|v| Variable {
                        name: v.name.clone(),
                        expression: v.expression.clone(),
                    })
                    .collect()
            }),
            validations: Some(
                rule.validations
                    .iter()
                    .map(|v| Validation {
                        expression: v.expression.clone(),
                        message: Some(v.message.clone()),
                        message_expression: v.message_expression.clone(),
                        reason: Some("Invalid".to_owned()),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn binding(rule: &Rule) -> ValidatingAdmissionPolicyBinding {
    let actions = match rule.severity {
        Severity::Error => vec!["Deny".to_owned()],
        Severity::Warning => vec!["Warn".to_owned(), "Audit".to_owned()],
    };
    ValidatingAdmissionPolicyBinding {
        metadata: metadata(rule),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: format!("{NAME_PREFIX}{}", rule.name),
            validation_actions: actions,
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "kubernetes.io/metadata.name".to_owned(),
                        operator: "NotIn".to_owned(),
                        values: Some(
                            UNCHECKED_NAMESPACES
                                .iter()
                                .map(|n| (*n).to_owned())
                                .collect(),
                        ),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::evaluate::{self, Site};
    use crate::{CheckContext, SourcedObject, bench, load_manifests};

    use crate::exemption::tests::antaeus as antaeus_root;

    /// Evaluates a generated policy the way the API server does, using only the policy object:
    /// resource rules, then match conditions, then variables, then validations. Returns `None`
    /// when the policy does not apply, else the messages of the failed validations.
    fn evaluate_policy(
        policy: &ValidatingAdmissionPolicy,
        object: &serde_json::Value,
    ) -> Option<Vec<String>> {
        let env = evaluate::environment();
        let spec = policy.spec.as_ref().expect("policies have a spec");
        let (group, version) =
            kinds::split_api_version(object["apiVersion"].as_str().unwrap_or_default());
        let kind = object["kind"].as_str().unwrap_or_default();
        let info = kinds::lookup(group, kind)?;
        let rules = spec.match_constraints.as_ref()?.resource_rules.as_ref()?;
        let matched = rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && r.resources
                    .as_ref()
                    .is_some_and(|rs| rs.iter().any(|r| r == info.resource))
        });
        if !matched {
            return None;
        }
        let text = |p: &str| object.pointer(p).and_then(|v| v.as_str()).unwrap_or("");
        let request = evaluate::request(
            group,
            version,
            kind,
            info.resource,
            text("/metadata/namespace"),
            text("/metadata/name"),
        );
        let root =
            evaluate::object_context(&env, evaluate::to_cel(object), evaluate::to_cel(&request));
        for condition in spec.match_conditions.iter().flatten() {
            let program = evaluate::compile(&env, &condition.expression, Site::MatchCondition)
                .expect("match conditions compile");
            if !evaluate::eval_bool(&program, &root).expect("match conditions evaluate") {
                return None;
            }
        }
        let variables: Vec<_> = spec
            .variables
            .iter()
            .flatten()
            .map(|v| {
                let program = evaluate::compile(&env, &v.expression, Site::Body).expect("compiles");
                (v.name.clone(), program)
            })
            .collect();
        let scope = evaluate::with_variables(&root, &variables);
        let mut failed = Vec::new();
        for validation in spec.validations.iter().flatten() {
            let program =
                evaluate::compile(&env, &validation.expression, Site::Body).expect("compiles");
            if evaluate::eval_bool(&program, &scope) != Ok(true) {
                failed.push(validation.message.clone().unwrap_or_default());
            }
        }
        Some(failed)
    }

    fn root_deployment(namespace: &str, name: &str) -> serde_json::Value {
        let mut objects = bench::synthetic_objects(1);
        let deployment = objects
            .iter_mut()
            .find(|o| o.object["kind"] == "Deployment")
            .expect("a Deployment");
        let object = &mut deployment.object;
        object["metadata"]["namespace"] = namespace.into();
        object["metadata"]["name"] = name.into();
        object["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = false.into();
        object.clone()
    }

    fn owned(
        kind: &str,
        name: &str,
        owner_kind: &str,
        owner: &str,
        from: &serde_json::Value,
    ) -> serde_json::Value {
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        let spec = if kind == "Pod" {
            from["spec"]["template"]["spec"].clone()
        } else {
            from["spec"].clone()
        };
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": from["metadata"]["namespace"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": "u", "controller": true}],
            },
            "spec": spec,
        })
    }

    #[test]
    fn every_rule_becomes_one_policy_and_one_binding_in_rule_order() {
        let bundle = Bundle::builtin().expect("compiles");
        let objects = bundle.admission_objects("production", &[]).expect("valid");
        assert_eq!(objects.len(), bundle.rules().len());
        for ((policy, binding), rule) in objects.iter().zip(bundle.rules()) {
            let name = format!("platform-{}", rule.name);
            assert_eq!(policy.metadata.name.as_deref(), Some(name.as_str()));
            assert_eq!(binding.spec.policy_name, name);
            let spec = policy.spec.as_ref().expect("spec");
            assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
            let expected: &[&str] = match rule.severity {
                Severity::Error => &["Deny"],
                Severity::Warning => &["Warn", "Audit"],
            };
            assert_eq!(binding.spec.validation_actions, expected, "{}", rule.name);
        }
        let staging = bundle.admission_objects("staging", &[]).expect("valid");
        assert_eq!(
            staging.len(),
            bundle.rules().len() - 1,
            "image-digest-pinned is production-only"
        );
    }

    #[test]
    fn every_expression_in_the_generated_policies_compiles_offline() {
        let env = evaluate::environment();
        let bundle = Bundle::builtin().expect("compiles");
        for (policy, _) in bundle
            .admission_objects("production", &[antaeus_root()])
            .expect("valid")
        {
            let spec = policy.spec.expect("spec");
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
                evaluate::compile(&env, &expression, Site::Body)
                    .unwrap_or_else(|e| panic!("{expression}: {e}"));
            }
        }
    }

    #[test]
    fn an_exemption_is_a_match_condition_skipping_the_object_and_what_its_controller_creates() {
        let bundle = Bundle::builtin().expect("compiles");
        let objects = bundle
            .admission_objects("production", &[antaeus_root()])
            .expect("valid");
        let (policy, _) = objects
            .iter()
            .find(|(p, _)| p.metadata.name.as_deref() == Some("platform-run-as-non-root"))
            .expect("the run-as-non-root policy");

        let exempted = root_deployment("antaeus", "antaeus");
        let replica_set = owned(
            "ReplicaSet",
            "antaeus-5d8f7c9b4",
            "Deployment",
            "antaeus",
            &exempted,
        );
        let pod = owned(
            "Pod",
            "antaeus-5d8f7c9b4-x2x9q",
            "ReplicaSet",
            "antaeus-5d8f7c9b4",
            &exempted,
        );
        assert_eq!(evaluate_policy(policy, &exempted), None);
        assert_eq!(evaluate_policy(policy, &replica_set), None);
        assert_eq!(evaluate_policy(policy, &pod), None);

        // Same name in another namespace, or another Deployment's pods in the namespace: denied.
        let elsewhere = root_deployment("billing", "antaeus");
        let stranger = owned(
            "Pod",
            "antaeus-admin-x",
            "ReplicaSet",
            "antaeus-admin-5d8f-x",
            &exempted,
        );
        for object in [elsewhere, stranger] {
            let failed = evaluate_policy(policy, &object).expect("the policy applies");
            assert_eq!(failed.len(), 1, "{object}");
        }
    }

    #[test]
    fn the_generated_policies_and_the_offline_check_agree_on_every_fixture() {
        let bundle = Bundle::builtin().expect("compiles");
        let exemptions = [antaeus_root()];
        let policies = bundle
            .admission_objects("production", &exemptions)
            .expect("valid");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut objects: Vec<SourcedObject> = load_manifests(&fixtures).expect("fixtures load");
        objects.push(SourcedObject {
            file: "antaeus.yaml".into(),
            object: root_deployment("antaeus", "antaeus"),
        });
        let context = CheckContext {
            environment: Some("production".into()),
        };
        for object in &objects {
            let report = bundle
                .check(&context, std::slice::from_ref(object), &exemptions)
                .expect("valid");
            let mut offline: Vec<String> =
                report.violations.iter().map(|v| v.rule.clone()).collect();
            let mut in_cluster: Vec<String> = policies
                .iter()
                .filter_map(|(policy, _)| {
                    let failed = evaluate_policy(policy, &object.object)?;
                    let rule = policy
                        .metadata
                        .name
                        .as_deref()?
                        .trim_start_matches(NAME_PREFIX);
                    Some(std::iter::repeat_n(rule.to_owned(), failed.len()))
                })
                .flatten()
                .collect();
            offline.sort();
            in_cluster.sort();
            assert_eq!(offline, in_cluster, "{}", object.file.display());
        }
    }

    #[test]
    fn bindings_leave_out_kubernetes_and_flux_own_namespaces() {
        let bundle = Bundle::builtin().expect("compiles");
        let (_, binding) = &bundle.admission_objects("production", &[]).expect("valid")[0];
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
        let bundle = Bundle::builtin().expect("compiles");
        let objects = bundle
            .admission_objects("production", &[antaeus_root()])
            .expect("valid");
        insta::assert_yaml_snapshot!(objects);
    }
}
