//! A service's tenant, applied by the platform: its Namespace, the account Flux impersonates for
//! it (and the one ClusterRole all those accounts share), the owning team's developer RBAC, the
//! platform settings the admission policies read, and the service's own sync.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::layout::artifact;
use super::services::ServiceCtx;
use super::sources;
use super::{DEVELOPER_ROLE, TENANT_RECONCILER, TENANT_ROLE, labels, service_timeout_minutes};
use crate::Error;
use crate::flux::{Kustomization, KustomizationSpec, SourceRef};
use crate::meta;
use crate::spec::{self, Spec, rules};
use crate::tree::Object;

/// The service's namespace, with its Pod Security level (it lands in its team's namespaces
/// directory).
pub(super) fn namespace(spec: &Spec, service: &spec::Service) -> Namespace {
    let mut labels = labels(spec, service);
    // Pod Security Admission as a backstop to the policy bundle: `restricted` unless the service
    // is exempt from running as non-root (the stock Antaeus image), then `baseline`.
    let level = if service.is_exempt(rules::RUN_AS_NON_ROOT) {
        "baseline"
    } else {
        "restricted"
    };
    labels.insert("pod-security.kubernetes.io/enforce".into(), level.into());
    labels.insert(
        "pod-security.kubernetes.io/warn".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: meta::object_meta(&service.name, None, labels),
        ..Default::default()
    }
}

/// The account Flux impersonates for the service, and its rights.
pub(super) fn flux_tenant(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let sa = ServiceAccount {
        metadata: ctx.metadata(TENANT_RECONCILER),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    // Not flux2-multi-tenancy's namespaced cluster-admin (that account could read every Secret,
    // bind anyone to admin and relabel its Namespace): only what the service's manifests are.
    let binding = RoleBinding {
        metadata: ctx.metadata(TENANT_RECONCILER),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: TENANT_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: TENANT_RECONCILER.into(),
            namespace: Some(ctx.service.name.clone()),
            ..Default::default()
        }]),
    };
    Ok(vec![Object::new(&sa)?, Object::new(&binding)?])
}

/// What a tenant's Flux account may do in its namespace: apply, prune and watch the kinds of
/// `flux/apps/<service>/` (what [`super::services::FILES`] puts there; a test keeps the two in
/// step), and read the ReplicaSets and Pods its Deployments' health checks look at. No Secrets,
/// no RBAC, no Namespace, no quota, no NetworkPolicy, no Flux objects, no tokens.
pub const TENANT_KINDS: &[(&str, &[&str])] = &[
    ("", &["serviceaccounts", "services", "configmaps"]),
    ("apps", &["deployments"]),
    ("policy", &["poddisruptionbudgets"]),
];

/// The ClusterRole every tenant account is bound to in its own namespace (through a RoleBinding,
/// so its rights stop there). It lands in the infrastructure layer, before any tenant.
pub(super) fn tenant_role(spec: &Spec) -> ClusterRole {
    let platform = &spec.platform;
    let manage = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let mut rules: Vec<PolicyRule> = TENANT_KINDS
        .iter()
        .map(|(group, resources)| rule(group, resources, &manage))
        .collect();
    rules.push(rule("apps", &["replicasets"], &["get", "list", "watch"]));
    rules.push(rule("", &["pods"], &["get", "list", "watch"]));
    ClusterRole {
        metadata: meta::object_meta(
            TENANT_ROLE,
            None,
            meta::labels(&platform.name, TENANT_ROLE, &platform.owner),
        ),
        rules: Some(rules),
        ..Default::default()
    }
}

/// The namespace's platform settings: what the admission policies with `params` read (see the
/// header of `policies/rules.yaml`), written by the platform only.
pub(super) fn platform_settings(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let (spec, service, env) = (ctx.spec, ctx.service, ctx.env);
    let digests = service
        .environments
        .get(env)
        .and_then(|o| o.digest.clone())
        .unwrap_or_default();
    let expose = match service.expose {
        spec::Expose::Cluster => "cluster",
        spec::Expose::LoadBalancer => "load-balancer",
    };
    let data = BTreeMap::from([
        ("serviceAccount".to_owned(), service.name.clone()),
        ("reconciler".to_owned(), TENANT_RECONCILER.to_owned()),
        (
            "imageRepository".to_owned(),
            format!("{}/{}", spec.platform.registry, service.image),
        ),
        ("imageDigests".to_owned(), digests),
        ("secrets".to_owned(), service.declared_secrets().join(",")),
        (
            "maxReplicas".to_owned(),
            service.replicas_ceiling().to_string(),
        ),
        ("expose".to_owned(), expose.to_owned()),
        (
            "bindableRoles".to_owned(),
            format!("Role/{DEVELOPER_ROLE},ClusterRole/{TENANT_ROLE}"),
        ),
    ]);
    Ok(vec![Object::new(&ConfigMap {
        metadata: ctx.metadata(policies::PARAMS_CONFIG_MAP),
        data: Some(data),
        ..Default::default()
    })?])
}

pub(super) fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    }
}

/// The owning team may roll out and inspect this service, and nothing else.
pub(super) fn developer_rbac(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let (spec, service) = (ctx.spec, ctx.service);
    let read = ["get", "list", "watch"];
    let mut rules = vec![
        rule(
            "apps",
            &["deployments"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule("apps", &["deployments/scale"], &["get", "patch", "update"]),
        rule("apps", &["replicasets"], &read),
        rule("", &["pods", "services", "endpoints", "events"], &read),
        rule("", &["pods/log"], &["get"]),
        rule("events.k8s.io", &["events"], &read),
    ];
    if service.exec {
        // `create` for the SPDY path, `get` for the WebSocket upgrade kubectl ≥ 1.30 uses.
        rules.push(rule("", &["pods/exec"], &["create", "get"]));
    }
    let role = Role {
        metadata: ctx.metadata(DEVELOPER_ROLE),
        rules: Some(rules),
    };
    let team = spec.team(&service.team).ok_or_else(|| {
        Error::Reference(format!(
            "service `{}` names team `{}`, which is not declared",
            service.name, service.team
        ))
    })?;
    let subjects = team
        .groups
        .iter()
        .map(|g| ("Group", g))
        .chain(team.users.iter().map(|u| ("User", u)))
        .map(|(kind, name)| Subject {
            kind: kind.into(),
            name: name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        })
        .collect();
    let binding = RoleBinding {
        metadata: ctx.metadata(DEVELOPER_ROLE),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: DEVELOPER_ROLE.into(),
        },
        subjects: Some(subjects),
    };
    Ok(vec![Object::new(&role)?, Object::new(&binding)?])
}

/// The service's own source and Kustomization, in its namespace, applied as its tenant account.
///
/// The source is the service's OCI artifact (its app directory, pushed by `cargo xtask publish`)
/// pinned by digest, not the git repository: a git source clones the whole repository for every
/// tenant on every commit (at 1,000 services 2.2 MB and ~1.6 s of source-controller CPU a clone),
/// while a pinned artifact costs nothing until a commit pins another digest, which happens only
/// when the service's own files change. The pin keeps git the one authority on what runs: a push
/// to the registry changes nothing the tree does not name.
pub(super) fn sync(ctx: &ServiceCtx<'_>) -> Result<Vec<Object>, Error> {
    let (spec, service) = (ctx.spec, ctx.service);
    let artifact = artifact(spec, service, ctx.env);
    let digest = ctx.app_digest.clone().ok_or_else(|| {
        Error::Tree(format!(
            "the sync of {} is rendered before its app directory {}: its artifact has no digest yet",
            service.name, artifact.dir
        ))
    })?;
    let source = sources::artifact_source(ctx.metadata(&service.name), &artifact, digest);
    let kustomization = Kustomization::with_metadata(
        ctx.metadata(&service.name),
        KustomizationSpec {
            interval: "10m".into(),
            retry_interval: Some("1m".into()),
            timeout: format!("{}m", service_timeout_minutes(service)),
            path: "./".into(),
            prune: true,
            wait: true,
            source_ref: SourceRef {
                kind: "OCIRepository".into(),
                name: service.name.clone(),
            },
            depends_on: Vec::new(),
            service_account_name: TENANT_RECONCILER.into(),
            target_namespace: Some(service.name.clone()),
        },
    );
    Ok(vec![Object::new(&source)?, Object::new(&kustomization)?])
}

#[cfg(test)]
mod tests {
    use crate::testing::{self, find};

    #[test]
    fn the_developer_role_cannot_create_workloads_read_secrets_or_exec() {
        let tree = testing::tree();
        let role = find(tree, "Role", "antaeus", "developer", "production");
        for rule in role["rules"].as_array().expect("rules") {
            let verbs: Vec<_> = rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            let resources: Vec<_> = rule["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            assert!(
                !verbs.contains(&"create") && !verbs.contains(&"delete") && !verbs.contains(&"*"),
                "{rule}"
            );
            assert!(
                !resources.contains(&"secrets") && !resources.contains(&"pods/exec"),
                "{rule}"
            );
        }
    }

    #[test]
    fn exec_is_granted_only_when_the_spec_says_so() {
        let mut spec = testing::spec().clone();
        spec.services[0].exec = true;
        let tree = &crate::render(&spec).expect("renders");
        let role = find(
            tree,
            "Role",
            &spec.services[0].name,
            "developer",
            "production",
        );
        let exec = role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["resources"][0] == "pods/exec");
        assert_eq!(
            exec.expect("exec rule")["verbs"],
            serde_json::json!(["create", "get"])
        );
        let other = find(
            tree,
            "Role",
            &spec.services[1].name,
            "developer",
            "production",
        );
        assert!(!other.to_string().contains("pods/exec"));
    }

    #[test]
    fn without_an_artifacts_section_the_repository_is_below_the_registry() {
        let mut spec = testing::spec().clone();
        spec.platform.artifacts = None;
        spec.platform.registry = "registry.example.com/org".into();
        let antaeus = spec.service("antaeus").expect("declared");
        let artifact = crate::render::artifact(&spec, antaeus, "staging");
        assert_eq!(
            artifact.url(),
            "oci://registry.example.com/org/manifests/antaeus"
        );
        assert_eq!(
            artifact.pinned_in,
            "flux/tenants/staging/invoicing/antaeus/sync.yaml"
        );
        let [namespaces, tenants] = crate::render::team_artifacts(&spec, "invoicing", "staging");
        assert_eq!(
            namespaces.url(),
            "oci://registry.example.com/org/manifests/teams/invoicing/namespaces"
        );
        assert_eq!(tenants.dir, "flux/tenants/staging/invoicing");
        assert_eq!(
            tenants.pinned_in,
            crate::render::layout::team_file("staging", "invoicing")
        );
        assert_eq!(artifact.dir, "flux/apps/antaeus/staging");
    }

    #[test]
    fn a_hand_built_spec_with_a_dangling_reference_is_an_error_not_a_panic() {
        let mut spec = testing::spec().clone();
        spec.services[0].team = "nobody".into();
        let err = crate::render(&spec).expect_err("team `nobody` is not declared");
        assert_eq!(
            err.to_string(),
            "the spec refers to something it does not declare: service `antaeus` names team `nobody`, which is not declared"
        );
    }
}
