//! How long this machine takes to pass a cache line from one core to another and back, slice
//! by slice over some seconds: not a bench of the crate, a reading of the machine the benches
//! run on.
//!
//! Why: on the 2-vCPU VM the benches were written on, ours' samples at 2 threads switch
//! between two levels (about 150 and 350 ns per step on uniform-100k) in spells of a second or
//! more, and a run's ratio to the mutex is decided by how many samples fall in slow spells
//! (`docs/throughput-investigation.md`). This probe shows what goes with them: the cross-core
//! round trip itself switches between about 90 and 500 ns in spells of seconds, while two
//! threads that share nothing run at a steady speed. A step pays for every line it takes from
//! the other core (a shard's lock word, an entry the other thread updated last), and in those
//! spells for its other misses too.
//!
//! Two threads take turns on one atomic: each waits for the value's parity to be its own and
//! then increments it. Every 200 ms the main thread prints the mean nanoseconds per round trip
//! (two transfers of the line) in that slice, then a summary.
//!
//! ```sh
//! cargo bench --bench round_trip -- 20    # 20 seconds; `cargo bench` alone runs 1 second
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

const SLICE: Duration = Duration::from_millis(200);

fn main() {
    // `cargo bench` passes only flags; a bare number is the seconds to run.
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1);
    // Each round trip adds 2; the main thread reads it every 200 ms, too seldom to matter.
    let line = CachePadded::new(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let mut slices = Vec::new();
    thread::scope(|scope| {
        for me in 0..2u64 {
            let (line, stop) = (&line, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let value = line.load(Ordering::Acquire);
                    if value % 2 == me {
                        line.store(value + 1, Ordering::Release);
                    }
                }
            });
        }
        let rounds = || line.load(Ordering::Relaxed) / 2;
        let (mut last_rounds, mut last_at) = (rounds(), Instant::now());
        for _ in 0..seconds * 5 {
            thread::sleep(SLICE);
            let (now_rounds, now_at) = (rounds(), Instant::now());
            let done = now_rounds - last_rounds;
            if done > 0 {
                let nanos = (now_at - last_at).as_nanos() as f64 / done as f64;
                print!("{nanos:.0} ");
                // Shown as it comes: stdout is line-buffered.
                let _ = std::io::stdout().flush();
                slices.push(nanos);
            }
            (last_rounds, last_at) = (now_rounds, now_at);
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!();
    if slices.is_empty() {
        println!("round_trip: no round trips measured (run for at least 1 second)");
        return;
    }
    slices.sort_by(f64::total_cmp);
    // Quartiles rather than a count of "slow" slices: a run may stay in one spell throughout.
    let at = |fraction: f64| slices[((slices.len() - 1) as f64 * fraction).round() as usize];
    print!(
        "round_trip: ns per cross-core round trip over {} slices of 200 ms: ",
        slices.len()
    );
    println!(
        "min {:.0}, quartiles {:.0} / {:.0} / {:.0}, max {:.0}",
        at(0.0),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0)
    );
}
