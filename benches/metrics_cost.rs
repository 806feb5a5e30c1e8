//! What the metrics cost on the crash path, in instructions, which unlike time do not move with
//! the machine's load: 1,000,000 crashes with counters and 1,000,000 without, on one hot key or
//! spread over 1,000 keys, each pass in its own process so that callgrind counts it alone.
//!
//! ```sh
//! cargo bench --bench metrics_cost --no-run   # prints the binary's path
//! valgrind --tool=callgrind target/release/deps/metrics_cost-<hash> with 1
//! valgrind --tool=callgrind target/release/deps/metrics_cost-<hash> without 1
//! ```
//!
//! (arguments: `with` or `without`, then the number of keys). Compare the "Collected" totals;
//! the loop around the calls is the same in both. Run as `cargo bench` it just does one pass
//! of each kind and prints how many retries each granted.

use std::hint::black_box;
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};

const CRASHES: u64 = 1_000_000;

/// Retries granted over `CRASHES` crashes, time advancing 1 µs per crash over 10 ms windows.
fn crashes(with_metrics: bool, keys: u64) -> u64 {
    let policy = BackendRecoveryPolicy::new(Duration::from_millis(1), Duration::from_millis(10));
    let state = BackendRecoveryState::<u64>::with_policy(policy);
    let state = if with_metrics {
        state
    } else {
        state.without_metrics()
    };
    let base = Instant::now();
    let mut retries = 0;
    for i in 0..CRASHES {
        let key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % keys;
        let decision = state.record_crash(black_box(key), base + Duration::from_micros(i));
        retries += u64::from(decision.is_retry());
    }
    retries
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys = args.get(1).and_then(|k| k.parse().ok()).unwrap_or(1);
    match args.first().map(String::as_str) {
        Some("with") => println!("with metrics: {} retries", crashes(true, keys)),
        Some("without") => println!("without metrics: {} retries", crashes(false, keys)),
        // `cargo bench` (and its `--test` smoke mode) passes its own flags: one pass of each.
        _ => {
            let (with, without) = (crashes(true, 1_000), crashes(false, 1_000));
            assert_eq!(with, without, "metrics changed a decision");
            println!("metrics_cost: {with} retries with and without metrics");
        }
    }
}
