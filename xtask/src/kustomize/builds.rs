//! How `verify` knows every directory Flux points at builds the way kustomize builds it, in
//! seconds at thousands of services.
//!
//! Every root's `kustomization.yaml` is derived by the [`Tree`] and lists only `resources`: the
//! files under the root and the roots nested in it. Once `verify` has found every file on disk
//! byte-for-byte equal to the rendered tree, what kustomize builds from a root is therefore known
//! without reading disk: the objects of every file under it, each id once. That in-process build
//! (the *model*) stands for every root, and the real `kubectl kustomize` runs on the first and the
//! last root of each *shape* (a layer at a depth: `flux/apps/*/*`, `flux/tenants/*/*`, …), whose
//! output must equal the model object for object: the proof that the model is kustomize's build
//! on every shape the generator emits. Roots holding a file that differs from the rendered tree
//! (a hand edit, a stale or stray file) are built with the real tool, and `--kustomize-all` runs
//! the real tool on every root, as `verify` did before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use infra::Tree;
use serde_json::Value;

/// What [`check`] found and did.
#[derive(Debug, Default)]
pub(crate) struct Builds {
    /// One entry per root that does not build, or whose real build differs from the model.
    pub problems: Vec<String>,
    /// Roots the model stands for (not built by kubectl).
    pub modelled: usize,
    /// Roots built with `kubectl kustomize`.
    pub real: Vec<String>,
}

/// An object's identity as kustomize keys its resources: group/version, kind, namespace, name.
type Id = (String, String, String, String);

fn id(object: &Value) -> Id {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["apiVersion"]),
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn show(id: &Id) -> String {
    let (api_version, kind, namespace, name) = id;
    if namespace.is_empty() {
        format!("{api_version} {kind}/{name}")
    } else {
        format!("{api_version} {kind}/{namespace}/{name}")
    }
}

/// The shape of a root: its layer and depth (`flux/apps/*/*`), which decides the generator code
/// that wrote its `kustomization.yaml` and files.
pub(crate) fn shape(root: &str) -> String {
    let mut parts = root.split('/');
    let mut shape: Vec<&str> = parts.by_ref().take(2).collect();
    shape.extend(parts.map(|_| "*"));
    shape.join("/")
}

/// The model's build of every root: the objects of every file under it, in path then document
/// order, by id. A duplicate id is the problem kustomize reports for it.
fn model(tree: &Tree) -> (BTreeMap<&str, BTreeMap<Id, &Value>>, Vec<String>) {
    let roots: BTreeSet<&str> = tree.roots().collect();
    let mut builds: BTreeMap<&str, BTreeMap<Id, &Value>> =
        roots.iter().map(|root| (*root, BTreeMap::new())).collect();
    // Where each id of a root came from, to name both files of a duplicate.
    let mut origin: BTreeMap<(&str, Id), &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for (file, object) in tree.objects() {
        let mut at = file;
        while let Some(cut) = at.rfind('/') {
            at = &at[..cut];
            let Some(root) = roots.get(at) else { continue };
            let key = id(object);
            if let Some(first) = origin.get(&(*root, key.clone())) {
                problems.push(format!(
                    "{root}: kustomize refuses the build: {} is in both {first} and {file}",
                    show(&key)
                ));
                continue;
            }
            origin.insert((*root, key.clone()), file);
            builds
                .get_mut(root)
                .expect("every root has a build")
                .insert(key, object);
        }
    }
    (builds, problems)
}

/// The roots the real tool builds: every root when `all`, else the first and last of each
/// shape, and every root holding one of the `differing` paths (files on disk that are not the
/// rendered tree's).
fn real_roots<'a>(tree: &'a Tree, differing: &[String], all: bool) -> BTreeSet<&'a str> {
    if all {
        return tree.roots().collect();
    }
    let mut by_shape: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for root in tree.roots() {
        by_shape.entry(shape(root)).or_default().push(root);
    }
    let mut real: BTreeSet<&str> = by_shape
        .values()
        .flat_map(|roots| [roots[0], roots[roots.len() - 1]])
        .collect();
    for path in differing {
        real.extend(tree.roots().filter(|root| {
            path.strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
        }));
    }
    real
}

/// Checks that every root of `tree` under `dir` builds as kustomize builds it. `differing` are
/// the paths `verify` found unlike the rendered tree; `all` builds every root with the real tool.
pub(crate) fn check(dir: &Path, tree: &Tree, differing: &[String], all: bool) -> Builds {
    let (builds, mut problems) = model(tree);
    let real: Vec<&str> = real_roots(tree, differing, all).into_iter().collect();
    let differs_here = |root: &str| {
        differing.iter().any(|path| {
            path.strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    let outcomes = parallel(&real, |root| {
        let built =
            super::build(&dir.join(root)).map_err(|problem| format!("{root}: {problem}"))?;
        // A root with a hand-edited file is judged by the real tool alone: the model is the
        // rendered tree, which that root is not.
        if differs_here(root) {
            return Ok(());
        }
        compare(root, &built, &builds[root])
    });
    problems.extend(outcomes.into_iter().filter_map(Result::err));
    Builds {
        problems,
        modelled: builds.len() - real.len(),
        real: real.into_iter().map(str::to_owned).collect(),
    }
}

/// `kubectl kustomize ROOT`'s output against the model: the same ids, each the same object.
fn compare(root: &str, built: &str, model: &BTreeMap<Id, &Value>) -> Result<(), String> {
    let mut real: BTreeMap<Id, Value> = BTreeMap::new();
    for document in serde_yaml_ng::Deserializer::from_str(built) {
        let object: Value = serde::Deserialize::deserialize(document).map_err(|e| {
            format!("{root}: `kubectl kustomize` printed YAML that does not parse: {e}")
        })?;
        if object.is_null() {
            continue;
        }
        real.insert(id(&object), object);
    }
    let mut differences = Vec::new();
    for (key, object) in model {
        match real.get(key) {
            None => differences.push(format!("{} is missing", show(key))),
            Some(built) if built != *object => {
                differences.push(format!("{} differs", show(key)));
            }
            Some(_) => {}
        }
    }
    for key in real.keys().filter(|key| !model.contains_key(*key)) {
        differences.push(format!("{} is extra", show(key)));
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{root}: `kubectl kustomize` builds something else than verify's in-process build ({}): the generator emits a shape the in-process build does not know; run `cargo xtask verify --kustomize-all` and report it",
        differences.join(", ")
    ))
}

/// `work` over `items` on every core, results in order.
fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let work = &work;
                scope.spawn(move || part.iter().map(work).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a kustomize worker does not panic"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_is_the_layer_and_the_depth() {
        assert_eq!(shape("flux/apps/antaeus/production"), "flux/apps/*/*");
        assert_eq!(shape("flux/clusters/staging"), "flux/clusters/*");
        assert_eq!(shape("flux"), "flux");
    }

    #[test]
    fn the_model_builds_every_root_from_the_files_under_it_nested_roots_included() {
        let tree = infra::testing::tree();
        let (builds, problems) = model(tree);
        assert_eq!(problems, Vec::<String>::new());
        let app = &builds["flux/apps/antaeus/production"];
        let kinds: BTreeSet<&str> = app.keys().map(|(_, kind, _, _)| kind.as_str()).collect();
        assert!(
            kinds.contains("Deployment") && kinds.contains("Service"),
            "{kinds:?}"
        );
        let total: usize = builds.values().map(BTreeMap::len).sum();
        assert!(
            total >= tree.objects().count(),
            "every object is in a build"
        );
    }

    #[test]
    fn every_committed_root_builds_with_kubectl_exactly_as_the_model_says() {
        crate::testing::require_kubectl();
        let tree = infra::testing::tree();
        let builds = check(&crate::project_root(), tree, &[], true);
        assert_eq!(builds.problems, Vec::<String>::new());
        assert_eq!(builds.real.len(), tree.roots().count());
        assert_eq!(builds.modelled, 0);
    }

    #[test]
    fn by_default_kubectl_builds_the_first_and_last_root_of_each_shape_and_the_model_the_rest() {
        crate::testing::require_kubectl();
        let tree = infra::testing::tree();
        let builds = check(&crate::project_root(), tree, &[], false);
        assert_eq!(builds.problems, Vec::<String>::new());
        let shapes: BTreeSet<String> = tree.roots().map(shape).collect();
        for shape_ in &shapes {
            let of_shape: Vec<&str> = tree.roots().filter(|r| &shape(r) == shape_).collect();
            assert!(builds.real.iter().any(|r| r == of_shape[0]), "{shape_}");
            assert!(
                builds
                    .real
                    .iter()
                    .any(|r| r == of_shape[of_shape.len() - 1])
            );
        }
        assert_eq!(builds.modelled + builds.real.len(), tree.roots().count());
    }

    /// A copy of the committed tree in a scratch directory, to edit.
    fn scratch_copy() -> tempfile::TempDir {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(crate::project_root().join("flux"))
            .arg(scratch.path())
            .status()
            .expect("cp runs");
        assert!(status.success());
        scratch
    }

    #[test]
    fn a_root_whose_real_build_differs_from_the_model_is_a_problem_naming_the_object() {
        crate::testing::require_kubectl();
        let tree = infra::testing::tree();
        let scratch = scratch_copy();
        // The model is the rendered tree; this copy's first app root is not (a changed replica
        // count verify's file check would report too): the comparison must catch it.
        let root = tree
            .roots()
            .find(|r| r.starts_with("flux/apps/"))
            .expect("an app root");
        let file = scratch.path().join(root).join("deployment.yaml");
        let text = std::fs::read_to_string(&file).expect("a deployment");
        std::fs::write(&file, text.replacen("replicas: ", "replicas: 1", 1)).expect("write");
        let builds = check(scratch.path(), tree, &[], false);
        assert_eq!(builds.problems.len(), 1, "{:?}", builds.problems);
        let problem = &builds.problems[0];
        assert!(
            problem.starts_with(&format!(
                "{root}: `kubectl kustomize` builds something else"
            )),
            "{problem}"
        );
        assert!(
            problem.contains("Deployment/") && problem.contains(" differs"),
            "{problem}"
        );
    }

    #[test]
    fn a_differing_file_sends_its_root_to_kubectl_which_names_what_does_not_build() {
        crate::testing::require_kubectl();
        let tree = infra::testing::tree();
        let scratch = scratch_copy();
        // A root in the middle of its shape: the model alone would stand for it.
        let apps: Vec<&str> = tree
            .roots()
            .filter(|r| r.starts_with("flux/apps/"))
            .collect();
        assert!(apps.len() >= 3, "{apps:?}");
        let root = apps[1];
        let file = format!("{root}/service.yaml");
        std::fs::write(scratch.path().join(&file), "kind: [not, an, object\n").expect("write");
        let quiet = check(scratch.path(), tree, &[], false);
        assert!(
            !quiet.real.iter().any(|r| r == root),
            "not sampled by default"
        );
        let builds = check(scratch.path(), tree, &[file], false);
        assert!(builds.real.iter().any(|r| r == root));
        assert_eq!(builds.problems.len(), 1, "{:?}", builds.problems);
        assert!(
            builds.problems[0].starts_with(&format!("{root}: `kubectl kustomize ")),
            "{}",
            builds.problems[0]
        );
    }

    #[test]
    fn a_duplicate_id_under_one_root_is_refused_naming_both_files() {
        let mut tree = Tree::new();
        tree.add_root("flux/a");
        let config_map = |name: &str| {
            infra::Object::new(&serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "demo"},
            }))
            .expect("serialises")
        };
        tree.add_objects("x", "flux/a/one.yaml", vec![config_map("same")])
            .expect("new path");
        tree.add_objects("x", "flux/a/sub/two.yaml", vec![config_map("same")])
            .expect("new path");
        let (_, problems) = model(&tree);
        assert_eq!(
            problems,
            [
                "flux/a: kustomize refuses the build: v1 ConfigMap/demo/same is in both flux/a/one.yaml and flux/a/sub/two.yaml"
            ]
        );
    }
}
