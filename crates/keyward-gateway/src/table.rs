//! In-memory state per key or project (rate-limit buckets, this month's
//! spend), read on every request: one read lock and one hash lookup, with
//! no allocation once the entry exists. Entries that hold nothing worth
//! keeping (a full bucket, a past month) are swept out whenever the table
//! has doubled since the last sweep, so it stays as large as the set of
//! recently active keys.

use std::collections::HashMap;

use foldhash::quality::RandomState;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Below this many entries the table is never swept.
const SWEEP_FLOOR: usize = 1024;

pub struct Table<K, V> {
    /// Keyed with foldhash (seeded per process): several lookups per
    /// request, where std's SipHash showed in profiles.
    map: RwLock<HashMap<K, Arc<V>, RandomState>>,
    /// Entries left by the last sweep.
    swept_to: AtomicUsize,
    /// Whether an entry may go: nothing but the table refers to it and it
    /// is at rest.
    idle: fn(&K, &V) -> bool,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    pub fn new(idle: fn(&K, &V) -> bool) -> Self {
        Table {
            map: RwLock::new(HashMap::default()),
            swept_to: AtomicUsize::new(0),
            idle,
        }
    }

    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The entry for `key`, made by `make` if there is none.
    pub fn get_or_make(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        match self.get(key) {
            Some(v) => v,
            None => self.insert_unless_present(key, make()),
        }
    }

    /// Stores `value` unless another caller got there first; returns the
    /// entry the table holds.
    pub fn insert_unless_present(&self, key: &K, value: V) -> Arc<V> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_FLOOR.max(2 * self.swept_to.load(Ordering::Relaxed)) {
            let idle = self.idle;
            map.retain(|k, v| Arc::strong_count(v) > 1 || !idle(k, v));
            self.swept_to.store(map.len(), Ordering::Relaxed);
        }
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(value))
            .clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_idle_entries_once_doubled_and_keeps_busy_ones() {
        // Even keys are "busy" (never idle).
        let table: Table<u32, u32> = Table::new(|k, _| k % 2 == 1);
        let held = table.get_or_make(&1, || 10);
        for k in 0..SWEEP_FLOOR as u32 {
            table.get_or_make(&k, || k);
        }
        assert_eq!(table.len(), SWEEP_FLOOR);
        table.get_or_make(&100_000, || 0);
        // The odd ones went, except key 1, which a caller still holds.
        assert_eq!(table.len(), SWEEP_FLOOR / 2 + 2);
        assert_eq!(*table.get_or_make(&1, || 99), 10);
        assert_eq!(*held, 10);
        assert!(table.get(&3).is_none());
        assert_eq!(*table.get(&4).unwrap(), 4);
    }

    #[test]
    fn the_first_insert_wins() {
        let table: Table<&str, u32> = Table::new(|_, _| true);
        assert_eq!(*table.insert_unless_present(&"a", 1), 1);
        assert_eq!(*table.insert_unless_present(&"a", 2), 1);
    }
}
