//! The HTTP/1.1 server: [`bind`] the workers' listeners, [`serve`] connections on each with the
//! handler, drain on shutdown ([`shutdown`]); [`workers::run`] is the whole process's server.

mod bind;
mod serve;
mod shutdown;
pub mod workers;

pub use bind::bind;
pub use serve::serve;

use std::time::Duration;

/// Connection-level timing, taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A client slower than this to send its request headers is disconnected.
    pub header: Duration,
    /// After the shutdown signal: how long to keep accepting while `/readyz` answers 503.
    pub drain_delay: Duration,
    /// After the listener closes: how long in-flight requests get before connections are dropped.
    pub shutdown: Duration,
}

impl Timeouts {
    pub fn from_config(config: &crate::Config) -> Timeouts {
        Timeouts {
            header: config.header_timeout,
            drain_delay: config.drain_delay,
            shutdown: config.shutdown_timeout,
        }
    }
}
