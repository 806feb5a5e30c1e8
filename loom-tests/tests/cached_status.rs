//! A gate check through a thread's read cache racing the key's removal and re-insertion.
//!
//! `status` keeps, per thread, a handle on the cells it has looked up, and later reads the cell
//! through it without any guard (the crate's `cache.rs`). The handle outlives the table's guard,
//! so a removal must *retire* the cell, under the write guard that removes it, or a thread would
//! keep reading a cell the table no longer holds. Here the checking thread sets the key up with
//! two crashes (under loom a key is cached on its second lookup, so the second gives its cell a
//! shared word and caches it) and then checks it three times, through the cache while the
//! cached cell lasts, while another thread forgets the key (success, or a purge of its closed
//! window) and a new crash inserts a new cell. Once the checker has seen the other
//! thread finish (a release/acquire flag, so "finished" is real-time order), its next check
//! must see the new cell; and its checks never go back in time.
#![cfg(loom)]

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, BackendRecoveryStatus};
use backend_recovery_loom_tests::{
    FixedHasher, Key, WINDOW, failure_of, fixed_state, model_policy, run_model,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};

const KEY: Key = "indexer";

/// How the other thread forgets the key before crashing it again.
#[derive(Clone, Copy)]
enum Forget {
    /// `record_success`: removes the entry at once.
    Success,
    /// `purge_expired` once the key's window has closed.
    Purge,
}

/// Where a status stands in the only order the other thread's calls allow: the old entry, the
/// key forgotten, the new entry.
fn stage(status: &BackendRecoveryStatus) -> u8 {
    match status {
        BackendRecoveryStatus::Unavailable { .. } => 0,
        BackendRecoveryStatus::Healthy => 1,
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 1,
            ..
        } => 2,
        other => panic!("a status no order of the calls gives: {other:?}"),
    }
}

/// The model: the key crashed twice at `base` (unavailable); the other thread forgets it and
/// crashes it again at `at`; this thread checks it at `at` three times.
fn model<S>(
    name: &str,
    forget: Forget,
    make_state: fn(BackendRecoveryPolicy) -> BackendRecoveryState<Key, S>,
) where
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    run_model(name, move || {
        let base = Instant::now();
        let state = Arc::new(make_state(model_policy()));
        state.record_crash(KEY, base);
        state.record_crash(KEY, base);
        // After a success the crash comes 100 ms into the old window; after a purge, when the
        // old window has closed. Either way the old entry reads `Unavailable` (or, purged at
        // its end, `Healthy`) and the new one `BackingOff` with one crash.
        let at = match forget {
            Forget::Success => base + Duration::from_millis(100),
            Forget::Purge => base + WINDOW,
        };
        let done = Arc::new(AtomicBool::new(false));
        let other = {
            let (state, done) = (Arc::clone(&state), Arc::clone(&done));
            loom::thread::spawn(move || {
                match forget {
                    Forget::Success => state.record_success(&KEY),
                    Forget::Purge => assert_eq!(state.purge_expired(at), 1),
                }
                let decision = state.record_crash(KEY, at);
                done.store(true, Ordering::Release);
                decision
            })
        };
        let first = state.status(&KEY, at);
        let second = state.status(&KEY, at);
        let finished = done.load(Ordering::Acquire);
        let third = state.status(&KEY, at);
        let checks = [&first, &second, &third];
        assert!(
            checks
                .windows(2)
                .all(|pair| stage(pair[0]) <= stage(pair[1])),
            "a check went back in time: {checks:?}"
        );
        if finished {
            assert_eq!(
                stage(&third),
                2,
                "checked after the re-insertion finished, but saw {third:?} (before: {first:?}, {second:?})"
            );
        }
        assert!(
            other.join().unwrap().is_retry(),
            "the crash after forgetting is a first crash"
        );
    });
}

// A cached check vs a success and a new crash.
#[test]
fn cached_check_races_success_and_reinsertion() {
    model(
        "cached_status: cached status vs success and re-insertion",
        Forget::Success,
        fixed_state,
    );
}

// A cached check vs a purge of the closed window and a new crash.
#[test]
fn cached_check_races_purge_and_reinsertion() {
    model(
        "cached_status: cached status vs purge and re-insertion",
        Forget::Purge,
        fixed_state,
    );
}

/// The state of [`fixed_state`] whose removals forget to retire cells.
fn unretiring_state(policy: BackendRecoveryPolicy) -> BackendRecoveryState<Key, FixedHasher> {
    fixed_state(policy).with_broken_retirement()
}

/// Runs a teeth model of the cached-status model (`which` part of it), which must fail, and
/// checks that it failed for the right reason: its message contains `reason`.
fn assert_caught(which: &str, reason: &str, teeth: impl FnOnce()) {
    let message = failure_of(teeth);
    assert!(
        message.contains(reason),
        "failed for another reason: {message}"
    );
    println!("teeth: the unretired cache fails cached_status ({which}) as it must: {message}");
}

// Teeth: with removals that do not retire cells, a thread keeps reading the removed cell from
// its cache, and loom must find the interleaving where that shows.
#[test]
fn teeth_unretired_cells_are_caught() {
    assert_caught("checks", "checked after the re-insertion finished", || {
        model(
            "cached_status: teeth, removals without retirement",
            Forget::Success,
            unretiring_state,
        )
    });
}

/// The crash part: a thread crashing a key through its cached cell while another thread
/// forgets the key and crashes it again. The key crashed once at `base` (its first lookup on
/// this thread); this thread crashes it three times at `at` (the first caches its cell, the
/// others go through the cache while the cached cell lasts); the other thread records a
/// success, then a crash. Once this thread has seen the other finish, its third crash comes
/// after the re-insertion, so it must be counted in the new entry: with one retry per window,
/// the key ends `Unavailable`. A crash into the removed cell would leave the new entry at one
/// crash.
fn crash_model<S>(name: &str, make_state: fn(BackendRecoveryPolicy) -> BackendRecoveryState<Key, S>)
where
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    run_model(name, move || {
        let base = Instant::now();
        let at = base + Duration::from_millis(100);
        let state = Arc::new(make_state(model_policy()));
        state.record_crash(KEY, base);
        let done = Arc::new(AtomicBool::new(false));
        let other = {
            let (state, done) = (Arc::clone(&state), Arc::clone(&done));
            loom::thread::spawn(move || {
                state.record_success(&KEY);
                state.record_crash(KEY, at);
                done.store(true, Ordering::Release);
            })
        };
        state.record_crash(KEY, at);
        state.record_crash(KEY, at);
        let finished = done.load(Ordering::Acquire);
        let third = state.record_crash(KEY, at);
        other.join().unwrap();
        // Read through the table, not this thread's cache.
        let snapshot = state.snapshot(at);
        assert_eq!(snapshot.len(), 1, "one entry: {snapshot:?}");
        let last = snapshot[0].status.clone();
        if finished {
            assert!(!third.is_retry(), "the new entry's second crash: {third:?}");
            assert!(
                matches!(last, BackendRecoveryStatus::Unavailable { .. }),
                "the third crash came after the re-insertion but was not counted in it: {last:?}"
            );
        }
        // Whatever the order, the entry left holds one or two crashes of the new window.
        assert!(
            !matches!(last, BackendRecoveryStatus::Healthy),
            "a crash came after the success: {last:?}"
        );
    });
}

// Crashes through a cached cell vs a success and a new crash.
#[test]
fn cached_crash_races_success_and_reinsertion() {
    crash_model(
        "cached_status: cached crash vs success and re-insertion",
        fixed_state,
    );
}

// Teeth for crashes: without retirement, the third crash lands in the removed cell.
#[test]
fn teeth_unretired_cells_lose_crashes() {
    assert_caught("crashes", "was not counted in it", || {
        crash_model(
            "cached_status: teeth, crashes without retirement",
            unretiring_state,
        )
    });
}

/// The purge part: a purge of the key's closed window racing a crash through the cached cell
/// that reopens it. Crash first: the window reopens and the purge keeps the entry. Purge first:
/// the cached cell is gone and the crash inserts the key again. Either way the crash is a first
/// crash and the key is left with one entry that holds it; a purge that checked the window and
/// removed the entry in two steps could drop the crash in between.
fn purge_model<S>(name: &str, make_state: fn(BackendRecoveryPolicy) -> BackendRecoveryState<Key, S>)
where
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    run_model(name, move || {
        let base = Instant::now();
        let end = base + WINDOW;
        let state = Arc::new(make_state(model_policy()));
        // Twice on this thread, so that its cell is cached here.
        state.record_crash(KEY, base);
        state.record_crash(KEY, base);
        let purger = {
            let state = Arc::clone(&state);
            loom::thread::spawn(move || state.purge_expired(end))
        };
        let crash = state.record_crash(KEY, end);
        let purged = purger.join().unwrap();
        assert!(crash.is_retry(), "the window had closed: {crash:?}");
        let snapshot = state.snapshot(end);
        assert_eq!(snapshot.len(), 1, "purged {purged}, left {snapshot:?}");
        assert!(
            matches!(
                snapshot[0].status,
                BackendRecoveryStatus::BackingOff {
                    crashes_in_window: 1,
                    ..
                }
            ),
            "purged {purged}, left {snapshot:?}"
        );
        assert_eq!(state.len(), 1);
    });
}

// A purge vs a crash through the cached cell of the expiring key.
#[test]
fn purge_races_cached_crash() {
    purge_model("cached_status: purge vs cached crash", fixed_state);
}

// Teeth for purges: without retirement, the crash lands in the purged cell.
#[test]
fn teeth_unretired_cells_lose_crashes_to_purges() {
    assert_caught("purge", "left []", || {
        purge_model(
            "cached_status: teeth, purge without retirement",
            unretiring_state,
        )
    });
}
