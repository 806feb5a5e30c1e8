//! A crash through a thread's read cache racing `record_crash_of` on the same key.
//!
//! `record_crash_of` counts a report under its cell's report lock, but that lock keeps out only
//! other reports by incarnation: a thread that has the key in its read cache crashes it
//! (`record_crash`) through its handle on the cell's word, with no lock at all. So the report
//! must count its crash by compare-and-swap too (`Shared::report_crash`), or one of the two
//! crashes is lost. With two retries per window and one already granted, exactly one of the
//! two racing crashes may be granted the second retry; a lost update grants it to both, which
//! no sequential order does, so `Scenario::check_sequential_consistency` fails it.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryDecision;
use backend_recovery_loom_tests::{History, Key, Op, Scenario, fixed_state, multi_retry_policy};

const KEY: Key = "indexer";

/// Of the two racing crashes, exactly one is granted the window's second retry.
fn one_second_retry(history: &History) {
    let seconds = history
        .thread_decisions()
        .into_iter()
        .filter(|decision| matches!(decision, BackendRecoveryDecision::Retry { attempt: 2, .. }))
        .count();
    assert_eq!(seconds, 1, "{history:#?}");
}

// The setup's crash grants the first retry. The second thread (spawned, so its cache starts
// empty; the first runs on loom's main thread, as the setup does) checks the key twice, which
// under loom caches it (the second lookup gives the cell a shared word), then crashes it
// through the cache, while the first thread reports a crash of incarnation 7.
#[test]
fn a_cached_crash_and_a_report_of_one_key_both_count() {
    let base = Instant::now();
    let at = base + Duration::from_millis(10);
    Scenario::new(multi_retry_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::CrashOf(KEY, 7, at)])
        .thread([Op::Status(KEY, at), Op::Status(KEY, at), Op::Crash(KEY, at)])
        .after([Op::Status(KEY, at)])
        .check_sequential_consistency(
            "cached_crash_races_report: a cached crash racing a report",
            fixed_state,
            one_second_retry,
        );
}
