use super::*;
use k8s_openapi::api::core::v1::ConfigMap;

fn config_map(name: &str) -> Object {
    Object::new(&ConfigMap {
        metadata: crate::meta::object_meta(name, Some("demo"), Default::default()),
        ..Default::default()
    })
    .expect("a ConfigMap serialises")
}

#[test]
fn a_file_added_under_a_root_is_listed_by_its_kustomization() {
    let mut tree = Tree::new();
    tree.add_root("flux/infrastructure/production");
    tree.add_objects(
        "production",
        "flux/infrastructure/production/namespaces.yaml",
        vec![config_map("a")],
    )
    .expect("new path");
    tree.add_objects(
        "production",
        "flux/infrastructure/production/policies/rules.yaml",
        vec![config_map("b")],
    )
    .expect("new path");
    let files = tree.render().expect("renders");
    let kustomization = &files["flux/infrastructure/production/kustomization.yaml"];
    assert_eq!(
        kustomization,
        &format!(
            "{HEADER}\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- namespaces.yaml\n- policies/rules.yaml\n"
        )
    );
}

#[test]
fn a_nested_root_is_listed_as_a_directory_not_file_by_file() {
    let mut tree = Tree::new();
    tree.add_root("flux/a");
    tree.add_root("flux/a/b");
    tree.add_objects("x", "flux/a/b/one.yaml", vec![config_map("one")])
        .expect("new path");
    let files = tree.render().expect("renders");
    assert!(files["flux/a/kustomization.yaml"].ends_with("resources:\n- b\n"));
    assert!(files["flux/a/b/kustomization.yaml"].ends_with("resources:\n- one.yaml\n"));
}

#[test]
fn each_object_is_its_own_document_under_the_header() {
    let mut tree = Tree::new();
    tree.add_objects("x", "flux/two.yaml", vec![config_map("a"), config_map("b")])
        .expect("new path");
    let text = &tree.render().expect("renders")["flux/two.yaml"];
    assert!(
        text.starts_with(&format!("{HEADER}\n---\napiVersion: v1\nkind: ConfigMap\n")),
        "{text}"
    );
    assert_eq!(text.matches("\n---\n").count(), 2, "{text}");
}

#[test]
fn adding_the_same_path_twice_is_an_error() {
    let mut tree = Tree::new();
    tree.add_objects("x", "flux/a.yaml", vec![])
        .expect("new path");
    let err = tree
        .add_objects("x", "flux/a.yaml", vec![])
        .expect_err("duplicate");
    assert_eq!(
        err.to_string(),
        "cannot build the tree: `flux/a.yaml` is generated twice"
    );
}

#[test]
fn a_hand_written_kustomization_is_refused() {
    let mut tree = Tree::new();
    let err = tree
        .add_objects("x", "flux/a/kustomization.yaml", vec![])
        .expect_err("derived");
    assert!(
        err.to_string().contains("derived from the directory"),
        "{err}"
    );
}

#[test]
fn a_component_is_written_where_no_root_is_and_refused_where_one_is() {
    let mut tree = Tree::new();
    tree.add_root("flux/c");
    let component = crate::flux::KustomizeComponent::new(vec![]);
    tree.add_component("flux/c/lockdown", &component)
        .expect("not a root");
    let files = tree.render().expect("renders");
    assert!(files["flux/c/lockdown/kustomization.yaml"].contains("kind: Component"));
    // Not a resource of the root above it: only the install that lists it applies it.
    assert!(!files["flux/c/kustomization.yaml"].contains("lockdown"));
    let err = tree
        .add_component("flux/c", &component)
        .expect_err("a root");
    assert!(
        err.to_string().contains("directory Flux points at"),
        "{err}"
    );
}

#[test]
fn objects_are_reported_with_their_file_and_described_by_kind_namespace_name() {
    let mut tree = Tree::new();
    tree.add_objects("x", "flux/a.yaml", vec![config_map("a")])
        .expect("new path");
    let all: Vec<_> = tree
        .entries()
        .map(|e| (e.file, e.object.describe()))
        .collect();
    assert_eq!(all, [("flux/a.yaml", "ConfigMap/demo/a".to_owned())]);
}

#[test]
fn a_streaming_tree_hands_each_file_to_its_sink_and_keeps_paths_and_counts() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let sink = {
        let seen = seen.clone();
        Box::new(move |path: &str, text: &str| {
            seen.lock()
                .unwrap()
                .push((path.to_owned(), text.to_owned()));
            Ok(())
        })
    };
    let mut streaming = Tree::streaming(sink);
    let mut whole = Tree::new();
    for tree in [&mut streaming, &mut whole] {
        tree.add_root("flux/a");
        tree.add_objects(
            "x",
            "flux/a/one.yaml",
            vec![config_map("one"), config_map("two")],
        )
        .expect("new path");
        tree.add_text("CODEOWNERS", "* @a\n".into())
            .expect("new path");
    }
    let whole_files = whole.render().expect("renders");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (
                "flux/a/one.yaml".to_owned(),
                whole_files["flux/a/one.yaml"].clone()
            ),
            ("CODEOWNERS".to_owned(), "* @a\n".to_owned())
        ]
    );
    // What is left to write: the derived kustomization file, listing the streamed file.
    let rest = streaming.render().expect("renders");
    assert_eq!(
        rest.keys().collect::<Vec<_>>(),
        ["flux/a/kustomization.yaml"]
    );
    assert_eq!(
        rest["flux/a/kustomization.yaml"],
        whole_files["flux/a/kustomization.yaml"]
    );
    assert_eq!(streaming.entries().count(), 0);
    assert_eq!(streaming.kind_counts(), whole.kind_counts());
    assert_eq!(
        streaming.paths().collect::<BTreeSet<_>>(),
        whole_files.keys().cloned().collect::<BTreeSet<_>>()
    );
    // A duplicate is refused before it reaches the sink.
    assert!(
        streaming
            .add_objects("x", "flux/a/one.yaml", vec![])
            .is_err()
    );
}

#[test]
fn a_sink_error_names_the_file() {
    let mut tree = Tree::streaming(Box::new(|_, _| Err("disk full".into())));
    let err = tree
        .add_objects("x", "flux/a.yaml", vec![config_map("a")])
        .expect_err("the sink fails");
    assert_eq!(err.to_string(), "cannot write flux/a.yaml");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "disk full"
    );
}

#[test]
fn render_each_hands_over_the_files_of_render_in_its_order() {
    let tree = crate::testing::tree();
    let mut each = Vec::new();
    tree.render_each(|path, text| {
        each.push((path.to_owned(), text.to_owned()));
        Ok::<(), crate::Error>(())
    })
    .expect("renders");
    let whole: Vec<(String, String)> = tree.render().expect("renders").into_iter().collect();
    assert!(
        whole
            .iter()
            .any(|(p, _)| p.ends_with("/kustomization.yaml"))
    );
    assert_eq!(each, whole);
}
