//! The built `payment-provider` binary as a real process: config errors, `--help`, JSON log
//! lines, and SIGTERM.

mod common;

use common::{ANTAEUS_BODY, Process, exchange, finish, one_line, raw_charge, run};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    let mut provider = Process::start(&[
        ("PROVIDER_SUCCESS_RATE", "1"),
        ("PROVIDER_DRAIN_DELAY", "700ms"),
        ("PROVIDER_SHUTDOWN_TIMEOUT", "5s"),
        ("PROVIDER_WORKERS", workers),
    ]);
    let readyz = b"GET /readyz HTTP/1.1\r\nhost: provider\r\nconnection: close\r\n\r\n";
    assert!(exchange(provider.addr, readyz).starts_with("HTTP/1.1 200"));

    // A charge whose body arrives slowly: the head and half the body now, the rest after SIGTERM.
    let request = raw_charge("/v1/charges", ANTAEUS_BODY.as_bytes());
    let (first, rest) = request.split_at(request.len() - ANTAEUS_BODY.len() / 2);
    let mut in_flight = TcpStream::connect(provider.addr).unwrap();
    in_flight.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    provider.signal("TERM");
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let readiness = exchange(provider.addr, readyz);
    assert!(
        readiness.starts_with("HTTP/1.1 503"),
        "readiness flips during the drain delay: {readiness}"
    );

    std::thread::sleep((drain + Duration::from_millis(300)).saturating_sub(signalled.elapsed()));
    assert!(
        TcpStream::connect(provider.addr).is_err(),
        "the listener is closed after the drain delay"
    );

    let answer = finish(&mut in_flight, rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"result":true}"#), "{answer}");

    let status = provider.wait_exit(drain + shutdown);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn a_request_that_never_finishes_cannot_hold_shutdown_past_its_timeout() {
    let mut provider = Process::start(&[
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
fn an_invalid_variable_stops_the_process_at_once_with_one_line() {
    for (name, value) in [
        ("PROVIDER_SUCCESS_RATE", "1.5"),
        ("PROVIDER_LISTEN", "not-an-address"),
    ] {
        let output = run(&[], &[(name, value)]);
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = one_line(&output.stderr);
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
    let output = run(&[], &[("PROVIDER_LISTEN", &addr)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = one_line(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn an_unexpected_argument_exits_2_with_one_line() {
    let output = run(&["--listen"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = one_line(&output.stderr);
    assert!(
        stderr.contains("unexpected argument \"--listen\"") && stderr.contains("--help"),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_variable_with_its_default_and_the_charge_client() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for line in [
        "PROVIDER_LISTEN",
        "PROVIDER_SUCCESS_RATE",
        "PROVIDER_SEED",
        "PROVIDER_SHUTDOWN_TIMEOUT",
        "PROVIDER_LOG",
        "(default 0.0.0.0:9000)",
        "(default 0.5)",
        "payment-provider charge [URL] [options]",
    ] {
        assert!(help.contains(line), "{line} in {help}");
    }
}

#[test]
fn every_outcome_is_logged_as_one_json_line() {
    let provider = Process::start(&[]);
    exchange(provider.addr, &raw_charge("/", ANTAEUS_BODY.as_bytes()));
    exchange(provider.addr, &raw_charge("/", b"{"));
    let charged = provider.next_line();
    assert_eq!(charged["status"], 200);
    assert_eq!(charged["customer_id"], 1);
    assert!(
        charged["outcome"] == "charged" || charged["outcome"] == "declined",
        "{charged}"
    );
    let refused = provider.next_line();
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["outcome"], "bad_request");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{refused}"
    );
}
