//! One charge over HTTP/1.1 with hyper's client: the request stock Antaeus sends, a body that can
//! be sent slowly, and what came back (or why nothing did).

use super::args::Args;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// A charge's fate: the answer, or why there was none.
pub(super) enum Sent {
    Answered { status: StatusCode, body: Bytes },
    Failed(String),
}

/// hyper's client, set up to send requests as Antaeus's HTTP library writes them.
pub(super) struct Sender {
    client: Client<HttpConnector, ChargeBody>,
}

impl Sender {
    pub(super) fn new() -> Sender {
        // The connector resolves names with getaddrinfo (in the static binary, musl's: /etc/hosts,
        // then the name servers and search domains of /etc/resolv.conf).
        let client = Client::builder(TokioExecutor::new())
            // Header names as Java's HttpURLConnection under khttp writes them: `Content-Type`.
            .http1_title_case_headers(true)
            // Every request on a new connection: the Service spreads them over the pods, and a
            // draining pod's closing of an idle connection cannot race the next request.
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new());
        Sender { client }
    }

    /// Sends one charge and reads the whole answer, all within `args.timeout`.
    pub(super) async fn send(&self, args: &Args) -> Sent {
        let mut request = Request::post(args.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("payment-provider/", env!("CARGO_PKG_VERSION"))),
            );
        if let Some(key) = &args.idempotency_key {
            request = request.header("Idempotency-Key", key.clone());
        }
        let request = request
            .body(ChargeBody::new(args.body.clone(), args.slow_body))
            .expect("a request built from a parsed URL and valid header values");
        let exchange = async {
            let response = self.client.request(request).await.map_err(describe)?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the answer's body broke off: {}", causes(&e)))?;
            Ok(Sent::Answered {
                status,
                body: body.to_bytes(),
            })
        };
        match tokio::time::timeout(args.timeout, exchange).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(cause)) => Sent::Failed(cause),
            Err(_) => Sent::Failed(format!("no answer within {:?}", args.timeout)),
        }
    }
}

/// hyper-util's error says only `client error (Connect)`; what failed is in its sources.
fn describe(error: hyper_util::client::legacy::Error) -> String {
    let what = if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    match error.source() {
        Some(source) => format!("{what}: {}", causes(source)),
        None => format!("{what}: {error}"),
    }
}

/// An error and its sources as one line, `a: b: c`, leaving out a source its parent repeats.
fn causes(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = next.source();
    }
    line
}

/// The request body, with an exact length (so hyper sends `Content-Length`, as Antaeus does):
/// whole at once, or its first half at once and the rest after a pause.
pub(super) struct ChargeBody {
    first: Option<Bytes>,
    rest: Option<Bytes>,
    pause: Duration,
    /// Started when the first half has gone out, so the pause does not include connecting.
    sleep: Option<Pin<Box<Sleep>>>,
    len: u64,
}

impl ChargeBody {
    fn new(body: Bytes, slow: Option<Duration>) -> ChargeBody {
        let len = body.len() as u64;
        let (first, rest) = match slow {
            Some(_) if body.len() > 1 => {
                let mut first = body;
                let rest = first.split_off(first.len() / 2);
                (first, Some(rest))
            }
            _ => (body, None),
        };
        ChargeBody {
            first: Some(first).filter(|b| !b.is_empty()),
            rest,
            pause: slow.unwrap_or_default(),
            sleep: None,
            len,
        }
    }
}

impl Body for ChargeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if this.rest.is_none() {
            return Poll::Ready(None);
        }
        let pause = this.pause;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(this.rest.take().map(|rest| Ok(Frame::data(rest))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_body_is_its_two_halves_with_the_exact_length() {
        let body = ChargeBody::new(Bytes::from_static(b"0123456789"), Some(Duration::ZERO));
        assert_eq!(body.size_hint().exact(), Some(10));
        let mut frames = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(frames, ["01234", "56789"]);
    }

    #[tokio::test]
    async fn a_body_sent_at_once_is_one_frame() {
        let body = ChargeBody::new(Bytes::from_static(b"{}"), None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
        let empty = ChargeBody::new(Bytes::new(), Some(Duration::ZERO));
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[test]
    fn an_error_and_its_sources_make_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        assert_eq!(causes(&Connect(io)), "tcp connect error: refused");
    }
}
