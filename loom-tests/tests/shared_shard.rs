//! Two keys in the same shard. Inserting one (write guard) while the other's cell is updated
//! (read guard, compare-and-swap) loses no update and cannot deadlock.
//!
//! The state is built with a constant hasher, so both keys share one shard lock. Loom reports a
//! deadlock by itself if some interleaving leaves every thread blocked; the properties below
//! check that each key ends with exactly the crashes recorded for it.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryStatus;
use backend_recovery_loom_tests::{History, Key, Op, Scenario, model_policy, one_shard_state};

const OLD: Key = "indexer";
const NEW: Key = "compiler";

/// Property of this model: both keys have entries, and each key's final status counts every
/// crash recorded for it: one crash `BackingOff`, two or more `Unavailable`.
fn no_update_is_lost(history: &History) {
    assert_eq!(history.len, 2, "{history:#?}");
    for (index, key) in [OLD, NEW].into_iter().enumerate() {
        let crashes = history.crashes_of(key).len();
        let status = history.final_status(index);
        match crashes {
            1 => assert!(
                matches!(
                    status,
                    BackendRecoveryStatus::BackingOff {
                        crashes_in_window: 1,
                        ..
                    }
                ),
                "{key}: {history:#?}"
            ),
            _ => assert!(!status.is_available(), "{key} lost a crash: {history:#?}"),
        }
    }
}

// A known key's second crash (read guard) while a new key in its shard is inserted.
#[test]
fn insert_races_an_update_in_the_same_shard() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(model_policy())
        .setup([Op::Crash(OLD, base)])
        .thread([Op::Crash(OLD, at)])
        .thread([Op::Crash(NEW, at)])
        .after([Op::Status(OLD, at), Op::Status(NEW, at)])
        .check_sequential_consistency(
            "shared_shard: insert vs update in one shard",
            one_shard_state,
            no_update_is_lost,
        );
}

// One thread inserts a key and crashes it again (write guard, then read guard) while the
// other inserts a second key in the same shard.
#[test]
fn inserts_and_an_update_in_the_same_shard() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(model_policy())
        .thread([Op::Crash(OLD, base), Op::Crash(OLD, at)])
        .thread([Op::Crash(NEW, at)])
        .after([Op::Status(OLD, at), Op::Status(NEW, at)])
        .check_sequential_consistency(
            "shared_shard: two inserts and an update in one shard",
            one_shard_state,
            no_update_is_lost,
        );
}

// Three threads, every kind of guard on one shard: a known key is updated (read guard) and
// removed (write guard) while a new key is inserted (write guard). The new key's entry
// survives the other key's removal, and nothing deadlocks.
#[test]
fn insert_update_and_remove_in_the_same_shard() {
    let base = Instant::now();
    let at = base + Duration::from_millis(400);
    Scenario::new(model_policy())
        .setup([Op::Crash(OLD, base)])
        .thread([Op::Crash(OLD, at)])
        .thread([Op::Crash(NEW, at)])
        .thread([Op::Success(OLD)])
        .after([Op::Status(OLD, at), Op::Status(NEW, at)])
        .check_sequential_consistency(
            "shared_shard: insert, update and remove in one shard, 3 threads",
            one_shard_state,
            |history| {
                assert!(
                    matches!(
                        history.final_status(1),
                        BackendRecoveryStatus::BackingOff {
                            crashes_in_window: 1,
                            ..
                        }
                    ),
                    "the new key lost its crash: {history:#?}"
                );
                let old_left = history.final_status(0) != &BackendRecoveryStatus::Healthy;
                assert_eq!(history.len, 1 + usize::from(old_left), "{history:#?}");
            },
        );
}
