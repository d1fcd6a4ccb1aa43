//! `cargo xtask bench provider`: the release provider against a do-nothing hyper ceiling, both
//! driven by `wrk` over loopback in the same run, printing throughput, latency, the ratio, the
//! provider's peak RSS and the static binary's size. Figures, not pass/fail.

use crate::dist;
use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xshell::{Shell, cmd};

/// What Antaeus sends, byte for byte.
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

/// Installs Debian's `wrk` when it is missing (the command is run as root on CI machines).
fn ensure_wrk(sh: &Shell) -> anyhow::Result<()> {
    if cmd!(sh, "which wrk").quiet().ignore_stdout().run().is_ok() {
        return Ok(());
    }
    eprintln!("wrk is missing: installing it with apt-get");
    cmd!(sh, "apt-get install -y wrk")
        .run()
        .context("cannot install wrk: run `apt-get install -y wrk` (as root) and retry")
}

/// A port the kernel just handed out on loopback, free for the server about to start.
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A benchmarked server process, SIGKILLed by its pid when dropped, also on every error path.
struct Server {
    child: Child,
}

impl Server {
    fn start(name: &str, command: &mut Command, addr: SocketAddr) -> anyhow::Result<Server> {
        // Logs go to /dev/null: the provider still formats its JSON line per request, which is
        // the real cost, without the bench filling a disk.
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the {name} server"))?;
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("the {name} server exited before listening on {addr}: {status}");
            }
            if Instant::now() > deadline {
                bail!("the {name} server did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time a live process has used, in clock ticks (`/proc/<pid>/stat` fields
/// 14 and 15, counted after the parenthesised command name, which may contain spaces).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("cannot read CPU times from /proc/{pid}/stat"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat` CPU times (100 on Linux).
fn clock_ticks_per_sec(sh: &Shell) -> anyhow::Result<f64> {
    Ok(cmd!(sh, "getconf CLK_TCK").quiet().read()?.trim().parse()?)
}

/// Peak resident set size of a live process, from `VmHWM` in `/proc/<pid>/status`.
fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/<pid>/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM has no value")?
        .parse()?;
    Ok(kib * 1024)
}

fn parse_wrk(output: &str) -> anyhow::Result<Figures> {
    if let Some(line) = output
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        bail!("the server answered errors under load ({})", line.trim());
    }
    let field = |prefix: &str| -> anyhow::Result<&str> {
        output
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no {prefix:?} line"))
    };
    let requests = output
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("no \"N requests in\" line")?;
    Ok(Figures {
        requests,
        cpu_us_per_request: 0.0,
        requests_per_sec: field("Requests/sec:")?.parse()?,
        p50_ms: latency_ms(field("50%")?)?,
        p99_ms: latency_ms(field("99%")?)?,
    })
}

/// wrk writes latencies like `412.00us`, `1.20ms` or `2.01s`.
fn latency_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("latency without unit")?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => bail!("unknown latency unit {unit:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:9000/v1/charges
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.12us  301.55us  12.05ms   88.20%
    Req/Sec    51.23k     2.10k   55.00k    70.00%
  Latency Distribution
     50%  580.00us
     75%  700.00us
     90%  850.00us
     99%    1.52ms
  1019876 requests in 10.00s, 98.23MB read
Requests/sec: 101987.60
Transfer/sec:      9.82MB
";

    #[test]
    fn wrk_output_yields_throughput_and_percentiles() {
        let figures = parse_wrk(WRK).unwrap();
        assert_eq!(figures.requests_per_sec, 101987.60);
        assert_eq!(figures.requests, 1019876);
        assert!((figures.p50_ms - 0.58).abs() < 1e-9);
        assert!((figures.p99_ms - 1.52).abs() < 1e-9);
    }

    #[test]
    fn error_answers_under_load_fail_the_bench() {
        let output = WRK.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(
            parse_wrk(&output)
                .unwrap_err()
                .to_string()
                .contains("Non-2xx or 3xx responses: 12")
        );
    }

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

    #[test]
    fn cpu_times_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (payment (prov) x) S 1 4242 4242 0 -1 4194560 310 0 0 0 1234 567 0 0 20 0 3 0 99 7000000 600 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_cpu_ticks("4242 (truncated"), None);
        // This process's own line parses too.
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn latencies_convert_every_wrk_unit_to_milliseconds() {
        assert_eq!(latency_ms("250.00us").unwrap(), 0.25);
        assert_eq!(latency_ms("2.00s").unwrap(), 2000.0);
        assert!(latency_ms("3.00parsecs").is_err());
    }
}
