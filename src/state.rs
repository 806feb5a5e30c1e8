//! [`BackendRecoveryState`]: the spec's state, shared by every worker thread through `&self`.
//!
//! Which guard each operation holds (see `table.rs` for the discipline):
//!
//! | operation                  | key cached by this thread      | known key               | new key               |
//! |----------------------------|--------------------------------|-------------------------|-----------------------|
//! | `record_crash`             | none: CAS on the cached word   | read guard, CAS         | write guard, insert   |
//! | `status`                   | none: one load                 | read guard, one load    | none, usually (below) |
//! | `record_crash_of`          | duplicate: read guard; the report that counts: write guard | | write guard, insert   |
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

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::ReadCache;
use crate::cell::{Cell, CellMut, CellRef, RichCell, Shared};
use crate::decision::{
    BackendCrashReport, BackendRecoveryDecision, BackendRecoveryRefusalReason,
    BackendRecoveryStatus,
};
use crate::epoch::Epoch;
use crate::key::BackendKey;
use crate::metrics::{BackendRecoveryMetrics, Counter, Metrics};
use crate::occupancy::Occupancy;
use crate::policy::BackendRecoveryPolicy;
use crate::table::{Form, Table};

mod launch;
mod room;

use crate::word::{self, Rules, Word};
use room::capacity_refusal;

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

    /// The same state with a deliberately broken cell update (load, then store, no
    /// compare-and-swap), which the loom teeth model must catch. Loom builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_cell_updates(mut self) -> Self {
        self.cells.teeth.cell_updates = true;
        self
    }

    /// The same state with removals that forget to retire the cell they remove, so a thread's
    /// cached copy stays readable after the removal: the bug the read cache's loom teeth model
    /// must catch. Loom builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_retirement(mut self) -> Self {
        self.cells.teeth.retirement = true;
        self
    }

    /// The same state with inserts that do not mark their key in the shard's presence summary,
    /// so a gate check can answer `Healthy` for a key that has an entry: the bug the summary's
    /// loom teeth model must catch (`table.rs`). Loom builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_presence_summary(mut self) -> Self {
        self.cells.teeth.presence = true;
        self
    }

    /// The same state with reports by incarnation counted without their cell's report lock
    /// (the check of the last incarnation counted and the count are two steps), which the
    /// reports' loom teeth model must catch. Loom builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_report_lock(mut self) -> Self {
        self.cells.teeth.report_lock = true;
        self
    }

    /// The same state with successes that decide whether to keep a cell as a tombstone
    /// without holding its report lock, so that a report through a read cache can be counted
    /// in between and forgotten with the entry: the bug the loom teeth model must catch. Loom
    /// builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_success_lock(mut self) -> Self {
        self.cells.teeth.success_lock = true;
        self
    }

    /// The same state with its automatic purges due after `slack` inserts instead of 1,024
    /// (`occupancy.rs`), so that a loom model reaches them with a few keys. Loom builds only;
    /// for a new state.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_purge_slack(mut self, slack: usize) -> Self {
        self.occupancy = self.occupancy.with_slack(slack);
        self
    }

    /// The entry count at which the next automatic purge falls due, and whether a thread leads
    /// one now. Loom builds only, for the models' checks.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn automatic_purge_schedule(&self) -> (usize, bool) {
        self.occupancy.schedule()
    }

    /// Records one observed crash of `key` at `now` and returns the recovery decision.
    ///
    /// The first crash in a budget window is granted a retry after the backoff; a later crash
    /// in the same window is refused with the rest of the window as its retry-after. A crash at
    /// or after the window's end opens a new window. A `now` earlier than the window's start
    /// counts as no time elapsed. Every call counts, as in the spec; when several workers may
    /// report one death, use [`record_crash_of`](Self::record_crash_of).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryState};
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff, 30 s window
    /// let t0 = Instant::now();
    /// let retry = BackendRecoveryDecision::Retry { retry_after: Duration::from_millis(250), attempt: 1 };
    /// assert_eq!(state.record_crash("search", t0), retry);
    /// let refused = state.record_crash("search", t0 + Duration::from_secs(5));
    /// assert!(!refused.is_retry());
    /// assert_eq!(refused.retry_after(), Duration::from_secs(25));
    /// // The window has passed: the next crash opens a new one.
    /// assert_eq!(state.record_crash("search", t0 + Duration::from_secs(30)), retry);
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Drop` implementation (or the hasher)
    /// panics; the panic propagates to the caller.
    pub fn record_crash(&self, key: K, now: Instant) -> BackendRecoveryDecision {
        let now = self.epoch.ticks(now);
        let jitter_seed = self.jitter_seed(&key);
        let crash = |word| word::crash(word, now, &self.policy, jitter_seed);
        let hash = self.cells.hash_one(&key);
        // A key this thread meets often: update its cached cell, no guard at all.
        let cached = self.reads.lookup(hash, &key, |shared| {
            self.update_shared(shared, crash, Word::crashable_without_write_guard)
        });
        let admit = match cached {
            Ok(decision) => {
                self.count(&decision);
                return decision;
            }
            Err(admit) => admit,
        };
        // Known key: update its cell in place under the shard's read guard. Except a tombstone,
        // which goes to the write guard as in the cache (see `updatable_without_write_guard`).
        let known = self.cells.read_update(hash, &key, |cell| {
            let decision = self.update_cell_if(cell, crash, Word::crashable_without_write_guard)?;
            // The shared word's handle only for a key about to be cached: cloning it is a
            // read-modify-write of its reference count.
            let shared = if admit { cell.shared() } else { None };
            Some((decision, shared))
        });
        let decision = match known.flatten() {
            Some((decision, shared)) => {
                if admit {
                    self.cache(hash, key, shared);
                }
                decision
            }
            // New key: insert under the write guard. Another thread may have inserted it since
            // the lookup; the upsert then updates that cell, so neither crash is lost.
            None => self
                .upsert(key, now, |key| {
                    let update = |cell: CellMut<'_>| self.update_cell(cell.as_ref(), crash);
                    self.cells.upsert(hash, key, || self.vacant(), update)
                })
                .unwrap_or_else(capacity_refusal),
        };
        self.count(&decision);
        decision
    }

    /// Records a crash of `key` reported for `incarnation`, a number the broker increases with
    /// each spawn of that backend, so that the reports of one death count once.
    ///
    /// The first report of an incarnation newer than the last one counted for `key` counts as a
    /// crash, exactly as [`record_crash`](Self::record_crash). Any other report is a duplicate
    /// (every worker connected to a backend sees it die) or stale: it is not counted, and gets
    /// the decision already made for that crash, of the same kind and attempt, with the
    /// retry-after measured from `now`. After [`record_success`](Self::record_success) the key
    /// keeps remembering its last incarnation until its window would have closed, so a late
    /// report of the dead incarnation is still a duplicate.
    ///
    /// The answer says whether this report was the one counted
    /// ([`counted`](BackendCrashReport::counted)), so that of all the threads that saw one death,
    /// exactly one acts on it. (A report refused because a capped state is full counts nothing.)
    ///
    /// Lock-free for a key reported before: a duplicate reads the last report counted with
    /// loads alone, and the report that counts (one per death) takes a lock of the key's own for
    /// as long as it takes to compare the incarnation and count the crash, under the shard's
    /// read guard or, for a key this thread reports often, through its read cache. A key's
    /// first report takes the shard's write guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// // Three workers see incarnation 7 die: one crash, counted by the first report.
    /// let first = state.record_crash_of("indexer", 7, now);
    /// assert!(first.counted && first.decision.is_retry());
    /// let again = state.record_crash_of("indexer", 7, now + Duration::from_millis(1));
    /// assert!(!again.counted && again.decision.is_retry());
    /// // The respawned incarnation 8 dies too: the budget is spent.
    /// let second = state.record_crash_of("indexer", 8, now + Duration::from_secs(1));
    /// assert!(second.counted && !second.decision.is_retry());
    /// assert_eq!(state.metrics().duplicates_coalesced, 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Drop` implementation (or the hasher)
    /// panics; the panic propagates to the caller.
    pub fn record_crash_of(&self, key: K, incarnation: u64, now: Instant) -> BackendCrashReport {
        let now = self.epoch.ticks(now);
        let jitter_seed = self.jitter_seed(&key);
        let hash = self.cells.hash_one(&key);
        let report = |shared: &Shared| {
            shared.report_crash(
                incarnation,
                now,
                &self.policy,
                jitter_seed,
                // A tombstone goes to the write guard, as in `record_crash`.
                Word::crashable_without_write_guard,
                #[cfg(loom)]
                self.cells.teeth.report_lock,
            )
        };
        // A key this thread reports often: through its cached cell, no guard at all.
        let admit = match self.reads.lookup(hash, &key, report) {
            Ok(answer) => return self.reported(Ok(answer)),
            Err(admit) => admit,
        };
        // A key reported before (so rich): under the shard's read guard.
        let known = self.cells.read_entry(hash, &key, |_, cell| {
            let Form::Rich(rich) = cell else {
                return None;
            };
            let answer = report(rich.shared_ref())?;
            Some((answer, admit.then(|| rich.shared())))
        });
        let inserted = match known.flatten() {
            Some((answer, shared)) => {
                if let Some(shared) = shared {
                    self.cache(hash, key, Some(shared));
                }
                Ok(answer)
            }
            // New, plain, or a tombstone: under the write guard, which makes the cell rich.
            None => {
                let report = |cell: &mut RichCell| {
                    cell.report_crash(incarnation, now, &self.policy, jitter_seed)
                };
                self.upsert(key, now, |key| {
                    self.cells.upsert_rich(hash, key, || self.vacant(), report)
                })
            }
        };
        self.reported(inserted)
    }

    /// The answer to a report by incarnation, counted in the metrics: `answer` is the decision
    /// and whether it was a duplicate, or the retry-after of a capacity refusal.
    fn reported(
        &self,
        answer: Result<(BackendRecoveryDecision, bool), Duration>,
    ) -> BackendCrashReport {
        let inserted = answer;
        let (decision, counted, duplicate) = match inserted {
            Ok((decision, duplicate)) => (decision, !duplicate, duplicate),
            Err(retry_after) => (capacity_refusal(retry_after), false, false),
        };
        if duplicate {
            self.metrics.add(Counter::DuplicatesCoalesced, 1);
        } else {
            self.count(&decision);
        }
        BackendCrashReport { decision, counted }
    }

    /// What a gate check at `now` sees for `key`: serve it, or refuse it with a retry-after.
    ///
    /// The answer agrees with what a crash at `now` would be told, except in a state that is full
    /// (see [`with_max_entries`](Self::with_max_entries)): a check reserves no place, so a key
    /// without an entry reads `Healthy` while its crash would be refused with
    /// [`CapacityExhausted`](BackendRecoveryRefusalReason::CapacityExhausted).
    ///
    /// Read-only, and built to scale with cores: the first checks of a tracked key on a thread
    /// look it up under the shard's read guard, and one of them (about the 25th on a thread
    /// that looks up nothing else; see `cache.rs`) also gives the cell a word that
    /// can be shared (under the write guard, once per entry) and keeps a handle on it in a
    /// per-thread cache of up to 4,096 keys. From then on, checks of that key on that thread
    /// load the cell through the handle and write no shared memory at all. A key without an
    /// entry (never crashed, forgotten by a success, or purged) is usually known absent from
    /// its shard's presence summary, one atomic load, without any guard either; only when the
    /// summary cannot tell (another key of the shard shares its bit) is it looked up under the
    /// read guard. `K: Clone` because the cache keeps its own copy of the key.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryState, BackendRecoveryStatus};
    ///
    /// let state = BackendRecoveryState::<String>::new(); // 30 s window
    /// let now = Instant::now();
    /// assert_eq!(state.status("search", now), BackendRecoveryStatus::Healthy);
    /// state.record_crash("search".to_string(), now);
    /// state.record_crash("search".to_string(), now); // budget spent
    /// let gate = state.status("search", now + Duration::from_secs(10));
    /// assert!(!gate.is_available());
    /// assert_eq!(gate.retry_after_ms(), Some(20_000));
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Clone` implementation (or the hasher) panics;
    /// the panic propagates to the caller.
    pub fn status<Q>(&self, key: &Q, now: Instant) -> BackendRecoveryStatus
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.epoch.ticks(now);
        let hash = self.cells.hash_one(key);
        let admit = match self.reads.lookup(hash, key, Shared::load_live) {
            Ok(word) => return word::status(word, now, &self.policy),
            Err(admit) => admit,
        };
        // Not cached: the cell read under the read guard is the answer. A key this thread
        // looked up recently is cached for next time.
        let entry = self.cells.read_entry(hash, key, |stored, cell| {
            (cell.load(), admit.then(|| (stored.clone(), cell.shared())))
        });
        let Some((word, admitted)) = entry else {
            return BackendRecoveryStatus::Healthy;
        };
        if let Some((key, shared)) = admitted {
            self.cache(hash, key, shared);
        }
        word::status(word, now, &self.policy)
    }

    /// Number of keys with an entry, counting entries whose window has closed but that were not
    /// purged yet, and tombstones (see [`record_crash_of`](Self::record_crash_of)).
    ///
    /// Bounded whatever the caller does, without a background thread: inserts purge by
    /// themselves once the count reaches `max(2 * E, E + 1024)`, where `E` is what survived the
    /// previous automatic purge, and an automatic purge keeps only entries whose window started
    /// within two budget windows of its instant. Inserts that race a running purge can add up
    /// to as many again before they must purge too, so `len()` stays within
    /// `2 * max(2 * E, E + 1024)` plus 32 entries per thread inserting at once (without a cap,
    /// a thread checks the count every 32 of its inserts): with instants that follow real time,
    /// a small multiple of the keys that crashed in the last two windows.
    ///
    /// Exact when no other thread is inserting or removing. Without a cap, each thread counts
    /// its own inserts and removals (so that counting never contends) and this sums them: O(threads
    /// that ever inserted).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("index", now);
    /// assert_eq!(state.len(), 2);
    /// state.record_success("search");
    /// assert_eq!(state.len(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn len(&self) -> usize {
        self.occupancy.len()
    }

    /// `true` if no key has an entry (see [`len`](Self::len)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// assert!(state.is_empty());
    /// state.record_crash("search", Instant::now());
    /// assert!(!state.is_empty());
    /// state.record_success("search");
    /// assert!(state.is_empty());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy in force, normalised: zero durations clamped to 1 ms, retries to
    /// [`MAX_RETRIES_PER_WINDOW`](crate::MAX_RETRIES_PER_WINDOW), a backoff factor to at least
    /// 1, jitter to at most 1, and the launch timeout to the budget window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, MAX_RETRIES_PER_WINDOW};
    ///
    /// let mut policy = BackendRecoveryPolicy::new(Duration::ZERO, Duration::from_secs(30));
    /// policy.retries_per_window = 100; // a public field, set past what the state can count
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// assert_eq!(state.policy().retries_per_window, MAX_RETRIES_PER_WINDOW);
    /// assert_eq!(state.policy().retry_backoff, Duration::from_millis(1));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        *self.policy
    }

    /// The cap set by [`with_max_entries`](Self::with_max_entries), if any (a cap of
    /// `usize::MAX` reads as none).
    ///
    /// # Examples
    ///
    /// ```
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// assert_eq!(BackendRecoveryState::<&str>::new().max_entries(), None);
    /// let capped = BackendRecoveryState::<&str>::new().with_max_entries(10_000);
    /// assert_eq!(capped.max_entries(), Some(10_000));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn max_entries(&self) -> Option<usize> {
        Some(self.occupancy.max_entries()).filter(|&max| max != usize::MAX)
    }

    /// Every tracked key with its status at `now`, for admin endpoints and debugging.
    ///
    /// Each entry is read consistently; the whole is not one atomic cut: shards are read one
    /// after another while other threads keep recording. Entries whose window has closed are
    /// listed as `Healthy` until they are purged, and so are keys that only have a launch claim
    /// ([`claim_launch`](Self::claim_launch)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("search", now); // refused
    /// state.record_crash("index", now);
    /// let mut entries = state.snapshot(now + Duration::from_secs(1));
    /// entries.sort_by_key(|entry| entry.key);
    /// assert_eq!(entries.len(), 2);
    /// assert!(entries[0].key == "index" && entries[0].status.is_available());
    /// assert!(entries[1].key == "search" && !entries[1].status.is_available());
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Clone` implementation panics; the panic propagates to
    /// the caller.
    pub fn snapshot(&self, now: Instant) -> Vec<BackendRecoverySnapshotEntry<K>>
    where
        K: Clone,
    {
        let now = self.epoch.ticks(now);
        let mut entries = Vec::with_capacity(self.len());
        self.cells.for_each(|key, cell| {
            entries.push(BackendRecoverySnapshotEntry {
                key: key.clone(),
                status: word::status(cell.load(), now, &self.policy),
            });
        });
        entries
    }

    /// What the state has decided since it was built (all zeros after
    /// [`without_metrics`](Self::without_metrics)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("search", now);
    /// let metrics = state.metrics();
    /// assert_eq!((metrics.retries_granted, metrics.refusals), (1, 1));
    /// assert_eq!(metrics.crash_reports(), 2);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn metrics(&self) -> BackendRecoveryMetrics {
        self.metrics.read()
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
