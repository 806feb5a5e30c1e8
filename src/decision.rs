//! What the state answers: a decision for a crash, a status for a gate check, and the
//! whole-millisecond hint that goes on the wire.

use std::time::Duration;

/// Decision returned for an observed backend crash.
///
/// Plain data: none of its methods panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryRefusalReason};
///
/// let refuse = BackendRecoveryDecision::Refuse {
///     reason: BackendRecoveryRefusalReason::BackendUnavailable,
///     retry_after: Duration::from_micros(1_500),
/// };
/// // The wire hint rounds up, so a client never comes back before the window ends.
/// assert_eq!(refuse.retry_after_ms(), 2);
/// assert!(!refuse.is_retry());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BackendRecoveryDecision {
    /// The broker may retry this backend, once, after `retry_after`.
    Retry {
        /// Delay before the retry should begin.
        retry_after: Duration,
        /// 1-based recovery attempt number within the budget window.
        attempt: u32,
    },
    /// The backend should be refused as unavailable.
    Refuse {
        /// Refusal reason, for mapping to the broker's `Refused` reply.
        reason: BackendRecoveryRefusalReason,
        /// How long clients should wait before asking again: the rest of the budget window.
        retry_after: Duration,
    },
}

impl BackendRecoveryDecision {
    /// `true` for [`Retry`](Self::Retry).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// assert!(state.record_crash("search", now).is_retry(), "first crash: retry once");
    /// assert!(!state.record_crash("search", now).is_retry(), "second crash: refuse");
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry { .. })
    }

    /// The delay the decision carries, whichever kind it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff, 30 s window
    /// let now = Instant::now();
    /// // A retry: wait out the backoff before relaunching.
    /// assert_eq!(state.record_crash("search", now).retry_after(), Duration::from_millis(250));
    /// // A refusal: the rest of the window.
    /// let refused = state.record_crash("search", now + Duration::from_secs(10));
    /// assert_eq!(refused.retry_after(), Duration::from_secs(20));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Self::Retry { retry_after, .. } | Self::Refuse { retry_after, .. } => retry_after,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole milliseconds, rounded up, for a wire field
    /// such as `retry_after_ms: u64`; saturates at `u64::MAX`.
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
    /// // Refused 20.5 ms before the window closes: the hint rounds up to 21 ms.
    /// let refused = state.record_crash("search", now + Duration::from_micros(29_979_500));
    /// assert_eq!(refused.retry_after_ms(), 21);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after_ms(&self) -> u64 {
        millis_rounded_up(self.retry_after())
    }
}

/// Why a backend is refused.
///
/// Plain data: nothing about it panics.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryState};
///
/// let state = BackendRecoveryState::<&str>::new().with_max_entries(1);
/// let now = Instant::now();
/// state.record_crash("search", now);
/// let reason = |decision| match decision {
///     BackendRecoveryDecision::Refuse { reason, .. } => Some(reason),
///     BackendRecoveryDecision::Retry { .. } => None,
/// };
/// let spent = reason(state.record_crash("search", now));
/// assert_eq!(spent, Some(BackendRecoveryRefusalReason::BackendUnavailable));
/// let full = reason(state.record_crash("index", now));
/// assert_eq!(full, Some(BackendRecoveryRefusalReason::CapacityExhausted));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BackendRecoveryRefusalReason {
    /// The backend crashed again after the retries its policy allows in the budget window
    /// (after its one retry, with the spec's policy).
    BackendUnavailable,
    /// The backend is not tracked and the state is full (`max_entries`), even after purging.
    ///
    /// Failing closed is the safer default: a backend the state cannot track has no budget, so
    /// granting it a retry would let it crash-loop without limit, and a flood of new keys
    /// (version churn, or names a client controls) could otherwise grow memory without bound.
    /// Backends already tracked keep their exact behaviour.
    CapacityExhausted,
}

/// What a gate check sees for one backend: [`BackendRecoveryState::status`].
///
/// Each variant says what the next crash of the backend would be answered at the same instant:
/// after `Healthy`, a `Retry` with attempt 1 (a `Refuse` if the policy allows no retries, or a
/// [`CapacityExhausted`](BackendRecoveryRefusalReason::CapacityExhausted) one for a key a full
/// state does not track);
/// after `Recovering { crashes_in_window: n, .. }`, a `Retry` with attempt `n + 1` if the policy
/// allows that many, else a `Refuse` with `window_remaining`; after `Unavailable`, a `Refuse`
/// with the same `retry_after`.
///
/// Plain data: none of its methods panics.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use backend_recovery::{BackendRecoveryState, BackendRecoveryStatus};
///
/// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff, 30 s window
/// let t0 = Instant::now();
/// assert_eq!(state.status("search", t0), BackendRecoveryStatus::Healthy);
/// state.record_crash("search", t0);
/// let backing_off = state.status("search", t0);
/// assert!(matches!(backing_off, BackendRecoveryStatus::BackingOff { crashes_in_window: 1, .. }));
/// let t1 = t0 + Duration::from_secs(1);
/// let recovering = state.status("search", t1);
/// assert!(matches!(recovering, BackendRecoveryStatus::Recovering { crashes_in_window: 1, .. }));
/// state.record_crash("search", t1);
/// assert!(matches!(state.status("search", t1), BackendRecoveryStatus::Unavailable { .. }));
/// ```
///
/// [`BackendRecoveryState::status`]: crate::BackendRecoveryState::status
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum BackendRecoveryStatus {
    /// Unknown to the state, or its last window has closed: serve it.
    Healthy,
    /// Crashed within the open window, every crash granted a retry: serve it while it recovers.
    Recovering {
        /// Crashes counted in the open window so far.
        crashes_in_window: u32,
        /// Time until the window closes and the budget is whole again.
        window_remaining: Duration,
    },
    /// A retry was granted and its backoff is still running: the backend is down and must not
    /// be launched yet. Tell clients to come back after `retry_after`, the rest of the backoff.
    BackingOff {
        /// Crashes counted in the open window so far (0 if the window has closed).
        crashes_in_window: u32,
        /// Time until the backoff ends and the relaunch may be claimed.
        retry_after: Duration,
    },
    /// Its budget for the window is spent: refuse it until `retry_after` has passed.
    Unavailable {
        /// The reason a crash would be refused with.
        reason: BackendRecoveryRefusalReason,
        /// The retry-after hint a refusal would carry: the rest of the window.
        retry_after: Duration,
    },
}

impl BackendRecoveryStatus {
    /// `false` for [`Unavailable`](Self::Unavailable) and [`BackingOff`](Self::BackingOff):
    /// whether a Hello should be served.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff
    /// let now = Instant::now();
    /// assert!(state.status("search", now).is_available());
    /// state.record_crash("search", now);
    /// // Backing off: the backend is down, do not serve the Hello yet.
    /// assert!(!state.status("search", now).is_available());
    /// assert!(state.status("search", now + Duration::from_millis(250)).is_available());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn is_available(&self) -> bool {
        !matches!(self, Self::Unavailable { .. } | Self::BackingOff { .. })
    }

    /// When to come back, for a backend that is not available.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// let backing_off = state.status("search", now + Duration::from_millis(100));
    /// assert_eq!(backing_off.retry_after(), Some(Duration::from_millis(150)));
    /// // Recovering: available, nothing to wait for.
    /// assert_eq!(state.status("search", now + Duration::from_secs(1)).retry_after(), None);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Self::Unavailable { retry_after, .. } | Self::BackingOff { retry_after, .. } => {
                Some(retry_after)
            }
            _ => None,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole milliseconds, rounded up; saturates at
    /// `u64::MAX`.
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
    /// state.record_crash("search", now); // budget spent
    /// let gate = state.status("search", now + Duration::from_secs(5));
    /// assert_eq!(gate.retry_after_ms(), Some(25_000));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after().map(millis_rounded_up)
    }
}

/// The answer to [`BackendRecoveryState::record_crash_of`]: the decision for the death
/// reported, and whether this report was the one the state counted.
///
/// Of the reports of one death (every thread that saw it), exactly one is `counted`; the others
/// are duplicates, answered with the same decision so that each can tell its client when to
/// come back. A broker acts on the counted one alone (for example, to count the death once).
///
/// Plain data: nothing about it panics.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use backend_recovery::BackendRecoveryState;
///
/// let state = BackendRecoveryState::<&str>::new();
/// let now = Instant::now();
/// // Two workers see incarnation 3 of "search" die.
/// let first = state.record_crash_of("search", 3, now);
/// let second = state.record_crash_of("search", 3, now);
/// assert!(first.counted && !second.counted);
/// assert_eq!(first.decision, second.decision);
/// ```
///
/// [`BackendRecoveryState::record_crash_of`]: crate::BackendRecoveryState::record_crash_of
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackendCrashReport {
    /// The decision for this death, as the counted report was told it (a duplicate's
    /// retry-after measured from its own instant).
    pub decision: BackendRecoveryDecision,
    /// Whether this report counted the crash: the first report of an incarnation newer than the
    /// last one counted for the key.
    pub counted: bool,
}

/// The answer to [`BackendRecoveryState::claim_launch`]: whether this caller is the one to
/// launch the backend.
///
/// Plain data: none of its methods panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backend_recovery::BackendLaunchDecision;
///
/// let wait = BackendLaunchDecision::Wait { retry_after: Duration::from_micros(2_500) };
/// assert!(!wait.is_launch());
/// assert_eq!(wait.retry_after_ms(), Some(3));
/// assert_eq!(BackendLaunchDecision::Launch.retry_after(), None);
/// ```
///
/// [`BackendRecoveryState::claim_launch`]: crate::BackendRecoveryState::claim_launch
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum BackendLaunchDecision {
    /// This caller won the claim: launch the backend now, then report how it went, with
    /// `record_success_at` once it answers, or `record_crash` if it fails.
    Launch,
    /// Do not launch: another caller's launch is pending, or a granted retry's backoff is
    /// running. Ask again (or tell the client to) after `retry_after`.
    Wait {
        /// Time until the pending launch can be decided: the rest of the backoff, or until the
        /// pending claim lapses.
        retry_after: Duration,
    },
    /// Do not launch: the backend is refused, as a crash now would be.
    Refuse {
        /// Why: its budget is spent, or the state is full.
        reason: BackendRecoveryRefusalReason,
        /// When to come back.
        retry_after: Duration,
    },
}

impl BackendLaunchDecision {
    /// `true` for [`Launch`](Self::Launch).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// // Two routers find "search" missing: exactly one launches it.
    /// assert!(state.claim_launch(&"search", now).is_launch());
    /// assert!(!state.claim_launch(&"search", now).is_launch());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn is_launch(&self) -> bool {
        matches!(self, Self::Launch)
    }

    /// When to ask again, unless this caller is to launch.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 10 s launch timeout
    /// let now = Instant::now();
    /// assert_eq!(state.claim_launch(&"search", now).retry_after(), None);
    /// // The winner's claim is pending: the others wait until it would lapse.
    /// let other = state.claim_launch(&"search", now + Duration::from_secs(4));
    /// assert_eq!(other.retry_after(), Some(Duration::from_secs(6)));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Self::Launch => None,
            Self::Wait { retry_after } | Self::Refuse { retry_after, .. } => Some(retry_after),
        }
    }

    /// [`retry_after`](Self::retry_after) in whole milliseconds, rounded up; saturates at
    /// `u64::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new(); // 250 ms backoff
    /// let now = Instant::now();
    /// assert!(state.record_crash("search", now).is_retry());
    /// // 149.5 ms of backoff left: come back in 150 ms.
    /// let early = state.claim_launch(&"search", now + Duration::from_micros(100_500));
    /// assert_eq!(early.retry_after_ms(), Some(150));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after().map(millis_rounded_up)
    }
}

/// Whole milliseconds, rounded up so that a hint is never shorter than the wait it stands for;
/// saturates at `u64::MAX` (a `Duration` can hold about 584 times more milliseconds than that).
fn millis_rounded_up(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis_rounded_up(Duration::ZERO), 0);
        assert_eq!(millis_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(millis_rounded_up(Duration::from_millis(28)), 28);
        assert_eq!(millis_rounded_up(Duration::from_nanos(28_000_001)), 29);
        assert_eq!(millis_rounded_up(Duration::MAX), u64::MAX);
    }

    #[test]
    fn status_reports_availability_and_hint() {
        let unavailable = BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_nanos(999_999),
        };
        assert!(!unavailable.is_available());
        assert_eq!(unavailable.retry_after_ms(), Some(1));
        assert!(BackendRecoveryStatus::Healthy.is_available());
        assert_eq!(BackendRecoveryStatus::Healthy.retry_after(), None);
    }

    #[test]
    fn decision_accessors() {
        let retry = BackendRecoveryDecision::Retry {
            retry_after: Duration::from_millis(75),
            attempt: 1,
        };
        assert!(retry.is_retry());
        assert_eq!(retry.retry_after(), Duration::from_millis(75));
        assert_eq!(retry.retry_after_ms(), 75);
    }
}
