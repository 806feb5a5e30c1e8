//! Differential property tests: random histories of crashes, reports by incarnation, launch
//! claims, successes (with and without an instant, under random probations and launch timeouts)
//! and status checks over a few keys, with random (often decreasing, often boundary-exact) instants, must get identical
//! answers from the crate and from the independent reference model.

use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, BackoffGrowth};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::reference::ReferenceModel;

/// When an operation happens, relative to a base instant taken before the state is built.
#[derive(Clone, Copy, Debug)]
enum At {
    /// `quarters` quarter-windows after the base, nudged by a few nanoseconds: lands on and
    /// around window boundaries exactly.
    Boundary { quarters: u8, nudge_ns: i8 },
    /// Anywhere in the first three windows, as a fraction of the window in millionths.
    Anywhere { millionths: u32 },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Crash(u8, At),
    /// A report by incarnation; few incarnations, so duplicates and stale reports are common.
    CrashOf(u8, u64, At),
    Success(u8),
    /// A success at an instant: the probation applies.
    SuccessAt(u8, At),
    Claim(u8, At),
    Status(u8, At),
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        (0u8..=12, -2i8..=2).prop_map(|(quarters, nudge_ns)| At::Boundary { quarters, nudge_ns }),
        (0u32..=3_000_000).prop_map(|millionths| At::Anywhere { millionths }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..4;
    prop_oneof![
        5 => (key.clone(), at()).prop_map(|(k, t)| Op::Crash(k, t)),
        3 => (key.clone(), 0u64..4, at()).prop_map(|(k, i, t)| Op::CrashOf(k, i, t)),
        1 => key.clone().prop_map(Op::Success),
        2 => (key.clone(), at()).prop_map(|(k, t)| Op::SuccessAt(k, t)),
        4 => (key.clone(), at()).prop_map(|(k, t)| Op::Claim(k, t)),
        2 => (key, at()).prop_map(|(k, t)| Op::Status(k, t)),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_millis(250)),
        Just(Duration::from_secs(30)),
        (1u64..=2_000_000_000).prop_map(Duration::from_nanos),
    ]
}

/// A random policy: the spec's two durations, and often the settings beyond it (every retry
/// count the word can hold, exponential growth with assorted factors and caps, jitter).
fn policy() -> impl Strategy<Value = BackendRecoveryPolicy> {
    let growth = prop_oneof![
        Just(BackoffGrowth::Fixed),
        (1000u32..=4000, duration()).prop_map(|(factor_per_mille, cap)| {
            BackoffGrowth::Exponential {
                factor_per_mille,
                cap,
            }
        }),
    ];
    let extras = prop_oneof![
        1 => Just((1u32, BackoffGrowth::Fixed, 0u32)),
        3 => (0u32..=14, growth, prop_oneof![Just(0u32), 0u32..=1000]),
    ];
    let launch = prop_oneof![
        1 => Just(None),
        2 => (duration(), duration()).prop_map(Some),
    ];
    (duration(), duration(), extras, launch).prop_map(
        |(backoff, window, (retries, growth, jitter), launch)| {
            let mut policy = BackendRecoveryPolicy::new(backoff, window);
            policy.retries_per_window = retries;
            policy.backoff_growth = growth;
            policy.jitter_per_mille = jitter;
            if let Some((min_uptime, launch_timeout)) = launch {
                policy.min_uptime = min_uptime;
                policy.launch_timeout = launch_timeout;
            }
            policy
        },
    )
}

fn instant(base: Instant, window: Duration, at: At) -> Instant {
    let window_ns = window.as_nanos() as i128;
    let offset_ns = match at {
        At::Boundary { quarters, nudge_ns } => {
            window_ns * i128::from(quarters) / 4 + i128::from(nudge_ns)
        }
        At::Anywhere { millionths } => window_ns * i128::from(millionths) / 1_000_000,
    };
    if offset_ns >= 0 {
        base + Duration::from_nanos(offset_ns as u64)
    } else {
        base - Duration::from_nanos(offset_ns.unsigned_abs() as u64)
    }
}

/// Runs `op` on the crate and on the model at `step` and checks that they answer alike.
fn run_op(
    state: &BackendRecoveryState<u8>,
    model: &mut ReferenceModel<u8>,
    base: Instant,
    window: Duration,
    step: usize,
    op: Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Crash(key, at) => {
            let now = instant(base, window, at);
            prop_assert_eq!(
                state.record_crash(key, now),
                model.record_crash(key, now),
                "crash of key {} at step {}",
                key,
                step
            );
        }
        Op::CrashOf(key, incarnation, at) => {
            let now = instant(base, window, at);
            prop_assert_eq!(
                state.record_crash_of(key, incarnation, now),
                model.record_crash_of(key, incarnation, now),
                "report of key {} incarnation {} at step {}",
                key,
                incarnation,
                step
            );
        }
        Op::Success(key) => {
            // Without an instant only under the spec's policy: with a probation it reads the
            // clock, which the two would read apart.
            if state.policy().min_uptime.is_zero() {
                state.record_success(&key);
                model.record_success(&key);
            }
        }
        Op::SuccessAt(key, at) => {
            let now = instant(base, window, at);
            prop_assert_eq!(
                state.record_success_at(&key, now),
                model.record_success_at(&key, now),
                "success of key {} at step {}",
                key,
                step
            );
        }
        Op::Claim(key, at) => {
            let now = instant(base, window, at);
            prop_assert_eq!(
                state.claim_launch(&key, now),
                model.claim_launch(key, now),
                "claim of key {} at step {}",
                key,
                step
            );
        }
        Op::Status(key, at) => {
            let now = instant(base, window, at);
            prop_assert_eq!(
                state.status(&key, now),
                model.status(&key, now),
                "status of key {} at step {}",
                key,
                step
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn crate_matches_reference_model(
        policy in policy(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        // Taken before the state is built, as a broker's `let now = Instant::now();` would be.
        let base = Instant::now();
        let state = BackendRecoveryState::<u8>::with_policy(policy);
        let mut model = ReferenceModel::<u8>::new(policy);
        let window = state.policy().budget_window;

        for (step, op) in ops.into_iter().enumerate() {
            run_op(&state, &mut model, base, window, step, op)?;
            prop_assert_eq!(state.len(), model.len());
        }
    }
}

/// The instant each operation of a history runs at; purges run no later than any operation after
/// them, which is `purge_expired`'s contract.
fn purge_instants(base: Instant, window: Duration, ops: &[(Op, bool)]) -> Vec<Option<Instant>> {
    let mut earliest_after: Option<Instant> = None;
    let mut instants = vec![None; ops.len()];
    for (i, (op, purge_before)) in ops.iter().enumerate().rev() {
        let at = match op {
            Op::Crash(_, at)
            | Op::CrashOf(_, _, at)
            | Op::Status(_, at)
            | Op::SuccessAt(_, at)
            | Op::Claim(_, at) => Some(instant(base, window, *at)),
            Op::Success(_) => None,
        };
        if let Some(at) = at {
            earliest_after = Some(earliest_after.map_or(at, |e| e.min(at)));
        }
        if *purge_before {
            instants[i] = Some(earliest_after.unwrap_or(base));
        }
    }
    instants
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// `purge_expired` at random points of random histories never changes any decision or
    /// status: the crate with purges still agrees with the reference model, which never purges.
    ///
    /// Reports by incarnation are left out: purging forgets a key's last incarnation with its
    /// expired entry, so a report of that incarnation arriving after the purge (more than a
    /// window after it was counted) counts as a new crash, as `purge_expired` documents and
    /// `features::purging_forgets_incarnations_with_their_window` pins.
    #[test]
    fn purging_never_changes_a_decision(
        policy in policy(),
        ops in prop::collection::vec((op(), prop::bool::weighted(0.3)), 1..40),
    ) {
        let ops: Vec<_> = ops.into_iter().filter(|(op, _)| !matches!(op, Op::CrashOf(..))).collect();
        let base = Instant::now();
        let state = BackendRecoveryState::<u8>::with_policy(policy);
        let mut model = ReferenceModel::<u8>::new(policy);
        let window = state.policy().budget_window;
        let purges = purge_instants(base, window, &ops);

        for (step, ((op, _), purge)) in ops.into_iter().zip(purges).enumerate() {
            if let Some(at) = purge {
                state.purge_expired(at);
            }
            run_op(&state, &mut model, base, window, step, op)?;
            prop_assert!(state.len() <= model.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Automatic purging never changes a decision while instants run at most a window behind
    /// the latest one seen: thousands of keys (so purges run), crashes and checks at a steadily
    /// advancing clock with random backward jitter, against the reference model.
    #[test]
    fn automatic_purging_never_changes_a_decision(
        window_ms in 1u64..2_000,
        keys in 1_500u32..4_000,
        ops in prop::collection::vec((any::<u32>(), 0u32..=1_000_000, any::<bool>()), 6_000),
    ) {
        let base = Instant::now();
        let window = Duration::from_millis(window_ms);
        let policy = BackendRecoveryPolicy::new(Duration::from_millis(5), window);
        let state = BackendRecoveryState::<u32>::with_policy(policy);
        let mut model = ReferenceModel::<u32>::new(policy);
        // The clock crosses about 30 windows over the history.
        let tick = window * 30 / ops.len() as u32;
        let mut latest = base;
        for (i, (key, lag_millionths, is_crash)) in ops.into_iter().enumerate() {
            let key = key % keys;
            latest = latest.max(base + tick * i as u32);
            // Strictly less than one window behind the latest instant.
            let lag = (window - Duration::from_nanos(1)) * lag_millionths / 1_000_000;
            let now = latest - lag;
            if is_crash {
                prop_assert_eq!(state.record_crash(key, now), model.record_crash(key, now));
            } else {
                prop_assert_eq!(state.status(&key, now), model.status(&key, now));
            }
        }
        prop_assert!(state.metrics().entries_purged > 0, "no automatic purge ran");
    }
}
