//! The request handler: a plain `async fn` routing on method and path, testable without a socket;
//! every answer is counted and logged as one access line here.

use crate::app::App;
use crate::charge;
use crate::log::Access;
use crate::metrics;
use crate::reply::Reply;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use std::time::Instant;

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
            idempotency_key: head.headers.contains_key(charge::IDEMPOTENCY_KEY),
            error: reply.error.as_deref(),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        }
        .log(out);
    }
    reply.into_response()
}

/// The route's name (a metric label) and its answer.
async fn route<B>(app: &App, head: &Parts, body: B) -> (&'static str, Reply)
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = &head.method;
    match (method, head.uri.path()) {
        (&Method::POST, "/" | "/v1/charges") => ("charge", charge::charge(app, head, body).await),
        (_, "/" | "/v1/charges") => ("charge", Reply::method_not_allowed(method, "POST")),
        (&Method::GET, "/healthz") => (
            "healthz",
            Reply::new(StatusCode::OK, "alive", r#"{"status":"ok"}"#),
        ),
        (&Method::GET, "/readyz") if app.is_shutting_down() => (
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::ANTAEUS_BODY;
    use crate::config::Config;
    use crate::log::LogBuffer;
    use crate::testing::{Captured, app, call, get, post, refusal, with_key};
    use http_body_util::BodyExt;
    use hyper::header;

    #[tokio::test]
    async fn an_antaeus_charge_is_answered_with_a_boolean_result_on_both_paths() {
        let app = app(&[]);
        for path in ["/", "/v1/charges"] {
            let (status, body) = call(&app, post(path, ANTAEUS_BODY)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body["result"].is_boolean(), "{body}");
        }
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
        let (status, error) = refusal(&app, post("/charge", ANTAEUS_BODY)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(error.contains("no route for /charge"), "{error}");
    }

    #[tokio::test]
    async fn every_answer_gets_one_access_line_unless_the_log_level_leaves_it_out() {
        let config = |log: &str| Config::from_pairs(&[("PROVIDER_LOG", log)]).unwrap();
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        let app = App::new(&config("warn,provider::access=info"), Some(out.clone()));
        call(&app, with_key(ANTAEUS_BODY, "invoice-9")).await;
        call(&app, post("/v1/charges?x=y", "{")).await;
        call(&app, post("/nowhere", "")).await;
        out.flush();
        let lines = captured.json_lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["target"], "provider::access");
        assert_eq!(lines[0]["method"], "POST");
        assert_eq!(lines[0]["path"], "/v1/charges");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["customer_id"], 1);
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
        call(&app, post("/", ANTAEUS_BODY)).await;
        out.flush();
        assert!(quiet.json_lines().is_empty());
    }

    #[tokio::test]
    async fn readiness_turns_503_once_shutdown_begins_while_liveness_stays_200() {
        let app = app(&[]);
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
        call(&app, post("/", ANTAEUS_BODY)).await;
        call(&app, post("/", "{")).await;
        let response = handle(&app, get("/metrics")).await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            metrics::CONTENT_TYPE
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for series in [
            r#"provider_charges_total{result="true",replayed="false"} 1"#,
            r#"provider_http_requests_total{route="charge",status="400"} 1"#,
            "provider_http_request_duration_seconds_count 2",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
