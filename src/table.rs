//! Where the cells live: a sharded map with a closure-based API, so no guard ever escapes.
//!
//! Lock discipline, the same for both implementations below:
//! - [`Table::read`] and [`Table::for_each`] run their closures under a shard's **read** guard:
//!   lookups and cell updates by compare-and-swap, many threads at once, even on one key;
//! - [`Table::upsert`], [`Table::remove_if`] and [`Table::retain`] take a shard's **write**
//!   guard and hand out `&mut V`: a removal can never race a CAS on the cell it removes (no
//!   update is lost into a detached cell), and whatever a cell keeps outside its atomic word is
//!   only ever touched exclusively;
//! - at most one guard is held at a time (dashmap deadlocks if a thread takes a second guard on
//!   a shard it already holds), which the closures enforce: each guard ends with its call.
//!
//! Normally the map is a `DashMap`. Under `--cfg loom` it is a few shards of
//! `loom::sync::RwLock<HashMap>` with the same discipline, small enough for loom to explore.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

#[cfg(not(loom))]
use crate::sync::DashMap;
use crate::sync::MapEntry;

/// A sharded map from keys to values that are updated in place through `&V`.
pub(crate) struct Table<K, V, S> {
    #[cfg(not(loom))]
    map: DashMap<K, V, S>,
    #[cfg(loom)]
    shards: Box<[crate::sync::RwLock<crate::sync::HashMap<K, V, S>>]>,
    #[cfg(loom)]
    hasher: S,
}

/// Shards of the map. dashmap's default is four per CPU (8 on 2 cores). More shards cost
/// 128 bytes each per state and make a collision between two writers rarer; it matters most
/// when threads outnumber cores, where the holder of a write guard can be descheduled and
/// every thread that needs its shard waits for it: with 256 shards the churn bench on 8
/// threads over 2 cores measured 1.08x the mutex against 0.91x with dashmap's 8 (median of
/// three runs each, `docs/throughput-investigation.md`).
#[cfg(not(loom))]
const SHARDS: usize = 256;

#[cfg(not(loom))]
impl<K: Hash + Eq, V, S: BuildHasher + Clone> Table<K, V, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Table {
            map: DashMap::with_hasher_and_shard_amount(hasher, SHARDS),
        }
    }

    /// `f(value)` under the shard's read guard, or `None` if `key` is absent.
    pub(crate) fn read<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The guard lives until the closure returns: a cell is never updated after its removal.
        self.map.get(key).map(|value| f(value.value()))
    }

    /// `key`'s hash under the table's hasher.
    pub(crate) fn hash_one<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.map.hasher().hash_one(key)
    }

    /// `f(value)` under the shard's write guard, or `None` if `key` is absent.
    pub(crate) fn update<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key).map(|mut value| f(value.value_mut()))
    }

    /// As [`read`](Self::read), with the stored key too.
    pub(crate) fn read_entry<Q, R>(&self, key: &Q, f: impl FnOnce(&K, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|entry| f(entry.key(), entry.value()))
    }

    /// `f(value)` under the shard's write guard, inserting the value `vacant()` makes first if
    /// `key` is absent; also says whether it inserted. If `vacant()` declines (`None`), nothing
    /// is inserted and the key comes back.
    pub(crate) fn upsert<R>(
        &self,
        key: K,
        vacant: impl FnOnce() -> Option<V>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<(R, bool), K> {
        match self.map.entry(key) {
            MapEntry::Occupied(mut entry) => Ok((f(entry.get_mut()), false)),
            MapEntry::Vacant(entry) => match vacant() {
                Some(value) => Ok((f(entry.insert(value).value_mut()), true)),
                None => Err(entry.into_key()),
            },
        }
    }

    /// Under the shard's write guard, removes `key` if `f(value)` says so; `true` if removed.
    pub(crate) fn remove_if<Q>(&self, key: &Q, f: impl FnOnce(&mut V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove_if_mut(key, |_, value| f(value)).is_some()
    }

    /// Keeps the entries `keep` accepts, one shard's write guard at a time; returns how many
    /// it removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &mut V) -> bool) -> usize {
        let mut removed = 0;
        self.map.retain(|key, value| {
            let kept = keep(key, value);
            removed += usize::from(!kept);
            kept
        });
        removed
    }

    /// `f` on every entry, one shard's read guard at a time: each entry is read consistently,
    /// the whole is not one atomic cut.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for entry in self.map.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// Entries over all shards, counted shard by shard: lets tests check the state's count.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Holds `key`'s shard read guard until the returned value is dropped, so a test can show
    /// which operations need the write guard.
    #[cfg(test)]
    pub(crate) fn hold_read_guard<'a, Q>(&'a self, key: &Q) -> impl Sized + 'a
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).expect("the test inserted the key first")
    }
}

#[cfg(loom)]
type Shard<K, V, S> = crate::sync::RwLock<crate::sync::HashMap<K, V, S>>;

#[cfg(loom)]
const POISONED: &str = "no model panics while holding a guard";

#[cfg(loom)]
impl<K: Hash + Eq, V, S: BuildHasher + Clone> Table<K, V, S> {
    /// Few shards keep loom's state space small; models force two keys into one shard with a
    /// constant hasher.
    const SHARDS: usize = 2;

    pub(crate) fn with_hasher(hasher: S) -> Self {
        let shards = (0..Self::SHARDS)
            .map(|_| crate::sync::RwLock::new(crate::sync::HashMap::with_hasher(hasher.clone())))
            .collect();
        Table { shards, hasher }
    }

    pub(crate) fn hash_one<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V, S> {
        // Truncation is fine: only the low bits pick a shard.
        &self.shards[self.hasher.hash_one(key) as usize % Self::SHARDS]
    }

    pub(crate) fn read<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.shard(key).read().expect(POISONED);
        guard.get(key).map(f)
    }

    pub(crate) fn update<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guard = self.shard(key).write().expect(POISONED);
        guard.get_mut(key).map(f)
    }

    pub(crate) fn read_entry<Q, R>(&self, key: &Q, f: impl FnOnce(&K, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.shard(key).read().expect(POISONED);
        guard.get_key_value(key).map(|(key, value)| f(key, value))
    }

    pub(crate) fn upsert<R>(
        &self,
        key: K,
        vacant: impl FnOnce() -> Option<V>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<(R, bool), K> {
        let mut guard = self.shard(&key).write().expect(POISONED);
        match guard.entry(key) {
            MapEntry::Occupied(mut entry) => Ok((f(entry.get_mut()), false)),
            MapEntry::Vacant(entry) => match vacant() {
                Some(value) => Ok((f(entry.insert(value)), true)),
                None => Err(entry.into_key()),
            },
        }
    }

    pub(crate) fn remove_if<Q>(&self, key: &Q, f: impl FnOnce(&mut V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guard = self.shard(key).write().expect(POISONED);
        if guard.get_mut(key).is_some_and(f) {
            guard.remove(key);
            true
        } else {
            false
        }
    }

    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &mut V) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut guard = shard.write().expect(POISONED);
            let before = guard.len();
            guard.retain(|key, value| keep(key, value));
            removed += before - guard.len();
        }
        removed
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            for (key, value) in shard.read().expect(POISONED).iter() {
                f(key, value);
            }
        }
    }
}
