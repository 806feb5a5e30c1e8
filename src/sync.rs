//! The one door to atomics and locks.
//!
//! Normally: std's atomics and `parking_lot`'s reader-writer lock. Under `--cfg loom`: loom's
//! atomics and lock. Nothing else in the crate imports a synchronisation primitive that a
//! decision depends on, so the loom models check the same code that ships. (The per-thread
//! metrics, entry counts and read caches use `thread_local` and std atomics even under loom;
//! each says why where it is defined.)

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// `parking_lot`'s lock: no poisoning, guards that are released on unwind all the same.
#[cfg(not(loom))]
pub(crate) use parking_lot::RwLock;

/// loom's lock with `parking_lot`'s signature. A model never panics while holding a guard, so
/// a poisoned lock cannot be met; were it, the guard is taken all the same, as `parking_lot`'s.
#[cfg(loom)]
pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

#[cfg(loom)]
impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock(loom::sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `None` if the lock is held (loom's lock never poisons, so that is the only error).
    pub(crate) fn try_write(&self) -> Option<loom::sync::RwLockWriteGuard<'_, T>> {
        self.0.try_write().ok()
    }
}
