//! The request handler: a plain `async fn` routing on method and path, testable without a socket.

use crate::charge;
use crate::config::Config;
use crate::idempotency::{IdempotencyStore, Lookup, MAX_KEY_LEN};
use crate::log::{ACCESS_TARGET, Access, LogBuffer};
use crate::metrics::{self, Metrics};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::future::{Future, poll_fn};
use std::hash::BuildHasher;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Largest request body read; a larger one is answered 413 as soon as the limit is crossed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Looked up by name rather than by `&str`, which would be parsed into a name on every request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The state every request shares.
pub struct App {
    success_rate: f64,
    body_timeout: Duration,
    /// `PROVIDER_SEED`'s generator, one sequence for the whole process so a seeded run repeats;
    /// unseeded, each thread draws from its own OS-seeded generator (`rand::rng()`), so no lock
    /// and no cache line is shared between workers on the way.
    seeded: Option<Mutex<StdRng>>,
    keys: Mutex<IdempotencyStore>,
    /// Body fingerprints for idempotency; randomly keyed so clients cannot craft collisions.
    hasher: std::collections::hash_map::RandomState,
    shutting_down: AtomicBool,
    metrics: Metrics,
    /// Where each request's access line goes; `None` when `PROVIDER_LOG` leaves them out.
    access_log: Option<LogBuffer>,
}

impl App {
    /// The shared state; `access_log` receives one JSON line per request if `config.log` lets
    /// INFO lines of [`ACCESS_TARGET`] through.
    pub fn new(config: &Config, access_log: Option<LogBuffer>) -> App {
        App {
            success_rate: config.success_rate,
            body_timeout: config.body_timeout,
            seeded: config
                .seed
                .map(|seed| Mutex::new(StdRng::seed_from_u64(seed))),
            keys: Mutex::new(IdempotencyStore::new(
                config.idempotency_keys,
                config.idempotency_ttl,
            )),
            hasher: Default::default(),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
            access_log: access_log.filter(|_| {
                config
                    .log
                    .would_enable(ACCESS_TARGET, &tracing::Level::INFO)
            }),
        }
    }

    /// Flips `/readyz` to 503: called when SIGTERM arrives.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    fn draw(&self) -> bool {
        match &self.seeded {
            // A poisoned lock only means another request panicked mid-draw; the RNG is usable.
            Some(rng) => rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .random_bool(self.success_rate),
            None => rand::rng().random_bool(self.success_rate),
        }
    }
}

/// What a route decided, before it becomes a response, a metric and a log line.
struct Reply {
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
    allow: Option<&'static str>,
    /// Close the connection after answering: the request body may be left unread.
    close: bool,
    outcome: &'static str,
    error: Option<String>,
    customer_id: Option<i64>,
}

impl Reply {
    fn new(status: StatusCode, outcome: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            body: body.into(),
            content_type: "application/json",
            allow: None,
            close: false,
            outcome,
            error: None,
            customer_id: None,
        }
    }

    fn error(status: StatusCode, outcome: &'static str, message: String) -> Reply {
        #[derive(serde::Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
        }
        let body = serde_json::to_vec(&ErrorBody { error: &message })
            .expect("a struct of one string serialises");
        Reply {
            error: Some(message),
            ..Reply::new(status, outcome, body)
        }
    }

    fn charged(result: bool, outcome: &'static str, customer_id: i64) -> Reply {
        let body: &'static [u8] = if result {
            br#"{"result":true}"#
        } else {
            br#"{"result":false}"#
        };
        Reply {
            customer_id: Some(customer_id),
            ..Reply::new(StatusCode::OK, outcome, body)
        }
    }

    fn method_not_allowed(method: &Method, allow: &'static str) -> Reply {
        let message = format!("method {method} is not allowed here, use {allow}");
        Reply {
            allow: Some(allow),
            ..Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            )
        }
    }
}

/// Answers one request, then counts it and logs it as one JSON line.
pub async fn handle<B>(app: &App, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    // The head stays here for the access line; only the body goes to the route.
    let (head, body) = req.into_parts();
    let (route, reply) = route(app, &head, body).await;

    let elapsed = started.elapsed();
    app.metrics.request(route, reply.status.as_u16(), elapsed);
    if let Some(out) = &app.access_log {
        Access {
            method: head.method.as_str(),
            path: head.uri.path(),
            status: reply.status.as_u16(),
            outcome: reply.outcome,
            customer_id: reply.customer_id,
            idempotency_key: head.headers.contains_key(IDEMPOTENCY_KEY),
            error: reply.error.as_deref(),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        }
        .log(out);
    }

    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    if let Some(allow) = reply.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if reply.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn route<B>(app: &App, head: &Parts, body: B) -> (&'static str, Reply)
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = &head.method;
    match (method, head.uri.path()) {
        (&Method::POST, "/" | "/v1/charges") => ("charge", charge(app, head, body).await),
        (_, "/" | "/v1/charges") => ("charge", Reply::method_not_allowed(method, "POST")),
        (&Method::GET, "/healthz") => (
            "healthz",
            Reply::new(StatusCode::OK, "alive", r#"{"status":"ok"}"#),
        ),
        (&Method::GET, "/readyz") if app.shutting_down.load(Ordering::SeqCst) => (
            "readyz",
            Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                r#"{"status":"shutting down"}"#,
            ),
        ),
        (&Method::GET, "/readyz") => (
            "readyz",
            Reply::new(StatusCode::OK, "ready", r#"{"status":"ready"}"#),
        ),
        (&Method::GET, "/metrics") => (
            "metrics",
            Reply {
                content_type: metrics::CONTENT_TYPE,
                ..Reply::new(StatusCode::OK, "metrics", app.metrics.encode())
            },
        ),
        (_, "/healthz" | "/readyz" | "/metrics") => {
            ("probe", Reply::method_not_allowed(method, "GET"))
        }
        (_, path) => {
            let message = format!("no route for {path}: charge with POST / or POST /v1/charges");
            (
                "other",
                Reply::error(StatusCode::NOT_FOUND, "not_found", message),
            )
        }
    }
}

async fn charge<B>(app: &App, head: &Parts, body: B) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(content_type) = head.headers.get(header::CONTENT_TYPE)
        && !is_json(content_type)
    {
        let message = format!("content type {content_type:?} is not JSON: send application/json");
        return Reply {
            close: true,
            ..Reply::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            )
        };
    }
    let key = match head.headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Some(key.to_owned()),
        Some(_) => {
            let message =
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters");
            return Reply {
                close: true,
                ..Reply::error(StatusCode::BAD_REQUEST, "bad_request", message)
            };
        }
    };
    let declared_len = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return too_large();
    }

    // A small body nearly always arrives with its head: take it without starting a timer (one
    // fewer timer-wheel insert and removal per charge), and start the body timeout only for a
    // client that is still sending.
    let mut collect = pin!(Limited::new(body, MAX_BODY_BYTES).collect());
    let collected = match poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
        Poll::Ready(collected) => Ok(collected),
        Poll::Pending => tokio::time::timeout(app.body_timeout, collect).await,
    };
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            let message = format!("could not read the request body: {e}");
            return Reply {
                close: true,
                ..Reply::error(StatusCode::BAD_REQUEST, "bad_request", message)
            };
        }
        Err(_) => {
            let message = format!("request body not received within {:?}", app.body_timeout);
            return Reply {
                close: true,
                ..Reply::error(StatusCode::REQUEST_TIMEOUT, "body_timeout", message)
            };
        }
    };
    let charge = match charge::parse(&body) {
        Ok(charge) => charge,
        Err(message) => return Reply::error(StatusCode::BAD_REQUEST, "bad_request", message),
    };

    let Some(key) = key else {
        let result = app.draw();
        app.metrics.charge(result, false);
        return Reply::charged(result, outcome(result), charge.customer_id);
    };
    let fingerprint = app.hasher.hash_one(&body[..]);
    let lookup = app.keys.lock().unwrap_or_else(|p| p.into_inner()).resolve(
        &key,
        fingerprint,
        Instant::now(),
        || app.draw(),
    );
    match lookup {
        Lookup::Fresh(result) => {
            app.metrics.charge(result, false);
            Reply::charged(result, outcome(result), charge.customer_id)
        }
        Lookup::Replayed(result) => {
            app.metrics.charge(result, true);
            Reply::charged(result, "replayed", charge.customer_id)
        }
        Lookup::Conflict => {
            let message =
                format!("Idempotency-Key {key:?} was already used for a different request body");
            Reply::error(StatusCode::CONFLICT, "conflict", message)
        }
    }
}

fn outcome(result: bool) -> &'static str {
    if result { "charged" } else { "declined" }
}

fn too_large() -> Reply {
    let message = format!("request body is larger than {MAX_BODY_BYTES} bytes");
    Reply {
        close: true,
        ..Reply::error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
}

/// `application/json` or any `application/*+json`, with or without parameters such as charset.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    // Media types are case-insensitive; compared in place, as this runs on every charge.
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .len()
                .checked_sub(5)
                .and_then(|plus| subtype.get(plus..))
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::Captured;
    use hyper::body::Frame;
    use std::collections::HashMap;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    const ANTAEUS: &str =
        r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#;

    fn app(vars: &[(&str, &str)]) -> App {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        App::new(
            &Config::from_lookup(|name| map.get(name).cloned()).expect("test config is valid"),
            None,
        )
    }

    fn post(path: &str, body: &str) -> Request<Full<Bytes>> {
        Request::post(path)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    async fn call(app: &App, req: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
        let response = handle(app, req).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).expect("every answer is JSON"),
        )
    }

    #[tokio::test]
    async fn an_antaeus_charge_is_answered_with_a_boolean_result() {
        let app = app(&[]);
        for path in ["/", "/v1/charges"] {
            let (status, body) = call(&app, post(path, ANTAEUS)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body["result"].is_boolean(), "{body}");
        }
    }

    #[tokio::test]
    async fn antaeus_content_type_with_charset_is_accepted() {
        let app = app(&[("PROVIDER_SUCCESS_RATE", "1")]);
        let mut req = post("/", ANTAEUS);
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        assert_eq!(
            call(&app, req).await,
            (StatusCode::OK, serde_json::json!({"result": true}))
        );
    }

    #[tokio::test]
    async fn rate_zero_always_declines_and_rate_one_always_charges() {
        for (rate, expected) in [("0", false), ("1", true)] {
            let app = app(&[("PROVIDER_SUCCESS_RATE", rate)]);
            for _ in 0..1_000 {
                let (_, body) = call(&app, post("/", ANTAEUS)).await;
                assert_eq!(body["result"], expected, "rate {rate}");
            }
        }
    }

    /// n = 10,000 draws at p = 0.5: σ = √(n·p·(1−p)) = 50, so 6σ is ±300 successes. A fair RNG
    /// falls outside with probability ~2e-9; a biased or constant one falls outside at once.
    /// The seed fixes the sequence, so the test is also deterministic.
    #[tokio::test]
    async fn the_success_rate_holds_statistically_for_a_fixed_seed() {
        let app = app(&[("PROVIDER_SEED", "20240601")]);
        let n = 10_000;
        let mut successes = 0;
        for _ in 0..n {
            let (_, body) = call(&app, post("/", ANTAEUS)).await;
            successes += usize::from(body["result"] == true);
        }
        assert!(
            (4_700..=5_300).contains(&successes),
            "{successes} successes out of {n}"
        );
    }

    /// n = 10,000 at p = 0.9: σ = 30, so 6σ is ±180 around 9,000.
    #[tokio::test]
    async fn a_configured_success_rate_is_honoured() {
        let app = app(&[("PROVIDER_SEED", "7"), ("PROVIDER_SUCCESS_RATE", "0.9")]);
        let mut successes = 0;
        for _ in 0..10_000 {
            successes += usize::from(app.draw());
        }
        assert!((8_820..=9_180).contains(&successes), "{successes}");
    }

    /// As above, without a seed: each thread's own OS-seeded generator.
    #[test]
    fn the_success_rate_holds_statistically_without_a_seed() {
        let app = app(&[]);
        let successes = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..2_500).filter(|_| app.draw()).count()))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .sum::<usize>()
        });
        assert!((4_700..=5_300).contains(&successes), "{successes}");
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_outcomes() {
        let draws = |seed: &str| {
            let app = app(&[("PROVIDER_SEED", seed)]);
            (0..64).map(|_| app.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draws("1"), draws("1"));
        assert_ne!(draws("1"), draws("2"));
    }

    fn with_key(body: &str, key: &str) -> Request<Full<Bytes>> {
        let mut req = post("/v1/charges", body);
        req.headers_mut()
            .insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        req
    }

    #[tokio::test]
    async fn a_retry_with_the_same_key_replays_the_first_result() {
        let app = app(&[]);
        let (_, first) = call(&app, with_key(ANTAEUS, "invoice-1")).await;
        for _ in 0..50 {
            let (status, again) = call(&app, with_key(ANTAEUS, "invoice-1")).await;
            assert_eq!((status, &again), (StatusCode::OK, &first));
        }
        let text = app.metrics.encode();
        assert!(text.contains(r#"replayed="true"} 50"#), "{text}");
    }

    #[tokio::test]
    async fn the_same_key_with_a_different_body_conflicts() {
        let app = app(&[]);
        call(&app, with_key(ANTAEUS, "invoice-1")).await;
        let other = ANTAEUS.replace("42", "43");
        let (status, body) = call(&app, with_key(&other, "invoice-1")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("already used for a different request body"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_overlong_idempotency_key_is_rejected() {
        let app = app(&[]);
        let (status, body) = call(&app, with_key(ANTAEUS, &"k".repeat(MAX_KEY_LEN + 1))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("Idempotency-Key"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn bad_bodies_get_400_with_the_problem_named() {
        let app = app(&[]);
        for (body, problem) in [
            ("{", "EOF while parsing"),
            (
                r#"{"currency":{},"value":0,"customer_id":1}"#,
                "value must be positive",
            ),
            (
                r#"{"currency":{},"value":1e999,"customer_id":1}"#,
                "value must be finite",
            ),
            (
                r#"{"currency":{},"value":"1","customer_id":1}"#,
                "value must be a JSON number",
            ),
            (
                r#"{"currency":{},"value":1}"#,
                "missing field `customer_id`",
            ),
        ] {
            let (status, answer) = call(&app, post("/", body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                answer["error"].as_str().unwrap().contains(problem),
                "{body}: {answer}"
            );
        }
    }

    #[tokio::test]
    async fn a_declared_non_json_content_type_gets_415() {
        let app = app(&[]);
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let mut req = post("/", ANTAEUS);
            req.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(
                call(&app, req).await.0,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type}"
            );
        }
        let mut req = post("/", ANTAEUS);
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert_eq!(call(&app, req).await.0, StatusCode::OK);
    }

    #[test]
    fn json_media_types_are_recognised_in_any_case_with_parameters() {
        for (content_type, json) in [
            ("application/json", true),
            ("Application/JSON; charset=UTF-8", true),
            ("application/problem+json", true),
            ("application/merge-patch+JSON ;q=1", true),
            ("application/jsonx", false),
            ("application/json-seq", false),
            ("text/json", false),
            ("json", false),
            ("", false),
        ] {
            assert_eq!(
                is_json(&HeaderValue::from_static(content_type)),
                json,
                "{content_type:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_before_it_is_read_whole() {
        let app = app(&[]);
        // Only a limited read can answer an endless body.
        let req = Request::post("/").body(Endless).unwrap();
        let response = handle(&app, req).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn a_declared_oversized_length_gets_413_at_once() {
        let app = app(&[]);
        let mut req = post("/", ANTAEUS);
        req.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(MAX_BODY_BYTES + 1),
        );
        assert_eq!(call(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_408_after_the_body_timeout() {
        let app = app(&[("PROVIDER_BODY_TIMEOUT", "100ms")]);
        let response = handle(&app, Request::post("/").body(Stalled).unwrap()).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_wrong_method_gets_405_with_allow() {
        let app = app(&[]);
        for (method, path, allow) in [
            (Method::GET, "/", "POST"),
            (Method::PUT, "/v1/charges", "POST"),
            (Method::POST, "/healthz", "GET"),
            (Method::DELETE, "/metrics", "GET"),
        ] {
            let response = handle(
                &app,
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(response.headers()[header::ALLOW], allow, "{path}");
        }
    }

    #[tokio::test]
    async fn an_unknown_path_gets_404() {
        let app = app(&[]);
        let (status, body) = call(&app, post("/charge", ANTAEUS)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body["error"].as_str().unwrap().contains("/charge"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn every_answer_gets_one_access_line_unless_the_log_level_leaves_it_out() {
        let config = |log: &str| {
            Config::from_lookup(|name| (name == "PROVIDER_LOG").then(|| log.to_owned())).unwrap()
        };
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        let app = App::new(&config("warn,provider::access=info"), Some(out.clone()));
        call(&app, with_key(ANTAEUS, "invoice-9")).await;
        call(&app, post("/v1/charges?x=y", "{")).await;
        call(&app, post("/nowhere", "")).await;
        out.flush();
        let lines = captured.json_lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["target"], "provider::access");
        assert_eq!(lines[0]["method"], "POST");
        assert_eq!(lines[0]["path"], "/v1/charges");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["customer_id"], 42);
        assert_eq!(lines[0]["idempotency_key"], true);
        assert!(lines[0]["latency_us"].is_u64(), "{}", lines[0]);
        assert_eq!(lines[1]["status"], 400);
        assert_eq!(lines[1]["outcome"], "bad_request");
        assert_eq!(lines[1]["idempotency_key"], false);
        assert!(
            lines[1]["error"]
                .as_str()
                .unwrap()
                .contains("EOF while parsing"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2]["path"], "/nowhere");
        assert_eq!(lines[2]["status"], 404);

        let quiet = Captured::default();
        let out = LogBuffer::new(Box::new(quiet.clone()));
        let app = App::new(&config("warn"), Some(out.clone()));
        call(&app, post("/", ANTAEUS)).await;
        out.flush();
        assert!(quiet.json_lines().is_empty());
    }

    #[tokio::test]
    async fn readiness_turns_503_once_shutdown_begins_while_liveness_stays_200() {
        let app = app(&[]);
        let get = |path: &str| Request::get(path).body(Full::<Bytes>::default()).unwrap();
        assert_eq!(call(&app, get("/readyz")).await.0, StatusCode::OK);
        app.begin_shutdown();
        assert_eq!(
            call(&app, get("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_count_charges_and_statuses() {
        let app = app(&[("PROVIDER_SUCCESS_RATE", "1")]);
        call(&app, post("/", ANTAEUS)).await;
        call(&app, post("/", "{")).await;
        let response = handle(
            &app,
            Request::get("/metrics")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            metrics::CONTENT_TYPE
        );
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains(r#"provider_charges_total{result="true",replayed="false"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"provider_http_requests_total{route="charge",status="400"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("provider_http_request_duration_seconds_count 2"),
            "{text}"
        );
    }

    /// A client that sends spaces for ever.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b' '; 4096])))))
        }
    }

    /// A client that sends its headers and then nothing.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }
}
