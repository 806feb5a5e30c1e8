//! Two threads crash one key with instants on both sides of a window boundary.
//!
//! The thread at the boundary opens a new window if it runs last (the old window has closed)
//! and is refused if it runs after a crash that opened a later window (time runs backwards for
//! it: zero elapsed). The expected decisions are those of the sequential orders, enumerated and
//! replayed on the reference by `Scenario::check_sequential_consistency`, never guessed here.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery_loom_tests::{History, Key, Op, Scenario, WINDOW, fixed_state, model_policy};

const KEY: Key = "indexer";

/// Property of this model: at most one `Retry` per window. The spec opens a window at each
/// `Retry`, and the next `Retry` needs that window closed, so any two `Retry` decisions of one
/// key (with no success between them) are at least a whole window apart in time.
fn at_most_one_retry_per_window(history: &History) {
    let retries: Vec<Instant> = history
        .crashes_of(KEY)
        .into_iter()
        .filter(|(_, decision)| decision.is_retry())
        .map(|(at, _)| at)
        .collect();
    for (i, first) in retries.iter().enumerate() {
        for second in &retries[i + 1..] {
            let apart = first.max(second).duration_since(*first.min(second));
            assert!(
                apart >= WINDOW,
                "two Retry decisions {apart:?} apart, inside one {WINDOW:?} window: {history:#?}"
            );
        }
    }
}

// A window is open (crash at `base`); one thread crashes 1 ns before it closes, the
// other exactly when it closes.
#[test]
fn crashes_straddle_the_end_of_an_open_window() {
    let base = Instant::now();
    let end = base + WINDOW;
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, end - Duration::from_nanos(1))])
        .thread([Op::Crash(KEY, end)])
        .after([Op::Status(KEY, end)])
        .check_sequential_consistency(
            "window_boundary: crashes straddle the end of an open window",
            fixed_state,
            at_most_one_retry_per_window,
        );
}

// No entry yet; one thread crashes at `base`, the other a whole window later. Both may retry
// (two windows), or the later one opens the window and the earlier one is refused.
#[test]
fn first_crashes_a_whole_window_apart() {
    let base = Instant::now();
    let end = base + WINDOW;
    Scenario::new(model_policy())
        .thread([Op::Crash(KEY, base)])
        .thread([Op::Crash(KEY, end)])
        .after([Op::Status(KEY, end)])
        .check_sequential_consistency(
            "window_boundary: first crashes a whole window apart",
            fixed_state,
            at_most_one_retry_per_window,
        );
}
