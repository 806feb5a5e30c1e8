//! How many entries the table holds, the optional cap on it, and when to purge by itself.
//!
//! The spec keeps an entry until a success, forever. Here every insert first reserves a place
//! ([`Occupancy::try_reserve`], under the shard's write guard, so the count is exact when the
//! state is quiescent), and once the count reaches a threshold the inserting thread purges
//! (no background thread). The threshold after each automatic purge is
//! `max(2 * survivors, survivors + SLACK)`, so purging costs O(1) amortised per insert and
//!
//! > `len() <= max(2 * E, E + SLACK) + T`,
//!
//! where `E` is the number of entries that survived the last automatic purge and `T` the number
//! of threads inserting at that moment. An automatic purge keeps every entry whose window
//! started within two budget windows of the inserting crash (see `state.rs`), so `E` is at most
//! the number of keys that crashed in the two windows before it.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Inserts allowed between automatic purges however small the table: keeps tiny tables from
/// purging on every insert.
pub(crate) const SLACK: usize = 1024;

/// `purge_at` while a thread is purging: no other thread starts one meanwhile.
const PURGING: usize = usize::MAX;

/// Entry count, capacity and the automatic-purge threshold.
///
/// Orderings: each counter is one location updated by read-modify-writes, whose coherence is
/// all the logic needs; the entries themselves are ordered by the table's shard locks. So every
/// operation is `Relaxed`.
#[derive(Debug)]
pub(crate) struct Occupancy {
    entries: AtomicUsize,
    max_entries: usize,
    purge_at: AtomicUsize,
    /// Tick before which purging cannot free a place, learnt from the last purge a full state
    /// ran: spares a refused insert the scan of the whole table.
    no_purge_before: AtomicU64,
}

impl Occupancy {
    /// No entries; at most `max_entries` (use `usize::MAX` for no cap).
    pub(crate) fn new(max_entries: usize) -> Self {
        Occupancy {
            entries: AtomicUsize::new(0),
            max_entries,
            purge_at: AtomicUsize::new(SLACK),
            no_purge_before: AtomicU64::new(0),
        }
    }

    pub(crate) fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Takes a place for one new entry; `false` if the cap is reached.
    pub(crate) fn try_reserve(&self) -> bool {
        self.entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the places of `removed` entries.
    pub(crate) fn release(&self, removed: usize) {
        if removed > 0 {
            self.entries.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// `true` if the table has reached the purge threshold and this caller won the right to
    /// purge; it must then call [`purged`](Self::purged).
    pub(crate) fn claim_purge(&self) -> bool {
        let threshold = self.purge_at.load(Ordering::Relaxed);
        threshold != PURGING
            && self.len() >= threshold
            && self
                .purge_at
                .compare_exchange(threshold, PURGING, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// For a full state at tick `now`: `None` if a purge might free a place, else how many
    /// ticks until one can.
    pub(crate) fn ticks_until_purge_can_free(&self, now: u64) -> Option<u64> {
        let next = self.no_purge_before.load(Ordering::Relaxed);
        (now < next).then(|| next - now)
    }

    /// Records that no entry can be purged before tick `next` (entries inserted later expire
    /// later still).
    pub(crate) fn no_purge_before(&self, next: u64) {
        self.no_purge_before.store(next, Ordering::Relaxed);
    }

    /// Sets the next threshold from the entries that survived the purge just done.
    pub(crate) fn purged(&self) {
        let survivors = self.len();
        let next = survivors
            .saturating_mul(2)
            .max(survivors.saturating_add(SLACK));
        // Never PURGING itself, which would stop automatic purges for good.
        self.purge_at
            .store(next.min(PURGING - 1), Ordering::Relaxed);
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
    fn one_claim_per_threshold_and_the_next_threshold_doubles() {
        let occupancy = Occupancy::new(usize::MAX);
        for _ in 0..SLACK - 1 {
            assert!(occupancy.try_reserve());
        }
        assert!(!occupancy.claim_purge());
        assert!(occupancy.try_reserve());
        assert!(occupancy.claim_purge());
        assert!(!occupancy.claim_purge(), "a second purge while one runs");
        occupancy.purged();
        // 1024 survivors: the next purge comes at 2048.
        assert!(!occupancy.claim_purge());
        for _ in 0..SLACK {
            assert!(occupancy.try_reserve());
        }
        assert!(occupancy.claim_purge());
    }
}
