//! [`BackendRecoveryState`]: the spec's state, shared by every worker thread through `&self`.
//!
//! Which guard each operation holds (see `table.rs` for the discipline):
//!
//! | operation                  | key cached by this thread      | known key               | new key               |
//! |----------------------------|--------------------------------|-------------------------|-----------------------|
//! | `record_crash`             | none: CAS on the cached word   | read guard, CAS         | write guard, insert   |
//! | `status`                   | none: one load                 | read guard, one load    | none, usually (below) |
//! | `record_crash_of`          | none: loads (duplicate), report lock (the one that counts) | read guard, then the same | write guard, insert |
//! | `claim_launch`             | none: CAS on the cached word   | read guard, CAS         | write guard, insert   |
//! | `record_success(_at)`      | write guard, remove            | write guard, remove     | write guard, nothing  |
//! | `purge_expired`, automatic | the write guard of each shard holding purgeable entries, in turn                     |
//! | `snapshot`                 | each shard's read guard in turn                                                      |
//!
//! A key is cached by a thread that looked it up in the table often in a short while (four
//! counted lookups in a row, about one lookup in eight counted; `cache.rs`); caching it may take
//! the write guard once, but only if it is free. Removals mark the cell in its word under their
//! write guard, so that cached copies notice.
//!
//! A key without an entry is first looked for in its shard's presence summary, one atomic load
//! (`table.rs`): unless another key of the shard shares its bit, it is known absent without a
//! guard. A new key's crash then goes straight to the write guard.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

use crate::cache::ReadCache;
use crate::cell::{Cell, CellRef, RichCell, Shared};
use crate::decision::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
use crate::epoch::Epoch;
use crate::key::BackendKey;
use crate::metrics::{Counter, Metrics};
use crate::occupancy::Occupancy;
use crate::policy::BackendRecoveryPolicy;
use crate::table::Table;

mod crash;
mod gate;
mod inspect;
mod launch;
mod room;
#[cfg(loom)]
mod teeth;

use crate::word::{Rules, Word};

/// Per-backend crash recovery state, safe to share between threads.
///
/// The first crash of a backend in a budget window is answered with one `Retry` after the
/// policy's backoff (or, as the [policy](BackendRecoveryPolicy) allows, the first few, after a
/// growing backoff); every further crash in that window with a `Refuse` carrying the rest of the
/// window. The decisions are exactly those of the single-threaded spec, to the nanosecond, for
/// any sequential history; concurrent calls behave as if they ran in some order consistent with
/// real time. One bound, from what the spec does not have (automatic purging, below): an
/// automatic purge trusts the instant of the call that runs it, so a call whose instant is more
/// than a budget window behind that one's may find its key's window purged, and opens a new one
/// where the spec would have refused (within a window behind, the answers stay exact).
///
/// Every method takes `&self`: put the state in an `Arc` (or a `static`) and call it from any
/// number of worker threads. Keys are sharded; a crash of a backend that already has an entry
/// takes no exclusive lock, and a gate check ([`status`](Self::status)) only loads. A key's
/// `Hash` and `Eq` run under a shard's lock, so they must not call back into the same state (as
/// with a map behind a mutex, such a call can deadlock).
///
/// Beyond the spec: [`record_crash_of`](Self::record_crash_of) counts the reports of one crash
/// seen by several workers once; entries whose window has passed are purged by themselves, so
/// memory stays bounded (see [`len`](Self::len)), and [`with_max_entries`](Self::with_max_entries)
/// caps it; [`snapshot`](Self::snapshot) and [`metrics`](Self::metrics) show what it holds and
/// what it decided.
///
/// No method panics on its own; a panic in the key type's `Hash`, `Eq`, `Clone` or `Drop` (or in
/// the hasher) propagates to the caller.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState};
///
/// let now = Instant::now();
/// let state = BackendRecoveryState::<String>::with_policy(BackendRecoveryPolicy::new(
///     Duration::from_millis(75),
///     Duration::from_secs(30),
/// ));
///
/// // First crash: retry once after the backoff.
/// let first = state.record_crash("indexer".to_string(), now);
/// assert_eq!(first, BackendRecoveryDecision::Retry { retry_after: Duration::from_millis(75), attempt: 1 });
///
/// // Second crash 2 s later: refused for the remaining 28 s of the window.
/// let second = state.record_crash("indexer".to_string(), now + Duration::from_secs(2));
/// assert!(!second.is_retry());
/// assert_eq!(second.retry_after(), Duration::from_secs(28));
///
/// // The gate a Hello checks says the same.
/// let gate = state.status("indexer", now + Duration::from_secs(2));
/// assert!(!gate.is_available());
/// assert_eq!(gate.retry_after_ms(), Some(28_000));
///
/// // A verified healthy backend is forgotten.
/// state.record_success("indexer");
/// assert!(state.is_empty());
/// ```
pub struct BackendRecoveryState<K: Send = BackendKey, S = RandomState> {
    /// The policy, normalized, with what the transitions precompute from it.
    policy: Rules,
    epoch: Epoch,
    cells: Table<K, Cell, RichCell, S>,
    /// Each thread's cells of the keys it checked, for gate checks without a guard.
    reads: ReadCache<K>,
    occupancy: Occupancy,
    metrics: Metrics,
}

/// One tracked key and its status, from [`BackendRecoveryState::snapshot`].
///
/// Plain data: nothing about it panics.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use backend_recovery::{BackendRecoverySnapshotEntry, BackendRecoveryState};
///
/// let state = BackendRecoveryState::<&str>::new();
/// let now = Instant::now();
/// state.record_crash("search", now);
/// let entries: Vec<BackendRecoverySnapshotEntry<&str>> = state.snapshot(now);
/// assert_eq!(entries[0].key, "search");
/// assert_eq!(entries[0].status, state.status("search", now));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackendRecoverySnapshotEntry<K> {
    /// The backend's key.
    pub key: K,
    /// Its status at the snapshot's instant.
    pub status: BackendRecoveryStatus,
}

impl<K: Hash + Eq + Send> BackendRecoveryState<K, RandomState> {
    /// Empty state with the default policy (250 ms backoff, 30 s window).
    ///
    /// # Examples
    ///
    /// ```
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// assert!(state.is_empty());
    /// assert_eq!(state.policy(), BackendRecoveryPolicy::default());
    /// assert_eq!(state.max_entries(), None);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn new() -> Self {
        Self::with_policy(BackendRecoveryPolicy::default())
    }

    /// Empty state with the given policy, normalised: zero durations in it are clamped to 1 ms,
    /// and the other settings into their ranges (see [`policy`](Self::policy)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let first = state.record_crash("search", Instant::now());
    /// assert_eq!(first.retry_after(), Duration::from_millis(100));
    /// assert_eq!(state.policy(), policy);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        Self::with_policy_and_hasher(policy, RandomState::new())
    }
}

impl<K: Hash + Eq + Send> Default for BackendRecoveryState<K, RandomState> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// Empty state with the given policy (normalised as by [`with_policy`](Self::with_policy))
    /// and a hasher for the key map.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::hash::{BuildHasherDefault, DefaultHasher};
    /// use std::time::Instant;
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let hasher = BuildHasherDefault::<DefaultHasher>::default();
    /// let policy = BackendRecoveryPolicy::default();
    /// let state = BackendRecoveryState::<&str, _>::with_policy_and_hasher(policy, hasher);
    /// assert!(state.record_crash("search", Instant::now()).is_retry());
    /// assert_eq!(state.len(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn with_policy_and_hasher(policy: BackendRecoveryPolicy, hasher: S) -> Self {
        let policy = Rules::new(policy.normalized());
        BackendRecoveryState {
            policy,
            epoch: Epoch::before(Instant::now()),
            cells: Table::with_hasher(hasher, policy),
            reads: ReadCache::new(),
            occupancy: Occupancy::new(usize::MAX),
            metrics: Metrics::enabled(),
        }
    }

    /// The same state, holding at most `max_entries` keys.
    ///
    /// When it is full, a crash of a key it does not track first purges, as automatic purging
    /// does: entries whose window started at least two budget windows ago (one window past
    /// expiry, the margin that keeps purging invisible to threads whose instants lag; an
    /// explicit [`purge_expired`](Self::purge_expired) takes expired entries at once). If that
    /// frees no place, the crash is refused with
    /// [`BackendRecoveryRefusalReason::CapacityExhausted`] (see there why failing closed is the
    /// default), carrying the time until the first entry can be purged so, or the budget window
    /// if none is left to wait for. Keys already tracked keep their exact behaviour. A cap of 0
    /// refuses every crash.
    ///
    /// That hint is a lower bound: the state remembers it from its last scan instead of scanning
    /// the whole table on every refused crash, and a tracked key that crashes again in a new
    /// window moves its own expiry later, so a client that comes back on time may be told to
    /// wait again. (A success, on the other hand, frees a place at once, before any hint runs
    /// out.)
    ///
    /// Meant for a new state, but given to one that holds entries it counts them: if they are
    /// `max_entries` or more, it keeps them all and refuses new keys until successes or purges
    /// bring it under the cap.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryState};
    ///
    /// let state = BackendRecoveryState::<&str>::new().with_max_entries(1); // 30 s window
    /// let now = Instant::now();
    /// assert!(state.record_crash("search", now).is_retry());
    /// // Full: a new backend is refused until "search" could be purged, two windows on.
    /// let full = BackendRecoveryDecision::Refuse {
    ///     reason: BackendRecoveryRefusalReason::CapacityExhausted,
    ///     retry_after: Duration::from_secs(60),
    /// };
    /// assert_eq!(state.record_crash("index", now), full);
    /// state.record_success("search"); // frees the place at once
    /// assert!(state.record_crash("index", now).is_retry());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.occupancy = self.occupancy.with_cap(max_entries);
        self
    }

    /// The same state without counters: [`metrics`](Self::metrics) then reads all zeros.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::{BackendRecoveryMetrics, BackendRecoveryState};
    ///
    /// let state = BackendRecoveryState::<&str>::new().without_metrics();
    /// assert!(state.record_crash("search", Instant::now()).is_retry());
    /// assert_eq!(state.metrics(), BackendRecoveryMetrics::default());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = Metrics::disabled();
        self
    }

    /// The key's jitter seed, hashed only when the policy has jitter.
    fn jitter_seed(&self, key: &K) -> u64 {
        if self.policy.jitter_per_mille == 0 {
            0
        } else {
            crate::policy::jitter_seed(key)
        }
    }

    /// Applies a transition to `cell` by compare-and-swap (or, in a loom build told to break
    /// it, by the load-then-store the teeth models must catch).
    fn update_cell<R>(&self, cell: CellRef<'_>, transition: impl FnMut(Word) -> (Word, R)) -> R {
        let answer = self.update_cell_if(cell, transition, |_| true);
        answer.expect("`usable` accepts every word")
    }

    /// As [`update_cell`](Self::update_cell), unless `usable` refuses the word: checked inside
    /// the compare-and-swap loop, on the word the transition replaces.
    fn update_cell_if<R>(
        &self,
        cell: CellRef<'_>,
        transition: impl FnMut(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        #[cfg(loom)]
        if self.cells.teeth.cell_updates {
            return cell.update_without_cas(transition, usable);
        }
        cell.update_if(transition, usable)
    }

    /// Caches `key`'s cell for this thread, giving it a shared word first (under the write
    /// guard) if it has none yet. The key may have been removed or replaced since it was read;
    /// then whatever cell it has now is cached, or nothing. If the shard's lock is busy, it
    /// caches nothing this time rather than wait: a crash or a check never waits for an
    /// exclusive lock on a key the table holds.
    fn cache(&self, hash: u64, key: K, shared: Option<Arc<Shared>>) {
        let shared =
            shared.or_else(|| self.cells.try_update_rich(hash, &key, |rich| rich.shared()));
        if let Some(shared) = shared {
            self.reads
                .insert(hash, key, shared, |cached| self.cells.hash_one(cached));
        }
    }

    /// A transition on a cached cell, as [`update_cell`](Self::update_cell) does on one in the
    /// table; `None` if the cell was removed or `usable` refuses its word.
    fn update_shared<R>(
        &self,
        shared: &Shared,
        transition: impl FnMut(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        #[cfg(loom)]
        if self.cells.teeth.cell_updates {
            return shared.update_live_without_cas(transition, usable);
        }
        shared.update_live(transition, usable)
    }

    fn count(&self, decision: &BackendRecoveryDecision) {
        let counter = match decision {
            BackendRecoveryDecision::Retry { .. } => Counter::RetriesGranted,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                ..
            } => Counter::CapacityRefusals,
            BackendRecoveryDecision::Refuse { .. } => Counter::Refusals,
        };
        self.metrics.add(counter, 1);
    }
}

impl<K, S> fmt::Debug for BackendRecoveryState<K, S>
where
    K: Hash + Eq + Send,
    S: BuildHasher + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendRecoveryState")
            .field("policy", &*self.policy)
            .field("len", &self.len())
            .field("max_entries", &self.max_entries())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
