//! The benchmark ceiling: hyper answering `{"result":true}` with no work, so `cargo xtask bench
//! provider` can say how close the provider gets to bare hyper.
//!
//! Usage: `ceiling 127.0.0.1:PORT [--per-worker]` (stopped by a signal). Plain, it is the minimal
//! hyper server: a multi-threaded runtime, one accept loop, hyper's defaults. With `--per-worker`
//! it serves the way the provider does (one single-threaded runtime and one `SO_REUSEPORT`
//! listener per CPU, see `provider::server::bind`, and responses written with one write(2)), so
//! the two differ only in the provider's work.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    if args.next().as_deref() == Some("--per-worker") {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = provider::server::bind(addr, workers)?
            .into_iter()
            .map(|socket| {
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async { serve(socket.listen(1024)?, false).await })
                })
            })
            .collect::<Vec<_>>();
        for thread in threads {
            thread.join().expect("a serving thread panicked")?;
        }
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async { serve(TcpListener::bind(addr).await?, true).await })
}

/// `writev`: hyper's default (gather headers and body with writev(2)); the provider turns it off.
async fn serve(listener: TcpListener, writev: bool) -> std::io::Result<()> {
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
                .writev(writev)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
