//! The first crash of one key at one instant, and the teeth: a deliberately broken cell update
//! that the first-crash model must catch.
//!
//! "First crash" covers both ways a key can have no open window: no entry at all (the crash
//! inserts under the shard's write guard) and an entry whose window has just closed (the crash
//! updates the existing cell under the read guard, by compare-and-swap). Only the second path
//! lets two threads update one cell at once; the first is serialized by the write guard.
#![cfg(loom)]

use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryRefusalReason};
use backend_recovery_loom_tests::{
    BACKOFF, History, Key, Op, Scenario, WINDOW, broken_state, failure_of, fixed_state,
    model_policy,
};

const KEY: Key = "indexer";

/// `threads` threads each record one crash of [`KEY`] at the same instant. With `expired`, the
/// key already has an entry whose window closes exactly at that instant.
fn first_crash(threads: usize, expired: bool) -> Scenario {
    let base = Instant::now();
    let at = base + WINDOW;
    let mut scenario = Scenario::new(model_policy());
    if expired {
        scenario = scenario.setup([Op::Crash(KEY, base)]);
    }
    for _ in 0..threads {
        scenario = scenario.thread([Op::Crash(KEY, at)]);
    }
    scenario.after([Op::Status(KEY, at)])
}

/// Property of the first-crash model: exactly one `Retry { attempt: 1 }` with the backoff;
/// every other crash is refused with the whole window as its retry-after.
fn exactly_one_retry(history: &History) {
    let decisions = history.thread_decisions();
    let retries = decisions.iter().filter(|d| d.is_retry()).count();
    assert!(
        retries <= 1,
        "{retries} Retry decisions in one window, at most one is allowed\n{decisions:#?}"
    );
    assert_eq!(
        retries, 1,
        "no crash got the window's retry: {decisions:#?}"
    );
    for decision in decisions {
        let expected = if decision.is_retry() {
            BackendRecoveryDecision::Retry {
                retry_after: BACKOFF,
                attempt: 1,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: WINDOW,
            }
        };
        assert_eq!(decision, &expected);
    }
}

// Two threads, no entry yet: exactly one Retry, the other refused for the window.
#[test]
fn two_threads_first_crash_of_a_new_key() {
    first_crash(2, false).check_sequential_consistency(
        "first_crash: 2 threads, new key",
        fixed_state,
        exactly_one_retry,
    );
}

// Two threads, entry whose window just closed: exactly one Retry, the other refused.
#[test]
fn two_threads_first_crash_after_the_window_closed() {
    first_crash(2, true).check_sequential_consistency(
        "first_crash: 2 threads, closed window",
        fixed_state,
        exactly_one_retry,
    );
}

// Three threads, no entry yet: exactly one Retry, two refused for the window.
#[test]
fn three_threads_first_crash_of_a_new_key() {
    first_crash(3, false).check_sequential_consistency(
        "first_crash: 3 threads, new key",
        fixed_state,
        exactly_one_retry,
    );
}

// Three threads, entry whose window just closed: exactly one Retry, two refused.
#[test]
fn three_threads_first_crash_after_the_window_closed() {
    first_crash(3, true).check_sequential_consistency(
        "first_crash: 3 threads, closed window",
        fixed_state,
        exactly_one_retry,
    );
}

// Teeth: with the cell updated by load-then-store instead of compare-and-swap, loom must find
// an interleaving of the first-crash model in which both threads are granted the retry, and the
// failure must come from the at-most-one-Retry assertion, not from anything else.
#[test]
fn teeth_broken_cell_fails_first_crash() {
    println!("teeth: first_crash with a load-then-store cell; loom must find two Retry decisions");
    let message = failure_of(|| {
        first_crash(2, true).check_sequential_consistency(
            "first_crash: teeth, broken cell",
            broken_state,
            exactly_one_retry,
        );
    });
    assert!(
        message.starts_with("2 Retry decisions in one window"),
        "the broken cell failed for another reason: {message}"
    );
    println!(
        "teeth: the broken cell fails first_crash as it must: {}",
        message.lines().next().unwrap_or_default()
    );
}

// Teeth: the same model and bound with the real compare-and-swap cell passes.
#[test]
fn teeth_real_cell_passes_first_crash() {
    first_crash(2, true).check_sequential_consistency(
        "first_crash: teeth, real cell",
        fixed_state,
        exactly_one_retry,
    );
    println!("teeth: the real cell passes first_crash");
}
