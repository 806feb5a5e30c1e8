//! Crash recovery decisions for the backends a process broker supervises, shared by every
//! worker thread without a global lock.
//!
//! When a backend crashes, a broker asks [`BackendRecoveryState::record_crash`] whether to retry
//! it (once per budget window, after a short backoff) or to refuse it as unavailable for the
//! rest of the window, telling clients when to come back. Every client Hello checks
//! [`BackendRecoveryState::status`] first. The decisions are those of the broker's original
//! single-threaded module, to the nanosecond; this crate makes them concurrent.
//!
//! How it works (the packed per-backend word and its transitions, the sharded map and its lock
//! discipline, the per-thread read caches, automatic purging, and why each is built the way it
//! is) is described in the design document, `docs/design.md` in the repository.
//!
//! No method panics on its own (one arithmetic overflow aside, on counters set by hand; see
//! [`BackendRecoveryMetrics::crash_reports`]): a panic can only come from the caller's key type
//! (its `Hash`, `Eq`, `Clone` or `Drop`) or hasher, and propagates to the caller. Each item's
//! docs say which.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use backend_recovery::{BackendKey, BackendRecoveryState, BrokerInstanceKey};
//!
//! let state = Arc::new(BackendRecoveryState::new());
//! let key = BackendKey::new(BrokerInstanceKey::Shared, "indexer", "1.4.2");
//! let now = Instant::now();
//!
//! // Every worker that sees the backend die reports it; one of them gets the retry.
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let (state, key) = (Arc::clone(&state), key.clone());
//!         std::thread::spawn(move || state.record_crash(key, now).is_retry())
//!     })
//!     .collect();
//! let retries = workers.into_iter().map(|w| w.join().unwrap());
//! assert_eq!(retries.filter(|&retry| retry).count(), 1);
//! ```

#![forbid(unsafe_code)]

mod builder;
mod cache;
mod cell;
mod decision;
mod epoch;
mod key;
mod metrics;
mod occupancy;
mod policy;
mod state;
mod sync;
mod table;
mod word;

pub use builder::{BackendRecoveryPolicyBuilder, PolicyError};
pub use decision::{
    BackendCrashReport, BackendLaunchDecision, BackendRecoveryDecision,
    BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
pub use key::{BackendKey, BrokerInstanceKey};
pub use metrics::BackendRecoveryMetrics;
pub use policy::{
    BackendRecoveryPolicy, BackoffGrowth, DEFAULT_LAUNCH_TIMEOUT, DEFAULT_RECOVERY_BUDGET_WINDOW,
    DEFAULT_RECOVERY_RETRY_BACKOFF, MAX_RETRIES_PER_WINDOW, jitter_seed,
};
pub use state::{BackendRecoverySnapshotEntry, BackendRecoveryState};

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
