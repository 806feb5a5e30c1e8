//! Linearizability of the real crate on real threads.
//!
//! Each history: 3 threads × 6 random operations (`record_crash`, `record_crash_of`,
//! `record_success`, `status`, `purge_expired`) on 2 keys, with instants from a shared test
//! clock that every operation advances, so instants are out of order between threads. Each
//! operation's invocation and response get numbers from one global sequence, which orders them
//! in real time. The checker then searches for a sequential order of the reference model,
//! consistent with that real-time order, that gives every recorded response.
//!
//! Half the histories start warm: both keys crashed once, and every thread has checked both
//! often enough to have them in its read cache, so its operations take the cache's lock-free
//! path until a success or purge removes the key.
//!
//! Linearizability is local, so each key's sub-history is checked on its own. `purge_expired`
//! spans keys and is not atomic across them (it takes one shard at a time), so it is projected
//! onto every key's sub-history as that key's purge at its instant; its returned count, a sum
//! over keys, is not checked. 2,000 histories per `cargo test`; set
//! `BACKEND_RECOVERY_LONG=1` for 50,000. For every 400 of them, one must have operations that
//! overlap in time; the run goes on (up to ten times as long) until enough have, or fails: the
//! checker would then have tested no concurrency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendRecoveryStatus,
};

use crate::reference::ReferenceModel;

const THREADS: usize = 3;
const OPS_PER_THREAD: usize = 6;
const KEYS: u8 = 2;

#[derive(Clone, Copy, Debug)]
enum Call {
    Crash {
        key: u8,
        at: Instant,
    },
    CrashOf {
        key: u8,
        incarnation: u64,
        at: Instant,
    },
    Success {
        key: u8,
    },
    Status {
        key: u8,
        at: Instant,
    },
    Purge {
        at: Instant,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Response {
    Decision(BackendRecoveryDecision),
    Status(BackendRecoveryStatus),
    Done,
}

#[derive(Clone, Debug)]
struct Event {
    call: Call,
    response: Response,
    invoked: u64,
    returned: u64,
}

impl Call {
    /// The key the call touches, `None` for one that touches all keys.
    fn key(&self) -> Option<u8> {
        match *self {
            Call::Crash { key, .. }
            | Call::CrashOf { key, .. }
            | Call::Success { key }
            | Call::Status { key, .. } => Some(key),
            Call::Purge { .. } => None,
        }
    }

    fn apply_to_state(&self, state: &BackendRecoveryState<u8>) -> Response {
        match *self {
            Call::Crash { key, at } => Response::Decision(state.record_crash(key, at)),
            Call::CrashOf {
                key,
                incarnation,
                at,
            } => Response::Decision(state.record_crash_of(key, incarnation, at).decision),
            Call::Success { key } => {
                state.record_success(&key);
                Response::Done
            }
            Call::Status { key, at } => Response::Status(state.status(&key, at)),
            Call::Purge { at } => {
                state.purge_expired(at);
                Response::Done
            }
        }
    }

    fn apply_to_model(&self, model: &mut ReferenceModel<u8>) -> Response {
        match *self {
            Call::Crash { key, at } => Response::Decision(model.record_crash(key, at)),
            Call::CrashOf {
                key,
                incarnation,
                at,
            } => Response::Decision(model.record_crash_of(key, incarnation, at).decision),
            Call::Success { key } => {
                model.record_success(&key);
                Response::Done
            }
            Call::Status { key, at } => Response::Status(model.status(&key, at)),
            Call::Purge { at } => {
                model.purge_expired(at);
                Response::Done
            }
        }
    }
}

/// Whether some order of `events` consistent with their real-time order, run on `model`, gives
/// every recorded response. Depth-first over the operations that may go next, remembering
/// (done set, model) pairs already refuted.
fn linearizable(events: &[Event], model: ReferenceModel<u8>) -> bool {
    assert!(events.len() <= 64, "the done set is a u64 bit mask");
    let all = if events.len() == 64 {
        u64::MAX
    } else {
        (1u64 << events.len()) - 1
    };
    let mut refuted = HashSet::new();
    search(events, 0, all, model, &mut refuted)
}

fn search(
    events: &[Event],
    done: u64,
    all: u64,
    model: ReferenceModel<u8>,
    refuted: &mut HashSet<(u64, ReferenceModel<u8>)>,
) -> bool {
    if done == all {
        return true;
    }
    if refuted.contains(&(done, model.clone())) {
        return false;
    }
    let pending = |i: usize| done & (1 << i) == 0;
    for (i, event) in events.iter().enumerate().filter(|(i, _)| pending(*i)) {
        // It may go next only if no pending operation returned before it was invoked.
        let minimal = events
            .iter()
            .enumerate()
            .all(|(j, other)| j == i || !pending(j) || other.returned > event.invoked);
        if !minimal {
            continue;
        }
        let mut next = model.clone();
        let response = event.call.apply_to_model(&mut next);
        if response == event.response && search(events, done | (1 << i), all, next, refuted) {
            return true;
        }
    }
    refuted.insert((done, model));
    false
}

/// Each key's sub-history, purges projected onto every key.
fn per_key(events: &[Event]) -> Vec<Vec<Event>> {
    (0..KEYS)
        .map(|key| {
            events
                .iter()
                .filter(|e| e.call.key().is_none_or(|k| k == key))
                .cloned()
                .collect()
        })
        .collect()
}

fn policy(seed: u64) -> BackendRecoveryPolicy {
    let mut policy =
        BackendRecoveryPolicy::new(Duration::from_micros(50), Duration::from_millis(1));
    // Half the histories allow two retries per window.
    policy.retries_per_window = 1 + (seed % 2) as u32;
    policy
}

/// Makes `call` on `state`, numbering its invocation and response in `sequence`.
fn record(call: Call, state: &BackendRecoveryState<u8>, sequence: &AtomicU64) -> Event {
    // SeqCst: the sequence must order events as real time does.
    let invoked = sequence.fetch_add(1, Ordering::SeqCst);
    let response = call.apply_to_state(state);
    let returned = sequence.fetch_add(1, Ordering::SeqCst);
    Event {
        call,
        response,
        invoked,
        returned,
    }
}

/// Gate checks of each key a thread makes before a warm history starts: more than enough for
/// the read cache to admit a key a thread looks up alone (22 lookups on a fresh thread; see the
/// README's testing section), so the history's operations go through each thread's cache until
/// a success or purge removes the key.
const WARM_UP_CHECKS: usize = 64;

/// Runs one history on real threads and returns its events. A `warm` history starts with one
/// crash of each key (recorded, before any thread starts) and every thread checking both keys
/// [`WARM_UP_CHECKS`] times before the start line (not recorded: a check changes no state).
fn run_history(
    seed: u64,
    base: Instant,
    state: &BackendRecoveryState<u8>,
    warm: bool,
) -> Vec<Event> {
    let sequence = AtomicU64::new(0);
    // Nanoseconds after `base`; every operation advances it by up to 0.4 ms, so a history
    // spans a few 1 ms windows.
    let clock = AtomicU64::new(0);
    // A spinning start line: parked threads wake one by one and would rarely overlap.
    let ready = AtomicU64::new(0);
    let mut events = Vec::with_capacity(THREADS * OPS_PER_THREAD + usize::from(KEYS));
    if warm {
        for key in 0..KEYS {
            events.push(record(Call::Crash { key, at: base }, state, &sequence));
        }
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS as u64)
            .map(|thread| {
                let (sequence, clock, ready) = (&sequence, &clock, &ready);
                scope.spawn(move || {
                    // Seeded, so that a failing history can be replayed by seed.
                    let mut rng =
                        fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(thread));
                    let mut events = Vec::with_capacity(OPS_PER_THREAD);
                    if warm {
                        for _ in 0..WARM_UP_CHECKS {
                            for key in 0..KEYS {
                                state.status(&key, base);
                            }
                        }
                    }
                    ready.fetch_add(1, Ordering::SeqCst);
                    while ready.load(Ordering::SeqCst) < THREADS as u64 {
                        std::thread::yield_now();
                    }
                    for _ in 0..OPS_PER_THREAD {
                        // A random pause, so the threads' operations interleave differently.
                        for _ in 0..rng.u64(..64) {
                            std::hint::spin_loop();
                        }
                        let at = base
                            + Duration::from_nanos(
                                clock.fetch_add(rng.u64(..400_000), Ordering::SeqCst),
                            );
                        let key = rng.u64(..u64::from(KEYS)) as u8;
                        let call = match rng.u64(..10) {
                            0..=2 => Call::Crash { key, at },
                            3..=5 => Call::CrashOf {
                                key,
                                incarnation: rng.u64(..3),
                                at,
                            },
                            6 => Call::Success { key },
                            7..=8 => Call::Status { key, at },
                            _ => Call::Purge { at },
                        };
                        events.push(record(call, state, sequence));
                    }
                    events
                })
            })
            .collect();
        for worker in workers {
            events.extend(worker.join().unwrap());
        }
    });
    events
}

#[test]
fn random_concurrent_histories_are_linearizable() {
    let histories: u64 = if std::env::var_os("BACKEND_RECOVERY_LONG").is_some() {
        50_000
    } else {
        2_000
    };
    // How much real concurrency the run saw: scheduling decides how much, but histories whose
    // operations never overlap in time would pass a checker of sequential answers alone. Alone
    // on a 2-core machine, over 90% of them overlap; with every other test of the suite and
    // four spinning processes competing for the cores, as few as 1 in 600 did. So a run goes
    // on past `histories` (up to ten times as many) until enough have overlapped.
    let wanted = histories / MIN_OVERLAPPING_ONE_IN;
    let mut overlapping: u64 = 0;
    let mut seed = 0;
    while seed < histories || (overlapping < wanted && seed < histories * 10) {
        let base = Instant::now();
        let policy = policy(seed);
        let state = BackendRecoveryState::<u8>::with_policy(policy);
        // Every other pair of seeds: warm caches (the policy alternates with every seed).
        let warm = (seed / 2) % 2 == 1;
        let events = run_history(seed, base, &state, warm);
        overlapping += u64::from(events.iter().any(|a| {
            events
                .iter()
                .any(|b| a.invoked < b.invoked && b.invoked < a.returned)
        }));
        for (key, history) in per_key(&events).into_iter().enumerate() {
            assert!(
                linearizable(&history, ReferenceModel::new(policy)),
                "history {seed}, key {key} has no sequential explanation:\n{history:#?}"
            );
        }
        seed += 1;
    }
    eprintln!("{overlapping} of {seed} histories had overlapping operations");
    assert!(
        overlapping >= wanted,
        "only {overlapping} of {seed} histories had overlapping operations (at least \
         {wanted} expected): the threads no longer run at once"
    );
}

/// For each this many histories of a run, one must have operations that overlap in time.
const MIN_OVERLAPPING_ONE_IN: u64 = 400;

/// Hand-written histories the checker must judge right: it accepts what some order explains
/// and rejects what none does.
#[test]
fn checker_rejects_non_linearizable_histories() {
    let base = Instant::now();
    let policy = policy(0);
    let model = || ReferenceModel::new(policy);
    let crash = Call::Crash { key: 0, at: base };
    let retry = Response::Decision(BackendRecoveryDecision::Retry {
        retry_after: policy.retry_backoff,
        attempt: 1,
    });
    let refuse = Response::Decision(BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after: policy.budget_window,
    });
    let event = |call, response: &Response, invoked, returned| Event {
        call,
        response: response.clone(),
        invoked,
        returned,
    };

    // Two first crashes of one key both granted the retry: the double Retry that a lost
    // compare-and-swap would produce. No order explains it, overlapping or not.
    let double_retry = [event(crash, &retry, 0, 1), event(crash, &retry, 2, 3)];
    assert!(!linearizable(&double_retry, model()));
    let overlapping_double_retry = [event(crash, &retry, 0, 2), event(crash, &retry, 1, 3)];
    assert!(!linearizable(&overlapping_double_retry, model()));

    // Overlapping, the refusal may come first in real time: some order explains it.
    let overlapping = [event(crash, &refuse, 0, 3), event(crash, &retry, 1, 2)];
    assert!(linearizable(&overlapping, model()));
    // Not overlapping, it may not: the refusal returned before the retry was even invoked.
    let refusal_first = [event(crash, &refuse, 0, 1), event(crash, &retry, 2, 3)];
    assert!(!linearizable(&refusal_first, model()));

    // A gate check that misses a crash which completed before it began.
    let stale_status = [
        event(crash, &retry, 0, 1),
        event(
            Call::Status { key: 0, at: base },
            &Response::Status(BackendRecoveryStatus::Healthy),
            2,
            3,
        ),
    ];
    assert!(!linearizable(&stale_status, model()));
    // ... which is fine if the check overlapped the crash.
    let concurrent_status = [
        event(crash, &retry, 0, 3),
        event(
            Call::Status { key: 0, at: base },
            &Response::Status(BackendRecoveryStatus::Healthy),
            1,
            2,
        ),
    ];
    assert!(linearizable(&concurrent_status, model()));
}
