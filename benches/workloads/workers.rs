//! Persistent worker threads, so that criterion times operations and not thread start-up.
//!
//! One thread per lane, started once per bench (before warm-up). For each criterion sample the
//! main thread publishes a step count and opens the `start` barrier; every worker runs that many
//! steps of its lane and meets the main thread at the `done` barrier. The time from opening
//! `start` to passing `done` is the sample; it includes one barrier round trip, a few
//! microseconds against samples of milliseconds. A worker whose lane panics still meets the
//! others at both barriers and the main thread then fails the bench, rather than waiting forever
//! for it (checked by hand with a panic injected into a lane: exit 101, not a hang).

use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};

use super::{Workload, policy};
use crate::stores::Store;

/// What the main thread and the workers share.
#[derive(Debug)]
struct Shared {
    start: Barrier,
    done: Barrier,
    /// Steps each worker runs in the current sample.
    steps: AtomicU64,
    stop: AtomicBool,
    /// Set by a worker whose lane panicked. It still meets the others at every barrier, so
    /// the main thread fails the bench instead of waiting for it forever.
    failed: AtomicBool,
}

/// A store, pre-populated for a workload, and one parked thread per lane.
#[derive(Debug)]
pub(crate) struct Workers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Builds a fresh `S`, prepares `workload` on it for `threads` threads and parks them.
    pub(crate) fn start<S: Store>(workload: Workload, threads: usize) -> Self {
        let store = Arc::new(S::with_policy(policy()));
        let lanes = workload.prepare(&*store, threads);
        let shared = Arc::new(Shared {
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            steps: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let handles = lanes
            .into_iter()
            .map(|mut lane| {
                let (shared, store) = (Arc::clone(&shared), Arc::clone(&store));
                thread::spawn(move || {
                    loop {
                        shared.start.wait();
                        // Relaxed: the barrier orders these loads after the main thread's stores.
                        if shared.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let steps = shared.steps.load(Ordering::Relaxed);
                        let run = panic::catch_unwind(AssertUnwindSafe(|| {
                            lane.run(&*store, steps, |answer| {
                                black_box(answer);
                            });
                        }));
                        if run.is_err() {
                            // The panic message is already printed; the main thread fails.
                            shared.failed.store(true, Ordering::Relaxed);
                        }
                        shared.done.wait();
                    }
                })
            })
            .collect();
        Workers { shared, handles }
    }

    /// Wall time for every worker to run `steps` steps of its lane.
    pub(crate) fn time(&self, steps: u64) -> Duration {
        // Relaxed: the barrier publishes it to the workers.
        self.shared.steps.store(steps, Ordering::Relaxed);
        let started = Instant::now();
        self.shared.start.wait();
        self.shared.done.wait();
        let elapsed = started.elapsed();
        // Relaxed: the barrier orders the workers' stores before this load.
        assert!(
            !self.shared.failed.load(Ordering::Relaxed),
            "a worker panicked (its message is above)"
        );
        elapsed
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.start.wait();
        for handle in self.handles.drain(..) {
            // A worker that panicked has already printed why; the bench is lost either way.
            let _ = handle.join();
        }
    }
}

/// The criterion settings of the throughput bench: about 4.5 s per bench. The
/// chart comes from `benches/chart.py`; criterion's own plots would double the run.
pub(crate) fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .without_plots()
}

/// One bench: `S` under `workload` on `threads` threads, named `<S::NAME>/<threads>` in `group`.
pub(crate) fn bench<S: Store>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    workload: Workload,
    threads: usize,
) {
    // Started on first use, so that benches filtered out on the command line cost nothing, and
    // kept across warm-up and samples: the store's state evolves as one long run.
    let mut workers = None;
    group.bench_function(BenchmarkId::new(S::NAME, threads), |b| {
        let workers = workers.get_or_insert_with(|| Workers::start::<S>(workload, threads));
        b.iter_custom(|steps| workers.time(steps));
    });
}
