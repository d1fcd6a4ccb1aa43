//! `cargo xtask bench <what>`: benchmarks that print figures against a baseline measured in the same run.

mod flux;
pub(crate) mod generate;
mod image;
mod policy;
mod provider;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Drive the release provider binary over loopback against a do-nothing hyper ceiling.
    Provider(provider::BenchProvider),
    /// The whole `gen` and `verify` commands on synthetic specs of 1,000 and 10,000 services.
    Gen(generate::BenchGen),
    /// Flux at scale on the e2e's control plane with kwok: 100 and 1,000 services from one commit.
    Flux(flux::BenchFlux),
    /// The provider image's size and warm build time, and the same digest every time.
    Image(image::BenchImage),
    /// The policy bundle alone over a synthetic platform, against a YAML-dump baseline.
    Policy(policy::BenchPolicy),
}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        match self.what {
            What::Provider(cmd) => cmd.run(),
            What::Gen(cmd) => cmd.run(),
            What::Flux(cmd) => cmd.run(),
            What::Image(cmd) => cmd.run(),
            What::Policy(cmd) => cmd.run(),
        }
    }
}
