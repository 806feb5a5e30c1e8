//! Room in the table: inserts reserve a place (and, in a capped state that is full, purge or
//! refuse), and entries whose window has passed are purged, on demand or by themselves.

use std::time::{Duration, Instant};

use crate::cell::{Cell, CellMut};
use crate::decision::{BackendRecoveryDecision, BackendRecoveryRefusalReason};
use crate::metrics::Counter;
use crate::occupancy::PurgeDue;
use crate::word::{self, Word};

use super::BackendRecoveryState;

impl<K: std::hash::Hash + Eq + Send, S: std::hash::BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// Removes every entry whose budget window has closed at `now`, and returns how many.
    ///
    /// An expired entry decides exactly like a missing one, so this changes no answer of
    /// `record_crash` or `status` for any later call whose instant is not before `now`. (Calls
    /// with earlier instants, which the spec allows, could have found such an entry still open;
    /// automatic purging keeps a window's margin for them.) The one thing purging forgets is a
    /// key's last incarnation (see [`record_crash_of`](Self::record_crash_of)): a report of it
    /// arriving after the purge counts as a new crash, even one counted just before its window
    /// closed. Takes each shard's write guard in turn.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 30 s window
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// assert_eq!(state.purge_expired(now + Duration::from_secs(29)), 0);
    /// assert_eq!(state.purge_expired(now + Duration::from_secs(30)), 1);
    /// assert!(state.is_empty());
    /// assert_eq!(state.metrics().entries_purged, 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless a key's `Hash` or `Drop` implementation (or the hasher) panics; the
    /// panic propagates to the caller.
    pub fn purge_expired(&self, now: Instant) -> usize {
        self.purge(self.epoch.ticks(now), self.policy.budget_window, Scan::Skip)
            .0
    }

    /// Runs `upsert`, one of the table's write-guarded upserts of `key`, whose new cells come
    /// from [`vacant`](Self::vacant). A new key first reserves a place; if the state is full,
    /// it purges and tries once more, and on failure returns the time until an entry can next
    /// be purged. After an insert, runs the automatic purge if it is due.
    pub(super) fn upsert<R>(
        &self,
        key: K,
        now: u64,
        mut upsert: impl FnMut(K) -> Result<(R, bool), K>,
    ) -> Result<R, Duration> {
        let (answer, inserted) = match upsert(key) {
            Ok(done) => done,
            Err(key) => {
                // Full. A purge that cannot free a place yet is skipped: scanning the whole
                // table on every refused crash would make a flood of new keys expensive.
                let horizon = u64::try_from(self.automatic_purge_age().as_nanos());
                let horizon = horizon.unwrap_or(u64::MAX);
                if let Some(ticks) = self.occupancy.ticks_until_purge_can_free(now, horizon) {
                    return Err(Duration::from_nanos(ticks));
                }
                // No guard is held here, so purging cannot deadlock with this insert.
                // Every shard, under its lock: the hint must count inserts still in progress,
                // which a skipped shard's bound may not show yet.
                let (_, soonest) = self.purge(now, self.automatic_purge_age(), Scan::All);
                let wait = soonest.unwrap_or(self.policy.budget_window);
                let wait_ticks = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.occupancy
                    .no_purge_before(now.saturating_add(wait_ticks));
                upsert(key).map_err(|_| wait)?
            }
        };
        if inserted {
            match self.occupancy.purge_due() {
                PurgeDue::No => {}
                PurgeDue::Lead(lead) => {
                    self.purge(now, self.automatic_purge_age(), Scan::Skip);
                    lead.finish();
                }
                PurgeDue::Help => {
                    self.purge(now, self.automatic_purge_age(), Scan::Skip);
                }
            }
        }
        Ok(answer)
    }

    /// A new cell for an insert, if the state has room for one; reserves its place.
    pub(super) fn vacant(&self) -> Option<Cell> {
        self.occupancy.try_reserve().then(Cell::vacant)
    }

    /// Automatic purges keep entries whose window started within two budget windows of `now`:
    /// expired entries decide like missing ones, and the extra window keeps that true for other
    /// threads whose instants run up to a window behind the purging thread's.
    pub(super) fn automatic_purge_age(&self) -> Duration {
        self.policy.budget_window.saturating_mul(2)
    }

    /// Removes entries whose window started at least `age` before `now`. Returns how many, and
    /// the time until the first survivor would be removed by the same rule.
    pub(super) fn purge(&self, now: u64, age: Duration, scan: Scan) -> (usize, Option<Duration>) {
        // Expired means `now - start >= age`, that is `start <= now - age`: shards whose
        // entries all started later are skipped without a lock (see `Table::retain`). No
        // cutoff, nothing can have expired: the age is longer than `now` is from the epoch.
        let age_ticks = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
        let cutoff = match scan {
            Scan::Skip => now.checked_sub(age_ticks),
            Scan::All => Some(u64::MAX),
        };
        let (removed, earliest) = self.cells.retain(cutoff, |_, mut cell| {
            let expired = self.retire_if(&mut cell, |word| {
                word::expired(word, now, age, &self.policy)
            });
            if expired {
                // Released under the shard's write guard, as in `record_success`.
                self.occupancy.release(1);
            }
            !expired
        });
        self.metrics.add(Counter::EntriesPurged, removed as u64);
        let soonest = (earliest != u64::MAX).then(|| word::time_until_expired(earliest, now, age));
        (removed, soonest)
    }

    /// Marks a cell being removed, under the write guard that removes it (see `cache.rs`).
    pub(super) fn retire(&self, cell: &mut CellMut<'_>) {
        #[cfg(loom)]
        if self.cells.teeth.retirement {
            return;
        }
        cell.retire();
    }

    /// Retires `cell` if `expired` holds for its word, atomically (see [`CellMut::retire_if`]).
    pub(super) fn retire_if(&self, cell: &mut CellMut<'_>, expired: impl Fn(Word) -> bool) -> bool {
        #[cfg(loom)]
        if self.cells.teeth.retirement {
            return expired(cell.as_ref().load());
        }
        cell.retire_if(expired)
    }
}

/// Which shards a purge visits.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scan {
    /// Only those whose bound says they may hold a purgeable entry.
    Skip,
    /// All of them, each under its write guard.
    All,
}

/// The refusal for a crash of an untracked key when the state is full.
pub(super) fn capacity_refusal(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::CapacityExhausted,
        retry_after,
    }
}
