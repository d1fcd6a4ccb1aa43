//! `payment-provider`: serves (config from the environment → bind → serve → drain on SIGTERM),
//! or, as `payment-provider charge`, sends charges to one.

use provider::Config;
use provider::log::{JsonLine, LogBuffer};
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(first) = args.next() else {
        return serve();
    };
    match first.to_str() {
        Some("charge") => provider::client::main(args),
        Some("-h" | "--help") => {
            print!("{}", Config::help());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("payment-provider {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "payment-provider: unexpected argument {first:?}: the server is configured with environment variables, the client is `payment-provider charge`; see payment-provider --help"
            );
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
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
                .event_format(JsonLine)
                .with_writer(log.clone()),
        )
        .with(config.log.clone())
        .init();
    let outcome = provider::server::workers::run(config, log.clone());
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
