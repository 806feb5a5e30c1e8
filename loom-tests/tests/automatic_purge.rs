//! The automatic purge's trigger, racing inserts.
//!
//! An insert that brings the entry count to the purge threshold claims the lead by
//! compare-and-swap on a flag, purges the entries two windows old, sets the next threshold from
//! the survivors and lowers the flag. While a lead runs, inserts that find the count at twice
//! the threshold purge too (they help); the others go on. The crate starts purging at 1,024
//! entries, too many for loom, so these models give the state a slack of one
//! (`with_purge_slack`, loom builds only): the first insert purges, and the next purge comes at
//! `max(2 * survivors, survivors + 1)` entries.
//!
//! What must hold in every interleaving:
//! - decisions and final statuses are the spec's, written out here (each new key's first crash
//!   is a retry, the old key is healthy, the new ones backing off): purging changes none;
//! - each entry two windows old is purged exactly once, and no live entry is: `len()`, the
//!   entries left and the purge counter agree;
//! - the count stays exact: `len()` equals the entries a snapshot lists;
//! - after the threads, no thread leads a purge, and the next threshold is one a led purge set;
//!   a later insert that reaches it leads the next purge (a flag left raised would stop every
//!   later lead).
#![cfg(loom)]

use std::time::Instant;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryState, BackendRecoveryStatus};
use backend_recovery_loom_tests::{
    FixedHasher, Key, WINDOW, first_retry, fixed_state, model_policy, run_model,
};
use loom::sync::Arc;

/// Crashed before the threads start, two windows and more before their instant: purgeable.
const OLD: Key = "archiver";
const A: Key = "indexer";
const B: Key = "compiler";
const C: Key = "linker";
/// Crashed after the threads, once its predecessors are purgeable in turn.
const LATER: Key = "renderer";

/// One crash counted: backing off from its retry (the threads' checks come at its instant).
fn recovering(status: &BackendRecoveryStatus) -> bool {
    matches!(
        status,
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 1,
            ..
        }
    )
}

/// A state whose first insert purges, holding [`OLD`] (crashed at `base`); the threshold after
/// that first purge is 2.
fn state_holding_old(base: Instant) -> BackendRecoveryState<Key, FixedHasher> {
    let state = fixed_state(model_policy()).with_purge_slack(1);
    assert_eq!(state.record_crash(OLD, base), first_retry());
    assert_eq!(state.automatic_purge_schedule(), (2, false));
    state
}

/// The properties of this model once the threads have crashed `keys` (new keys, each once) at
/// `at`, three windows after [`OLD`]'s crash.
fn check_after_threads(
    state: &BackendRecoveryState<Key, FixedHasher>,
    keys: &[Key],
    decisions: &[BackendRecoveryDecision],
    at: Instant,
) {
    for decision in decisions {
        assert_eq!(decision, &first_retry(), "a new key's first crash");
    }
    assert_eq!(state.status(&OLD, at), BackendRecoveryStatus::Healthy);
    for key in keys {
        assert!(recovering(&state.status(key, at)), "{key} lost");
    }
    // OLD purged once, by whichever insert led (or helped); nothing live purged.
    assert_eq!(state.metrics().entries_purged, 1, "OLD purged once");
    assert_eq!(state.len(), keys.len(), "len after the purge");
    assert_eq!(state.snapshot(at).len(), state.len(), "the count drifted");
    let (threshold, leading) = state.automatic_purge_schedule();
    assert!(!leading, "a lead never lowered its flag");
    // Set by the last led purge from its survivors s (1 to all the keys): max(2s, s + 1) = 2s.
    assert!(
        threshold % 2 == 0 && (2..=2 * keys.len()).contains(&threshold),
        "threshold {threshold} after {} inserts; {:?}",
        keys.len(),
        state.metrics()
    );

    // Inserts after the threads, three windows later still, until one brings the count to the
    // threshold: that insert must lead a purge of everything the threads inserted. (The count
    // may already be at the threshold: a lead that read its survivors before the other thread's
    // insert, which found the flag still raised, leaves the purge to the next insert.)
    let later = at + 3 * WINDOW;
    for (inserted, key) in [LATER, "a", "b", "c", "d", "e"].into_iter().enumerate() {
        let before = state.len();
        assert_eq!(state.record_crash(key, later), first_retry());
        if before + 1 >= threshold {
            assert_eq!(
                state.metrics().entries_purged,
                1 + keys.len() as u64,
                "the insert that reached the threshold did not lead a purge"
            );
            assert_eq!(state.len(), inserted + 1);
            assert!(!state.automatic_purge_schedule().1);
            return;
        }
    }
    panic!("six inserts never reached the threshold {threshold}");
}

/// The model's run: this thread crashes [`A`] while another crashes `theirs` in turn, all new
/// keys at three windows after [`OLD`]'s crash; then the checks of [`check_after_threads`].
fn race(name: &str, theirs: &'static [Key]) {
    run_model(name, move || {
        let base = Instant::now();
        let at = base + 3 * WINDOW;
        let state = Arc::new(state_holding_old(base));
        let other = {
            let state = Arc::clone(&state);
            loom::thread::spawn(move || {
                let crash = |key| state.record_crash(key, at);
                theirs.iter().copied().map(crash).collect::<Vec<_>>()
            })
        };
        let mut decisions = vec![state.record_crash(A, at)];
        decisions.extend(other.join().expect("the model's thread panicked"));
        let mut keys = vec![A];
        keys.extend_from_slice(theirs);
        check_after_threads(&state, &keys, &decisions, at);
    });
}

/// Two threads each insert one key: the first insert to find the count at 2 leads the purge of
/// [`OLD`]; the other finds the flag taken or the purge done.
#[test]
fn two_inserts_race_for_the_lead() {
    race("automatic_purge: two inserts race for the lead", &[B]);
}

/// One thread inserts one key while the other inserts two: with [`OLD`] and all three keys the
/// count reaches 4, twice the threshold, so an insert may help a purge the other thread leads,
/// and two purges race to remove [`OLD`].
#[test]
fn an_insert_helps_a_running_purge() {
    race(
        "automatic_purge: an insert past twice the threshold helps a running purge",
        &[B, C],
    );
}
