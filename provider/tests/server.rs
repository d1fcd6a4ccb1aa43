//! The server on 127.0.0.1:0 through hyper's client and raw TCP: every class of bad input is
//! answered and followed by a good charge, timeouts cut slow clients off, shutdown answers the
//! request in flight.

mod common;

use bytes::Bytes;
use common::{
    ANTAEUS_BODY, CONTENT_TYPE, Server, assert_still_serves, exchange, finish, get, post,
    raw_charge, read_all, send,
};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn antaeus_bodies_stock_long_and_reordered_are_charged() {
    let server = Server::start(&[]);
    for body in [
        ANTAEUS_BODY,
        r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#,
        r#"{"value":123456789012345678901234567890.123456789,"customer_id":7,"currency":{}}"#,
        r#"{"customer_id":1,"currency":"EUR","value":10}"#,
    ] {
        for content_type in [
            None,
            Some(CONTENT_TYPE),
            Some("application/json; charset=UTF-8"),
        ] {
            let answer = post(server.addr, "/", content_type, body);
            assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.body);
            assert!(answer.json()["result"].is_boolean(), "{}", answer.body);
        }
    }
    server.stop();
}

#[test]
fn every_bad_body_gets_400_and_the_server_still_serves() {
    let server = Server::start(&[]);
    for (body, problem) in [
        (&br#"{"currency":{},"value":1"#[..], "EOF while parsing"),
        (b"\x01\x02 not json", "invalid charge request"),
        (
            br#"{"currency":{},"value":1,"customer_id":"x"}"#,
            "invalid type",
        ),
        (
            br#"{"currency":{},"customer_id":1}"#,
            "missing field `value`",
        ),
        (
            br#"{"currency":{},"value":-5,"customer_id":1}"#,
            "value must be positive",
        ),
        (
            br#"{"currency":{},"value":1e999,"customer_id":1}"#,
            "value must be finite",
        ),
        // Not UTF-8 and a lone surrogate, both where the provider reads nothing.
        (
            b"{\"currency\":\"\xff\xfe\",\"value\":1,\"customer_id\":1}",
            "invalid UTF-8 byte 0xff at line 1 column 14",
        ),
        (
            br#"{"currency":{},"customer_id":1,"value":1,"memo":"\udead"}"#,
            "lone surrogate \\\\udead",
        ),
    ] {
        let answer = post(
            server.addr,
            "/v1/charges",
            Some(CONTENT_TYPE),
            Bytes::from_static(body),
        );
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(answer.body.contains(problem), "{body:?}: {}", answer.body);
        assert_still_serves(server.addr);
    }
    server.stop();
}

/// Each raw request and the start of its answer; after each, a good charge is still charged.
#[test]
fn every_bad_request_gets_its_status_and_the_server_still_serves() {
    let server = Server::start(&[]);
    let huge_chunk = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n",
        70_000,
        "y".repeat(70_000)
    );
    for (request, answer) in [
        (
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: 9\r\n\r\n<charge/>".to_vec(),
            "HTTP/1.1 415",
        ),
        // Declared too large: answered at once, the body never read.
        (
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n".to_vec(),
            "HTTP/1.1 413",
        ),
        // Chunked, so no length is declared up front: the limited read must catch it.
        (huge_chunk.into_bytes(), "HTTP/1.1 413"),
        (
            b"GET /v1/charges HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            "HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\nallow: POST\r\n",
        ),
        (raw_charge("/nowhere", ANTAEUS_BODY.as_bytes()), "HTTP/1.1 404"),
        (b"THIS IS NOT HTTP\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_vec(),
            "HTTP/1.1 400",
        ),
    ] {
        let got = exchange(server.addr, &request);
        assert!(
            got.starts_with(answer),
            "{:?} got {got:?}",
            String::from_utf8_lossy(&request[..40.min(request.len())])
        );
        assert_still_serves(server.addr);
    }
    server.stop();
}

#[test]
fn a_truncated_body_gets_400_and_the_server_still_serves() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"currency\":{}")
        .unwrap();
    // The client gives up half way: its write side closes with the body incomplete.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answer = read_all(&mut stream);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_still_serves(server.addr);
    server.stop();
}

#[test]
fn slow_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let server = Server::start(&[
        ("PROVIDER_HEADER_TIMEOUT", "200ms"),
        ("PROVIDER_BODY_TIMEOUT", "200ms"),
    ]);
    // Headers that never end: the connection is closed without an answer.
    let answer = exchange(server.addr, b"POST / HTTP/1.1\r\nhost: x\r\n");
    assert!(answer.is_empty(), "{answer}");
    // A body that never ends: 408, and the connection closed.
    let answer = exchange(
        server.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_still_serves(server.addr);
    server.stop();
}

#[test]
fn an_idempotent_retry_replays_over_http() {
    let server = Server::start(&[]);
    let charge = |key: &str, body: &str| {
        send(
            Request::post(server.url("/v1/charges"))
                .header("content-type", CONTENT_TYPE)
                .header("idempotency-key", key)
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
    };
    let first = charge("inv-9", ANTAEUS_BODY).body;
    for _ in 0..20 {
        assert_eq!(charge("inv-9", ANTAEUS_BODY).body, first);
    }
    let other = ANTAEUS_BODY.replace("263.94", "263.95");
    assert_eq!(charge("inv-9", &other).status, StatusCode::CONFLICT);
    assert_still_serves(server.addr);
    server.stop();
}

#[test]
fn probes_and_metrics_answer_over_http() {
    let server = Server::start(&[]);
    assert_still_serves(server.addr);
    for (path, expected) in [
        ("/healthz", "ok"),
        ("/readyz", "ready"),
        ("/metrics", "provider_charges_total"),
    ] {
        let answer = get(server.addr, path);
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(answer.body.contains(expected), "{path}: {}", answer.body);
    }
    server.stop();
}

#[test]
fn shutdown_answers_the_request_in_flight_and_then_refuses_connections() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let request = raw_charge("/", ANTAEUS_BODY.as_bytes());
    let (head_and_some, rest) = request.split_at(request.len() - 10);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head_and_some).unwrap();
    // Let the server read the head, so the request is truly in flight when shutdown begins.
    std::thread::sleep(Duration::from_millis(100));
    server.begin_stop();
    std::thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    let answer = finish(&mut stream, rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"result":"#), "{answer}");
    server.stop();
}
