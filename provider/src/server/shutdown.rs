//! Shutdown in two steps: readiness turns 503 while the listener keeps accepting for the drain
//! delay (so endpoints are updated first), then in-flight requests get the shutdown timeout.

use super::Timeouts;
use crate::app::App;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;

/// Resolves when the listener should close: `signal`, then `/readyz` at 503 for the drain delay.
pub(super) async fn drain_delay(signal: impl Future<Output = ()>, app: &App, timeouts: Timeouts) {
    signal.await;
    app.begin_shutdown();
    tracing::info!(
        drain_delay_ms = timeouts.drain_delay.as_millis() as u64,
        "shutdown begun, readiness is 503"
    );
    tokio::time::sleep(timeouts.drain_delay).await;
}

/// After the listener closed: lets every watched connection finish its request (hyper closes
/// idle keep-alive connections at once) within the shutdown timeout, then drops the rest.
pub(super) async fn drain_connections(graceful: GracefulShutdown, timeouts: Timeouts) {
    tracing::info!("listener closed, draining in-flight requests");
    match tokio::time::timeout(timeouts.shutdown, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            timeout_ms = timeouts.shutdown.as_millis() as u64,
            "shutdown timeout elapsed, dropping remaining connections"
        ),
    }
}
