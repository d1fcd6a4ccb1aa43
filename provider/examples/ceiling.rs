//! The benchmark ceiling: the same hyper stack as the provider, answering `{"result":true}` with no
//! work, so `cargo xtask bench provider` can say how close the provider gets to bare hyper.
//!
//! Usage: `ceiling 127.0.0.1:PORT` (prints `listening <addr>` once bound; stopped by a signal).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                // Read the body as any server must before keep-alive can reuse the connection.
                let _ = req.into_body().collect().await;
                let mut response =
                    Response::new(Full::new(Bytes::from_static(br#"{"result":true}"#)));
                response.headers_mut().insert(
                    "content-type",
                    "application/json".parse().expect("static header"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
