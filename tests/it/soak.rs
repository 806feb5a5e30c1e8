//! Soak: 8 threads churn keys, report crashes (with many duplicate reports), record successes,
//! check gates and purge, in phases separated by a barrier. At each barrier, with every thread
//! quiet, `len()` must be within its documented bound and the counters must add up.
//!
//! A few seconds per `cargo test`; `BACKEND_RECOVERY_LONG=1` runs for about 60 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};

const THREADS: usize = 8;
const OPS_PER_PHASE: u64 = 500;
/// The test clock advances this much per operation...
const TICK: Duration = Duration::from_micros(1);
/// ...so a window spans 5,000 operations.
const WINDOW: Duration = Duration::from_millis(5);
/// Enough phases that, without purging, the churned keys would exceed the bound several times.
const MIN_PHASES: u64 = 60;
/// Keys reported by incarnation by every thread: where duplicate reports come from.
const HOT_KEYS: u64 = 64;

/// What a thread did, to compare with the state's counters.
#[derive(Default, Debug)]
struct Tally {
    reports: u64,
    retries_seen: u64,
    refusals_seen: u64,
    successes: u64,
}

#[test]
fn soak_stays_bounded_and_counts_every_report_once() {
    let long = std::env::var_os("BACKEND_RECOVERY_LONG").is_some();
    let run_for = if long {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(3)
    };
    let base = Instant::now();
    let state = BackendRecoveryState::<u64>::with_policy(BackendRecoveryPolicy::new(
        Duration::from_micros(100),
        WINDOW,
    ));
    let clock = AtomicU64::new(0);
    let next_new_key = AtomicU64::new(HOT_KEYS);
    let barrier = Barrier::new(THREADS + 1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let tallies = Mutex::new(Vec::new());

    // Entries surviving an automatic purge started within two windows of its instant, and every
    // instant of a phase lies within the phase's span of the clock: so at most this many.
    let window_ops = (WINDOW.as_nanos() / TICK.as_nanos()) as usize;
    let phase_ops = THREADS * OPS_PER_PHASE as usize;
    let survivors = 2 * window_ops + phase_ops + 1;
    // The documented bound, `2 * max(2E, E + 1024)` plus 32 entries per inserting thread (a
    // state without a cap checks whether a purge is due every 32 inserts of a thread).
    let bound = 2 * (2 * survivors).max(survivors + 1024) + 32 * THREADS;

    std::thread::scope(|scope| {
        for thread in 0..THREADS as u64 {
            let (state, clock, next_new_key) = (&state, &clock, &next_new_key);
            let (barrier, stop, tallies) = (&barrier, &stop, &tallies);
            scope.spawn(move || {
                let mut tally = Tally::default();
                let mut rng = fastrand::Rng::with_seed(thread);
                let mut phase = 0u64;
                loop {
                    barrier.wait();
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    for _ in 0..OPS_PER_PHASE {
                        let now = base + TICK * clock.fetch_add(1, Ordering::Relaxed) as u32;
                        let hot = rng.u64(..HOT_KEYS);
                        let decision = match rng.u64(..100) {
                            // Every thread reports the hot key's death in this phase: duplicates.
                            0..=39 => Some(state.record_crash_of(hot, phase, now).decision),
                            40..=59 => {
                                let key = next_new_key.fetch_add(1, Ordering::Relaxed);
                                Some(state.record_crash_of(key, 0, now).decision)
                            }
                            60..=74 => {
                                let key = next_new_key.fetch_add(1, Ordering::Relaxed);
                                Some(state.record_crash(key, now))
                            }
                            75..=79 => {
                                state.record_success(&hot);
                                tally.successes += 1;
                                None
                            }
                            80..=98 => {
                                let _ = state.status(&hot, now);
                                None
                            }
                            _ => {
                                state.purge_expired(now - WINDOW);
                                None
                            }
                        };
                        if let Some(decision) = decision {
                            tally.reports += 1;
                            if decision.is_retry() {
                                tally.retries_seen += 1;
                            } else {
                                tally.refusals_seen += 1;
                            }
                        }
                    }
                    phase += 1;
                    barrier.wait();
                }
                tallies.lock().unwrap().push(tally);
            });
        }

        let started = Instant::now();
        let mut phases = 0;
        let mut highest = 0;
        // The first phase that ended over the bound: the workers are stopped before it is
        // asserted, since a panic here would leave them waiting at the barrier for ever.
        let mut over = None;
        loop {
            barrier.wait(); // release a phase
            barrier.wait(); // every thread finished it: the state is quiet
            phases += 1;
            let len = state.len();
            highest = highest.max(len);
            if len > bound {
                over = Some((len, phases));
            }
            if over.is_some() || (phases >= MIN_PHASES && started.elapsed() >= run_for) {
                stop.store(true, Ordering::SeqCst);
                barrier.wait();
                break;
            }
        }
        if let Some((len, phase)) = over {
            panic!("len {len} over the bound {bound} after phase {phase}");
        }
        let churned = next_new_key.load(Ordering::Relaxed) - HOT_KEYS;
        eprintln!(
            "soak: {phases} phases, {churned} new keys, highest len {highest}, bound {bound}, {:?}",
            state.metrics()
        );
        // The bound is not vacuous: without purging the table would have outgrown it.
        assert!(churned as usize > bound, "only {churned} keys churned");
    });

    let tallies = tallies.into_inner().unwrap();
    let total = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let m = state.metrics();
    // Every report is exactly one of: retry granted, refused, coalesced duplicate.
    assert_eq!(m.crash_reports(), total(|t| t.reports));
    assert_eq!(m.capacity_refusals, 0);
    // Duplicates replay a decision of either kind; all others were counted by kind.
    let (retries, refusals) = (total(|t| t.retries_seen), total(|t| t.refusals_seen));
    assert!(m.retries_granted <= retries && retries <= m.retries_granted + m.duplicates_coalesced);
    assert!(m.refusals <= refusals && refusals <= m.refusals + m.duplicates_coalesced);
    assert!(
        m.duplicates_coalesced > 0,
        "the soak produced no duplicate reports"
    );
    assert!(m.entries_purged > 0);
    assert_eq!(m.successes, total(|t| t.successes));
}
