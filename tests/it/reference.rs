//! An independent sequential model of the spec, written from its text, not from the crate:
//! `Instant`s and a `HashMap`, no ticks, no packed word, no atomics.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryStatus,
};

#[derive(Debug)]
struct Window {
    started_at: Instant,
    crashes: u64,
}

/// The spec's behaviour, sequentially.
#[derive(Debug)]
pub(crate) struct ReferenceModel<K> {
    retry_backoff: Duration,
    budget_window: Duration,
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq> ReferenceModel<K> {
    pub(crate) fn new(policy: BackendRecoveryPolicy) -> Self {
        let clamp = |d: Duration| {
            if d.is_zero() {
                Duration::from_millis(1)
            } else {
                d
            }
        };
        ReferenceModel {
            retry_backoff: clamp(policy.retry_backoff),
            budget_window: clamp(policy.budget_window),
            windows: HashMap::new(),
        }
    }

    /// Elapsed from the window's start; an earlier `now` counts as zero.
    fn elapsed(started_at: Instant, now: Instant) -> Duration {
        if now > started_at {
            now - started_at
        } else {
            Duration::ZERO
        }
    }

    fn window_open(&self, window: &Window, now: Instant) -> bool {
        Self::elapsed(window.started_at, now) < self.budget_window
    }

    pub(crate) fn record_crash(&mut self, key: K, now: Instant) -> BackendRecoveryDecision {
        let budget_window = self.budget_window;
        let window = self.windows.entry(key).or_insert(Window {
            started_at: now,
            crashes: 0,
        });
        if Self::elapsed(window.started_at, now) >= budget_window {
            *window = Window {
                started_at: now,
                crashes: 0,
            };
        }
        window.crashes += 1;
        if window.crashes == 1 {
            BackendRecoveryDecision::Retry {
                retry_after: self.retry_backoff,
                attempt: 1,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: budget_window - Self::elapsed(window.started_at, now),
            }
        }
    }

    pub(crate) fn record_success(&mut self, key: &K) {
        self.windows.remove(key);
    }

    /// The status the crate should report: what the next crash would be told, as a gate sees it.
    pub(crate) fn status(&self, key: &K, now: Instant) -> BackendRecoveryStatus {
        match self.windows.get(key) {
            Some(window) if self.window_open(window, now) => {
                let remaining = self.budget_window - Self::elapsed(window.started_at, now);
                if window.crashes == 1 {
                    BackendRecoveryStatus::Recovering {
                        crashes_in_window: 1,
                        window_remaining: remaining,
                    }
                } else {
                    BackendRecoveryStatus::Unavailable {
                        reason: BackendRecoveryRefusalReason::BackendUnavailable,
                        retry_after: remaining,
                    }
                }
            }
            _ => BackendRecoveryStatus::Healthy,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }
}
