//! `payment-provider charge` as a process: against a real provider, a closed port, peers that
//! answer wrongly or never, the request's bytes on the wire, and a slow charge across SIGTERM.

mod common;

use common::{ANTAEUS_BODY, Canned, Process, Server, one_line, run};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The JSON lines the client printed.
fn lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(stdout.to_vec())
        .expect("stdout is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn charges_to_a_real_provider_print_200_and_the_result_and_exit_zero() {
    let server = Server::start(&[]);
    let url = server.url("/v1/charges");
    let output = run(&["charge", &url, "--count", "3", "--interval", "10ms"], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    let lines = lines(&output.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["status"], 200, "{line}");
        let body: serde_json::Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert!(body["result"].is_boolean(), "{line}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    }
    server.stop();
}

#[test]
fn the_url_defaults_to_payment_provider_endpoint_and_host_names_resolve() {
    let server = Server::start(&[("PROVIDER_SUCCESS_RATE", "1")]);
    let endpoint = format!("http://localhost:{}/", server.addr.port());
    let output = run(&["charge"], &[("PAYMENT_PROVIDER_ENDPOINT", &endpoint)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(lines(&output.stdout)[0]["body"], r#"{"result":true}"#);
    server.stop();
}

#[test]
fn a_closed_port_fails_with_one_line_naming_the_url_and_the_refusal() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/charges", closed.local_addr().unwrap());
    drop(closed);
    let output = run(&["charge", &url], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = one_line(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "payment-provider charge: POST {url}: cannot connect: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    let line = &lines(&output.stdout)[0];
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{line}"
    );
    assert!(line.get("status").is_none(), "{line}");

    let output = run(&["charge", &url, "--count", "2"], &[]);
    let stderr = one_line(&output.stderr);
    assert!(
        stderr.contains("2 of 2 charges failed; the first, #1: cannot connect"),
        "{stderr}"
    );
}

#[test]
fn an_answer_antaeus_could_not_read_fails_naming_it() {
    for (response, problem) in [
        (
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"result\":true}",
            "answered 500 Internal Server Error: {\"result\":true}",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            "answered 200 without a JSON boolean \"result\": ok",
        ),
    ] {
        let peer = Canned::start(Some(response), 1);
        let url = peer.url("/");
        let output = run(&["charge", &url], &[]);
        assert_eq!(output.status.code(), Some(1), "{response}");
        let stderr = one_line(&output.stderr);
        assert!(
            stderr.contains(&url) && stderr.contains(problem),
            "{stderr}"
        );
    }
}

#[test]
fn a_peer_that_never_answers_fails_after_the_timeout() {
    let peer = Canned::start(None, 1);
    let output = run(&["charge", &peer.url("/"), "--timeout", "300ms"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = one_line(&output.stderr);
    assert!(stderr.contains("no answer within 300ms"), "{stderr}");
}

/// DESIGN.md's wire facts of stock Antaeus (khttp + org.json): `POST <path> HTTP/1.1`,
/// `Content-Type: application/json` without charset, `Accept: */*`, the body with its length.
/// The client's own `User-Agent` names it; it sends no `Accept-Encoding`, as it decodes none.
#[test]
fn the_default_request_is_stock_antaeus_on_the_wire() {
    let peer = Canned::start(
        Some("HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"result\":true}"),
        1,
    );
    let endpoint = peer.url("/v1/charges");
    let output = run(&["charge"], &[("PAYMENT_PROVIDER_ENDPOINT", &endpoint)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let request = peer.request();
    let (head, body) = request.split_once("\r\n\r\n").expect("a head and a body");
    assert_eq!(body, ANTAEUS_BODY);
    assert_eq!(body, r#"{"currency":{},"customer_id":1,"value":263.94}"#);
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("POST /v1/charges HTTP/1.1"));
    let mut headers: Vec<&str> = lines.collect();
    headers.sort_unstable();
    let host = format!("Host: {}", peer.addr);
    let user_agent = format!("User-Agent: payment-provider/{}", env!("CARGO_PKG_VERSION"));
    let mut expected = vec![
        "Accept: */*",
        "Content-Length: 46",
        "Content-Type: application/json",
        &host,
        &user_agent,
    ];
    expected.sort_unstable();
    assert_eq!(headers, expected);
}

#[test]
fn a_given_body_and_idempotency_key_are_sent_as_given() {
    let peer = Canned::start(
        Some("HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n{\"result\":false}"),
        1,
    );
    let body = r#"{"customer_id":7,"value":1,"currency":"EUR"}"#;
    let output = run(
        &[
            "charge",
            &peer.url("/"),
            "--body",
            body,
            "--idempotency-key=invoice-7",
        ],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "a declined charge is an answer: {output:?}"
    );
    let request = peer.request();
    assert!(
        request.contains("\r\nIdempotency-Key: invoice-7\r\n"),
        "{request}"
    );
    assert!(request.ends_with(&format!("\r\n\r\n{body}")), "{request}");
}

#[test]
fn help_and_bad_flags_speak_like_a_command_line_tool() {
    let output = run(&["charge", "--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let usage = String::from_utf8(output.stdout).unwrap();
    assert!(
        usage.contains("usage: payment-provider charge [URL] [options]"),
        "{usage}"
    );
    for flag in [
        "--body",
        "--idempotency-key",
        "--timeout",
        "--count",
        "--interval",
        "--slow-body",
    ] {
        assert!(usage.contains(flag), "{flag} in {usage}");
    }
    for argv in [
        &["charge", "--bogus"][..],
        &["charge", "--count", "none"],
        &["charge", "ftp://x"],
    ] {
        let output = run(argv, &[]);
        assert_eq!(output.status.code(), Some(2), "{argv:?}");
        assert!(one_line(&output.stderr).starts_with("payment-provider charge: "));
        assert!(output.stdout.is_empty());
    }
}

/// What the e2e's drain assertion does with a real pod: a charge whose body is still arriving
/// when SIGTERM comes, answered after the listener has closed.
#[test]
fn a_slow_charge_in_flight_across_sigterm_is_answered() {
    let mut provider = Process::start(&[
        ("PROVIDER_SUCCESS_RATE", "1"),
        ("PROVIDER_DRAIN_DELAY", "200ms"),
    ]);
    let client = Command::new(common::BIN)
        .args(["charge", &format!("http://{}/v1/charges", provider.addr)])
        .args(["--slow-body", "1500ms", "--timeout", "10s"])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    // Connected and half the body sent well within this; the rest waits 1.5 s.
    std::thread::sleep(Duration::from_millis(400));
    provider.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(provider.addr).is_err(),
        "the listener closed while the charge was in flight"
    );
    let output = client.wait_with_output().expect("the client ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(lines(&output.stdout)[0]["body"], r#"{"result":true}"#);
    let status = provider.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
}
