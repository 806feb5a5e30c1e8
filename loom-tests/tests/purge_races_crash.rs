//! `purge_expired` racing a crash.
//!
//! The purge takes each shard's write guard in turn and removes the entries whose window has
//! closed; a crash updates its key's cell under the read guard, or inserts it under the write
//! guard if a purge has just removed it. An expired entry decides exactly like a missing one, so
//! the crash must get the decision the reference gives whether the purge ran before or after
//! it, and nothing may be lost: no crash counted into an entry the purge then drops, no live
//! entry purged, `len()` and every status those of some sequential order.
//!
//! (The automatic purge that inserts run shares `purge` with these models; the last of them
//! races two purges, as a helping thread's purge races the lead's. What triggers it, the lead
//! and the help, is the automatic-purge model, `automatic_purge.rs`.)
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
use backend_recovery_loom_tests::{
    History, Key, Op, Scenario, WINDOW, first_retry, fixed_state, model_policy, one_shard_state,
};

const KEY: Key = "indexer";
const OTHER: Key = "compiler";

/// The decision thread `thread`'s first call gets in every sequential order of `scenario`:
/// they must all agree, which is the claim that purging changes no decision.
fn decision_in_every_order(scenario: &Scenario, thread: usize) -> BackendRecoveryDecision {
    let histories = scenario.sequential_histories();
    let decision = histories[0].decision(thread, 0).clone();
    for history in &histories {
        assert_eq!(
            history.decision(thread, 0),
            &decision,
            "the reference decides differently with the purge before and after: {histories:#?}"
        );
    }
    decision
}

/// Property of this model: the crash (thread 1) gets `expected`, the decision of every sequential
/// order; the purge's count shows in the counters; and the final `len` is the number of keys
/// whose final status shows a crash (each entry left is a live one, none lost).
fn purge_changes_no_decision(history: &History, expected: &BackendRecoveryDecision) {
    assert_eq!(history.decision(1, 0), expected, "{history:#?}");
    assert_eq!(
        history.metrics.entries_purged as usize,
        history.purged(0, 0),
        "{history:#?}"
    );
    let live = (0..history.after.len())
        .filter(|&i| history.final_status(i) != &BackendRecoveryStatus::Healthy)
        .count();
    assert_eq!(history.len, live, "{history:#?}");
}

/// Runs `scenario`, whose thread 0 purges and thread 1 crashes, under loom with this model's
/// property.
fn check_purge_vs_crash<S, M>(scenario: Scenario, name: &str, make_state: M)
where
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
    M: Fn(
            backend_recovery::BackendRecoveryPolicy,
        ) -> backend_recovery::BackendRecoveryState<Key, S>
        + Send
        + Sync
        + 'static,
{
    let expected = decision_in_every_order(&scenario, 1);
    scenario.check_sequential_consistency(name, make_state, move |history| {
        purge_changes_no_decision(history, &expected);
    });
}

// The key's window closes at `end`; at `end` one thread purges while the other
// crashes the key. Purge first: the entry goes and the crash inserts it again. Crash first: it
// reopens the window and the purge keeps the entry. Either way: a retry, and one live entry.
#[test]
fn purge_races_a_crash_of_the_expired_key() {
    let base = Instant::now();
    let end = base + WINDOW;
    let scenario = Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Purge(end)])
        .thread([Op::Crash(KEY, end)])
        .after([Op::Status(KEY, end)]);
    assert_eq!(decision_in_every_order(&scenario, 1), first_retry());
    check_purge_vs_crash(
        scenario,
        "purge_races_crash: purge vs crash of the expired key",
        fixed_state,
    );
}

// The same race for a report by incarnation (the purge's write guard against the report's
// read guard and report lock), the next incarnation
// dying as the previous one's window closes.
#[test]
fn purge_races_a_report_of_the_expired_key() {
    let base = Instant::now();
    let end = base + WINDOW;
    let scenario = Scenario::new(model_policy())
        .setup([Op::CrashOf(KEY, 1, base)])
        .thread([Op::Purge(end)])
        .thread([Op::CrashOf(KEY, 2, end)])
        .after([Op::Status(KEY, end)]);
    assert_eq!(decision_in_every_order(&scenario, 1), first_retry());
    check_purge_vs_crash(
        scenario,
        "purge_races_crash: purge vs report of the expired key",
        fixed_state,
    );
}

// Another key of the same shard (constant hasher) is inserted while the purge removes the
// expired one: the purge drops exactly the expired entry, never the new one.
#[test]
fn purge_races_an_insert_in_the_same_shard() {
    let base = Instant::now();
    let end = base + WINDOW;
    let scenario = Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Purge(end)])
        .thread([Op::Crash(OTHER, end)])
        .after([Op::Status(KEY, end), Op::Status(OTHER, end)]);
    assert_eq!(decision_in_every_order(&scenario, 1), first_retry());
    check_purge_vs_crash(
        scenario,
        "purge_races_crash: purge vs insert in the same shard",
        one_shard_state,
    );
}

// A live key of the same shard is crashed again (compare-and-swap under the read guard) while
// the purge removes the expired one: refused for the rest of its window, and its two crashes
// survive the purge.
#[test]
fn purge_races_an_update_in_the_same_shard() {
    let base = Instant::now();
    let end = base + WINDOW;
    let scenario = Scenario::new(model_policy())
        .setup([
            Op::Crash(KEY, base),
            Op::Crash(OTHER, base + Duration::from_millis(400)),
        ])
        .thread([Op::Purge(end)])
        .thread([Op::Crash(OTHER, end)])
        .after([Op::Status(KEY, end), Op::Status(OTHER, end)]);
    assert_eq!(
        decision_in_every_order(&scenario, 1),
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_millis(400),
        }
    );
    check_purge_vs_crash(
        scenario,
        "purge_races_crash: purge vs update in the same shard",
        one_shard_state,
    );
}

// Three threads: the purge races two first crashes of the expired key. Exactly one of them is
// granted the new window's retry, whether the entry was purged and reinserted or reopened in
// place, and the other is refused for the whole window.
#[test]
fn purge_races_two_crashes_of_the_expired_key() {
    let base = Instant::now();
    let end = base + WINDOW;
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Purge(end)])
        .thread([Op::Crash(KEY, end)])
        .thread([Op::Crash(KEY, end)])
        .after([Op::Status(KEY, end)])
        .check_sequential_consistency(
            "purge_races_crash: purge vs two crashes of the expired key, 3 threads",
            fixed_state,
            |history| {
                let mut decisions = [history.decision(1, 0), history.decision(2, 0)];
                decisions.sort_by_key(|d| !d.is_retry());
                assert_eq!(decisions[0], &first_retry(), "{history:#?}");
                assert_eq!(
                    decisions[1],
                    &BackendRecoveryDecision::Refuse {
                        reason: BackendRecoveryRefusalReason::BackendUnavailable,
                        retry_after: WINDOW,
                    },
                    "{history:#?}"
                );
                assert_eq!(history.len, 1, "{history:#?}");
                assert!(!history.final_status(0).is_available(), "{history:#?}");
            },
        );
}

// Two purges: what an automatic purge's "help" does while another thread leads one
// (`occupancy.rs`), here with `purge_expired` on both sides, and a crash of the expired key.
// One key, because a purge is not atomic across keys (it takes one shard at a time), which the
// reference's purge is. The entry is purged at most once (the counters and `len` of some
// sequential order), and with the cap at one entry its place is given back once: a crash after
// the purge finds it again, and a place given back twice would show in `len`.
#[test]
fn two_purges_race_each_other_and_a_crash() {
    let base = Instant::now();
    let end = base + WINDOW;
    Scenario::new(model_policy())
        .max_entries(1)
        .setup([Op::Crash(KEY, base)])
        .thread([Op::Purge(end)])
        .thread([Op::Purge(end)])
        .thread([Op::Crash(KEY, end)])
        .after([Op::Status(KEY, end)])
        .check_sequential_consistency(
            "purge_races_crash: two purges vs a crash of the expired key, 3 threads",
            fixed_state,
            |history| {
                assert_eq!(history.decision(2, 0), &first_retry(), "{history:#?}");
                assert_eq!(history.len, 1, "{history:#?}");
                assert_eq!(
                    history.metrics.entries_purged as usize,
                    history.purged(0, 0) + history.purged(1, 0),
                    "{history:#?}"
                );
                assert!(history.metrics.entries_purged <= 1, "{history:#?}");
            },
        );
}
