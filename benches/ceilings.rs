//! Ceilings for uniform-100k: how fast crashes over 100,000 keys could go on this machine through
//! shared tables simpler than ours, measured next to ours and the mutex in one run.
//!
//! Issue 4 asks for 3x the mutex on uniform-100k at 2 threads. This bench measures five bare
//! tables that answer as ours does with the default policy (checked before anything is timed,
//! on one thread and, for one retry per key, on two), without what the crate needs beyond that:
//! they never remove a key (a success or a purge empties the key's word; its slot stays), have
//! no metrics, capacity cap, incarnations or read cache, and all but the first never grow (each
//! is sized for this workload and panics if it fills). They are bounds, not designs; none could
//! ship. The first is ours' own table, bare; each next one is a step further from it, and takes
//! 4 MiB, because on this machine the footprint weighs as much as the design (the investigation
//! page has what 8 MiB did):
//!
//! - **sharded-table**: the shape of ours' table (256 shards, each a hashbrown table behind a
//!   reader-writer lock, entries of ours' size) with nothing of ours' crash path around it, at
//!   hashbrown's own size;
//! - **locked-buckets**: a reader-writer lock per bucket instead of per shard, the lock word in
//!   the same cache line as the bucket's three entries, so a crash takes one line, not a shard
//!   lock's line and then the entry's;
//! - **snapshot-slots**: lock-free lookups in safe Rust. Open-addressing slots hold a hash and a
//!   word as atomics and the key in a `OnceLock`, written before the hash is published. The
//!   slots are 256 shards' arrays, each reached through the thread's own snapshot of them and
//!   checked against the shard's generation on every lookup: what a table that can grow (by
//!   moving to a new array) would cost a reader, although this one never does;
//! - **once-slots**: the same slots in one fixed array: no shards, no snapshot, no generation;
//! - **atomic-slots**: one fixed array of (key, word) pairs of atomics, keys claimed by
//!   compare-and-swap. Only `u64` keys fit: the cheapest shared map a crash could go through.
//!
//! Run with `cargo bench --bench ceilings` (about a minute), then print the ratios to the
//! mutex with `python3 benches/chart.py --ceilings`. `docs/throughput-investigation.md` has the
//! figures and what they mean for the target.

// Shared with the throughput bench, which uses all of them; this one uses a part.
#[allow(dead_code, unused_imports)]
mod stores;
#[allow(dead_code, unused_imports)]
mod workloads;

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendRecoveryStatus,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use thread_local::ThreadLocal;

use stores::{Key, MutexStore, Store};
use workloads::{Workload, answers, assert_agree, bench, criterion_config, lifecycle};

const WORKLOAD: Workload = Workload::Uniform100k;

fn ceilings(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("ceiling-{}", WORKLOAD.name()));
    for threads in [1, 2] {
        group.throughput(Throughput::Elements(
            threads as u64 * WORKLOAD.ops_per_step(),
        ));
        bench::<BackendRecoveryState<Key>>(&mut group, WORKLOAD, threads);
        bench::<MutexStore>(&mut group, WORKLOAD, threads);
        bench::<BareStore<ShardedTable>>(&mut group, WORKLOAD, threads);
        bench::<BareStore<LockedBuckets>>(&mut group, WORKLOAD, threads);
        bench::<BareStore<SnapshotSlots>>(&mut group, WORKLOAD, threads);
        bench::<BareStore<OnceSlots>>(&mut group, WORKLOAD, threads);
        bench::<BareStore<AtomicSlots>>(&mut group, WORKLOAD, threads);
    }
    group.finish();
}

/// Not a bench: on one thread, every bare table answers three windows of each workload and a
/// short sequence of successes and purges exactly as ours does; on two threads, it grants each
/// fresh key one retry, however the threads' crashes interleave.
fn tables_agree_with_ours(_: &mut Criterion) {
    check::<BareStore<ShardedTable>>();
    check::<BareStore<LockedBuckets>>();
    check::<BareStore<SnapshotSlots>>();
    check::<BareStore<OnceSlots>>();
    check::<BareStore<AtomicSlots>>();
}

fn check<S: Store>() {
    // The bare tables keep no incarnations, so not the workloads that report by them.
    for workload in Workload::ALL
        .into_iter()
        .filter(|w| !w.reports_incarnations())
    {
        let ours = answers::<BackendRecoveryState<Key>>(workload);
        assert_agree(S::NAME, workload.name(), &ours, &answers::<S>(workload));
    }
    let ours = lifecycle::<BackendRecoveryState<Key>>();
    assert_agree(S::NAME, "successes and purges", &ours, &lifecycle::<S>());
    one_retry_per_key_on_two_threads::<S>();
}

/// Two threads crash the same fresh keys in the same order at one instant, meeting before each
/// key so that both insert it at once; each key must get exactly one retry between them, and be
/// refused afterwards. A table that can insert a key twice is caught; one that loses a claim
/// only when two different keys race for one slot may not be.
fn one_retry_per_key_on_two_threads<S: Store>() {
    const KEYS: u64 = 20_000;
    let store = S::with_policy(workloads::policy());
    let now = Instant::now();
    let meeting = Meeting::default();
    let retries: Vec<Vec<bool>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let _leaving = Leaving(&meeting.abandoned);
                    let crash = |key| {
                        meeting.meet(key + 1);
                        store.record_crash(key, now).is_retry()
                    };
                    (0..KEYS).map(crash).collect()
                })
            })
            .collect();
        let joined = threads.into_iter().map(|thread| thread.join());
        joined
            .map(|retries| retries.expect("a thread panicked"))
            .collect()
    });
    for (key, (first, second)) in retries[0].iter().zip(&retries[1]).enumerate() {
        let granted = usize::from(*first) + usize::from(*second);
        assert_eq!(granted, 1, "{}: key {key} got {granted} retries", S::NAME);
    }
    // And the table still holds every key: a third crash is refused.
    for key in 0..KEYS {
        let again = store.record_crash(key, now);
        assert!(!again.is_retry(), "{}: key {key} was lost", S::NAME);
    }
}

/// Where two threads wait for each other, without hanging if one of them has gone (finished or
/// panicked): a `Barrier` would wait for a panicked thread forever.
#[derive(Default)]
struct Meeting {
    arrivals: AtomicU64,
    abandoned: AtomicBool,
}

impl Meeting {
    /// Returns once both threads have arrived `times` times, or one has left.
    fn meet(&self, times: u64) {
        self.arrivals.fetch_add(1, Ordering::SeqCst);
        while self.arrivals.load(Ordering::SeqCst) < 2 * times
            && !self.abandoned.load(Ordering::SeqCst)
        {
            thread::yield_now();
        }
    }
}

/// Marks the meeting abandoned when a thread leaves it, by returning or by panicking.
struct Leaving<'a>(&'a AtomicBool);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Slots of the open-addressing tables of 32-byte slots: 4 MiB.
const SLOTS: usize = 1 << 17;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The state of one key in one word, as in the crate but simpler: the window's start, in
/// nanoseconds on [`Clock`], shifted left by two, and the crashes counted in it (0, 1, or 2 for
/// two or more). 0 is a key that never crashed or was forgotten. Only the spec's one retry per
/// window is supported, which is what the benches' policy has.
mod word {
    use super::*;

    /// The window's start and the crashes in it, if the window is open at `now`.
    fn open(word: u64, now: u64, policy: &BackendRecoveryPolicy) -> Option<(u64, Duration)> {
        let (start, crashes) = (word >> 2, word & 3);
        let elapsed = now.saturating_sub(start);
        let window = nanos(policy.budget_window);
        (crashes > 0 && elapsed < window).then(|| (crashes, Duration::from_nanos(window - elapsed)))
    }

    /// The spec's crash applied to `word` by compare-and-swap.
    pub(super) fn crash(
        word: &AtomicU64,
        now: u64,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryDecision {
        let mut current = word.load(Ordering::Acquire);
        loop {
            let (next, decision) = match open(current, now, policy) {
                Some((_, rest)) => (
                    (current & !3) | 2,
                    BackendRecoveryDecision::Refuse {
                        reason: BackendRecoveryRefusalReason::BackendUnavailable,
                        retry_after: rest,
                    },
                ),
                None => (
                    now << 2 | 1,
                    BackendRecoveryDecision::Retry {
                        retry_after: policy.retry_backoff,
                        attempt: 1,
                    },
                ),
            };
            if next == current {
                return decision;
            }
            match word.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }

    pub(super) fn status(
        word: u64,
        now: u64,
        policy: &BackendRecoveryPolicy,
    ) -> BackendRecoveryStatus {
        match open(word, now, policy) {
            None => BackendRecoveryStatus::Healthy,
            Some((1, rest)) => BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: rest,
            },
            Some((_, rest)) => BackendRecoveryStatus::Unavailable {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: rest,
            },
        }
    }

    /// Empties `word` if its window has closed at `now`; whether it did.
    pub(super) fn purge(word: &AtomicU64, now: u64, policy: &BackendRecoveryPolicy) -> bool {
        let current = word.load(Ordering::Acquire);
        current != 0
            && open(current, now, policy).is_none()
            && word
                .compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// Instants as nanoseconds, exact for 73 years either side of the table's creation.
struct Clock {
    base: Instant,
}

impl Clock {
    const MIDDLE: u64 = 1 << 61;

    fn new() -> Self {
        Clock {
            base: Instant::now(),
        }
    }

    fn ticks(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.base) {
            Some(after) => Self::MIDDLE
                .saturating_add(nanos(after))
                .min(Self::MIDDLE * 2),
            None => Self::MIDDLE.saturating_sub(nanos(self.base.duration_since(now))),
        }
    }
}

/// A bare table: the one operation it must provide, finding a key's word. [`BareStore`] writes
/// the [`Store`] calls over it once.
trait Bare: Send + Sync + 'static {
    /// The table's name in bench ids.
    const LABEL: &'static str;
    /// An empty table; `hasher` is the store's, for a table that rehashes when it grows.
    fn new(hasher: &RandomState) -> Self;
    /// `f` on `key`'s word, inserting the key first if `insert`; `None` if it is absent.
    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R>;
    /// Every word, for purges.
    fn for_each_word(&self, f: impl FnMut(&AtomicU64));
}

/// A bare table with the policy, the hasher and the clock around it.
struct BareStore<T> {
    table: T,
    policy: BackendRecoveryPolicy,
    hasher: RandomState,
    clock: Clock,
}

impl<T: Bare> Store for BareStore<T> {
    const NAME: &'static str = T::LABEL;

    fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        // What `word` implements: the spec's policy, one retry per window after a fixed backoff.
        let spec = BackendRecoveryPolicy::new(policy.retry_backoff, policy.budget_window);
        assert_eq!(
            policy, spec,
            "the bare tables support only the spec's policy"
        );
        let hasher = RandomState::new();
        BareStore {
            table: T::new(&hasher),
            policy,
            hasher,
            clock: Clock::new(),
        }
    }

    fn record_crash(&self, key: Key, now: Instant) -> BackendRecoveryDecision {
        let now = self.clock.ticks(now);
        let hash = self.hasher.hash_one(key);
        self.table
            .with_word(hash, key, true, |word| word::crash(word, now, &self.policy))
            .expect("inserted")
    }

    fn record_crash_of(&self, _: Key, _: u64, _: Instant) -> BackendRecoveryDecision {
        unimplemented!("the bare tables keep no incarnations")
    }

    fn status(&self, key: &Key, now: Instant) -> BackendRecoveryStatus {
        let now = self.clock.ticks(now);
        let hash = self.hasher.hash_one(key);
        let status =
            |word: &AtomicU64| word::status(word.load(Ordering::Acquire), now, &self.policy);
        self.table
            .with_word(hash, *key, false, status)
            .unwrap_or(BackendRecoveryStatus::Healthy)
    }

    fn record_success(&self, key: &Key) {
        let hash = self.hasher.hash_one(key);
        self.table.with_word(hash, *key, false, |word| {
            word.store(0, Ordering::Release);
        });
    }

    fn purge_expired(&self, now: Instant) -> usize {
        let now = self.clock.ticks(now);
        let mut purged = 0;
        self.table
            .for_each_word(|word| purged += usize::from(word::purge(word, now, &self.policy)));
        purged
    }
}

/// Panics once a probe has visited every slot: the fixed tables do not grow.
fn next_slot(index: usize, probes: &mut usize, len: usize) -> usize {
    *probes += 1;
    assert!(
        *probes < len,
        "a ceiling table is full: it is sized for the workload"
    );
    (index + 1) % len
}

/// **sharded-table**: the shape of ours' table, bare: 256 shards, each a hashbrown table behind a
/// reader-writer lock, the shard picked by the same bits as ours, entries of ours' size. Its
/// size is hashbrown's own (about 2 MiB here, by its load factor). What ours' table costs
/// without ours' crash path around it.
struct ShardedTable {
    shards: Box<[CachePadded<Shard>]>,
    hasher: RandomState,
}

/// An entry as large as ours' plain ones (key, `Cell`): 16 bytes. Ours' second table, of rich
/// cells, stays empty in uniform-100k.
type Entry = (Key, AtomicU64);
type Shard = RwLock<HashTable<Entry>>;
const _: () = assert!(std::mem::size_of::<Entry>() == 16);

impl Bare for ShardedTable {
    const LABEL: &'static str = "sharded-table";

    fn new(hasher: &RandomState) -> Self {
        let shards = (0..256)
            .map(|_| CachePadded::new(RwLock::new(HashTable::new())))
            .collect();
        ShardedTable {
            shards,
            hasher: hasher.clone(),
        }
    }

    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R> {
        let shard = &self.shards[((hash << 7) >> 56) as usize];
        let eq = |(stored, _): &Entry| *stored == key;
        if let Some((_, word)) = shard.read().find(hash, eq) {
            return Some(f(word));
        }
        if !insert {
            return None;
        }
        let mut entries = shard.write();
        let rehash = |(stored, _): &Entry| self.hasher.hash_one(stored);
        let entry = entries
            .entry(hash, eq, rehash)
            .or_insert_with(|| (key, AtomicU64::new(0)));
        Some(f(&entry.get().1))
    }

    fn for_each_word(&self, mut f: impl FnMut(&AtomicU64)) {
        for shard in self.shards.iter() {
            shard.read().iter().for_each(|(_, word)| f(word));
        }
    }
}

/// **locked-buckets**: buckets of three entries, each behind its own lock in one cache line;
/// a full bucket sends new keys on to the next one. 2^16 buckets: 4 MiB, 196,608 entries.
struct LockedBuckets {
    buckets: Box<[Bucket]>,
}

/// Stored keys are `key + 1`, so that 0 marks an empty entry.
#[repr(align(64))]
struct Bucket(RwLock<[(u64, AtomicU64); 3]>);

impl Bare for LockedBuckets {
    const LABEL: &'static str = "locked-buckets";

    fn new(_: &RandomState) -> Self {
        let buckets = (0..1 << 16)
            .map(|_| Bucket(RwLock::new(Default::default())))
            .collect();
        LockedBuckets { buckets }
    }

    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R> {
        let stored = key.checked_add(1).expect("key u64::MAX is not supported");
        let (mut index, mut probes) = (hash as usize % self.buckets.len(), 0);
        loop {
            let bucket = &self.buckets[index].0;
            // Entries are never emptied: a bucket with room and without the key ends the probe.
            let has_room = {
                let entries = bucket.read();
                if let Some((_, word)) = entries.iter().find(|(k, _)| *k == stored) {
                    return Some(f(word));
                }
                entries.iter().any(|(k, _)| *k == 0)
            };
            if has_room {
                if !insert {
                    return None;
                }
                let mut entries = bucket.write();
                if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == stored || *k == 0) {
                    entry.0 = stored;
                    return Some(f(&entry.1));
                }
            }
            index = next_slot(index, &mut probes, self.buckets.len());
        }
    }

    fn for_each_word(&self, mut f: impl FnMut(&AtomicU64)) {
        for bucket in self.buckets.iter() {
            bucket.0.read().iter().for_each(|(_, word)| f(word));
        }
    }
}

/// A slot of the lock-free tables. Claimed under an insert lock and never released: the key is
/// written first, then the hash is published (release), so a reader that sees the hash (acquire)
/// sees the key. Hashes are made odd, so that 0 marks an empty slot. Aligned so that no slot
/// straddles two cache lines.
#[derive(Default)]
#[repr(align(32))]
struct OnceSlot {
    hash: AtomicU64,
    key: OnceLock<Key>,
    word: AtomicU64,
}

/// `f` on `key`'s word in `slots` (open addressing, linear probes), looked up without a lock;
/// inserting, if `insert`, under `inserts`.
fn with_slot_word<T, R>(
    slots: &[OnceSlot],
    inserts: &Mutex<T>,
    hash: u64,
    key: Key,
    insert: bool,
    f: impl FnOnce(&AtomicU64) -> R,
) -> Option<R> {
    let hash = hash | 1;
    let start = (hash >> 1) as usize % slots.len();
    let (mut index, mut probes) = (start, 0);
    loop {
        let slot = &slots[index];
        match slot.hash.load(Ordering::Acquire) {
            // Slots are never released: an empty one ends the probe.
            0 => break,
            stored if stored == hash && slot.key.get() == Some(&key) => return Some(f(&slot.word)),
            _ => index = next_slot(index, &mut probes, slots.len()),
        }
    }
    if !insert {
        return None;
    }
    let _inserting = inserts.lock();
    let (mut index, mut probes) = (start, 0);
    loop {
        let slot = &slots[index];
        match slot.hash.load(Ordering::Acquire) {
            0 => {
                slot.key
                    .set(key)
                    .expect("an empty slot's key is unset: slots are claimed under the lock");
                slot.hash.store(hash, Ordering::Release);
                return Some(f(&slot.word));
            }
            stored if stored == hash && slot.key.get() == Some(&key) => return Some(f(&slot.word)),
            _ => index = next_slot(index, &mut probes, slots.len()),
        }
    }
}

fn empty_slots(len: usize) -> Arc<[OnceSlot]> {
    (0..len).map(|_| OnceSlot::default()).collect()
}

/// **snapshot-slots**: 256 shards of slots, each thread reaching them through its own snapshot.
struct SnapshotSlots {
    shards: Box<[CachePadded<SlotShard>]>,
    /// Each thread's (generation, array) per shard. Padded: `thread_local` stores the threads'
    /// values side by side, and each lookup writes its `RefCell`'s flag.
    snapshots: ThreadLocal<CachePadded<RefCell<Vec<Snapshot>>>>,
}

/// A thread's view of one shard: the generation it saw and that generation's array.
type Snapshot = (u64, Arc<[OnceSlot]>);

struct SlotShard {
    /// Would change whenever the shard moved to a new array; checked by every lookup.
    generation: AtomicU64,
    /// The shard's array; its lock is also the shard's insert lock.
    slots: Mutex<Arc<[OnceSlot]>>,
}

const SNAPSHOT_SHARDS: usize = 256;

impl Bare for SnapshotSlots {
    const LABEL: &'static str = "snapshot-slots";

    fn new(_: &RandomState) -> Self {
        let shards = (0..SNAPSHOT_SHARDS)
            .map(|_| {
                CachePadded::new(SlotShard {
                    generation: AtomicU64::new(0),
                    slots: Mutex::new(empty_slots(SLOTS / SNAPSHOT_SHARDS)),
                })
            })
            .collect();
        SnapshotSlots {
            shards,
            snapshots: ThreadLocal::new(),
        }
    }

    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R> {
        let index = (hash >> 56) as usize % SNAPSHOT_SHARDS;
        let shard = &self.shards[index];
        let snapshots = self.snapshots.get_or(|| {
            let all = self.shards.iter().map(|shard| {
                let slots = shard.slots.lock();
                (shard.generation.load(Ordering::Acquire), Arc::clone(&slots))
            });
            CachePadded::new(RefCell::new(all.collect()))
        });
        let mut snapshots = snapshots.borrow_mut();
        let generation = shard.generation.load(Ordering::Acquire);
        if snapshots[index].0 != generation {
            snapshots[index] = (generation, Arc::clone(&shard.slots.lock()));
        }
        with_slot_word(&snapshots[index].1, &shard.slots, hash, key, insert, f)
    }

    fn for_each_word(&self, mut f: impl FnMut(&AtomicU64)) {
        for shard in self.shards.iter() {
            shard.slots.lock().iter().for_each(|slot| f(&slot.word));
        }
    }
}

/// **once-slots**: the same slots in one fixed array.
struct OnceSlots {
    slots: Arc<[OnceSlot]>,
    inserts: Mutex<()>,
}

impl Bare for OnceSlots {
    const LABEL: &'static str = "once-slots";

    fn new(_: &RandomState) -> Self {
        OnceSlots {
            slots: empty_slots(SLOTS),
            inserts: Mutex::new(()),
        }
    }

    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R> {
        with_slot_word(&self.slots, &self.inserts, hash, key, insert, f)
    }

    fn for_each_word(&self, mut f: impl FnMut(&AtomicU64)) {
        self.slots.iter().for_each(|slot| f(&slot.word));
    }
}

/// **atomic-slots**: (key + 1, word) pairs of atomics, a key claimed by compare-and-swap.
/// 16-byte slots, twice as many as the other slot tables': 4 MiB.
struct AtomicSlots {
    slots: Box<[(AtomicU64, AtomicU64)]>,
}

impl Bare for AtomicSlots {
    const LABEL: &'static str = "atomic-slots";

    fn new(_: &RandomState) -> Self {
        let slots = (0..2 * SLOTS).map(|_| Default::default()).collect();
        AtomicSlots { slots }
    }

    fn with_word<R>(
        &self,
        hash: u64,
        key: Key,
        insert: bool,
        f: impl FnOnce(&AtomicU64) -> R,
    ) -> Option<R> {
        let stored = key.checked_add(1).expect("key u64::MAX is not supported");
        let (mut index, mut probes) = (hash as usize % self.slots.len(), 0);
        loop {
            let (claimed, word) = &self.slots[index];
            let mut current = claimed.load(Ordering::Acquire);
            if current == 0 {
                if !insert {
                    return None;
                }
                current = claimed
                    .compare_exchange(0, stored, Ordering::AcqRel, Ordering::Acquire)
                    .unwrap_or_else(|actual| actual);
                if current == 0 {
                    current = stored;
                }
            }
            if current == stored {
                return Some(f(word));
            }
            index = next_slot(index, &mut probes, self.slots.len());
        }
    }

    fn for_each_word(&self, mut f: impl FnMut(&AtomicU64)) {
        self.slots.iter().for_each(|(_, word)| f(word));
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = tables_agree_with_ours, ceilings
}
criterion_main!(benches);
