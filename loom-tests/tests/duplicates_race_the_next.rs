//! Two duplicate reports of a counted incarnation, answered from the cell's last report with
//! loads alone, racing the report of the next incarnation, which counts under the cell's
//! report lock.
//!
//! Every order is a sequential one: each duplicate replays the decision counted for its
//! incarnation if it runs first, or is a stale report replaying the next incarnation's decision
//! if it runs after that was counted; the next incarnation's crash is counted exactly once.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery_loom_tests::{History, Key, Op, Scenario, fixed_state, model_policy};

const KEY: Key = "indexer";

/// Exactly the setup's report and the next incarnation's count: two crashes in all.
fn next_counted_once(history: &History) {
    assert_eq!(
        history.metrics.duplicates_coalesced, 2,
        "the two reports of the counted incarnation are duplicates: {history:#?}"
    );
    assert_eq!(
        history.metrics.retries_granted + history.metrics.refusals,
        2,
        "two deaths counted: {history:#?}"
    );
}

#[test]
fn duplicates_race_the_report_of_the_next_incarnation() {
    let base = Instant::now();
    let at = base + Duration::from_millis(10);
    Scenario::new(model_policy())
        .setup([Op::CrashOf(KEY, 1, base)])
        .thread([Op::CrashOf(KEY, 1, at)])
        .thread([Op::CrashOf(KEY, 1, at)])
        .thread([Op::CrashOf(KEY, 2, at)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "duplicates_race_the_next: duplicates racing the next incarnation",
            fixed_state,
            next_counted_once,
        );
}
