//! Instructions per step of one throughput workload on one thread, for callgrind: instruction
//! counts, unlike times, do not move with the machine's load, so this is how the stores' costs
//! per operation are compared on a noisy machine.
//!
//! ```sh
//! cargo bench --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='*instructions::measured*' \
//!     target/release/deps/instructions-<hash> ours uniform-100k 1000000
//! ```
//!
//! Arguments: the store (`ours`, `mutex` or `dashmap-entry`), the workload (as named in the
//! throughput bench) and the number of steps. The store is pre-populated and warmed up by a
//! quarter as many steps first, outside `measured`, so callgrind's "Collected" total divided by
//! the steps is the cost of one step. Run as `cargo bench` (which passes its own flags), it runs
//! every workload briefly on every store and prints the time per step: a smoke run.

// Shared with the throughput bench, which uses all of them; this one uses a part.
#[allow(dead_code)]
mod stores;
#[allow(dead_code, unused_imports)]
mod workloads;

use std::hint::black_box;
use std::time::Instant;

use backend_recovery::BackendRecoveryState;

use stores::{DashMapEntryStore, Key, MutexStore, ReportedEntry, Store};
use workloads::{Lane, Workload};

/// The steps callgrind counts: not inlined, so `--toggle-collect` can name it.
#[inline(never)]
fn measured<S: Store>(store: &S, lane: &mut Lane, steps: u64) {
    lane.run(store, steps, |answer| {
        black_box(answer);
    });
}

/// Runs `steps` steps of `workload` on a new `S`; nanoseconds per step.
fn run<S: Store>(workload: Workload, steps: u64) -> f64 {
    let store = S::with_policy(workloads::policy());
    let mut lanes = workload.prepare(&store, 1);
    let lane = &mut lanes[0];
    // The warm-up calls the lane directly, never through `measured`, so callgrind skips it.
    lane.run(&store, steps / 4, |answer| {
        black_box(answer);
    });
    let start = Instant::now();
    measured(&store, lane, steps);
    start.elapsed().as_nanos() as f64 / steps as f64
}

fn run_named(store: &str, workload: Workload, steps: u64) -> Option<f64> {
    match store {
        "ours" => Some(run::<BackendRecoveryState<Key>>(workload, steps)),
        // The baselines keep incarnations only where the workload reports by them.
        "mutex" if workload.reports_incarnations() => {
            Some(run::<MutexStore<ReportedEntry>>(workload, steps))
        }
        "dashmap-entry" if workload.reports_incarnations() => {
            Some(run::<DashMapEntryStore<ReportedEntry>>(workload, steps))
        }
        "mutex" => Some(run::<MutexStore>(workload, steps)),
        "dashmap-entry" => Some(run::<DashMapEntryStore>(workload, steps)),
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` (and its `--test` smoke mode) passes only flags: then a short pass of all.
    if args.iter().any(|arg| !arg.starts_with("--")) {
        let workload = args
            .get(1)
            .and_then(|name| Workload::ALL.into_iter().find(|w| w.name() == name));
        let steps = args.get(2).and_then(|steps| steps.parse().ok());
        let nanos = match (args.first(), workload, steps) {
            (Some(store), Some(workload), Some(steps)) => run_named(store, workload, steps),
            _ => None,
        };
        match nanos {
            Some(nanos) => println!("{} {}: {nanos:.0} ns per step", args[0], args[1]),
            None => {
                let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                eprintln!(
                    "usage: instructions ours|mutex|dashmap-entry {} STEPS",
                    names.join("|")
                );
                std::process::exit(2);
            }
        }
        return;
    }
    for workload in Workload::ALL {
        for store in ["ours", "mutex", "dashmap-entry"] {
            let nanos = run_named(store, workload, 20_000).expect("a known store");
            println!(
                "instructions: {store} {}: {nanos:.0} ns per step",
                workload.name()
            );
        }
    }
}
