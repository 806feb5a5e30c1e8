//! Gate latency under purge: how long single `status` calls take on one thread while another
//! thread keeps inserting fresh keys and purging expired ones.
//!
//! What it models: a broker's Hello path checking backends while the same state is being
//! written in bulk, new backends crashing for the first time and `purge_expired` sweeping the
//! windows that closed. The mutex baseline (the spec's `HashMap` behind one
//! `parking_lot::Mutex`, `benches/stores/mutex.rs`) purges under its one lock, so a check that
//! arrives during a purge waits for all of it; ours purges one shard's write guard at a time,
//! and a check of a key without an entry usually takes no guard at all. The tail is what
//! differs, so the percentiles are what is reported: p50, p99, p99.9 and the maximum, per call.
//! Criterion measures throughput, not per-call latency, hence a binary of its own.
//!
//! The load, in simulated time (the policy's 30 s window): the writer crashes fresh keys in
//! order, [`LIVE`] of them per window, and purges every [`PURGE_EVERY`] inserts at the instant
//! of its latest insert, so about [`LIVE`] entries are present and each purge removes about
//! [`PURGE_EVERY`]. Before it starts, the store holds a window's worth of keys. The checker
//! makes one `status` call every [`CHECK_INTERVAL`] (a Hello arriving every 4 µs), of keys
//! drawn from the last two windows' worth of inserts, at the instant of the writer's latest
//! insert: about half have entries (most `Recovering`), half were purged or never written yet.
//! Keys and draws are precomputed.
//!
//! Two latencies per call (`Instant::now()`, whose own cost is in every figure, the same for both
//! stores): the **call** itself, from when it starts to when it returns; and the **response**,
//! from when it was due to when it returned. A call held up by a purge delays the calls due
//! behind it, as requests queue in a broker, and only the response shows that: timed from when
//! each call starts, a thread blocked for a whole purge reports one slow call per purge however
//! long the purge, too few for the percentiles to see. The response also shows every time the
//! checker's thread was descheduled, so it needs a quiet machine; the call much less so.
//!
//! Run with `cargo bench --bench gate_latency` (three interleaved rounds per store, a few
//! seconds each), or `cargo bench --bench gate_latency -- --quick` (or with `GATE_LATENCY_QUICK`
//! set) for the smoke run of `.ci/run`, one short round each. The figures move with the
//! machine's load: compare the two stores within one run.

// Shared with the throughput bench, which uses all of them; this one uses a part.
#[allow(dead_code, unused_imports)]
mod stores;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};

use stores::{Key, MutexStore, Store};

/// Keys the writer inserts per budget window: about how many entries are present.
const LIVE: u64 = 1 << 16;

/// Inserts between two purges of the writer.
const PURGE_EVERY: u64 = 4096;

/// The writer publishes how far it got every this many inserts (a shared write, kept rare).
const PUBLISH_EVERY: u64 = 64;

/// The checker's schedule: one call due every this long.
const CHECK_INTERVAL: Duration = Duration::from_micros(4);

/// How long one round runs.
#[derive(Clone, Copy, Debug)]
struct Size {
    /// Timed checks per round (after the untimed warm-up).
    checks: usize,
    /// Rounds per store, interleaved.
    rounds: usize,
}

const FULL: Size = Size {
    checks: 2_000_000,
    rounds: 3,
};
const QUICK: Size = Size {
    checks: 100_000,
    rounds: 1,
};

/// The instant of the writer's insert number `index`: [`LIVE`] inserts per window.
fn instant(base: Instant, window: Duration, index: u64) -> Instant {
    let nanos = u128::from(index) * window.as_nanos() / u128::from(LIVE);
    base + Duration::from_nanos(u64::try_from(nanos).expect("a bench run spans years at most"))
}

/// One round's latencies (each sorted, nanoseconds) and what the writer did meanwhile.
struct Round {
    /// From the call's start to its return.
    call: Vec<u64>,
    /// From when the call was due to its return.
    response: Vec<u64>,
    inserts: u64,
    purges: u64,
    purged: usize,
}

/// One round: a fresh `S` holding a window's worth of keys, a writer thread, and `checks`
/// timed checks on this thread.
fn round<S: Store>(size: Size, seed: u64) -> Round {
    let policy = BackendRecoveryPolicy::default();
    let window = policy.budget_window;
    let base = Instant::now();
    let store = Arc::new(S::with_policy(policy));
    for key in 0..LIVE {
        store.record_crash(key, instant(base, window, key));
    }
    let published = Arc::new(AtomicU64::new(LIVE));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, published, stop) = (
            Arc::clone(&store),
            Arc::clone(&published),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            let (mut next, mut purges, mut purged) = (LIVE, 0, 0);
            // Relaxed: a flag to stop, ordered by the join.
            while !stop.load(Ordering::Relaxed) {
                let now = instant(base, window, next);
                black_box(store.record_crash(next, now));
                next += 1;
                if next % PUBLISH_EVERY == 0 {
                    // Relaxed: only a number for the checker's draws.
                    published.store(next, Ordering::Relaxed);
                }
                if next % PURGE_EVERY == 0 {
                    purged += store.purge_expired(now);
                    purges += 1;
                }
            }
            (next - LIVE, purges, purged)
        })
    };
    // Draws precomputed: offsets below the writer's position, over two windows' worth of keys.
    let mut rng = SplitMix64(seed);
    let warm_up = size.checks / 10;
    let draws: Vec<u64> = (0..warm_up + size.checks)
        .map(|_| rng.below(2 * LIVE) + 1)
        .collect();
    let mut call = Vec::with_capacity(size.checks);
    let mut response = Vec::with_capacity(size.checks);
    let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let mut due = Instant::now();
    for (index, &offset) in draws.iter().enumerate() {
        let position = published.load(Ordering::Relaxed);
        let key: Key = position.saturating_sub(offset);
        let now = instant(base, window, position);
        // Wait for the call's turn, unless it is already late.
        let mut started = Instant::now();
        while started < due {
            std::hint::spin_loop();
            started = Instant::now();
        }
        black_box(store.status(black_box(&key), now));
        let returned = Instant::now();
        if index >= warm_up {
            call.push(nanos(returned - started));
            response.push(nanos(returned - due));
        }
        due += CHECK_INTERVAL;
    }
    stop.store(true, Ordering::Relaxed);
    let (inserts, purges, purged) = writer.join().expect("the writer does not panic");
    call.sort_unstable();
    response.sort_unstable();
    Round {
        call,
        response,
        inserts,
        purges,
        purged,
    }
}

/// The `q` quantile of sorted `nanos`, nearest rank.
fn quantile(nanos: &[u64], q: f64) -> u64 {
    let rank = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
    nanos[rank - 1]
}

/// p50, p99, p99.9 and the maximum.
fn percentiles(nanos: &[u64]) -> [u64; 4] {
    [
        quantile(nanos, 0.5),
        quantile(nanos, 0.99),
        quantile(nanos, 0.999),
        *nanos.last().expect("at least one check"),
    ]
}

fn print_row(name: &str, what: &str, nanos: &[u64]) {
    let [p50, p99, p999, max] = percentiles(nanos);
    println!(
        "gate-latency {name:<6} {what:<22} p50 {p50:>7} ns  p99 {p99:>8} ns  p99.9 {p999:>9} ns  max {max:>10} ns  ({} checks)",
        nanos.len()
    );
}

/// SplitMix64, as the throughput bench's lanes draw keys.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--quick` (or the environment variable) asks for the smoke
    // run.
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var_os("GATE_LATENCY_QUICK").is_some();
    let size = if quick { QUICK } else { FULL };
    println!(
        "gate-latency: {} checks per round, one due every {CHECK_INTERVAL:?}, {} round(s) per \
         store, interleaved; {LIVE} keys per window, a purge every {PURGE_EVERY} inserts",
        size.checks, size.rounds
    );
    // Per store: all rounds' call and response latencies.
    let mut pooled: [(&str, Vec<u64>, Vec<u64>); 2] = [
        ("ours", Vec::new(), Vec::new()),
        ("mutex", Vec::new(), Vec::new()),
    ];
    for index in 0..size.rounds {
        let seed = index as u64;
        for (name, call, response) in &mut pooled {
            let round = match *name {
                "ours" => round::<BackendRecoveryState<Key>>(size, seed),
                _ => round::<MutexStore>(size, seed),
            };
            let what = format!("round {}", index + 1);
            print_row(name, &format!("{what} call"), &round.call);
            print_row(name, &format!("{what} response"), &round.response);
            println!(
                "             writer: {} inserts, {} purges removing {} entries",
                round.inserts, round.purges, round.purged
            );
            call.extend(round.call);
            response.extend(round.response);
        }
    }
    for (name, call, response) in &mut pooled {
        call.sort_unstable();
        response.sort_unstable();
        if size.rounds > 1 {
            print_row(name, "all call", call);
            print_row(name, "all response", response);
        }
    }
    let [
        (_, ours_call, ours_response),
        (_, mutex_call, mutex_response),
    ] = &pooled;
    for (what, ours, mutex) in [
        ("call", ours_call, mutex_call),
        ("response", ours_response, mutex_response),
    ] {
        let (ours, mutex) = (percentiles(ours), percentiles(mutex));
        let ratio = |index: usize| mutex[index] as f64 / ours[index].max(1) as f64;
        println!(
            "gate-latency mutex / ours, {what}: p50 {:.2}x, p99 {:.2}x, p99.9 {:.2}x \
             (above 1: ours is faster)",
            ratio(0),
            ratio(1),
            ratio(2)
        );
    }
}
