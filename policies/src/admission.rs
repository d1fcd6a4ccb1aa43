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
