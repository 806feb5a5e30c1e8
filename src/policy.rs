//! Recovery tuning: the budget per window, the backoff schedule, and their defaults.
//!
//! The spec's policy is two durations: one retry per window after a fixed backoff. The further
//! settings here (retries per window, exponential growth up to a cap, jitter) default to the
//! spec's behaviour, so [`BackendRecoveryPolicy::new`] and [`Default`] decide exactly as the spec.

use std::time::Duration;

/// Default delay before the broker retries a crashed backend once: 250 ms.
pub const DEFAULT_RECOVERY_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Default budget window, the broker's spawn-budget window: 30 s.
pub const DEFAULT_RECOVERY_BUDGET_WINDOW: Duration = Duration::from_secs(30);

/// Default time a won launch claim stays pending before another caller may claim: 10 s (at
/// most the budget window). See [`BackendRecoveryPolicy::launch_timeout`].
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The most retries a window can allow: the packed per-backend word counts crashes in 4 bits,
/// and counts up to one past the retries (see `cell.rs`).
pub const MAX_RETRIES_PER_WINDOW: u32 = 14;

/// The floor that zero durations are clamped to, as the spec does.
const MINIMUM_DURATION: Duration = Duration::from_millis(1);

/// Per-mille units: 1000 stands for a factor or fraction of 1.
const PER_MILLE: u128 = 1000;

/// How the delay before each retry in a window grows with the attempt number.
///
/// Plain data: nothing about it panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backend_recovery::{BackendRecoveryPolicy, BackoffGrowth};
///
/// assert_eq!(BackendRecoveryPolicy::default().backoff_growth, BackoffGrowth::Fixed);
/// let policy = BackendRecoveryPolicy::builder()
///     .exponential_backoff(1.5, Duration::from_secs(1))
///     .build()?;
/// let growth = BackoffGrowth::Exponential { factor_per_mille: 1500, cap: Duration::from_secs(1) };
/// assert_eq!(policy.backoff_growth, growth);
/// # Ok::<(), backend_recovery::PolicyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum BackoffGrowth {
    /// Every retry waits `retry_backoff`, as in the spec.
    #[default]
    Fixed,
    /// Retry `n` waits `retry_backoff × factor^(n-1)`, at most `cap`.
    Exponential {
        /// The factor in thousandths: 2000 doubles the delay on each attempt. At least 1000.
        factor_per_mille: u32,
        /// The longest delay, jitter included.
        cap: Duration,
    },
}

/// Recovery tuning shared by every backend key of one [`BackendRecoveryState`].
///
/// Within a budget window, opened by a backend's first crash, the first `retries_per_window`
/// crashes are each granted a retry, after a delay from the backoff schedule; every further
/// crash is refused until the window has passed. The defaults are the spec's: one retry after a
/// fixed 250 ms, a 30 s window, no jitter.
///
/// The fields are public so that a broker can read them as it did with the spec's module. The
/// struct is `#[non_exhaustive]`: build it with [`new`](Self::new), [`Default`] or
/// [`builder`](Self::builder), which checks the settings. A state clamps whatever it is given
/// into range (see [`builder`](Self::builder) for the ranges).
///
/// Plain data: none of its methods panics.
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
/// assert_eq!(policy.retries_per_window, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BackendRecoveryPolicy {
    /// Delay before the first retry in a window (and the base of an exponential schedule).
    pub retry_backoff: Duration,
    /// Window bounding crash retries and backend-unavailable retry-after hints.
    pub budget_window: Duration,
    /// Retries granted per window: 1 in the spec; 0 refuses every crash.
    pub retries_per_window: u32,
    /// How the delay grows from one retry to the next within a window.
    pub backoff_growth: BackoffGrowth,
    /// Jitter in thousandths of the delay: each retry's delay is lengthened by up to this
    /// fraction, by an amount fixed per backend key and attempt (never past an exponential cap).
    pub jitter_per_mille: u32,
    /// Probation: a success reported less than this after the launch it follows does not forget
    /// the key's crashes (see [`record_success_at`](crate::BackendRecoveryState::record_success_at)).
    /// Zero, the default, forgets on every success, as the spec does.
    pub min_uptime: Duration,
    /// How long a won launch claim stays pending without a report before another caller may
    /// claim (see [`claim_launch`](crate::BackendRecoveryState::claim_launch)); clamped to
    /// 1 ms..=`budget_window`, so that a purged entry never held a pending claim.
    pub launch_timeout: Duration,
}

impl BackendRecoveryPolicy {
    /// The spec's policy: one retry per window after `retry_backoff`; zero durations clamp to
    /// 1 ms.
    ///
    /// Any non-zero duration is kept as given, up to and including [`Duration::MAX`]: a window
    /// that long means a backend that crashed twice is refused for the life of the process.
    /// The launch timeout is [`DEFAULT_LAUNCH_TIMEOUT`], or the window if that is shorter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use backend_recovery::BackendRecoveryPolicy;
    ///
    /// let policy = BackendRecoveryPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
    /// assert_eq!(policy.retry_backoff, Duration::from_millis(100));
    /// assert_eq!(policy.retries_per_window, 1);
    /// assert_eq!(policy.launch_timeout, Duration::from_secs(10));
    /// // A launch claim never outlives the window.
    /// let short = BackendRecoveryPolicy::new(Duration::from_millis(100), Duration::from_secs(2));
    /// assert_eq!(short.launch_timeout, Duration::from_secs(2));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn new(retry_backoff: Duration, budget_window: Duration) -> Self {
        Self {
            retry_backoff: at_least_minimum(retry_backoff),
            budget_window: at_least_minimum(budget_window),
            retries_per_window: 1,
            backoff_growth: BackoffGrowth::Fixed,
            jitter_per_mille: 0,
            min_uptime: Duration::ZERO,
            launch_timeout: DEFAULT_LAUNCH_TIMEOUT.min(at_least_minimum(budget_window)),
        }
    }

    /// A builder for the settings beyond the spec, checked when built.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use backend_recovery::BackendRecoveryPolicy;
    ///
    /// let policy = BackendRecoveryPolicy::builder()
    ///     .retry_backoff(Duration::from_millis(100))
    ///     .retries_per_window(5)
    ///     .exponential_backoff(2.0, Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let delays: Vec<_> = (1..=5).map(|n| policy.retry_delay(n, 0).as_millis()).collect();
    /// assert_eq!(delays, [100, 200, 400, 800, 1000]);
    /// assert!(BackendRecoveryPolicy::builder().jitter(1.5).build().is_err());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn builder() -> crate::BackendRecoveryPolicyBuilder {
        crate::BackendRecoveryPolicyBuilder::new()
    }

    /// The delay before retry `attempt` (1-based) of a window, for a key whose jitter seed is
    /// `jitter_seed` (see [`jitter_seed`]); exact to the nanosecond.
    ///
    /// Exponential growth multiplies in integer nanoseconds, rounding down at each step, and
    /// stops at the cap; jitter then adds `delay × jitter × u`, with `u` in `[0, 1)` drawn from
    /// the seed and the attempt, and the cap still bounds the sum. This is the delay a
    /// [`BackendRecoveryState`](crate::BackendRecoveryState) with this policy grants.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use backend_recovery::{BackendRecoveryPolicy, jitter_seed};
    ///
    /// let policy = BackendRecoveryPolicy::builder().jitter(0.2).build()?;
    /// let seed = jitter_seed("search");
    /// let delay = policy.retry_delay(1, seed);
    /// // 250 ms, lengthened by less than 20%, and the same every time for this key.
    /// assert!(delay >= Duration::from_millis(250) && delay < Duration::from_millis(300));
    /// assert_eq!(delay, policy.retry_delay(1, seed));
    /// # Ok::<(), backend_recovery::PolicyError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never, whatever the fields hold (they are public, so they may be out of range):
    /// arithmetic saturates at [`Duration::MAX`].
    #[inline]
    pub fn retry_delay(&self, attempt: u32, jitter_seed: u64) -> Duration {
        // A fixed backoff without jitter (the default): the general arithmetic below gives this
        // very value, so such a policy returns it without the u128 multiply and division.
        if self.backoff_growth == BackoffGrowth::Fixed && self.jitter_per_mille == 0 {
            return self.retry_backoff;
        }
        let base = self.retry_backoff.as_nanos();
        let (grown, cap) = match self.backoff_growth {
            BackoffGrowth::Fixed => (base, u128::MAX),
            BackoffGrowth::Exponential {
                factor_per_mille,
                cap,
            } => {
                let cap = cap.as_nanos();
                let mut delay = base.min(cap);
                for _ in 1..attempt {
                    // At most Duration::MAX in ns (< 2^95) times a factor below 2^32: fits.
                    let next = (delay * u128::from(factor_per_mille) / PER_MILLE).min(cap);
                    // At the cap, or a factor of 1 (or less, in fields set by hand): done.
                    if next <= delay {
                        break;
                    }
                    delay = next;
                }
                (delay, cap)
            }
        };
        // Clamped here too: the fields are public, and this method is callable on any policy.
        let jitter_per_mille = self.jitter_per_mille.min(1000);
        let jitter = if jitter_per_mille == 0 {
            0
        } else {
            let most = grown * u128::from(jitter_per_mille) / PER_MILLE;
            // `most` < 2^96 and the draw < 2^32: the product fits in 128 bits.
            (most * u128::from(jitter_draw(jitter_seed, attempt))) >> 32
        };
        duration_from_nanos((grown + jitter).min(cap))
    }

    /// The same policy with every setting clamped into range: zero durations to 1 ms, retries
    /// to [`MAX_RETRIES_PER_WINDOW`], a factor to at least 1, jitter to at most 1.
    ///
    /// The fields are public, so a caller can write anything into a copy; the state normalises
    /// the policy it is given.
    pub(crate) fn normalized(self) -> Self {
        Self {
            retry_backoff: at_least_minimum(self.retry_backoff),
            budget_window: at_least_minimum(self.budget_window),
            retries_per_window: self.retries_per_window.min(MAX_RETRIES_PER_WINDOW),
            backoff_growth: match self.backoff_growth {
                BackoffGrowth::Fixed => BackoffGrowth::Fixed,
                BackoffGrowth::Exponential {
                    factor_per_mille,
                    cap,
                } => BackoffGrowth::Exponential {
                    factor_per_mille: factor_per_mille.max(1000),
                    cap: at_least_minimum(cap),
                },
            },
            jitter_per_mille: self.jitter_per_mille.min(1000),
            min_uptime: self.min_uptime,
            launch_timeout: at_least_minimum(
                self.launch_timeout
                    .min(at_least_minimum(self.budget_window)),
            ),
        }
    }
}

impl Default for BackendRecoveryPolicy {
    /// 250 ms backoff and a 30 s window, the defaults of the broker the spec came from.
    fn default() -> Self {
        Self::new(
            DEFAULT_RECOVERY_RETRY_BACKOFF,
            DEFAULT_RECOVERY_BUDGET_WINDOW,
        )
    }
}

/// The jitter seed of a key: a hash with fixed keys (std's `DefaultHasher::new()`), so the same
/// key gets the same jitter in every state and every run of the same build, while different
/// keys spread. The state computes it only when the policy has jitter.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, jitter_seed};
///
/// let policy = BackendRecoveryPolicy::builder().jitter(0.5).build()?;
/// let state = BackendRecoveryState::<&str>::with_policy(policy);
/// let decision = state.record_crash("search", Instant::now());
/// // The state's delay for a key is the policy's for that key's seed.
/// assert_eq!(decision.retry_after(), policy.retry_delay(1, jitter_seed("search")));
/// # Ok::<(), backend_recovery::PolicyError>(())
/// ```
///
/// # Panics
///
/// Never, unless `key`'s `Hash` implementation panics.
pub fn jitter_seed<K: std::hash::Hash + ?Sized>(key: &K) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// A uniform 32-bit draw from a key's seed and the attempt (splitmix64's finaliser).
fn jitter_draw(seed: u64, attempt: u32) -> u32 {
    let mut z = seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 32) as u32
}

/// Nanoseconds as a `Duration`, saturating at `Duration::MAX`.
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
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

    const MS: Duration = Duration::from_millis(1);

    fn exponential(factor_per_mille: u32, cap: Duration) -> BackendRecoveryPolicy {
        BackendRecoveryPolicy {
            retries_per_window: 5,
            backoff_growth: BackoffGrowth::Exponential {
                factor_per_mille,
                cap,
            },
            ..BackendRecoveryPolicy::new(100 * MS, Duration::from_secs(30))
        }
    }

    #[test]
    fn default_matches_the_broker_defaults() {
        let policy = BackendRecoveryPolicy::default();
        assert_eq!(policy.retry_backoff, Duration::from_millis(250));
        assert_eq!(policy.budget_window, Duration::from_secs(30));
        assert_eq!(policy.retries_per_window, 1);
        assert_eq!(policy.backoff_growth, BackoffGrowth::Fixed);
        assert_eq!(policy.jitter_per_mille, 0);
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
    fn normalized_clamps_settings_written_after_construction() {
        let policy = BackendRecoveryPolicy {
            budget_window: Duration::ZERO,
            retries_per_window: 100,
            backoff_growth: BackoffGrowth::Exponential {
                factor_per_mille: 10,
                cap: Duration::ZERO,
            },
            jitter_per_mille: 5000,
            ..BackendRecoveryPolicy::default()
        }
        .normalized();
        assert_eq!(policy.budget_window, Duration::from_millis(1));
        assert_eq!(policy.retry_backoff, Duration::from_millis(250));
        assert_eq!(policy.retries_per_window, MAX_RETRIES_PER_WINDOW);
        assert_eq!(
            policy.backoff_growth,
            BackoffGrowth::Exponential {
                factor_per_mille: 1000,
                cap: MS
            }
        );
        assert_eq!(policy.jitter_per_mille, 1000);
    }

    #[test]
    fn exponential_schedule_doubles_up_to_the_cap() {
        let policy = exponential(2000, Duration::from_secs(1));
        let delays: Vec<_> = (1..=6).map(|n| policy.retry_delay(n, 7)).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
    }

    #[test]
    fn a_fixed_backoff_without_jitter_is_the_backoff_for_every_attempt() {
        let backoffs = [
            // Written into the public field by hand: not clamped, on either path.
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(0, 999_999_999),
            250 * MS,
            Duration::new(u64::MAX, 0),
            Duration::MAX,
        ];
        for backoff in backoffs {
            let fixed = BackendRecoveryPolicy {
                retry_backoff: backoff,
                ..BackendRecoveryPolicy::default()
            };
            // The general arithmetic: growth by a factor of one, never capped.
            let no_growth = BackendRecoveryPolicy {
                retry_backoff: backoff,
                ..exponential(1000, Duration::MAX)
            };
            for (attempt, seed) in [(1, 0), (2, 7), (14, u64::MAX), (u32::MAX, 3)] {
                assert_eq!(fixed.retry_delay(attempt, seed), backoff, "{backoff:?}");
                assert_eq!(no_growth.retry_delay(attempt, seed), backoff, "{backoff:?}");
            }
        }
        // With jitter, a fixed backoff still gets its jitter added: the shortcut is not taken.
        let jittered = BackendRecoveryPolicy {
            jitter_per_mille: 1000,
            ..BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::from_secs(30))
        };
        assert!((0..8).any(|seed| jittered.retry_delay(1, seed) > Duration::from_secs(1)));
    }

    #[test]
    fn fractional_factors_round_down_each_step() {
        let policy = BackendRecoveryPolicy {
            retry_backoff: Duration::from_nanos(3),
            ..exponential(1500, Duration::MAX)
        };
        // 3, 4 (4.5), 6, 9, 13 (13.5)
        let delays: Vec<_> = (1..=5)
            .map(|n| policy.retry_delay(n, 0).as_nanos())
            .collect();
        assert_eq!(delays, [3, 4, 6, 9, 13]);
    }

    #[test]
    fn extreme_settings_saturate_without_panicking() {
        let policy = BackendRecoveryPolicy {
            retry_backoff: Duration::MAX,
            jitter_per_mille: 1000,
            ..exponential(u32::MAX, Duration::MAX)
        };
        assert_eq!(policy.retry_delay(u32::MAX, u64::MAX), Duration::MAX);
        let fixed = BackendRecoveryPolicy {
            jitter_per_mille: 1000,
            ..BackendRecoveryPolicy::new(Duration::MAX, Duration::MAX)
        };
        assert_eq!(fixed.retry_delay(1, 3), Duration::MAX);
    }

    #[test]
    fn out_of_range_fields_set_by_hand_do_not_panic() {
        let mut policy = BackendRecoveryPolicy::new(Duration::MAX, Duration::MAX);
        policy.jitter_per_mille = u32::MAX;
        assert_eq!(policy.retry_delay(1, 12_345), Duration::MAX);
        policy.backoff_growth = BackoffGrowth::Exponential {
            factor_per_mille: 0,
            cap: Duration::MAX,
        };
        policy.jitter_per_mille = 0;
        // A factor below 1 never shrinks the delay, and the loop stops at once.
        assert_eq!(policy.retry_delay(u32::MAX, 0), Duration::MAX);
        let mut unit = BackendRecoveryPolicy::new(MS, Duration::MAX);
        unit.backoff_growth = BackoffGrowth::Exponential {
            factor_per_mille: 1000,
            cap: Duration::MAX,
        };
        assert_eq!(unit.retry_delay(u32::MAX, 0), MS);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let policy = BackendRecoveryPolicy {
            jitter_per_mille: 500,
            ..exponential(2000, Duration::from_millis(900))
        };
        for seed in 0..1_000u64 {
            let first = policy.retry_delay(1, seed);
            assert!(first >= 100 * MS && first < 150 * MS, "{first:?}");
            assert_eq!(first, policy.retry_delay(1, seed), "deterministic");
            let capped = policy.retry_delay(4, seed);
            assert!(capped >= 800 * MS && capped <= 900 * MS, "{capped:?}");
        }
    }

    #[test]
    fn jitter_seed_is_stable_for_equal_keys() {
        assert_eq!(jitter_seed("indexer"), jitter_seed(&"indexer".to_string()));
        assert_ne!(jitter_seed("indexer"), jitter_seed("scheduler"));
    }
}
