//! The capacity cap (`with_max_entries`) under concurrent inserts and removals.
//!
//! A new key reserves its place in an atomic counter under its shard's write guard; when the
//! state is full, the crash purges the entries two windows old and tries once more, and is
//! otherwise refused with `CapacityExhausted`. Removals (success, purge) give places back. The
//! models check that the cap is never exceeded, that no two threads get the same last place,
//! and that a place freed concurrently is used or not exactly as some sequential order says:
//! answers (retry-after included), final statuses, `len` and counters.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
use backend_recovery_loom_tests::{
    History, Key, Op, Scenario, WINDOW, first_retry, fixed_state, model_policy, one_shard_state,
};

const A: Key = "indexer";
const B: Key = "compiler";

fn full(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::CapacityExhausted,
        retry_after,
    }
}

/// Property of this model, two new keys and one place: exactly one of them is tracked (a retry,
/// `BackingOff`); the other is refused for capacity until the tracked one can be purged, two
/// windows from now, and stays `Healthy` (untracked); `len() == 1`.
fn one_place_one_key(history: &History) {
    let (tracked, refused) = if history.decision(0, 0).is_retry() {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(history.decision(tracked, 0), &first_retry(), "{history:#?}");
    assert_eq!(
        history.decision(refused, 0),
        &full(2 * WINDOW),
        "{history:#?}"
    );
    assert!(
        matches!(
            history.final_status(tracked),
            BackendRecoveryStatus::BackingOff {
                crashes_in_window: 1,
                ..
            }
        ),
        "{history:#?}"
    );
    assert_eq!(
        history.final_status(refused),
        &BackendRecoveryStatus::Healthy,
        "{history:#?}"
    );
    assert_eq!(history.len, 1, "{history:#?}");
    assert_eq!(
        (
            history.metrics.retries_granted,
            history.metrics.capacity_refusals
        ),
        (1, 1),
        "{history:#?}"
    );
}

/// A state with room for one key; two threads crash two new keys at the same instant.
fn two_new_keys() -> Scenario {
    let at = Instant::now();
    Scenario::new(model_policy())
        .max_entries(1)
        .thread([Op::Crash(A, at)])
        .thread([Op::Crash(B, at)])
        .after([Op::Status(A, at), Op::Status(B, at)])
}

// Two new keys race for the one place, each in its own shard's write guard.
#[test]
fn two_new_keys_race_for_one_place() {
    two_new_keys().check_sequential_consistency(
        "capacity: two new keys, one place",
        fixed_state,
        one_place_one_key,
    );
}

// The same race with both keys in one shard (constant hasher), so the inserts are also
// serialized by the write guard and the loser's purge needs that guard too.
#[test]
fn two_new_keys_of_one_shard_race_for_one_place() {
    two_new_keys().check_sequential_consistency(
        "capacity: two new keys of one shard, one place",
        one_shard_state,
        one_place_one_key,
    );
}

// The place is taken by a key that then succeeds while a new key crashes. Success first: the
// place is free and the new key is tracked (a retry). Crash first: refused until the tracked
// key could be purged (two windows after its crash, 1.6 s), then the success empties the
// state. Both are allowed; nothing else is.
//
// A removal releases its place under its write guard; with the release after the guard, a
// crash in that gap would be refused although no order refuses it.
#[test]
fn success_races_an_insert_into_a_full_state() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(model_policy())
        .max_entries(1)
        .setup([Op::Crash(A, base)])
        .thread([Op::Success(A)])
        .thread([Op::Crash(B, at)])
        .after([Op::Status(A, at), Op::Status(B, at)])
        .check_sequential_consistency(
            "capacity: success vs insert into a full state",
            fixed_state,
            |history| {
                let decision = history.decision(1, 0);
                if decision.is_retry() {
                    assert_eq!(history.len, 1, "{history:#?}");
                } else {
                    assert_eq!(
                        decision,
                        &full(2 * WINDOW - Duration::from_millis(400)),
                        "{history:#?}"
                    );
                    assert_eq!(history.len, 0, "{history:#?}");
                }
            },
        );
}

// The place is taken by a key whose window started two windows ago, so a crash of a new key
// may purge it and take its place, while another thread purges explicitly. Whichever purge
// removes the old entry, the new key is tracked: every sequential order retries it.
//
// A removal releases its place under its write guard; with the release after the guard, a
// crash in that gap would be refused although no order refuses it.
#[test]
fn purge_races_an_insert_into_a_full_state() {
    let base = Instant::now();
    let at = base + 2 * WINDOW;
    Scenario::new(model_policy())
        .max_entries(1)
        .setup([Op::Crash(A, base)])
        .thread([Op::Purge(at)])
        .thread([Op::Crash(B, at)])
        .after([Op::Status(B, at)])
        .check_sequential_consistency(
            "capacity: purge vs insert into a full state",
            fixed_state,
            |history| {
                assert_eq!(history.decision(1, 0), &first_retry(), "{history:#?}");
                assert_eq!(history.len, 1, "{history:#?}");
            },
        );
}
