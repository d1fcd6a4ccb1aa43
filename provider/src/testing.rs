//! Fixtures the unit tests share: an `App` from variable pairs, requests, calling the handler
//! without a socket, and an output that keeps what the log writes.

use crate::app::App;
use crate::config::Config;
use crate::handler::handle;
use crate::log::JsonLine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use std::io;
use std::sync::{Arc, Mutex};

/// The shared state for a configuration given as `(variable, value)` pairs, without a log.
pub(crate) fn app(pairs: &[(&str, &str)]) -> App {
    App::new(
        &Config::from_pairs(pairs).expect("test config is valid"),
        None,
    )
}

/// `POST path` with `body` and no headers.
pub(crate) fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .body(Full::new(body.into()))
        .expect("a valid request")
}

pub(crate) fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .body(Full::default())
        .expect("a valid request")
}

/// A charge to `/v1/charges` with an `Idempotency-Key`.
pub(crate) fn with_key(body: impl Into<Bytes>, key: &str) -> Request<Full<Bytes>> {
    let mut req = post("/v1/charges", body);
    req.headers_mut().insert(
        "idempotency-key",
        HeaderValue::from_str(key).expect("a valid header value"),
    );
    req
}

/// The status and the JSON body of the handler's answer.
pub(crate) async fn call(app: &App, req: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
    let response = handle(app, req).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a full body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&body).expect("every answer is JSON"),
    )
}

/// The status and the `error` message of an answer that refuses the request.
pub(crate) async fn refusal(app: &App, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let (status, body) = call(app, req).await;
    let error = body["error"]
        .as_str()
        .expect("a refusal has an error message");
    (status, error.to_owned())
}

/// An output that keeps what is written, for reading back as lines.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.bytes()).expect("log lines are UTF-8");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
            .collect()
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The lines that `emit`'s `tracing` events become through [`JsonLine`].
pub(crate) fn traced_lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .event_format(JsonLine)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    captured.json_lines()
}
