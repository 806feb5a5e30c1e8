//! A policy granting two retries per window, its delay growing exponentially, with threads
//! crashing one key at once.
//!
//! With several retries per window the crash count is more than a flag: each crash's
//! compare-and-swap must see the count the previous one left, or two threads get the same
//! attempt (or a window grants a third retry). The main model puts three crashes of one key at
//! one instant on a key whose entry's window closes at exactly that instant, so every crash
//! finds the cell under the shard's read guard and the three updates race by compare-and-swap on
//! one word. Exactly two must be granted a retry, attempts 1 and 2 with the schedule's delays
//! (75 ms, then 150 ms), and the third refused for the whole new window; `Scenario::check_sequential_consistency` also
//! requires each interleaving's answers, final status, `len` and counters to be those of one
//! sequential order of the shared reference model.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
use backend_recovery_loom_tests::{
    BACKOFF, History, Key, Op, RETRIES, Scenario, WINDOW, broken_state, failure_of, fixed_state,
    multi_retry_policy,
};

const KEY: Key = "indexer";

/// The schedule of [`multi_retry_policy`]: the backoff doubles with each attempt.
fn delay(attempt: u32) -> Duration {
    BACKOFF * 2u32.pow(attempt - 1)
}

/// Each thread crashes [`KEY`] once at `at`, after `setup`; then a gate check at `at`.
fn crashes_at(at: Instant, threads: usize, setup: Vec<Op>) -> Scenario {
    let mut scenario = Scenario::new(multi_retry_policy()).setup(setup);
    for _ in 0..threads {
        scenario = scenario.thread([Op::Crash(KEY, at)]);
    }
    scenario.after([Op::Status(KEY, at)])
}

/// `threads` threads crash [`KEY`] at one instant. With `expired`, the key already has an entry
/// whose window closes exactly at that instant (so every crash updates the existing cell under
/// the read guard); else it has none (the first crash inserts under the write guard).
fn first_crashes(threads: usize, expired: bool) -> Scenario {
    let base = Instant::now();
    let setup = if expired {
        vec![Op::Crash(KEY, base)]
    } else {
        Vec::new()
    };
    crashes_at(base + WINDOW, threads, setup)
}

/// Property of this model: of the threads' crashes, the window grants exactly its remaining
/// retries, the next attempts after the setup's (`first_attempt`, ...), each once and with its
/// delay from the schedule; every other crash is refused with the rest of the window,
/// `window_left`. The final gate check agrees, and the counters add up.
fn retries_granted_once_each(history: &History, first_attempt: u32, window_left: Duration) {
    let decisions = history.thread_decisions();
    let mut attempts: Vec<u32> = decisions
        .iter()
        .filter_map(|decision| match decision {
            BackendRecoveryDecision::Retry { attempt, .. } => Some(*attempt),
            BackendRecoveryDecision::Refuse { .. } => None,
        })
        .collect();
    attempts.sort_unstable();
    let expected: Vec<u32> = (first_attempt..=RETRIES).collect();
    assert_eq!(
        attempts, expected,
        "attempts {attempts:?} granted in one window, {expected:?} expected\n{history:#?}"
    );
    for decision in &decisions {
        let expected = match decision {
            BackendRecoveryDecision::Retry { attempt, .. } => BackendRecoveryDecision::Retry {
                retry_after: delay(*attempt),
                attempt: *attempt,
            },
            BackendRecoveryDecision::Refuse { .. } => BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: window_left,
            },
        };
        assert_eq!(*decision, &expected, "{history:#?}");
    }
    assert_eq!(
        history.final_status(0),
        &BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: window_left,
        },
        "{history:#?}"
    );
    let granted = history.setup_decisions().len() + attempts.len();
    let refused = decisions.len() - attempts.len();
    let metrics = &history.metrics;
    assert_eq!(
        (metrics.retries_granted, metrics.refusals),
        (granted as u64, refused as u64),
        "{history:#?}"
    );
    assert_eq!(history.len, 1, "{history:#?}");
}

/// This model's property for first crashes: attempts 1 and 2, one refusal for the whole window.
fn two_retries_then_a_refusal(history: &History) {
    retries_granted_once_each(history, 1, WINDOW);
}

// The main model: three threads, the key's window closed at their instant, so all
// three compare-and-swap one cell under read guards: attempts 1 and 2, then a refusal.
#[test]
fn three_threads_two_retries_after_the_window_closed() {
    first_crashes(3, true).check_sequential_consistency(
        "multi_retry: two retries, 3 threads, closed window",
        fixed_state,
        two_retries_then_a_refusal,
    );
}

// The same with no entry yet: the first crash inserts under the write guard and the others
// find its cell (or wait for the guard and update the inserted one).
#[test]
fn three_threads_two_retries_of_a_new_key() {
    first_crashes(3, false).check_sequential_consistency(
        "multi_retry: two retries, 3 threads, new key",
        fixed_state,
        two_retries_then_a_refusal,
    );
}

// The window's first retry is spent; two threads crash 400 ms into it and race for its last
// one: attempt 2 (150 ms) for one, the rest of the window (600 ms) for the other.
#[test]
fn two_threads_race_for_the_last_retry() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    crashes_at(at, 2, vec![Op::Crash(KEY, base)]).check_sequential_consistency(
        "multi_retry: the last of two retries, 2 threads, open window",
        fixed_state,
        |history| retries_granted_once_each(history, 2, WINDOW - Duration::from_millis(400)),
    );
}

// Teeth: with cells updated by load-then-store, loom must find two threads granted the same
// attempt (two attempt 1s, or two attempt 2s), and the failure must come from the attempts
// assertion.
#[test]
fn teeth_broken_cell_fails_multi_retry() {
    let message = failure_of(|| {
        first_crashes(3, true).check_sequential_consistency(
            "multi_retry: teeth, broken cell",
            broken_state,
            two_retries_then_a_refusal,
        );
    });
    assert!(
        message.starts_with("assertion `left == right` failed: attempts ["),
        "the broken cell failed for another reason: {message}"
    );
    println!(
        "teeth: the broken cell fails multi_retry as it must: {}",
        message.lines().next().unwrap_or_default()
    );
}
