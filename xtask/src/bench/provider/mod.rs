//! `cargo xtask bench provider`: the release provider against a do-nothing hyper ceiling, both
//! driven by `wrk` over loopback in the same run, printing throughput, latency, the ratio, the
//! provider's peak RSS and the static binary's size. Figures, not pass/fail.

mod measure;

use crate::dist;
use anyhow::Context;
use measure::{
    Server, clock_ticks_per_sec, cpu_ticks, ensure_wrk, free_loopback_addr, parse_wrk,
    peak_rss_bytes,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use xshell::{Shell, cmd};

/// A charge body in the long, reordered form the provider must keep accepting (stock Antaeus
/// sends `{"currency":…,"customer_id":1,"value":263.94}`): the long value is the costlier parse.
const ANTAEUS_BODY: &str =
    r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#;

#[derive(clap::Args)]
pub struct BenchProvider {
    /// Seconds of measured load on each server per round (after a 2 s warm-up).
    #[arg(long, default_value_t = 4)]
    duration: u64,
    /// Rounds, each measuring the ceiling and then the provider: the ratio is the median of the
    /// rounds' ratios, so load from other processes on a shared machine hits both sides alike.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Concurrent keep-alive connections wrk holds open.
    #[arg(long, default_value_t = 64)]
    connections: u32,
}

/// One wrk run's figures.
#[derive(Debug)]
struct Figures {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests answered in the measured run, from wrk's `N requests in` line.
    requests: u64,
    /// The server's CPU time (user + system) per request in the measured run, in microseconds.
    cpu_us_per_request: f64,
}

impl BenchProvider {
    pub fn run(self) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        sh.change_dir(crate::project_root());
        ensure_wrk(&sh)?;
        let dir = dist::build_release(&sh, &["--bin", "payment-provider", "--example", "ceiling"])?;
        let provider_bin = dir.join("payment-provider");
        let ceiling_bin = dir.join("examples").join("ceiling");
        dist::check_static(&sh, &provider_bin)?;
        let binary_size = dist::file_size(&provider_bin)?;

        let scratch = sh.create_temp_dir()?;
        let script = scratch.path().join("antaeus.lua");
        let body = ANTAEUS_BODY.replace('"', "\\\"");
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = \"{body}\"\nwrk.headers[\"Content-Type\"] = \"application/json; charset=UTF-8\"\n"
            ),
        )?;
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .to_string();

        // The ceiling, the provider as shipped (one JSON access line per request), the provider
        // with access lines off (what the logging costs), and the ceiling serving the provider's
        // way, one runtime and listener per CPU (what the provider's work alone costs).
        let ceiling_addr = free_loopback_addr()?;
        let mut ceiling = Command::new(&ceiling_bin);
        ceiling.arg(ceiling_addr.to_string());
        let per_worker_addr = free_loopback_addr()?;
        let mut per_worker = Command::new(&ceiling_bin);
        per_worker.args([per_worker_addr.to_string().as_str(), "--per-worker"]);
        let provider_addr = free_loopback_addr()?;
        let mut provider = Command::new(&provider_bin);
        provider
            .env_clear()
            .env("PROVIDER_LISTEN", provider_addr.to_string());
        let quiet_addr = free_loopback_addr()?;
        let mut quiet = Command::new(&provider_bin);
        quiet
            .env_clear()
            .env("PROVIDER_LISTEN", quiet_addr.to_string())
            .env("PROVIDER_LOG", "warn");
        let servers = [
            (
                "ceiling (bare hyper)",
                Server::start("ceiling", &mut ceiling, ceiling_addr)?,
                ceiling_addr,
            ),
            (
                "payment-provider",
                Server::start("provider", &mut provider, provider_addr)?,
                provider_addr,
            ),
            (
                "provider, PROVIDER_LOG=warn",
                Server::start("provider", &mut quiet, quiet_addr)?,
                quiet_addr,
            ),
            (
                "ceiling, per worker",
                Server::start("ceiling", &mut per_worker, per_worker_addr)?,
                per_worker_addr,
            ),
        ];

        let mut rounds: [Vec<Figures>; 4] = Default::default();
        for round in 1..=self.rounds.max(1) {
            let mut line = format!("round {round}:");
            for ((name, server, addr), figures) in servers.iter().zip(&mut rounds) {
                let measured = self.drive(&sh, &script, &threads, *addr, server.child.id())?;
                line.push_str(&format!(
                    " {name} {:.0} req/s, {:.2} µs CPU/req;",
                    measured.requests_per_sec, measured.cpu_us_per_request
                ));
                figures.push(measured);
            }
            println!("{}", line.trim_end_matches(';'));
        }
        let peak_rss = peak_rss_bytes(servers[1].1.child.id())?;
        drop(servers);
        let provider_ratio = median_ratio(&rounds[1], &rounds[0]);
        let quiet_ratio = median_ratio(&rounds[2], &rounds[0]);
        let provider_cpu_ratio = median_cpu_ratio(&rounds[0], &rounds[1]);
        let quiet_cpu_ratio = median_cpu_ratio(&rounds[0], &rounds[2]);
        let work_ratio = median_ratio(&rounds[1], &rounds[3]);
        let work_cpu_ratio = median_cpu_ratio(&rounds[3], &rounds[1]);
        let [ceiling, provider, quiet, per_worker] = rounds.map(best);

        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!();
        println!(
            "provider bench: wrk, {} connections, {} threads, {} rounds of {} s per server (best round shown), POST of the Antaeus body over 127.0.0.1",
            self.connections,
            threads,
            self.rounds.max(1),
            self.duration
        );
        println!(
            "{:<28} {:>12} {:>10} {:>10} {:>14}",
            "server", "requests/s", "p50 ms", "p99 ms", "CPU µs/req"
        );
        for (name, f) in [
            ("ceiling (bare hyper)", &ceiling),
            ("payment-provider", &provider),
            ("provider, PROVIDER_LOG=warn", &quiet),
            ("ceiling, per worker", &per_worker),
        ] {
            println!(
                "{name:<28} {:>12.0} {:>10.3} {:>10.3} {:>14.2}",
                f.requests_per_sec, f.p50_ms, f.p99_ms, f.cpu_us_per_request
            );
        }
        println!(
            "ratio provider/ceiling:      {provider_ratio:.3} (median of the rounds' ratios; goal >= 0.9)"
        );
        println!("  without access log lines:  {quiet_ratio:.3}");
        println!(
            "CPU per request, ceiling/provider: {provider_cpu_ratio:.3} (median; {quiet_cpu_ratio:.3} without access lines)"
        );
        println!(
            "against the per-worker ceiling (the provider's work alone): {work_ratio:.3} requests/s, {work_cpu_ratio:.3} CPU per request"
        );
        println!(
            "provider peak RSS:           {:.2} MiB (VmHWM; goal < 10 MiB)",
            mib(peak_rss)
        );
        println!(
            "static binary size:          {:.2} MiB ({binary_size} bytes; goal < 3 MiB)",
            mib(binary_size)
        );
        Ok(())
    }

    /// Warms `addr` up for 2 s, then measures it for the configured duration.
    /// Also reads the server's CPU time around the measured run: a steadier figure than requests/s
    /// when other processes take turns on the same cores.
    fn drive(
        &self,
        sh: &Shell,
        script: &Path,
        threads: &str,
        addr: SocketAddr,
        pid: u32,
    ) -> anyhow::Result<Figures> {
        let url = format!("http://{addr}/v1/charges");
        let connections = self.connections.to_string();
        let duration = format!("{}s", self.duration);
        cmd!(sh, "wrk -t{threads} -c{connections} -d2s -s {script} {url}")
            .quiet()
            .ignore_stdout()
            .run()?;
        let cpu_before = cpu_ticks(pid)?;
        let output = cmd!(
            sh,
            "wrk -t{threads} -c{connections} -d{duration} --latency -s {script} {url}"
        )
        .read()?;
        let cpu_ticks = cpu_ticks(pid)? - cpu_before;
        let mut figures =
            parse_wrk(&output).with_context(|| format!("cannot read wrk's output:\n{output}"))?;
        figures.cpu_us_per_request =
            cpu_ticks as f64 * 1e6 / clock_ticks_per_sec(sh)? / figures.requests.max(1) as f64;
        Ok(figures)
    }
}

/// The round with the most requests per second.
fn best(rounds: Vec<Figures>) -> Figures {
    rounds
        .into_iter()
        .max_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec))
        .expect("at least one round ran")
}

/// The median over rounds of `server` requests/s divided by `baseline` requests/s in the same round.
fn median_ratio(server: &[Figures], baseline: &[Figures]) -> f64 {
    median_of_ratios(server, baseline, |f| f.requests_per_sec)
}

/// The median over rounds of `baseline` CPU per request divided by `server` CPU per request.
fn median_cpu_ratio(baseline: &[Figures], server: &[Figures]) -> f64 {
    median_of_ratios(baseline, server, |f| f.cpu_us_per_request)
}

/// The median over paired rounds of `figure(top) / figure(bottom)`.
fn median_of_ratios(top: &[Figures], bottom: &[Figures], figure: fn(&Figures) -> f64) -> f64 {
    median(
        top.iter()
            .zip(bottom)
            .map(|(t, b)| figure(t) / figure(b))
            .collect(),
    )
}

fn median(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    if ratios.len() % 2 == 1 {
        ratios[mid]
    } else {
        (ratios[mid - 1] + ratios[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_paired_rounds() {
        let figures = |rps: &[f64]| -> Vec<Figures> {
            rps.iter()
                .map(|&requests_per_sec| Figures {
                    requests: 0,
                    cpu_us_per_request: 0.0,
                    requests_per_sec,
                    p50_ms: 0.0,
                    p99_ms: 0.0,
                })
                .collect()
        };
        let baseline = figures(&[100.0, 200.0, 100.0]);
        assert_eq!(median_ratio(&figures(&[90.0, 100.0, 95.0]), &baseline), 0.9);
        assert_eq!(median_ratio(&figures(&[50.0, 200.0]), &baseline[..2]), 0.75);
        // CPU per request: the baseline's over the server's, so cheaper-is-higher like requests/s.
        let cpu = |us: &[f64]| -> Vec<Figures> {
            us.iter()
                .map(|&cpu_us_per_request| Figures {
                    cpu_us_per_request,
                    ..figures(&[0.0]).remove(0)
                })
                .collect()
        };
        assert_eq!(
            median_cpu_ratio(&cpu(&[6.0, 6.0, 5.0]), &cpu(&[8.0, 7.5, 10.0])),
            0.75
        );
    }
}
