//! `cargo xtask bench gen`: parse, validate, render, serialise and check a synthetic platform
//! (1,000 services, 100 teams, 2 environments by default) next to a tenth of it in the same run,
//! so the growth ratio is visible, then the policy bundle over every environment, as `verify`
//! runs it. No kubectl: in-process work only.
//!
//! `cargo xtask bench gen` measures the dev build (`infra` and `policies` at opt-level 2, other
//! dependencies at 1); `cargo run --release -p xtask -- bench gen` measures an optimised build.
//! The header line says which one ran.

use std::time::{Duration, Instant};

use infra::Spec;

#[derive(clap::Args)]
pub struct BenchGen {
    /// Services in the large platform (the baseline is a tenth of it).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Teams the services are spread over.
    #[arg(long, default_value_t = 100)]
    teams: usize,
    /// Runs per size; the fastest run is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Fastest time of each phase for one size.
#[derive(Clone, Copy, Default)]
struct Phases {
    parse: Duration,
    render: Duration,
    serialise: Duration,
    checks: Duration,
    policies: Duration,
    objects: usize,
    files: usize,
    bytes: usize,
}

impl Phases {
    fn generate_and_check(&self) -> Duration {
        self.render + self.serialise + self.checks
    }

    fn generate_and_verify(&self) -> Duration {
        self.generate_and_check() + self.policies
    }
}

impl BenchGen {
    pub fn run(self) -> anyhow::Result<()> {
        let profile = if cfg!(debug_assertions) {
            "dev profile (infra and policies at opt-level 2, other dependencies at 1)"
        } else {
            "release profile"
        };
        println!(
            "bench gen: {profile}; fastest of {} run(s); no kubectl",
            self.runs.max(1)
        );
        let small = measure(self.services / 10, self.teams / 10, self.runs)?;
        let large = measure(self.services, self.teams, self.runs)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "{:<28} {:>12} {:>12} {:>8}",
            "phase",
            format!("{} svc", self.services / 10),
            format!("{} svc", self.services),
            "ratio"
        );
        for (phase, a, b) in [
            ("parse + validate", small.parse, large.parse),
            ("render (typed → YAML+JSON)", small.render, large.render),
            ("files (kustomizations)", small.serialise, large.serialise),
            ("cross-object checks", small.checks, large.checks),
            (
                "render + files + checks",
                small.generate_and_check(),
                large.generate_and_check(),
            ),
            ("policy bundle (all envs)", small.policies, large.policies),
            (
                "gen + in-process verify",
                small.generate_and_verify(),
                large.generate_and_verify(),
            ),
        ] {
            println!(
                "{phase:<28} {:>9.1} ms {:>9.1} ms {:>7.1}x",
                ms(a),
                ms(b),
                ratio(b, a)
            );
        }
        println!(
            "{:<28} {:>12} {:>12} {:>7.1}x",
            "objects",
            small.objects,
            large.objects,
            large.objects as f64 / small.objects.max(1) as f64
        );
        println!("{:<28} {:>12} {:>12}", "files", small.files, large.files);
        println!(
            "{:<28} {:>9.1} MB {:>9.1} MB",
            "bytes",
            small.bytes as f64 / 1e6,
            large.bytes as f64 / 1e6
        );
        Ok(())
    }
}

fn measure(services: usize, teams: usize, runs: usize) -> anyhow::Result<Phases> {
    let (platform, service_files) = infra::synthetic::sources(services.max(1), teams.max(1));
    let mut best: Option<Phases> = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let spec = Spec::parse(&platform, &service_files)?;
        let parse = start.elapsed();

        let start = Instant::now();
        let tree = infra::render(&spec)?;
        let render = start.elapsed();

        let start = Instant::now();
        let files = tree.render()?;
        let serialise = start.elapsed();

        let start = Instant::now();
        let findings = infra::checks::run(&tree);
        let checks = start.elapsed();
        anyhow::ensure!(
            findings.is_empty(),
            "the synthetic platform fails its checks: {}",
            findings[0]
        );

        // The same call `verify` makes: every environment, the spec's exemptions.
        let start = Instant::now();
        let reports = crate::verify::policy_reports(&spec, &tree)?;
        let policies = start.elapsed();
        if let Some(report) = reports.iter().find(|r| r.has_errors()) {
            anyhow::bail!("the synthetic platform violates the policy bundle:\n{report}");
        }

        let run = Phases {
            parse,
            render,
            serialise,
            checks,
            policies,
            objects: tree.objects().count(),
            files: files.len(),
            bytes: files.values().map(String::len).sum(),
        };
        best = Some(match best {
            None => run,
            Some(b) => Phases {
                parse: b.parse.min(run.parse),
                render: b.render.min(run.render),
                serialise: b.serialise.min(run.serialise),
                checks: b.checks.min(run.checks),
                policies: b.policies.min(run.policies),
                ..run
            },
        });
    }
    Ok(best.expect("at least one run"))
}
