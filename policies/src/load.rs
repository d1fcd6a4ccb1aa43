//! Reading manifests: YAML files, plain directories, and kustomize directories (built by the
//! caller's kustomize: this library does not shell out), and `AdmissionReview` documents.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Admission, Error, Operation, UserInfo};

/// A Kubernetes object, where it came from (for reports), and how it reaches the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedObject {
    /// The file the object was read from; for a kustomize directory, its kustomization file.
    pub file: PathBuf,
    /// The object; `null` for a `DELETE`, whose object is `admission.old_object`.
    pub object: serde_json::Value,
    /// A `CREATE` by the check's user unless said otherwise.
    pub admission: Admission,
}

impl SourcedObject {
    /// `object` from `file`, created by the check's user.
    pub fn new(file: impl Into<PathBuf>, object: serde_json::Value) -> SourcedObject {
        SourcedObject {
            file: file.into(),
            object,
            admission: Admission::default(),
        }
    }

    /// The object the request is about: the object, or for a `DELETE` the old one.
    pub fn subject(&self) -> &serde_json::Value {
        self.borrowed().subject()
    }

    /// The same object, borrowed.
    pub fn borrowed(&self) -> SourcedRef<'_> {
        SourcedRef {
            file: &self.file,
            object: &self.object,
            admission: &self.admission,
        }
    }
}

/// A [`SourcedObject`] whose parts live elsewhere: what [`crate::Bundle::check_borrowed`] judges,
/// so a caller that already holds the objects (a rendered tree) checks them without a copy.
#[derive(Debug, Clone, Copy)]
pub struct SourcedRef<'a> {
    /// The file the object was read from.
    pub file: &'a Path,
    /// The object; `null` for a `DELETE`, whose object is `admission.old_object`.
    pub object: &'a serde_json::Value,
    /// The request that carries it.
    pub admission: &'a Admission,
}

impl<'a> SourcedRef<'a> {
    /// The object the request is about: the object, or for a `DELETE` the old one.
    pub fn subject(&self) -> &'a serde_json::Value {
        match (self.object, &self.admission.old_object) {
            (serde_json::Value::Null, Some(old)) => old,
            (object, _) => object,
        }
    }
}

/// Builds a kustomize directory into multi-document YAML, as Flux's kustomize-controller would;
/// the CLI passes `kubectl kustomize`. The error is a message naming what failed.
pub type Kustomize<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Loads every object under `path`: a YAML file (any number of documents), a directory with a
/// kustomization file (built with `kustomize`, as Flux would), or any other directory
/// (walked in name order for `*.yaml`/`*.yml`, building the kustomize directories inside it
/// instead of descending into them). `List` objects are flattened into their items.
pub fn load_manifests(path: &Path, kustomize: Kustomize) -> Result<Vec<SourcedObject>, Error> {
    let mut objects = Vec::new();
    load_into(path, kustomize, &mut objects)?;
    Ok(objects)
}

fn load_into(
    path: &Path,
    kustomize: Kustomize,
    objects: &mut Vec<SourcedObject>,
) -> Result<(), Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_dir() {
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        return parse_documents(path, &text, objects);
    }
    if let Some(kustomization) = KUSTOMIZATION_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|f| f.is_file())
    {
        let built = kustomize(path).map_err(|message| Error::Kustomize {
            dir: path.to_owned(),
            message,
        })?;
        return parse_documents(&kustomization, &built, objects);
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        let is_yaml = entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if entry.is_dir() || is_yaml {
            load_into(&entry, kustomize, objects)?;
        }
    }
    Ok(())
}

/// Parses multi-document YAML; empty documents are skipped, `List` kinds flattened.
pub(crate) fn parse_documents(
    path: &Path,
    text: &str,
    objects: &mut Vec<SourcedObject>,
) -> Result<(), Error> {
    for (document, deserializer) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(deserializer).map_err(|source| Error::Yaml {
            path: path.to_owned(),
            document,
            source,
        })?;
        let not_an_object = |reason: &str| Error::NotAnObject {
            path: path.to_owned(),
            document,
            reason: reason.to_owned(),
        };
        match &value {
            serde_json::Value::Null => continue,
            serde_json::Value::Object(map) => {
                let kind = map.get("kind").and_then(|k| k.as_str());
                let api_version = map.get("apiVersion").and_then(|v| v.as_str());
                if api_version.is_none() || kind.is_none() {
                    return Err(not_an_object("has no apiVersion or kind"));
                }
                if kind == Some("AdmissionReview")
                    && api_version.is_some_and(|v| v.starts_with("admission.k8s.io/"))
                {
                    objects.push(admission_review(path, document, &value)?);
                    continue;
                }
                // `v1/List`, `PodList`, …: a kind ending in List that carries `items`. A custom
                // kind that merely ends in "List" has no items array and stays an object.
                let items = map.get("items").and_then(|i| i.as_array());
                if let (true, Some(items)) = (kind.is_some_and(|k| k.ends_with("List")), items) {
                    objects.extend(
                        items
                            .iter()
                            .map(|item| SourcedObject::new(path, item.clone())),
                    );
                } else {
                    objects.push(SourcedObject::new(path, value));
                }
            }
            _ => return Err(not_an_object("is not a mapping (a Kubernetes object)")),
        }
    }
    Ok(())
}

/// The request of an `AdmissionReview` document (`admission.k8s.io/v1`): what a webhook would be
/// sent, so a check can judge an update or a delete by a given user, not only a creation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    #[serde(default)]
    operation: Operation,
    #[serde(default)]
    user_info: Option<UserInfo>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    resource: Option<ReviewResource>,
    #[serde(default)]
    object: serde_json::Value,
    #[serde(default)]
    old_object: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ReviewResource {
    #[serde(default)]
    group: String,
    resource: String,
}

fn admission_review(
    path: &Path,
    document: usize,
    review: &serde_json::Value,
) -> Result<SourcedObject, Error> {
    let invalid = |reason: String| Error::NotAnObject {
        path: path.to_owned(),
        document,
        reason,
    };
    let request: ReviewRequest =
        serde_json::from_value(review["request"].clone()).map_err(|e| {
            invalid(format!(
                "is an AdmissionReview whose request is invalid: {e}"
            ))
        })?;
    let old_object = request.old_object.filter(|o| !o.is_null());
    let needs = match request.operation {
        Operation::Delete if old_object.is_none() => Some("a DELETE needs request.oldObject"),
        Operation::Update if old_object.is_none() => Some("an UPDATE needs request.oldObject"),
        Operation::Create | Operation::Update if !request.object.is_object() => {
            Some("request.object must be a Kubernetes object")
        }
        _ => None,
    };
    if let Some(needs) = needs {
        return Err(invalid(format!("is an AdmissionReview: {needs}")));
    }
    Ok(SourcedObject {
        file: path.to_owned(),
        object: request.object,
        admission: Admission {
            operation: request.operation,
            user: request.user_info,
            sub_resource: request.sub_resource.filter(|s| !s.is_empty()),
            resource: request.resource.map(|r| (r.group, r.resource)),
            old_object,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_kustomize(dir: &Path) -> Result<String, String> {
        Err(format!("no kustomize in this test ({})", dir.display()))
    }

    #[test]
    fn an_admission_review_becomes_a_request_by_its_user_with_the_old_object() {
        let text = r#"
apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  operation: UPDATE
  subResource: scale
  resource: {group: apps, version: v1, resource: deployments}
  userInfo: {username: alice, groups: ["billing:payments-developers"]}
  object: {apiVersion: autoscaling/v1, kind: Scale, metadata: {name: a, namespace: n}, spec: {replicas: 9}}
  oldObject: {apiVersion: autoscaling/v1, kind: Scale, metadata: {name: a, namespace: n}, spec: {replicas: 2}}
"#;
        let mut objects = Vec::new();
        parse_documents(Path::new("r.yaml"), text, &mut objects).expect("a valid review");
        let admission = &objects[0].admission;
        assert_eq!(admission.operation, Operation::Update);
        assert_eq!(
            admission.user.as_ref().map(|u| u.username.as_str()),
            Some("alice")
        );
        assert_eq!(admission.sub_resource.as_deref(), Some("scale"));
        assert_eq!(
            admission.resource,
            Some(("apps".to_owned(), "deployments".to_owned()))
        );
        assert_eq!(objects[0].object["spec"]["replicas"], 9);
        assert_eq!(
            admission
                .old_object
                .as_ref()
                .map(|o| o["spec"]["replicas"].clone()),
            Some(2.into())
        );
    }

    #[test]
    fn a_delete_review_is_about_its_old_object() {
        let text = "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest:\n  operation: DELETE\n  oldObject: {apiVersion: v1, kind: Namespace, metadata: {name: shop}}\n";
        let mut objects = Vec::new();
        parse_documents(Path::new("d.yaml"), text, &mut objects).expect("a valid review");
        assert!(objects[0].object.is_null());
        assert_eq!(objects[0].subject()["kind"], "Namespace");
    }

    #[test]
    fn an_update_review_without_the_old_object_names_what_is_missing() {
        let text = "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest:\n  operation: UPDATE\n  object: {apiVersion: v1, kind: Service, metadata: {name: a}}\n";
        let err =
            parse_documents(Path::new("u.yaml"), text, &mut Vec::new()).expect_err("no oldObject");
        assert_eq!(
            err.to_string(),
            "u.yaml: document 0 is an AdmissionReview: an UPDATE needs request.oldObject"
        );
    }

    #[test]
    fn multi_document_yaml_yields_every_object_and_skips_empty_documents() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
        let mut objects = Vec::new();
        parse_documents(Path::new("x.yaml"), text, &mut objects).expect("valid yaml");
        let names: Vec<_> = objects
            .iter()
            .map(|o| o.object["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn lists_are_flattened() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n";
        let mut objects = Vec::new();
        parse_documents(Path::new("x.yaml"), text, &mut objects).expect("valid yaml");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].object["kind"], "Pod");
    }

    #[test]
    fn a_kind_ending_in_list_without_items_is_an_ordinary_object() {
        let text = "apiVersion: example.dev/v1\nkind: AccessList\nmetadata: {name: a}\n";
        let mut objects = Vec::new();
        parse_documents(Path::new("x.yaml"), text, &mut objects).expect("valid yaml");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].object["kind"], "AccessList");
    }

    #[test]
    fn errors_name_the_file_and_the_document() {
        let text = "apiVersion: v1\nkind: Service\n---\n- not\n- an object\n";
        let mut objects = Vec::new();
        let err = parse_documents(Path::new("bad.yaml"), text, &mut objects).expect_err("a list");
        assert_eq!(
            err.to_string(),
            "bad.yaml: document 1 is not a mapping (a Kubernetes object)"
        );
        let err = parse_documents(Path::new("bad.yaml"), "a: [", &mut objects).expect_err("broken");
        assert!(err.to_string().starts_with("bad.yaml: document 0"), "{err}");
    }

    #[test]
    fn a_document_without_kind_is_rejected() {
        let mut objects = Vec::new();
        let err = parse_documents(Path::new("k.yaml"), "apiVersion: v1\n", &mut objects)
            .expect_err("no kind");
        assert!(err.to_string().contains("no apiVersion or kind"), "{err}");
    }

    #[test]
    fn a_directory_with_a_kustomization_is_built_by_the_callers_kustomize() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop\nresources: [svc.yaml]\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {ports: [{port: 80}]}\n",
        )
        .expect("write");
        // A stray file kustomize does not list: it must not be read.
        std::fs::write(
            dir.path().join("stray.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
        )
        .expect("write");
        // The caller's kustomize is what builds it; here one that reads the single resource and
        // sets the namespace, the way `kubectl kustomize` would for this kustomization.
        let built = |dir: &Path| {
            let svc = std::fs::read_to_string(dir.join("svc.yaml")).map_err(|e| e.to_string())?;
            Ok(svc.replace(
                "metadata: {name: api}",
                "metadata: {name: api, namespace: shop}",
            ))
        };
        let objects = load_manifests(dir.path(), &built).expect("kustomize builds");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].object["metadata"]["namespace"], "shop");
        assert!(objects[0].file.ends_with("kustomization.yaml"));
    }

    #[test]
    fn a_kustomization_that_does_not_build_names_the_directory_and_the_cause() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [missing.yaml]\n",
        )
        .expect("write");
        let err = load_manifests(dir.path(), &no_kustomize).expect_err("missing resource");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot build the kustomize directory {}: no kustomize in this test ({})",
                dir.path().display(),
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_missing_path_is_a_read_error_naming_it() {
        let err = load_manifests(Path::new("/nonexistent/manifests"), &no_kustomize)
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/manifests"), "{err}");
    }
}
