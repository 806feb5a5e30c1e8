//! Where the cells live: a sharded map with a closure-based API, so no guard ever escapes.
//!
//! Lock discipline:
//! - [`Table::read`], [`Table::read_entry`] and [`Table::for_each`] run their closures under a
//!   shard's **read** guard: lookups and cell updates by compare-and-swap, many threads at once,
//!   even on one key;
//! - [`Table::upsert`], [`Table::upsert_rich`], [`Table::try_update_rich`],
//!   [`Table::remove_if`] and [`Table::retain`] take a shard's **write** guard and hand out
//!   `&mut` values: a removal can never race a CAS on the cell it removes (no update is lost
//!   into a detached cell), a value moves between the shard's two tables with no reader
//!   looking, and whatever a cell keeps outside its atomic word is only ever touched
//!   exclusively;
//! - at most one guard is held at a time, which the closures enforce: each guard ends with its
//!   call.
//!
//! Two forms of value: each shard keeps its entries in two tables, `plain` for the values most
//! keys keep all their life (a cell's word alone, so that the table stays dense) and `rich` for
//! the few that need more (a cell a thread caches, or one that remembers an incarnation). A key
//! is in exactly one of them; it moves from plain to rich, under the write guard, and never
//! back. Lookups under the read guard probe `plain` first, and `rich` only if it holds
//! anything.
//!
//! A shard's two `hashbrown::HashTable`s are behind one reader-writer lock (`parking_lot`'s;
//! loom's under `--cfg loom`, so the models check this very code, with eight shards). Why not
//! `DashMap`: its API hashes the key again for every call, so a crash of a new key (a lookup
//! under the read guard that misses, then the insert under the write guard) would hash it
//! twice, and a purge would have to lock every shard; nor can it keep two forms of value under
//! one lock. Here callers hash once ([`Table::hash_one`]) and pass the hash to every call, and
//! each shard keeps a lower bound of when its entries become purgeable, so a purge skips the
//! shards that hold nothing to purge. `docs/design.md` has the measurements.
//!
//! A lookup of a key the table does not hold (the gate check of a healthy backend, by far the
//! most common call of a broker) takes no guard in the common case: each shard keeps a summary
//! of the hashes it may hold, one bit of a 64-bit word per key ([`Shard::present`]), and
//! [`Table::read_entry`] loads it before the read guard. A bit that is clear means "definitely
//! absent", and the lookup answers `None` without locking or writing anything shared; a bit
//! that is set (the key is there, or another key shares the bit, or a removed key left it set)
//! sends the lookup under the read guard. Taking a read guard is a read-modify-write
//! of the shard's lock word, a cache line that every core looking up keys of that shard keeps
//! stealing from the others; the summary is written only under the write guard.
//!
//! Why the summary can be trusted, and why its orderings are enough:
//! - the invariant is that every key in a shard has its bit set in the shard's summary. Every
//!   write of the summary happens under the shard's write guard: an insert sets the key's bit
//!   ([`Table::upsert`], [`Table::upsert_rich`]) *before* the entry is added, so before the
//!   guard is released and before any reader can find the entry; a removal leaves the bits as
//!   they are (a set bit without an entry only costs a lookup the read guard), except that a
//!   shard left empty gets an empty summary ([`Table::remove_if`]), and a purge
//!   ([`Table::retain`]) rebuilds a small shard's summary from its survivors. So the summary
//!   only ever over-approximates the keys present, including while an insert is in progress;
//! - a check that must see an insert sees its bit. If the insert returned and the checking
//!   thread has synchronised with the inserter since (a join, a channel, a release/acquire
//!   flag), the `fetch_or` that set the bit happens before the check's load, so by coherence the
//!   load reads that write or a later one. Later writes of the summary are made under later
//!   write guards (the lock orders all of them), which kept the bit for as long as the key was
//!   present: a clear bit then means the key was removed since, and `None` is the right answer.
//!   Coherence alone would give this with `Relaxed`;
//! - the load is `Acquire` and the writes `Release` so that a lookup answering from the
//!   summary alone is at least as synchronised as one under the read guard would have been,
//!   which acquires the lock last released by a writer: a thread told "absent" because a
//!   removal emptied the shard sees whatever happened before that removal, as through the lock.
//!   On x86 both cost nothing more than plain loads and locked read-modify-writes;
//! - a check racing an insert may load the summary before the bit is set, and answers as if it
//!   came first: the insert has not returned, so that order is allowed.
//!
//! The loom model `loom-tests/tests/absent_key_check.rs` checks the second point, with a teeth
//! variant whose inserts do not set their bit.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use crate::sync::{AtomicU64, Ordering, RwLock};

mod shard;
use shard::{Entries, PRESENCE_REBUILD_MAX, Shard, presence_bit, remove_when};

/// Shards of the map (a power of two). More shards cost 128 bytes each per state and make a
/// collision between two writers rarer; it matters most when threads outnumber cores, where the
/// holder of a write guard can be descheduled and every thread that needs its shard waits for
/// it. On the churn bench, 8 threads on 2 cores, 32 or 64 shards are markedly slower than 256
/// (see `docs/design.md`).
/// Under loom, eight: enough that two keys of a model usually land in different shards (with
/// two, the capacity models, `loom-tests/tests/capacity.rs`, would miss a bug that needs that: a
/// purge skipping the shard of an insert still in progress), few enough for loom's branch
/// budget; models that need two keys in one shard force it with a constant hasher.
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
    /// What the bound depends on besides the value (the state's policy), kept by the table.
    type Rules;
    fn purgeable_from(&self, rules: &Self::Rules) -> u64;
}

/// A value in one of the table's two forms: `Plain`, the form most entries keep all their life
/// (small, so the table stays dense), or `Rich`, the few that need more (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Form<P, R> {
    Plain(P),
    Rich(R),
}

impl<P, R> Form<&mut P, &mut R> {
    /// A shorter-lived `&mut` of the same value, so that it can be used again after.
    fn reborrow(&mut self) -> Form<&mut P, &mut R> {
        match self {
            Form::Plain(plain) => Form::Plain(&mut **plain),
            Form::Rich(rich) => Form::Rich(&mut **rich),
        }
    }
}

impl<P: Purgeable, R: Purgeable<Rules = P::Rules>> Purgeable for Form<&P, &R> {
    type Rules = P::Rules;
    fn purgeable_from(&self, rules: &P::Rules) -> u64 {
        match self {
            Form::Plain(plain) => plain.purgeable_from(rules),
            Form::Rich(rich) => rich.purgeable_from(rules),
        }
    }
}

impl<P: Purgeable, R: Purgeable<Rules = P::Rules>> Purgeable for Form<&mut P, &mut R> {
    type Rules = P::Rules;
    fn purgeable_from(&self, rules: &P::Rules) -> u64 {
        match self {
            Form::Plain(plain) => plain.purgeable_from(rules),
            Form::Rich(rich) => rich.purgeable_from(rules),
        }
    }
}

/// A sharded map from keys to values that are updated in place through `&`, each value in one
/// of two [`Form`]s: `P`, or `R` once it needs more.
pub(crate) struct Table<K, P: Purgeable, R, S> {
    shards: Box<[CachePadded<Shard<K, P, R>>]>,
    hasher: S,
    rules: P::Rules,
    /// Loom builds only: the deliberate bugs of the teeth models (`sync.rs`).
    #[cfg(loom)]
    pub(crate) teeth: crate::sync::Teeth,
}

impl<K, P, R, S> Table<K, P, R, S>
where
    K: Hash + Eq,
    P: Purgeable,
    R: Purgeable<Rules = P::Rules> + From<P>,
    S: BuildHasher,
{
    pub(crate) fn with_hasher(hasher: S, rules: P::Rules) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                CachePadded::new(Shard {
                    entries: RwLock::new(Entries {
                        plain: HashTable::new(),
                        rich: HashTable::new(),
                    }),
                    purgeable_from: AtomicU64::new(u64::MAX),
                    present: AtomicU64::new(0),
                })
            })
            .collect();
        Table {
            shards,
            hasher,
            rules,
            #[cfg(loom)]
            teeth: crate::sync::Teeth::default(),
        }
    }

    /// Marks `hash` present in `shard` before an insert (see [`Shard::mark_present`]).
    fn mark_present(&self, shard: &Shard<K, P, R>, hash: u64) {
        #[cfg(loom)]
        if self.teeth.presence {
            return;
        }
        shard.mark_present(hash);
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
    fn shard(&self, hash: u64) -> &Shard<K, P, R> {
        let index = (hash << 7) >> (64 - SHARD_BITS);
        &self.shards[index as usize]
    }

    /// `f(value)` under the shard's read guard, or `None` if `key` is absent (without any guard
    /// if the shard's presence summary says so).
    #[cfg(test)]
    pub(crate) fn read<Q, T>(
        &self,
        hash: u64,
        key: &Q,
        f: impl for<'a> FnOnce(Form<&'a P, &'a R>) -> T,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.read_entry(hash, key, |_, value| f(value))
    }

    /// As [`read_entry`](Self::read_entry), for a closure that may update the value through `&`: after
    /// it, the shard's purge bound is lowered to the value's if that is earlier. Sound under
    /// the read guard: a purge of the shard takes the write guard, so it sees the update and
    /// the bound together, or neither; one that skipped the shard on the old bound ran before
    /// the update. Costs a load of the bound; a store only when it moves.
    #[inline]
    pub(crate) fn read_update<Q, T>(
        &self,
        hash: u64,
        key: &Q,
        f: impl for<'a> FnOnce(Form<&'a P, &'a R>) -> T,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let shard = self.shard(hash);
        if !shard.may_hold(hash) {
            return None;
        }
        let entries = shard.entries.read();
        let (_, value) = entries.find(hash, key)?;
        let answer = f(value);
        let from = value.purgeable_from(&self.rules);
        if from < shard.purgeable_from.load(Ordering::Relaxed) {
            shard.lower_purge_bound(from);
        }
        Some(answer)
    }

    /// As [`read`](Self::read), with the stored key too.
    #[inline]
    pub(crate) fn read_entry<Q, T>(
        &self,
        hash: u64,
        key: &Q,
        f: impl for<'a> FnOnce(&'a K, Form<&'a P, &'a R>) -> T,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let shard = self.shard(hash);
        if !shard.may_hold(hash) {
            return None;
        }
        let entries = shard.entries.read();
        // The guard lives until the closure returns: a cell is never updated after its removal.
        let found = entries.find(hash, key);
        found.map(|(stored, value)| f(stored, value))
    }

    /// `f` on `key`'s value in the rich form (moved there first if it is plain), under the
    /// shard's write guard if it can be had without waiting; `None` if it cannot, or if `key`
    /// is absent.
    pub(crate) fn try_update_rich<Q, T>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&mut R) -> T,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut entries = self.shard(hash).entries.try_write()?;
        let rehash = |stored: &K| self.hasher.hash_one(stored);
        entries.find_rich(hash, key, rehash).map(f)
    }

    /// `f(value)` under the shard's write guard, inserting the plain value `vacant()` makes
    /// first if `key` is absent; also says whether it inserted. If `vacant()` declines
    /// (`None`), nothing is inserted and the key comes back. After `f`, the shard's purge bound
    /// is lowered to the value's if that is earlier (see [`retain`](Self::retain)).
    pub(crate) fn upsert<T>(
        &self,
        hash: u64,
        key: K,
        vacant: impl FnOnce() -> Option<P>,
        f: impl for<'a> FnOnce(Form<&'a mut P, &'a mut R>) -> T,
    ) -> Result<(T, bool), K> {
        let shard = self.shard(hash);
        let mut entries = shard.entries.write();
        let (mut value, inserted) = match entries.find_mut(hash, &key) {
            Some(value) => (value, false),
            None => match vacant() {
                Some(value) => {
                    self.mark_present(shard, hash);
                    let hasher = |(stored, _): &(K, P)| self.hasher.hash_one(stored);
                    let entry = entries.plain.insert_unique(hash, (key, value), hasher);
                    (Form::Plain(&mut entry.into_mut().1), true)
                }
                None => return Err(key),
            },
        };
        let answer = f(value.reborrow());
        shard.lower_purge_bound(value.purgeable_from(&self.rules));
        Ok((answer, inserted))
    }

    /// As [`upsert`](Self::upsert), with the value in the rich form: a plain one is moved
    /// there first, a new one is made rich from `vacant()`.
    pub(crate) fn upsert_rich<T>(
        &self,
        hash: u64,
        key: K,
        vacant: impl FnOnce() -> Option<P>,
        f: impl FnOnce(&mut R) -> T,
    ) -> Result<(T, bool), K> {
        let shard = self.shard(hash);
        let mut entries = shard.entries.write();
        let rehash = |stored: &K| self.hasher.hash_one(stored);
        let (value, inserted) = match entries.find_rich(hash, &key, rehash) {
            Some(value) => (value, false),
            None => match vacant() {
                Some(value) => {
                    self.mark_present(shard, hash);
                    let hasher = |(stored, _): &(K, R)| self.hasher.hash_one(stored);
                    let rich = (key, R::from(value));
                    let entry = entries.rich.insert_unique(hash, rich, hasher);
                    (&mut entry.into_mut().1, true)
                }
                None => return Err(key),
            },
        };
        let answer = f(value);
        shard.lower_purge_bound(value.purgeable_from(&self.rules));
        Ok((answer, inserted))
    }

    /// Under the shard's write guard, removes `key` if `f(value)` says so; `true` if removed.
    /// A value `f` keeps lowers the shard's purge bound to its own if that is earlier.
    pub(crate) fn remove_if<Q>(
        &self,
        hash: u64,
        key: &Q,
        f: impl for<'a> FnOnce(Form<&'a mut P, &'a mut R>) -> bool,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let shard = self.shard(hash);
        let mut entries = shard.entries.write();
        let Entries { plain, rich } = &mut *entries;
        let rules = &self.rules;
        let mut kept = u64::MAX;
        let removed =
            if let Ok(entry) = plain.find_entry(hash, |(stored, _)| stored.borrow() == key) {
                remove_when(entry, |plain| {
                    let remove = f(Form::Plain(&mut *plain));
                    kept = plain.purgeable_from(rules);
                    remove
                })
            } else {
                match rich.find_entry(hash, |(stored, _)| stored.borrow() == key) {
                    Ok(entry) => remove_when(entry, |rich| {
                        let remove = f(Form::Rich(&mut *rich));
                        kept = rich.purgeable_from(rules);
                        remove
                    }),
                    Err(_) => false,
                }
            };
        if !removed {
            shard.lower_purge_bound(kept);
        }
        // The removed key's bit stays set (another key may share it), unless nothing is left.
        if removed && plain.is_empty() && rich.is_empty() {
            shard.reset_presence(0);
        }
        removed
    }

    /// Keeps the entries `keep` accepts, one shard's write guard at a time, and returns how
    /// many it removed and the earliest purge bound of all shards after it (`u64::MAX` if
    /// none). Shards whose bound is after `cutoff` (every shard, if `cutoff` is `None`) are
    /// skipped without taking their lock.
    ///
    /// Why skipping is sound: a shard's bound is reset here to the earliest tick of its
    /// survivors and lowered by every insert or write-guarded update ([`upsert`](Self::upsert),
    /// [`upsert_rich`](Self::upsert_rich));
    /// the one update that takes no write guard, a crash's compare-and-swap under the read
    /// guard, never moves an entry's window earlier (the state sends a crash that could, the
    /// revival of a tombstone, to the write guard). What a skipped shard does not show is an
    /// insert still in progress under its write guard: a purge that runs before it completes
    /// simply comes first. A caller that needs to count such inserts (the capacity hint)
    /// passes a cutoff of `u64::MAX`, so that every shard is visited under its lock.
    ///
    /// A visited shard's presence summary is rebuilt from its survivors if it held at most
    /// [`PRESENCE_REBUILD_MAX`] entries (emptied if none survive), and kept otherwise.
    pub(crate) fn retain(
        &self,
        cutoff: Option<u64>,
        mut keep: impl for<'a> FnMut(&'a K, Form<&'a mut P, &'a mut R>) -> bool,
    ) -> (usize, u64) {
        let mut removed = 0;
        let mut earliest = u64::MAX;
        for shard in self.shards.iter() {
            // Acquire, with the `Release` below: a purge that skips a shard another purge has
            // just emptied sees that purge's removals counted, so the lead's survivor count is
            // not stale (see `Occupancy`'s orderings; `loom-tests/tests/automatic_purge.rs`).
            let bound = shard.purgeable_from.load(Ordering::Acquire);
            if cutoff.is_none_or(|cutoff| bound > cutoff) {
                earliest = earliest.min(bound);
                continue;
            }
            let mut entries = shard.entries.write();
            let Entries { plain, rich } = &mut *entries;
            let before = plain.len() + rich.len();
            let rebuild = before <= PRESENCE_REBUILD_MAX;
            let mut survivors = u64::MAX;
            let mut present = 0;
            let mut keep = |key: &K, mut value: Form<&mut P, &mut R>| {
                let kept = keep(key, value.reborrow());
                if kept {
                    survivors = survivors.min(value.purgeable_from(&self.rules));
                    if rebuild {
                        present |= presence_bit(self.hasher.hash_one(key));
                    }
                }
                kept
            };
            plain.retain(|(key, value)| keep(key, Form::Plain(value)));
            rich.retain(|(key, value)| keep(key, Form::Rich(value)));
            let after = plain.len() + rich.len();
            removed += before - after;
            if rebuild || after == 0 {
                shard.reset_presence(present);
            }
            shard.purgeable_from.store(survivors, Ordering::Release);
            earliest = earliest.min(survivors);
        }
        (removed, earliest)
    }

    /// `f` on every entry, one shard's read guard at a time: each entry is read consistently,
    /// the whole is not one atomic cut.
    pub(crate) fn for_each(&self, mut f: impl for<'a> FnMut(&'a K, Form<&'a P, &'a R>)) {
        for shard in self.shards.iter() {
            let entries = shard.entries.read();
            for (key, value) in entries.plain.iter() {
                f(key, Form::Plain(value));
            }
            for (key, value) in entries.rich.iter() {
                f(key, Form::Rich(value));
            }
        }
    }

    /// Entries over all shards, counted shard by shard: lets tests check the state's count.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let entries = shard.entries.read();
                entries.plain.len() + entries.rich.len()
            })
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

#[cfg(all(test, not(loom)))]
mod tests;
