//! The deaths of two successive incarnations of one key, `n` and `n + 1`, reported at once.
//!
//! Both reports take their cell's report lock, so they run in one order or the other:
//! - `n` first: both are counted, as the spec's two crashes in one window (a retry, then a
//!   refusal for the rest of the window);
//! - `n + 1` first: it is counted as the window's retry, and `n`'s report is then stale (not
//!   newer than the last incarnation counted), so it is a duplicate of `n + 1`'s crash and
//!   replays its retry.
//!
//! `Scenario::check_sequential_consistency` computes both from the reference and requires each interleaving to give
//! one of them exactly: answers, final status, `len` and counters.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryDecision;
use backend_recovery_loom_tests::{
    History, Key, Op, Outcome, Scenario, WINDOW, fixed_state, model_policy,
};

const KEY: Key = "indexer";

/// The older of the two incarnations.
const N: u64 = 41;

/// Property of this model: the counters add up and the window grants one retry.
/// - every report is counted once, as a crash or as a duplicate: `crash_reports` is the number
///   of reports, setup included;
/// - the threads' reports are granted exactly one retry between them;
/// - the report of `n + 1` is always counted (nothing newer is reported), and is the retry
///   exactly when nothing was refused, that is when it was counted before any report of `n`;
/// - a report of `n` is answered `Retry { attempt: 1 }` (the window's first crash, or a
///   duplicate of it), or, when it comes after `n + 1` was counted and refused, is a duplicate
///   of that refusal and gets the same answer (no time passes between them: `n`'s instant is
///   not later than `n + 1`'s).
fn counters_add_up(history: &History) {
    let setup_retries = history
        .setup_decisions()
        .iter()
        .filter(|d| d.is_retry())
        .count() as u64;
    let reports = history.setup.len() + history.threads.iter().flatten().count();
    let metrics = &history.metrics;
    assert_eq!(metrics.crash_reports() as usize, reports, "{history:#?}");
    assert_eq!(metrics.retries_granted, 1 + setup_retries, "{history:#?}");
    assert_eq!(metrics.capacity_refusals, 0, "{history:#?}");
    let newer = history
        .threads
        .iter()
        .flatten()
        .find_map(|(op, outcome)| match (op, outcome) {
            (Op::CrashOf(_, incarnation, _), Outcome::Decided(decision)) if *incarnation > N => {
                Some(decision)
            }
            _ => None,
        })
        .expect("a thread reports n + 1");
    assert_eq!(
        newer.is_retry(),
        metrics.refusals == 0,
        "n + 1 retries exactly when it was counted before n: {history:#?}"
    );
    for (op, outcome) in history.threads.iter().flatten() {
        let (Op::CrashOf(_, incarnation, _), Outcome::Decided(decision)) = (op, outcome) else {
            panic!("successive_incarnations only reports crashes: {op:?}");
        };
        if *incarnation == N {
            assert!(
                matches!(decision, BackendRecoveryDecision::Retry { attempt: 1, .. })
                    || (!newer.is_retry() && decision == newer),
                "a report of n must be the retry, replay it, or replay n + 1's refusal: \
                 {history:#?}"
            );
        }
    }
}

// A key with no entry; one thread reports incarnation n, the other n + 1, 10 ms later.
#[test]
fn successive_incarnations_of_a_new_key() {
    let base = Instant::now();
    let later = base + Duration::from_millis(10);
    Scenario::new(model_policy())
        .thread([Op::CrashOf(KEY, N, base)])
        .thread([Op::CrashOf(KEY, N + 1, later)])
        .after([Op::Status(KEY, later)])
        .check_sequential_consistency(
            "successive_incarnations: new key",
            fixed_state,
            counters_add_up,
        );
}

// The key's entry, counted for incarnation n - 1, has a window that closes exactly when n and
// n + 1 are reported: whichever is counted first reopens it.
#[test]
fn successive_incarnations_after_the_window_closed() {
    let base = Instant::now();
    let at = base + WINDOW;
    Scenario::new(model_policy())
        .setup([Op::CrashOf(KEY, N - 1, base)])
        .thread([Op::CrashOf(KEY, N, at)])
        .thread([Op::CrashOf(KEY, N + 1, at)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "successive_incarnations: closed window",
            fixed_state,
            counters_add_up,
        );
}

// Three threads: two workers report n's death while a third reports n + 1's.
// Counted: n then n + 1 (one duplicate of n), or n + 1 alone (both reports of n are stale).
#[test]
fn two_reports_of_n_and_one_of_n_plus_one() {
    let base = Instant::now();
    let later = base + Duration::from_millis(10);
    Scenario::new(model_policy())
        .thread([Op::CrashOf(KEY, N, base)])
        .thread([Op::CrashOf(KEY, N, base)])
        .thread([Op::CrashOf(KEY, N + 1, later)])
        .after([Op::Status(KEY, later)])
        .check_sequential_consistency(
            "successive_incarnations: two reports of n, one of n + 1, 3 threads",
            fixed_state,
            |history| {
                counters_add_up(history);
                // n + 1 first: both reports of n are stale duplicates of its retry. n first: it
                // is the retry, n + 1 is refused, and the other report of n is a duplicate
                // (of n's retry or of n + 1's refusal, whichever was counted last).
                let duplicates = if history.metrics.refusals == 0 { 2 } else { 1 };
                assert_eq!(
                    history.metrics.duplicates_coalesced, duplicates,
                    "{history:#?}"
                );
            },
        );
}
