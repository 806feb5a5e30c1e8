//! What the crate adds to the spec: duplicate reports by incarnation, purging, the capacity
//! cap, snapshots and metrics.

use std::time::{Duration, Instant};

use crate::expected::{full, refuse, retry};
use backend_recovery::{
    BackendRecoveryPolicy, BackendRecoveryRefusalReason, BackendRecoveryState,
    BackendRecoveryStatus,
};

const BACKOFF: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_secs(10);

fn state() -> BackendRecoveryState<&'static str> {
    BackendRecoveryState::with_policy(BackendRecoveryPolicy::new(BACKOFF, WINDOW))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn reports_of_one_incarnation_count_once() {
    let now = Instant::now();
    let s = state();
    assert_eq!(s.record_crash_of("a", 1, now).decision, retry(BACKOFF, 1));
    // Duplicates replay the decision, with the retry-after measured from their own instant.
    assert_eq!(s.record_crash_of("a", 1, now).decision, retry(BACKOFF, 1));
    assert_eq!(
        s.record_crash_of("a", 1, now + Duration::from_millis(30))
            .decision,
        retry(Duration::from_millis(70), 1)
    );
    assert_eq!(
        s.record_crash_of("a", 1, now + secs(1)).decision,
        retry(Duration::ZERO, 1)
    );
    // Not counted: the gate still shows one crash in the window.
    assert_eq!(
        s.status("a", now + secs(1)),
        BackendRecoveryStatus::Recovering {
            crashes_in_window: 1,
            window_remaining: secs(9),
        }
    );
    // The next incarnation's death is a second crash.
    assert_eq!(
        s.record_crash_of("a", 2, now + secs(2)).decision,
        refuse(secs(8))
    );
    assert_eq!(
        s.record_crash_of("a", 2, now + secs(3)).decision,
        refuse(secs(7))
    );
    // A stale report of an older incarnation counts no more than a duplicate.
    assert_eq!(
        s.record_crash_of("a", 1, now + secs(4)).decision,
        refuse(secs(6))
    );
    let m = s.metrics();
    assert_eq!(
        (m.retries_granted, m.refusals, m.duplicates_coalesced),
        (1, 1, 5)
    );
}

#[test]
fn plain_record_crash_still_counts_every_call() {
    let now = Instant::now();
    let s = state();
    assert!(s.record_crash("a", now).is_retry());
    assert!(!s.record_crash("a", now).is_retry());
    assert_eq!(s.metrics().duplicates_coalesced, 0);
}

#[test]
fn any_incarnation_counts_first_including_zero_and_max() {
    let now = Instant::now();
    let s = state();
    assert!(s.record_crash_of("zero", 0, now).decision.is_retry());
    assert!(s.record_crash_of("max", u64::MAX, now).decision.is_retry());
    // Nothing is newer than u64::MAX: every later report of that key is a duplicate.
    assert!(
        s.record_crash_of("max", u64::MAX, now + secs(1))
            .decision
            .is_retry()
    );
    assert_eq!(s.metrics().duplicates_coalesced, 1);
    assert!(!s.record_crash_of("zero", 1, now).decision.is_retry());
}

#[test]
fn success_keeps_the_incarnation_so_late_reports_stay_duplicates() {
    let now = Instant::now();
    let s = state();
    assert!(s.record_crash_of("a", 5, now).decision.is_retry());
    s.record_success(&"a");
    // Healthy again, but the dead incarnation's late report is not a new crash.
    assert_eq!(s.status("a", now + secs(1)), BackendRecoveryStatus::Healthy);
    assert_eq!(
        s.record_crash_of("a", 5, now + secs(1)).decision,
        retry(Duration::ZERO, 1)
    );
    assert_eq!(s.status("a", now + secs(1)), BackendRecoveryStatus::Healthy);
    assert_eq!(s.metrics().duplicates_coalesced, 1);
    // The respawned incarnation's crash opens a fresh window.
    assert_eq!(
        s.record_crash_of("a", 6, now + secs(2)).decision,
        retry(BACKOFF, 1)
    );
    assert_eq!(
        s.record_crash_of("a", 7, now + secs(3)).decision,
        refuse(secs(9))
    );
    // The tombstone is an entry until its window is purged.
    s.record_success(&"a");
    assert_eq!(s.len(), 1);
    assert_eq!(s.purge_expired(now + secs(2) + WINDOW), 1);
    assert!(s.is_empty());
}

#[test]
fn purge_expired_removes_exactly_the_closed_windows() {
    let now = Instant::now();
    let s = state();
    s.record_crash("old", now);
    s.record_crash("new", now + secs(5));
    assert_eq!(s.purge_expired(now + WINDOW - Duration::from_nanos(1)), 0);
    assert_eq!(s.purge_expired(now + WINDOW), 1);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.status("new", now + WINDOW),
        BackendRecoveryStatus::Recovering {
            crashes_in_window: 1,
            window_remaining: secs(5),
        }
    );
    assert_eq!(s.metrics().entries_purged, 1);
    // Purging changed no decision: the purged key's next crash is a first crash either way.
    assert_eq!(s.record_crash("old", now + WINDOW), retry(BACKOFF, 1));
}

#[test]
fn purging_forgets_incarnations_with_their_window() {
    let now = Instant::now();
    let s = state();
    assert!(s.record_crash_of("a", 3, now).decision.is_retry());
    assert!(!s.record_crash_of("a", 4, now).decision.is_retry());
    // A whole window later the entry has expired; until it is purged, a late report of
    // incarnation 4 is still a duplicate (its refusal replayed, with nothing left to wait).
    assert_eq!(
        s.record_crash_of("a", 4, now + WINDOW).decision,
        refuse(Duration::ZERO)
    );
    assert_eq!(s.purge_expired(now + WINDOW), 1);
    // Purged: the same late report now counts as a first crash.
    assert_eq!(
        s.record_crash_of("a", 4, now + WINDOW).decision,
        retry(BACKOFF, 1)
    );
}

/// A million distinct keys crash once each, at a steady rate over 20 windows. The documented
/// bound holds at every step: with `r` crashes per window, an automatic purge keeps at most the
/// `2r + 1` keys of the last two windows, and the next one comes by `max(2E, E + 1024)` entries
/// (plus up to 32 before the inserting thread next checks whether a purge is due).
#[test]
fn a_million_keys_churning_stay_within_the_documented_bound() {
    const KEYS: u64 = 1_000_000;
    const WINDOWS: u64 = 20;
    let per_window = KEYS / WINDOWS;
    let step = WINDOW / per_window as u32;
    let now = Instant::now();
    let s = BackendRecoveryState::<u64>::with_policy(BackendRecoveryPolicy::new(BACKOFF, WINDOW));
    let survivors = 2 * per_window + 1;
    let bound = (2 * survivors).max(survivors + 1024) as usize + 32;
    let mut highest = 0;
    for key in 0..KEYS {
        assert!(s.record_crash(key, now + step * key as u32).is_retry());
        highest = highest.max(s.len());
        assert!(
            s.len() <= bound,
            "len {} over the bound {bound} at key {key}",
            s.len()
        );
    }
    // Purging really ran: far fewer entries than keys, and the counters agree.
    assert!(
        highest > 2 * per_window as usize,
        "the bound is not trivially loose: {highest}"
    );
    let m = s.metrics();
    assert_eq!(m.entries_purged as usize + s.len(), KEYS as usize);
}

#[test]
fn a_full_state_refuses_new_keys_and_keeps_tracked_ones_exact() {
    let now = Instant::now();
    let s = state().with_max_entries(2);
    assert_eq!(s.max_entries(), Some(2));
    assert!(s.record_crash("a", now).is_retry());
    assert!(s.record_crash("b", now + secs(1)).is_retry());
    // Full: an automatic purge keeps two windows, so "a" can go 20 s after its crash.
    assert_eq!(s.record_crash("c", now + secs(2)), full(secs(18)));
    assert_eq!(s.record_crash("c", now + secs(3)), full(secs(17)));
    assert_eq!(s.status("c", now + secs(3)), BackendRecoveryStatus::Healthy);
    // Tracked keys behave exactly as without a cap.
    assert_eq!(s.record_crash("a", now + secs(4)), refuse(secs(6)));
    assert_eq!(s.metrics().capacity_refusals, 2);
    // A success frees a place at once.
    s.record_success(&"b");
    assert!(s.record_crash("c", now + secs(5)).is_retry());
    // Once "a" is two windows old, purging frees its place.
    assert_eq!(s.record_crash("d", now + secs(19)), full(secs(1)));
    assert!(s.record_crash("d", now + secs(20)).is_retry());
    assert_eq!(s.len(), 2);
}

/// One call with an instant an hour ahead of the others must not stop a full state from
/// purging for the others (the remembered "nothing to purge before" mark is not trusted when it
/// lies further ahead than the automatic purge's age).
#[test]
fn a_far_future_instant_does_not_stop_a_full_state_from_purging() {
    let now = Instant::now();
    let window = secs(1);
    let s = BackendRecoveryState::<&str>::with_policy(BackendRecoveryPolicy::new(BACKOFF, window))
        .with_max_entries(1);
    assert!(s.record_crash("a", now).is_retry());
    // An hour ahead: the state is full, purges "a" and tracks "b".
    assert!(s.record_crash("b", now + secs(3_600)).is_retry());
    s.record_success(&"b");
    assert!(s.record_crash("c", now + window).is_retry());
    // Back in the present, "c" has been expired for 98 s: it is purged and "e" is tracked.
    assert_eq!(s.record_crash("e", now + secs(100)), retry(BACKOFF, 1));
}

#[test]
fn capacity_zero_refuses_every_crash_and_one_holds_one_key() {
    let now = Instant::now();
    let none = state().with_max_entries(0);
    assert_eq!(none.record_crash("a", now), full(WINDOW));
    assert_eq!(none.record_crash_of("a", 1, now).decision, full(WINDOW));
    assert!(none.is_empty());
    let one = state().with_max_entries(1);
    assert!(one.record_crash("a", now).is_retry());
    assert_eq!(one.record_crash("b", now), full(2 * WINDOW));
    assert!(!one.record_crash("a", now).is_retry());
}

#[test]
fn snapshot_lists_each_key_with_its_status() {
    let now = Instant::now();
    let s = state();
    s.record_crash("once", now);
    s.record_crash("twice", now);
    s.record_crash("twice", now);
    s.record_crash("long-ago", now - WINDOW);
    let mut snapshot = s.snapshot(now + secs(4));
    snapshot.sort_by_key(|entry| entry.key);
    let statuses: Vec<_> = snapshot.iter().map(|e| (e.key, e.status.clone())).collect();
    assert_eq!(
        statuses,
        vec![
            ("long-ago", BackendRecoveryStatus::Healthy),
            (
                "once",
                BackendRecoveryStatus::Recovering {
                    crashes_in_window: 1,
                    window_remaining: secs(6),
                }
            ),
            (
                "twice",
                BackendRecoveryStatus::Unavailable {
                    reason: BackendRecoveryRefusalReason::BackendUnavailable,
                    retry_after: secs(6),
                }
            ),
        ]
    );
}

#[test]
fn metrics_add_up_and_can_be_switched_off() {
    let now = Instant::now();
    let s = state().with_max_entries(3);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for key in ["a", "b", "c", "d"] {
                    s.record_crash(key, now);
                    s.record_crash_of(key, 1, now);
                }
            });
        }
    });
    s.record_success(&"a");
    s.purge_expired(now + WINDOW);
    let m = s.metrics();
    assert_eq!(m.crash_reports(), 32);
    // Three keys tracked: one retry each; "d" never fits.
    assert_eq!(m.retries_granted, 3);
    assert_eq!(m.capacity_refusals, 8);
    assert_eq!(m.refusals + m.duplicates_coalesced, 32 - 3 - 8);
    assert_eq!(m.successes, 1);
    // "a" was reported by incarnation, so its success left a tombstone: three entries expire.
    assert_eq!(m.entries_purged, 3);

    let quiet = state().without_metrics();
    quiet.record_crash("a", now);
    assert_eq!(quiet.metrics(), Default::default());
}

#[cfg(feature = "serde")]
#[test]
fn public_types_round_trip_through_serde() {
    use backend_recovery::{BackendKey, BackendRecoverySnapshotEntry, BrokerInstanceKey};
    let key = BackendKey::new(
        BrokerInstanceKey::Private {
            service_name: "indexer".into(),
        },
        "indexer",
        "1.0",
    );
    let entry = BackendRecoverySnapshotEntry {
        key,
        status: BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_nanos(1_500_000),
        },
    };
    let json = serde_json::to_string(&entry).unwrap();
    assert_eq!(
        serde_json::from_str::<BackendRecoverySnapshotEntry<BackendKey>>(&json).unwrap(),
        entry
    );
    let decision = retry(BACKOFF, 1);
    let json = serde_json::to_string(&decision).unwrap();
    assert_eq!(
        serde_json::from_str::<backend_recovery::BackendRecoveryDecision>(&json).unwrap(),
        decision
    );
    let policy = BackendRecoveryPolicy::new(BACKOFF, WINDOW);
    let json = serde_json::to_string(&policy).unwrap();
    assert_eq!(
        serde_json::from_str::<BackendRecoveryPolicy>(&json).unwrap(),
        policy
    );
    let metrics = state().metrics();
    assert_eq!(
        serde_json::from_str::<backend_recovery::BackendRecoveryMetrics>(
            &serde_json::to_string(&metrics).unwrap()
        )
        .unwrap(),
        metrics
    );
}

/// A tombstone revived by a crash whose instant lags behind the tombstone's window opens a
/// window earlier than any the state held; a purge at the end of that window must still find
/// it. (Purges skip the shards whose entries all started later than the cutoff; this is the
/// one crash that can move a window earlier, so it must go through the write guard, which
/// lowers the shard's bound.)
#[test]
fn a_lagging_crash_that_revives_a_tombstone_is_still_purged_on_time() {
    let s = state();
    let now = Instant::now();
    let later = now + secs(5);
    assert!(s.record_crash_of("a", 1, later).decision.is_retry());
    s.record_success("a");
    assert_eq!(s.len(), 1, "a tombstone remembers incarnation 1");
    // Another worker's clock runs 5 s behind: its crash opens a window at `now`.
    assert_eq!(s.record_crash("a", now), retry(BACKOFF, 1));
    assert_eq!(
        s.purge_expired(now + WINDOW),
        1,
        "the window opened at `now` has closed"
    );
    assert!(s.is_empty());
}

/// A cap given to a state that already holds entries counts them: a success then frees a
/// place (the count once restarted at zero, so it wrapped below zero here and the state
/// refused every new key for good, and `snapshot` panicked), and a state holding more than
/// the cap keeps its entries and refuses new keys until it is under the cap again.
#[test]
fn a_cap_given_to_a_state_with_entries_counts_them() {
    let now = Instant::now();
    let s = state();
    assert!(s.record_crash("a", now).is_retry());
    let s = s.with_max_entries(1);
    assert_eq!(s.len(), 1);
    assert_eq!(s.record_crash("b", now), full(2 * WINDOW));
    s.record_success(&"a");
    assert_eq!(s.len(), 0);
    assert!(s.record_crash("b", now).is_retry());
    assert_eq!(s.snapshot(now).len(), 1);

    let s = state();
    assert!(s.record_crash("a", now).is_retry());
    assert!(s.record_crash("b", now).is_retry());
    let s = s.with_max_entries(1);
    assert_eq!(s.len(), 2, "a state over its new cap keeps what it holds");
    assert_eq!(s.record_crash("c", now), full(2 * WINDOW));
    assert_eq!(
        s.record_crash("a", now),
        refuse(WINDOW),
        "tracked keys stay exact"
    );
    s.record_success(&"a");
    assert_eq!(
        s.record_crash("c", now),
        full(2 * WINDOW),
        "one entry is still the cap"
    );
    s.record_success(&"b");
    assert!(s.record_crash("c", now).is_retry());

    // No cap at all (`usize::MAX`) keeps the count too.
    let s = state();
    assert!(s.record_crash("a", now).is_retry());
    let s = s.with_max_entries(usize::MAX);
    assert_eq!((s.len(), s.max_entries()), (1, None));
    s.record_success(&"a");
    assert!(s.is_empty());
}

/// Automatic purges trust the instant of the insert that runs them, keeping entries whose
/// window started within two windows of it. So a call up to one window behind an earlier one
/// still finds its window, exactly as the spec would; a call further behind may find it
/// purged, and its crash opens a new window (the spec, which never purges, would refuse it).
#[test]
fn an_instant_far_behind_an_automatic_purge_finds_its_window_purged() {
    let run = |ahead: Duration| {
        let now = Instant::now();
        let s =
            BackendRecoveryState::<u32>::with_policy(BackendRecoveryPolicy::new(BACKOFF, WINDOW));
        assert!(s.record_crash(0, now).is_retry());
        // Enough new keys at `now + ahead` for an automatic purge (after 1,024 inserts).
        for key in 1..=1_100 {
            assert!(s.record_crash(key, now + ahead).is_retry());
        }
        (s.record_crash(0, now + secs(1)), s.metrics().entries_purged)
    };
    assert_eq!(
        run(WINDOW),
        (refuse(WINDOW - secs(1)), 0),
        "one window behind: nothing purged, exact"
    );
    assert_eq!(
        run(secs(40 * 365 * 86_400)),
        (retry(BACKOFF, 1), 1),
        "decades behind: key 0 purged, a new window"
    );
}
