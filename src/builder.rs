//! [`BackendRecoveryPolicyBuilder`]: the checked way to set the policy's settings beyond the
//! spec, and [`PolicyError`] for settings that make no sense.

use std::fmt;
use std::time::Duration;

use crate::policy::{BackendRecoveryPolicy, BackoffGrowth, MAX_RETRIES_PER_WINDOW};

/// Builds a [`BackendRecoveryPolicy`], starting from the spec's defaults (250 ms backoff, 30 s
/// window, one retry, fixed backoff, no jitter). [`build`](Self::build) reports the first
/// setting that makes no sense; nothing here panics.
///
/// Zero durations are clamped to 1 ms, as [`BackendRecoveryPolicy::new`] does, rather than
/// refused: the spec defines them.
///
/// # Examples
///
/// A systemd-like unit: up to 5 restarts in 10 s, from 100 ms doubling up to 2 s, with up to 20%
/// jitter so services that failed together do not restart in lockstep.
///
/// ```
/// use std::time::Duration;
/// use backend_recovery::{BackendRecoveryPolicy, PolicyError};
///
/// let policy = BackendRecoveryPolicy::builder()
///     .retry_backoff(Duration::from_millis(100))
///     .budget_window(Duration::from_secs(10))
///     .retries_per_window(5)
///     .exponential_backoff(2.0, Duration::from_secs(2))
///     .jitter(0.2)
///     .build()?;
/// assert_eq!(policy.retries_per_window, 5);
///
/// let err = BackendRecoveryPolicy::builder().exponential_backoff(0.5, Duration::MAX).build();
/// assert_eq!(err, Err(PolicyError::FactorBelowOne { factor: 0.5 }));
/// # Ok::<(), PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackendRecoveryPolicyBuilder {
    retry_backoff: Duration,
    budget_window: Duration,
    retries_per_window: u32,
    exponential: Option<(f64, Duration)>,
    jitter: f64,
    min_uptime: Duration,
    launch_timeout: Option<Duration>,
}

/// A policy setting that makes no sense, from [`BackendRecoveryPolicyBuilder::build`].
///
/// Plain data; its `Display` says what was asked for and why it was refused, and nothing about
/// it panics.
///
/// # Examples
///
/// ```
/// use backend_recovery::{BackendRecoveryPolicy, PolicyError};
///
/// let err = BackendRecoveryPolicy::builder().jitter(1.5).build().unwrap_err();
/// assert_eq!(err, PolicyError::JitterOutOfRange { jitter: 1.5 });
/// assert_eq!(err.to_string(), "jitter fraction 1.5 is outside 0..=1");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PolicyError {
    /// More retries per window than the packed per-backend word can count.
    TooManyRetries {
        /// What was asked for.
        requested: u32,
        /// The most allowed, [`MAX_RETRIES_PER_WINDOW`].
        max: u32,
    },
    /// A backoff factor below 1 (or not a number) would shrink the delay on each retry.
    FactorBelowOne {
        /// What was asked for.
        factor: f64,
    },
    /// A backoff factor above 1,000,000, or infinite.
    FactorTooLarge {
        /// What was asked for.
        factor: f64,
    },
    /// A jitter fraction outside `0.0..=1.0` (or not a number).
    JitterOutOfRange {
        /// What was asked for.
        jitter: f64,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyRetries { requested, max } => {
                write!(
                    f,
                    "{requested} retries per window requested, at most {max} allowed"
                )
            }
            Self::FactorBelowOne { factor } => {
                write!(f, "backoff factor {factor} is below 1: delays would shrink")
            }
            Self::FactorTooLarge { factor } => {
                write!(f, "backoff factor {factor} is above the supported 1000000")
            }
            Self::JitterOutOfRange { jitter } => {
                write!(f, "jitter fraction {jitter} is outside 0..=1")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// The largest factor accepted: already a million-fold per attempt.
const MAX_FACTOR: f64 = 1_000_000.0;

impl BackendRecoveryPolicyBuilder {
    pub(crate) fn new() -> Self {
        let spec = BackendRecoveryPolicy::default();
        BackendRecoveryPolicyBuilder {
            retry_backoff: spec.retry_backoff,
            budget_window: spec.budget_window,
            retries_per_window: spec.retries_per_window,
            exponential: None,
            jitter: 0.0,
            min_uptime: spec.min_uptime,
            launch_timeout: None,
        }
    }

    /// Delay before the first retry in a window; the base of an exponential schedule. Zero is
    /// clamped to 1 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .retry_backoff(Duration::from_millis(100))
    ///     .build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let first = state.record_crash("search", Instant::now());
    /// assert_eq!(first.retry_after(), Duration::from_millis(100));
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retry_backoff(mut self, retry_backoff: Duration) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// The budget window, opened by a backend's first crash. Zero is clamped to 1 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .budget_window(Duration::from_secs(10))
    ///     .build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// let refused = state.record_crash("search", now + Duration::from_secs(4));
    /// assert_eq!(refused.retry_after(), Duration::from_secs(6));
    /// // Once the window has passed, a crash opens a new one.
    /// assert!(state.record_crash("search", now + Duration::from_secs(10)).is_retry());
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn budget_window(mut self, budget_window: Duration) -> Self {
        self.budget_window = budget_window;
        self
    }

    /// Retries granted per window, `0..=MAX_RETRIES_PER_WINDOW` (14); 0 refuses every crash.
    /// A larger number makes [`build`](Self::build) fail.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder().retries_per_window(3).build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let now = Instant::now();
    /// let retried: Vec<bool> = (0..4).map(|_| state.record_crash("search", now).is_retry()).collect();
    /// assert_eq!(retried, [true, true, true, false]);
    /// assert!(BackendRecoveryPolicy::builder().retries_per_window(15).build().is_err());
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn retries_per_window(mut self, retries: u32) -> Self {
        self.retries_per_window = retries;
        self
    }

    /// Retry `n` waits `retry_backoff × factor^(n-1)`, at most `cap`; `factor` is kept to the
    /// thousandth, at least 1 and at most 1,000,000 (else [`build`](Self::build) fails). A zero
    /// `cap` is clamped to 1 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .retries_per_window(3)
    ///     .exponential_backoff(2.0, Duration::from_millis(600))
    ///     .build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let now = Instant::now();
    /// let delays: Vec<_> = (0..3).map(|_| state.record_crash("search", now).retry_after()).collect();
    /// let ms = Duration::from_millis;
    /// assert_eq!(delays, [ms(250), ms(500), ms(600)]);
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn exponential_backoff(mut self, factor: f64, cap: Duration) -> Self {
        self.exponential = Some((factor, cap));
        self
    }

    /// Lengthens each delay by up to this fraction of it (`0.0..=1.0`, kept to the thousandth),
    /// by an amount fixed per key and attempt; never past an exponential cap. A fraction outside
    /// that range makes [`build`](Self::build) fail.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder().jitter(0.1).build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let delay = state.record_crash("search", Instant::now()).retry_after();
    /// // 250 ms plus less than a tenth of it.
    /// assert!(delay >= Duration::from_millis(250) && delay < Duration::from_millis(275));
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Probation: a success reported less than `min_uptime` after the launch it follows keeps
    /// the key's crashes, so a backend that dies soon after every launch is refused once its
    /// budget is spent. Zero (the default) forgets on every success, as the spec does. See
    /// [`BackendRecoveryState::record_success_at`](crate::BackendRecoveryState::record_success_at).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .min_uptime(Duration::from_secs(30))
    ///     .build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let now = Instant::now();
    /// state.record_crash("search", now); // relaunch allowed from 250 ms
    /// // Up for only 1 s since then: the crash is kept.
    /// assert!(!state.record_success_at("search", now + Duration::from_millis(1_250)));
    /// // Up for 30 s: forgotten.
    /// assert!(state.record_success_at("search", now + Duration::from_millis(30_250)));
    /// assert!(state.is_empty());
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn min_uptime(mut self, min_uptime: Duration) -> Self {
        self.min_uptime = min_uptime;
        self
    }

    /// How long a won launch claim stays pending without a report before another caller may
    /// claim: 10 s by default; clamped to 1 ms..=the budget window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .launch_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// let now = Instant::now();
    /// assert!(state.claim_launch(&"search", now).is_launch());
    /// // The winner never reports: its claim lapses after 2 s, and the next caller wins.
    /// assert!(!state.claim_launch(&"search", now + Duration::from_secs(1)).is_launch());
    /// assert!(state.claim_launch(&"search", now + Duration::from_secs(2)).is_launch());
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn launch_timeout(mut self, launch_timeout: Duration) -> Self {
        self.launch_timeout = Some(launch_timeout);
        self
    }

    /// The policy, or the first setting that makes no sense.
    ///
    /// Durations are never refused: a zero backoff, window or cap is clamped to 1 ms, and the
    /// launch timeout to 1 ms..=the budget window, as a state would clamp them.
    ///
    /// # Errors
    ///
    /// The settings are checked in this order, and the first that fails is returned:
    ///
    /// - [`PolicyError::TooManyRetries`] if [`retries_per_window`](Self::retries_per_window) is
    ///   above [`MAX_RETRIES_PER_WINDOW`] (14);
    /// - [`PolicyError::FactorBelowOne`] if [`exponential_backoff`](Self::exponential_backoff)
    ///   was given a factor below 1.0, or NaN;
    /// - [`PolicyError::FactorTooLarge`] if it was given a factor above 1,000,000, or infinity;
    /// - [`PolicyError::JitterOutOfRange`] if the [`jitter`](Self::jitter) fraction is outside
    ///   `0.0..=1.0`, or NaN.
    ///
    /// # Examples
    ///
    /// ```
    /// use backend_recovery::{BackendRecoveryPolicy, PolicyError};
    ///
    /// let spec = BackendRecoveryPolicy::builder().build()?;
    /// assert_eq!(spec, BackendRecoveryPolicy::default());
    /// // Two settings out of range: the first checked is reported.
    /// let err = BackendRecoveryPolicy::builder().jitter(2.0).retries_per_window(20).build();
    /// assert_eq!(err, Err(PolicyError::TooManyRetries { requested: 20, max: 14 }));
    /// # Ok::<(), PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn build(self) -> Result<BackendRecoveryPolicy, PolicyError> {
        if self.retries_per_window > MAX_RETRIES_PER_WINDOW {
            return Err(PolicyError::TooManyRetries {
                requested: self.retries_per_window,
                max: MAX_RETRIES_PER_WINDOW,
            });
        }
        let backoff_growth = match self.exponential {
            None => BackoffGrowth::Fixed,
            Some((factor, cap)) => {
                // NaN is not at least 1 either.
                if factor.is_nan() || factor < 1.0 {
                    return Err(PolicyError::FactorBelowOne { factor });
                }
                if factor > MAX_FACTOR {
                    return Err(PolicyError::FactorTooLarge { factor });
                }
                BackoffGrowth::Exponential {
                    factor_per_mille: per_mille(factor),
                    cap,
                }
            }
        };
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(PolicyError::JitterOutOfRange {
                jitter: self.jitter,
            });
        }
        let spec = BackendRecoveryPolicy::new(self.retry_backoff, self.budget_window);
        Ok(BackendRecoveryPolicy {
            retries_per_window: self.retries_per_window,
            backoff_growth,
            jitter_per_mille: per_mille(self.jitter),
            min_uptime: self.min_uptime,
            launch_timeout: self.launch_timeout.unwrap_or(spec.launch_timeout),
            ..spec
        }
        .normalized())
    }
}

/// A checked, in-range fraction or factor in thousandths, rounded to the nearest.
fn per_mille(value: f64) -> u32 {
    // In range by the checks above (at most 1e9), so the cast cannot saturate.
    (value * 1000.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_the_spec_policy() {
        assert_eq!(
            BackendRecoveryPolicy::builder().build(),
            Ok(BackendRecoveryPolicy::default())
        );
    }

    #[test]
    fn nonsense_settings_are_errors_not_panics() {
        let b = BackendRecoveryPolicy::builder;
        assert_eq!(
            b().retries_per_window(15).build(),
            Err(PolicyError::TooManyRetries {
                requested: 15,
                max: 14
            })
        );
        assert!(matches!(
            b().exponential_backoff(f64::NAN, Duration::MAX).build(),
            Err(PolicyError::FactorBelowOne { .. })
        ));
        assert!(matches!(
            b().exponential_backoff(f64::INFINITY, Duration::MAX)
                .build(),
            Err(PolicyError::FactorTooLarge { .. })
        ));
        assert_eq!(
            b().jitter(-0.1).build(),
            Err(PolicyError::JitterOutOfRange { jitter: -0.1 })
        );
        assert!(b().jitter(f64::NAN).build().is_err());
        let message = b().jitter(2.0).build().unwrap_err().to_string();
        assert!(message.contains("jitter fraction 2"), "{message}");
    }

    #[test]
    fn edges_of_the_ranges_are_accepted() {
        let policy = BackendRecoveryPolicy::builder()
            .retries_per_window(0)
            .exponential_backoff(1.0, Duration::ZERO)
            .jitter(1.0)
            .build()
            .unwrap();
        assert_eq!(policy.retries_per_window, 0);
        assert_eq!(
            policy.backoff_growth,
            BackoffGrowth::Exponential {
                factor_per_mille: 1000,
                cap: Duration::from_millis(1)
            }
        );
        assert_eq!(policy.jitter_per_mille, 1000);
        assert!(
            BackendRecoveryPolicy::builder()
                .retries_per_window(14)
                .exponential_backoff(1e6, Duration::MAX)
                .build()
                .is_ok()
        );
    }
}
