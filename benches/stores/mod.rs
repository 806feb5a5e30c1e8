//! The three stores the benches compare, behind one small trait.
//!
//! - **ours**: [`BackendRecoveryState`], the crate under test;
//! - **mutex**: the spec's `HashMap` behind one `parking_lot::Mutex` ([`MutexStore`]);
//! - **dashmap-entry**: the spec's entry in a `DashMap`, updated under the write guard of
//!   `entry()` ([`DashMapEntryStore`]).
//!
//! All three use `u64` keys and std's `RandomState` (SipHash-1-3), so they differ only in how
//! they synchronise (which includes how many shards: dashmap-entry keeps dashmap's default).
//! `u64` rather than the crate's `BackendKey` or a `String`: `record_crash` takes its key by
//! value, so a string key would cost every crash an allocation, a copy and a free outside any
//! lock, the same in all three, which would only dilute the differences being measured (and add
//! the allocator's own contention). A short key is also the conservative
//! choice against the mutex baseline: it hashes under its lock, where a longer key would lengthen
//! its critical section, while the sharded maps hash before locking.

mod dashmap_entry;
mod mutex;
pub(crate) mod spec_entry;

use std::time::Instant;

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState, BackendRecoveryStatus,
};

pub(crate) use dashmap_entry::DashMapEntryStore;
pub(crate) use mutex::MutexStore;
pub(crate) use spec_entry::ReportedEntry;

/// The key type of every store in the benches.
pub(crate) type Key = u64;

/// The crate's API as the benches use it: the spec's two calls, the gate check and purging.
pub(crate) trait Store: Send + Sync + 'static {
    /// The implementation's name in bench ids, the chart and the table.
    const NAME: &'static str;

    /// An empty store with `policy`.
    fn with_policy(policy: BackendRecoveryPolicy) -> Self;

    /// Records a crash of `key` at `now` and returns the decision.
    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision;

    /// Records a crash of `key` reported for `incarnation` at `now` (ours' `record_crash_of`):
    /// the reports of one incarnation count once.
    fn record_crash_of(&self, key: Key, incarnation: u64, now: Instant) -> BackendRecoveryDecision;

    /// The gate check a Hello makes for `key` at `now`.
    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus;

    /// Forgets `key`, as after a verified healthy start.
    fn record_success(&self, key: &Key);

    /// Removes the entries whose window has closed at `now`; how many.
    fn purge_expired(&self, now: Instant) -> usize;
}

impl Store for BackendRecoveryState<Key> {
    const NAME: &'static str = "ours";

    fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        BackendRecoveryState::with_policy(policy)
    }

    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision {
        BackendRecoveryState::record_crash(self, key, now)
    }

    fn record_crash_of(&self, key: Key, incarnation: u64, now: Instant) -> BackendRecoveryDecision {
        BackendRecoveryState::record_crash_of(self, key, incarnation, now).decision
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        BackendRecoveryState::status(self, key, now)
    }

    fn record_success(&self, key: &Key) {
        BackendRecoveryState::record_success(self, key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        BackendRecoveryState::purge_expired(self, now)
    }
}

/// The crate with its counters switched off (`without_metrics`): the metrics-overhead benches
/// compare it with [`BackendRecoveryState`] to show what counting costs on the crash path.
pub(crate) struct OursWithoutMetrics(BackendRecoveryState<Key>);

impl Store for OursWithoutMetrics {
    const NAME: &'static str = "ours-no-metrics";

    fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        OursWithoutMetrics(BackendRecoveryState::with_policy(policy).without_metrics())
    }

    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision {
        self.0.record_crash(key, now)
    }

    fn record_crash_of(&self, key: Key, incarnation: u64, now: Instant) -> BackendRecoveryDecision {
        self.0.record_crash_of(key, incarnation, now).decision
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        self.0.status(key, now)
    }

    fn record_success(&self, key: &Key) {
        self.0.record_success(key);
    }

    fn purge_expired(&self, now: Instant) -> usize {
        self.0.purge_expired(now)
    }
}
