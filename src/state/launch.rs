//! Launches: who may (re)launch a backend ([`claim_launch`](BackendRecoveryState::claim_launch)),
//! and the success that settles a launch and, past its probation, forgets the crashes.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use crate::cell::{CellMut, Shared};
use crate::decision::{BackendLaunchDecision, BackendRecoveryRefusalReason};
use crate::metrics::Counter;
use crate::word::{self, Word};

use super::BackendRecoveryState;

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// Claims the right to launch `key`'s backend at `now`: the one caller told
    /// [`Launch`](BackendLaunchDecision::Launch) launches it; every other is told to wait or is
    /// refused, with a retry-after.
    ///
    /// For a router that launches backends on demand: call it when a Hello finds the backend
    /// missing or dead (after reporting the death with [`record_crash`](Self::record_crash)).
    /// - A backend never launched, or whose refusal has passed, is claimed by exactly one caller;
    ///   so is each retry a crash was granted, once its backoff has passed.
    /// - While the backoff runs, or another caller's claim is pending, the answer is
    ///   [`Wait`](BackendLaunchDecision::Wait) with the time until that can change; while the
    ///   budget is spent, [`Refuse`](BackendLaunchDecision::Refuse), as a crash would be.
    /// - The winner reports how the launch went: [`record_crash`](Self::record_crash) if it
    ///   failed (the next claim follows that crash's decision), or
    ///   [`record_success_at`](Self::record_success_at) once the backend answers. A claim never
    ///   reported lapses after the policy's
    ///   [`launch_timeout`](crate::BackendRecoveryPolicy::launch_timeout), and the next caller wins.
    /// - The winner looks at the backend once more before launching it. A healthy backend's
    ///   success leaves nothing in the state, so a launch that finished after the caller looked
    ///   and before it claimed cannot be seen by the claim. If a backend is running, the winner
    ///   reports it with [`record_success_at`](Self::record_success_at), which settles the
    ///   claim, and uses it.
    ///
    /// Lock-free for a key the state tracks (one compare-and-swap of its word under the shard's
    /// read guard, or none through this thread's cache); a key without an entry is inserted
    /// under the write guard, and refused with
    /// [`CapacityExhausted`](BackendRecoveryRefusalReason::CapacityExhausted) if a capped state
    /// is full. Claims leave [`status`](Self::status) as it was, so a running backend is never
    /// gated by a launch in progress.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendLaunchDecision, BackendRecoveryState};
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff
    /// let t0 = Instant::now();
    /// assert_eq!(state.claim_launch(&"indexer", t0), BackendLaunchDecision::Launch);
    /// assert!(!state.claim_launch(&"indexer", t0).is_launch(), "one launcher");
    /// // The launch fails: a retry is granted, from the end of its backoff.
    /// assert!(state.record_crash("indexer", t0).is_retry());
    /// let early = state.claim_launch(&"indexer", t0 + Duration::from_millis(100));
    /// assert_eq!(early, BackendLaunchDecision::Wait { retry_after: Duration::from_millis(150) });
    /// let due = t0 + Duration::from_millis(250);
    /// assert!(state.claim_launch(&"indexer", due).is_launch());
    /// assert!(!state.claim_launch(&"indexer", due).is_launch());
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Clone` implementation (or the hasher) panics;
    /// the panic propagates to the caller.
    pub fn claim_launch(&self, key: &K, now: Instant) -> BackendLaunchDecision
    where
        K: Clone,
    {
        let now = self.epoch.ticks(now);
        let claim = |word| word::claim(word, now, &self.policy);
        let hash = self.cells.hash_one(key);
        let cached = self.reads.lookup(hash, key, |shared| {
            self.update_shared(shared, claim, Word::claimable_without_write_guard)
        });
        if let Ok(decision) = cached {
            return decision;
        }
        // A cell in the table is never retired under a read guard (removals retire and remove
        // under one write guard), so any word found here may be claimed.
        if let Some(decision) = self
            .cells
            .read_update(hash, key, |cell| self.update_cell(cell, claim))
        {
            return decision;
        }
        self.upsert(key.clone(), now, |key| {
            let update = |cell: CellMut<'_>| self.update_cell(cell.as_ref(), claim);
            self.cells.upsert(hash, key, || self.vacant(), update)
        })
        .unwrap_or_else(|retry_after| BackendLaunchDecision::Refuse {
            reason: BackendRecoveryRefusalReason::CapacityExhausted,
            retry_after,
        })
    }

    /// Forgets the crashes of `key` after the backend was verified healthy: its next crash is a
    /// first crash. (A key reported by incarnation stays as a tombstone until its window would
    /// have closed; see [`record_crash_of`](Self::record_crash_of).)
    ///
    /// With a probation ([`min_uptime`](crate::BackendRecoveryPolicy::min_uptime)), this is
    /// [`record_success_at`](Self::record_success_at) at `Instant::now()`; without one (the
    /// default), the spec's success, which needs no instant. Every call counts one success in
    /// [`metrics`](Self::metrics), whether or not `key` had an entry.
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
    /// assert!(!state.record_crash("search", now).is_retry(), "budget spent");
    /// // The relaunched backend answered a Hello: its crashes are forgotten.
    /// state.record_success("search");
    /// assert!(state.is_empty());
    /// assert!(state.record_crash("search", now + Duration::from_secs(1)).is_retry());
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Drop` implementation (or the hasher) panics;
    /// the panic propagates to the caller.
    pub fn record_success<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = if self.policy.min_uptime.is_zero() {
            // Unused: without a probation every success forgets.
            0
        } else {
            self.epoch.ticks(Instant::now())
        };
        self.succeed(key, now);
    }

    /// Reports that `key`'s backend was seen healthy at `now`, and returns whether its crashes
    /// were forgotten.
    ///
    /// Without a probation (the default), every success forgets, as
    /// [`record_success`](Self::record_success). With
    /// [`min_uptime`](crate::BackendRecoveryPolicy::min_uptime), a success less than `min_uptime` after
    /// the launch it follows (the last claim won by [`claim_launch`](Self::claim_launch), or the
    /// end of the backoff or refusal before which no launch could start) keeps the crashes: a
    /// backend that dies soon after every launch then spends its budget and is refused, instead
    /// of being forgotten at each launch. It still settles a pending claim: the launch is done.
    /// Why an instant: the probation is measured from the launch, which only the instant of the
    /// success can be compared with, and the broker's clock, like every other call's, is the
    /// caller's. Report again once the backend has been up long enough (for example on a later
    /// Hello it serves) to forget its crashes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .min_uptime(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let t0 = Instant::now();
    /// assert!(state.record_crash("indexer", t0).is_retry());
    /// let relaunch = t0 + Duration::from_secs(1);
    /// assert!(state.claim_launch(&"indexer", relaunch).is_launch());
    /// // It answered at once, but has not been up for a minute: the crash is kept.
    /// assert!(!state.record_success_at("indexer", relaunch + Duration::from_millis(10)));
    /// assert!(!state.record_crash("indexer", relaunch + Duration::from_secs(2)).is_retry());
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Drop` implementation (or the hasher) panics;
    /// the panic propagates to the caller.
    pub fn record_success_at<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.succeed(key, self.epoch.ticks(now))
    }

    /// A success of `key` at `now` (in ticks), under the shard's write guard: forgets its
    /// crashes (removing the entry, or leaving a tombstone) unless its probation says to keep
    /// them (`word::succeed`). Returns whether they were forgotten.
    pub(super) fn succeed<Q>(&self, key: &Q, now: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut forgotten = true;
        self.cells
            .remove_if(self.cells.hash_one(key), key, |mut cell| {
                // Reports through a read cache wait from here until the cell is kept or
                // retired: one counted in between would be forgotten with the entry, and a late
                // duplicate of it would count again.
                let shared = cell.as_ref().shared();
                let report = shared.as_deref().map(Shared::lock_report);
                #[cfg(loom)]
                let report = report.filter(|_| !self.cells.teeth.success_lock);
                // A compare-and-swap even under the write guard: a crash through a read cache
                // may race it.
                let forget = cell
                    .as_ref()
                    .update(|word| word::succeed(word, now, &self.policy));
                forgotten = forget;
                let remembers = match &report {
                    Some(report) => report.counted().is_some(),
                    #[cfg(loom)]
                    None => shared.as_deref().is_some_and(Shared::remembers_report),
                    #[cfg(not(loom))]
                    None => false,
                };
                let remove = forget && cell.forget_crashes(remembers);
                if remove {
                    // Released under the write guard, so a crash that then finds the state full
                    // cannot have missed this removal.
                    self.occupancy.release(1);
                    self.retire(&mut cell);
                }
                drop(report);
                remove
            });
        self.metrics.add(Counter::Successes, 1);
        forgotten
    }
}
