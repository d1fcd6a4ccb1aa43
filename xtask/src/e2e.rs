//! `cargo xtask e2e`: Flux reconciles `flux/` from a loopback git server into a real control plane
//! (etcd, kube-apiserver, controller-manager, scheduler, kwok) built from Go modules, with a real
//! node (containerd, kubelet, kube-proxy, kube-router) running the provider's image, all inside a
//! mount + network namespace of the run; then RBAC, tenancy, admission policies, network
//! reachability and the real pods' behaviour are asserted on the live cluster.

pub(crate) mod artifacts;
mod attacks;
mod checks;
pub(crate) mod cluster;
mod cni;
pub(crate) mod components;
mod containerd;
mod drain;
mod evasions;
pub(crate) mod flux;
pub(crate) mod git;
mod gomod;
mod host;
mod intruders;
mod kube_router;
mod lockdown;
pub(crate) mod netns;
mod network;
mod node;
mod node_images;
mod pki;
mod probe_pods;
mod probe_room;
pub(crate) mod procs;
mod rbac;
mod realnode;
mod realnode_checks;
pub(crate) mod registry;
mod side_doors;
pub(crate) mod spec_copy;
mod tenancy;
mod timestamps;
pub(crate) mod tree;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

#[derive(clap::Args)]
pub struct E2e {
    /// Only build (or find in the cache) the binaries, then stop.
    #[arg(long)]
    build_only: bool,
    /// Regenerate `e2e/<component>/go.mod` and `go.sum` from the upstream go.mod files, then stop.
    #[arg(long, conflicts_with = "build_only")]
    update_modules: bool,
    /// The environment whose entry point `flux/clusters/<ENV>/` the cluster is bootstrapped with.
    /// Production by default: its tree pins the provider's image by digest, so the real node proves
    /// that the digest Flux deploys is the one this checkout builds.
    #[arg(long, default_value = "production")]
    env: String,
    /// Serve this folder as `flux/` instead of the checkout's own (to try a tree before it lands).
    #[arg(long, value_name = "DIR")]
    flux_dir: Option<PathBuf>,
    /// Seconds to wait for Flux to reconcile (each wait; the whole run is bounded by the sum).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Keep the run's folder (certificates, kubeconfigs, logs) even when everything passed.
    #[arg(long)]
    keep: bool,
    /// Set by the e2e itself when it re-executes inside the run's namespaces (`netns`).
    #[arg(long = "inside-namespace", hide = true, value_name = "DIR")]
    inside_namespace: Option<PathBuf>,
}

/// Where the run publishes the tree's artifacts, below its registry (as `[platform.artifacts]`
/// names it below the real one).
const ARTIFACT_REPOSITORY: &str = "billing-platform/manifests";

/// Outcome of one numbered step.
struct Step {
    name: &'static str,
    result: anyhow::Result<String>,
}

impl E2e {
    pub fn run(self) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        let root = crate::project_root();
        if self.update_modules {
            return gomod::update_modules(&sh, &root);
        }
        let started = Instant::now();
        if !self.build_only {
            // Fail before minutes of building when there is no tree to reconcile.
            let flux = self.flux_dir.clone().unwrap_or_else(|| root.join("flux"));
            let entry = flux
                .join("clusters")
                .join(&self.env)
                .join("kustomization.yaml");
            if !entry.is_file() {
                bail!(
                    "{} does not exist: the tree has no entry point for environment {}; run `cargo xtask gen` (or pick one with --env)",
                    entry.display(),
                    self.env
                );
            }
        }
        if let Some(dir) = &self.inside_namespace {
            // The outer run built everything; this one only runs, inside the namespaces.
            let bins = components::cached()?;
            let inside = netns::enter(&sh, dir)?;
            return self.run_cluster(&sh, &root, &bins, dir, &inside);
        }
        if !self.build_only {
            netns::check_prerequisites()?;
        }
        components::build_all(&sh, &root)?;
        // The run builds the provider's image inside its own network namespace, where no
        // registry is reachable: every crate the workspace locks is fetched here first (on a
        // fresh machine nothing before `e2e` needs the provider's).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        cmd!(sh, "{cargo} fetch --locked --quiet")
            .run()
            .context("cannot fetch the workspace's crates for the provider's build")?;
        if self.build_only {
            print_disk(&sh);
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("billing-platform-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!("e2e: run folder {}", dir.display());
        let outcome =
            node_images::prepare(&sh, &root, &dir).and_then(|()| netns::run_inside(&sh, &dir));
        eprintln!("e2e: finished in {:.0?}", started.elapsed());
        match outcome {
            Ok(()) => {
                if !self.keep {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Ok(())
            }
            Err(err) => {
                eprintln!("e2e: logs and certificates kept in {}", dir.display());
                Err(err)
            }
        }
    }

    fn run_cluster(
        &self,
        sh: &Shell,
        root: &Path,
        bins: &components::Binaries,
        dir: &Path,
        inside: &netns::Inside,
    ) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(self.timeout);
        let mut procs = procs::Processes::new(&dir.join("logs"))?;
        let t0 = Instant::now();
        let cluster = cluster::Cluster::start(sh, root, bins, dir, &mut procs)?;
        println!(
            "1. control plane up in {:.1?} ({})",
            t0.elapsed(),
            cluster.server
        );
        // The provider's image, pushed to a registry on loopback and pulled back by digest; the
        // served tree must pin exactly that image for production.
        let flux = self.flux_dir.clone().unwrap_or_else(|| root.join("flux"));
        let image = registry::push_provider(
            sh,
            root,
            &bins.path("registry"),
            &flux,
            &dir.join("registry"),
            &mut procs,
        );
        if let Ok(pushed) = &image {
            println!(
                "1. provider image {}@{} on the registry at {}",
                pushed.reference, pushed.digest, pushed.registry
            );
        }

        // 2. The served commit: the checkout's files with every GitRepository URL pointed at the
        // loopback server and every OCIRepository at the run's registry (the platform's sources
        // come from git, each tenant's from its artifact, published below from the commit). The
        // URLs are set the documented way: in the clone's own spec, rendered by `gen`. A tree
        // given with --flux-dir was not rendered from this spec, so there the URLs are rewritten
        // in its YAML and the spec is left alone (and step 6 cannot change replicas through it).
        let pushed = image
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .context("the tree's artifacts and the real node need the run's registry")?;
        let registry = pushed.registry;
        let artifact_repository = format!("{registry}/{ARTIFACT_REPOSITORY}");
        let work = dir.join("git").join("work");
        let served = dir.join("git").join("served");
        git::Repo::copy_tree(sh, root, self.flux_dir.as_deref(), &work)?;
        let original = tree::Tree::discover(sh, &work, &self.env)?;
        let repo = git::Repo::init(sh, &work, &served, &original.git_branch())?;
        let server = git::GitServer::start(&served)?;
        let url = server.url("billing-platform.git");
        let spec = match &self.flux_dir {
            None => {
                let spec = spec_copy::SpecCopy::new(&work, &self.env);
                spec.set_git_url(&url)?;
                spec.set_artifact_repository(&artifact_repository)?;
                spec.render(sh)?;
                println!(
                    "2. infra/platform.toml [platform.git] url = {url}, [platform.artifacts] repository = {artifact_repository}, rendered by gen"
                );
                Some(spec)
            }
            Some(flux_dir) => {
                spec_copy::rewrite_urls(
                    &work.join("flux"),
                    &original.git_urls(),
                    &url,
                    &registry.to_string(),
                )?;
                println!(
                    "2. --flux-dir {}: GitRepository URLs and OCIRepository registries rewritten in its YAML (not rendered from the spec); step 6 skips the replicas change",
                    flux_dir.display()
                );
                None
            }
        };
        let commit = repo.commit(sh, "the tree under test")?;
        let committed = Instant::now();
        let tree = tree::Tree::discover(sh, &repo.work, &self.env)?;
        let urls = tree.git_urls();
        if urls != [url.clone()] {
            bail!(
                "the served tree's GitRepositories point at {urls:?}, not only at the loopback server {url}"
            );
        }
        let foreign: Vec<&str> = tree
            .of_kind("OCIRepository")
            .into_iter()
            .map(|o| tree::str_at(o, "/spec/url"))
            .filter(|u| !u.starts_with(&format!("oci://{registry}/")))
            .collect();
        if !foreign.is_empty() {
            bail!(
                "the served tree's OCIRepositories point at {foreign:?}, not at the run's registry {registry}"
            );
        }
        let published = artifacts::publish(sh, &repo, &tree)?;
        println!(
            "2. serving {url} ({} {commit:.12}); {} artifacts published to {registry}; {} Kustomizations in the {} tree",
            repo.branch,
            published.len(),
            tree.kustomizations.len(),
            self.env
        );

        // 2b. The real node, before Flux: the provider's pods are to become Ready on it, from the
        // image just pushed (without it Flux would only time out on them).
        let node = realnode::start(
            sh,
            bins,
            dir,
            &cluster,
            inside,
            pushed.registry,
            &pushed.digest,
            &mut procs,
        )?;

        // 3. Flux.
        let lockdown_dir = repo.work.join(infra::render::lockdown_dir(&self.env));
        let controller = flux::install(sh, root, bins, &cluster, &lockdown_dir, &mut procs, &[])?;
        flux::bootstrap(sh, &cluster, &tree)?;
        let timeline = flux::wait_all_ready(
            sh,
            &cluster,
            &tree,
            &mut procs,
            |k| published.revision(k, &commit).to_owned(),
            committed,
            timeout,
        );
        let timeline = match timeline {
            Ok(timeline) => timeline,
            Err(err) => {
                eprintln!("{}", flux::diagnostics(sh, &cluster, &procs));
                return Err(err.context("Flux did not reconcile the tree"));
            }
        };
        println!("3. every Kustomization Ready (seconds from commit):");
        for (kustomization, at) in &timeline {
            println!("   {:>6.1}s  {kustomization}", at.as_secs_f64());
        }

        let mut steps = vec![
            Step {
                name: "1. provider image and registry",
                result: image.map(|pushed| pushed.summary),
            },
            Step {
                name: "1-3. control plane, git, Flux",
                result: Ok(format!(
                    "{} Kustomizations Ready {:.1}s after the commit",
                    timeline.len(),
                    timeline.last().map_or(0.0, |(_, at)| at.as_secs_f64())
                )),
            },
            Step {
                name: "3b. Flux lockdown on the running controller",
                result: lockdown::check(sh, &cluster, &tree, controller.pid, &controller.lockdown)
                    .map(|lines| {
                        println!("3b. Flux lockdown (flags from the tree's component):");
                        for line in &lines {
                            println!("   {line}");
                        }
                        format!(
                            "{} flags on the process; both probes refused",
                            controller.lockdown.len()
                        )
                    }),
            },
            Step {
                name: "4. objects and rollouts",
                result: checks::objects_exist(sh, &cluster, &tree),
            },
            Step {
                name: "4. admission policies",
                result: checks::admission_policies(sh, &cluster, &tree),
            },
        ];
        let matrix = rbac::rbac_matrix(sh, &cluster, &tree).and_then(|rows| {
            println!("5. RBAC matrix (kubectl auth can-i --as=… --as-group=<team group>):");
            print!("{}", rbac::format_matrix(&rows));
            let wrong = rows.iter().filter(|r| r.expected != r.allowed).count();
            if wrong > 0 {
                bail!("{wrong} of {} answers differ from the design", rows.len());
            }
            Ok(format!("{} answers as designed", rows.len()))
        });
        steps.push(Step {
            name: "5. RBAC matrix",
            result: matrix,
        });
        let attacks = attacks::run(sh, &cluster, &tree).map(|lines| {
            println!(
                "6a. attacks on the tenancy (as a developer and as the tenant's Flux account):"
            );
            for line in &lines {
                println!("   {line}");
            }
            let refused = lines.iter().filter(|l| l.starts_with("refused")).count();
            format!(
                "{refused} attacks refused, {} legitimate actions admitted",
                lines.len() - refused
            )
        });
        steps.push(Step {
            name: "6a. attacks refused, emergency actions admitted",
            result: attacks,
        });
        steps.push(Step {
            name: "6. tenancy and rollout through git",
            result: tenancy::run(
                sh,
                &cluster,
                &tenancy::Served {
                    tree: &tree,
                    repo: &repo,
                    published: &published,
                },
                spec.as_ref(),
                &mut procs,
                timeout,
            )
            .map(|held| held.join("; ")),
        });
        let connectivity =
            network::connectivity(sh, &bins.path("netpolicy"), &tree, dir).map(|list| {
                println!("7. connectivity (netpol-analyzer over the rendered tree):");
                for line in list.lines().filter(|l| !l.trim().is_empty()) {
                    println!("   {line}");
                }
                format!(
                    "only {} reaches {}",
                    checks::CLIENT_SERVICE,
                    checks::PROVIDER_SERVICE
                )
            });
        steps.push(Step {
            name: "7. network reachability",
            result: connectivity,
        });
        let t_checks = Instant::now();
        for (name, result) in realnode_checks::run(&node.checks(sh, &cluster, &tree)) {
            steps.push(Step { name, result });
        }
        println!(
            "   real node: bring-up {:.1?}, assertions {:.1?}",
            node.bring_up,
            t_checks.elapsed()
        );

        println!("9. summary:");
        let mut failed = 0;
        for step in &steps {
            match &step.result {
                Ok(detail) => println!("   PASS {}: {detail}", step.name),
                Err(err) => {
                    failed += 1;
                    println!("   FAIL {}: {err:#}", step.name);
                }
            }
        }
        if failed > 0 {
            eprintln!("{}", flux::diagnostics(sh, &cluster, &procs));
            bail!("{failed} of {} checks failed", steps.len());
        }
        drop(server);
        drop(procs);
        Ok(())
    }
}

/// Disk used by the binaries and Go's own caches (for the README's cold-build figures).
fn print_disk(sh: &Shell) {
    let mut dirs: Vec<String> = Vec::new();
    if let Ok(dir) = components::cache_dir() {
        dirs.push(dir.display().to_string());
    }
    for var in ["GOMODCACHE", "GOCACHE"] {
        if let Ok(dir) = xshell::cmd!(sh, "go env {var}").quiet().read() {
            dirs.push(dir);
        }
    }
    if let Ok(out) = xshell::cmd!(sh, "du -sh {dirs...}").quiet().read() {
        eprintln!("e2e: disk used:\n{out}");
    }
}
