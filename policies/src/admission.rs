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
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::bundle::{namespace_params, request_parts};
    use crate::evaluate::{self, Failures, Site};
    use crate::exemption::tests::antaeus as antaeus_root;
    use crate::testing::{self, synthetic_objects};
    use crate::{Admission, CheckContext, SourcedObject, UserInfo, load_manifests};

    fn labels() -> AdmissionLabels {
        AdmissionLabels {
            common: BTreeMap::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "billing".to_owned(),
            )]),
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
    fn evaluate_policy(
        policy: &ValidatingAdmissionPolicy,
        binding: &ValidatingAdmissionPolicyBinding,
        request: &SourcedObject,
        params: Option<&serde_json::Value>,
    ) -> Option<Vec<String>> {
        let env = evaluate::environment();
        let spec = policy.spec.as_ref().expect("policies have a spec");
        let checker = UserInfo::checker();
        let parts = request_parts(request, &checker);
        let resource = if parts.sub_resource.is_empty() {
            parts.resource.to_owned()
        } else {
            format!("{}/{}", parts.resource, parts.sub_resource)
        };
        let rules = spec.match_constraints.as_ref()?.resource_rules.as_ref()?;
        let matched = rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == parts.resource_group))
                && r.resources
                    .as_ref()
                    .is_some_and(|rs| rs.contains(&resource))
                && r.operations
                    .as_ref()
                    .is_some_and(|ops| ops.iter().any(|o| o == parts.operation.as_str()))
        });
        if !matched {
            return None;
        }
        let uses_params = spec.param_kind.is_some();
        assert_eq!(
            uses_params,
            binding.spec.param_ref.is_some(),
            "a policy with paramKind needs a binding with paramRef"
        );
        let root = evaluate::object_context(
            &env,
            evaluate::to_cel(&request.object),
            request
                .admission
                .old_object
                .as_ref()
                .map_or(cel::Value::Null, evaluate::to_cel),
            evaluate::to_cel(&parts.to_json()),
            params.map_or(cel::Value::Null, evaluate::to_cel),
        );
        for condition in spec.match_conditions.iter().flatten() {
            let program = evaluate::compile(&env, &condition.expression, Site::MatchCondition)
                .expect("match conditions compile");
            if !evaluate::eval_bool(&program, &root).expect("match conditions evaluate") {
                return None;
            }
        }
        if uses_params && params.is_none() {
            // parameterNotFoundAction: Deny, then failurePolicy: Fail.
            return Some(vec!["no params".to_owned()]);
        }
        let site = if uses_params {
            Site::BodyWithParams
        } else {
            Site::Body
        };
        let variables: Vec<_> = spec
            .variables
            .iter()
            .flatten()
            .map(|v| {
                let program = evaluate::compile(&env, &v.expression, site).expect("compiles");
                (v.name.clone(), program)
            })
            .collect();
        let scope = evaluate::with_variables(&root, &variables, &mut Failures::new());
        let mut failed = Vec::new();
        for validation in spec.validations.iter().flatten() {
            let program = evaluate::compile(&env, &validation.expression, site).expect("compiles");
            if evaluate::eval_bool(&program, &scope) != Ok(true) {
                failed.push(validation.message.clone().unwrap_or_default());
            }
        }
        Some(failed)
    }

    fn root_deployment(namespace: &str, name: &str) -> serde_json::Value {
        let mut object = testing::deployment(namespace, &testing::labels(namespace, "t"));
        object["metadata"]["name"] = name.into();
        object["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = false.into();
        object
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

    fn created_by(object: serde_json::Value, user: UserInfo) -> SourcedObject {
        SourcedObject {
            file: "x.yaml".into(),
            object,
            admission: Admission::create_as(user),
        }
    }

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
    fn an_exemption_skips_the_object_and_what_kubernetes_controllers_create_from_it() {
        let objects = objects("production", &[antaeus_root()]);
        let (policy, binding) = objects
            .iter()
            .find(|(p, _)| p.metadata.name.as_deref() == Some("platform-run-as-non-root"))
            .expect("the run-as-non-root policy");
        let controller = UserInfo::service_account("kube-system", "replicaset-controller");
        let tenant = testing::tenant("antaeus");

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
        let judge = |object: &serde_json::Value, user: &UserInfo| {
            evaluate_policy(
                policy,
                binding,
                &created_by(object.clone(), user.clone()),
                None,
            )
        };
        assert_eq!(judge(&exempted, &tenant), None);
        assert_eq!(judge(&replica_set, &controller), None);
        assert_eq!(judge(&pod, &controller), None);
        assert_eq!(
            judge(&pod, &UserInfo::user("system:kube-controller-manager", &[])),
            None
        );

        // Same name in another namespace, another Deployment's pods in the namespace, or a pod
        // claiming the exempt owner but created by someone else (a forged owner): denied.
        let elsewhere = root_deployment("billing", "antaeus");
        let stranger = owned(
            "Pod",
            "antaeus-admin-x",
            "ReplicaSet",
            "antaeus-admin-5d8f-x",
            &exempted,
        );
        let mut forged_deployment = root_deployment("antaeus", "evil");
        forged_deployment["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "antaeus-5d8f7c9b4", "uid": "u", "controller": true}]);
        for (object, user) in [
            (&elsewhere, &tenant),
            (&stranger, &controller),
            (&pod, &tenant),
            (&replica_set, &tenant),
            (&forged_deployment, &tenant),
            (&forged_deployment, &controller),
        ] {
            let failed = judge(object, user).expect("the policy applies");
            assert_eq!(failed.len(), 1, "{object} as {}", user.username);
        }
    }

    #[test]
    fn the_generated_policies_and_the_offline_check_agree_on_every_fixture() {
        let bundle = Bundle::builtin().expect("compiles");
        let exemptions = [antaeus_root()];
        let policies = objects("production", &exemptions);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let no_kustomize = |dir: &Path| Err(format!("no kustomize for {}", dir.display()));
        let context_objects =
            load_manifests(&root.join("tests/context"), &no_kustomize).expect("context loads");
        let mut requests: Vec<SourcedObject> =
            load_manifests(&root.join("fixtures"), &no_kustomize).expect("fixtures load");
        requests.push(created_by(
            root_deployment("antaeus", "antaeus"),
            testing::tenant("antaeus"),
        ));
        requests.extend(synthetic_objects(2));
        let mut params_objects: Vec<SourcedObject> = context_objects.clone();
        params_objects.extend(synthetic_objects(2));
        params_objects.push(SourcedObject::new(
            "p.yaml",
            testing::params(
                "antaeus",
                "ghcr.io/billing-platform/payment-provider",
                testing::DIGEST,
                "cluster",
            ),
        ));
        let params = namespace_params(&params_objects);
        let context = CheckContext {
            environment: Some("production".into()),
            user: None,
        };
        for request in &requests {
            let mut one = params_objects.clone();
            one.push(request.clone());
            let report = bundle.check(&context, &one, &exemptions).expect("valid");
            let file = request.file.display().to_string();
            let mut offline: Vec<String> = report
                .violations
                .iter()
                .filter(|v| {
                    v.file == file && v.name == crate::bundle::Meta::of(request.subject()).name
                })
                .map(|v| v.rule.clone())
                .collect();
            let namespace = request.subject()["metadata"]["namespace"]
                .as_str()
                .unwrap_or("");
            let mut in_cluster: Vec<String> = policies
                .iter()
                .filter_map(|(policy, binding)| {
                    let failed =
                        evaluate_policy(policy, binding, request, params.get(namespace).copied())?;
                    let rule = policy.metadata.name.as_deref()?.strip_prefix(NAME_PREFIX)?;
                    Some(std::iter::repeat_n(rule.to_owned(), failed.len()))
                })
                .flatten()
                .collect();
            offline.sort();
            in_cluster.sort();
            assert_eq!(offline, in_cluster, "{file}");
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
}
