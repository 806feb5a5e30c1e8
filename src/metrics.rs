//! Counters of what the state decided, kept per thread so that counting never becomes the
//! contention point the sharded map exists to avoid.
//!
//! Each thread that touches a state gets its own cache-padded block of counters for that state
//! (`thread_local::ThreadLocal`), which only that thread writes: an increment is a plain load and
//! store, no locked instruction, no shared cache line. [`Metrics::read`] sums the blocks of every
//! thread that ever counted; a block outlives its thread, so nothing counted is lost.
//!
//! The counters use std's atomics even under `--cfg loom`: no decision depends on them, so loom
//! need not explore them.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use thread_local::ThreadLocal;

/// What one state has decided since it was built, summed over every thread.
///
/// Every crash report is counted exactly once among `retries_granted`, `refusals`,
/// `capacity_refusals` and `duplicates_coalesced`; [`crash_reports`](Self::crash_reports) is their
/// sum.
///
/// While other threads are recording, a read sums per-thread counters one after another: each
/// counter is exact for what it has seen, the set is not one atomic cut.
///
/// Plain data; see [`crash_reports`](Self::crash_reports) for its one way to panic.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use backend_recovery::BackendRecoveryState;
///
/// let state = BackendRecoveryState::<&str>::new();
/// let now = Instant::now();
/// state.record_crash("search", now);
/// state.record_crash("search", now);
/// state.record_success("search");
/// let metrics = state.metrics();
/// assert_eq!((metrics.retries_granted, metrics.refusals, metrics.successes), (1, 1, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BackendRecoveryMetrics {
    /// Crashes answered with `Retry`.
    pub retries_granted: u64,
    /// Crashes answered with `Refuse` because the backend's budget was spent.
    pub refusals: u64,
    /// Crashes of untracked keys refused because the state was full.
    pub capacity_refusals: u64,
    /// Reports of an incarnation already counted, answered without counting again.
    pub duplicates_coalesced: u64,
    /// Calls to `record_success`.
    pub successes: u64,
    /// Entries removed by purging, explicit or automatic.
    pub entries_purged: u64,
}

impl BackendRecoveryMetrics {
    /// Every crash report, however it was answered. The counters wrap, and so does their sum.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash_of("search", 1, now);
    /// state.record_crash_of("search", 1, now); // a duplicate
    /// state.record_crash_of("search", 2, now); // refused
    /// let metrics = state.metrics();
    /// assert_eq!(metrics.duplicates_coalesced, 1);
    /// assert_eq!(metrics.crash_reports(), 3);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn crash_reports(&self) -> u64 {
        // Wrapping, as the counters do: fields written by hand cannot make it panic.
        self.retries_granted
            .wrapping_add(self.refusals)
            .wrapping_add(self.capacity_refusals)
            .wrapping_add(self.duplicates_coalesced)
    }
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    RetriesGranted,
    Refusals,
    CapacityRefusals,
    DuplicatesCoalesced,
    Successes,
    EntriesPurged,
}

const COUNTERS: usize = 6;

/// One thread's counters for one state.
#[derive(Default)]
struct Block([AtomicU64; COUNTERS]);

/// Per-thread counters of one state, or nothing at all when metrics are switched off.
pub(crate) struct Metrics {
    blocks: Option<ThreadLocal<CachePadded<Block>>>,
}

impl Metrics {
    pub(crate) fn enabled() -> Self {
        Metrics {
            blocks: Some(ThreadLocal::new()),
        }
    }

    pub(crate) fn disabled() -> Self {
        Metrics { blocks: None }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, amount: u64) {
        let Some(blocks) = &self.blocks else { return };
        // `get` first, as the read cache does: it can be inlined, where `get_or_default` is a
        // call.
        let block = blocks.get().unwrap_or_else(|| blocks.get_or_default());
        let cell = &block.0[counter as usize];
        // Only this thread writes its block, so a load and a store cannot lose an increment;
        // Relaxed because readers need each counter's value, not an order between counters.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(amount),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn read(&self) -> BackendRecoveryMetrics {
        let mut sums = [0u64; COUNTERS];
        for block in self.blocks.iter().flat_map(|blocks| blocks.iter()) {
            for (sum, cell) in sums.iter_mut().zip(&block.0) {
                *sum = sum.wrapping_add(cell.load(Ordering::Relaxed));
            }
        }
        let [
            retries_granted,
            refusals,
            capacity_refusals,
            duplicates_coalesced,
            successes,
            entries_purged,
        ] = sums;
        BackendRecoveryMetrics {
            retries_granted,
            refusals,
            capacity_refusals,
            duplicates_coalesced,
            successes,
            entries_purged,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.read()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let metrics = Metrics::enabled();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        metrics.add(Counter::RetriesGranted, 1);
                        metrics.add(Counter::DuplicatesCoalesced, 2);
                    }
                });
            }
        });
        metrics.add(Counter::EntriesPurged, 7);
        let read = metrics.read();
        assert_eq!(read.retries_granted, 4_000);
        assert_eq!(read.duplicates_coalesced, 8_000);
        assert_eq!(read.entries_purged, 7);
        assert_eq!(read.crash_reports(), 12_000);
    }

    #[test]
    fn disabled_metrics_count_nothing() {
        let metrics = Metrics::disabled();
        metrics.add(Counter::Refusals, 1);
        assert_eq!(metrics.read(), BackendRecoveryMetrics::default());
    }
}
