//! `cargo xtask bench policy`: the policy bundle alone over a synthetic platform (objects shaped
//! like the generator's), against serialising the same objects to YAML in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use policies::{Bundle, CheckContext};

#[derive(clap::Args)]
pub struct BenchPolicy {
    /// Number of synthetic services (15 objects each).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Runs to take the best of.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl BenchPolicy {
    pub fn run(self) -> anyhow::Result<()> {
        println!("{}", measure(self.services, self.runs)?);
        Ok(())
    }
}

/// Figures from one benchmark run over a synthetic platform.
#[derive(Debug, Clone)]
struct Figures {
    services: usize,
    objects: usize,
    /// Parsing `rules.yaml` and compiling every expression once.
    compile: Duration,
    /// `Bundle::check` over all objects, best of the runs.
    check: Duration,
    /// Baseline measured in the same run: serialising the same objects to YAML, which `gen`
    /// does anyway to write the tree.
    yaml_baseline: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ratio = self.check.as_secs_f64() / self.yaml_baseline.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "policy check: {} services, {} objects",
            self.services, self.objects
        )?;
        writeln!(f, "  compile rules once:   {:>9.2?}", self.compile)?;
        writeln!(
            f,
            "  check all objects:    {:>9.2?}  ({:.1} µs per object)",
            self.check,
            self.check.as_secs_f64() * 1e6 / self.objects.max(1) as f64
        )?;
        write!(
            f,
            "  baseline (YAML dump): {:>9.2?}  (check = {ratio:.1}× baseline)",
            self.yaml_baseline
        )
    }
}

/// Times compiling the bundle and checking `services` synthetic services (best of `runs`).
fn measure(services: usize, runs: usize) -> anyhow::Result<Figures> {
    let objects = policies::testing::synthetic_objects(services);
    let start = Instant::now();
    let bundle = Bundle::builtin().context("the built-in policy bundle does not compile")?;
    let compile = start.elapsed();
    let context = CheckContext {
        environment: Some("production".into()),
        user: None,
    };
    let mut check = Duration::MAX;
    let mut yaml_baseline = Duration::MAX;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let report = bundle.check(&context, &objects, &[])?;
        check = check.min(start.elapsed());
        anyhow::ensure!(
            report.violations.is_empty(),
            "the synthetic objects must be compliant: {report}"
        );

        let start = Instant::now();
        let mut bytes = 0;
        for object in &objects {
            bytes += serde_yaml_ng::to_string(&object.object).map_or(0, |s| s.len());
        }
        yaml_baseline = yaml_baseline.min(start.elapsed());
        std::hint::black_box(bytes);
    }
    Ok(Figures {
        services,
        objects: objects.len(),
        compile,
        check,
        yaml_baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_platform_is_compliant_and_measured() {
        let figures = measure(2, 1).expect("the bundle compiles and the objects pass");
        assert_eq!(
            figures.objects,
            policies::testing::synthetic_objects(2).len()
        );
        assert!(figures.to_string().contains("check all objects"));
    }
}
