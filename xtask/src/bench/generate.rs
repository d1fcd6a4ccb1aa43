//! PLACEHOLDER while the workspace is being built: replaced by the real command.

#[derive(clap::Args)]
pub struct BenchGen {}

impl BenchGen {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("not built yet")
    }
}
