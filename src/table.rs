//! Where the cells live: a sharded map with a closure-based API, so no guard ever escapes.
//!
//! Lock discipline:
//! - [`Table::read`], [`Table::read_entry`] and [`Table::for_each`] run their closures under a
//!   shard's **read** guard: lookups and cell updates by compare-and-swap, many threads at once,
//!   even on one key;
//! - [`Table::upsert`], [`Table::update`], [`Table::remove_if`] and [`Table::retain`] take a
//!   shard's **write** guard and hand out `&mut V`: a removal can never race a CAS on the cell
//!   it removes (no update is lost into a detached cell), and whatever a cell keeps outside its
//!   atomic word is only ever touched exclusively;
//! - at most one guard is held at a time, which the closures enforce: each guard ends with its
//!   call.
//!
//! Each shard is a `hashbrown::HashTable` behind a reader-writer lock (`parking_lot`'s; loom's
//! under `--cfg loom`, so the models check this very code, with eight shards). Why not `DashMap`,
//! which the crate used first: its API hashes the key again for every call, so a crash of a new
//! key (a lookup under the read guard that misses, then the insert under the write guard) hashed
//! it twice, and a purge had to lock every shard. Here callers hash once ([`Table::hash_one`])
//! and pass the hash to every call, and each shard keeps a lower bound of when its entries
//! become purgeable, so a purge skips the shards that hold nothing to purge.
//! `docs/throughput-investigation.md` has the measurements.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use crate::sync::{AtomicU64, Ordering, RwLock};

/// Shards of the map (a power of two). More shards cost 128 bytes each per state and make a
/// collision between two writers rarer; it matters most when threads outnumber cores, where the
/// holder of a write guard can be descheduled and every thread that needs its shard waits for
/// it. Measured on the churn bench, 8 threads on 2 cores, when the shards were still dashmap's:
/// 0.98x the mutex with 256 shards against 0.67x with 32 and 0.78x with 64 (median of five runs
/// each), and 0.91x with dashmap's default of 8 (three runs); `docs/throughput-investigation.md`.
/// Under loom, eight: enough that two keys of a model usually land in different shards (with
/// two, the capacity models missed a bug that needs that: a purge skipping the shard of an
/// insert still in progress), few enough for loom's branch budget; models that need two keys in
/// one shard force it with a constant hasher.
#[cfg(not(loom))]
const SHARDS: usize = 256;
#[cfg(loom)]
const SHARDS: usize = 8;

/// Bits of the hash that pick a shard.
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
const _: () = assert!(SHARDS.is_power_of_two() && SHARDS > 1);

/// What the table needs to know of a value so that purges can skip shards: the tick from
/// which it may become purgeable (a cell's window start). It must never move earlier except
/// through `&mut` (under the write guard), which lowers the shard's bound.
pub(crate) trait Purgeable {
    fn purgeable_from(&self) -> u64;
}

/// One shard: its entries, and the earliest tick at which any of them may be purgeable.
struct Shard<K, V> {
    entries: RwLock<HashTable<(K, V)>>,
    /// A lower bound of the entries' [`Purgeable::purgeable_from`]: lowered by every insert or
    /// write-guarded update, reset by [`Table::retain`]; `u64::MAX` when the shard is empty.
    /// A removal leaves it as it is, possibly lower than need be, which costs a purge a scan of
    /// the shard, nothing more. (Recomputing it on removal was measured: it moved the cost
    /// from purges to removals, no gain.)
    purgeable_from: AtomicU64,
}

/// A sharded map from keys to values that are updated in place through `&V`.
pub(crate) struct Table<K, V, S> {
    shards: Box<[CachePadded<Shard<K, V>>]>,
    hasher: S,
}

impl<K: Hash + Eq, V: Purgeable, S: BuildHasher> Table<K, V, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                CachePadded::new(Shard {
                    entries: RwLock::new(HashTable::new()),
                    purgeable_from: AtomicU64::new(u64::MAX),
                })
            })
            .collect();
        Table { shards, hasher }
    }

    /// `key`'s hash under the table's hasher: every other call takes it.
    #[inline]
    pub(crate) fn hash_one<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of `hash`. hashbrown takes a key's bucket from the hash's low bits and its tag
    /// from the top seven, so the shard comes from the bits just below those (as in dashmap):
    /// keys of one shard still differ in both.
    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        let index = (hash << 7) >> (64 - SHARD_BITS);
        &self.shards[index as usize]
    }

    /// `f(value)` under the shard's read guard, or `None` if `key` is absent.
    #[inline]
    pub(crate) fn read<Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.read_entry(hash, key, |_, value| f(value))
    }

    /// As [`read`](Self::read), with the stored key too.
    #[inline]
    pub(crate) fn read_entry<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&K, &V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let entries = self.shard(hash).entries.read();
        // The guard lives until the closure returns: a cell is never updated after its removal.
        let found = entries.find(hash, |(stored, _)| stored.borrow() == key);
        found.map(|(stored, value)| f(stored, value))
    }

    /// `f(value)` under the shard's write guard if it can be had without waiting; `None` if
    /// it cannot, or if `key` is absent.
    pub(crate) fn try_update<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut entries = self.shard(hash).entries.try_write()?;
        let found = entries.find_mut(hash, |(stored, _)| stored.borrow() == key);
        found.map(|(_, value)| f(value))
    }

    /// `f(value)` under the shard's write guard, inserting the value `vacant()` makes first if
    /// `key` is absent; also says whether it inserted. If `vacant()` declines (`None`), nothing
    /// is inserted and the key comes back. After `f`, the shard's purge bound is lowered to the
    /// value's if that is earlier (see [`retain`](Self::retain)).
    pub(crate) fn upsert<R>(
        &self,
        hash: u64,
        key: K,
        vacant: impl FnOnce() -> Option<V>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<(R, bool), K> {
        let shard = self.shard(hash);
        let mut entries = shard.entries.write();
        let (value, inserted) = match entries.find_mut(hash, |(stored, _)| *stored == key) {
            Some((_, value)) => (value, false),
            None => match vacant() {
                Some(value) => {
                    let hasher = |(stored, _): &(K, V)| self.hasher.hash_one(stored);
                    let entry = entries.insert_unique(hash, (key, value), hasher);
                    (&mut entry.into_mut().1, true)
                }
                None => return Err(key),
            },
        };
        let answer = f(value);
        // Under the write guard, so no purge of this shard runs between the update and this.
        shard
            .purgeable_from
            .fetch_min(value.purgeable_from(), Ordering::Relaxed);
        Ok((answer, inserted))
    }

    /// Under the shard's write guard, removes `key` if `f(value)` says so; `true` if removed.
    pub(crate) fn remove_if<Q>(&self, hash: u64, key: &Q, f: impl FnOnce(&mut V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut entries = self.shard(hash).entries.write();
        let Ok(mut entry) = entries.find_entry(hash, |(stored, _)| stored.borrow() == key) else {
            return false;
        };
        let remove = f(&mut entry.get_mut().1);
        if remove {
            entry.remove();
        }
        remove
    }

    /// Keeps the entries `keep` accepts, one shard's write guard at a time, and returns how
    /// many it removed and the earliest purge bound of all shards after it (`u64::MAX` if
    /// none). Shards whose bound is after `cutoff` (every shard, if `cutoff` is `None`) are
    /// skipped without taking their lock.
    ///
    /// Why skipping is sound: a shard's bound is reset here to the earliest tick of its
    /// survivors and lowered by every insert or write-guarded update ([`upsert`](Self::upsert));
    /// the one update that takes no write guard, a crash's compare-and-swap under the read
    /// guard, never moves an entry's window earlier (the state sends a crash that could, the
    /// revival of a tombstone, to the write guard). What a skipped shard does not show is an
    /// insert still in progress under its write guard: a purge that runs before it completes
    /// simply comes first. A caller that needs to count such inserts (the capacity hint)
    /// passes a cutoff of `u64::MAX`, so that every shard is visited under its lock.
    pub(crate) fn retain(
        &self,
        cutoff: Option<u64>,
        mut keep: impl FnMut(&K, &mut V) -> bool,
    ) -> (usize, u64) {
        let mut removed = 0;
        let mut earliest = u64::MAX;
        for shard in self.shards.iter() {
            let bound = shard.purgeable_from.load(Ordering::Relaxed);
            if cutoff.is_none_or(|cutoff| bound > cutoff) {
                earliest = earliest.min(bound);
                continue;
            }
            let mut entries = shard.entries.write();
            let before = entries.len();
            let mut survivors = u64::MAX;
            entries.retain(|(key, value)| {
                let kept = keep(key, value);
                if kept {
                    survivors = survivors.min(value.purgeable_from());
                }
                kept
            });
            removed += before - entries.len();
            shard.purgeable_from.store(survivors, Ordering::Relaxed);
            earliest = earliest.min(survivors);
        }
        (removed, earliest)
    }

    /// `f` on every entry, one shard's read guard at a time: each entry is read consistently,
    /// the whole is not one atomic cut.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            for (key, value) in shard.entries.read().iter() {
                f(key, value);
            }
        }
    }

    /// Entries over all shards, counted shard by shard: lets tests check the state's count.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.entries.read().len())
            .sum()
    }

    /// Holds `key`'s shard read guard until the returned value is dropped, so a test can show
    /// which operations need the write guard.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn hold_read_guard<Q: Hash + ?Sized>(&self, key: &Q) -> impl Sized + '_ {
        self.shard(self.hash_one(key)).entries.read()
    }

    /// As [`hold_read_guard`](Self::hold_read_guard), with the write guard.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn hold_write_guard<Q: Hash + ?Sized>(&self, key: &Q) -> impl Sized + '_ {
        self.shard(self.hash_one(key)).entries.write()
    }
}
