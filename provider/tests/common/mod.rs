//! What the loopback, process and client tests share: the sample charge, the configuration from
//! pairs, a provider served in this process on 127.0.0.1:0, the built binary as a process, hyper's
//! client and raw TCP, and a canned peer that records what a client sends.

#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use provider::{App, Config, Timeouts};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The sample charge: stock Antaeus's body, sent with its `Content-Type`.
pub use provider::ANTAEUS_BODY;
pub const CONTENT_TYPE: &str = "application/json";

/// The built `payment-provider` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_payment-provider");

/// A configuration from `(variable, value)` pairs; anything else at its default.
pub fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from_pairs(pairs).expect("test config is valid")
}

/// A provider served in this process on 127.0.0.1:0 by a thread of its own with a single-threaded
/// runtime, as a worker serves; [`Server::stop`] (or dropping it) shuts it down and waits.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(pairs: &[(&str, &str)]) -> Server {
        let config = config(pairs);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("bound");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("registered");
                let app = Arc::new(App::new(&config, None));
                let signal = async {
                    let _ = stopped.await;
                };
                provider::serve(listener, app, Timeouts::from_config(&config), signal).await;
            });
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal, as SIGTERM does, without waiting for the drain.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has drained and returned.
    pub fn stop(mut self) {
        self.begin_stop();
        let thread = self.thread.take().expect("stopped once");
        thread
            .join()
            .expect("the server thread ends without panicking");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A status, headers and body as hyper's client read them.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the answer is JSON")
    }
}

/// Sends `req` with hyper's client on a runtime of its own and reads the whole answer.
pub fn send(req: Request<Full<Bytes>>) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(req).await.expect("the server answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).expect("answers are UTF-8"),
        }
    })
}

/// `POST path` with `body` and, if given, a `Content-Type`.
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Answer {
    let mut req = Request::post(format!("http://{addr}{path}"));
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    send(req.body(Full::new(body.into())).expect("a valid request"))
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .expect("a valid request"),
    )
}

/// Proof the server still serves: the sample charge gets `200` with a boolean result.
pub fn assert_still_serves(addr: SocketAddr) {
    let answer = post(addr, "/v1/charges", Some(CONTENT_TYPE), ANTAEUS_BODY);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.json()["result"].is_boolean(), "{}", answer.body);
}

/// A raw charge request for `path`: the sample's headers, `body` with its length, then close.
pub fn raw_charge(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nhost: provider\r\ncontent-type: {CONTENT_TYPE}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Sends raw bytes on a new connection and returns all the server wrote back before it closed
/// (or within 10 s).
pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    stream.write_all(request).expect("the request is sent");
    read_all(&mut stream)
}

/// Sends the rest of a request begun on `stream` and returns the whole answer.
pub fn finish(stream: &mut TcpStream, rest: &[u8]) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    stream.write_all(rest).expect("the rest is sent");
    read_all(stream)
}

/// Everything `stream` yields until the peer closes it, a reset, or the read timeout.
pub fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The built binary as a running provider on 127.0.0.1:0 (its address read from its
/// `listening` line), with every later stdout line in [`Process::lines`]; SIGKILLed by pid if a
/// test ends before it exits.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    pub lines: mpsc::Receiver<String>,
}

impl Process {
    pub fn start(pairs: &[(&str, &str)]) -> Process {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("PROVIDER_LISTEN", "127.0.0.1:0")
            .envs(pairs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the provider binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // Read for the whole run, so the pipe never fills and blocks the provider's logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let listening = lines
            .iter()
            .find(|line| line.contains(r#""message":"listening""#))
            .expect("the provider logs the address it listens on");
        let listening: serde_json::Value =
            serde_json::from_str(&listening).expect("log lines are JSON");
        let addr = listening["addr"]
            .as_str()
            .and_then(|addr| addr.parse().ok())
            .expect("the listening line has addr");
        Process { child, addr, lines }
    }

    /// The next stdout line, as JSON.
    pub fn next_line(&self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the provider logs a line");
        serde_json::from_str(&line).expect("one JSON object per line")
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} worked");
    }

    /// Waits for the process to exit by itself, failing after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
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

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the built binary to its end with only `pairs` in its environment.
pub fn run(args: &[&str], pairs: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(pairs.iter().copied())
        .output()
        .expect("the binary runs")
}

/// Standard error as text, checked to be exactly one line.
pub fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8(stderr.to_vec()).expect("stderr is UTF-8");
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    text
}

/// A peer on 127.0.0.1:0 that answers each of `connections` connections, one after another, with
/// `response` (or, for `None`, reads and never answers) and hands over each request's bytes.
pub struct Canned {
    pub addr: SocketAddr,
    pub requests: mpsc::Receiver<Vec<u8>>,
}

impl Canned {
    pub fn start(response: Option<&'static str>, connections: usize) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = listener.local_addr().expect("bound");
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = read_request(&mut stream);
                let _ = tx.send(request);
                match response {
                    Some(response) => {
                        let _ = stream.write_all(response.as_bytes());
                    }
                    // Silent: hold the connection until the client gives up and closes it.
                    None => {
                        let _ = stream.read(&mut [0; 1]);
                    }
                }
            }
        });
        Canned { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn request(&self) -> String {
        let bytes = self
            .requests
            .recv_timeout(Duration::from_secs(10))
            .expect("a request arrived");
        String::from_utf8(bytes).expect("the request is UTF-8")
    }
}

/// One request: its head up to the blank line, then as many bytes as `content-length` says.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                return request;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return request,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
}
