//! Requests that change or delete live objects: who may change what.

use super::*;

#[test]
fn a_developer_may_scale_and_restart_but_not_change_the_image() {
    let objects = synthetic_objects(1);
    let live = live(&objects, "Deployment");
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
    let namespace = live(&objects, "Namespace");
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
            old_object: Some(live(&objects, "ResourceQuota")),
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
