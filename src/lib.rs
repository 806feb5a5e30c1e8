//! Crash recovery decisions for the backends a process broker supervises, shared by every
//! worker thread without a global lock.
//!
//! When a backend crashes, a broker asks [`BackendRecoveryState::record_crash`] whether to retry
//! it (once per budget window, after a short backoff) or to refuse it as unavailable for the
//! rest of the window, telling clients when to come back. Every client Hello checks
//! [`BackendRecoveryState::status`] first. The decisions are those of the broker's original
//! single-threaded module, to the nanosecond; this crate makes them concurrent.
//!
//! How it works, one file per layer:
//! - `policy.rs`: the tuning, its defaults and the backoff schedule; `builder.rs` checks it;
//! - `decision.rs`: the answers, and their whole-millisecond wire form;
//! - `key.rs`: the default key, a backend's identity;
//! - `epoch.rs`: instants as nanosecond ticks since an epoch the state picks;
//! - `word.rs`: one backend's state as a packed 128-bit word (its crash budget and who may
//!   launch it) and the pure transitions over it;
//! - `cell.rs`: the atomic cell that applies them by compare-and-swap: the word alone for most
//!   backends, a rich cell for the few a thread caches or that are reported by incarnation;
//! - `table.rs`: the sharded map of cells (per shard, a table of plain cells and one of rich
//!   cells, behind one reader-writer lock) and its lock discipline;
//! - `cache.rs`: each thread's cache of the cells it meets often, read and updated without a
//!   lock; a removed cell is marked in its word so cached copies notice;
//! - `occupancy.rs`: the entry count, the optional cap, and when to purge by itself;
//! - `metrics.rs`: per-thread counters of what was decided;
//! - `state.rs`: [`BackendRecoveryState`], which ties them together;
//! - `sync.rs`: the only door to atomics and locks, swapped for loom's under `--cfg loom`.
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
