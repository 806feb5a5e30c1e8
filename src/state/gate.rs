//! The gate: [`status`](BackendRecoveryState::status), the check of every client Hello.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use crate::cell::Shared;
use crate::decision::BackendRecoveryStatus;
use crate::word;

use super::BackendRecoveryState;

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// What a gate check at `now` sees for `key`: serve it, or refuse it with a retry-after.
    ///
    /// The answer agrees with what a crash at `now` would be told, except in a state that is full
    /// (see [`with_max_entries`](Self::with_max_entries)): a check reserves no place, so a key
    /// without an entry reads `Healthy` while its crash would be refused with
    /// [`CapacityExhausted`](crate::BackendRecoveryRefusalReason::CapacityExhausted).
    ///
    /// Read-only, and built to scale with cores: the first checks of a tracked key on a thread
    /// look it up under the shard's read guard, and one of them (about the 25th on a thread
    /// that looks up nothing else; see `cache.rs`) also gives the cell a word that
    /// can be shared (under the write guard, once per entry) and keeps a handle on it in a
    /// per-thread cache of up to 4,096 keys. From then on, checks of that key on that thread
    /// load the cell through the handle and write no shared memory at all. A key without an
    /// entry (never crashed, forgotten by a success, or purged) is usually known absent from
    /// its shard's presence summary, one atomic load, without any guard either; only when the
    /// summary cannot tell (another key of the shard shares its bit) is it looked up under the
    /// read guard. `K: Clone` because the cache keeps its own copy of the key.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::{BackendRecoveryState, BackendRecoveryStatus};
    ///
    /// let state = BackendRecoveryState::<String>::new(); // 30 s window
    /// let now = Instant::now();
    /// assert_eq!(state.status("search", now), BackendRecoveryStatus::Healthy);
    /// state.record_crash("search".to_string(), now);
    /// state.record_crash("search".to_string(), now); // budget spent
    /// let gate = state.status("search", now + Duration::from_secs(10));
    /// assert!(!gate.is_available());
    /// assert_eq!(gate.retry_after_ms(), Some(20_000));
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Hash`, `Eq` or `Clone` implementation (or the hasher) panics;
    /// the panic propagates to the caller.
    pub fn status<Q>(&self, key: &Q, now: Instant) -> BackendRecoveryStatus
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.epoch.ticks(now);
        let hash = self.cells.hash_one(key);
        let admit = match self.reads.lookup(hash, key, Shared::load_live) {
            Ok(word) => return word::status(word, now, &self.policy),
            Err(admit) => admit,
        };
        // Not cached: the cell read under the read guard is the answer. A key this thread
        // looked up recently is cached for next time.
        let entry = self.cells.read_entry(hash, key, |stored, cell| {
            (cell.load(), admit.then(|| (stored.clone(), cell.shared())))
        });
        let Some((word, admitted)) = entry else {
            return BackendRecoveryStatus::Healthy;
        };
        if let Some((key, shared)) = admitted {
            self.cache(hash, key, shared);
        }
        word::status(word, now, &self.policy)
    }
}
