//! `cargo xtask bench flux`: Flux at scale on the e2e's control plane. For each size, a synthetic
//! spec (`bench gen`'s writer, 10 services a team) with its `[platform.git] url` pointed at the
//! e2e's loopback git server and its `[platform.artifacts] repository` at the e2e's registry is
//! rendered by `gen`, committed and served, and every artifact it pins published (as `cargo
//! xtask publish` does, with skopeo); the e2e's control plane
//! (etcd, kube-apiserver, controller-manager, scheduler, kwok) starts without the real node, so
//! kwok's fake node takes every pod and reports it Running and Ready; the e2e's Flux install
//! (source-controller and kustomize-controller as processes, kustomize-controller with the flags
//! of the tree's component: the lockdown and its workers) bootstraps `flux/clusters/<env>/`. Measured: wall time from the
//! bootstrap being applied (the commit is already served, the artifacts pushed) to every source
//! Ready (git sources at the commit, OCI sources at their artifact's digest) and to every
//! Kustomization Ready at its source's revision; the two controllers' CPU time (utime + stime
//! from `/proc`) during that and over a steady window after it; the fetches the git server
//! answered (ref advertisements and upload-pack POSTs, counted apart) and the pulls the registry
//! answered (manifest HEADs and GETs, blob GETs, from its access log); their peak RSS. A tenth of
//! the smallest size is measured in the same run as the baseline.
//!
//! The whole run happens inside the e2e's mount + network namespace (`netns`): the outer
//! process re-executes itself there and sweeps up after it. Nothing here passes or fails on time:
//! a size that does not reconcile within `--timeout` is reported with what is not Ready, and with
//! the figures measured.

mod commit;
mod expected;
mod measure;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xshell::Shell;

use crate::e2e::components;
use crate::e2e::git::Fetches;
use crate::e2e::netns;
use crate::e2e::registry::Pulls;

#[derive(clap::Args)]
pub struct BenchFlux {
    /// Platform sizes in services, comma-separated; a tenth of the smallest is measured too.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    services: Vec<usize>,
    /// Services per team.
    #[arg(long, default_value_t = 10)]
    per_team: usize,
    /// The environment whose `flux/clusters/<ENV>/` is bootstrapped.
    #[arg(long, default_value = "production")]
    env: String,
    /// Seconds of steady state measured after every Kustomization is Ready.
    #[arg(long, default_value_t = 120)]
    window: u64,
    /// Seconds to wait for every Kustomization to be Ready, at each size.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// kustomize-controller's `--concurrent`, over the one the tree's `flux-lockdown` component
    /// gives it (about one worker per ten services in powers of two, 4 to 64, as the e2e installs
    /// it). Each service's
    /// Kustomization holds a worker while it waits for its rollout.
    #[arg(long, value_name = "N")]
    concurrent: Option<u32>,
    /// Keep the run's folder (specs, trees, logs) afterwards.
    #[arg(long)]
    keep: bool,
    /// Set by the bench itself when it re-executes inside the run's namespaces (`netns`).
    #[arg(long = "inside-namespace", hide = true, value_name = "DIR")]
    inside_namespace: Option<PathBuf>,
}

/// CPU time of the two controllers, the git fetches and the registry pulls served over one
/// stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Phase {
    pub wall: Duration,
    pub source: Duration,
    pub kustomize: Duration,
    pub fetches: Fetches,
    pub pulls: Pulls,
}

impl Phase {
    /// `value` per minute of this phase's wall time.
    fn per_minute(&self, value: f64) -> f64 {
        value * 60.0 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Every figure of one size.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    pub services: usize,
    pub git_repositories: usize,
    pub oci_repositories: usize,
    pub kustomizations: usize,
    /// Objects the Kustomizations apply (the bootstrap's included).
    pub objects: usize,
    /// Bootstrap applied → every source Ready at its revision (None: not within the timeout).
    pub sources_ready: Option<Duration>,
    /// Bootstrap applied → every Kustomization Ready at its source's revision.
    pub all_ready: Option<Duration>,
    /// Kustomizations Ready at the end of the wait.
    pub kustomizations_ready: usize,
    /// How often readiness was polled (the precision of the two times above).
    pub poll: Duration,
    /// From the bootstrap to every Kustomization Ready (or the timeout).
    pub initial: Phase,
    /// The steady window after it (None when the run stopped before it).
    pub steady: Option<Phase>,
    /// One commit on the Ready platform (None when the run stopped before it).
    pub commit: Option<CommitFigures>,
    /// Peak RSS of source-controller and kustomize-controller, in bytes.
    pub peak_rss: (u64, u64),
    /// Why this size stopped early, if it did.
    pub problem: Option<String>,
}

/// One commit on the Ready platform: what it changed, how long Flux took to reach it by its own
/// polling, and what that cost.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitFigures {
    /// The change, e.g. `svc-0000 replicas 1 → 2`.
    pub what: String,
    /// Artifacts whose digest the commit changed.
    pub changed_artifacts: usize,
    /// Commit (its artifacts already published) → every source and Kustomization Ready at its new revision.
    pub all_ready: Option<Duration>,
    pub phase: Phase,
}

impl BenchFlux {
    pub fn run(self) -> anyhow::Result<()> {
        let mut sizes = self.services.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.first().is_none_or(|&n| n < 10) {
            bail!(
                "--services: give sizes of at least 10 services (a tenth of the smallest is the baseline)"
            );
        }
        sizes.insert(0, sizes[0] / 10);
        let sh = Shell::new()?;
        if let Some(dir) = &self.inside_namespace {
            let bins = components::cached()?;
            netns::enter(&sh, dir)?;
            return self.run_inside(&sh, &bins, dir, &sizes);
        }
        components::build_all(&sh, &crate::project_root())?;
        let dir = std::env::temp_dir().join(format!(
            "billing-platform-bench-flux-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!("bench flux: run folder {}", dir.display());
        let started = Instant::now();
        let outcome = netns::run_inside(&sh, &dir);
        eprintln!("bench flux: finished in {:.0?}", started.elapsed());
        if self.keep || outcome.is_err() {
            eprintln!("bench flux: logs kept in {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        outcome
    }

    fn run_inside(
        &self,
        sh: &Shell,
        bins: &components::Binaries,
        dir: &std::path::Path,
        sizes: &[usize],
    ) -> anyhow::Result<()> {
        println!(
            "bench flux: {} environment, synthetic spec of {} services a team; kwok's node takes every pod; Flux as the e2e installs it, kustomize-controller {}; steady window {} s; timeout {} s a size",
            self.env,
            self.per_team,
            self.concurrent.map_or(
                "with the workers the tree's component gives it (--concurrent: about a worker per ten services, a power of two from 4 to 64)".to_string(),
                |n| format!("with --concurrent={n} over the tree's")
            ),
            self.window,
            self.timeout
        );
        let mut rows = Vec::new();
        for &services in sizes {
            let run = measure::Run {
                services,
                per_team: self.per_team,
                env: &self.env,
                window: Duration::from_secs(self.window),
                timeout: Duration::from_secs(self.timeout),
                concurrent: self.concurrent,
            };
            let figures = run
                .measure(sh, bins, &dir.join(format!("services-{services}")))
                .unwrap_or_else(|err| Figures {
                    services,
                    problem: Some(format!("{err:#}")),
                    ..Figures::default()
                });
            println!("  measured {}", report::one_line(&figures));
            rows.push(figures);
        }
        print!("{}", report::report(&rows));
        Ok(())
    }
}
