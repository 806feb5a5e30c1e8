//! Baseline **mutex**: the spec's `HashMap` behind one `parking_lot::Mutex`, what a broker does
//! today. Every call, reads included, takes the one lock; hashing happens under it too.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};
use parking_lot::Mutex;

use super::spec_entry::SpecEntry;
use super::{Key, Store};

/// The spec's state, unchanged, shared through one global lock.
#[derive(Debug)]
pub(crate) struct MutexStore {
    policy: BackendRecoveryPolicy,
    entries: Mutex<HashMap<Key, SpecEntry, RandomState>>,
}

impl Store for MutexStore {
    const NAME: &'static str = "mutex";

    fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        MutexStore {
            policy,
            entries: Mutex::new(HashMap::with_hasher(RandomState::new())),
        }
    }

    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision {
        let mut entries = self.entries.lock();
        entries
            .entry(key)
            .or_insert_with(|| SpecEntry::new(now))
            .record_crash(now, &self.policy)
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        let entries = self.entries.lock();
        entries
            .get(key)
            .map_or(BackendRecoveryStatus::Healthy, |entry| {
                entry.status(now, &self.policy)
            })
    }

    fn record_success(&self, key: &Key) {
        self.entries.lock().remove(key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, entry| !entry.window_closed(now, &self.policy));
        before - entries.len()
    }
}
