//! The one door to atomics, locks and the concurrent map.
//!
//! Normally: std's atomics and `dashmap`. Under `--cfg loom`: loom's atomics and lock, and a
//! std `HashMap` that `table.rs` shards behind them, because loom cannot see inside dashmap.
//! Nothing else in the crate imports a synchronisation primitive, so the loom models check the
//! same code that ships.

#[cfg(not(loom))]
pub(crate) use dashmap::{DashMap, Entry as MapEntry};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::RwLock;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use std::collections::{HashMap, hash_map::Entry as MapEntry};
