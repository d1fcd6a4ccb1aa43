//! The HTTP/1.1 server: accepts connections, serves them with the handler, drains on shutdown.

use crate::handler::{App, handle};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

/// Connection-level timing, taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A client slower than this to send its request headers is disconnected.
    pub header: Duration,
    /// After the shutdown signal: how long to keep accepting while `/readyz` answers 503.
    pub drain_delay: Duration,
    /// After the listener closes: how long in-flight requests get before connections are dropped.
    pub shutdown: Duration,
}

/// Binds one socket per worker thread to `addr`, not yet listening (see [`TcpSocket::listen`]).
///
/// With several workers each socket sets `SO_REUSEPORT`, so the kernel spreads new connections
/// over the workers' listeners and no connection moves between threads (as Envoy's workers
/// listen on Linux); port 0 is resolved by the first socket and shared by the rest. One worker binds
/// plainly, as any server does.
///
/// `SO_REUSEPORT` would also let a second provider of the same user share a port silently; a
/// plain bind first makes a port that anything listens on an `AddrInUse` error, as it is for one
/// worker.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<TcpSocket>> {
    let socket = |addr: SocketAddr, reuseport: bool| -> io::Result<TcpSocket> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As tokio's own `TcpListener::bind`: a restarted server need not wait out TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(reuseport)?;
        socket.bind(addr)?;
        Ok(socket)
    };
    let shared = workers > 1;
    if shared && addr.port() != 0 {
        drop(socket(addr, false)?);
    }
    let first = socket(addr, shared)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(socket(bound, true)?);
    }
    Ok(sockets)
}

/// Serves `listener` until `signal` resolves, then flips readiness, stops accepting after the drain
/// delay and lets in-flight requests finish within the shutdown timeout.
///
/// `app` is an `Arc<App>`, or a `&'static App` for a process-long server: each request holds its
/// own copy of it, and a reference is copied without touching a count both workers write to.
pub async fn serve<A>(
    listener: TcpListener,
    app: A,
    timeouts: Timeouts,
    signal: impl Future<Output = ()>,
) where
    A: Deref<Target = App> + Clone + Send + Sync + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        // Every answer is a few headers and a body of tens of bytes: copied into one buffer and
        // sent with one write(2) rather than gathered from two by writev(2). Measured with
        // `cargo xtask bench provider`: 0.88 → 0.93 of bare hyper's requests/s.
        .writev(false);
    let graceful = GracefulShutdown::new();
    let stop = async {
        signal.await;
        app.begin_shutdown();
        tracing::info!(
            drain_delay_ms = timeouts.drain_delay.as_millis() as u64,
            "shutdown begun, readiness is 503"
        );
        tokio::time::sleep(timeouts.drain_delay).await;
    };
    tokio::pin!(stop);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Answers are one small write: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, req).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Header timeouts, malformed requests and resets: the client's problem, logged once.
                tracing::info!(%peer, %error, outcome = "connection_error", "connection closed");
            }
        });
    }

    drop(listener);
    tracing::info!("listener closed, draining in-flight requests");
    match tokio::time::timeout(timeouts.shutdown, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            timeout_ms = timeouts.shutdown.as_millis() as u64,
            "shutdown timeout elapsed, dropping remaining connections"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::{Request, StatusCode};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const ANTAEUS: &str =
        r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#;

    /// A server on 127.0.0.1:0 that is shut down (and awaited) when dropped or stopped.
    struct TestServer {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<()>>,
        client: Client<HttpConnector, Full<Bytes>>,
    }

    impl TestServer {
        async fn start(vars: &[(&str, &str)]) -> TestServer {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let config =
                Config::from_lookup(|name| map.get(name).cloned()).expect("test config is valid");
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let timeouts = Timeouts {
                header: config.header_timeout,
                drain_delay: config.drain_delay,
                shutdown: config.shutdown_timeout,
            };
            let app = Arc::new(App::new(&config, None));
            let task = tokio::spawn(serve(listener, app, timeouts, async {
                let _ = stopped.await;
            }));
            let client = Client::builder(TokioExecutor::new()).build_http();
            TestServer {
                addr,
                stop: Some(stop),
                task: Some(task),
                client,
            }
        }

        async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, hyper::HeaderMap, String) {
            let response = self.client.request(req).await.expect("the server answers");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (
                parts.status,
                parts.headers,
                String::from_utf8(body.to_vec()).unwrap(),
            )
        }

        async fn post(
            &self,
            path: &str,
            content_type: Option<&str>,
            body: &str,
        ) -> (StatusCode, String) {
            let mut req = Request::post(format!("http://{}{path}", self.addr));
            if let Some(content_type) = content_type {
                req = req.header("content-type", content_type);
            }
            let (status, _, body) = self
                .send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
                .await;
            (status, body)
        }

        /// Proof the server still serves: a fresh Antaeus charge gets a boolean result.
        async fn assert_still_serves(&self) {
            let (status, body) = self.post("/", Some("application/json"), ANTAEUS).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(json["result"].is_boolean(), "{body}");
        }

        /// Sends raw bytes on a new connection and returns everything the server wrote back.
        async fn raw(&self, request: &[u8]) -> String {
            let mut stream = TcpStream::connect(self.addr).await.unwrap();
            stream.write_all(request).await.unwrap();
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        }

        async fn stop(mut self) {
            let _ = self.stop.take().expect("stopped once").send(());
            let task = self.task.take().expect("stopped once");
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server stops in time")
                .unwrap();
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
            }
        }
    }

    /// `workers` listeners sharing one free loopback port.
    fn listening(workers: usize) -> Vec<TcpListener> {
        bind("127.0.0.1:0".parse().unwrap(), workers)
            .unwrap()
            .into_iter()
            .map(|socket| socket.listen(128).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn several_workers_share_one_port_and_the_kernel_spreads_connections() {
        let listeners = listening(3);
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(
            listeners
                .iter()
                .all(|l| l.local_addr().unwrap().port() == port)
        );
        // 48 connections over 3 listeners: one left without any has probability 3·(2/3)^48 ≈ 1e-8.
        let mut clients = Vec::new();
        for _ in 0..48 {
            clients.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        let mut accepted = Vec::new();
        for listener in &listeners {
            let mut count = 0;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
            {
                count += 1;
            }
            accepted.push(count);
        }
        assert_eq!(accepted.iter().sum::<usize>(), 48, "{accepted:?}");
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    #[tokio::test]
    async fn one_worker_binds_plainly_so_a_taken_port_is_an_error() {
        let taken = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        let addr = taken.local_addr().unwrap();
        let _listening = taken.listen(16).unwrap();
        let error = bind(addr, 1).expect_err("the port is taken");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        // Several workers set SO_REUSEPORT, which a plainly bound listener does not share either.
        assert!(bind(addr, 2).is_err());
    }

    #[tokio::test]
    async fn a_second_server_with_several_workers_cannot_share_a_port_silently() {
        let first = listening(2);
        let addr = first[0].local_addr().unwrap();
        for workers in [1, 2, 3] {
            let error = bind(addr, workers).expect_err("the port is taken");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{workers} workers");
        }
    }

    #[tokio::test]
    async fn antaeus_shaped_requests_in_any_key_order_are_charged() {
        let server = TestServer::start(&[]).await;
        for body in [
            ANTAEUS,
            r#"{"value":123456789012345678901234567890.123456789,"customer_id":7,"currency":{}}"#,
            r#"{"customer_id":1,"currency":"EUR","value":10}"#,
        ] {
            for content_type in [None, Some("application/json; charset=UTF-8")] {
                let (status, answer) = server.post("/", content_type, body).await;
                assert_eq!(status, StatusCode::OK, "{body}: {answer}");
                let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
                assert!(json["result"].is_boolean(), "{answer}");
            }
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn every_bad_body_gets_400_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        for (body, problem) in [
            (r#"{"currency":{},"value":1"#, "EOF while parsing"),
            ("\u{1}\u{2} not json", "invalid charge request"),
            (
                r#"{"currency":{},"value":1,"customer_id":"x"}"#,
                "invalid type",
            ),
            (
                r#"{"currency":{},"customer_id":1}"#,
                "missing field `value`",
            ),
            (
                r#"{"currency":{},"value":-5,"customer_id":1}"#,
                "value must be positive",
            ),
            (
                r#"{"currency":{},"value":0,"customer_id":1}"#,
                "value must be positive",
            ),
            (
                r#"{"currency":{},"value":1e999,"customer_id":1}"#,
                "value must be finite",
            ),
        ] {
            let (status, answer) = server
                .post("/v1/charges", Some("application/json"), body)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(answer.contains(problem), "{body}: {answer}");
            server.assert_still_serves().await;
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn a_non_json_content_type_gets_415_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        let (status, answer) = server.post("/", Some("text/xml"), "<charge/>").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_huge_body_gets_413_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        let huge = format!(
            r#"{{"currency":"{}","value":1,"customer_id":1}}"#,
            "x".repeat(1 << 20)
        );
        let (status, _) = server.post("/", None, &huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // Chunked, so no length is declared up front: the limited read must catch it.
        let answer = server
            .raw(format!("POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n", 70_000, "y".repeat(70_000)).as_bytes())
            .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn wrong_methods_and_paths_get_405_and_404_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        let req = Request::get(format!("http://{}/v1/charges", server.addr))
            .body(Full::default())
            .unwrap();
        let (status, headers, _) = server.send(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "POST");
        server.assert_still_serves().await;
        let (status, _) = server.post("/nowhere", None, ANTAEUS).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn malformed_http_is_refused_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        let answer = server.raw(b"THIS IS NOT HTTP\r\n\r\n").await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
        let answer = server.raw(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_truncated_body_gets_400_and_the_server_still_serves() {
        let server = TestServer::start(&[]).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"currency\":{}")
            .await
            .unwrap();
        // The client gives up half way: its write side closes with the body incomplete.
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off_by_the_header_timeout() {
        let server = TestServer::start(&[("PROVIDER_HEADER_TIMEOUT", "200ms")]).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        assert!(
            closed.is_ok(),
            "the server closed the connection after the header timeout"
        );
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_body_is_cut_off_by_the_body_timeout() {
        let server = TestServer::start(&[("PROVIDER_BODY_TIMEOUT", "200ms")]).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn an_idempotent_retry_replays_over_http() {
        let server = TestServer::start(&[]).await;
        let charge = |key: &str, body: &str| {
            Request::post(format!("http://{}/v1/charges", server.addr))
                .header("idempotency-key", key)
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap()
        };
        let (_, _, first) = server.send(charge("inv-9", ANTAEUS)).await;
        for _ in 0..20 {
            assert_eq!(server.send(charge("inv-9", ANTAEUS)).await.2, first);
        }
        let (status, _, _) = server
            .send(charge("inv-9", &ANTAEUS.replace("42", "1")))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        server.assert_still_serves().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn probes_and_metrics_answer_over_http() {
        let server = TestServer::start(&[]).await;
        server.assert_still_serves().await;
        for (path, expected) in [
            ("/healthz", "ok"),
            ("/readyz", "ready"),
            ("/metrics", "provider_charges_total"),
        ] {
            let req = Request::get(format!("http://{}{path}", server.addr))
                .body(Full::default())
                .unwrap();
            let (status, _, body) = server.send(req).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains(expected), "{path}: {body}");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_answers_the_request_in_flight_and_then_refuses_connections() {
        let server = TestServer::start(&[]).await;
        let addr = server.addr;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = ANTAEUS.as_bytes();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..10]).await.unwrap();
        // Let the server read the head, so the request is truly in flight when shutdown begins.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = tokio::spawn(server.stop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
        stream.write_all(&body[10..]).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#"{"result":"#), "{answer}");
        stopping.await.unwrap();
    }
}
