//! One JSON object per log line, written straight into a shared output buffer.
//!
//! Two writers share one line shape (`timestamp`, `level`, `target`, `message`, then fields):
//! - [`JsonLine`] ([`json`]), the `tracing` event format for the few lifecycle lines (listening,
//!   signals, drain), without the stock JSON formatter's per-event map of `serde_json::Value`s;
//! - [`Access`] ([`access`]), the one line per request, written without `tracing`'s per-field
//!   dispatch: at 100,000 requests/s the dispatch and `fmt` machinery cost more than the rest of
//!   a charge (`cargo xtask bench provider`). It honours `PROVIDER_LOG` like any event of its
//!   target.
//!
//! [`LogBuffer`] ([`buffer`]) batches the lines into few writes instead of one `write(2)` per line.

pub mod access;
pub mod buffer;
pub mod json;

pub use access::{ACCESS_TARGET, Access};
pub use buffer::{EventWriter, LogBuffer};
pub use json::JsonLine;
