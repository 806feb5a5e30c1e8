//! Persistent worker threads, so that criterion times operations and not thread start-up.
//!
//! One thread per lane, started once per bench (before warm-up). For each criterion sample the
//! main thread publishes a step count and opens the `start` barrier; every worker runs that many
//! steps of its lane and meets the main thread at the `done` barrier. The time from opening
//! `start` to passing `done` is the sample; it includes one barrier round trip, a few
//! microseconds against samples of milliseconds.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
                        lane.run(&*store, steps, |answer| {
                            black_box(answer);
                        });
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
        started.elapsed()
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
