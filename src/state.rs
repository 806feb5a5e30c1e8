//! [`BackendRecoveryState`]: the spec's state, shared by every worker thread through `&self`.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use crate::cell::{self, Cell, Word};
use crate::decision::{BackendRecoveryDecision, BackendRecoveryStatus};
use crate::epoch::Epoch;
use crate::key::BackendKey;
use crate::policy::BackendRecoveryPolicy;
use crate::table::Table;

/// Per-backend crash recovery state, safe to share between threads.
///
/// The first crash of a backend in a budget window is answered with one `Retry` after the
/// policy's backoff; every further crash in that window with a `Refuse` carrying the rest of the
/// window. The decisions are exactly those of the single-threaded spec, to the nanosecond, for
/// any sequential history; concurrent calls behave as if they ran in some order consistent with
/// real time.
///
/// Every method takes `&self`: put the state in an `Arc` (or a `static`) and call it from any
/// number of worker threads. Keys are sharded; a crash of a backend that already has an entry
/// takes no exclusive lock.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState};
///
/// let now = Instant::now();
/// let state = BackendRecoveryState::<String>::with_policy(BackendRecoveryPolicy::new(
///     Duration::from_millis(75),
///     Duration::from_secs(30),
/// ));
///
/// // First crash: retry once after the backoff.
/// let first = state.record_crash("indexer".to_string(), now);
/// assert_eq!(first, BackendRecoveryDecision::Retry { retry_after: Duration::from_millis(75), attempt: 1 });
///
/// // Second crash 2 s later: refused for the remaining 28 s of the window.
/// let second = state.record_crash("indexer".to_string(), now + Duration::from_secs(2));
/// assert!(!second.is_retry());
/// assert_eq!(second.retry_after(), Duration::from_secs(28));
///
/// // The gate a Hello checks says the same.
/// let gate = state.status("indexer", now + Duration::from_secs(2));
/// assert!(!gate.is_available());
/// assert_eq!(gate.retry_after_ms(), Some(28_000));
///
/// // A verified healthy backend is forgotten.
/// state.record_success("indexer");
/// assert!(state.is_empty());
/// ```
pub struct BackendRecoveryState<K = BackendKey, S = RandomState> {
    policy: BackendRecoveryPolicy,
    epoch: Epoch,
    cells: Table<K, Cell, S>,
    /// Loom builds only: crashes update cells by load-then-store, for the teeth model.
    #[cfg(loom)]
    broken_cell_updates: bool,
}

impl<K: Hash + Eq> BackendRecoveryState<K, RandomState> {
    /// Empty state with the default policy (250 ms backoff, 30 s window).
    pub fn new() -> Self {
        Self::with_policy(BackendRecoveryPolicy::default())
    }

    /// Empty state with the given policy; zero durations in it are clamped to 1 ms.
    pub fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        Self::with_policy_and_hasher(policy, RandomState::new())
    }
}

impl<K: Hash + Eq> Default for BackendRecoveryState<K, RandomState> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// Empty state with the given policy and a hasher for the key map.
    pub fn with_policy_and_hasher(policy: BackendRecoveryPolicy, hasher: S) -> Self {
        BackendRecoveryState {
            policy: policy.normalized(),
            epoch: Epoch::before(Instant::now()),
            cells: Table::with_hasher(hasher),
            #[cfg(loom)]
            broken_cell_updates: false,
        }
    }

    /// The same state with a deliberately broken cell update (load, then store, no
    /// compare-and-swap), which the loom teeth model must catch. Loom builds only.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_broken_cell_updates(mut self) -> Self {
        self.broken_cell_updates = true;
        self
    }

    /// Records one observed crash of `key` at `now` and returns the recovery decision.
    ///
    /// The first crash in a budget window is granted a retry after the backoff; a later crash
    /// in the same window is refused with the rest of the window as its retry-after. A crash at
    /// or after the window's end opens a new window. A `now` earlier than the window's start
    /// counts as no time elapsed.
    pub fn record_crash(&self, key: K, now: Instant) -> BackendRecoveryDecision {
        let now = self.epoch.ticks(now);
        let crash = |word| cell::crash(word, now, &self.policy);
        // Known key: update its cell in place under the shard's read guard.
        if let Some(decision) = self.cells.read(&key, |cell| self.update_cell(cell, crash)) {
            return decision;
        }
        // New key: insert under the write guard. Another thread may have inserted it since the
        // lookup; the upsert then updates that cell, so neither crash is lost.
        self.cells
            .upsert(key, Cell::vacant, |cell| self.update_cell(cell, crash))
    }

    /// Applies a crash's transition to `cell` by compare-and-swap (or, in a loom build told to
    /// break it, by the load-then-store the teeth model must catch).
    fn update_cell(
        &self,
        cell: &Cell,
        transition: impl FnMut(Word) -> (Word, BackendRecoveryDecision),
    ) -> BackendRecoveryDecision {
        #[cfg(loom)]
        if self.broken_cell_updates {
            return cell.update_without_cas(transition);
        }
        cell.update(transition)
    }

    /// Forgets `key` after the backend was verified healthy: its next crash is a first crash.
    pub fn record_success<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cells.remove(key);
    }

    /// What a gate check at `now` sees for `key`: serve it, or refuse it with a retry-after.
    ///
    /// Read-only: it loads the key's cell and writes nothing of the state's, so checks on every
    /// Hello do not contend with each other. The answer agrees with what a crash at `now` would
    /// be told.
    pub fn status<Q>(&self, key: &Q, now: Instant) -> BackendRecoveryStatus
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.epoch.ticks(now);
        self.cells
            .read(key, |cell| cell::status(cell.load(), now, &self.policy))
            .unwrap_or(BackendRecoveryStatus::Healthy)
    }

    /// Number of keys with an entry, including entries whose window has closed.
    ///
    /// While other threads insert or remove, the count is a sum over shards taken one by one.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// `true` if no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy in force, with zero durations clamped.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        self.policy
    }
}

impl<K, S> fmt::Debug for BackendRecoveryState<K, S>
where
    K: Hash + Eq,
    S: BuildHasher + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendRecoveryState")
            .field("policy", &self.policy)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Every key hashes alike, so all keys share one shard.
    #[derive(Clone, Default)]
    struct OneShard;
    struct ZeroHasher;
    impl BuildHasher for OneShard {
        type Hasher = ZeroHasher;
        fn build_hasher(&self) -> ZeroHasher {
            ZeroHasher
        }
    }
    impl std::hash::Hasher for ZeroHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    /// A crash of a key that has an entry completes while another thread holds that key's shard
    /// read guard, so it takes no exclusive lock. As a control, a crash of a new key in the same
    /// shard, which must insert under the write guard, waits until the guard is released.
    #[test]
    fn crash_of_a_known_key_takes_no_exclusive_lock() {
        let now = Instant::now();
        let state = BackendRecoveryState::<u32, OneShard>::with_policy_and_hasher(
            BackendRecoveryPolicy::default(),
            OneShard,
        );
        assert!(state.record_crash(1, now).is_retry());

        let state = &state;
        std::thread::scope(|scope| {
            let guard = state.cells.hold_read_guard(&1);

            let (known_done, known) = mpsc::channel();
            scope.spawn(move || known_done.send(state.record_crash(1, now)).unwrap());
            // Blocking here would mean the known-key path wants the write guard: the test would
            // fail by timeout rather than hang forever.
            let decision = known.recv_timeout(Duration::from_secs(60));
            assert!(matches!(&decision, Ok(d) if !d.is_retry()), "{decision:?}");

            let (new_done, new) = mpsc::channel();
            scope.spawn(move || new_done.send(state.record_crash(2, now)).unwrap());
            assert!(
                new.recv_timeout(Duration::from_millis(200)).is_err(),
                "an insert completed while a read guard was held on its shard"
            );
            drop(guard);
            assert!(new.recv().unwrap().is_retry());
        });
    }
}
