//! `status` racing a crash never reports a state that no sequential order produces.
//!
//! `status` only loads the cell under the shard's read guard, so it sees the word before or
//! after the crash's compare-and-swap, never a mix. `Scenario::check_sequential_consistency` asserts exactly that: the
//! status answered, together with the crash's decision, equals the history of one sequential
//! order (status first, or crash first), replayed on the reference.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryStatus};
use backend_recovery_loom_tests::{
    History, Key, Op, Outcome, Scenario, WINDOW, fixed_state, model_policy, multi_retry_policy,
};

const KEY: Key = "indexer";

/// Property of this model, beyond sequential consistency: a gate check that sees the backend
/// unavailable is consistent with a refused crash, so it can never report `Unavailable` while
/// every crash so far (setup included) was granted a retry.
fn unavailable_only_after_a_refusal(history: &History) {
    let refused = history
        .crashes_of(KEY)
        .iter()
        .any(|(_, decision)| !decision.is_retry());
    for (_, outcome) in history.threads.iter().flatten() {
        if let Outcome::Reported(status) = outcome {
            let unavailable = matches!(status, BackendRecoveryStatus::Unavailable { .. });
            assert!(
                !unavailable || refused,
                "status reported Unavailable with no refused crash: {history:#?}"
            );
        }
    }
}

// The gate check of a key whose first crash is being recorded: `Healthy` (before) or
// `BackingOff` from its retry (after).
#[test]
fn status_races_the_first_crash() {
    let at = Instant::now();
    Scenario::new(model_policy())
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Status(KEY, at)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "status_during_crash: status vs first crash",
            fixed_state,
            unavailable_only_after_a_refusal,
        );
}

// The gate check during the crash that spends the window's budget: `Recovering`
// (before) or `Unavailable` with the rest of the window (after), both at the check's instant.
#[test]
fn status_races_the_refused_crash() {
    let base = Instant::now();
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, base + Duration::from_millis(400))])
        .thread([Op::Status(KEY, base + Duration::from_millis(200))])
        .after([Op::Status(KEY, base + Duration::from_millis(400))])
        .check_sequential_consistency(
            "status_during_crash: status vs refused crash",
            fixed_state,
            |history| {
                unavailable_only_after_a_refusal(history);
                assert!(
                    !history.final_status(0).is_available(),
                    "the refused crash must leave the key unavailable: {history:#?}"
                );
            },
        );
}

// The gate check when the window has just closed and a crash opens the next one:
// `Healthy` (before) or `BackingOff` from the new window's retry (after), never `Unavailable`.
#[test]
fn status_races_the_crash_that_reopens_the_window() {
    let base = Instant::now();
    let end = base + WINDOW;
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, end)])
        .thread([Op::Status(KEY, end)])
        .after([Op::Status(KEY, end)])
        .check_sequential_consistency(
            "status_during_crash: status vs crash reopening the window",
            fixed_state,
            |history| {
                unavailable_only_after_a_refusal(history);
                let seen = match &history.threads[1][0].1 {
                    Outcome::Reported(status) => status,
                    other => panic!("not a status: {other:?}"),
                };
                assert!(
                    matches!(
                        seen,
                        BackendRecoveryStatus::Healthy
                            | BackendRecoveryStatus::BackingOff {
                                crashes_in_window: 1,
                                ..
                            }
                    ),
                    "{history:#?}"
                );
            },
        );
}

/// Two crashes of a new key and a gate check, with `policy`.
fn status_and_two_crashes(policy: BackendRecoveryPolicy) -> Scenario {
    let at = Instant::now();
    Scenario::new(policy)
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Status(KEY, at)])
        .after([Op::Status(KEY, at)])
}

// Three threads: two crashes and a gate check. The check may see zero, one or two crashes,
// but only as some sequential order would report them.
#[test]
fn status_races_two_crashes() {
    status_and_two_crashes(model_policy()).check_sequential_consistency(
        "status_during_crash: status vs two crashes, 3 threads",
        fixed_state,
        unavailable_only_after_a_refusal,
    );
}

// Three threads and two retries per window: both crashes are retries, so the check sees
// `Healthy`, `BackingOff` with one crash or with two, never `Unavailable`.
#[test]
fn status_races_two_crashes_with_two_retries() {
    status_and_two_crashes(multi_retry_policy()).check_sequential_consistency(
        "status_during_crash: status vs two crashes, 3 threads, two retries",
        fixed_state,
        |history| {
            unavailable_only_after_a_refusal(history);
            assert!(
                history.thread_decisions().iter().all(|d| d.is_retry()),
                "{history:#?}"
            );
            assert!(
                matches!(
                    history.final_status(0),
                    BackendRecoveryStatus::BackingOff {
                        crashes_in_window: 2,
                        ..
                    }
                ),
                "{history:#?}"
            );
        },
    );
}
