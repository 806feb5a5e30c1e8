//! `record_crash` racing `record_success` on the same key.
//!
//! `record_success` removes the entry under the shard's write guard while the crash either
//! inserts (write guard) or updates the cell in place (read guard). Whichever wins, the result
//! must be one of the two sequential orders, and the state left behind must be that order's:
//! no crash recorded into a removed cell, no entry resurrected with stale counts.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};
use backend_recovery_loom_tests::{
    History, Key, Op, RETRIES, Scenario, fixed_state, model_policy, multi_retry_policy,
};

const KEY: Key = "indexer";

/// Property of this model: the final `status` and `len` agree with the crash's decision in the
/// order it implies. Success last: no entry, `Healthy`. Crash last: one entry that has just
/// crashed once in a fresh window (`BackingOff`, answered by a `Retry`).
fn final_state_agrees_with_the_order(history: &History) {
    let decision = history.decision(0, 0);
    let status = history.final_status(0);
    if history.len == 0 {
        assert_eq!(status, &BackendRecoveryStatus::Healthy, "{history:#?}");
    } else {
        assert_eq!(history.len, 1, "{history:#?}");
        assert!(
            decision.is_retry(),
            "a crash after the success must be a first crash: {history:#?}"
        );
        assert!(
            matches!(
                status,
                BackendRecoveryStatus::BackingOff {
                    crashes_in_window: 1,
                    ..
                }
            ),
            "{history:#?}"
        );
    }
}

// A first crash (insert under the write guard) racing the key's removal.
#[test]
fn crash_of_a_new_key_races_success() {
    let at = Instant::now();
    Scenario::new(model_policy())
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Success(KEY)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "crash_and_success: crash of a new key vs success",
            fixed_state,
            final_state_agrees_with_the_order,
        );
}

// A second crash (CAS under the read guard) racing the key's removal. Crash first:
// refused, then forgotten. Success first: the crash is a first crash again and retries.
#[test]
fn crash_of_a_known_key_races_success() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Success(KEY)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "crash_and_success: crash of a known key vs success",
            fixed_state,
            |history| {
                final_state_agrees_with_the_order(history);
                // Refused exactly when the crash came first and the success then removed it.
                assert_eq!(
                    history.decision(0, 0).is_retry(),
                    history.len == 1,
                    "{history:#?}"
                );
            },
        );
}

/// A key crashed once at `base`; two threads crash it again 400 ms later while a third forgets
/// it; then a gate check.
fn two_crashes_and_a_success(policy: BackendRecoveryPolicy) -> Scenario {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(policy)
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Success(KEY)])
        .after([Op::Status(KEY, at)])
}

/// Property of this model with three threads: an entry is left exactly when the final check sees
/// one (no window closes at the crashes' instant), and the two concurrent crashes never share
/// an attempt: at most `retries_per_window` retries between them, each a distinct attempt
/// (with the success between them, the later crash is a first crash again and the earlier one
/// was not: attempts 2 and 1, never 1 and 1).
fn crashes_share_one_window(history: &History, retries_per_window: u32) {
    let healthy = history.final_status(0) == &BackendRecoveryStatus::Healthy;
    assert_eq!(history.len == 0, healthy, "{history:#?}");
    let mut attempts: Vec<u32> = history
        .thread_decisions()
        .iter()
        .filter_map(|d| match d {
            BackendRecoveryDecision::Retry { attempt, .. } => Some(*attempt),
            BackendRecoveryDecision::Refuse { .. } => None,
        })
        .collect();
    assert!(
        attempts.len() <= retries_per_window as usize,
        "{history:#?}"
    );
    attempts.sort_unstable();
    assert!(
        attempts.windows(2).all(|pair| pair[0] != pair[1]),
        "two crashes got the same attempt: {history:#?}"
    );
}

// Three threads: two crashes of a known key race its removal. The success may come before,
// between or after them; the key is left with none, one or two crashes accordingly, and never
// with a crash counted in a removed entry.
#[test]
fn two_crashes_race_success() {
    two_crashes_and_a_success(model_policy()).check_sequential_consistency(
        "crash_and_success: two crashes of a known key vs success, 3 threads",
        fixed_state,
        |history| crashes_share_one_window(history, 1),
    );
}

// Three threads and two retries per window: the same race, where a crash before the success
// is the window's second retry (attempt 2, 150 ms) and a crash after it a first one again
// (attempt 1, 75 ms).
#[test]
fn two_crashes_race_success_with_two_retries() {
    two_crashes_and_a_success(multi_retry_policy()).check_sequential_consistency(
        "crash_and_success: two crashes of a known key vs success, 3 threads, two retries",
        fixed_state,
        |history| crashes_share_one_window(history, RETRIES),
    );
}
