//! Gate checks that write no shared memory: each thread keeps, per state, a small map from the
//! keys it has checked to their cells.
//!
//! Why: a lookup in the table takes a shard's read guard, and a read guard is a read-modify-write
//! of the shard's lock word. On a machine with few cores two threads checking different keys
//! still pass that cache line back and forth, so gate checks stopped scaling at about 1.5x a
//! single mutex (`docs/throughput-investigation.md`). A cached cell is read with two plain loads
//! of memory that only crashes and removals write.
//!
//! How a stale entry is caught: a cell removed from the table is *retired* under the write guard
//! that removes it ([`Cell::retire`](crate::cell::Cell::retire)), and a retired cell's word
//! never changes again. A thread that finds its cached cell retired drops it and looks the key
//! up in the table again. See [`Shared::load_live`] for why a live read is linearizable, and
//! loom model 12 for the check.
//!
//! Only [`status`](crate::BackendRecoveryState::status) uses the cache, and only for keys the
//! table holds: a key without an entry is looked up in the table each time (a negative entry
//! would go stale on the next insert). Crashes keep going through the table, where the read
//! guard is what keeps a removal from racing their compare-and-swap.
//!
//! Memory: at most [`CAPACITY`] entries per thread and state; a full cache is cleared and
//! refilled. A cached retired cell keeps its two words allocated until the thread checks that
//! key again or its cache is cleared.
//!
//! Under `--cfg loom`, loom's threads are not the OS threads `thread_local` keys on, so the
//! per-thread maps live in a std mutex keyed by loom's thread id. The mutex is invisible to loom
//! and is never held across a loom operation: the cell is cloned out before it is read.

use std::borrow::Borrow;
#[cfg(not(loom))]
use std::cell::RefCell;
use std::sync::Arc;

#[cfg(not(loom))]
use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
#[cfg(not(loom))]
use thread_local::ThreadLocal;

use crate::cell::{Shared, Word};

/// Entries one thread's cache holds for one state before it is cleared: enough for the
/// backends a broker's worker checks over and over, small next to the table itself.
pub(crate) const CAPACITY: usize = 4096;

/// One thread's cached cells, each with its key's hash under the state's hasher; `None` for a
/// key checked once and not cached yet (see [`Lookup::Seen`]). A `HashTable` rather than a
/// `HashMap`: it takes the hash from the caller, so the cache needs no hasher of its own (the
/// state's `S` would have to be `Send` to live in every thread's map).
type Local<K> = HashTable<(u64, K, Option<Arc<Shared>>)>;

/// What a thread's cache knows of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Its cell is cached and still in the table: this is its word.
    Live(Word),
    /// This thread checked the key once before and did not cache it: a second check is worth
    /// giving the cell a shared word (which takes the write guard once). One-off checks, as of
    /// a key about to be forgotten, never pay that.
    Seen,
    /// Nothing cached (or a cell that has been removed since, now dropped).
    Miss,
}

/// Every thread's cache of one state's cells.
pub(crate) struct ReadCache<K: Send> {
    /// Padded: `thread_local` stores the threads' values side by side, and each check writes
    /// its `RefCell`'s borrow flag; unpadded, two threads' caches shared a cache line and every
    /// check missed it (a fifth of a gate check's time under `perf`).
    #[cfg(not(loom))]
    locals: ThreadLocal<CachePadded<RefCell<Local<K>>>>,
    #[cfg(loom)]
    locals: std::sync::Mutex<std::collections::HashMap<loom::thread::ThreadId, Local<K>>>,
}

impl<K: Eq + Send> ReadCache<K> {
    pub(crate) fn new() -> Self {
        ReadCache {
            locals: Default::default(),
        }
    }

    /// What this thread's cache knows of `key`, whose hash under the state's hasher is `hash`.
    /// A retired cell is dropped from the cache on the way.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn lookup<Q>(&self, hash: u64, key: &Q) -> Lookup
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // `try_borrow_mut` instead of `borrow_mut`: a key's `Eq` calling back into the state on
        // this thread skips the cache rather than panicking.
        let Some(Ok(mut local)) = self.locals.get().map(|local| local.try_borrow_mut()) else {
            return Lookup::Miss;
        };
        let Ok(entry) = local.find_entry(hash, |(_, cached, _)| cached.borrow() == key) else {
            return Lookup::Miss;
        };
        let Some(cell) = &entry.get().2 else {
            return Lookup::Seen;
        };
        match cell.load_live() {
            Some(word) => Lookup::Live(word),
            None => {
                entry.remove();
                Lookup::Miss
            }
        }
    }

    #[cfg(loom)]
    pub(crate) fn lookup<Q>(&self, hash: u64, key: &Q) -> Lookup
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let thread = loom::thread::current().id();
        let eq = |(_, cached, _): &(u64, K, Option<Arc<Shared>>)| cached.borrow() == key;
        let found = (self.locals().get(&thread))
            .and_then(|local| local.find(hash, eq))
            .map(|(_, _, cell)| cell.clone());
        let Some(found) = found else {
            return Lookup::Miss;
        };
        let Some(cell) = found else {
            return Lookup::Seen;
        };
        // Read outside the std mutex: loads of loom atomics are where loom switches threads.
        match cell.load_live() {
            Some(word) => Lookup::Live(word),
            None => {
                let mut locals = self.locals();
                if let Some(Ok(entry)) = locals
                    .get_mut(&thread)
                    .map(|local| local.find_entry(hash, eq))
                {
                    entry.remove();
                }
                Lookup::Miss
            }
        }
    }

    /// Remembers `cell` as the cell of `key`, whose hash is `hash`, for this thread's next
    /// checks; `None` marks the key [seen](Lookup::Seen).
    pub(crate) fn insert(&self, hash: u64, key: K, cell: Option<Arc<Shared>>) {
        #[cfg(not(loom))]
        let Ok(mut local) = self.locals.get_or_default().try_borrow_mut() else {
            return;
        };
        #[cfg(loom)]
        let mut locals = self.locals();
        #[cfg(loom)]
        let local = locals.entry(loom::thread::current().id()).or_default();
        if local.len() >= CAPACITY {
            local.clear();
        }
        match local.find_entry(hash, |(_, cached, _)| *cached == key) {
            Ok(mut entry) => entry.get_mut().2 = cell,
            Err(_) => {
                local.insert_unique(hash, (hash, key, cell), |(hash, _, _)| *hash);
            }
        }
    }

    #[cfg(loom)]
    fn locals(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<loom::thread::ThreadId, Local<K>>>
    {
        self.locals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::cell::Cell;

    /// The keys this thread's cache holds.
    fn cached<K: Eq + Send + Clone>(cache: &ReadCache<K>) -> Vec<K> {
        let local = cache.locals.get().expect("this thread has a cache");
        RefCell::borrow(local)
            .iter()
            .map(|(_, key, _)| key.clone())
            .collect()
    }

    /// Any hash will do for the cache's own tests, as long as equal keys get equal hashes; a
    /// weak one makes keys collide, which the cache must handle.
    fn hash(key: usize) -> u64 {
        (key % 7) as u64
    }

    #[test]
    fn a_cached_cell_reads_until_retired_then_is_dropped() {
        let cache = ReadCache::<usize>::new();
        let mut cell = Cell::vacant();
        assert_eq!(
            cache.lookup(hash(1), &1),
            Lookup::Miss,
            "nothing cached yet"
        );
        cache.insert(hash(1), 1, Some(cell.promote()));
        assert_eq!(cache.lookup(hash(1), &1), Lookup::Live(Word::VACANT));
        cell.retire();
        assert_eq!(
            cache.lookup(hash(1), &1),
            Lookup::Miss,
            "a retired cell is not read"
        );
        assert!(cached(&cache).is_empty(), "the retired cell is dropped");
    }

    #[test]
    fn a_key_seen_once_is_seen_until_its_cell_is_cached() {
        let cache = ReadCache::<usize>::new();
        cache.insert(hash(1), 1, None);
        assert_eq!(cache.lookup(hash(1), &1), Lookup::Seen);
        assert_eq!(
            cache.lookup(hash(8), &8),
            Lookup::Miss,
            "same hash, other key"
        );
        let mut cell = Cell::vacant();
        cache.insert(hash(1), 1, Some(cell.promote()));
        assert_eq!(cache.lookup(hash(1), &1), Lookup::Live(Word::VACANT));
        assert_eq!(cached(&cache), [1], "one entry per key");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = ReadCache::<usize>::new();
        let mut cell = Cell::vacant();
        for key in 0..CAPACITY {
            cache.insert(hash(key), key, Some(cell.promote()));
        }
        assert_eq!(cached(&cache).len(), CAPACITY);
        cache.insert(hash(CAPACITY), CAPACITY, None);
        assert_eq!(cached(&cache), [CAPACITY], "cleared, then the new key");
    }

    #[test]
    fn threads_keep_their_own_entries() {
        let cache = ReadCache::<usize>::new();
        let mut cell = Cell::vacant();
        cache.insert(hash(1), 1, Some(cell.promote()));
        std::thread::scope(|scope| {
            scope.spawn(|| assert_eq!(cache.lookup(hash(1), &1), Lookup::Miss));
        });
        assert_eq!(cache.lookup(hash(1), &1), Lookup::Live(Word::VACANT));
    }
}
