//! Prometheus metrics: charges by outcome, requests by route and status, request latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChargeLabels {
    result: bool,
    replayed: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

pub struct Metrics {
    registry: Registry,
    /// Every charge series, indexed `[result][replayed]`: created up front, so each is exported
    /// from the start (at 0) and counting one skips the family's lock and label hashing.
    charges: [[Counter; 2]; 2],
    requests: Family<RequestLabels, Counter>,
    /// The series of nearly every request, `route="charge",status="200"`, held for the same reason.
    charged_ok: Counter,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("provider");
        let charge_family = Family::<ChargeLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 50µs doubling to ~0.8s: a charge takes microseconds, a slow client up to the body timeout.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        registry.register(
            "charges",
            "Charges answered, by result and whether replayed for an Idempotency-Key",
            charge_family.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response",
            latency.clone(),
        );
        let charge = |result, replayed| {
            charge_family
                .get_or_create(&ChargeLabels { result, replayed })
                .clone()
        };
        let charged_ok = requests
            .get_or_create(&RequestLabels {
                route: "charge",
                status: 200,
            })
            .clone();
        Metrics {
            registry,
            charges: [
                [charge(false, false), charge(false, true)],
                [charge(true, false), charge(true, true)],
            ],
            requests,
            charged_ok,
            latency,
        }
    }
}

impl Metrics {
    pub fn charge(&self, result: bool, replayed: bool) {
        self.charges[usize::from(result)][usize::from(replayed)].inc();
    }

    /// Counts one answered request; `route` is one of a fixed few, so the label set stays small.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        if (route, status) == ("charge", 200) {
            self.charged_ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels { route, status })
                .inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_charges_and_requests_appear_in_the_exposition() {
        let metrics = Metrics::default();
        metrics.charge(true, false);
        metrics.charge(true, false);
        metrics.charge(false, true);
        metrics.request("charge", 200, Duration::from_micros(80));
        let text = metrics.encode();
        assert!(
            text.contains(r#"provider_charges_total{result="true",replayed="false"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"provider_charges_total{result="false",replayed="true"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"provider_http_requests_total{route="charge",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("provider_http_request_duration_seconds_count 1"),
            "{text}"
        );
        // Every charge series is exported from the start; other statuses once seen.
        assert!(
            text.contains(r#"provider_charges_total{result="false",replayed="false"} 0"#),
            "{text}"
        );
        assert!(!text.contains(r#"status="404""#), "{text}");
        metrics.request("other", 404, Duration::from_micros(80));
        assert!(
            metrics
                .encode()
                .contains(r#"provider_http_requests_total{route="other",status="404"} 1"#)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
