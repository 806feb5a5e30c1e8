//! A gate check of a key without an entry, answered from its shard's presence summary without
//! any guard, racing the insert of that key.
//!
//! `status` loads the shard's summary before the read guard and answers `Healthy` at once if the
//! key's bit is clear (the crate's `table.rs`). An insert sets the bit under the write guard
//! before it adds the entry. So a check that loads the summary before the bit is set answers as
//! if it came before the insert, which the race allows; but once the insert has returned and the
//! checking thread has synchronised with it (a release/acquire flag here, so "returned" is
//! real-time order), the check must see the entry. The checker checks twice, before and after
//! reading the flag; its answers never go back in time, and after the flag (or the join) they
//! show the crash.
//!
//! Variants: the insert by `record_crash` (a plain entry) or `record_crash_of` (a rich one); and,
//! with every key in one shard under one summary bit, the insert racing a removal of another key
//! of that shard (a success, or a purge, which rebuilds the summary from its survivors), so that
//! the summary is written by both threads. The teeth: inserts that do not set their bit, which
//! the model must catch.
#![cfg(loom)]

use std::hash::BuildHasher;
use std::time::Instant;

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, BackendRecoveryStatus};
use backend_recovery_loom_tests::{
    FixedHasher, Key, WINDOW, failure_of, fixed_state, model_policy, one_shard_state, run_model,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};

const KEY: Key = "indexer";
const OTHER: Key = "compiler";

/// How the key's entry is inserted.
#[derive(Clone, Copy)]
enum Insert {
    /// `record_crash`: a plain entry.
    Crash,
    /// `record_crash_of`: a rich entry, which remembers the incarnation.
    CrashOf,
}

/// What a third thread does to the other key, which has an entry from the setup.
#[derive(Clone, Copy)]
enum Other {
    /// Nothing: two threads.
    Idle,
    /// `record_success`: removes it.
    Success,
    /// `purge_expired` once its window has closed: removes it, rebuilding the shard's summary.
    Purge,
}

/// Whether a check saw the crash: `Healthy` before it, backing off from its retry after.
fn saw_crash(status: &BackendRecoveryStatus) -> bool {
    match status {
        BackendRecoveryStatus::Healthy => false,
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 1,
            ..
        } => true,
        other => panic!("a status no order of the calls gives: {other:?}"),
    }
}

/// The model: one thread inserts `KEY` by a first crash at `at`, then raises a flag; another
/// (optionally) removes `OTHER`; this thread checks `KEY` at `at` before and after reading the
/// flag, and once more after joining the inserter.
fn model<S>(
    name: &str,
    insert: Insert,
    other: Other,
    make_state: fn(BackendRecoveryPolicy) -> BackendRecoveryState<Key, S>,
) where
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    run_model(name, move || {
        let base = Instant::now();
        // After the other key's window has closed, so that a purge removes it.
        let at = base + WINDOW;
        let state = Arc::new(make_state(model_policy()));
        if !matches!(other, Other::Idle) {
            state.record_crash(OTHER, base);
        }
        let done = Arc::new(AtomicBool::new(false));
        let inserter = {
            let (state, done) = (Arc::clone(&state), Arc::clone(&done));
            loom::thread::spawn(move || {
                let decision = match insert {
                    Insert::Crash => state.record_crash(KEY, at),
                    Insert::CrashOf => state.record_crash_of(KEY, 1, at).decision,
                };
                done.store(true, Ordering::Release);
                decision
            })
        };
        let remover = (!matches!(other, Other::Idle)).then(|| {
            let state = Arc::clone(&state);
            loom::thread::spawn(move || match other {
                Other::Idle => unreachable!(),
                Other::Success => state.record_success(&OTHER),
                Other::Purge => assert_eq!(state.purge_expired(at), 1),
            })
        });
        let first = state.status(&KEY, at);
        let finished = done.load(Ordering::Acquire);
        let second = state.status(&KEY, at);
        assert!(
            !saw_crash(&first) || saw_crash(&second),
            "a check went back in time: {first:?}, then {second:?}"
        );
        if finished {
            assert!(
                saw_crash(&second),
                "checked after the insert returned, but saw {second:?} (before: {first:?})"
            );
        }
        assert!(inserter.join().unwrap().is_retry(), "the key's first crash");
        let joined = state.status(&KEY, at);
        assert!(
            saw_crash(&joined),
            "checked after joining the inserter, but saw {joined:?}"
        );
        if let Some(remover) = remover {
            remover.join().unwrap();
            assert_eq!(state.status(&OTHER, at), BackendRecoveryStatus::Healthy);
            assert_eq!(state.len(), 1, "only the inserted key is left");
        }
    });
}

// The check vs the insert of a plain entry.
#[test]
fn absent_key_check_races_insert() {
    model(
        "absent_key_check: status vs insert",
        Insert::Crash,
        Other::Idle,
        fixed_state,
    );
}

// The check vs the insert of a rich entry (`record_crash_of`).
#[test]
fn absent_key_check_races_reported_insert() {
    model(
        "absent_key_check: status vs insert by incarnation",
        Insert::CrashOf,
        Other::Idle,
        fixed_state,
    );
}

// One shard, one summary bit for both keys; the insert races the success of the other key,
// whose removal may leave the shard empty just before or just after the insert.
#[test]
fn absent_key_check_races_insert_and_removal() {
    model(
        "absent_key_check: status vs insert and success, one shard",
        Insert::Crash,
        Other::Success,
        one_shard_state,
    );
}

// As above with a purge of the other key, which rebuilds the shard's summary from what
// survives it.
#[test]
fn absent_key_check_races_insert_and_purge() {
    model(
        "absent_key_check: status vs insert and purge, one shard",
        Insert::Crash,
        Other::Purge,
        one_shard_state,
    );
}

/// The state of [`fixed_state`] whose inserts do not set their bit in the presence summary.
fn unmarked_state(policy: BackendRecoveryPolicy) -> BackendRecoveryState<Key, FixedHasher> {
    fixed_state(policy).with_broken_presence_summary()
}

// Teeth: with inserts that leave the summary as it was, a check after the insert returned
// answers `Healthy` from the summary, and loom must find that.
#[test]
fn teeth_unmarked_inserts_are_caught() {
    let message = failure_of(|| {
        model(
            "absent_key_check: teeth, inserts that do not mark the summary",
            Insert::Crash,
            Other::Idle,
            unmarked_state,
        )
    });
    assert!(
        message.contains("after the insert returned") || message.contains("after joining"),
        "failed for another reason: {message}"
    );
    println!("teeth: unmarked inserts fail absent_key_check as they must: {message}");
}
