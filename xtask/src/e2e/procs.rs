//! Child processes of the run: started with their output in a log file, stopped by pid on every
//! way out (normal return, error, panic through Drop; Ctrl-C and SIGTERM through a signal handler).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Pids still running, shared with the signal handler (which cannot reach the guard's stack).
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HANDLER: OnceLock<()> = OnceLock::new();

/// Owns every process the run started; dropping it stops them (SIGTERM, then SIGKILL).
pub struct Processes {
    children: Vec<Started>,
    logs: PathBuf,
}

struct Started {
    name: String,
    child: Child,
}

impl Processes {
    /// A guard writing logs to `logs/`, with the Ctrl-C/SIGTERM handler installed once.
    pub fn new(logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        if HANDLER.set(()).is_ok() {
            ctrlc::set_handler(|| {
                eprintln!("e2e: interrupted: stopping the processes it started");
                let pids = RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
                terminate(&pids);
                std::process::exit(130);
            })
            .context("installing the Ctrl-C handler")?;
        }
        Ok(Self {
            children: Vec::new(),
            logs: logs.to_path_buf(),
        })
    }

    /// Starts `program args…` with stdout and stderr in `logs/<name>.log`; returns its pid.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
        let log = self.log_path(name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        RUNNING
            .lock()
            .expect("the pid list is never poisoned: no code panics while holding it")
            .push(child.id());
        let pid = child.id();
        self.children.push(Started {
            name: name.to_string(),
            child,
        });
        Ok(pid)
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Fails naming the process and its last log lines if one of them has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for started in &mut self.children {
            if let Ok(Some(status)) = started.child.try_wait() {
                let log = self.logs.join(format!("{}.log", started.name));
                return Err(anyhow::Error::new(Exited).context(format!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    started.name,
                    log.display(),
                    tail(&log, 20)
                )));
            }
        }
        Ok(())
    }

    /// Names of the processes started, in start order.
    pub fn names(&self) -> Vec<String> {
        self.children.iter().map(|s| s.name.clone()).collect()
    }

    /// The pid of the process started as `name` (the first, if several were).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.child.id())
    }
}

/// What a process has used so far, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time of all its threads.
    pub cpu: Duration,
    /// Peak resident set size (`VmHWM`), in bytes.
    pub peak_rss: u64,
}

/// The CPU time and peak RSS of a running process.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("reading {stat_path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("no utime/stime in {stat_path}"))?;
    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let peak_rss = peak_rss(&status).with_context(|| format!("no VmHWM in {status_path}"))?;
    // SAFETY: sysconf only reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Ok(Usage {
        cpu: Duration::from_secs_f64(ticks as f64 / per_second as f64),
        peak_rss,
    })
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields are
/// counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After `)`: field 3 (state) is the first; utime is field 14, the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` of a `/proc/<pid>/status` file, in bytes (the file says kB, meaning KiB).
fn peak_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

impl Drop for Processes {
    fn drop(&mut self) {
        let pids: Vec<u32> = self.children.iter().rev().map(|s| s.child.id()).collect();
        terminate(&pids);
        for started in &mut self.children {
            // Reap them so no zombie outlives the run.
            let _ = started.child.try_wait();
        }
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|pid| !pids.contains(pid));
        }
    }
}

/// SIGTERM every pid, wait up to five seconds, then SIGKILL what is left.
fn terminate(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    signal("-TERM", pids);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|pid| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
    if !left.is_empty() {
        signal("-KILL", &left);
    }
}

fn signal(sig: &str, pids: &[u32]) {
    // `kill(1)` rather than a libc dependency: one call per stop, not a hot path.
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// A pid is alive while /proc has it and it is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A loopback port nobody listens on right now (the kernel picks it; we release it at once).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Marks the error of a process that exited: waiting any longer cannot help.
#[derive(Debug)]
struct Exited;

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a process of the run exited")
    }
}

impl std::error::Error for Exited {}

/// Polls `check` until it returns `Ok(true)`, failing after `timeout` with the last error seen
/// (at once when a process of the run has exited).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = String::from("not ready");
    loop {
        match check() {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => {}
            Err(err) if err.downcast_ref::<Exited>().is_some() => return Err(err),
            Err(err) => last = format!("{err:#}"),
        }
        if started.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_stops_its_processes() {
        let dir = std::env::temp_dir().join(format!("e2e-procs-test-{}", std::process::id()));
        let mut procs = Processes::new(&dir).unwrap();
        procs
            .spawn("sleeper", Path::new("sleep"), &["60".to_string()], &[])
            .unwrap();
        let pid = procs.children[0].child.id();
        assert!(alive(pid));
        drop(procs);
        assert!(
            !alive(pid),
            "pid {pid} still runs after the guard was dropped"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_process_that_exited_is_reported_with_its_log() {
        let dir = std::env::temp_dir().join(format!("e2e-procs-exit-{}", std::process::id()));
        let mut procs = Processes::new(&dir).unwrap();
        procs
            .spawn("talker", Path::new("echo"), &["goodbye".to_string()], &[])
            .unwrap();
        let err = wait_until("talker to exit", Duration::from_secs(10), || {
            procs.check_alive().map(|()| false)
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("talker exited"), "{text}");
        assert!(text.contains("goodbye"), "{text}");
        drop(procs);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (kustomize (ctl) x) S 1 4242 4242 0 -1 4194560 1711 0 0 0 250 37 0 0 20 0 12 0 811 1286041600 17090 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn peak_rss_is_vm_hwm_in_bytes() {
        let status =
            "Name:\tsource-ctrl\nVmPeak:\t 1331052 kB\nVmHWM:\t   71680 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(peak_rss(status), Some(71680 * 1024));
        assert_eq!(peak_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        // Burn a little CPU so the tick counter has moved.
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let used = usage(std::process::id()).unwrap();
        assert!(x > 0);
        assert!(used.cpu > Duration::ZERO, "{used:?}");
        assert!(used.peak_rss > 1_000_000, "{used:?}");
        assert!(usage(u32::MAX).is_err());
    }

    #[test]
    fn waiting_gives_up_with_the_last_error() {
        let err = wait_until("nothing", Duration::from_millis(10), || {
            anyhow::bail!("still broken")
        })
        .unwrap_err();
        assert!(format!("{err}").contains("still broken"));
    }
}
