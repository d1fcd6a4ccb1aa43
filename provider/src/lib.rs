//! The Antaeus payment provider: charges invoices at random over HTTP (binary `payment-provider`).
//!
//! [`handler::handle`] answers one request without a socket; [`server::serve`] runs it on a
//! listener with timeouts and graceful shutdown; [`config::Config`] reads the environment;
//! [`client`] is `payment-provider charge`, the smoke-test client the image carries.

pub mod app;
pub mod charge;
pub mod client;
pub mod config;
pub mod handler;
pub mod idempotency;
pub mod log;
pub mod metrics;
mod reply;
pub mod server;
#[cfg(test)]
mod testing;

pub use app::App;
pub use charge::{ANTAEUS_BODY, MAX_BODY_BYTES};
pub use config::{Config, ConfigError};
pub use handler::handle;
pub use server::{Timeouts, serve};
