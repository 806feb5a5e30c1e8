//! Baseline **mutex**: the spec's `HashMap` behind one `parking_lot::Mutex`, what a broker does
//! today. Every call, reads included, takes the one lock; hashing happens under it too.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};
use parking_lot::Mutex;

use super::spec_entry::{SpecEntry, Value};
use super::{Key, Store};

/// The spec's state, unchanged, shared through one global lock; `V` is [`SpecEntry`], or
/// [`ReportedEntry`](super::ReportedEntry) for the workloads that report by incarnation.
#[derive(Debug)]
pub(crate) struct MutexStore<V = SpecEntry> {
    policy: BackendRecoveryPolicy,
    entries: Mutex<HashMap<Key, V, RandomState>>,
}

impl<V: Value> Store for MutexStore<V> {
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
            .or_insert_with(|| V::new(now))
            .spec_mut()
            .record_crash(now, &self.policy)
    }

    fn record_crash_of(&self, key: Key, incarnation: u64, now: Instant) -> BackendRecoveryDecision {
        let mut entries = self.entries.lock();
        entries
            .entry(key)
            .or_insert_with(|| V::new(now))
            .report_crash(incarnation, now, &self.policy)
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        let entries = self.entries.lock();
        entries
            .get(key)
            .map_or(BackendRecoveryStatus::Healthy, |entry| {
                entry.spec().status(now, &self.policy)
            })
    }

    fn record_success(&self, key: &Key) {
        self.entries.lock().remove(key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, entry| !entry.spec().window_closed(now, &self.policy));
        before - entries.len()
    }
}
