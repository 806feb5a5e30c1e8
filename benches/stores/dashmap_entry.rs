//! Baseline **dashmap-entry**: the spec's entry in a `DashMap`, updated through `entry()`, what a
//! user would write first. Every crash takes its shard's write guard, even for a key that is
//! already there; a gate check takes the read guard.

use std::collections::hash_map::RandomState;
use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};
use dashmap::DashMap;

use super::spec_entry::SpecEntry;
use super::{Key, Store};

/// The spec's entries in a sharded map with dashmap's default shard count, as a user's first
/// version would have: four per available core, rounded up to a power of two (8 on the 2-core
/// machine of the README's figures). Ours has 256 shards (`src/table.rs` says why).
#[derive(Debug)]
pub(crate) struct DashMapEntryStore {
    policy: BackendRecoveryPolicy,
    entries: DashMap<Key, SpecEntry, RandomState>,
}

impl Store for DashMapEntryStore {
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
            .or_insert_with(|| SpecEntry::new(now))
            .record_crash(now, &self.policy)
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        self.entries
            .get(key)
            .map_or(BackendRecoveryStatus::Healthy, |entry| {
                entry.status(now, &self.policy)
            })
    }

    fn record_success(&self, key: &Key) {
        self.entries.remove(key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        let mut removed = 0;
        self.entries.retain(|_, entry| {
            let closed = entry.window_closed(now, &self.policy);
            removed += usize::from(closed);
            !closed
        });
        removed
    }
}
