//! `payment-provider`: config from the environment → bind → serve → drain on SIGTERM/SIGINT.

use provider::{App, Config, Timeouts};
use std::process::ExitCode;
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
    // One line per request goes into a shared buffer that is written out when full and every
    // 100 ms, instead of one write(2) per line; whatever is left is flushed on the way out.
    let log = provider::log::LogBuffer::stdout(std::time::Duration::from_millis(100));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(provider::log::JsonLine)
                .with_writer(log.clone()),
        )
        .with(config.log.clone())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the OS provides threads and timers");
    let outcome = runtime.block_on(run(config, log.clone()));
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

async fn run(config: Config, access_log: provider::log::LogBuffer) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (set PROVIDER_LISTEN): {e}",
                    config.listen
                ),
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, success_rate = config.success_rate, seeded = config.seed.is_some(), "listening");
    let timeouts = Timeouts {
        header: config.header_timeout,
        drain_delay: config.drain_delay,
        shutdown: config.shutdown_timeout,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let signal = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
        }
    };
    // The state lives as long as the process: leaked into a `&'static`, no request counts references.
    let app: &'static App = Box::leak(Box::new(App::new(&config, Some(access_log))));
    provider::serve(listener, app, timeouts, signal).await;
    tracing::info!("stopped");
    Ok(())
}
