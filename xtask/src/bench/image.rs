//! `cargo xtask bench image`: the provider image's size against its goal and against the bare
//! binary, and a warm build's time split into cargo's no-op release build (the baseline any warm
//! command pays) and the image's own work (tar, gzip, digests, layout); every run's digest must
//! be the same.

use std::time::Duration;

use crate::image::{Created, build};

#[derive(clap::Args)]
pub struct BenchImage {
    /// Warm builds measured after one unmeasured build (which may compile).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

impl BenchImage {
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::project_root();
        let first = build(&root, Created::Epoch)?;
        let mut rows = Vec::new();
        for _ in 0..self.runs.max(1) {
            let built = build(&root, Created::Epoch)?;
            rows.push((
                built.cargo_time,
                built.assemble_time,
                built.written.manifest_digest,
            ));
        }
        println!(
            "image bench: {} warm builds of the production image (cargo xtask image, at the epoch)",
            rows.len()
        );
        println!(
            "{:<4} {:>22} {:>12}  digest",
            "run", "cargo build (no-op)", "assemble"
        );
        for (n, (cargo, assemble, digest)) in rows.iter().enumerate() {
            println!(
                "{:<4} {:>21.2}s {:>11.3}s  {digest}",
                n + 1,
                cargo.as_secs_f64(),
                assemble.as_secs_f64()
            );
        }
        let same = rows
            .iter()
            .all(|(_, _, d)| *d == first.written.manifest_digest);
        println!(
            "same digest every run (and as the unmeasured first build): {}",
            if same { "yes" } else { "NO" }
        );
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let cargo = median(rows.iter().map(|r| r.0).collect());
        let assemble = median(rows.iter().map(|r| r.1).collect());
        println!(
            "warm build: {:.2}s (median), of which cargo's no-op build {:.2}s and the image {:.3}s ({:.2}x the no-op build)",
            (cargo + assemble).as_secs_f64(),
            cargo.as_secs_f64(),
            assemble.as_secs_f64(),
            assemble.as_secs_f64() / cargo.as_secs_f64().max(1e-9)
        );
        let w = &first.written;
        let uncompressed: u64 = w.layers.iter().map(|l| l.uncompressed).sum();
        println!(
            "size: {} B compressed in all (manifest {} B, config {} B, layers {}), {uncompressed} B uncompressed; goal < {} B: {}",
            w.total_size(),
            w.manifest_size,
            w.config_size,
            w.layers
                .iter()
                .map(|l| format!("{} B", l.compressed))
                .collect::<Vec<_>>()
                .join(" + "),
            3 * 1024 * 1024 / 2,
            if w.total_size() < 3 * 1024 * 1024 / 2 {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "against the bare binary ({} B): compressed image {:.2}x, uncompressed layers {:.3}x (+{} B of base, headers and padding)",
            first.binary_size,
            w.total_size() as f64 / first.binary_size as f64,
            uncompressed as f64 / first.binary_size as f64,
            uncompressed - first.binary_size
        );
        anyhow::ensure!(
            same,
            "the image's digest changed between two builds of the same checkout"
        );
        Ok(())
    }
}
