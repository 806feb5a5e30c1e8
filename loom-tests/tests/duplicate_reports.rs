//! Workers that saw the same death report the same incarnation of one key at once.
//!
//! `record_crash_of` compares the incarnation with the last one counted and counts the crash
//! in one step (under the shard's write guard for a new key, under the cell's report lock for
//! a key reported before), so of concurrent reports of one incarnation
//! exactly one is counted and every other one replays its decision. "First report" covers a
//! key with no entry (the report inserts it) and a key whose entry's window has just closed
//! (the report reopens it). The answers, final status, `len` and counters must be those of a
//! sequential order, replayed on the reference by `Scenario::check_sequential_consistency`.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryDecision;
use backend_recovery_loom_tests::{
    BACKOFF, History, Key, Op, Scenario, WINDOW, fixed_state, model_policy,
};

const KEY: Key = "indexer";

/// The incarnation whose death the threads report.
const DEAD: u64 = 7;

/// Property of this model: the reports of one incarnation count once. Exactly one of them is
/// counted, as the window's retry (one more `retries_granted` than the setup's, nothing
/// refused); every other one is a duplicate (`duplicates_coalesced == reports - 1`); and every
/// thread is told the same kind of decision with the same attempt: `Retry { attempt: 1 }`, its
/// retry-after the backoff less the time since the counted report.
fn counted_once(history: &History) {
    let decisions = history.thread_decisions();
    let setup_retries = history.setup_decisions().len() as u64;
    let metrics = &history.metrics;
    assert_eq!(
        (
            metrics.retries_granted,
            metrics.refusals,
            metrics.capacity_refusals
        ),
        (setup_retries + 1, 0, 0),
        "the reports of one death must count as one crash: {history:#?}"
    );
    assert_eq!(
        metrics.duplicates_coalesced as usize,
        decisions.len() - 1,
        "{history:#?}"
    );
    for decision in decisions {
        assert!(
            matches!(
                decision,
                BackendRecoveryDecision::Retry { attempt: 1, retry_after } if *retry_after <= BACKOFF
            ),
            "a report of the dead incarnation was not told the crash's retry: {history:#?}"
        );
    }
    assert_eq!(history.len, 1, "{history:#?}");
}

/// One thread per instant in `reports`, each reporting [`DEAD`]'s death. With `closed`, the key
/// already has an entry, counted for the previous incarnation, whose window closes exactly at
/// the first report.
fn same_incarnation(reports: &[Duration], closed: bool) -> Scenario {
    let base = Instant::now();
    let at = base + WINDOW;
    let mut scenario = Scenario::new(model_policy());
    if closed {
        scenario = scenario.setup([Op::CrashOf(KEY, DEAD - 1, base)]);
    }
    for &offset in reports {
        scenario = scenario.thread([Op::CrashOf(KEY, DEAD, at + offset)]);
    }
    scenario.after([Op::Status(KEY, at)])
}

// Two reports of one incarnation of a key with no entry (the first inserts it under the
// write guard). The second report comes 10 ms later, so a duplicate's retry-after shows
// whether it was measured from the counted report: 65 ms if the earlier report was counted,
// the whole 75 ms if the later one was (an earlier instant counts as no time elapsed).
#[test]
fn two_reports_of_one_incarnation_of_a_new_key() {
    same_incarnation(&[Duration::ZERO, Duration::from_millis(10)], false)
        .check_sequential_consistency(
            "duplicate_reports: two reports of one incarnation, new key",
            fixed_state,
            counted_once,
        );
}

// Two reports of one incarnation of a key whose previous incarnation's window has just closed:
// the counted report reopens the window with a retry, the other replays it.
#[test]
fn two_reports_of_one_incarnation_after_the_window_closed() {
    same_incarnation(&[Duration::ZERO, Duration::ZERO], true).check_sequential_consistency(
        "duplicate_reports: two reports of one incarnation, closed window",
        fixed_state,
        counted_once,
    );
}

// Three threads: three workers report the death of one incarnation of a new key.
#[test]
fn three_reports_of_one_incarnation_of_a_new_key() {
    same_incarnation(
        &[Duration::ZERO, Duration::from_millis(10), Duration::ZERO],
        false,
    )
    .check_sequential_consistency(
        "duplicate_reports: three reports of one incarnation, new key, 3 threads",
        fixed_state,
        counted_once,
    );
}
