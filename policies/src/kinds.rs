//! The Kubernetes kinds rules may match, with what admission needs to know about each.

/// One kind a rule can name in `match`: its API group and version, the plural resource a
/// ValidatingAdmissionPolicy matches on, and whether its objects live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KindInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub resource: &'static str,
    pub namespaced: bool,
}

/// Admission matches resources, not kinds; this table is the translation. Adding a kind here is
/// all it takes for rules to be able to name it.
pub(crate) const KINDS: &[KindInfo] = &[
    kind("", "v1", "Pod", "pods", true),
    kind(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    kind("", "v1", "Service", "services", true),
    kind("", "v1", "ServiceAccount", "serviceaccounts", true),
    kind("", "v1", "ConfigMap", "configmaps", true),
    kind("", "v1", "Secret", "secrets", true),
    kind("", "v1", "ResourceQuota", "resourcequotas", true),
    kind("", "v1", "LimitRange", "limitranges", true),
    kind("", "v1", "Namespace", "namespaces", false),
    kind("apps", "v1", "Deployment", "deployments", true),
    kind("apps", "v1", "StatefulSet", "statefulsets", true),
    kind("apps", "v1", "DaemonSet", "daemonsets", true),
    kind("apps", "v1", "ReplicaSet", "replicasets", true),
    kind("batch", "v1", "Job", "jobs", true),
    kind("batch", "v1", "CronJob", "cronjobs", true),
    kind(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    kind("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    kind(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    kind("networking.k8s.io", "v1", "Ingress", "ingresses", true),
    kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
        true,
    ),
    kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "OCIRepository",
        "ocirepositories",
        true,
    ),
    kind("source.toolkit.fluxcd.io", "v1", "Bucket", "buckets", true),
    kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "HelmRepository",
        "helmrepositories",
        true,
    ),
    kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "HelmChart",
        "helmcharts",
        true,
    ),
    kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "ExternalArtifact",
        "externalartifacts",
        true,
    ),
    kind(
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
        true,
    ),
    kind(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
        true,
    ),
];
const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    resource: &'static str,
    namespaced: bool,
) -> KindInfo {
    KindInfo {
        group,
        version,
        kind,
        resource,
        namespaced,
    }
}

/// The table entry for a kind in a group, if rules may name it.
pub(crate) fn lookup(group: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// The table entry for a kind in any group (exemptions name kinds without groups).
pub(crate) fn lookup_kind(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Splits an `apiVersion` into group and version: `apps/v1` → (`apps`, `v1`), `v1` → (``, `v1`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_api_version_has_the_empty_group() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(
            split_api_version("rbac.authorization.k8s.io/v1"),
            ("rbac.authorization.k8s.io", "v1")
        );
    }

    #[test]
    fn kinds_are_found_only_in_their_own_group() {
        assert_eq!(
            lookup("apps", "Deployment").map(|k| k.resource),
            Some("deployments")
        );
        assert_eq!(lookup("", "Deployment"), None);
    }
}
