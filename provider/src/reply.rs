//! What a route decided, before it becomes a response, a metric and an access line.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// A route's answer, with what the access line says about it.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) content_type: &'static str,
    pub(crate) allow: Option<&'static str>,
    /// Close the connection after answering: the request body may be left unread.
    pub(crate) close: bool,
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<String>,
    pub(crate) customer_id: Option<i64>,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, outcome: &'static str, body: impl Into<Bytes>) -> Reply {
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

    /// `{"error": message}`, the message also kept for the access line.
    pub(crate) fn error(status: StatusCode, outcome: &'static str, message: String) -> Reply {
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

    /// An error after which the connection is closed, because the body may be left unread.
    pub(crate) fn closing(status: StatusCode, outcome: &'static str, message: String) -> Reply {
        Reply {
            close: true,
            ..Reply::error(status, outcome, message)
        }
    }

    /// `200 {"result":true|false}`: what Antaeus reads.
    pub(crate) fn charged(result: bool, outcome: &'static str, customer_id: i64) -> Reply {
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

    pub(crate) fn method_not_allowed(method: &Method, allow: &'static str) -> Reply {
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

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_a_json_object_that_escapes_its_message() {
        let reply = Reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "say \"no\"\n".to_owned(),
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body, serde_json::json!({"error": "say \"no\"\n"}));
        assert_eq!(reply.error.as_deref(), Some("say \"no\"\n"));
    }

    #[test]
    fn a_closing_reply_says_so_in_its_headers() {
        let response = Reply::closing(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "big".into())
            .into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let open = Reply::charged(true, "charged", 1).into_response();
        assert!(!open.headers().contains_key(header::CONNECTION));
    }
}
