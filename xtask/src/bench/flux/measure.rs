//! One size of `bench flux`: the synthetic spec rendered, committed and served, its artifacts
//! published to the run's registry, the control plane and Flux started, the bootstrap applied,
//! readiness polled, and the controllers' CPU, the git server's fetches and the registry's pulls
//! read at the bootstrap, at every Kustomization Ready and after the steady window.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use xshell::Shell;

use super::commit::Change;
use super::expected::{Expected, ready};
use super::{Figures, Phase};
use crate::e2e::artifacts;
use crate::e2e::cluster::{Cluster, Sizing};
use crate::e2e::components::Binaries;
use crate::e2e::flux;
use crate::e2e::git::{self, Fetches, GitServer};
use crate::e2e::procs::{self, Processes, Usage};
use crate::e2e::registry::{LocalRegistry, Pulls};
use crate::e2e::spec_copy::SpecCopy;
use crate::e2e::tree::Tree;

/// The API rate limit given to the controller-manager and the scheduler (see [`Sizing`]).
const CLIENT_QPS: u32 = 100;

/// What one size is measured with.
pub(super) struct Run<'a> {
    pub services: usize,
    pub per_team: usize,
    pub env: &'a str,
    pub window: Duration,
    pub timeout: Duration,
    /// kustomize-controller's `--concurrent` over the one the tree's component gives it.
    pub concurrent: Option<u32>,
}

/// The controllers' usage, the git server's count and the registry's at one moment.
pub(super) struct Snapshot {
    at: Instant,
    source: Usage,
    kustomize: Usage,
    fetches: Fetches,
    pulls: Pulls,
}

/// What a snapshot reads: the two controllers' pids, the git server, the registry's log.
pub(super) struct Counters<'a> {
    pids: (u32, u32),
    server: &'a GitServer,
    registry: &'a Path,
}

impl Snapshot {
    pub(super) fn take(counters: &Counters<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            source: procs::usage(counters.pids.0).context("source-controller's usage")?,
            kustomize: procs::usage(counters.pids.1).context("kustomize-controller's usage")?,
            fetches: counters.server.fetches(),
            pulls: Pulls::read(counters.registry).context("the registry's access log")?,
        })
    }

    /// What was used from `earlier` to this one.
    pub(super) fn since(&self, earlier: &Snapshot) -> Phase {
        Phase {
            wall: self.at - earlier.at,
            source: self.source.cpu.saturating_sub(earlier.source.cpu),
            kustomize: self.kustomize.cpu.saturating_sub(earlier.kustomize.cpu),
            fetches: self.fetches.since(earlier.fetches),
            pulls: self.pulls.since(earlier.pulls),
        }
    }
}

impl Run<'_> {
    pub fn measure(&self, sh: &Shell, bins: &Binaries, dir: &Path) -> anyhow::Result<Figures> {
        let root = crate::project_root();
        let mut figures = Figures {
            services: self.services,
            poll: Duration::from_secs(if self.services > 100 { 5 } else { 2 }),
            ..Figures::default()
        };

        // The served commit: the synthetic spec, its git URL set to the loopback server and its
        // artifacts to the run's registry, rendered; the artifacts published from it.
        let mut procs = Processes::new(&dir.join("logs"))?;
        let registry =
            LocalRegistry::start(&bins.path("registry"), &dir.join("registry"), &mut procs)?;
        let work = dir.join("git").join("work");
        let teams = self.services.div_ceil(self.per_team.max(1));
        crate::bench::generate::write_spec(&work.join("infra"), self.services, teams)?;
        let served = dir.join("git").join("served");
        let repo = git::Repo::init(sh, &work, &served, "main")?;
        let server = GitServer::start(&served)?;
        let url = server.url("billing-platform.git");
        let spec = SpecCopy::new(&work, self.env);
        spec.set_git_url(&url)?;
        spec.set_artifact_repository(&format!("{}/bench/manifests", registry.addr))?;
        spec.render(sh)?;
        let commit = repo.commit(sh, "the synthetic platform")?;
        let discovering = Instant::now();
        let tree = Tree::discover(sh, &work, self.env)?;
        if tree.git_urls() != [url.clone()] {
            bail!(
                "the served tree's GitRepositories point at {:?}, not only at {url}",
                tree.git_urls()
            );
        }
        let discovered = discovering.elapsed();
        let publishing = Instant::now();
        let published = artifacts::publish(sh, &repo, &tree)?;
        let expected = Expected::of(&tree, &published, &commit);
        let replicas: u64 = tree
            .of_kind("Deployment")
            .into_iter()
            .map(|d| {
                d.pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
            })
            .sum();
        figures.kustomizations = expected.kustomizations.len();
        figures.git_repositories = expected.git_sources.len();
        figures.oci_repositories = expected.oci_sources.len();
        figures.objects = tree.objects().len();
        eprintln!(
            "bench flux: {} services: {} GitRepositories, {} OCIRepositories ({} artifacts published in {:.1?}), {} Kustomizations, {} objects, {replicas} pods; tree read in {discovered:.1?}",
            self.services,
            expected.git_sources.len(),
            expected.oci_sources.len(),
            published.len(),
            publishing.elapsed(),
            expected.kustomizations.len(),
            figures.objects,
        );

        // The control plane without the real node, and Flux as the e2e installs it.
        let sizing = Sizing {
            pods: u32::try_from(110 + 2 * replicas).unwrap_or(u32::MAX),
            client_qps: Some(CLIENT_QPS),
        };
        let cluster = Cluster::start_sized(sh, &root, bins, dir, &mut procs, sizing)?;
        let lockdown = work.join(infra::render::lockdown_dir(self.env));
        let flags: Vec<String> = self
            .concurrent
            .map(|n| format!("--concurrent={n}"))
            .into_iter()
            .collect();
        flux::install(sh, &root, bins, &cluster, &lockdown, &mut procs, &flags)?;
        let pid = |name: &str| {
            procs
                .pid(name)
                .with_context(|| format!("{name} was not started"))
        };
        let counters = Counters {
            pids: (pid("source-controller")?, pid("kustomize-controller")?),
            server: &server,
            registry: &registry.log,
        };

        let before = Snapshot::take(&counters)?;
        flux::bootstrap(sh, &cluster, &tree)?;
        let progress = self.wait(sh, &cluster, &mut procs, &expected, figures.poll);
        let ready = match Snapshot::take(&counters) {
            Ok(ready) => ready,
            Err(err) => {
                figures.problem = Some(format!(
                    "{:#}",
                    err.context(progress.problem.unwrap_or_default())
                ));
                eprintln!("{}", flux::diagnostics_not_ready(sh, &cluster, &procs, 20));
                return Ok(figures);
            }
        };
        figures.initial = ready.since(&before);
        figures.sources_ready = progress.sources_ready;
        figures.all_ready = progress.all_ready;
        figures.kustomizations_ready = progress.kustomizations_ready;
        figures.problem = progress.problem.clone();
        if progress.all_ready.is_none() {
            eprintln!(
                "bench flux: {} services: not every Kustomization Ready ({}); {} of {} sources Ready",
                self.services,
                progress.problem.as_deref().unwrap_or("stopped"),
                progress.sources_ready_count,
                expected.git_sources.len() + expected.oci_sources.len()
            );
            eprintln!("{}", flux::diagnostics_not_ready(sh, &cluster, &procs, 20));
        } else {
            eprintln!(
                "bench flux: {} services: every Kustomization Ready {:.1?} after the bootstrap; steady window of {:?}",
                self.services,
                progress.all_ready.unwrap_or_default(),
                self.window
            );
            let until = Instant::now() + self.window;
            let mut died = None;
            while Instant::now() < until {
                if let Err(err) = procs.check_alive() {
                    died = Some(format!("{err:#}"));
                    break;
                }
                std::thread::sleep(Duration::from_secs(1).min(until - Instant::now()));
            }
            match died.map_or_else(
                || Snapshot::take(&counters),
                |err| Err(anyhow::anyhow!(err)),
            ) {
                Ok(end) => figures.steady = Some(end.since(&ready)),
                Err(err) => figures.problem = Some(format!("{err:#}")),
            }
            if figures.problem.is_none() {
                let change = Change {
                    spec: &spec,
                    repo: &repo,
                    tree: &tree,
                    counters: &counters,
                    published: &published,
                };
                match self.one_commit(sh, &cluster, &mut procs, &change, figures.poll) {
                    Ok(commit) => figures.commit = Some(commit),
                    Err(err) => figures.problem = Some(format!("one commit: {err:#}")),
                }
            }
        }
        if let Ok(end) = Snapshot::take(&counters) {
            figures.peak_rss = (end.source.peak_rss, end.kustomize.peak_rss);
        }
        drop(procs);
        drop(server);
        Ok(figures)
    }

    /// Polls the Kustomizations and sources until every expected one is Ready at its revision,
    /// the timeout passes or a process of the run exits.
    pub(super) fn wait(
        &self,
        sh: &Shell,
        cluster: &Cluster,
        procs: &mut Processes,
        expected: &Expected,
        poll: Duration,
    ) -> Progress {
        let started = Instant::now();
        let mut progress = Progress::default();
        let mut last_error = None;
        let mut last_print = Instant::now();
        loop {
            if let Err(err) = procs.check_alive() {
                progress.problem = Some(format!("{err:#}"));
                return progress;
            }
            let list = |kind: &str| -> anyhow::Result<Value> {
                let json = cluster.kubectl_read(sh, &["get", kind, "-A", "-o", "json"])?;
                serde_json::from_str(&json).with_context(|| format!("kubectl get {kind}: no JSON"))
            };
            let lists = (
                list("gitrepositories"),
                list("ocirepositories"),
                list("kustomizations"),
            );
            match lists {
                (Ok(git), Ok(oci), Ok(kustomizations)) => {
                    let artifact = "/status/artifact/revision";
                    progress.sources_ready_count = ready(&git, artifact, &expected.git_sources)
                        + ready(&oci, artifact, &expected.oci_sources);
                    progress.kustomizations_ready = ready(
                        &kustomizations,
                        "/status/lastAppliedRevision",
                        &expected.kustomizations,
                    );
                    let sources = expected.git_sources.len() + expected.oci_sources.len();
                    if progress.sources_ready.is_none() && progress.sources_ready_count == sources {
                        progress.sources_ready = Some(started.elapsed());
                    }
                    if progress.kustomizations_ready == expected.kustomizations.len() {
                        progress.all_ready = Some(started.elapsed());
                        return progress;
                    }
                }
                (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
                    last_error = Some(format!("{err:#}"))
                }
            }
            if last_print.elapsed() >= Duration::from_secs(30) {
                last_print = Instant::now();
                eprintln!(
                    "bench flux: {:>5.0?}: {}/{} sources, {}/{} Kustomizations Ready",
                    started.elapsed(),
                    progress.sources_ready_count,
                    expected.git_sources.len() + expected.oci_sources.len(),
                    progress.kustomizations_ready,
                    expected.kustomizations.len()
                );
            }
            if started.elapsed() > self.timeout {
                progress.problem = Some(match last_error {
                    Some(err) => format!("timed out after {:?}; last error: {err}", self.timeout),
                    None => format!("timed out after {:?}", self.timeout),
                });
                return progress;
            }
            std::thread::sleep(poll);
        }
    }
}

/// How far the reconcile got.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub sources_ready: Option<Duration>,
    pub sources_ready_count: usize,
    pub all_ready: Option<Duration>,
    pub kustomizations_ready: usize,
    pub problem: Option<String>,
}
