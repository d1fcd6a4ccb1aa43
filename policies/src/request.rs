//! The admission request a rule sees besides the object: who sends it, which operation, on which
//! subresource, and the object as it was before. Offline checks build the request the API server
//! would build, so rules on `request.userInfo` and `oldObject` mean the same in both enforcers.

use serde::{Deserialize, Serialize};

use crate::bundle::Meta;

/// What the request does to the object.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    #[default]
    Create,
    Update,
    Delete,
}

impl Operation {
    /// The name the API uses (`CREATE`, `UPDATE`, `DELETE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// The authenticated identity of a request, as `request.userInfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user authenticated by name and groups, as an identity provider would present them.
    pub fn user(username: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        groups.push("system:authenticated".to_owned());
        UserInfo {
            username: username.to_owned(),
            groups,
        }
    }

    /// A ServiceAccount with the groups the API server gives every ServiceAccount token.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// Who an offline check asks as when nothing says otherwise: an authenticated user with no
    /// special standing, so rules that trust only the platform judge the objects strictly.
    pub fn checker() -> UserInfo {
        UserInfo::user("system:policy-check", &[])
    }
}

/// How one object reaches the API server: a plain manifest is a `CREATE` by the check's user;
/// an `AdmissionReview` document (or a caller that knows who applies what) says more.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub operation: Operation,
    /// `None`: the user of the check ([`crate::CheckContext::user`]).
    pub user: Option<UserInfo>,
    /// e.g. `scale` for `deployments/scale`, `ephemeralcontainers` for `kubectl debug`.
    pub sub_resource: Option<String>,
    /// `(group, resource)` of the request when it is not the object's own kind (a `Scale`
    /// object sent to `deployments/scale` is a request on `apps` `deployments`).
    pub resource: Option<(String, String)>,
    /// The object before an `UPDATE` or `DELETE`.
    pub old_object: Option<serde_json::Value>,
}

impl Admission {
    /// A `CREATE` by `user`.
    pub fn create_as(user: UserInfo) -> Admission {
        Admission {
            user: Some(user),
            ..Admission::default()
        }
    }
}

/// `request.*` as the API server builds it for `object` (the object's own kind and name, or the
/// old object's for a `DELETE`).
pub(crate) struct RequestParts<'a> {
    /// The object's group, version, kind, namespace and name.
    pub object: Meta<'a>,
    pub resource_group: &'a str,
    pub resource: &'a str,
    pub sub_resource: &'a str,
    pub operation: Operation,
    pub user: &'a UserInfo,
}

impl RequestParts<'_> {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let Meta {
            group,
            version,
            kind,
            namespace,
            name,
        } = self.object;
        let resource = serde_json::json!({
            "group": self.resource_group, "version": version, "resource": self.resource,
        });
        let kind = serde_json::json!({"group": group, "version": version, "kind": kind});
        serde_json::json!({
            "uid": "offline",
            "kind": kind,
            "resource": resource,
            "subResource": self.sub_resource,
            "requestKind": kind,
            "requestResource": resource,
            "requestSubResource": self.sub_resource,
            "name": name,
            "namespace": namespace,
            "operation": self.operation.as_str(),
            "userInfo": {"username": self.user.username, "groups": self.user.groups},
            "dryRun": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_has_the_groups_the_api_server_gives_its_tokens() {
        let sa = UserInfo::service_account("shop", "flux-reconciler");
        assert_eq!(sa.username, "system:serviceaccount:shop:flux-reconciler");
        assert!(
            sa.groups
                .contains(&"system:serviceaccounts:shop".to_owned())
        );
        assert!(sa.groups.contains(&"system:authenticated".to_owned()));
    }

    #[test]
    fn operations_serialise_as_the_api_spells_them() {
        let ops: Vec<Operation> = serde_json::from_str(r#"["CREATE","UPDATE","DELETE"]"#)
            .expect("the API's spelling parses");
        assert_eq!(
            ops,
            [Operation::Create, Operation::Update, Operation::Delete]
        );
        assert_eq!(Operation::Update.as_str(), "UPDATE");
    }
}
