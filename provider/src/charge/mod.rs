//! The charge route: checks the headers, reads the body within its limit and timeout, parses it,
//! and draws (or replays, for an `Idempotency-Key`) the outcome.

mod media_type;
mod parse;
mod text;

pub use parse::{Charge, parse};

use crate::app::App;
use crate::idempotency::{Lookup, MAX_KEY_LEN};
use crate::reply::Reply;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper::body::Body;
use hyper::header::{self, HeaderName};
use hyper::http::request::Parts;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

/// Stock Antaeus's request body, byte for byte as observed on the wire (khttp 0.1.0 + org.json:
/// keys in this order, `currency` an empty object, `value` with 2 decimals), sent with
/// `Content-Type: application/json`. The `charge` subcommand's default and the tests' sample.
pub const ANTAEUS_BODY: &str = r#"{"currency":{},"customer_id":1,"value":263.94}"#;

/// Largest request body read; a larger one is answered 413 as soon as the limit is crossed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Looked up by name rather than by `&str`, which would be parsed into a name on every request.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Answers `POST /` and `POST /v1/charges`.
pub(crate) async fn charge<B>(app: &App, head: &Parts, body: B) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(content_type) = head.headers.get(header::CONTENT_TYPE)
        && !media_type::is_json(content_type)
    {
        let message = format!("content type {content_type:?} is not JSON: send application/json");
        return Reply::closing(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        );
    }
    let key = match head.headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Some(key),
        Some(_) => {
            let message =
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters");
            return Reply::closing(StatusCode::BAD_REQUEST, "bad_request", message);
        }
    };
    let body = match read_body(app, head, body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let charge = match parse(&body) {
        Ok(charge) => charge,
        Err(message) => return Reply::error(StatusCode::BAD_REQUEST, "bad_request", message),
    };

    let Some(key) = key else {
        let result = app.draw();
        app.metrics.charge(result, false);
        return Reply::charged(result, outcome(result), charge.customer_id);
    };
    match app.resolve_key(key, &body) {
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

/// The whole body, or the answer for one that is too large, broken or too slow.
async fn read_body<B>(app: &App, head: &Parts, body: B) -> Result<Bytes, Reply>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared_len = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // A small body nearly always arrives with its head: take it without starting a timer (one
    // fewer timer-wheel insert and removal per charge), and start the body timeout only for a
    // client that is still sending.
    let mut collect = pin!(Limited::new(body, MAX_BODY_BYTES).collect());
    let collected = match poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
        Poll::Ready(collected) => Ok(collected),
        Poll::Pending => tokio::time::timeout(app.body_timeout, collect).await,
    };
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => {
            let message = format!("could not read the request body: {e}");
            Err(Reply::closing(
                StatusCode::BAD_REQUEST,
                "bad_request",
                message,
            ))
        }
        Err(_) => {
            let message = format!("request body not received within {:?}", app.body_timeout);
            Err(Reply::closing(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                message,
            ))
        }
    }
}

fn outcome(result: bool) -> &'static str {
    if result { "charged" } else { "declined" }
}

fn too_large() -> Reply {
    let message = format!("request body is larger than {MAX_BODY_BYTES} bytes");
    Reply::closing(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::handle;
    use crate::testing::{app, call, post, refusal, with_key};
    use bytes::Bytes;
    use hyper::Request;
    use hyper::body::Frame;
    use hyper::header::HeaderValue;
    use std::pin::Pin;
    use std::task::Context;

    #[tokio::test]
    async fn stock_antaeus_content_type_and_one_with_charset_are_accepted() {
        let app = app(&[("PROVIDER_SUCCESS_RATE", "1")]);
        for content_type in ["application/json", "application/json; charset=UTF-8"] {
            let mut req = post("/", ANTAEUS_BODY);
            req.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(
                call(&app, req).await,
                (StatusCode::OK, serde_json::json!({"result": true})),
                "{content_type}"
            );
        }
    }

    #[tokio::test]
    async fn a_retry_with_the_same_key_replays_the_first_result() {
        let app = app(&[]);
        let (_, first) = call(&app, with_key(ANTAEUS_BODY, "invoice-1")).await;
        for _ in 0..50 {
            let (status, again) = call(&app, with_key(ANTAEUS_BODY, "invoice-1")).await;
            assert_eq!((status, &again), (StatusCode::OK, &first));
        }
        let text = app.metrics.encode();
        assert!(text.contains(r#"replayed="true"} 50"#), "{text}");
    }

    #[tokio::test]
    async fn the_same_key_with_a_different_body_conflicts() {
        let app = app(&[]);
        call(&app, with_key(ANTAEUS_BODY, "invoice-1")).await;
        let other = ANTAEUS_BODY.replace("263.94", "263.95");
        let (status, error) = refusal(&app, with_key(other, "invoice-1")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            error.contains("already used for a different request body"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_overlong_idempotency_key_is_rejected() {
        let app = app(&[]);
        let key = "k".repeat(MAX_KEY_LEN + 1);
        let (status, error) = refusal(&app, with_key(ANTAEUS_BODY, &key)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error.contains("Idempotency-Key"), "{error}");
    }

    #[tokio::test]
    async fn bad_bodies_get_400_with_the_problem_named() {
        let app = app(&[]);
        for (body, problem) in [
            (&b"{"[..], "EOF while parsing"),
            (
                br#"{"currency":{},"value":0,"customer_id":1}"#,
                "value must be positive",
            ),
            (
                br#"{"currency":{},"value":"1","customer_id":1}"#,
                "value must be a JSON number",
            ),
            (
                br#"{"currency":{},"value":1}"#,
                "missing field `customer_id`",
            ),
            (
                b"{\"currency\":\"\xff\xfe\",\"value\":1,\"customer_id\":1}",
                "invalid UTF-8",
            ),
        ] {
            let (status, error) = refusal(&app, post("/", Bytes::from_static(body))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
            assert!(error.contains(problem), "{body:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_declared_non_json_content_type_gets_415() {
        let app = app(&[]);
        for (content_type, status) in [
            ("text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (
                "application/x-www-form-urlencoded",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            ("application/jsonx", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ("application/problem+json", StatusCode::OK),
        ] {
            let mut req = post("/", ANTAEUS_BODY);
            req.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(call(&app, req).await.0, status, "{content_type}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_before_it_is_read_whole() {
        let app = app(&[]);
        // Only a limited read can answer an endless body.
        let req = Request::post("/")
            .body(Sending(Some(&[b' '; 4096])))
            .unwrap();
        let response = handle(&app, req).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn a_declared_oversized_length_gets_413_at_once() {
        let app = app(&[]);
        let mut req = post("/", ANTAEUS_BODY);
        req.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(MAX_BODY_BYTES + 1),
        );
        assert_eq!(call(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_408_after_the_body_timeout() {
        let app = app(&[("PROVIDER_BODY_TIMEOUT", "100ms")]);
        let response = handle(&app, Request::post("/").body(Sending(None)).unwrap()).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    /// A client that sends `Some` chunk for ever, or (`None`) its headers and then nothing.
    struct Sending(Option<&'static [u8]>);

    impl Body for Sending {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0 {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk))))),
                None => Poll::Pending,
            }
        }
    }
}
