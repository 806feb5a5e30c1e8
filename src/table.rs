//! Where the cells live: a sharded map with a closure-based API, so no guard ever escapes.
//!
//! Lock discipline, the same for both implementations below:
//! - [`Table::read`] runs its closure under the key's shard **read** guard: lookups and cell
//!   updates by compare-and-swap, many threads at once, even on one key;
//! - [`Table::upsert`], [`Table::remove`] and [`Table::retain`] take a shard's **write** guard,
//!   so a removal can never race a CAS on the cell it removes: no update is lost into a detached
//!   cell;
//! - at most one guard is held at a time (dashmap deadlocks if a thread takes a second guard on
//!   a shard it already holds), which the closures enforce: each guard ends with its call.
//!
//! Normally the map is a `DashMap`. Under `--cfg loom` it is a few shards of
//! `loom::sync::RwLock<HashMap>` with the same discipline, small enough for loom to explore.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

#[cfg(not(loom))]
use crate::sync::DashMap;

/// A sharded map from keys to values that are updated in place through `&V`.
pub(crate) struct Table<K, V, S> {
    #[cfg(not(loom))]
    map: DashMap<K, V, S>,
    #[cfg(loom)]
    shards: Box<[crate::sync::RwLock<crate::sync::HashMap<K, V, S>>]>,
    #[cfg(loom)]
    hasher: S,
}

#[cfg(not(loom))]
impl<K: Hash + Eq, V, S: BuildHasher + Clone> Table<K, V, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Table {
            map: DashMap::with_hasher(hasher),
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

    /// `f(value)` under the shard's write guard, inserting `vacant()` first if `key` is absent.
    pub(crate) fn upsert<R>(
        &self,
        key: K,
        vacant: impl FnOnce() -> V,
        f: impl FnOnce(&V) -> R,
    ) -> R {
        f(self.map.entry(key).or_insert_with(vacant).value())
    }

    /// Removes `key` under its shard's write guard; `true` if it was present.
    pub(crate) fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key).is_some()
    }

    /// Entries over all shards; not one atomic cut while other threads insert or remove.
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

    fn shard<Q: Hash + ?Sized>(
        &self,
        key: &Q,
    ) -> &crate::sync::RwLock<crate::sync::HashMap<K, V, S>> {
        // Truncation is fine: only the low bits pick a shard.
        &self.shards[self.hasher.hash_one(key) as usize % Self::SHARDS]
    }

    pub(crate) fn read<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self
            .shard(key)
            .read()
            .expect("no model panics while holding a guard");
        guard.get(key).map(f)
    }

    pub(crate) fn upsert<R>(
        &self,
        key: K,
        vacant: impl FnOnce() -> V,
        f: impl FnOnce(&V) -> R,
    ) -> R {
        let mut guard = self
            .shard(&key)
            .write()
            .expect("no model panics while holding a guard");
        f(guard.entry(key).or_insert_with(vacant))
    }

    pub(crate) fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guard = self
            .shard(key)
            .write()
            .expect("no model panics while holding a guard");
        guard.remove(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .expect("no model panics while holding a guard")
                    .len()
            })
            .sum()
    }
}
