//! Metadata conventions: the labels every generated object carries and the selectors that match them.
//!
//! Selectors use only `app.kubernetes.io/name`, the stable subset: the other labels (team,
//! part-of) may change without a Deployment's immutable selector having to.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// The service (or platform component) an object belongs to.
pub const NAME: &str = "app.kubernetes.io/name";
/// The platform the object is part of.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Who writes the object: always this generator.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The team that owns the object.
pub const TEAM: &str = "billing-platform/team";
/// The policy rule an admission policy enforces (select policies by rule).
pub const RULE: &str = "billing-platform/rule";
/// The severity of an admission policy's rule (`error`, `warning`).
pub const SEVERITY: &str = "billing-platform/severity";
/// The annotation with what an admission policy's rule enforces and why.
pub const DESCRIPTION: &str = "billing-platform/description";
/// The annotation of an OCIRepository (and of its artifact's manifest) naming the tree directory
/// the artifact holds at its root: where `verify` resolves the paths of the Kustomizations that
/// read it, and what the e2e publishes for it.
pub const ARTIFACT_DIRECTORY: &str = "billing-platform/artifact-directory";
/// The `managed-by` value.
pub const GENERATOR: &str = "cargo-xtask-gen";
/// The label Kubernetes sets on every Namespace (since 1.22); namespace selectors use it.
pub const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// Labels for an object of `name`, owned by `team`, in `platform`.
///
/// ```
/// let labels = infra::meta::labels("billing", "antaeus", "invoicing");
/// assert_eq!(labels["app.kubernetes.io/name"], "antaeus");
/// assert_eq!(labels["app.kubernetes.io/part-of"], "billing");
/// assert_eq!(labels["app.kubernetes.io/managed-by"], "cargo-xtask-gen");
/// assert_eq!(labels["billing-platform/team"], "invoicing");
/// ```
pub fn labels(platform: &str, name: &str, team: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), name.to_owned()),
        (PART_OF.to_owned(), platform.to_owned()),
        (MANAGED_BY.to_owned(), GENERATOR.to_owned()),
        (TEAM.to_owned(), team.to_owned()),
    ])
}

/// The selector labels of a service's pods: the stable subset of [`labels`].
///
/// ```
/// let selector = infra::meta::selector_labels("antaeus");
/// assert_eq!(selector.len(), 1);
/// assert_eq!(selector["app.kubernetes.io/name"], "antaeus");
/// ```
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME.to_owned(), name.to_owned())])
}

/// A `matchLabels` selector for a service's pods.
pub fn pod_selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(name)),
        ..Default::default()
    }
}

/// A `matchLabels` selector for the namespace called `namespace`.
///
/// ```
/// let s = infra::meta::namespace_selector("payment-provider");
/// assert_eq!(s.match_labels.unwrap()["kubernetes.io/metadata.name"], "payment-provider");
/// ```
pub fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            NAMESPACE_NAME.to_owned(),
            namespace.to_owned(),
        )])),
        ..Default::default()
    }
}

/// Object metadata with a name, an optional namespace and labels.
///
/// ```
/// let meta = infra::meta::object_meta("developer", Some("antaeus"), infra::meta::labels("billing", "antaeus", "invoicing"));
/// assert_eq!(meta.namespace.as_deref(), Some("antaeus"));
/// assert!(meta.annotations.is_none());
/// ```
pub fn object_meta(
    name: &str,
    namespace: Option<&str>,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels),
        ..Default::default()
    }
}
