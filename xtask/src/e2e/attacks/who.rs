//! Who sends an attack: a developer of the team, a tenant's Flux account or the admin, each as
//! `kubectl --as/--as-group` impersonates it, found from the tree's RoleBindings and Kustomizations.

use xshell::Shell;

use crate::e2e::cluster::Cluster;
use crate::e2e::tree::{Tree, str_at};

/// Who sends a request: impersonated by the admin, as `kubectl --as/--as-group` does.
#[derive(Clone)]
pub struct Who {
    pub label: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl Who {
    /// The cluster admin itself (no impersonation): the platform.
    pub(in crate::e2e) fn admin() -> Who {
        Who {
            label: "admin".to_owned(),
            user: String::new(),
            groups: Vec::new(),
        }
    }

    fn args(&self) -> Vec<String> {
        if self.user.is_empty() {
            return Vec::new();
        }
        let mut args = vec![format!("--as={}", self.user)];
        args.extend(self.groups.iter().map(|g| format!("--as-group={g}")));
        args
    }
}

/// `kubectl ARGS --as …`: `Ok(stdout)` if the API server admitted it, `Err(stderr)` if not.
pub(super) fn kubectl_as(
    sh: &Shell,
    cluster: &Cluster,
    who: &Who,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Result<String, String>> {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(who.args());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    cluster.kubectl_result(sh, &all, stdin)
}

/// The first Group the tree's developer RoleBinding in `namespace` binds.
pub(super) fn developer_of(tree: &Tree, namespace: &str) -> anyhow::Result<Who> {
    let group = tree
        .of_kind("RoleBinding")
        .into_iter()
        .filter(|b| {
            str_at(b, "/metadata/namespace") == namespace && str_at(b, "/roleRef/kind") == "Role"
        })
        .flat_map(|b| b["subjects"].as_array().cloned().unwrap_or_default())
        .find(|s| s["kind"] == "Group")
        .map(|s| str_at(&s, "/name").to_owned())
        .ok_or_else(|| anyhow::anyhow!("the tree binds no developer Group in {namespace}"))?;
    Ok(Who {
        label: format!("developer ({group})"),
        user: format!("e2e-developer@{namespace}"),
        groups: vec![group, "system:authenticated".to_owned()],
    })
}

/// The account the tree's Kustomization in `namespace` applies as.
pub(super) fn tenant_of(tree: &Tree, namespace: &str) -> anyhow::Result<Who> {
    let account = tree
        .kustomizations
        .iter()
        .find(|k| k.namespace == namespace)
        .and_then(|k| k.service_account.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("the tree has no Kustomization with an account in {namespace}")
        })?;
    let user = format!("system:serviceaccount:{namespace}:{account}");
    Ok(Who {
        label: format!("tenant {user}"),
        user,
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
    })
}
