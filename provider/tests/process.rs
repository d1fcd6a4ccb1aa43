//! The built `payment-provider` binary as a real process: config errors, `--help`, and SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_payment-provider");
const ANTAEUS: &str = r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#;

/// A running provider, SIGKILLed by pid if the test fails before it exits on its own.
struct Provider {
    child: Child,
    addr: SocketAddr,
}

impl Provider {
    fn start(vars: &[(&str, &str)]) -> Provider {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("PROVIDER_LISTEN", "127.0.0.1:0")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the provider binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep reading for the whole run so the pipe never fills and blocks the provider's logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut provider = Provider {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = rx
            .iter()
            .find(|line| line.contains(r#""message":"listening""#))
            .expect("the provider logs the address it listens on");
        let log: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
        provider.addr = log["addr"]
            .as_str()
            .expect("the listening line has addr")
            .parse()
            .unwrap();
        provider
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} worked");
    }

    /// Waits for the process to exit by itself, failing after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the provider did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One request on a fresh connection; returns the whole raw answer.
fn request(addr: SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the provider accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn get(addr: SocketAddr, path: &str) -> String {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: provider\r\nconnection: close\r\n\r\n"),
    )
}

#[test]
fn a_request_in_flight_at_sigterm_is_answered_and_the_process_exits_zero() {
    // One worker (a pod of one CPU or less) and several sharing the port.
    for workers in ["1", "3"] {
        request_in_flight_at_sigterm(workers);
    }
}

fn request_in_flight_at_sigterm(workers: &str) {
    let drain = Duration::from_millis(700);
    let shutdown = Duration::from_secs(5);
    let mut provider = Provider::start(&[
        ("PROVIDER_SUCCESS_RATE", "1"),
        ("PROVIDER_DRAIN_DELAY", "700ms"),
        ("PROVIDER_SHUTDOWN_TIMEOUT", "5s"),
        ("PROVIDER_WORKERS", workers),
    ]);
    assert!(get(provider.addr, "/readyz").starts_with("HTTP/1.1 200"));

    // A charge whose body arrives slowly: the head and half the body now, the rest after SIGTERM.
    let mut in_flight = TcpStream::connect(provider.addr).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/charges HTTP/1.1\r\nhost: provider\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\n\r\n",
        ANTAEUS.len()
    );
    let (first, rest) = ANTAEUS.split_at(20);
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    provider.signal("TERM");
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let readiness = get(provider.addr, "/readyz");
    assert!(
        readiness.starts_with("HTTP/1.1 503"),
        "readiness flips during the drain delay: {readiness}"
    );

    std::thread::sleep((drain + Duration::from_millis(300)).saturating_sub(signalled.elapsed()));
    assert!(
        TcpStream::connect(provider.addr).is_err(),
        "the listener is closed after the drain delay"
    );

    in_flight.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"result":true}"#), "{answer}");

    let status = provider.wait_exit(drain + shutdown);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn a_request_that_never_finishes_cannot_hold_shutdown_past_its_timeout() {
    let mut provider = Provider::start(&[
        ("PROVIDER_SHUTDOWN_TIMEOUT", "300ms"),
        ("PROVIDER_BODY_TIMEOUT", "1m"),
    ]);
    let mut stuck = TcpStream::connect(provider.addr).unwrap();
    stuck
        .write_all(b"POST / HTTP/1.1\r\nhost: provider\r\ncontent-length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    provider.signal("INT");
    let status = provider.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(300),
        "it waited for the request first"
    );
}

#[test]
fn an_invalid_success_rate_stops_the_process_at_once_with_one_line() {
    for (name, value) in [
        ("PROVIDER_SUCCESS_RATE", "1.5"),
        ("PROVIDER_LISTEN", "not-an-address"),
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("payment-provider: {name}=\"{value}\" is invalid")),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn an_address_in_use_fails_with_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .env_clear()
        .env("PROVIDER_LISTEN", &addr)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for line in [
        "PROVIDER_LISTEN",
        "PROVIDER_SUCCESS_RATE",
        "PROVIDER_SEED",
        "PROVIDER_SHUTDOWN_TIMEOUT",
        "PROVIDER_LOG",
    ] {
        assert!(help.contains(line), "{line} in {help}");
    }
    assert!(help.contains("(default 0.0.0.0:9000)"), "{help}");
    assert!(help.contains("(default 0.5)"), "{help}");
}

#[test]
fn every_outcome_is_logged_as_one_json_line() {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PROVIDER_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let guard = Provider {
        child,
        addr: "0.0.0.0:0".parse().unwrap(),
    };
    let listening: serde_json::Value = serde_json::from_str(&lines.next().unwrap()).unwrap();
    let addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let charge = format!(
        "POST / HTTP/1.1\r\nhost: p\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{ANTAEUS}",
        ANTAEUS.len()
    );
    request(addr, &charge);
    request(
        addr,
        "POST / HTTP/1.1\r\nhost: p\r\nconnection: close\r\ncontent-length: 1\r\n\r\n{",
    );
    let logged: Vec<serde_json::Value> = lines
        .by_ref()
        .take(2)
        .map(|l| serde_json::from_str(&l).expect("one JSON object per line"))
        .collect();
    assert_eq!(logged[0]["status"], 200);
    assert_eq!(logged[0]["customer_id"], 42);
    assert!(
        logged[0]["outcome"] == "charged" || logged[0]["outcome"] == "declined",
        "{}",
        logged[0]
    );
    assert_eq!(logged[1]["status"], 400);
    assert_eq!(logged[1]["outcome"], "bad_request");
    assert!(
        logged[1]["error"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{}",
        logged[1]
    );
    drop(guard);
}
