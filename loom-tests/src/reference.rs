//! The spec, sequentially: an independent model that every concurrent history is compared with.
//!
//! It follows `spec/recovery.rs` line by line (an entry with a window start and a crash count,
//! refreshed when its window has closed), with `Instant`s instead of ticks, and adds the gate
//! check the crate documents: `Healthy` when there is no open window, `Recovering` while the
//! window's one retry is in use, `Unavailable` with the rest of the window after that. It shares
//! no code with the crate's packed word, so a model that agrees with it checks spec parity too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryStatus,
};

use crate::scenario::Key;

/// The single-threaded spec state, as the broker kept it behind its global mutex.
#[derive(Clone, Debug)]
pub struct Reference {
    policy: BackendRecoveryPolicy,
    entries: HashMap<Key, Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_started_at: Instant,
    crashes_in_window: u32,
}

impl Reference {
    /// Empty state with `policy` (already clamped by `BackendRecoveryPolicy::new`).
    pub fn new(policy: BackendRecoveryPolicy) -> Self {
        Reference {
            policy,
            entries: HashMap::new(),
        }
    }

    /// The spec's `record_crash`.
    pub fn record_crash(&mut self, key: Key, now: Instant) -> BackendRecoveryDecision {
        let window = self.policy.budget_window;
        let entry = self.entries.entry(key).or_insert(Entry {
            window_started_at: now,
            crashes_in_window: 0,
        });
        if elapsed_since(entry.window_started_at, now) >= window {
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

    /// The spec's `record_success`: forgets the key.
    pub fn record_success(&mut self, key: Key) {
        self.entries.remove(key);
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

    /// Keys with an entry, closed windows included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
}
