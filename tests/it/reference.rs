//! An independent sequential model of the spec, written from its text, not from the crate:
//! `Instant`s and an ordered map, no ticks, no packed word, no atomics, unbounded counts. It also
//! models the documented settings beyond the spec (retries per window, exponential backoff up
//! to a cap, jitter) and the crate's additions (reports by incarnation, tombstones, purging),
//! from their documentation.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryStatus, BackoffGrowth,
};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Window {
    started_at: Instant,
    /// 0 after a success that left a tombstone: no window is open.
    crashes: u64,
    /// The last report counted by incarnation: (incarnation, when, what it was answered).
    last_report: Option<(u64, Instant, BackendRecoveryDecision)>,
}

/// The spec's behaviour, sequentially.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ReferenceModel<K> {
    retry_backoff: Duration,
    budget_window: Duration,
    retries: u64,
    growth: BackoffGrowth,
    jitter_per_mille: u32,
    windows: BTreeMap<K, Window>,
}

impl<K: Hash + Ord> ReferenceModel<K> {
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
            windows: BTreeMap::new(),
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
        window.crashes > 0 && Self::elapsed(window.started_at, now) < self.budget_window
    }

    pub(crate) fn record_crash(&mut self, key: K, now: Instant) -> BackendRecoveryDecision
    where
        K: Clone,
    {
        let delay_key = key.clone();
        let window = self.windows.entry(key).or_insert(Window {
            started_at: now,
            crashes: 0,
            last_report: None,
        });
        let open = window.crashes > 0 && Self::elapsed(window.started_at, now) < self.budget_window;
        if !open {
            window.started_at = now;
            window.crashes = 0;
        }
        window.crashes += 1;
        let (crashes, started_at) = (window.crashes, window.started_at);
        if crashes <= self.retries {
            BackendRecoveryDecision::Retry {
                retry_after: self.delay(&delay_key, crashes),
                attempt: crashes as u32,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: self.budget_window - Self::elapsed(started_at, now),
            }
        }
    }

    /// A report by incarnation: counted if newer than the last counted one, else the counted
    /// decision again, its retry-after shortened by the time since.
    pub(crate) fn record_crash_of(
        &mut self,
        key: K,
        incarnation: u64,
        now: Instant,
    ) -> BackendRecoveryDecision
    where
        K: Clone,
    {
        if let Some(Window {
            last_report: Some((counted, at, decision)),
            ..
        }) = self.windows.get(&key)
            && incarnation <= *counted
        {
            let since = Self::elapsed(*at, now);
            return match decision.clone() {
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
            };
        }
        let decision = self.record_crash(key.clone(), now);
        if let Some(window) = self.windows.get_mut(&key) {
            window.last_report = Some((incarnation, now, decision.clone()));
        }
        decision
    }

    /// Forgets the crashes; a key reported by incarnation keeps a tombstone with its window's
    /// start and last report.
    pub(crate) fn record_success(&mut self, key: &K) {
        match self.windows.get_mut(key) {
            Some(window) if window.last_report.is_some() => window.crashes = 0,
            _ => {
                self.windows.remove(key);
            }
        }
    }

    /// Removes the entries whose window started at least a budget window before `now`.
    pub(crate) fn purge_expired(&mut self, now: Instant) -> usize {
        let before = self.windows.len();
        let window = self.budget_window;
        self.windows
            .retain(|_, w| Self::elapsed(w.started_at, now) < window);
        before - self.windows.len()
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
