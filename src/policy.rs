//! Recovery tuning: how long to back off before the one retry, and how long a budget window is.

use std::time::Duration;

/// Default delay before the broker retries a crashed backend once: 250 ms.
pub const DEFAULT_RECOVERY_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Default budget window, the broker's spawn-budget window: 30 s.
pub const DEFAULT_RECOVERY_BUDGET_WINDOW: Duration = Duration::from_secs(30);

/// The floor that zero durations are clamped to, as the spec does.
const MINIMUM_DURATION: Duration = Duration::from_millis(1);

/// Recovery tuning shared by every backend key of one [`BackendRecoveryState`].
///
/// The first crash in a budget window is granted one retry after `retry_backoff`; any further
/// crash in the same window is refused until the window, opened by the first crash, has passed.
///
/// The fields are public so that a broker can read them as it did with the spec's module. The
/// struct is `#[non_exhaustive]` so that later settings can be added without breaking callers:
/// build it with [`new`](Self::new) or [`Default`].
///
/// [`BackendRecoveryState`]: crate::BackendRecoveryState
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backend_recovery::BackendRecoveryPolicy;
///
/// let policy = BackendRecoveryPolicy::new(Duration::ZERO, Duration::from_secs(10));
/// // Zero durations are clamped to 1 ms, as the spec does.
/// assert_eq!(policy.retry_backoff, Duration::from_millis(1));
/// assert_eq!(policy.budget_window, Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BackendRecoveryPolicy {
    /// Delay reported before the one allowed retry should begin.
    pub retry_backoff: Duration,
    /// Window bounding crash retries and backend-unavailable retry-after hints.
    pub budget_window: Duration,
}

impl BackendRecoveryPolicy {
    /// Builds a policy, clamping zero durations to 1 ms.
    ///
    /// Any non-zero duration is kept as given, up to and including [`Duration::MAX`]: a window
    /// that long means a backend that crashed twice is refused for the life of the process.
    pub fn new(retry_backoff: Duration, budget_window: Duration) -> Self {
        Self {
            retry_backoff: at_least_minimum(retry_backoff),
            budget_window: at_least_minimum(budget_window),
        }
    }

    /// The same policy with zero durations clamped again.
    ///
    /// The fields are public, so a caller can write a zero into a copy after [`new`](Self::new);
    /// the state normalises the policy it is given so that no window is ever empty.
    pub(crate) fn normalized(self) -> Self {
        Self::new(self.retry_backoff, self.budget_window)
    }
}

impl Default for BackendRecoveryPolicy {
    /// 250 ms backoff and a 30 s window, the defaults of the broker the spec came from.
    fn default() -> Self {
        Self {
            retry_backoff: DEFAULT_RECOVERY_RETRY_BACKOFF,
            budget_window: DEFAULT_RECOVERY_BUDGET_WINDOW,
        }
    }
}

fn at_least_minimum(duration: Duration) -> Duration {
    if duration.is_zero() {
        MINIMUM_DURATION
    } else {
        duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_broker_defaults() {
        let policy = BackendRecoveryPolicy::default();
        assert_eq!(policy.retry_backoff, Duration::from_millis(250));
        assert_eq!(policy.budget_window, Duration::from_secs(30));
    }

    #[test]
    fn zero_durations_clamp_to_one_millisecond() {
        let policy = BackendRecoveryPolicy::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(policy.retry_backoff, Duration::from_millis(1));
        assert_eq!(policy.budget_window, Duration::from_millis(1));
    }

    #[test]
    fn non_zero_durations_are_kept_exactly() {
        let policy = BackendRecoveryPolicy::new(Duration::from_nanos(1), Duration::MAX);
        assert_eq!(policy.retry_backoff, Duration::from_nanos(1));
        assert_eq!(policy.budget_window, Duration::MAX);
    }

    #[test]
    fn normalized_clamps_zeros_written_after_construction() {
        let policy = BackendRecoveryPolicy {
            budget_window: Duration::ZERO,
            ..BackendRecoveryPolicy::default()
        };
        assert_eq!(policy.normalized().budget_window, Duration::from_millis(1));
        assert_eq!(
            policy.normalized().retry_backoff,
            Duration::from_millis(250)
        );
    }
}
