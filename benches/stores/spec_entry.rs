//! The spec's per-backend entry, written out for the two baselines.
//!
//! This is `BackendRecoveryEntry` and `record_crash` from the broker's single-threaded module,
//! unchanged in behaviour: an `Instant` where the window opened and a crash count, plus the end
//! of the last retry's backoff. The spec has no gate check; [`SpecEntry::status`] answers as the
//! crate's `status` does (the backoff enforced, then what the spec's next crash would be told),
//! so that all three stores do the same work for a `status` call; nor
//! purging, which [`SpecEntry::window_closed`] supports: an entry whose window has closed
//! decides exactly like a missing one.
//!
//! Nor does the spec know incarnations. [`ReportedEntry`] adds them for the crash-storm
//! workload, deduplicating as ours' `record_crash_of` does, so that the baselines do the same
//! work for a report under their own lock. The other workloads keep the bare [`SpecEntry`], as
//! small as the spec's, so that their figures do not move.

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
    /// When the last granted retry's backoff ends.
    backoff_until: Option<Instant>,
}

impl SpecEntry {
    /// An entry that has counted nothing yet, as the spec inserts before its first crash.
    pub(crate) fn new(now: Instant) -> Self {
        SpecEntry {
            window_started_at: now,
            crashes_in_window: 0,
            backoff_until: None,
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
            self.backoff_until = now.checked_add(policy.retry_backoff);
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
        let closed = self.window_closed(now, policy);
        if self.crashes_in_window < 2 || closed {
            if let Some(until) = self.backoff_until.filter(|&until| now < until) {
                return BackendRecoveryStatus::BackingOff {
                    crashes_in_window: if closed { 0 } else { self.crashes_in_window },
                    retry_after: until - now,
                };
            }
        }
        match self.crashes_in_window {
            0 => BackendRecoveryStatus::Healthy,
            _ if closed => BackendRecoveryStatus::Healthy,
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

/// A baseline's value: what it keeps per key under its lock.
pub(crate) trait Value: Send + Sync + 'static {
    /// The value the spec inserts before a key's first crash.
    fn new(now: Instant) -> Self;

    /// The spec's entry in it.
    fn spec(&self) -> &SpecEntry;

    /// As [`spec`](Self::spec), mutable.
    fn spec_mut(&mut self) -> &mut SpecEntry;

    /// A crash reported for `incarnation`, as ours' `record_crash_of` answers it.
    fn report_crash(
        &mut self,
        incarnation: u64,
        now: Instant,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryDecision;
}

impl Value for SpecEntry {
    fn new(now: Instant) -> Self {
        SpecEntry::new(now)
    }

    fn spec(&self) -> &SpecEntry {
        self
    }

    fn spec_mut(&mut self) -> &mut SpecEntry {
        self
    }

    fn report_crash(
        &mut self,
        _: u64,
        _: Instant,
        _: &BackendRecoveryPolicy,
    ) -> BackendRecoveryDecision {
        unreachable!("the bare spec entry keeps no incarnation: crash-storm uses `ReportedEntry`")
    }
}

/// The spec's entry and the last report it counted, for `record_crash_of`: the first report of
/// an incarnation newer than the last one counted counts as a crash; any other report gets the
/// decision already made for that crash, of the same kind and attempt, with the retry-after
/// measured from its own instant. One difference from ours, which no workload meets: a success
/// forgets the incarnation with the entry (ours keeps a tombstone until the window closes).
#[derive(Clone, Debug)]
pub(crate) struct ReportedEntry {
    spec: SpecEntry,
    /// Boxed, as ours keeps it: the entry stays small until a key is reported by incarnation.
    last_report: Option<Box<CountedReport>>,
}

/// A report that counted: its incarnation, instant and decision.
#[derive(Clone, Debug)]
struct CountedReport {
    incarnation: u64,
    at: Instant,
    decision: BackendRecoveryDecision,
}

impl Value for ReportedEntry {
    fn new(now: Instant) -> Self {
        ReportedEntry {
            spec: SpecEntry::new(now),
            last_report: None,
        }
    }

    fn spec(&self) -> &SpecEntry {
        &self.spec
    }

    fn spec_mut(&mut self) -> &mut SpecEntry {
        &mut self.spec
    }

    fn report_crash(
        &mut self,
        incarnation: u64,
        now: Instant,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryDecision {
        if let Some(counted) = self.last_report.as_deref() {
            if incarnation <= counted.incarnation {
                let since = elapsed_since(counted.at, now);
                return match counted.decision.clone() {
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
        }
        let decision = self.spec.record_crash(now, policy);
        self.last_report = Some(Box::new(CountedReport {
            incarnation,
            at: now,
            decision: decision.clone(),
        }));
        decision
    }
}
