//! Reports by incarnation of a key reported before, counted without the shard's write guard:
//! under its read guard, or through a thread's read cache with no guard at all
//! (`Shared::report_crash` in `src/cell.rs`).
//!
//! - Two reports of one incarnation, each through its thread's cache: exactly one counts, the
//!   other replays its decision. The check of the last incarnation counted and the count must
//!   be one step; the teeth variant, with the cell's report lock left out, counts both.
//! - A report through a cache racing a success of the key: the success keeps the entry as a
//!   tombstone if a report was counted, and retires it otherwise, under the report's lock. A
//!   report counted in between would be forgotten with the entry, and a late duplicate of the
//!   same death would count again. The teeth variant, a success that reads the report without
//!   the lock, must fail.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryState;
use backend_recovery_loom_tests::{
    FixedHasher, History, Key, Op, Scenario, failure_of, fixed_state, multi_retry_policy,
};

const KEY: Key = "indexer";

/// The reports of one death: every call but the first reports incarnation 2.
fn racing_reports() -> Scenario {
    let base = Instant::now();
    let at = base + Duration::from_millis(10);
    // Each thread checks the key twice, which under loom caches it, then reports.
    let thread = [
        Op::Status(KEY, at),
        Op::Status(KEY, at),
        Op::CrashOf(KEY, 2, at),
    ];
    Scenario::new(multi_retry_policy())
        .setup([Op::CrashOf(KEY, 1, base)])
        .thread(thread)
        .thread(thread)
        .after([Op::Status(KEY, at)])
}

/// Of the two reports of incarnation 2, one is granted the window's second retry, and the
/// other is told the same.
fn one_count(history: &History) {
    let seconds = history.thread_decisions();
    assert_eq!(seconds.len(), 2, "{history:#?}");
    assert_eq!(
        seconds[0], seconds[1],
        "a duplicate replays the decision: {history:#?}"
    );
    assert_eq!(history.metrics.duplicates_coalesced, 1, "{history:#?}");
}

#[test]
fn two_cached_reports_of_one_death_count_once() {
    racing_reports().check_sequential_consistency(
        "reports_without_a_guard: two cached reports of one death",
        fixed_state,
        one_count,
    );
}

#[test]
fn teeth_reports_without_their_lock_fail() {
    let broken = |policy| fixed_state(policy).with_broken_report_lock();
    let message = failure_of(|| {
        racing_reports().check_sequential_consistency(
            "reports_without_a_guard: teeth, reports without their lock",
            broken,
            one_count,
        );
    });
    assert!(
        message.contains("a duplicate replays the decision"),
        "reports without their lock failed for another reason: {message}"
    );
    println!(
        "teeth: reports without their lock fail reports_without_a_guard as they must: {}",
        message.lines().next().unwrap_or_default()
    );
}

/// A report of incarnation 7 through the main thread's cache, racing a success; after both, a
/// late duplicate of incarnation 7 and a gate check. The key's setup crash is not reported by
/// incarnation, so that the cell remembers no report and a success would retire it. (The
/// reporting thread is loom's main thread: with the success there instead, the race needs
/// three preemptions.)
fn report_and_success() -> Scenario {
    let base = Instant::now();
    let at = base + Duration::from_millis(10);
    let late = base + Duration::from_millis(20);
    Scenario::new(multi_retry_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([
            Op::Status(KEY, at),
            Op::Status(KEY, at),
            Op::CrashOf(KEY, 7, at),
        ])
        .thread([Op::Success(KEY)])
        .after([Op::CrashOf(KEY, 7, late), Op::Status(KEY, late)])
}

/// Whatever the order, the late report of incarnation 7 is a duplicate: counted by the racing
/// report, and remembered by the success's tombstone if the success came after it.
fn late_report_is_a_duplicate(history: &History) {
    assert_eq!(
        history.metrics.duplicates_coalesced, 1,
        "the late report of incarnation 7 counted again: {history:#?}"
    );
}

#[test]
fn a_cached_report_racing_a_success_is_never_forgotten() {
    report_and_success().check_sequential_consistency(
        "reports_without_a_guard: a cached report racing a success",
        fixed_state,
        late_report_is_a_duplicate,
    );
}

#[test]
fn teeth_a_success_without_the_report_lock_fails() {
    let broken = |policy| -> BackendRecoveryState<Key, FixedHasher> {
        fixed_state(policy).with_broken_success_lock()
    };
    let message = failure_of(|| {
        report_and_success().check_sequential_consistency(
            "reports_without_a_guard: teeth, a success without the report lock",
            broken,
            late_report_is_a_duplicate,
        );
    });
    assert!(
        message.contains("the late report of incarnation 7 counted again"),
        "a success without the report lock failed for another reason: {message}"
    );
    println!(
        "teeth: a success without the report lock fails reports_without_a_guard as it must: {}",
        message.lines().next().unwrap_or_default()
    );
}
