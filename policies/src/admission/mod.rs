//! The in-cluster enforcer: each rule as a ValidatingAdmissionPolicy and its binding, with the
//! same expressions the offline check runs and exemptions as match conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::{
    Bundle, Error, Exemption, PARAMS_CONFIG_MAP, Rule, Severity, UNCHECKED_NAMESPACES, kinds,
};

/// Prefix of every policy and binding name, so `kubectl get validatingadmissionpolicies` shows
/// at a glance which ones the platform owns.
pub(crate) const NAME_PREFIX: &str = "platform-";

/// The labels of the admission objects: the caller's (its platform's naming), plus one key
/// each for the rule and the severity, so the cluster can select policies by either
/// (`kubectl get validatingadmissionpolicies -l <severity_key>=error`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionLabels {
    /// Put on every policy and binding as they are.
    pub common: BTreeMap<String, String>,
    /// The key whose value is the rule's name.
    pub rule_key: String,
    /// The key whose value is the rule's severity (`error`, `warning`).
    pub severity_key: String,
    /// The annotation key that carries the rule's description (`kubectl describe` shows it).
    pub description_key: String,
}

impl Bundle {
    /// One ValidatingAdmissionPolicy and one binding per rule that applies in `environment`, in
    /// rule order. Error rules deny; warning rules warn and audit. Exemptions of a rule become
    /// match conditions of its policy, so the cluster skips exactly what the offline check skips.
    pub fn admission_objects(
        &self,
        environment: &str,
        exemptions: &[Exemption],
        labels: &AdmissionLabels,
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
                (policy(rule, &own, labels), binding(rule, labels))
            })
            .collect())
    }
}

fn metadata(rule: &Rule, labels: &AdmissionLabels) -> ObjectMeta {
    let mut all = labels.common.clone();
    all.insert(labels.rule_key.clone(), rule.name.clone());
    all.insert(labels.severity_key.clone(), rule.severity.to_string());
    ObjectMeta {
        name: Some(rule.policy_name()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(
            labels.description_key.clone(),
            rule.description.clone(),
        )])),
        ..Default::default()
    }
}

fn policy(
    rule: &Rule,
    exemptions: &[&Exemption],
    labels: &AdmissionLabels,
) -> ValidatingAdmissionPolicy {
    // One resource rule per API group keeps the group/resource pairing exact.
    let resource_rules = rule
        .matches
        .iter()
        .map(|group| NamedRuleWithOperations {
            api_groups: Some(vec![group.api_group.clone()]),
            api_versions: Some(vec!["*".to_owned()]),
            operations: Some(
                rule.operations
                    .iter()
                    .map(|o| o.as_str().to_owned())
                    .collect(),
            ),
            resources: Some(
                group
                    .kinds
                    .iter()
                    .filter_map(|kind| kinds::lookup(&group.api_group, kind))
                    .flat_map(|k| {
                        std::iter::once(k.resource.to_owned()).chain(
                            group
                                .subresources
                                .iter()
                                .map(move |sub| format!("{}/{sub}", k.resource)),
                        )
                    })
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
        metadata: metadata(rule, labels),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            param_kind: rule.params.then(|| ParamKind {
                api_version: Some("v1".to_owned()),
                kind: Some("ConfigMap".to_owned()),
            }),
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

fn binding(rule: &Rule, labels: &AdmissionLabels) -> ValidatingAdmissionPolicyBinding {
    let actions = match rule.severity {
        Severity::Error => vec!["Deny".to_owned()],
        Severity::Warning => vec!["Warn".to_owned(), "Audit".to_owned()],
    };
    ValidatingAdmissionPolicyBinding {
        metadata: metadata(rule, labels),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: rule.policy_name(),
            validation_actions: actions,
            // The namespace left unset: each request reads the ConfigMap of its own namespace.
            param_ref: rule.params.then(|| ParamRef {
                name: Some(PARAMS_CONFIG_MAP.to_owned()),
                parameter_not_found_action: Some("Deny".to_owned()),
                ..Default::default()
            }),
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
        },
    }
}

#[cfg(test)]
mod tests;
