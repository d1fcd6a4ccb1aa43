//! `bench flux`'s one commit on the Ready platform: one service's replicas changed as a team
//! changes them, and what reaching it cost Flux.

use std::time::Duration;

use anyhow::Context as _;
use xshell::Shell;

use super::CommitFigures;
use super::expected::Expected;
use super::measure::{Counters, Run, Snapshot};
use crate::e2e::artifacts;
use crate::e2e::cluster::Cluster;
use crate::e2e::git;
use crate::e2e::procs::Processes;
use crate::e2e::spec_copy::SpecCopy;
use crate::e2e::tree::{Tree, str_at};

/// What [`Run::one_commit`] changes the platform with.
pub(super) struct Change<'a> {
    pub spec: &'a SpecCopy,
    pub repo: &'a git::Repo,
    pub tree: &'a Tree,
    pub counters: &'a Counters<'a>,
    /// What the platform runs before the commit.
    pub published: &'a artifacts::Published,
}

impl Run<'_> {
    /// One commit on the Ready platform, as a team makes it: the first service's replicas + 1 in
    /// the spec, rendered by `gen`, published and committed; then the wait until every source and
    /// Kustomization is Ready at its new revision (found by Flux's own polling, nothing is asked
    /// to reconcile), and what that cost from the commit on.
    pub(super) fn one_commit(
        &self,
        sh: &Shell,
        cluster: &Cluster,
        procs: &mut Processes,
        change: &Change<'_>,
        poll: Duration,
    ) -> anyhow::Result<CommitFigures> {
        // A service's source lives in the service's namespace (the teams' in flux-system).
        let service = change
            .tree
            .of_kind("OCIRepository")
            .into_iter()
            .map(|o| str_at(o, "/metadata/namespace"))
            .find(|ns| *ns != crate::e2e::flux::FLUX_NAMESPACE)
            .map(str::to_owned)
            .context("the tree has no service")?;
        let scaled = change.spec.scale(&service, 1)?;
        change.spec.render(sh)?;
        // Published before the commit, as CI does before the merge that pins the new digests.
        let published = artifacts::publish(sh, change.repo, change.tree)?;
        let start = Snapshot::take(change.counters)?;
        let commit = change.repo.commit(
            sh,
            &format!("{service}: replicas {} → {}", scaled.before, scaled.after),
        )?;
        let expected = Expected::of(change.tree, &published, &commit);
        let changed = change
            .tree
            .of_kind("OCIRepository")
            .into_iter()
            .filter(|o| {
                let (ns, name) = (
                    str_at(o, "/metadata/namespace"),
                    str_at(o, "/metadata/name"),
                );
                published.digest(ns, name) != change.published.digest(ns, name)
            })
            .count();
        eprintln!(
            "bench flux: {} services: one commit ({service} replicas {} → {}, {changed} of {} artifacts changed)",
            self.services,
            scaled.before,
            scaled.after,
            expected.oci_sources.len()
        );
        let progress = self.wait(sh, cluster, procs, &expected, poll);
        let end = Snapshot::take(change.counters)?;
        if let Some(problem) = progress.problem {
            anyhow::bail!("{problem}");
        }
        Ok(CommitFigures {
            what: format!("{service} replicas {} → {}", scaled.before, scaled.after),
            changed_artifacts: changed,
            all_ready: progress.all_ready,
            phase: end.since(&start),
        })
    }
}
