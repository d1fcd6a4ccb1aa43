//! Objects as they are created: what each rule refuses, exemptions, broken objects.

use super::*;

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
    deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
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
    deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["image"] = other.into();
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
    deployment(&mut objects)["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        true.into();
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
