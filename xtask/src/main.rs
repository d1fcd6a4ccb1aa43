//! Developer CLI for the billing platform: `cargo xtask <command>`; parses flags and dispatches.

mod bench;
mod checkov;
mod ci;
mod crds;
mod dist;
mod docs;
mod e2e;
mod generate;
mod image;
mod kustomize;
mod policy;
mod publish;
#[cfg(test)]
mod testing;
mod verify;

use clap::{Parser, Subcommand};

/// Tasks for the billing platform workspace: generate and verify the Flux tree, check policies,
/// build the provider, benchmark, and run the whole CI gate.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render the platform spec into the Flux GitOps tree under `flux/`.
    Gen(generate::Gen),
    /// Check that `flux/` is current, builds with kustomize, and passes cross-object and policy checks.
    Verify(verify::Verify),
    /// Evaluate the policy bundle over manifests.
    Policy(policy::Policy),
    /// Build the fully static (musl) payment-provider binary.
    Dist(dist::Dist),
    /// Build the provider's OCI image in Rust, reproducibly; push, pin or check it.
    Image(image::Image),
    /// Push every directory Flux reads as the OCI artifact the tree pins by digest.
    Publish(publish::Publish),
    /// Benchmarks that print figures (never pass/fail on time).
    Bench(bench::Bench),
    /// Vendor the Flux CRD schemas the tree uses (from the e2e's pinned modules) into infra/crds/.
    Crds(crds::Crds),
    /// End to end on a real control plane built from Go modules, with Flux reconciling `flux/`.
    E2e(e2e::E2e),
    /// The whole CI gate: fmt, clippy, tests, verify, crds, checkov, dist, image, e2e (what `.ci/run`
    /// calls).
    Ci(ci::Ci),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(cmd) => cmd.run(),
        Command::Verify(cmd) => cmd.run(),
        Command::Policy(cmd) => cmd.run(),
        Command::Dist(cmd) => cmd.run(),
        Command::Image(cmd) => cmd.run(),
        Command::Publish(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Crds(cmd) => cmd.run(),
        Command::E2e(cmd) => cmd.run(),
        Command::Ci(cmd) => cmd.run(),
    }
}

/// The workspace root, so every command works from any directory inside the workspace.
pub(crate) fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
