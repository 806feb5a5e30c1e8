//! Differential property test: random histories of crashes, successes and status checks over a
//! few keys, with random (often decreasing, often boundary-exact) instants, must get identical
//! answers from the crate and from the independent reference model.

use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};
use proptest::prelude::*;

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
    Success(u8),
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
        1 => key.clone().prop_map(Op::Success),
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn crate_matches_reference_model(
        backoff in duration(),
        window in duration(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        // Taken before the state is built, as a broker's `let now = Instant::now();` would be.
        let base = Instant::now();
        let policy = BackendRecoveryPolicy::new(backoff, window);
        let state = BackendRecoveryState::<u8>::with_policy(policy);
        let mut model = ReferenceModel::<u8>::new(policy);
        let window = state.policy().budget_window;

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Crash(key, at) => {
                    let now = instant(base, window, at);
                    prop_assert_eq!(
                        state.record_crash(key, now),
                        model.record_crash(key, now),
                        "crash of key {} at step {}", key, step
                    );
                }
                Op::Success(key) => {
                    state.record_success(&key);
                    model.record_success(&key);
                }
                Op::Status(key, at) => {
                    let now = instant(base, window, at);
                    prop_assert_eq!(
                        state.status(&key, now),
                        model.status(&key, now),
                        "status of key {} at step {}", key, step
                    );
                }
            }
            prop_assert_eq!(state.len(), model.len());
        }
    }
}
