//! Remembers recent `Idempotency-Key`s so a retried charge replays its result instead of redrawing.
//!
//! The memory is bounded twice: by count (the oldest key is forgotten first) and by age, so no
//! client can grow it without limit by inventing keys.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Longest key accepted; with the count bound this caps the store's memory.
pub const MAX_KEY_LEN: usize = 128;

/// What a charge request with a key resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// First time this key is seen: the outcome was drawn now and remembered.
    Fresh(bool),
    /// The same key with the same body was charged before: its outcome, not redrawn.
    Replayed(bool),
    /// The key was used for a different body.
    Conflict,
}

struct Entry {
    fingerprint: u64,
    result: bool,
}

/// Keys in insertion order; since every key lives equally long, the front is always the oldest.
pub struct IdempotencyStore {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<String, Entry>,
    order: VecDeque<(Instant, String)>,
}

impl IdempotencyStore {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        IdempotencyStore {
            capacity,
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Resolves `key` for a body with `fingerprint`, calling `draw` only for a key not seen before.
    pub fn resolve(
        &mut self,
        key: &str,
        fingerprint: u64,
        now: Instant,
        draw: impl FnOnce() -> bool,
    ) -> Lookup {
        self.expire(now);
        if let Some(entry) = self.entries.get(key) {
            return if entry.fingerprint == fingerprint {
                Lookup::Replayed(entry.result)
            } else {
                Lookup::Conflict
            };
        }
        let result = draw();
        if self.capacity > 0 {
            while self.entries.len() >= self.capacity {
                self.forget_oldest();
            }
            self.entries.insert(
                key.to_owned(),
                Entry {
                    fingerprint,
                    result,
                },
            );
            self.order.push_back((now, key.to_owned()));
        }
        Lookup::Fresh(result)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((inserted, _)) = self.order.front() {
            if now.saturating_duration_since(*inserted) < self.ttl {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_same_key_and_body_replays_without_a_second_draw() {
        let mut store = IdempotencyStore::new(10, HOUR);
        let now = Instant::now();
        assert_eq!(store.resolve("k", 1, now, || true), Lookup::Fresh(true));
        assert_eq!(
            store.resolve("k", 1, now, || panic!("a replay must not draw")),
            Lookup::Replayed(true)
        );
    }

    #[test]
    fn the_same_key_with_another_body_conflicts() {
        let mut store = IdempotencyStore::new(10, HOUR);
        let now = Instant::now();
        store.resolve("k", 1, now, || false);
        assert_eq!(
            store.resolve("k", 2, now, || panic!("a conflict must not draw")),
            Lookup::Conflict
        );
    }

    /// A key first stored with the outcome `true`, asked again with a draw that would give `false`.
    fn again(store: &mut IdempotencyStore, key: &str, at: Instant) -> Lookup {
        store.resolve(key, 1, at, || false)
    }
    const FORGOTTEN: Lookup = Lookup::Fresh(false);
    const KNOWN: Lookup = Lookup::Replayed(true);

    #[test]
    fn the_oldest_key_is_forgotten_when_the_store_is_full() {
        let mut store = IdempotencyStore::new(2, HOUR);
        let now = Instant::now();
        store.resolve("a", 1, now, || true);
        store.resolve("b", 1, now, || true);
        store.resolve("c", 1, now, || true);
        assert_eq!(store.len(), 2);
        assert_eq!(again(&mut store, "a", now), FORGOTTEN, "a was evicted");
        assert_eq!(again(&mut store, "c", now), KNOWN, "c is still known");
    }

    #[test]
    fn keys_are_forgotten_once_older_than_the_ttl() {
        let mut store = IdempotencyStore::new(10, HOUR);
        let start = Instant::now();
        store.resolve("a", 1, start, || true);
        store.resolve("b", 1, start + HOUR / 2, || true);
        let later = start + HOUR + Duration::from_secs(1);
        assert_eq!(again(&mut store, "a", later), FORGOTTEN, "a expired");
        assert_eq!(
            again(&mut store, "b", later),
            KNOWN,
            "b is younger than the ttl"
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn many_distinct_keys_never_grow_the_store_past_its_capacity() {
        let mut store = IdempotencyStore::new(100, HOUR);
        let now = Instant::now();
        for i in 0..10_000 {
            store.resolve(&format!("key-{i}"), 1, now, || true);
            assert!(store.len() <= 100);
        }
        assert_eq!(store.order.len(), store.entries.len());
    }

    #[test]
    fn a_zero_capacity_store_remembers_nothing() {
        let mut store = IdempotencyStore::new(0, HOUR);
        let now = Instant::now();
        assert_eq!(store.resolve("k", 1, now, || true), Lookup::Fresh(true));
        assert!(store.is_empty());
    }
}
