//! Reading manifests: YAML files, plain directories, and kustomize directories (built first).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// A Kubernetes object and where it came from, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedObject {
    /// The file the object was read from; for a kustomize directory, its kustomization file.
    pub file: PathBuf,
    pub object: serde_json::Value,
}

const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Loads every object under `path`: a YAML file (any number of documents), a directory with a
/// kustomization file (built with `kubectl kustomize`, as Flux would), or any other directory
/// (walked in name order for `*.yaml`/`*.yml`, building the kustomize directories inside it
/// instead of descending into them). `List` objects are flattened into their items.
pub fn load_manifests(path: &Path) -> Result<Vec<SourcedObject>, Error> {
    let mut objects = Vec::new();
    load_into(path, &mut objects)?;
    Ok(objects)
}

fn load_into(path: &Path, objects: &mut Vec<SourcedObject>) -> Result<(), Error> {
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
        let built = kustomize(path)?;
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
            load_into(&entry, objects)?;
        }
    }
    Ok(())
}

/// Builds a kustomize directory the way Flux's kustomize-controller does.
fn kustomize(dir: &Path) -> Result<String, Error> {
    let shell = xshell::Shell::new().map_err(|source| Error::Kustomize {
        dir: dir.to_owned(),
        source,
    })?;
    xshell::cmd!(shell, "kubectl kustomize {dir}")
        .quiet()
        .read()
        .map_err(|source| Error::Kustomize {
            dir: dir.to_owned(),
            source,
        })
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
                if map.get("apiVersion").and_then(|v| v.as_str()).is_none() || kind.is_none() {
                    return Err(not_an_object("has no apiVersion or kind"));
                }
                // `v1/List`, `PodList`, …: a kind ending in List that carries `items`. A custom
                // kind that merely ends in "List" has no items array and stays an object.
                let items = map.get("items").and_then(|i| i.as_array());
                if let (true, Some(items)) = (kind.is_some_and(|k| k.ends_with("List")), items) {
                    objects.extend(items.iter().map(|item| SourcedObject {
                        file: path.to_owned(),
                        object: item.clone(),
                    }));
                } else {
                    objects.push(SourcedObject {
                        file: path.to_owned(),
                        object: value,
                    });
                }
            }
            _ => return Err(not_an_object("is not a mapping (a Kubernetes object)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_directory_with_a_kustomization_is_built_with_kubectl() {
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
        let objects = load_manifests(dir.path()).expect("kustomize builds");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].object["metadata"]["namespace"], "shop");
        assert!(objects[0].file.ends_with("kustomization.yaml"));
    }

    #[test]
    fn a_broken_kustomization_reports_the_directory_and_the_command() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [missing.yaml]\n",
        )
        .expect("write");
        let err = load_manifests(dir.path()).expect_err("missing resource");
        assert!(err.to_string().contains("kubectl kustomize"), "{err}");
    }

    #[test]
    fn a_missing_path_is_a_read_error_naming_it() {
        let err = load_manifests(Path::new("/nonexistent/manifests")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/manifests"), "{err}");
    }
}
