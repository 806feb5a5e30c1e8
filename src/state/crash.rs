//! Crash reports: [`record_crash`](BackendRecoveryState::record_crash), the spec's call, and
//! [`record_crash_of`](BackendRecoveryState::record_crash_of), which counts each incarnation once.

use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use crate::cell::{CellMut, RichCell, Shared};
use crate::decision::{BackendCrashReport, BackendRecoveryDecision};
use crate::metrics::Counter;
use crate::table::Form;
use crate::word::{self, Word};

use super::BackendRecoveryState;
use super::room::capacity_refusal;

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
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
        // A key reported before (so rich): under the shard's read guard, which lowers the
        // shard's purge bound if the count moved the entry's earlier, as `record_crash` does.
        let known = self.cells.read_update(hash, &key, |cell| {
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
        let (decision, counted, duplicate) = match answer {
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
}
