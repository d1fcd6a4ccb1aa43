//! A service's tenant: the account Flux impersonates, the developer RBAC, and its own sync.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{DEVELOPER_ROLE, TENANT_RECONCILER, app_dir, labels, service_timeout_minutes};
use crate::Error;
use crate::flux::{
    GitRef, GitRepository, GitRepositorySpec, Kustomization, KustomizationSpec, SourceRef,
};
use crate::meta;
use crate::spec::{self, Spec};

pub(super) fn tenant(spec: &Spec, service: &spec::Service) -> (ServiceAccount, RoleBinding) {
    let ns = Some(service.name.as_str());
    let sa = ServiceAccount {
        metadata: meta::object_meta(TENANT_RECONCILER, ns, labels(spec, service)),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    // flux2-multi-tenancy: cluster-admin, but through a RoleBinding, so only in this namespace.
    let binding = RoleBinding {
        metadata: meta::object_meta(TENANT_RECONCILER, ns, labels(spec, service)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: TENANT_RECONCILER.into(),
            namespace: Some(service.name.clone()),
            ..Default::default()
        }]),
    };
    (sa, binding)
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
pub(super) fn developer_rbac(
    spec: &Spec,
    service: &spec::Service,
) -> Result<(Role, RoleBinding), Error> {
    let ns = Some(service.name.as_str());
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
        metadata: meta::object_meta(DEVELOPER_ROLE, ns, labels(spec, service)),
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
        metadata: meta::object_meta(DEVELOPER_ROLE, ns, labels(spec, service)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: DEVELOPER_ROLE.into(),
        },
        subjects: Some(subjects),
    };
    Ok((role, binding))
}

/// The service's own source and Kustomization, in its namespace, applied as its tenant account.
pub(super) fn service_sync(
    spec: &Spec,
    service: &spec::Service,
    env: &str,
) -> (GitRepository, Kustomization) {
    let ns = Some(service.name.as_str());
    let app = app_dir(&service.name, env);
    let repo = GitRepository::new(
        meta::object_meta(&service.name, ns, labels(spec, service)),
        GitRepositorySpec {
            interval: "1m".into(),
            url: spec.platform.git.url.clone(),
            reference: GitRef {
                branch: Some(spec.platform.git.branch.clone()),
            },
            // The artifact holds this service's manifests only, nothing else of the repository.
            ignore: Some(only_directory(&app)),
            timeout: None,
        },
    );
    let kustomization = Kustomization::new(
        meta::object_meta(&service.name, ns, labels(spec, service)),
        KustomizationSpec {
            interval: "10m".into(),
            retry_interval: Some("1m".into()),
            timeout: format!("{}m", service_timeout_minutes(service)),
            path: format!("./{app}"),
            prune: true,
            wait: true,
            source_ref: SourceRef {
                kind: "GitRepository".into(),
                name: service.name.clone(),
            },
            depends_on: Vec::new(),
            service_account_name: TENANT_RECONCILER.into(),
            target_namespace: Some(service.name.clone()),
        },
    );
    (repo, kustomization)
}

/// `.sourceignore` patterns that keep `dir` and drop everything else. A gitignore pattern cannot
/// re-include a file whose parent directory is excluded, so each level is re-included in turn.
///
/// `flux/apps/x` → `/*`, `!/flux/`, `/flux/*`, `!/flux/apps/`, `/flux/apps/*`, `!/flux/apps/x/`.
pub(super) fn only_directory(dir: &str) -> String {
    let mut out = String::from("/*\n");
    let mut prefix = String::new();
    let parts: Vec<&str> = dir.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        out.push_str(&format!("!{prefix}/\n"));
        if i + 1 < parts.len() {
            out.push_str(&format!("{prefix}/*\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_source_keeps_only_its_own_directory_level_by_level() {
        assert_eq!(
            only_directory("flux/apps/antaeus/production"),
            "/*\n!/flux/\n/flux/*\n!/flux/apps/\n/flux/apps/*\n!/flux/apps/antaeus/\n/flux/apps/antaeus/*\n!/flux/apps/antaeus/production/\n"
        );
    }
}
