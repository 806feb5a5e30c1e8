//! An independent sequential model of the spec, written from its text, not from the crate:
//! `Instant`s and a `HashMap`, no ticks, no packed word, no atomics, unbounded counts. It also
//! models the documented settings beyond the spec (retries per window, exponential backoff up
//! to a cap, jitter), from their documentation.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryStatus, BackoffGrowth,
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
    retries: u64,
    growth: BackoffGrowth,
    jitter_per_mille: u32,
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
            retries: u64::from(policy.retries_per_window),
            growth: match policy.backoff_growth {
                BackoffGrowth::Exponential {
                    factor_per_mille,
                    cap,
                } => BackoffGrowth::Exponential {
                    factor_per_mille,
                    cap: clamp(cap),
                },
                other => other,
            },
            jitter_per_mille: policy.jitter_per_mille,
            windows: HashMap::new(),
        }
    }

    /// The documented schedule: `retry_backoff × factor^(n-1)` in nanoseconds, rounded down at
    /// each multiplication, at most the cap; plus jitter of `delay × jitter × u`, `u` a 32-bit
    /// fraction from splitmix64's finaliser over the key's hash and the attempt; at most the cap.
    fn delay(&self, key: &K, attempt: u64) -> Duration {
        let mut nanos = self.retry_backoff.as_nanos();
        let mut cap = u128::MAX;
        if let BackoffGrowth::Exponential {
            factor_per_mille,
            cap: growth_cap,
        } = self.growth
        {
            cap = growth_cap.as_nanos();
            nanos = nanos.min(cap);
            for _ in 1..attempt {
                nanos = (nanos * u128::from(factor_per_mille) / 1000).min(cap);
            }
        }
        if self.jitter_per_mille > 0 {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            let mut z = hasher.finish() ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let draw = u128::from((z ^ (z >> 31)) >> 32);
            nanos += ((nanos * u128::from(self.jitter_per_mille) / 1000) * draw) >> 32;
        }
        let nanos = nanos.min(cap);
        match u64::try_from(nanos / 1_000_000_000) {
            Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
            Err(_) => Duration::MAX,
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

    pub(crate) fn record_crash(&mut self, key: K, now: Instant) -> BackendRecoveryDecision
    where
        K: Clone,
    {
        let budget_window = self.budget_window;
        let key_for_delay = key.clone();
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
        let crashes = window.crashes;
        let started_at = window.started_at;
        if crashes <= self.retries {
            BackendRecoveryDecision::Retry {
                retry_after: self.delay(&key_for_delay, crashes),
                attempt: crashes as u32,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: budget_window - Self::elapsed(started_at, now),
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
                if window.crashes <= self.retries {
                    BackendRecoveryStatus::Recovering {
                        crashes_in_window: window.crashes as u32,
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
