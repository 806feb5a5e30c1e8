//! The spec, sequentially: an independent model that every concurrent history is compared with.
//!
//! It follows `spec/recovery.rs` line by line (an entry with a window start and a crash count,
//! refreshed when its window has closed), with `Instant`s instead of ticks, and adds the gate
//! check the crate documents: `Healthy` when there is no open window, `Recovering` while the
//! window's one retry is in use, `Unavailable` with the rest of the window after that. It shares
//! no code with the crate's packed word, so a model that agrees with it checks spec parity too.
//!
//! Beyond the spec it follows the text of issue 5 and the crate's documentation, not its code:
//!
//! - reports by incarnation ([`record_crash_of`](Reference::record_crash_of)): the first report
//!   of an incarnation newer than the last one counted for the key counts as a crash; any other
//!   report is a duplicate and replays the counted decision, with its retry-after shortened by
//!   the time since the counted report. A success leaves such a key as a tombstone (no crash in
//!   the window, incarnation remembered) until its window would have closed;
//! - [`purge_expired`](Reference::purge_expired): removes the entries whose window has closed
//!   (tombstones included, and with them the incarnation they remember, as the crate does);
//! - a capacity ([`with_max_entries`](Reference::with_max_entries)): a crash of an untracked
//!   key in a full state first purges the entries whose window started at least two budget
//!   windows ago; if that frees no place it is refused with `CapacityExhausted`, carrying the
//!   time until the first entry could be purged so, or the budget window if there is none;
//! - the counters of `metrics()`.
//!
//! It never purges by itself: the crate's automatic purge starts only once an insert brings the
//! count to 1024 entries (`SLACK` in the crate's `occupancy.rs`), which no model here reaches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryMetrics, BackendRecoveryPolicy,
    BackendRecoveryRefusalReason, BackendRecoveryStatus,
};

use crate::scenario::Key;

/// The single-threaded spec state, as the broker kept it behind its global mutex, with the
/// additions of issue 5.
#[derive(Clone, Debug)]
pub struct Reference {
    policy: BackendRecoveryPolicy,
    entries: HashMap<Key, Entry>,
    /// `usize::MAX` when there is no cap.
    max_entries: usize,
    metrics: BackendRecoveryMetrics,
}

#[derive(Clone, Debug)]
struct Entry {
    window_started_at: Instant,
    /// 0 for a tombstone: the key succeeded but remembers its last counted report.
    crashes_in_window: u32,
    last_report: Option<CountedReport>,
}

/// The last report counted by incarnation for a key, and what it was answered.
#[derive(Clone, Debug)]
struct CountedReport {
    incarnation: u64,
    at: Instant,
    decision: BackendRecoveryDecision,
}

impl CountedReport {
    /// What a duplicate reported at `now` is told: the same decision, pointing at the same
    /// moment, so its retry-after is shorter by the time since the counted report.
    fn replay(&self, now: Instant) -> BackendRecoveryDecision {
        let since = elapsed_since(self.at, now);
        match self.decision.clone() {
            BackendRecoveryDecision::Retry {
                retry_after,
                attempt,
            } => BackendRecoveryDecision::Retry {
                retry_after: retry_after.saturating_sub(since),
                attempt,
            },
            BackendRecoveryDecision::Refuse {
                reason,
                retry_after,
            } => BackendRecoveryDecision::Refuse {
                reason,
                retry_after: retry_after.saturating_sub(since),
            },
        }
    }
}

impl Reference {
    /// Empty state with `policy` (already clamped by `BackendRecoveryPolicy::new`).
    pub fn new(policy: BackendRecoveryPolicy) -> Self {
        Reference {
            policy,
            entries: HashMap::new(),
            max_entries: usize::MAX,
            metrics: BackendRecoveryMetrics::default(),
        }
    }

    /// The same state, holding at most `max_entries` keys.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The spec's `record_crash`; a new key in a full state may be refused for capacity.
    pub fn record_crash(&mut self, key: Key, now: Instant) -> BackendRecoveryDecision {
        let decision = match self.make_room_for(key, now) {
            Ok(()) => self.crash(key, now),
            Err(refusal) => refusal,
        };
        self.count(&decision);
        decision
    }

    /// A crash report for `incarnation`: counted as [`record_crash`](Self::record_crash) if the
    /// incarnation is newer than the last one counted for `key`, else a duplicate that replays
    /// the counted decision at `now`.
    pub fn record_crash_of(
        &mut self,
        key: Key,
        incarnation: u64,
        now: Instant,
    ) -> BackendRecoveryDecision {
        let counted = self
            .entries
            .get(key)
            .and_then(|entry| entry.last_report.as_ref());
        if let Some(counted) = counted.filter(|counted| incarnation <= counted.incarnation) {
            let decision = counted.replay(now);
            self.metrics.duplicates_coalesced += 1;
            return decision;
        }
        let decision = match self.make_room_for(key, now) {
            Ok(()) => {
                let decision = self.crash(key, now);
                let entry = self.entries.get_mut(key).expect("the crash made an entry");
                entry.last_report = Some(CountedReport {
                    incarnation,
                    at: now,
                    decision: decision.clone(),
                });
                decision
            }
            Err(refusal) => refusal,
        };
        self.count(&decision);
        decision
    }

    /// The spec's `record_success`: forgets the key, except that a key reported by incarnation
    /// stays as a tombstone remembering that incarnation.
    pub fn record_success(&mut self, key: Key) {
        match self.entries.get_mut(key) {
            Some(entry) if entry.last_report.is_some() => entry.crashes_in_window = 0,
            Some(_) => {
                self.entries.remove(key);
            }
            None => {}
        }
        self.metrics.successes += 1;
    }

    /// `purge_expired`: removes the entries whose window has closed at `now`; how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        self.purge(now, self.policy.budget_window)
    }

    /// What a gate check at `now` reports: what the next crash at `now` would be told.
    pub fn status(&self, key: Key, now: Instant) -> BackendRecoveryStatus {
        let window = self.policy.budget_window;
        let Some(entry) = self.entries.get(key) else {
            return BackendRecoveryStatus::Healthy;
        };
        let elapsed = elapsed_since(entry.window_started_at, now);
        if entry.crashes_in_window == 0 || elapsed >= window {
            BackendRecoveryStatus::Healthy
        } else if entry.crashes_in_window == 1 {
            BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: window - elapsed,
            }
        } else {
            BackendRecoveryStatus::Unavailable {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: window - elapsed,
            }
        }
    }

    /// Keys with an entry, closed windows and tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters `metrics()` would show.
    pub fn metrics(&self) -> BackendRecoveryMetrics {
        self.metrics
    }

    /// The spec's crash of `key` at `now`, inserting it if needed (room was made already).
    fn crash(&mut self, key: Key, now: Instant) -> BackendRecoveryDecision {
        let window = self.policy.budget_window;
        let entry = self.entries.entry(key).or_insert(Entry {
            window_started_at: now,
            crashes_in_window: 0,
            last_report: None,
        });
        // A tombstone has no window: its next crash is a first crash, as after the spec's
        // success.
        if entry.crashes_in_window == 0 || elapsed_since(entry.window_started_at, now) >= window {
            entry.window_started_at = now;
            entry.crashes_in_window = 0;
        }
        entry.crashes_in_window = entry.crashes_in_window.saturating_add(1);
        if entry.crashes_in_window == 1 {
            BackendRecoveryDecision::Retry {
                retry_after: self.policy.retry_backoff,
                attempt: 1,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: window.saturating_sub(elapsed_since(entry.window_started_at, now)),
            }
        }
    }

    /// `Ok` if `key` is tracked or a place is free, after purging entries two windows old if
    /// the state is full; else the refusal for capacity.
    fn make_room_for(&mut self, key: Key, now: Instant) -> Result<(), BackendRecoveryDecision> {
        if self.entries.contains_key(key) || self.entries.len() < self.max_entries {
            return Ok(());
        }
        let age = self.policy.budget_window.saturating_mul(2);
        self.purge(now, age);
        if self.entries.len() < self.max_entries {
            return Ok(());
        }
        let retry_after = self
            .entries
            .values()
            .map(|entry| age.saturating_sub(elapsed_since(entry.window_started_at, now)))
            .min()
            .unwrap_or(self.policy.budget_window);
        Err(BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::CapacityExhausted,
            retry_after,
        })
    }

    /// Removes the entries whose window started at least `age` before `now`; how many.
    fn purge(&mut self, now: Instant, age: Duration) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, entry| elapsed_since(entry.window_started_at, now) < age);
        let removed = before - self.entries.len();
        self.metrics.entries_purged += removed as u64;
        removed
    }

    fn count(&mut self, decision: &BackendRecoveryDecision) {
        let counter = match decision {
            BackendRecoveryDecision::Retry { .. } => &mut self.metrics.retries_granted,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                ..
            } => &mut self.metrics.capacity_refusals,
            BackendRecoveryDecision::Refuse { .. } => &mut self.metrics.refusals,
        };
        *counter += 1;
    }
}

/// The spec's `elapsed_since`: zero when `now` is earlier than `started_at`.
fn elapsed_since(started_at: Instant, now: Instant) -> Duration {
    now.checked_duration_since(started_at)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackendRecoveryPolicy {
        BackendRecoveryPolicy::new(Duration::from_millis(75), Duration::from_secs(1))
    }

    #[test]
    fn follows_the_spec_through_one_window_and_the_next() {
        let base = Instant::now();
        let mut reference = Reference::new(policy());
        assert!(reference.record_crash("a", base).is_retry());
        assert_eq!(
            reference.status("a", base + Duration::from_millis(400)),
            BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: Duration::from_millis(600),
            }
        );
        let refused = reference.record_crash("a", base + Duration::from_millis(400));
        assert_eq!(refused.retry_after(), Duration::from_millis(600));
        assert!(
            !reference
                .status("a", base + Duration::from_millis(999))
                .is_available()
        );
        assert_eq!(
            reference.status("a", base + Duration::from_secs(1)),
            BackendRecoveryStatus::Healthy
        );
        assert!(
            reference
                .record_crash("a", base + Duration::from_secs(1))
                .is_retry()
        );
        reference.record_success("a");
        assert!(reference.is_empty());
    }

    #[test]
    fn an_earlier_instant_counts_as_no_time_elapsed() {
        let base = Instant::now();
        let mut reference = Reference::new(policy());
        reference.record_crash("a", base + Duration::from_secs(1));
        assert_eq!(
            reference.record_crash("a", base).retry_after(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn reports_of_one_incarnation_count_once_and_stale_ones_replay() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        let mut reference = Reference::new(policy());
        assert!(reference.record_crash_of("a", 7, base).is_retry());
        assert_eq!(
            reference.record_crash_of("a", 7, base + ms(30)),
            BackendRecoveryDecision::Retry {
                retry_after: ms(45),
                attempt: 1,
            }
        );
        let refused = reference.record_crash_of("a", 8, base + ms(400));
        assert_eq!(refused.retry_after(), ms(600));
        // A stale report of 7 now replays 8's refusal.
        assert_eq!(
            reference
                .record_crash_of("a", 7, base + ms(500))
                .retry_after(),
            ms(500)
        );
        let metrics = reference.metrics();
        assert_eq!(
            (
                metrics.retries_granted,
                metrics.refusals,
                metrics.duplicates_coalesced
            ),
            (1, 1, 2)
        );
    }

    #[test]
    fn success_leaves_a_tombstone_for_keys_reported_by_incarnation() {
        let base = Instant::now();
        let mut reference = Reference::new(policy());
        reference.record_crash_of("a", 1, base);
        reference.record_crash("b", base);
        reference.record_success("a");
        reference.record_success("b");
        assert_eq!(reference.len(), 1);
        assert_eq!(reference.status("a", base), BackendRecoveryStatus::Healthy);
        // The dead incarnation is still a duplicate; a crash of the next opens a new window.
        assert!(reference.record_crash_of("a", 1, base).is_retry());
        assert_eq!(reference.metrics().duplicates_coalesced, 1);
        let later = base + Duration::from_millis(300);
        assert!(reference.record_crash_of("a", 2, later).is_retry());
        assert_eq!(
            reference.status("a", later),
            BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: Duration::from_secs(1),
            }
        );
        assert_eq!(reference.purge_expired(later + Duration::from_secs(1)), 1);
        assert!(reference.is_empty());
    }

    #[test]
    fn a_full_state_purges_two_windows_then_refuses_with_the_wait() {
        let base = Instant::now();
        let mut reference = Reference::new(policy()).with_max_entries(1);
        assert!(reference.record_crash("a", base).is_retry());
        let full = reference.record_crash("b", base + Duration::from_millis(400));
        assert_eq!(
            full,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                retry_after: Duration::from_millis(1_600),
            }
        );
        // Tracked keys keep their exact behaviour.
        assert!(!reference.record_crash("a", base).is_retry());
        // Two windows after "a" opened its window, its place can be taken.
        assert!(
            reference
                .record_crash("b", base + Duration::from_secs(2))
                .is_retry()
        );
        let metrics = reference.metrics();
        assert_eq!((metrics.capacity_refusals, metrics.entries_purged), (1, 1));
        assert_eq!(reference.len(), 1);
        let none = Reference::new(policy())
            .with_max_entries(0)
            .record_crash("a", base);
        assert_eq!(none.retry_after(), Duration::from_secs(1));
    }
}
