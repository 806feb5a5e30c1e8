//! The spec's per-backend entry, written out for the two baselines.
//!
//! This is `BackendRecoveryEntry` and `record_crash` from the broker's single-threaded module,
//! unchanged in behaviour: an `Instant` where the window opened and a crash count. The spec has
//! no gate check; [`SpecEntry::status`] answers what the spec's next crash would be told, as the
//! crate's `status` does, so that all three stores do the same work for a `status` call; nor
//! purging, which [`SpecEntry::window_closed`] supports: an entry whose window has closed
//! decides exactly like a missing one.

use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryStatus,
};

/// One backend's recovery state, as the spec keeps it.
#[derive(Clone, Debug)]
pub(crate) struct SpecEntry {
    window_started_at: Instant,
    crashes_in_window: u32,
}

impl SpecEntry {
    /// An entry that has counted nothing yet, as the spec inserts before its first crash.
    pub(crate) fn new(now: Instant) -> Self {
        SpecEntry {
            window_started_at: now,
            crashes_in_window: 0,
        }
    }

    /// The spec's `record_crash` on an entry that is already in the map.
    pub(crate) fn record_crash(
        &mut self,
        now: Instant,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryDecision {
        if self.window_closed(now, policy) {
            self.window_started_at = now;
            self.crashes_in_window = 0;
        }
        self.crashes_in_window = self.crashes_in_window.saturating_add(1);
        if self.crashes_in_window == 1 {
            return BackendRecoveryDecision::Retry {
                retry_after: policy.retry_backoff,
                attempt: 1,
            };
        }
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: self.rest_of_window(now, policy),
        }
    }

    /// `true` once the window has closed at `now`: the next crash opens a new one.
    pub(crate) fn window_closed(&self, now: Instant, policy: &BackendRecoveryPolicy) -> bool {
        elapsed_since(self.window_started_at, now) >= policy.budget_window
    }

    /// What a gate check at `now` sees: what the next crash would be answered.
    pub(crate) fn status(
        &self,
        now: Instant,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryStatus {
        match self.crashes_in_window {
            0 => BackendRecoveryStatus::Healthy,
            _ if self.window_closed(now, policy) => BackendRecoveryStatus::Healthy,
            1 => BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: self.rest_of_window(now, policy),
            },
            _ => BackendRecoveryStatus::Unavailable {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: self.rest_of_window(now, policy),
            },
        }
    }

    fn rest_of_window(&self, now: Instant, policy: &BackendRecoveryPolicy) -> Duration {
        policy
            .budget_window
            .saturating_sub(elapsed_since(self.window_started_at, now))
    }
}

/// The spec's `elapsed_since`: an earlier `now` counts as no time elapsed.
fn elapsed_since(started_at: Instant, now: Instant) -> Duration {
    now.checked_duration_since(started_at)
        .unwrap_or(Duration::ZERO)
}
