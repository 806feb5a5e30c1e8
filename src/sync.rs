//! The one door to atomics and locks.
//!
//! Normally: std's atomics and `parking_lot`'s reader-writer lock and mutex. Under `--cfg loom`:
//! loom's atomics and locks. Nothing else in the crate imports a synchronisation primitive that a
//! decision depends on, so the loom models check the same code that ships. (The per-thread
//! metrics, entry counts and read caches use `thread_local` and std atomics even under loom;
//! each says why where it is defined.)

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// A cell's 128-bit word (`cell.rs`): `portable-atomic`'s, which compiles to `cmpxchg16b` for
/// the compare-and-swap on x86-64 and, where the CPU has AVX (detected at run time), to one
/// 16-byte load for a load, so that a gate check writes nothing. On a CPU without it a load is
/// a compare-and-swap that writes back the value it read; the answers are the same.
#[cfg(not(loom))]
pub(crate) use portable_atomic::AtomicU128;

/// loom has no 128-bit atomic: under `--cfg loom`, one behind a loom mutex, with the same
/// methods. Each call is one step that loom interleaves with the others, as a hardware atomic
/// is. The mutex orders more than a `Relaxed` atomic would, which hides no bug of the cells:
/// they rely on nothing but the coherence of their own word (see `cell.rs`).
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct AtomicU128(loom::sync::Mutex<u128>);

#[cfg(loom)]
impl AtomicU128 {
    pub(crate) fn new(value: u128) -> Self {
        AtomicU128(loom::sync::Mutex::new(value))
    }

    fn lock(&self) -> loom::sync::MutexGuard<'_, u128> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn load(&self, _: Ordering) -> u128 {
        *self.lock()
    }

    pub(crate) fn store(&self, value: u128, _: Ordering) {
        *self.lock() = value;
    }

    pub(crate) fn compare_exchange_weak(
        &self,
        current: u128,
        new: u128,
        _: Ordering,
        _: Ordering,
    ) -> Result<u128, u128> {
        let mut word = self.lock();
        if *word == current {
            *word = new;
            Ok(current)
        } else {
            Err(*word)
        }
    }
}

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

/// `parking_lot`'s mutex: no poisoning; the lock of a rich cell's counted report.
#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

/// loom's mutex with `parking_lot`'s signature (as [`RwLock`]).
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `None` if the lock is held (loom's lock never poisons, so that is the only error).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock().ok()
    }

    /// loom's lock cannot be observed without taking it: answers `false`, so that callers
    /// try to take it, as they would when it looks free.
    pub(crate) fn is_locked(&self) -> bool {
        false
    }
}

/// Loom builds only: the deliberate bugs the teeth models switch on, to show that their model
/// catches each. All of them sit behind this one value, which the table holds
/// (`Table::teeth`); a shipped build has neither the value nor the broken paths.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Teeth {
    /// Crashes and claims update a cell by load-then-store, no compare-and-swap.
    pub(crate) cell_updates: bool,
    /// Removals do not mark the cells they remove, so cached copies stay readable.
    pub(crate) retirement: bool,
    /// Inserts do not mark their key in the shard's presence summary.
    pub(crate) presence: bool,
    /// Reports by incarnation are counted without the cell's report lock: the check of the
    /// last incarnation counted and the count are two steps.
    pub(crate) report_lock: bool,
    /// A success checks whether the cell remembers a report and retires it without holding
    /// the report lock, so a report can be counted in between.
    pub(crate) success_lock: bool,
}
