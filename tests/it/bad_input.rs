//! Bad input gets a defined answer, never a panic. The README's bad-input matrix names, for each
//! row, the test that backs it; the rows not pinned elsewhere are here.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendRecoveryStatus, BackoffGrowth,
};
use proptest::prelude::*;

const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Two threads crash one key with instants a second apart, in either order and at once: the
/// answers are those of one of the two sequential orders, and time running backwards counts as
/// zero elapsed.
#[test]
fn instants_running_backwards_between_threads() {
    let window = Duration::from_secs(30);
    let backoff = Duration::from_millis(75);
    let refuse = |after| BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after: after,
    };
    let retry = BackendRecoveryDecision::Retry {
        retry_after: backoff,
        attempt: 1,
    };
    for _ in 0..500 {
        let early = Instant::now();
        let late = early + Duration::from_secs(1);
        let state =
            BackendRecoveryState::<u8>::with_policy(BackendRecoveryPolicy::new(backoff, window));
        let barrier = Barrier::new(2);
        let (at_late, at_early) = std::thread::scope(|scope| {
            let late_thread = scope.spawn(|| {
                barrier.wait();
                state.record_crash(0, late)
            });
            let early_thread = scope.spawn(|| {
                barrier.wait();
                state.record_crash(0, early)
            });
            (late_thread.join().unwrap(), early_thread.join().unwrap())
        });
        let late_first = (retry.clone(), refuse(window));
        let early_first = (refuse(window - Duration::from_secs(1)), retry.clone());
        let outcome = (at_late, at_early);
        assert!(
            outcome == late_first || outcome == early_first,
            "{outcome:?}"
        );
    }
}

/// An instant further back than the epoch's lookback (four years before the state was built)
/// reads as the epoch itself: it decides, without panicking, as if at that moment.
#[test]
fn instants_older_than_the_epoch_read_as_the_epoch() {
    let now = Instant::now();
    let Some(ancient) = now.checked_sub(10 * YEAR) else {
        return; // This platform's clock cannot go back that far.
    };
    let state = BackendRecoveryState::<u8>::new();
    assert!(state.record_crash(0, ancient).is_retry());
    // Five years later is still "the epoch": no time has elapsed in between.
    assert_eq!(
        state.record_crash(0, ancient + 5 * YEAR).retry_after(),
        state.policy().budget_window
    );
    // Time from the epoch on is real again.
    assert!(state.record_crash(0, now).is_retry());
}

/// A policy with any durations, any growth and jitter, and instants from centuries before to
/// centuries after the state: no operation panics, and the gate agrees with the next crash.
fn extreme_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::new(u64::MAX, 0)),
        Just(100 * YEAR),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn extreme_offset() -> impl Strategy<Value = (bool, Duration)> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(YEAR),
            Just(30 * YEAR),
            Just(40 * YEAR),
            Just(300 * YEAR),
            extreme_duration(),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_input_panics(
        backoff in extreme_duration(),
        window in extreme_duration(),
        cap in extreme_duration(),
        retries in any::<u32>(),
        factor in any::<u32>(),
        jitter in any::<u32>(),
        ops in prop::collection::vec((0u8..3, extreme_offset(), any::<u64>(), 0u8..5), 1..30),
    ) {
        let base = Instant::now();
        let mut policy = BackendRecoveryPolicy::new(backoff, window);
        policy.retries_per_window = retries;
        policy.backoff_growth = if factor % 2 == 0 {
            BackoffGrowth::Fixed
        } else {
            BackoffGrowth::Exponential { factor_per_mille: factor, cap }
        };
        policy.jitter_per_mille = jitter;
        let state = BackendRecoveryState::<u8>::with_policy(policy).with_max_entries(2);
        for (key, (later, offset), incarnation, kind) in ops {
            // Instants the platform cannot represent are skipped, not passed.
            let at = if later { base.checked_add(offset) } else { base.checked_sub(offset) };
            let Some(at) = at else { continue };
            match kind {
                0 => {
                    let gate = state.status(&key, at);
                    let decision = state.record_crash(key, at);
                    let full = matches!(
                        decision,
                        BackendRecoveryDecision::Refuse {
                            reason: BackendRecoveryRefusalReason::CapacityExhausted,
                            ..
                        }
                    );
                    if let BackendRecoveryStatus::Unavailable { retry_after, .. } = gate {
                        prop_assert_eq!(decision.retry_after(), retry_after);
                    } else if !full && decision.is_retry() {
                        // Serve it, or wait out the backoff of an earlier retry.
                        let backing_off = matches!(gate, BackendRecoveryStatus::BackingOff { .. });
                        prop_assert!(gate.is_available() || backing_off);
                    }
                    let _ = decision.retry_after_ms();
                }
                1 => {
                    let _ = state.record_crash_of(key, incarnation, at).decision.retry_after_ms();
                }
                2 => state.record_success(&key),
                3 => {
                    let _ = state.status(&key, at).retry_after_ms();
                }
                _ => {
                    state.purge_expired(at);
                }
            }
            prop_assert!(state.len() <= 2);
        }
        let _ = state.snapshot(base);
        let _ = state.metrics();
    }
}

#[test]
fn metrics_written_by_hand_sum_without_panicking() {
    let state = BackendRecoveryState::<&str>::new();
    state.record_crash("a", Instant::now());
    let mut metrics = state.metrics();
    assert_eq!(metrics.crash_reports(), 1);
    metrics.refusals = u64::MAX;
    metrics.duplicates_coalesced = 2;
    // 1 + (2^64 - 1) + 2 wraps to 2, as the counters themselves wrap.
    assert_eq!(metrics.crash_reports(), 2);
}
