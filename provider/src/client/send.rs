//! One charge over HTTP/1.1 with hyper's client: the request stock Antaeus sends, a body that can
//! be sent slowly, and what came back (or why nothing did).

use super::args::Args;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// A charge's fate: the answer, or why there was none.
pub(super) enum Sent {
    Answered { status: StatusCode, body: Bytes },
    Failed(String),
}

/// Sends one charge on a new connection and reads the whole answer, all within `args.timeout`.
///
/// Each request on a new connection: the Service spreads them over the pods, and a draining
/// pod's closing of an idle connection cannot race the next request. hyper's connection-level
/// client (`hyper::client::conn`, as hyper's own client example) adds 0.23 MiB to the static
/// binary; hyper-util's pooling `Client`, which would pool nothing here, added 0.89 MiB
/// (release musl file sizes, 2026-12-02).
pub(super) async fn send(args: &Args) -> Sent {
    match tokio::time::timeout(args.timeout, exchange(args)).await {
        Ok(Ok(sent)) => sent,
        Ok(Err(cause)) => Sent::Failed(cause),
        Err(_) => Sent::Failed(format!("no answer within {:?}", args.timeout)),
    }
}

async fn exchange(args: &Args) -> Result<Sent, String> {
    let authority = args
        .url
        .authority()
        .expect("the arguments accept only URLs with a host");
    let stream = connect(authority.host(), authority.port_u16().unwrap_or(80)).await?;
    let (mut sender, connection) = http1::Builder::new()
        // Header names as Java's HttpURLConnection under khttp writes them: `Content-Type`.
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("the connection failed: {}", causes(&e)))?;
    let connection = tokio::spawn(connection);

    // The request line carries the path (origin form), the Host header the URL's authority.
    let path = args.url.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::post(path)
        .header(HOST, authority.as_str())
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
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the request failed: {}", causes(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("the answer's body broke off: {}", causes(&e)))?;
    drop(sender);
    connection.abort();
    Ok(Sent::Answered {
        status,
        body: body.to_bytes(),
    })
}

/// Resolves `host` (getaddrinfo; in the static binary musl's: /etc/hosts, then the name servers
/// and search domains of /etc/resolv.conf) and connects to its addresses in turn.
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    // `[::1]:80` and `name:80` alike: the bracketed literal parses, a name is looked up.
    let target = format!("{host}:{port}");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut refused = Vec::new();
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // The request goes out in one write, its slow half in another: no Nagle wait.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => refused.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("cannot connect to {}", refused.join(", ")))
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
