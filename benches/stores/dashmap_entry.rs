//! Baseline **dashmap-entry**: the spec's entry in a `DashMap`, updated through `entry()`, what a
//! user would write first. Every crash takes its shard's write guard, even for a key that is
//! already there; a gate check takes the read guard.

use std::collections::hash_map::RandomState;
use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};
use dashmap::DashMap;

use super::spec_entry::{SpecEntry, Value};
use super::{Key, Store};

/// The spec's entries in a sharded map with dashmap's default shard count, as a user's first
/// version would have: four per available core, rounded up to a power of two (8 on the 2-core
/// machine of the README's figures). Ours has 256 shards (`src/table.rs` says why). `V` is
/// [`SpecEntry`], or [`ReportedEntry`](super::ReportedEntry) for the workloads that report by
/// incarnation.
#[derive(Debug)]
pub(crate) struct DashMapEntryStore<V = SpecEntry> {
    policy: BackendRecoveryPolicy,
    entries: DashMap<Key, V, RandomState>,
}

impl<V: Value> Store for DashMapEntryStore<V> {
    const NAME: &'static str = "dashmap-entry";

    fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        DashMapEntryStore {
            policy,
            entries: DashMap::with_hasher(RandomState::new()),
        }
    }

    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision {
        // The write guard lives as long as the entry reference, to the end of the statement.
        self.entries
            .entry(key)
            .or_insert_with(|| V::new(now))
            .spec_mut()
            .record_crash(now, &self.policy)
    }

    fn record_crash_of(&self, key: Key, incarnation: u64, now: Instant) -> BackendRecoveryDecision {
        // Every report under the shard's write guard, duplicates included, as `record_crash`.
        self.entries
            .entry(key)
            .or_insert_with(|| V::new(now))
            .report_crash(incarnation, now, &self.policy)
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        self.entries
            .get(key)
            .map_or(BackendRecoveryStatus::Healthy, |entry| {
                entry.spec().status(now, &self.policy)
            })
    }

    fn record_success(&self, key: &Key) {
        self.entries.remove(key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        let mut removed = 0;
        self.entries.retain(|_, entry| {
            let closed = entry.spec().window_closed(now, &self.policy);
            removed += usize::from(closed);
            !closed
        });
        removed
    }
}
