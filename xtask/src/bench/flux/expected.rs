//! What `bench flux` waits for: every source and Kustomization of the tree with the revision it
//! must be Ready at, and how many of a listed kind are.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::e2e::artifacts;
use crate::e2e::flux;
use crate::e2e::tree::{Tree, str_at};

/// What the tree says must become Ready, each `namespace/name` with its revision: the commit for
/// a git source and what reads one, the published digest for an OCI source and what reads it.
pub(super) struct Expected {
    pub kustomizations: BTreeMap<String, String>,
    pub git_sources: BTreeMap<String, String>,
    pub oci_sources: BTreeMap<String, String>,
}

impl Expected {
    pub(super) fn of(tree: &Tree, published: &artifacts::Published, commit: &str) -> Expected {
        let id = |o: &Value| {
            format!(
                "{}/{}",
                str_at(o, "/metadata/namespace"),
                str_at(o, "/metadata/name")
            )
        };
        Expected {
            kustomizations: tree
                .kustomizations
                .iter()
                .map(|k| {
                    (
                        format!("{}/{}", k.namespace, k.name),
                        published.revision(k, commit).to_owned(),
                    )
                })
                .collect(),
            git_sources: tree
                .of_kind("GitRepository")
                .into_iter()
                .map(|o| (id(o), commit.to_owned()))
                .collect(),
            oci_sources: tree
                .of_kind("OCIRepository")
                .into_iter()
                .map(|o| {
                    let digest = published
                        .digest(
                            str_at(o, "/metadata/namespace"),
                            str_at(o, "/metadata/name"),
                        )
                        .unwrap_or_default();
                    (id(o), digest.to_owned())
                })
                .collect(),
        }
    }
}

/// How many items of a `kubectl get -o json` list are Ready at their `expected` revision
/// ([`flux::State::ready_at`], the revision read at `revision`, a JSON pointer).
pub(super) fn ready(list: &Value, revision: &str, expected: &BTreeMap<String, String>) -> usize {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let done: BTreeSet<String> = items
        .iter()
        .map(|item| flux::State::of(item, revision))
        .filter(|state| {
            expected
                .get(&format!("{}/{}", state.namespace, state.name))
                .is_some_and(|at| state.ready_at(at))
        })
        .map(|state| format!("{}/{}", state.namespace, state.name))
        .collect();
    done.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, generation: u64, observed: u64, ready: &str, revision: &str) -> Value {
        serde_json::json!({
            "metadata": {"namespace": "svc", "name": name, "generation": generation},
            "status": {
                "observedGeneration": observed,
                "conditions": [
                    {"type": "Reconciling", "status": "False"},
                    {"type": "Ready", "status": ready},
                ],
                "lastAppliedRevision": revision,
            },
        })
    }

    #[test]
    fn only_items_ready_at_their_revision_for_their_generation_count() {
        let at = |revision: &str| -> BTreeMap<String, String> {
            [
                "done",
                "artifact",
                "older-commit",
                "stale-generation",
                "failing",
                "new",
            ]
            .iter()
            .map(|name| (format!("svc/{name}"), revision.to_owned()))
            .collect()
        };
        let list = serde_json::json!({"items": [
            item("done", 2, 2, "True", "main@sha1:0123abcd"),
            item("older-commit", 2, 2, "True", "main@sha1:ffff0000"),
            item("stale-generation", 3, 2, "True", "main@sha1:0123abcd"),
            item("failing", 1, 1, "False", "main@sha1:0123abcd"),
            item("unexpected", 1, 1, "True", "main@sha1:0123abcd"),
            {"metadata": {"namespace": "svc", "name": "new", "generation": 1}},
        ]});
        let applied = "/status/lastAppliedRevision";
        assert_eq!(ready(&list, applied, &at("0123abcd")), 1);
        // An OCI source's Kustomization: Ready at its artifact's digest.
        let artifact = serde_json::json!({"items": [
            item("artifact", 1, 1, "True", "production@sha256:beef"),
        ]});
        assert_eq!(ready(&artifact, applied, &at("sha256:beef")), 1);
        assert_eq!(ready(&artifact, applied, &at("sha256:dead")), 0);
        assert_eq!(
            ready(&serde_json::json!({}), "/status/x", &at("0123abcd")),
            0
        );
        assert_eq!(ready(&list, applied, &at("")), 0);
    }
}
