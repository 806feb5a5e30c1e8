//! Throughput of `BackendRecoveryState` against what brokers use today, on 1, 2, 4 and 8 threads.
//!
//! What is measured: store operations per second (`Throughput::Elements`), summed over all
//! threads, for three implementations of the same API ([`stores`]):
//!
//! - **ours**: the crate, `BackendRecoveryState<u64>`;
//! - **mutex**: the spec's `HashMap` behind one `parking_lot::Mutex`;
//! - **dashmap-entry**: the spec's entry in a `DashMap`, updated through `entry()`;
//!
//! under eight workloads ([`workloads::Workload`], where each says what it models): **hot-key**
//! (every thread crashes one key), **uniform-1k** and **uniform-100k** (crashes spread over 1,000
//! or 100,000 existing keys), **gate** (99 status checks to 1 crash over 1,000 keys), **churn**
//! (fresh keys inserted, crashed again, removed by a success), and three shaped as a broker's
//! load: **broker-gate** (999 checks of any of 10,000 backends to 1 crash of the 1% that
//! crash-loop, the only keys with entries), **crash-storm** (every thread reports each death of
//! one backend through `record_crash_of`, with the same incarnation) and **refused-gate** (every
//! thread checks one backend whose budget is spent). For crash-storm the baselines keep each
//! key's last counted incarnation and deduplicate under their own lock
//! ([`stores::ReportedEntry`]). Per-call latency of the gate check while another thread purges is
//! measured apart, by `benches/gate_latency.rs`.
//!
//! How: threads are started once per bench and wait at a barrier (`workloads/workers.rs`);
//! `iter_custom` times a round in which every thread runs criterion's iteration count of steps.
//! Keys and instants come from tables precomputed per thread, never from `Instant::now()` or a
//! PRNG inside the timed region. Before anything is timed, the baselines are checked to answer
//! every workload, and a short sequence of successes and purges, exactly as ours does on one
//! thread, so the three do the same work.
//!
//! Run the matrix with `cargo bench --bench throughput` (about 8 minutes on 2 cores), a smoke run
//! with `cargo bench --bench throughput -- --test`, then `python3 benches/chart.py` for
//! `docs/throughput.svg` and the table of `docs/benchmarks.md`. Report ratios between
//! implementations from one run, not absolute figures: the machines are noisy.

mod stores;
mod workloads;

use backend_recovery::BackendRecoveryState;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use stores::spec_entry::{SpecEntry, Value};
use stores::{DashMapEntryStore, Key, MutexStore, OursWithoutMetrics, ReportedEntry, Store};
use workloads::{
    Answer, Workload, answers, assert_agree, bench, criterion_config, incarnations, lifecycle,
};

/// Thread counts of the matrix; 8 oversubscribes a 2-core machine, where a global lock convoys.
const THREADS: [usize; 4] = [1, 2, 4, 8];

/// The matrix: 8 workloads x 4 thread counts x 3 stores = 96 benches of about 4.5 s each
/// (`workloads::criterion_config`), about 7.5 minutes on 2 cores (and `metrics_overhead`'s 8
/// more). `--test` runs each bench once instead, in a few seconds in all.
fn throughput(c: &mut Criterion) {
    for workload in Workload::ALL {
        let mut group = c.benchmark_group(workload.name());
        for threads in THREADS {
            group.throughput(Throughput::Elements(
                threads as u64 * workload.ops_per_step(),
            ));
            // The three stores back to back, so that drift in the machine's load between them is
            // as small as the matrix allows.
            bench::<BackendRecoveryState<Key>>(&mut group, workload, threads);
            if workload.reports_incarnations() {
                baselines::<ReportedEntry>(&mut group, workload, threads);
            } else {
                baselines::<SpecEntry>(&mut group, workload, threads);
            }
        }
        group.finish();
    }
}

/// The two baselines, keeping `V` per key.
fn baselines<V: Value>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    workload: Workload,
    threads: usize,
) {
    bench::<MutexStore<V>>(group, workload, threads);
    bench::<DashMapEntryStore<V>>(group, workload, threads);
}

/// What metrics cost on the crash path: ours with and without counters, back to back, on the
/// crash-only workloads (hot-key: every crash refused after the first; uniform-1k: spread),
/// on 1 and 2 threads. Groups `metrics-<workload>`; the chart ignores them.
fn metrics_overhead(c: &mut Criterion) {
    for workload in [Workload::HotKey, Workload::Uniform1k] {
        let mut group = c.benchmark_group(format!("metrics-{}", workload.name()));
        for threads in [1, 2] {
            group.throughput(Throughput::Elements(
                threads as u64 * workload.ops_per_step(),
            ));
            bench::<BackendRecoveryState<Key>>(&mut group, workload, threads);
            bench::<OursWithoutMetrics>(&mut group, workload, threads);
        }
        group.finish();
    }
}

/// Not a bench: checks, before any is timed, that on one thread the baselines answer three
/// windows of every workload exactly as ours does, and a short sequence of successes and purges
/// too ([`workloads::lifecycle`]); prints each workload's mix of answers.
fn baselines_agree_with_ours(_: &mut Criterion) {
    for workload in Workload::ALL {
        let ours = answers::<BackendRecoveryState<Key>>(workload);
        let (mutex, dashmap) = if workload.reports_incarnations() {
            (
                answers::<MutexStore<ReportedEntry>>(workload),
                answers::<DashMapEntryStore<ReportedEntry>>(workload),
            )
        } else {
            (
                answers::<MutexStore>(workload),
                answers::<DashMapEntryStore>(workload),
            )
        };
        agree(workload.name(), &ours, &mutex, &dashmap);
        eprintln!("{:<13} answers: {}", workload.name(), mix(&ours));
    }
    let ours = lifecycle::<BackendRecoveryState<Key>>();
    let (mutex, dashmap) = (lifecycle::<MutexStore>(), lifecycle::<DashMapEntryStore>());
    agree("successes and purges", &ours, &mutex, &dashmap);
    let ours = incarnations::<BackendRecoveryState<Key>>();
    let mutex = incarnations::<MutexStore<ReportedEntry>>();
    let dashmap = incarnations::<DashMapEntryStore<ReportedEntry>>();
    agree("reports by incarnation", &ours, &mutex, &dashmap);
}

/// Both baselines' answers to `what` against ours.
fn agree(what: &str, ours: &[Answer], mutex: &[Answer], dashmap: &[Answer]) {
    assert_agree(MutexStore::<SpecEntry>::NAME, what, ours, mutex);
    assert_agree(DashMapEntryStore::<SpecEntry>::NAME, what, ours, dashmap);
}

/// Shares of each kind of answer, e.g. `retry 33%, refuse 67%`.
fn mix(answers: &[Answer]) -> String {
    use backend_recovery::BackendRecoveryStatus::{BackingOff, Healthy, Recovering, Unavailable};
    let kinds = [
        "retry",
        "refuse",
        "status healthy",
        "status recovering",
        "status unavailable",
        "status backing off",
    ];
    let mut counts = [0usize; 6];
    for answer in answers {
        let kind = match answer {
            Answer::Crash(decision) if decision.is_retry() => 0,
            Answer::Crash(_) => 1,
            Answer::Status(Healthy) => 2,
            Answer::Status(Recovering { .. }) => 3,
            Answer::Status(Unavailable { .. }) => 4,
            Answer::Status(BackingOff { .. }) => 5,
            Answer::Status(_) => unreachable!("a status this bench does not know"),
            Answer::Purged(_) => unreachable!("lanes do not report purges"),
        };
        counts[kind] += 1;
    }
    kinds
        .iter()
        .zip(counts)
        .filter(|&(_, count)| count > 0)
        .map(|(kind, count)| format!("{kind} {:.1}%", 100.0 * count as f64 / answers.len() as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = baselines_agree_with_ours, throughput, metrics_overhead
}
criterion_main!(benches);
