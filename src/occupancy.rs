//! How many entries the table holds, the optional cap on it, and when to purge by itself.
//!
//! The spec keeps an entry until a success, forever. Here every insert first reserves a place
//! ([`Occupancy::try_reserve`], under the shard's write guard, so the count is exact when the
//! state is quiescent), and once the count reaches a threshold an inserting thread purges (no
//! background thread). After each such purge the threshold becomes
//! `max(2 * survivors, survivors + SLACK)`, so purging costs O(1) amortised per insert.
//!
//! How the count is kept depends on the cap. With one, it is a single counter reserved by
//! compare-and-swap, exact at every moment, because a refusal depends on it. Without one, each
//! thread keeps its own net count (its inserts minus its removals) in its own cache line and
//! `len()` sums them: inserting and removing then write no shared memory (a shared counter would
//! be a read-modify-write on one line from every thread, twice per churned key), and a thread
//! checks the sum only every [`CHECK_EVERY`] of its inserts. No decision depends on that count,
//! only when purges run; under `--cfg loom` the state always keeps the exact counter.
//!
//! One thread leads a purge at a time. Others keep inserting meanwhile; once the count reaches
//! twice the threshold before the lead is done, every inserting thread also purges after each
//! insert (or, without a cap, after each of its checks), so the excess past that point is a
//! few entries per inserting thread. Hence
//!
//! > `len() <= 2 * max(2 * E, E + SLACK) + CHECK_EVERY * T`,
//!
//! where `E` is the number of entries that survived the last led purge and `T` the number of
//! threads inserting at once. An automatic purge keeps every entry whose window started within
//! two budget windows of the purging crash's instant (see `state.rs`), so `E` counts at most the
//! keys whose window started in the two windows around that instant.

#[cfg(not(loom))]
use std::sync::atomic::AtomicIsize;

#[cfg(not(loom))]
use crossbeam_utils::CachePadded;
#[cfg(not(loom))]
use thread_local::ThreadLocal;

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Inserts allowed between automatic purges however small the table: keeps tiny tables from
/// purging on every insert.
pub(crate) const SLACK: usize = 1024;

/// Without a cap, a thread sums the per-thread counts to see whether a purge is due once every
/// this many of its own inserts.
#[cfg_attr(loom, allow(dead_code))] // loom builds keep the exact count
pub(crate) const CHECK_EVERY: usize = 32;

/// What an inserting thread must do about purging.
#[derive(Debug)]
pub(crate) enum PurgeDue<'a> {
    /// Nothing.
    No,
    /// Purge, then [`finish`](PurgeLead::finish) the lead.
    Lead(PurgeLead<'a>),
    /// Purge too: a lead is purging but the table reached twice the threshold meanwhile.
    Help,
}

/// The lead of an automatic purge, held while it runs. Dropping it ends the lead as
/// [`PurgeLead::finish`] does, also when a key's `Hash`, `Eq` or `Drop` panics during the purge:
/// without that, the `purging` flag would stay set, no thread would lead a purge again, and
/// the threshold would never be set from the survivors again.
#[derive(Debug)]
#[must_use = "dropping the lead ends it at once"]
pub(crate) struct PurgeLead<'a> {
    occupancy: &'a Occupancy,
}

impl PurgeLead<'_> {
    /// Ends the lead after its purge: sets the next threshold from the entries that survived.
    pub(crate) fn finish(self) {
        // The work is `Drop`'s, so that an unwinding purge does it too.
    }
}

impl Drop for PurgeLead<'_> {
    fn drop(&mut self) {
        self.occupancy.purged();
    }
}

/// Entry count, capacity and the automatic-purge threshold.
///
/// Orderings: each counter is one location updated by read-modify-writes, whose coherence is
/// all the logic needs; the entries themselves are ordered by the table's shard locks. So every
/// operation is `Relaxed`. What keeps a lead's survivor count (read in [`Occupancy::purged`])
/// from missing the removals of a purge running beside it is the table's: a purge reads each
/// shard's purge bound with `Acquire`, which another purge stores with `Release` after its
/// removals from that shard (an insert's `fetch_min` on it, a read-modify-write, keeps that
/// store's release sequence), or takes the shard's lock. The loom model
/// `loom-tests/tests/automatic_purge.rs` shows why: with the bounds `Relaxed`, a lead that skips
/// a shard another purge (a helper's, or the lead's before it) has just emptied counts the
/// removed entry and sets the next threshold from it. (A thread
/// that wins the flag just after a lead lowered it may still read the old threshold and lead a
/// purge that finds nothing: a wasted scan, no wrong answer.)
#[derive(Debug)]
pub(crate) struct Occupancy {
    entries: Count,
    max_entries: usize,
    purge_at: AtomicUsize,
    /// [`SLACK`], except in the loom models of the automatic purge, which cannot insert a
    /// thousand keys (see [`Occupancy::with_slack`]).
    slack: usize,
    /// `true` while a thread leads a purge.
    purging: AtomicBool,
    /// Tick before which purging cannot free a place, learnt from the last purge a full state
    /// ran: spares a refused insert the scan of the whole table.
    no_purge_before: AtomicU64,
}

/// The entry count: exact with a cap, per thread without (see the module's note).
#[derive(Debug)]
enum Count {
    Exact(AtomicUsize),
    /// Boxed: a `ThreadLocal` is 512 bytes of bucket pointers.
    #[cfg(not(loom))]
    PerThread(Box<ThreadLocal<CachePadded<LocalCount>>>),
}

/// One thread's share of the count. Only its thread writes it (a load and a store, no locked
/// instruction); `len()` reads every thread's. std atomics: never built under loom.
#[cfg(not(loom))]
#[derive(Debug, Default)]
struct LocalCount {
    /// Entries this thread inserted minus entries it removed; negative when it removed entries
    /// other threads inserted.
    net: AtomicIsize,
    /// This thread's inserts since it last checked whether a purge is due.
    since_check: AtomicUsize,
}

#[cfg(not(loom))]
impl LocalCount {
    fn add(&self, delta: isize) {
        let net = self.net.load(Ordering::Relaxed);
        self.net.store(net.wrapping_add(delta), Ordering::Relaxed);
    }
}

impl Count {
    fn new(max_entries: usize) -> Self {
        #[cfg(not(loom))]
        if max_entries == usize::MAX {
            return Count::PerThread(Box::default());
        }
        let _ = max_entries;
        Count::Exact(AtomicUsize::new(0))
    }
}

impl Occupancy {
    /// No entries; at most `max_entries` (use `usize::MAX` for no cap).
    pub(crate) fn new(max_entries: usize) -> Self {
        Occupancy {
            entries: Count::new(max_entries),
            max_entries,
            purge_at: AtomicUsize::new(SLACK),
            slack: SLACK,
            purging: AtomicBool::new(false),
            no_purge_before: AtomicU64::new(0),
        }
    }

    /// The same count and purge schedule under a new cap: for a state given a cap after it
    /// holds entries. A state that already holds `max_entries` or more keeps them, and refuses
    /// new keys until removals or purges bring it under the cap.
    pub(crate) fn with_cap(&self, max_entries: usize) -> Self {
        let held = self.len();
        let capped = Occupancy::new(max_entries);
        match &capped.entries {
            Count::Exact(entries) => entries.store(held, Ordering::Relaxed),
            // At most the table's size, which fits an isize: a Vec could not hold more.
            #[cfg(not(loom))]
            Count::PerThread(locals) => locals
                .get_or_default()
                .add(isize::try_from(held).unwrap_or(isize::MAX)),
        }
        Occupancy {
            purge_at: AtomicUsize::new(self.purge_at.load(Ordering::Relaxed)),
            slack: self.slack,
            ..capped
        }
    }

    /// The same occupancy with `slack` in place of [`SLACK`], for the loom models of the
    /// automatic purge: with a few keys, a purge falls due after `slack` inserts. For a new
    /// state only (it restarts the schedule).
    #[cfg(loom)]
    pub(crate) fn with_slack(self, slack: usize) -> Self {
        Occupancy {
            purge_at: AtomicUsize::new(slack),
            slack,
            ..self
        }
    }

    /// The next automatic purge's threshold, and whether a thread leads one now: for the loom
    /// models' checks and the unit tests.
    #[cfg(any(loom, test))]
    pub(crate) fn schedule(&self) -> (usize, bool) {
        (
            self.purge_at.load(Ordering::Relaxed),
            self.purging.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Takes a place for one new entry; `false` if the cap is reached.
    pub(crate) fn try_reserve(&self) -> bool {
        match &self.entries {
            Count::Exact(entries) => entries
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.max_entries).then_some(n + 1)
                })
                .is_ok(),
            #[cfg(not(loom))]
            Count::PerThread(locals) => {
                locals.get_or_default().add(1);
                true
            }
        }
    }

    /// Gives back the places of `removed` entries. Callers release under the write guard that
    /// removes them, so no insert can find the state full after the removal was linearized.
    pub(crate) fn release(&self, removed: usize) {
        if removed == 0 {
            return;
        }
        match &self.entries {
            Count::Exact(entries) => {
                entries.fetch_sub(removed, Ordering::Relaxed);
            }
            #[cfg(not(loom))]
            Count::PerThread(locals) => {
                // At most the table's size, which fits an isize: a Vec could not hold more.
                let removed = isize::try_from(removed).unwrap_or(isize::MAX);
                locals.get_or_default().add(removed.wrapping_neg());
            }
        }
    }

    /// The count: exact when no thread is inserting or removing. Without a cap, the sum of
    /// every thread's net count, read one after another.
    pub(crate) fn len(&self) -> usize {
        match &self.entries {
            Count::Exact(entries) => entries.load(Ordering::Relaxed),
            #[cfg(not(loom))]
            Count::PerThread(locals) => {
                let net = locals.iter().fold(0isize, |sum, local| {
                    sum.wrapping_add(local.net.load(Ordering::Relaxed))
                });
                // Negative only while a removal's count is read before its insert's.
                usize::try_from(net).unwrap_or(0)
            }
        }
    }

    /// Whether the caller, having just inserted, must purge (see the module's note).
    pub(crate) fn purge_due(&self) -> PurgeDue<'_> {
        #[cfg(not(loom))]
        if let Count::PerThread(locals) = &self.entries {
            let local = locals.get_or_default();
            let since = local.since_check.load(Ordering::Relaxed) + 1;
            if since < CHECK_EVERY {
                local.since_check.store(since, Ordering::Relaxed);
                return PurgeDue::No;
            }
            local.since_check.store(0, Ordering::Relaxed);
        }
        let threshold = self.purge_at.load(Ordering::Relaxed);
        let len = self.len();
        if len < threshold {
            PurgeDue::No
        } else if self
            .purging
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            PurgeDue::Lead(PurgeLead { occupancy: self })
        } else if len >= threshold.saturating_mul(2) {
            PurgeDue::Help
        } else {
            PurgeDue::No
        }
    }

    /// For a full state at tick `now`: `None` if a purge might free a place, else how many
    /// ticks until one can. A mark more than `horizon` ahead (the automatic purge's age) was
    /// set by a call whose instant ran far ahead of this one's; it is not trusted, so that one
    /// far-future instant cannot stop every other thread from purging.
    pub(crate) fn ticks_until_purge_can_free(&self, now: u64, horizon: u64) -> Option<u64> {
        let next = self.no_purge_before.load(Ordering::Relaxed);
        (now < next && next - now <= horizon).then(|| next - now)
    }

    /// Records that no entry can be purged before tick `next` (entries inserted later expire
    /// later still).
    pub(crate) fn no_purge_before(&self, next: u64) {
        self.no_purge_before.store(next, Ordering::Relaxed);
    }

    /// Ends a led purge: sets the next threshold from the entries that survived it. Called by
    /// [`PurgeLead`]'s drop.
    fn purged(&self) {
        let survivors = self.len();
        let next = survivors
            .saturating_mul(2)
            .max(survivors.saturating_add(self.slack));
        self.purge_at.store(next, Ordering::Relaxed);
        self.purging.store(false, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_cap_and_release_gives_them_back() {
        let occupancy = Occupancy::new(2);
        assert!(occupancy.try_reserve());
        assert!(occupancy.try_reserve());
        assert!(!occupancy.try_reserve());
        assert_eq!(occupancy.len(), 2);
        occupancy.release(1);
        assert!(occupancy.try_reserve());
        assert!(!Occupancy::new(0).try_reserve());
    }

    #[test]
    fn one_lead_per_threshold_helpers_past_twice_it_and_the_next_threshold_doubles() {
        // A cap that never binds keeps the exact count, which checks on every insert.
        let occupancy = Occupancy::new(usize::MAX - 1);
        for _ in 0..SLACK - 1 {
            assert!(occupancy.try_reserve());
        }
        assert!(matches!(occupancy.purge_due(), PurgeDue::No));
        assert!(occupancy.try_reserve());
        let PurgeDue::Lead(lead) = occupancy.purge_due() else {
            panic!("no lead at the threshold");
        };
        assert!(
            matches!(occupancy.purge_due(), PurgeDue::No),
            "a second lead while one runs"
        );
        for _ in 0..SLACK {
            assert!(occupancy.try_reserve());
        }
        assert!(matches!(occupancy.purge_due(), PurgeDue::Help));
        occupancy.release(SLACK);
        lead.finish();
        // 1024 survivors: the next purge comes at 2048.
        assert!(matches!(occupancy.purge_due(), PurgeDue::No));
        for _ in 0..SLACK {
            assert!(occupancy.try_reserve());
        }
        assert!(matches!(occupancy.purge_due(), PurgeDue::Lead(_)));
    }

    /// A lead whose purge panics (a key's `Drop`, say) still ends: the flag is cleared and the
    /// next threshold set, so that a later insert leads the next purge.
    #[test]
    fn a_lead_unwound_by_a_panic_ends_as_a_finished_one_does() {
        let occupancy = Occupancy::new(usize::MAX - 1);
        for _ in 0..SLACK {
            assert!(occupancy.try_reserve());
        }
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let PurgeDue::Lead(_lead) = occupancy.purge_due() else {
                return;
            };
            occupancy.release(SLACK / 2);
            panic!("a key panicked during the purge");
        }));
        assert!(unwound.is_err(), "the purge was led and panicked");
        assert_eq!(occupancy.schedule(), (SLACK + SLACK / 2, false));
        for _ in 0..SLACK {
            assert!(occupancy.try_reserve());
        }
        assert!(matches!(occupancy.purge_due(), PurgeDue::Lead(_)));
    }

    #[test]
    fn without_a_cap_threads_count_apart_and_the_sum_is_exact_when_quiet() {
        let occupancy = Occupancy::new(usize::MAX);
        assert!(matches!(occupancy.entries, Count::PerThread(_)));
        for _ in 0..10 {
            assert!(occupancy.try_reserve());
        }
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..5 {
                    assert!(occupancy.try_reserve());
                }
                // Removes entries this thread did not insert: its own count goes negative.
                occupancy.release(8);
            });
        });
        assert_eq!(occupancy.len(), 7);
        occupancy.release(7);
        assert_eq!(occupancy.len(), 0);
    }

    #[test]
    fn without_a_cap_a_thread_checks_for_a_purge_every_few_inserts() {
        let occupancy = Occupancy::new(usize::MAX);
        let mut due = Vec::new();
        for _ in 0..SLACK + 2 * CHECK_EVERY {
            assert!(occupancy.try_reserve());
            due.push(occupancy.purge_due());
        }
        let lead = due.iter().position(|d| matches!(d, PurgeDue::Lead(_)));
        // The count reaches SLACK at insert SLACK; the next check comes within CHECK_EVERY.
        let lead = lead.expect("a purge falls due");
        assert!(
            (SLACK - 1..SLACK - 1 + CHECK_EVERY).contains(&lead),
            "{lead}"
        );
        assert_eq!(
            (lead + 1) % CHECK_EVERY,
            0,
            "only every CHECK_EVERY-th insert checks"
        );
    }
}
