//! The state every request shares: the success rate and its generator, idempotency keys, the
//! readiness flag, the metrics and the access log.

use crate::config::Config;
use crate::idempotency::{IdempotencyStore, Lookup};
use crate::log::{ACCESS_TARGET, LogBuffer};
use crate::metrics::Metrics;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The state every request shares.
pub struct App {
    success_rate: f64,
    pub(crate) body_timeout: Duration,
    /// `PROVIDER_SEED`'s generator, one sequence for the whole process so a seeded run repeats;
    /// unseeded, each thread draws from its own OS-seeded generator (`rand::rng()`), so no lock
    /// and no cache line is shared between workers on the way.
    seeded: Option<Mutex<StdRng>>,
    keys: Mutex<IdempotencyStore>,
    /// Body fingerprints for idempotency; randomly keyed so clients cannot craft collisions.
    hasher: std::collections::hash_map::RandomState,
    shutting_down: AtomicBool,
    pub(crate) metrics: Metrics,
    /// Where each request's access line goes; `None` when `PROVIDER_LOG` leaves them out.
    pub(crate) access_log: Option<LogBuffer>,
}

impl App {
    /// The shared state; `access_log` receives one JSON line per request if `config.log` lets
    /// INFO lines of [`ACCESS_TARGET`] through.
    pub fn new(config: &Config, access_log: Option<LogBuffer>) -> App {
        App {
            success_rate: config.success_rate,
            body_timeout: config.body_timeout,
            seeded: config
                .seed
                .map(|seed| Mutex::new(StdRng::seed_from_u64(seed))),
            keys: Mutex::new(IdempotencyStore::new(
                config.idempotency_keys,
                config.idempotency_ttl,
            )),
            hasher: Default::default(),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
            access_log: access_log.filter(|_| {
                config
                    .log
                    .would_enable(ACCESS_TARGET, &tracing::Level::INFO)
            }),
        }
    }

    /// Flips `/readyz` to 503: called when SIGTERM arrives.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// One charge outcome: `true` with probability `PROVIDER_SUCCESS_RATE`.
    pub(crate) fn draw(&self) -> bool {
        match &self.seeded {
            // A poisoned lock only means another request panicked mid-draw; the RNG is usable.
            Some(rng) => rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .random_bool(self.success_rate),
            None => rand::rng().random_bool(self.success_rate),
        }
    }

    /// The outcome of a charge that carries `key`: replayed if the same key came with the same
    /// body before, else drawn now and remembered.
    pub(crate) fn resolve_key(&self, key: &str, body: &[u8]) -> Lookup {
        let fingerprint = self.hasher.hash_one(body);
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).resolve(
            key,
            fingerprint,
            Instant::now(),
            || self.draw(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::app;

    #[test]
    fn rate_zero_always_declines_and_rate_one_always_charges() {
        for (rate, expected) in [("0", false), ("1", true)] {
            let app = app(&[("PROVIDER_SUCCESS_RATE", rate)]);
            assert!((0..1_000).all(|_| app.draw() == expected), "rate {rate}");
        }
    }

    /// n = 10,000 draws at p = 0.5: σ = √(n·p·(1−p)) = 50, so 6σ is ±300 successes. A fair RNG
    /// falls outside with probability ~2e-9; a biased or constant one falls outside at once.
    /// The seed fixes the sequence, so the test is also deterministic.
    #[test]
    fn the_success_rate_holds_statistically_for_a_fixed_seed() {
        let app = app(&[("PROVIDER_SEED", "20240601")]);
        let successes = (0..10_000).filter(|_| app.draw()).count();
        assert!(
            (4_700..=5_300).contains(&successes),
            "{successes} successes out of 10,000"
        );
    }

    /// n = 10,000 at p = 0.9: σ = 30, so 6σ is ±180 around 9,000.
    #[test]
    fn a_configured_success_rate_is_honoured() {
        let app = app(&[("PROVIDER_SEED", "7"), ("PROVIDER_SUCCESS_RATE", "0.9")]);
        let successes = (0..10_000).filter(|_| app.draw()).count();
        assert!((8_820..=9_180).contains(&successes), "{successes}");
    }

    /// As above, without a seed: each thread's own OS-seeded generator.
    #[test]
    fn the_success_rate_holds_statistically_without_a_seed() {
        let app = app(&[]);
        let successes = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..2_500).filter(|_| app.draw()).count()))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .sum::<usize>()
        });
        assert!((4_700..=5_300).contains(&successes), "{successes}");
    }

    #[test]
    fn the_same_seed_gives_the_same_outcomes() {
        let draws = |seed: &str| {
            let app = app(&[("PROVIDER_SEED", seed)]);
            (0..64).map(|_| app.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draws("1"), draws("1"));
        assert_ne!(draws("1"), draws("2"));
    }

    #[test]
    fn a_key_replays_its_first_outcome_for_the_same_body_and_conflicts_for_another() {
        let app = app(&[]);
        let Lookup::Fresh(first) = app.resolve_key("invoice-1", b"body") else {
            panic!("a new key is drawn fresh");
        };
        for _ in 0..20 {
            assert_eq!(
                app.resolve_key("invoice-1", b"body"),
                Lookup::Replayed(first)
            );
        }
        assert_eq!(app.resolve_key("invoice-1", b"other"), Lookup::Conflict);
    }
}
