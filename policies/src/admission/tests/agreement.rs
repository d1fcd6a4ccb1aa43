//! The generated policies evaluated the way the API server does, from the policy and binding
//! objects alone, against the offline check: both enforcers must agree on every fixture.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::bundle::{namespace_params, request_parts};
use crate::evaluate::Failures;
use crate::testing::{self, synthetic_objects};
use crate::{Admission, CheckContext, SourcedObject, UserInfo, load_manifests};

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
    let parts = request_parts(&request.borrowed(), &checker);
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
    let request_json = parts.to_json();
    let root = evaluate::object_context(
        &env,
        Some(&request.object),
        request.admission.old_object.as_ref(),
        Some(&request_json),
        params,
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
    let borrowed: Vec<_> = params_objects.iter().map(SourcedObject::borrowed).collect();
    let params = namespace_params(&borrowed);
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
            .filter(|v| v.file == file && v.name == crate::bundle::Meta::of(request.subject()).name)
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
