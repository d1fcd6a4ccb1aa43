//! The access line: one JSON line per answered request, formatted without `tracing`'s dispatch.

use super::buffer::LogBuffer;
use super::json::{Escaped, write_json_str, write_timestamp};
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::SystemTime;

/// The `target` of access lines: `PROVIDER_LOG=warn,provider::access=info` keeps only them.
pub const ACCESS_TARGET: &str = "provider::access";

/// One answered request, as its access line says it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub outcome: &'a str,
    pub customer_id: Option<i64>,
    pub idempotency_key: bool,
    pub error: Option<&'a str>,
    pub latency_us: u64,
}

thread_local! {
    /// The line being built: one allocation per thread, reused for every request.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

impl Access<'_> {
    /// Writes the line into `out` (one `write_all`, so lines never interleave).
    pub fn log(&self, out: &LogBuffer) {
        LINE.with(|line| {
            // Only re-entered if writing a line could log, which it cannot; skip rather than panic.
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            if self.format(&mut line, SystemTime::now()).is_ok() {
                out.write_line(line.as_bytes());
            }
        });
    }

    /// The same shape [`JsonLine`] gives an INFO event of [`ACCESS_TARGET`] with these fields.
    fn format(&self, line: &mut String, now: SystemTime) -> fmt::Result {
        // Quotes ride along with the constant parts: fewer, longer copies.
        let mut number = itoa::Buffer::new();
        line.push_str("{\"timestamp\":\"");
        write_timestamp(line, now)?;
        // The target is ACCESS_TARGET (a test holds the two together).
        line.push_str("\",\"level\":\"INFO\",\"target\":\"provider::access\",\"message\":\"request\",\"method\":\"");
        Escaped(&mut *line).write_str(self.method)?;
        line.push_str("\",\"path\":\"");
        Escaped(&mut *line).write_str(self.path)?;
        line.push_str("\",\"status\":");
        line.push_str(number.format(self.status));
        line.push_str(",\"outcome\":\"");
        Escaped(&mut *line).write_str(self.outcome)?;
        line.push('"');
        if let Some(customer_id) = self.customer_id {
            line.push_str(",\"customer_id\":");
            line.push_str(number.format(customer_id));
        }
        line.push_str(if self.idempotency_key {
            ",\"idempotency_key\":true"
        } else {
            ",\"idempotency_key\":false"
        });
        if let Some(error) = self.error {
            line.push_str(",\"error\":");
            write_json_str(line, error)?;
        }
        line.push_str(",\"latency_us\":");
        line.push_str(number.format(self.latency_us));
        line.push_str("}\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Captured, traced_lines};

    fn access_lines(accesses: &[Access<'_>]) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        for access in accesses {
            access.log(&out);
        }
        out.flush();
        captured.json_lines()
    }

    const CHARGED: Access<'static> = Access {
        method: "POST",
        path: "/v1/charges",
        status: 200,
        outcome: "charged",
        customer_id: Some(42),
        idempotency_key: false,
        error: None,
        latency_us: 17,
    };

    #[test]
    fn an_access_line_has_the_shape_of_the_same_tracing_event() {
        let mut direct = access_lines(&[CHARGED]).remove(0);
        let mut traced = traced_lines(|| {
            tracing::info!(
                target: ACCESS_TARGET,
                method = "POST",
                path = "/v1/charges",
                status = 200u16,
                outcome = "charged",
                customer_id = Some(42i64),
                idempotency_key = false,
                error = None::<&str>,
                latency_us = 17u64,
                "request"
            )
        })
        .remove(0);
        for line in [&mut direct, &mut traced] {
            let stamp = line["timestamp"].take();
            assert!(stamp.as_str().unwrap().ends_with('Z'), "{stamp}");
        }
        assert_eq!(direct, traced);
        assert_eq!(direct["target"], "provider::access");
    }

    #[test]
    fn access_lines_escape_what_the_client_sent_and_leave_out_absent_fields() {
        let path = "/\"}{\\\n\u{1}ü";
        let error = "bad \"value\"\n";
        let logged = access_lines(&[
            Access {
                path,
                status: 400,
                outcome: "bad_request",
                customer_id: None,
                error: Some(error),
                idempotency_key: true,
                ..CHARGED
            },
            CHARGED,
        ]);
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0]["path"], path);
        assert_eq!(logged[0]["error"], error);
        assert_eq!(logged[0]["idempotency_key"], true);
        assert!(logged[0].get("customer_id").is_none(), "{}", logged[0]);
        assert!(logged[1].get("error").is_none(), "{}", logged[1]);
        assert_eq!(logged[1]["customer_id"], 42);
        assert_eq!(logged[1]["latency_us"], 17);
    }

    #[test]
    fn extreme_numbers_are_written_exactly() {
        let logged = access_lines(&[Access {
            customer_id: Some(i64::MIN),
            latency_us: u64::MAX,
            ..CHARGED
        }]);
        assert_eq!(logged[0]["customer_id"], i64::MIN);
        assert_eq!(logged[0]["latency_us"], u64::MAX);
    }
}
