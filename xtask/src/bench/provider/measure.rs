//! Measuring the benchmarked servers: starting and killing them by pid, their CPU time and
//! peak RSS from /proc, and wrk's figures from its output.

use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xshell::{Shell, cmd};

use super::Figures;

/// Installs Debian's `wrk` when it is missing (the command is run as root on CI machines).
pub(super) fn ensure_wrk(sh: &Shell) -> anyhow::Result<()> {
    if cmd!(sh, "which wrk").quiet().ignore_stdout().run().is_ok() {
        return Ok(());
    }
    eprintln!("wrk is missing: installing it with apt-get");
    cmd!(sh, "apt-get install -y wrk")
        .run()
        .context("cannot install wrk: run `apt-get install -y wrk` (as root) and retry")
}

/// A port the kernel just handed out on loopback, free for the server about to start.
pub(super) fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A benchmarked server process, SIGKILLed by its pid when dropped, also on every error path.
pub(super) struct Server {
    pub(super) child: Child,
}

impl Server {
    pub(super) fn start(
        name: &str,
        command: &mut Command,
        addr: SocketAddr,
    ) -> anyhow::Result<Server> {
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
pub(super) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
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
pub(super) fn clock_ticks_per_sec(sh: &Shell) -> anyhow::Result<f64> {
    Ok(cmd!(sh, "getconf CLK_TCK").quiet().read()?.trim().parse()?)
}

/// Peak resident set size of a live process, from `VmHWM` in `/proc/<pid>/status`.
pub(super) fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
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

pub(super) fn parse_wrk(output: &str) -> anyhow::Result<Figures> {
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
