//! PLACEHOLDER while the workspace is being built: replaced by the real command.

#[derive(clap::Args)]
pub struct E2e {}

impl E2e {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("not built yet")
    }
}
