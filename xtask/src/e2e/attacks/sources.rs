//! Step 6a, third table: the Flux sources that keep each tenant to its own part of the platform
//! repository, as the provider's developer and its Flux account: its own GitRepository widened
//! (sparseCheckout onto another team's tenants, ignore emptied), a tenant Kustomization on its
//! team's or another team's source in flux-system, its team's source patched or deleted, and a
//! GitRepository of its own checking out another team's directory.

use serde_json::{Value, json};

use super::{Attack, Who, strings};
use crate::e2e::evasions;
use crate::e2e::flux::FLUX_NAMESPACE;
use crate::e2e::tree::{Tree, str_at};

/// The sources the attacks aim at, from the tree.
pub(super) struct Sources {
    /// The provider's GitRepository (in its namespace, named after it).
    own: Value,
    /// The provider's team and another team, from the sources' team labels.
    team: String,
    other_team: String,
    /// The environment, from the provider's sparseCheckout (`flux/apps/<service>/<env>`).
    env: String,
}

impl Sources {
    pub(super) fn of(tree: &Tree, ns: &str) -> anyhow::Result<Sources> {
        let repositories = tree.of_kind("GitRepository");
        let own = repositories
            .iter()
            .find(|r| str_at(r, "/metadata/namespace") == ns && str_at(r, "/metadata/name") == ns)
            .map(|r| (*r).clone())
            .ok_or_else(|| anyhow::anyhow!("the tree has no GitRepository {ns}/{ns}"))?;
        let team = str_at(&own, "/metadata/labels/billing-platform~1team").to_owned();
        let other_team = repositories
            .iter()
            .filter(|r| str_at(r, "/metadata/namespace") == FLUX_NAMESPACE)
            .filter_map(|r| str_at(r, "/metadata/name").strip_prefix("team-"))
            .find(|t| *t != team)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the tree has no team source but {team}'s"))?;
        let env = str_at(&own, "/spec/sparseCheckout/0")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        if team.is_empty() || env.is_empty() {
            anyhow::bail!("the GitRepository {ns}/{ns} names no team label or sparseCheckout");
        }
        Ok(Sources {
            own,
            team,
            other_team,
            env,
        })
    }
}

pub(super) fn attacks(developer: &Who, tenant: &Who, ns: &str, sources: &Sources) -> Vec<Attack> {
    let Sources {
        own,
        team,
        other_team,
        env,
    } = sources;
    let run = |who: &Who, what: &str, args: &[&str]| evasions::dry(who, what, args, &[]);
    let apply = |who: &Who, what: &str, object: Value| Attack {
        who: who.clone(),
        what: what.to_owned(),
        args: strings(&["apply", "--server-side", "--dry-run=server", "-f", "-"]),
        stdin: Some(object.to_string()),
        denied_by: &[],
    };
    let own_source = format!("gitrepository/{ns}");
    let team_source = format!("gitrepository/team-{team}");
    let other_tenants = format!("flux/tenants/{env}/{other_team}");
    let widened = json!({"spec": {"sparseCheckout":
        [str_at(own, "/spec/sparseCheckout/0"), other_tenants]}})
    .to_string();
    let unignored = json!({"spec": {"ignore": ""}}).to_string();
    let team_widened = json!({"spec": {"sparseCheckout": ["flux"]}}).to_string();
    // Neither the developer Role nor the flux-tenant ClusterRole grants Flux's kinds, so RBAC
    // refuses first; behind it tenant-limits-protected (the namespace's GitRepository and
    // Kustomization are the platform's) and flux-tenant-kustomization (the source's namespace).
    let mut attacks = Vec::new();
    for who in [developer, tenant] {
        attacks.extend([
            // 1. Its own source widened onto another team's tenants, or to the whole repository.
            run(
                who,
                &format!("widens its GitRepository's sparseCheckout to {other_tenants}"),
                &[
                    "patch",
                    &own_source,
                    "-n",
                    ns,
                    "--type=merge",
                    "-p",
                    &widened,
                ],
            ),
            run(
                who,
                "empties its GitRepository's ignore rules",
                &[
                    "patch",
                    &own_source,
                    "-n",
                    ns,
                    "--type=merge",
                    "-p",
                    &unignored,
                ],
            ),
            // 2. A Kustomization of its namespace, with the account the policy asks for, on a
            // source in flux-system: another team's, or the bootstrap's (namespace.rs' one has no
            // account, so the account rule may be what refuses it).
            apply(
                who,
                &format!(
                    "creates a Kustomization (serviceAccountName flux-reconciler) on {FLUX_NAMESPACE}/team-{other_team}"
                ),
                tenant_kustomization(ns, &format!("team-{other_team}"), &other_tenants),
            ),
            apply(
                who,
                &format!(
                    "creates a Kustomization (serviceAccountName flux-reconciler) on {FLUX_NAMESPACE}/{FLUX_NAMESPACE}"
                ),
                tenant_kustomization(ns, FLUX_NAMESPACE, &format!("flux/clusters/{env}")),
            ),
            // 3. Its team's source in flux-system: widened, deleted.
            run(
                who,
                &format!("widens {FLUX_NAMESPACE}/team-{team}'s sparseCheckout to flux"),
                &[
                    "patch",
                    &team_source,
                    "-n",
                    FLUX_NAMESPACE,
                    "--type=merge",
                    "-p",
                    &team_widened,
                ],
            ),
            run(
                who,
                &format!("deletes {FLUX_NAMESPACE}/team-{team}"),
                &["delete", &team_source, "-n", FLUX_NAMESPACE],
            ),
            // 4. A source of its own on the platform repository, checking out another team's.
            apply(
                who,
                &format!("creates a GitRepository checking out {other_tenants}"),
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "1m",
                "url": str_at(own, "/spec/url"), "ref": own["spec"]["ref"].clone(),
                "sparseCheckout": [other_tenants]}}),
            ),
        ]);
    }
    attacks
}

/// A Kustomization in `ns` as the policy wants it (its Flux account, into `ns`) but for the source:
/// `flux-system/<source>`.
fn tenant_kustomization(ns: &str, source: &str, path: &str) -> Value {
    json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
    "metadata": {"name": "e2e-attack", "namespace": ns}, "spec": {"interval": "10m", "prune": false,
    "path": format!("./{path}"), "serviceAccountName": infra::render::TENANT_RECONCILER,
    "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": source,
    "namespace": FLUX_NAMESPACE}}})
}
