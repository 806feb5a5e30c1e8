//! One shard of the [`Table`](super::Table): its entries in their two forms, its purge bound
//! and its presence summary (the table's module docs say how they are used and why the
//! summary's orderings are enough).

use std::borrow::Borrow;

use hashbrown::HashTable;

use super::{Form, SHARD_BITS};
use crate::sync::{AtomicU64, Ordering, RwLock};

/// Where a key's bit in its shard's presence summary comes from: the six bits of the hash just
/// below those that pick the shard (see [`super::Table::shard`]), so that keys of one shard spread over
/// the summary's 64 bits.
const PRESENCE_SHIFT: u32 = 57 - SHARD_BITS - 6;

/// A shard of at most this many entries gets its presence summary rebuilt from its survivors by
/// a purge (one hash per survivor, under the write guard it holds anyway); a larger one keeps
/// its summary, which is then nearly full in any case (64 bits).
pub(super) const PRESENCE_REBUILD_MAX: usize = 64;

/// `hash`'s bit in its shard's presence summary.
#[inline]
pub(super) fn presence_bit(hash: u64) -> u64 {
    1 << ((hash >> PRESENCE_SHIFT) & 63)
}

/// One shard's entries: each key is in exactly one of the two tables. A value moves from
/// `plain` to `rich` (never back) under the write guard; see [`super::Table::upsert_rich`].
pub(super) struct Entries<K, P, R> {
    pub(super) plain: HashTable<(K, P)>,
    pub(super) rich: HashTable<(K, R)>,
}

impl<K, P, R> Entries<K, P, R> {
    /// `key`'s entry in either table. Plain first: that is where most keys are; the rich table
    /// is not probed while it is empty.
    #[inline]
    pub(super) fn find<Q>(&self, hash: u64, key: &Q) -> Option<(&K, Form<&P, &R>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if let Some((stored, plain)) = self.plain.find(hash, |(stored, _)| stored.borrow() == key) {
            return Some((stored, Form::Plain(plain)));
        }
        if self.rich.is_empty() {
            return None;
        }
        let found = self.rich.find(hash, |(stored, _)| stored.borrow() == key);
        found.map(|(stored, rich)| (stored, Form::Rich(rich)))
    }

    /// As [`find`](Self::find), but mutable.
    pub(super) fn find_mut<Q>(&mut self, hash: u64, key: &Q) -> Option<Form<&mut P, &mut R>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let eq = |(stored, _): &(K, P)| stored.borrow() == key;
        if let Some((_, plain)) = self.plain.find_mut(hash, eq) {
            return Some(Form::Plain(plain));
        }
        let found = self
            .rich
            .find_mut(hash, |(stored, _)| stored.borrow() == key);
        found.map(|(_, rich)| Form::Rich(rich))
    }

    /// `key`'s value in the rich form, moving it there first if it is plain; `None` if absent.
    /// `rehash` is the table's hasher, which the rich table needs if it grows.
    pub(super) fn find_rich<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        rehash: impl Fn(&K) -> u64,
    ) -> Option<&mut R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        R: From<P>,
    {
        if let Ok(entry) = self
            .plain
            .find_entry(hash, |(stored, _)| stored.borrow() == key)
        {
            // Room first: were the rich table to grow after the removal and the caller's hasher
            // to panic, the key would be lost.
            self.rich.reserve(1, |(stored, _)| rehash(stored));
            let ((stored, plain), _) = entry.remove();
            let rich = (stored, R::from(plain));
            let moved = self
                .rich
                .insert_unique(hash, rich, |(stored, _)| rehash(stored));
            return Some(&mut moved.into_mut().1);
        }
        let found = self
            .rich
            .find_mut(hash, |(stored, _)| stored.borrow() == key);
        found.map(|(_, rich)| rich)
    }
}

/// Removes `entry` if `f(value)` says so; `true` if removed.
pub(super) fn remove_when<K, V>(
    mut entry: hashbrown::hash_table::OccupiedEntry<'_, (K, V)>,
    f: impl FnOnce(&mut V) -> bool,
) -> bool {
    let remove = f(&mut entry.get_mut().1);
    if remove {
        entry.remove();
    }
    remove
}

/// One shard: its entries, and the earliest tick at which any of them may be purgeable.
pub(super) struct Shard<K, P, R> {
    pub(super) entries: RwLock<Entries<K, P, R>>,
    /// A lower bound of the entries' [`super::Purgeable::purgeable_from`]: lowered by every insert or
    /// write-guarded update ([`super::Table::upsert`], [`super::Table::upsert_rich`]; a move to the rich table
    /// alone, as in [`super::Table::try_update_rich`], keeps the value's word, so its bound), reset by
    /// [`super::Table::retain`]; `u64::MAX` when the shard is empty.
    /// A removal leaves it as it is, possibly lower than need be, which costs a purge a scan of
    /// the shard, nothing more. (Recomputing it on removal would move the cost from purges to
    /// removals, for no gain.)
    pub(super) purgeable_from: AtomicU64,
    /// The presence summary: the [`presence_bit`]s of the keys the shard may hold, a superset
    /// of those of the keys it holds. Written only under the write guard; read without any
    /// guard by lookups (see the module docs for why that is enough).
    pub(super) present: AtomicU64,
}

impl<K, P, R> Shard<K, P, R> {
    /// Lowers the purge bound to `from` if that is earlier. Callers hold the write guard, so no
    /// purge of this shard runs between their update and this.
    pub(super) fn lower_purge_bound(&self, from: u64) {
        self.purgeable_from.fetch_min(from, Ordering::Relaxed);
    }

    /// `false` if the shard definitely holds no key of `hash`: one load, no guard, no write.
    #[inline]
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        // Acquire, with the `Release` writes: see the module docs.
        self.present.load(Ordering::Acquire) & presence_bit(hash) != 0
    }

    /// Sets the bit of a key about to be inserted. Callers hold the write guard and call this
    /// before the entry is added, so the summary covers it before any reader can find it.
    pub(super) fn mark_present(&self, hash: u64) {
        self.present.fetch_or(presence_bit(hash), Ordering::Release);
    }

    /// Replaces the summary by `bits`, which cover every key the shard holds. Callers hold the
    /// write guard. Only a changed summary is stored, so that readers keep their cached copy.
    pub(super) fn reset_presence(&self, bits: u64) {
        if self.present.load(Ordering::Relaxed) != bits {
            self.present.store(bits, Ordering::Release);
        }
    }
}
