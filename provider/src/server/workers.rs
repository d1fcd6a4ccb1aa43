//! The process's server: one thread per worker, each with a single-threaded runtime serving its
//! own listener, and the signal thread that starts the drain.

use super::{Timeouts, bind, serve};
use crate::app::App;
use crate::config::Config;
use crate::log::LogBuffer;
use std::io;
use tokio::signal::unix::{SignalKind, signal};

/// Binds, starts one single-threaded runtime per worker thread, waits for SIGTERM/SIGINT on this
/// thread, then lets every worker drain and stop.
///
/// Each worker owns its listener and the connections it accepts: no work stealing, no connection
/// moving between cores, one timer wheel and one I/O driver per thread, nothing shared per request
/// but the counters. In a pod limited to one CPU or less (as the provider is deployed) that is a
/// single thread.
pub fn run(config: Config, access_log: LogBuffer) -> io::Result<()> {
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let cannot_listen = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {} (set PROVIDER_LISTEN): {e}",
                config.listen
            ),
        )
    };
    let mut servers = Vec::with_capacity(workers);
    for socket in bind(config.listen, workers).map_err(cannot_listen)? {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The listener registers with the runtime that will serve it.
        let listener = {
            let _entered = runtime.enter();
            socket.listen(1024).map_err(cannot_listen)?
        };
        servers.push((runtime, listener));
    }
    // Signal handlers are installed before anyone can learn the address and send one.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut terminate, mut interrupt) = {
        let _entered = signals.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let addr = servers[0].1.local_addr()?;
    tracing::info!(%addr, workers, success_rate = config.success_rate, seeded = config.seed.is_some(), "listening");

    let timeouts = Timeouts::from_config(&config);
    // The state lives as long as the process: leaked into a `&'static`, no request counts references.
    let app: &'static App = Box::leak(Box::new(App::new(&config, Some(access_log))));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for (index, (runtime, listener)) in servers.into_iter().enumerate() {
        let mut stopping = stopping.clone();
        let signal = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("provider-worker-{index}"))
                .spawn(move || runtime.block_on(serve(listener, app, timeouts, signal)))?,
        );
    }

    signals.block_on(async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
    });
    // Every worker flips readiness, keeps accepting for the drain delay, then drains its own
    // connections within the shutdown timeout.
    let _ = stop.send(true);
    for thread in threads {
        if thread.join().is_err() {
            return Err(io::Error::other("a worker thread panicked"));
        }
    }
    tracing::info!("stopped");
    Ok(())
}
