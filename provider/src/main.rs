//! `payment-provider`: config from the environment → bind → serve → drain on SIGTERM/SIGINT.

use provider::log::LogBuffer;
use provider::{App, Config, Timeouts};
use std::io;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("payment-provider {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "payment-provider: unexpected argument {other:?}: configure with environment variables, see payment-provider --help"
            );
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("payment-provider: {error}");
            return ExitCode::from(2);
        }
    };
    // One line per request goes into this thread's part of a shared buffer, written out when full
    // and every 100 ms instead of one write(2) per line; whatever is left is flushed on the way out.
    let log = LogBuffer::stdout(std::time::Duration::from_millis(100));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(provider::log::JsonLine)
                .with_writer(log.clone()),
        )
        .with(config.log.clone())
        .init();
    let outcome = run(config, log.clone());
    if let Err(error) = &outcome {
        tracing::error!(error = format!("{error:#}"), "payment-provider stopped");
    }
    log.flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payment-provider: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, starts one single-threaded runtime per worker thread, waits for SIGTERM/SIGINT on this
/// thread, then lets every worker drain and stop.
///
/// Each worker owns its listener and the connections it accepts: no work stealing, no connection
/// moving between cores, one timer wheel and one I/O driver per thread, nothing shared per request
/// but the counters. In a pod limited to one CPU or less (as the provider is deployed) that is a
/// single thread.
fn run(config: Config, access_log: LogBuffer) -> io::Result<()> {
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
    for socket in provider::server::bind(config.listen, workers).map_err(cannot_listen)? {
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

    let timeouts = Timeouts {
        header: config.header_timeout,
        drain_delay: config.drain_delay,
        shutdown: config.shutdown_timeout,
    };
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
                .spawn(move || {
                    runtime.block_on(provider::serve(listener, app, timeouts, signal))
                })?,
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
