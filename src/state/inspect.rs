//! What a state holds and has decided: its size, policy, cap, a snapshot and the metrics.

use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use crate::metrics::BackendRecoveryMetrics;
use crate::policy::BackendRecoveryPolicy;
use crate::word;

use super::{BackendRecoverySnapshotEntry, BackendRecoveryState};

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// Number of keys with an entry, counting entries whose window has closed but that were not
    /// purged yet, and tombstones (see [`record_crash_of`](Self::record_crash_of)).
    ///
    /// Bounded whatever the caller does, without a background thread: inserts purge by
    /// themselves once the count reaches `max(2 * E, E + 1024)`, where `E` is what survived the
    /// previous automatic purge, and an automatic purge keeps only entries whose window started
    /// within two budget windows of its instant. Inserts that race a running purge can add up
    /// to as many again before they must purge too, so `len()` stays within
    /// `2 * max(2 * E, E + 1024)` plus 32 entries per thread inserting at once (without a cap,
    /// a thread checks the count every 32 of its inserts): with instants that follow real time,
    /// a small multiple of the keys that crashed in the last two windows.
    ///
    /// Exact when no other thread is inserting or removing. Without a cap, each thread counts
    /// its own inserts and removals (so that counting never contends) and this sums them: O(threads
    /// that ever inserted).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("index", now);
    /// assert_eq!(state.len(), 2);
    /// state.record_success("search");
    /// assert_eq!(state.len(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn len(&self) -> usize {
        self.occupancy.len()
    }

    /// `true` if no key has an entry (see [`len`](Self::len)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// assert!(state.is_empty());
    /// state.record_crash("search", Instant::now());
    /// assert!(!state.is_empty());
    /// state.record_success("search");
    /// assert!(state.is_empty());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy in force, normalised: zero durations clamped to 1 ms, retries to
    /// [`MAX_RETRIES_PER_WINDOW`](crate::MAX_RETRIES_PER_WINDOW), a backoff factor to at least
    /// 1, jitter to at most 1, and the launch timeout to the budget window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState, MAX_RETRIES_PER_WINDOW};
    ///
    /// let mut policy = BackendRecoveryPolicy::new(Duration::ZERO, Duration::from_secs(30));
    /// policy.retries_per_window = 100; // a public field, set past what the state can count
    /// let state = BackendRecoveryState::<&str>::with_policy(policy);
    /// assert_eq!(state.policy().retries_per_window, MAX_RETRIES_PER_WINDOW);
    /// assert_eq!(state.policy().retry_backoff, Duration::from_millis(1));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        *self.policy
    }

    /// The cap set by [`with_max_entries`](Self::with_max_entries), if any (a cap of
    /// `usize::MAX` reads as none).
    ///
    /// # Examples
    ///
    /// ```
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// assert_eq!(BackendRecoveryState::<&str>::new().max_entries(), None);
    /// let capped = BackendRecoveryState::<&str>::new().with_max_entries(10_000);
    /// assert_eq!(capped.max_entries(), Some(10_000));
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn max_entries(&self) -> Option<usize> {
        Some(self.occupancy.max_entries()).filter(|&max| max != usize::MAX)
    }

    /// Every tracked key with its status at `now`, for admin endpoints and debugging.
    ///
    /// Each entry is read consistently; the whole is not one atomic cut: shards are read one
    /// after another while other threads keep recording. Entries whose window has closed are
    /// listed as `Healthy` until they are purged, and so are keys that only have a launch claim
    /// ([`claim_launch`](Self::claim_launch)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("search", now); // refused
    /// state.record_crash("index", now);
    /// let mut entries = state.snapshot(now + Duration::from_secs(1));
    /// entries.sort_by_key(|entry| entry.key);
    /// assert_eq!(entries.len(), 2);
    /// assert!(entries[0].key == "index" && entries[0].status.is_available());
    /// assert!(entries[1].key == "search" && !entries[1].status.is_available());
    /// ```
    ///
    /// # Panics
    ///
    /// Never, unless the key's `Clone` implementation panics; the panic propagates to
    /// the caller.
    pub fn snapshot(&self, now: Instant) -> Vec<BackendRecoverySnapshotEntry<K>>
    where
        K: Clone,
    {
        let now = self.epoch.ticks(now);
        let mut entries = Vec::with_capacity(self.len());
        self.cells.for_each(|key, cell| {
            entries.push(BackendRecoverySnapshotEntry {
                key: key.clone(),
                status: word::status(cell.load(), now, &self.policy),
            });
        });
        entries
    }

    /// What the state has decided since it was built (all zeros after
    /// [`without_metrics`](Self::without_metrics)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::BackendRecoveryState;
    ///
    /// let state = BackendRecoveryState::<&str>::new();
    /// let now = Instant::now();
    /// state.record_crash("search", now);
    /// state.record_crash("search", now);
    /// let metrics = state.metrics();
    /// assert_eq!((metrics.retries_granted, metrics.refusals), (1, 1));
    /// assert_eq!(metrics.crash_reports(), 2);
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn metrics(&self) -> BackendRecoveryMetrics {
        self.metrics.read()
    }
}
