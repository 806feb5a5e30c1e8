//! Lookups that write no shared memory: each thread keeps, per state, a small map from the keys
//! it meets again and again to their cells.
//!
//! Why: a lookup in the table takes a shard's read guard, and a read guard is a read-modify-write
//! of the shard's lock word. On a machine with few cores two threads looking up keys still pass
//! that cache line back and forth, so through the table alone gate checks scale to only about
//! 1.5x a single mutex, and a crash storm on one key runs no faster than the mutex (see
//! `docs/design.md`).
//! Through a cached cell, a gate check is one plain load, and a crash a load and (when the word
//! changes) a compare-and-swap, of memory that only that key's crashes and removal write.
//!
//! How a stale entry is caught: a cell removed from the table is marked, in its word, under the
//! write guard that removes it ([`RichCell::retire`](crate::cell::RichCell::retire)); a cached
//! crash's compare-and-swap then fails, and a thread that finds the mark drops the entry and
//! looks the key up in the table again. See [`Shared::load_live`] and the loom model
//! `loom-tests/tests/cached_status.rs`.
//!
//! What gets cached: a key whose table lookups on this thread are counted [`LOOKUPS_TO_ADMIT`]
//! times in a row within a short while (a small filter of recent hashes, [`FILTER`]; about one
//! lookup in [`SAMPLE`] is counted, so some 25 lookups); its cell is then made rich, its word
//! moved to a shared home (under the write guard, once per entry; `cell.rs`), and cached. Keys
//! met a few times (a new backend's first crashes, a check of a key about to be forgotten) and
//! keys spread too thinly to recur (100,000 backends crashing at random) cost a probe of the
//! cache (none while it is empty) and, about one lookup in [`SAMPLE`], one store in the filter,
//! no more. A key without an entry is never cached: a negative entry would go stale on the
//! next insert.
//!
//! Memory: at most [`CAPACITY`] cells per thread and state; a full cache is cleared and
//! refilled. A cached removed cell keeps its word allocated until the thread meets that key
//! again or its cache is cleared.
//!
//! Under `--cfg loom`, loom's threads are not the OS threads `thread_local` keys on, so the
//! per-thread caches live in a std mutex keyed by loom's thread id. The mutex is invisible to
//! loom and is never held across a loom operation: the cell is cloned out before it is used.

use std::borrow::Borrow;
#[cfg(not(loom))]
use std::cell::RefCell;
use std::sync::Arc;

#[cfg(not(loom))]
use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
#[cfg(not(loom))]
use thread_local::ThreadLocal;

use crate::cell::Shared;

/// Cells one thread's cache holds for one state before it is cleared: enough for the backends
/// a broker's worker meets over and over, small next to the table itself.
pub(crate) const CAPACITY: usize = 4096;

/// Slots of the filter of recently looked-up hashes: each slot holds the last hash looked up
/// in it and how many times in a row that hash came back to it. 8 KiB per thread and state.
const FILTER: usize = 1024;

/// Counted table lookups of a key (one in about [`SAMPLE`] is counted), on one thread and in quick
/// succession (its filter slot not taken by another hash in between), after which its cell is
/// cached. Why not two: a backend that is crashed, crashed again, checked once and forgotten (the
/// churn bench's keys, met two or three times in their life, soon after each other when eight
/// threads share the work) would be cached on its second lookup; making it rich and caching it
/// costs more than those lookups (an eighth of churn's time at 8 threads under `perf`), and it is
/// never read again. A key met over and over in a short while (a crash storm, a backend every Hello
/// checks) is worth caching. With 1,000 keys in turn a key needs some twenty counted lookups to be
/// cached (its slot survives the 1,000 counted lookups between two of them about a third of the
/// time), which [`SAMPLE`] makes some 160 lookups of it.
/// Under loom, two: the loom model `loom-tests/tests/cached_status.rs` caches its keys with two
/// lookups per thread, which keeps its interleavings few, and would not reach the cache with four;
/// how many lookups admit a key does not change the protocol.
#[cfg(not(loom))]
const LOOKUPS_TO_ADMIT: u64 = 4;
#[cfg(loom)]
const LOOKUPS_TO_ADMIT: u64 = 2;

/// The filter counts one table lookup in this many on average, per thread: the others only count
/// down. Why: with keys too many or too spread to recur (uniform-100k), counting every lookup would
/// store to a random line of the 8 KiB filter each time, for nothing; counting one in eight saves
/// some 38 instructions and 0.31 L1 misses (callgrind) per uncached crash there. A key that recurs
/// is still cached, after about eight times as many lookups: between two of its counted lookups its
/// slot meets as many other counted hashes as it met hashes before, so its chances per counted
/// lookup stay the same. The gaps between counted lookups are drawn at random (1 to
/// `2 * SAMPLE - 1`): with a fixed gap, lookups that cycle in step with it (a key checked in turn
/// with one that has no entry, whose lookups never stop) would have the same keys counted every
/// time and the others never. Under loom, every lookup counts, for the sake of
/// `loom-tests/tests/cached_status.rs` (see [`LOOKUPS_TO_ADMIT`]).
#[cfg(not(loom))]
const SAMPLE: u32 = 8;
#[cfg(loom)]
const SAMPLE: u32 = 1;
const _: () = assert!(SAMPLE >= 1);

/// Lookups of one key, on a thread that has looked up nothing else yet, of which the last
/// caches it. The gaps are random, but every thread draws them from the same seed, so this is
/// the same on every fresh thread.
#[cfg(test)]
pub(crate) fn lookups_to_cache() -> u32 {
    let mut local = Local::<()>::default();
    (1..)
        .find(|_| local.admit(12345))
        .expect("a key looked up alone is admitted")
}

/// A filter slot keeps a hash's top bits and, in the low bits, its lookups so far (1 to 3).
const LOOKUPS_MASK: u64 = 0b11;
const _: () = assert!(LOOKUPS_TO_ADMIT > 1 && LOOKUPS_TO_ADMIT - 1 <= LOOKUPS_MASK);

/// One thread's cache for one state.
struct Local<K> {
    /// Cached cells by key. A `HashTable` rather than a `HashMap`: it takes the hash from the
    /// caller (the key's hash under the state's hasher), so the cache needs no hasher of its
    /// own (the state's `S` would have to be `Send` to live in every thread's cache). The hash
    /// is not stored: an insert that grows the table, or rehashes it in place after many
    /// removals, is given a way to recompute it; the smaller entries keep more of a thread's
    /// cached cells in its L1 cache.
    cells: HashTable<(K, Arc<Shared>)>,
    /// Per slot (`hash % FILTER`), the hash last looked up in the table and its lookups in a
    /// row ([`LOOKUPS_MASK`]).
    filter: Box<[u64; FILTER]>,
    /// Table lookups until the next one the filter counts (1: this one).
    countdown: u32,
    /// The state of the xorshift generator that draws the gaps between counted lookups.
    draws: u64,
}

impl<K> Local<K> {
    /// Whether this table lookup of `hash` admits it to the cache: it is a counted one (one
    /// in about [`SAMPLE`]) and `hash`'s [`LOOKUPS_TO_ADMIT`]th or later counted lookup in a
    /// row.
    fn admit(&mut self, hash: u64) -> bool {
        // Never below 1: it starts at 1 and every gap drawn is at least 1.
        self.countdown -= 1;
        if self.countdown != 0 {
            return false;
        }
        self.countdown = self.gap();
        self.count(hash)
    }

    /// Lookups until the next counted one: 1 to `2 * SAMPLE - 1`, [`SAMPLE`] on average
    /// (xorshift64; drawn once per counted lookup, so its cost is spread over `SAMPLE`).
    fn gap(&mut self) -> u32 {
        let mut x = self.draws;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.draws = x;
        // Below 2 * SAMPLE, so the cast is exact.
        1 + (x % u64::from(2 * SAMPLE - 1)) as u32
    }

    /// Whether this counted lookup of `hash` is its [`LOOKUPS_TO_ADMIT`]th or later in a row in
    /// its filter slot (later: a key admitted but not cached, as when the shard was busy);
    /// counts it either way. The slot index takes the hash's low bits, the count bits among
    /// them, so a slot's tag and index together are the whole hash: distinct hashes never
    /// share a count.
    fn count(&mut self, hash: u64) -> bool {
        // Truncation is fine: only the low bits pick a slot.
        let slot = &mut self.filter[hash as usize % FILTER];
        let tag = hash & !LOOKUPS_MASK;
        let lookups = if *slot & !LOOKUPS_MASK == tag {
            *slot & LOOKUPS_MASK
        } else {
            0
        };
        if lookups + 1 >= LOOKUPS_TO_ADMIT {
            return true;
        }
        *slot = tag | (lookups + 1);
        false
    }
}

impl<K> Default for Local<K> {
    fn default() -> Self {
        Local {
            cells: HashTable::new(),
            filter: Box::new([0; FILTER]),
            countdown: 1,
            // Any nonzero seed: xorshift never leaves zero.
            draws: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Every thread's cache of one state's cells.
pub(crate) struct ReadCache<K: Send> {
    /// Padded: `thread_local` stores the threads' values side by side, and each lookup writes
    /// its `RefCell`'s borrow flag; unpadded, two threads' caches would share a cache line and
    /// every lookup would miss it (a fifth of a gate check's time under `perf`).
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

    /// `f` on `key`'s cached cell, if this thread has one; `hash` is the key's hash under the
    /// state's hasher. `f` returns `None` when the cell can no longer be used (removed from the
    /// table, or a tombstone a crash must revive under the write guard): the entry is dropped.
    /// Without a usable cell, `Err(admit)`: the caller goes to the table, and caches the key's
    /// cell if `admit` (looked up often enough on this thread; see [`LOOKUPS_TO_ADMIT`]). One
    /// access to the thread's cache for both.
    #[inline]
    pub(crate) fn lookup<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&Shared) -> Option<R>,
    ) -> Result<R, bool>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let eq = |(cached, _): &(K, Arc<Shared>)| cached.borrow() == key;
        #[cfg(not(loom))]
        {
            // `try_borrow_mut` instead of `borrow_mut`: a key's `Eq` calling back into the
            // state on this thread skips the cache rather than panicking. `get` first: it can
            // be inlined, where `get_or_default` is a call (with the same in `metrics.rs`, 8
            // instructions per crash of uniform-100k, callgrind).
            let local = self.locals.get();
            let local = local.unwrap_or_else(|| self.locals.get_or_default());
            let Ok(mut local) = local.try_borrow_mut() else {
                return Err(false);
            };
            // An empty cache (keys too many or too spread to recur, as with 100,000 backends
            // crashing at random) is not probed: the probe would still load a control group.
            let found = if local.cells.is_empty() {
                None
            } else {
                local.cells.find_entry(hash, eq).ok()
            };
            if let Some(entry) = found {
                match f(&entry.get().1) {
                    Some(answer) => return Ok(answer),
                    None => {
                        entry.remove();
                    }
                }
            }
            Err(local.admit(hash))
        }
        #[cfg(loom)]
        {
            let thread = loom::thread::current().id();
            let cell = (self.locals().get(&thread))
                .and_then(|local| local.cells.find(hash, eq))
                .map(|(_, cell)| Arc::clone(cell));
            // Used outside the std mutex: operations on loom atomics are where loom switches.
            if let Some(cell) = cell {
                match f(&cell) {
                    Some(answer) => return Ok(answer),
                    None => {
                        let mut locals = self.locals();
                        if let Some(Ok(entry)) = locals
                            .get_mut(&thread)
                            .map(|local| local.cells.find_entry(hash, eq))
                        {
                            entry.remove();
                        }
                    }
                }
            }
            let mut locals = self.locals();
            Err(locals.entry(thread).or_default().admit(hash))
        }
    }

    /// Remembers `cell` as the cell of `key`, whose hash is `hash`, for this thread's next
    /// lookups. `rehash` is the state's hash of a cached key, for when the cache grows or
    /// rehashes in place. It runs the key's `Hash` with this thread's cache borrowed, as
    /// `lookup` runs its `Eq`: a call back into the state from there skips the cache.
    pub(crate) fn insert(&self, hash: u64, key: K, cell: Arc<Shared>, rehash: impl Fn(&K) -> u64) {
        // `get_or_default` alone: inserts are rare next to lookups.
        #[cfg(not(loom))]
        let Ok(mut local) = self.locals.get_or_default().try_borrow_mut() else {
            return;
        };
        #[cfg(loom)]
        let mut locals = self.locals();
        #[cfg(loom)]
        let local = locals.entry(loom::thread::current().id()).or_default();
        if local.cells.len() >= CAPACITY {
            local.cells.clear();
        }
        match local.cells.find_entry(hash, |(cached, _)| *cached == key) {
            Ok(mut entry) => entry.get_mut().1 = cell,
            Err(_) => {
                let rehash_entry = |(cached, _): &(K, Arc<Shared>)| rehash(cached);
                local.cells.insert_unique(hash, (key, cell), rehash_entry);
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
    use crate::cell::{Cell, RichCell};
    use crate::table::Form;
    use crate::word::Word;

    /// The keys this thread's cache holds.
    fn cached<K: Eq + Send + Clone>(cache: &ReadCache<K>) -> Vec<K> {
        let local = cache.locals.get().expect("this thread has a cache");
        let local = RefCell::borrow(local);
        local.cells.iter().map(|(key, _)| key.clone()).collect()
    }

    /// Any hash will do for the cache's own tests, as long as equal keys get equal hashes; a
    /// weak one makes keys collide, which the cache must handle.
    fn hash(key: usize) -> u64 {
        (key % 7) as u64
    }

    fn load(cache: &ReadCache<usize>, key: usize) -> Option<Word> {
        cache.lookup(hash(key), &key, Shared::load_live).ok()
    }

    #[test]
    fn a_cached_cell_reads_until_retired_then_is_dropped() {
        let cache = ReadCache::<usize>::new();
        let mut cell = RichCell::from(Cell::vacant());
        assert_eq!(load(&cache, 1), None, "nothing cached yet");
        cache.insert(hash(1), 1, cell.shared(), |&key| hash(key));
        assert_eq!(load(&cache, 1), Some(Word::VACANT));
        assert_eq!(load(&cache, 8), None, "same hash, other key");
        Form::Rich(&mut cell).retire();
        assert_eq!(load(&cache, 1), None, "a retired cell is not read");
        assert!(cached(&cache).is_empty(), "the retired cell is dropped");
    }

    #[test]
    fn the_filter_admits_a_hash_after_counted_lookups_in_a_row() {
        let mut local = Local::<usize>::default();
        for lookup in 1..LOOKUPS_TO_ADMIT {
            assert!(!local.count(12345), "lookup {lookup}");
        }
        assert!(local.count(12345), "lookup {LOOKUPS_TO_ADMIT}");
        assert!(local.count(12345), "and the next, until cached");
        assert!(!local.count(12345 + FILTER as u64), "same slot, other hash");
        assert!(
            !local.count(12345),
            "pushed out by the other hash: counting again"
        );
    }

    /// Which of its next `lookups` table lookups `local` counts, by index from 0; the lookup
    /// of index `i` is of `hash(i)`.
    fn counted(local: &mut Local<usize>, lookups: u32, hash: impl Fn(u32) -> u64) -> Vec<u32> {
        let mut counted = Vec::new();
        for lookup in 0..lookups {
            let before = local.countdown;
            local.admit(hash(lookup));
            // A counted lookup draws a new countdown; the others take one off it.
            if before == 1 {
                counted.push(lookup);
            }
        }
        counted
    }

    #[test]
    fn about_one_lookup_in_sample_is_counted_from_the_first() {
        let mut local = Local::<usize>::default();
        let counted = counted(&mut local, 1000 * SAMPLE, |lookup| u64::from(lookup) << 2);
        assert_eq!(counted.first(), Some(&0), "the first lookup is counted");
        let gaps: Vec<u32> = counted.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert!(
            gaps.iter().all(|gap| (1..2 * SAMPLE).contains(gap)),
            "{gaps:?}"
        );
        let mean = f64::from(gaps.iter().sum::<u32>()) / gaps.len() as f64;
        assert!((mean - f64::from(SAMPLE)).abs() < 0.5, "mean gap {mean}");
    }

    /// A key looked up in turn with another whose lookups never stop (a key with no entry is
    /// never cached) is still counted, and admitted: with a fixed even gap it never was.
    #[test]
    fn a_key_in_turn_with_another_is_still_admitted() {
        let mut local = Local::<usize>::default();
        let (key, other) = (12345, 12345 + 1);
        let admitted = (0..200).any(|_| {
            local.admit(other);
            local.admit(key)
        });
        assert!(admitted, "not admitted in 200 lookups");
    }

    #[test]
    fn a_hash_looked_up_alone_is_admitted_on_its_fourth_counted_lookup() {
        let cache = ReadCache::<usize>::new();
        let admit = |hash: u64| cache.lookup(hash, &0, Shared::load_live).unwrap_err();
        let mut local = Local::<usize>::default();
        let counted = counted(&mut local, 100 * SAMPLE, |_| 12345);
        let last = counted[LOOKUPS_TO_ADMIT as usize - 1] + 1;
        assert_eq!(last, lookups_to_cache());
        for lookup in 1..last {
            assert!(!admit(12345), "lookup {lookup}");
        }
        assert!(admit(12345), "lookup {last}");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = ReadCache::<usize>::new();
        let cell = RichCell::from(Cell::vacant());
        for key in 0..CAPACITY {
            cache.insert(hash(key), key, cell.shared(), |&key| hash(key));
        }
        assert_eq!(cached(&cache).len(), CAPACITY);
        cache.insert(hash(CAPACITY), CAPACITY, cell.shared(), |&key| hash(key));
        assert_eq!(cached(&cache), [CAPACITY], "cleared, then the new key");
    }

    /// The cache stores no hashes: when it grows, `insert` recomputes them with the hash it is
    /// given. Every cell must still be found under its key's hash afterwards.
    #[test]
    fn cells_are_found_after_the_cache_grows() {
        let cache = ReadCache::<usize>::new();
        // Spread over the whole word, so a cell filed under a wrong hash is not found by
        // probing past it, as it might be with the colliding `hash` above.
        let spread = |key: usize| (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let cells: Vec<RichCell> = (0..1000).map(|_| RichCell::from(Cell::vacant())).collect();
        for (key, cell) in cells.iter().enumerate() {
            cache.insert(spread(key), key, cell.shared(), |&key| spread(key));
        }
        for (key, cell) in cells.iter().enumerate() {
            let found = cache.lookup(spread(key), &key, |shared| {
                Some(std::ptr::eq(shared, &*cell.shared()))
            });
            assert_eq!(found, Ok(true), "key {key}");
        }
    }

    #[test]
    fn threads_keep_their_own_entries() {
        let cache = ReadCache::<usize>::new();
        let cell = RichCell::from(Cell::vacant());
        cache.insert(hash(1), 1, cell.shared(), |&key| hash(key));
        std::thread::scope(|scope| {
            scope.spawn(|| assert_eq!(load(&cache, 1), None));
        });
        assert_eq!(load(&cache, 1), Some(Word::VACANT));
    }
}
