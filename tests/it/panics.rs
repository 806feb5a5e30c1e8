//! Keys whose `Hash`, `Eq`, `Clone` or `Drop` panic: the panic reaches the caller (caught here
//! with `catch_unwind` around every call), and the state stays fully usable. Automatic purges
//! go on, `len()` stays within its documented bound, a cap's count stays exact, and every other
//! key keeps its exact answers.
//!
//! Not covered: a `Hash` that panics while hashbrown rehashes a shard in place (the keys here
//! whose `Hash` panics never get into the table, so no rehash hashes them).

use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendRecoveryStatus,
};

/// The trait methods of [`Key`] that can be made to panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Hash,
    Eq,
    Clone,
    Drop,
}

const OPS: [Op; 4] = [Op::Hash, Op::Eq, Op::Clone, Op::Drop];

/// One test's switches: while an op's switch is on, every fragile key of that op panics in it.
/// Each test has its own, as the tests of this binary run at once.
#[derive(Debug)]
struct Fuse {
    lit: [AtomicBool; 4],
    fired: [AtomicU64; 4],
}

impl Fuse {
    const fn new() -> Self {
        Fuse {
            lit: [const { AtomicBool::new(false) }; 4],
            fired: [const { AtomicU64::new(0) }; 4],
        }
    }

    fn set(&self, op: Op, lit: bool) {
        self.lit[op as usize].store(lit, Ordering::SeqCst);
    }

    fn set_all(&self, lit: bool) {
        for op in OPS {
            self.set(op, lit);
        }
    }

    fn fired(&self, op: Op) -> u64 {
        self.fired[op as usize].load(Ordering::SeqCst)
    }

    /// Panics if `op`'s switch is on. Without the panic hook (`resume_unwind`): the thousands
    /// of panics would flood the output.
    fn check(&self, op: Op) {
        if self.lit[op as usize].load(Ordering::SeqCst) {
            self.fired[op as usize].fetch_add(1, Ordering::SeqCst);
            resume_unwind(Box::new(KeyPanicked(op)));
        }
    }
}

/// The payload of a key's panic.
#[derive(Debug)]
struct KeyPanicked(#[allow(dead_code)] Op);

/// A key that may be fragile in one op. Equal and hashed by `id` alone, so a plain key with a
/// fragile key's id finds its entry.
#[derive(Debug)]
struct Key {
    id: u64,
    fragile: Option<Op>,
    fuse: &'static Fuse,
}

impl Key {
    fn plain(id: u64, fuse: &'static Fuse) -> Key {
        Key {
            id,
            fragile: None,
            fuse,
        }
    }

    fn fragile(id: u64, op: Op, fuse: &'static Fuse) -> Key {
        Key {
            id,
            fragile: Some(op),
            fuse,
        }
    }

    fn check(&self, op: Op) {
        if self.fragile == Some(op) {
            self.fuse.check(op);
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.check(Op::Hash);
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    /// Panics (when lit) comparing a fragile key with its fragile twin, that is on a lookup of
    /// a stored fragile key by a fragile key; never against another key, so that lookups of
    /// other keys that share its probe group never panic.
    fn eq(&self, other: &Key) -> bool {
        if self.id == other.id && self.fragile == other.fragile {
            self.check(Op::Eq);
        }
        self.id == other.id
    }
}

impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Key {
        self.check(Op::Clone);
        Key { ..*self }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // A second panic while unwinding would abort.
        if !std::thread::panicking() {
            self.check(Op::Drop);
        }
    }
}

/// `f()`, or `None` if a key panicked in it. Any other panic is the test's own: re-raised.
fn caught<T>(f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(payload) if payload.is::<KeyPanicked>() => None,
        Err(payload) => resume_unwind(payload),
    }
}

const THREADS: u64 = 4;
const BACKOFF: Duration = Duration::from_millis(1);
const WINDOW: Duration = Duration::from_secs(1);
/// Each phase's instant is this far after the last: more than the automatic purge's age (two
/// windows), so every entry of earlier phases is purgeable, and none of the phase's own.
const PHASE: Duration = Duration::from_secs(3);
/// `SLACK` and `CHECK_EVERY` of `src/occupancy.rs`, as `len()`'s docs state them.
const SLACK: usize = 1024;
const CHECK_EVERY: usize = 32;

fn state(cap: Option<usize>) -> BackendRecoveryState<Key> {
    let state = BackendRecoveryState::with_policy(BackendRecoveryPolicy::new(BACKOFF, WINDOW));
    match cap {
        Some(cap) => state.with_max_entries(cap),
        None => state,
    }
}

fn first_crash() -> BackendRecoveryDecision {
    BackendRecoveryDecision::Retry {
        retry_after: BACKOFF,
        attempt: 1,
    }
}

fn refused(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after,
    }
}

/// `len()`'s documented bound, `2 * max(2 * E, E + 1024)` plus 32 per inserting thread, where
/// `E` is what survived the last led purge.
fn documented_bound(survivors: usize) -> usize {
    2 * (2 * survivors).max(survivors + SLACK) + CHECK_EVERY * THREADS as usize
}

/// A led automatic purge in which a key's `Drop` panics still ends its lead: later inserts lead
/// purges again, and the threshold follows the entries that survive them.
///
/// Phase 0 raises the threshold (its keys all live: 2,100 of them take it to 4,096) and leaves
/// one key whose `Drop` panics. From phase 1 on, each phase's instant makes every
/// earlier entry purgeable, so the first purge of phase 1 is led by an insert at 4,096 entries,
/// and it drops a fragile key and unwinds. Then 400 keys a phase: once the lead after that one
/// has run, `E` is at most a phase's keys, and `len()` stays within `documented_bound(400)`.
/// Were the lead's flag left set, no insert would lead a purge again: only helpers, which purge
/// once the count reaches twice the old threshold (8,192), far past that bound.
#[test]
fn automatic_purges_go_on_after_a_key_panics_in_a_led_purge() {
    for cap in [None, Some(1_000_000)] {
        static FUSE_UNCAPPED: Fuse = Fuse::new();
        static FUSE_CAPPED: Fuse = Fuse::new();
        let fuse = if cap.is_none() {
            &FUSE_UNCAPPED
        } else {
            &FUSE_CAPPED
        };
        let state = state(cap);
        let base = Instant::now();
        const FIRST_PHASE_KEYS: u64 = 2_100 / THREADS;
        const PHASE_KEYS: u64 = 100;
        const PHASES: u64 = 60;
        /// From this phase on, the lead after the panicking one has run (it falls due within
        /// about 4,096 / 400 = 11 phases of phase 1): `E` is at most a phase's keys.
        const SETTLED: u64 = 25;
        let bound = documented_bound((PHASE_KEYS * THREADS) as usize);
        let next_id = AtomicU64::new(0);
        let barrier = Barrier::new(THREADS as usize);
        let worst = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (state, next_id, barrier) = (&state, &next_id, &barrier);
                    scope.spawn(move || {
                        let mut worst_settled = 0;
                        for phase in 0..PHASES {
                            let now = base + PHASE * phase as u32;
                            let keys = if phase == 0 && thread == 0 {
                                let id = next_id.fetch_add(1, Ordering::Relaxed);
                                let fragile = Key::fragile(id, Op::Drop, fuse);
                                let decision = caught(|| state.record_crash(fragile, now));
                                assert_eq!(decision, Some(first_crash()));
                                FIRST_PHASE_KEYS
                            } else if phase == 0 {
                                FIRST_PHASE_KEYS
                            } else {
                                PHASE_KEYS
                            };
                            if thread == 0 && phase == 1 {
                                fuse.set(Op::Drop, true);
                            }
                            barrier.wait();
                            for _ in 0..keys {
                                let id = next_id.fetch_add(1, Ordering::Relaxed);
                                // A purge this insert runs may drop a fragile key and unwind
                                // after the crash was counted: the answer is then lost.
                                let decision =
                                    caught(|| state.record_crash(Key::plain(id, fuse), now));
                                if let Some(decision) = decision {
                                    assert_eq!(decision, first_crash());
                                }
                                if phase >= SETTLED {
                                    worst_settled = worst_settled.max(state.len());
                                }
                            }
                            barrier.wait();
                        }
                        worst_settled
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap())
                .max()
                .unwrap()
        });
        assert!(
            fuse.fired(Op::Drop) >= 1,
            "no purge dropped a fragile key (cap {cap:?})"
        );
        assert!(
            worst <= bound,
            "cap {cap:?}: len() reached {worst} after phase {SETTLED}, over the bound {bound}: \
             automatic purges stopped leading after a key panicked in one"
        );
        fuse.set_all(false);
    }
}

/// Four threads run exact histories on their own plain keys while keys whose `Hash`, `Eq`,
/// `Clone` or `Drop` panic are crashed, checked, reported and forgotten around them, phase
/// after phase (each phase's instant makes the earlier phases' entries purgeable). Every plain
/// key's answers are the spec's; each op's panics happened; when quiet, `len()` is the number of
/// entries, and with a cap, the state holds exactly `cap` keys after a purge, no more, no fewer.
#[test]
fn keys_that_panic_leave_every_other_key_exact_and_the_count_exact() {
    const CAP: usize = 4_096;
    for cap in [None, Some(CAP)] {
        static FUSE_UNCAPPED: Fuse = Fuse::new();
        static FUSE_CAPPED: Fuse = Fuse::new();
        let fuse = if cap.is_none() {
            &FUSE_UNCAPPED
        } else {
            &FUSE_CAPPED
        };
        fuse.set_all(true);
        let state = state(cap);
        let base = Instant::now();
        const PHASES: u64 = 12;
        const PLAIN_KEYS: u64 = 150;
        let next_id = AtomicU64::new(0);
        let barrier = Barrier::new(THREADS as usize);
        let worst_len = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (state, next_id, barrier) = (&state, &next_id, &barrier);
                    scope.spawn(move || {
                        let mut worst_len = 0;
                        for phase in 0..PHASES {
                            let now = base + PHASE * phase as u32;
                            barrier.wait();
                            for i in 0..PLAIN_KEYS {
                                plain_history(state, next_id, fuse, now, i % 2 == 0);
                                let id = next_id.fetch_add(1, Ordering::Relaxed);
                                fragile_history(state, id, OPS[i as usize % 4], fuse, now);
                                worst_len = worst_len.max(state.len());
                            }
                        }
                        worst_len
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap())
                .max()
                .unwrap()
        });
        for op in OPS {
            assert!(fuse.fired(op) > 0, "cap {cap:?}: no key panicked in {op:?}");
        }
        fuse.set_all(false);

        // Each phase adds at most 2 entries per round of each thread (a plain key left crashed
        // and a fragile one), and the previous phases' are purgeable: `E <= per_phase`.
        let per_phase = (2 * PLAIN_KEYS * THREADS) as usize;
        assert!(
            worst_len <= documented_bound(per_phase),
            "cap {cap:?}: len() reached {worst_len}"
        );
        let later = base + PHASE * PHASES as u32;
        assert_eq!(
            state.len(),
            state.snapshot(later).len(),
            "cap {cap:?}: the count is not the number of entries"
        );
        let Some(cap) = cap else { continue };
        // Exact: after a purge of everything, exactly `cap` new keys get a place.
        state.purge_expired(later + PHASE);
        assert_eq!(state.len(), 0, "an entry outlived the purge");
        let id = next_id.load(Ordering::Relaxed);
        for n in 0..cap as u64 {
            let decision = state.record_crash(Key::plain(id + n, fuse), later + PHASE);
            assert_eq!(decision, first_crash(), "key {n} of {cap} refused");
        }
        let over = state.record_crash(Key::plain(id + cap as u64, fuse), later + PHASE);
        assert!(
            matches!(
                over,
                BackendRecoveryDecision::Refuse {
                    reason: BackendRecoveryRefusalReason::CapacityExhausted,
                    ..
                }
            ),
            "{over:?}"
        );
    }
}

/// A plain key's whole life at `now`, every answer the spec's: a first crash retried, a second
/// refused for the window, the gate closed, and then either forgotten by a success or, with
/// `forget` false, left for a purge.
fn plain_history(
    state: &BackendRecoveryState<Key>,
    next_id: &AtomicU64,
    fuse: &'static Fuse,
    now: Instant,
    forget: bool,
) {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let key = || Key::plain(id, fuse);
    assert_eq!(state.record_crash(key(), now), first_crash(), "key {id}");
    assert_eq!(state.record_crash(key(), now), refused(WINDOW), "key {id}");
    assert_eq!(
        state.record_crash_of(key(), 7, now).decision,
        refused(WINDOW),
        "key {id}"
    );
    assert_eq!(
        state.record_crash_of(key(), 7, now).decision,
        refused(WINDOW),
        "key {id}: a duplicate report replays the decision"
    );
    let gate = state.status(&key(), now);
    assert_eq!(
        gate,
        BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: WINDOW,
        },
        "key {id}"
    );
    if forget {
        state.record_success(&key());
        assert_eq!(
            state.status(&key(), now),
            BackendRecoveryStatus::Healthy,
            "key {id}"
        );
    }
}

/// A key fragile in `op`, used so that `op` runs on it (and panics) in the state's code. No
/// key fragile in `Drop` is left in the state (nor in a read cache): a purge that other keys'
/// inserts run would drop it, and their calls would unwind (the first test's case).
fn fragile_history(
    state: &BackendRecoveryState<Key>,
    id: u64,
    op: Op,
    fuse: &'static Fuse,
    now: Instant,
) {
    let key = || Key::fragile(id, op, fuse);
    let twin = || Key::plain(id, fuse);
    match op {
        // Hashed before anything else: never gets in.
        Op::Hash => {
            assert_eq!(caught(|| state.record_crash(key(), now)), None);
            assert_eq!(caught(|| state.status(&key(), now)), None);
            assert_eq!(state.status(&twin(), now), BackendRecoveryStatus::Healthy);
        }
        // The first crash inserts it; every later lookup by a fragile twin panics, and changes
        // nothing: the gate is still that of one crash.
        Op::Eq => {
            assert_eq!(
                caught(|| state.record_crash(key(), now)),
                Some(first_crash())
            );
            assert_eq!(caught(|| state.record_crash(key(), now)), None);
            assert_eq!(
                caught(|| state.record_crash_of(key(), 1, now).decision),
                None
            );
            assert_eq!(caught(|| state.status(&key(), now)), None);
            assert!(after_one_crash(&state.status(&twin(), now)), "key {id}");
        }
        // Cloned when the state caches it (a key looked up often).
        Op::Clone => {
            assert_eq!(
                caught(|| state.record_crash(key(), now)),
                Some(first_crash())
            );
            for _ in 0..30 {
                let gate = caught(|| state.status(&twin(), now));
                assert!(gate.is_none_or(|gate| after_one_crash(&gate)), "key {id}");
            }
        }
        // The second crash is counted, then drops the key it was given and panics; the success
        // removes the entry, then drops the stored key and panics.
        Op::Drop => {
            assert_eq!(
                caught(|| state.record_crash(key(), now)),
                Some(first_crash())
            );
            assert_eq!(caught(|| state.record_crash(key(), now)), None);
            assert_eq!(
                state.status(&twin(), now).retry_after(),
                Some(WINDOW),
                "key {id}: the second crash was counted"
            );
            assert_eq!(caught(|| state.record_success(&twin())), None);
            assert_eq!(
                state.status(&twin(), now),
                BackendRecoveryStatus::Healthy,
                "key {id}: the success removed it"
            );
        }
    }
}

/// The gate of a key with one crash counted: backing off, or recovering once the backoff is over.
fn after_one_crash(gate: &BackendRecoveryStatus) -> bool {
    matches!(
        gate,
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 1,
            ..
        } | BackendRecoveryStatus::Recovering {
            crashes_in_window: 1,
            ..
        }
    )
}
