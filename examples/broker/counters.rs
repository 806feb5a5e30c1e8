//! What the broker counts for each service: live atomic [`Counters`] that every thread bumps,
//! and the plain [`Tally`] read from them for the progress line and the summary.
//!
//! One macro declares both, so that a counter cannot be added to one and forgotten in the
//! other. The JSON summary serializes a [`Tally`] whole, so it lists every counter by name too.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// One service's counters. Bumped with `Relaxed` increments: each is a tally, read for
        /// display, and orders nothing else.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($(#[doc = $doc])* pub(crate) $name: AtomicU64,)*
        }

        /// The counters' values at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub(crate) struct Tally {
            $($(#[doc = $doc])* pub(crate) $name: u64,)*
        }

        impl Counters {
            /// Reads every counter (each exact; not one atomic cut across them).
            pub(crate) fn read(&self) -> Tally {
                Tally { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Hellos a backend answered.
    served,
    /// Hellos in flight when their backend died.
    lost,
    /// Hellos that arrived while a granted respawn waited out its backoff.
    deferred,
    /// Hellos refused at the gate: the budget was spent.
    refused,
    /// Backend processes that ended by themselves (or failed to start).
    crashes,
    /// Calls to `record_crash_of`, one by every thread that saw a death.
    crash_reports,
    /// Reports of an incarnation whose crash was already counted.
    duplicate_reports,
    /// Counted crashes answered `Retry`.
    retries_granted,
    /// Counted crashes answered `Refuse`.
    refusals,
    /// Spawns after a `Retry`, once its backoff had passed.
    respawns,
    /// Spawns on demand, on the first Hello after a refusal's window closed.
    reopens,
    /// Hellos forwarded to a reopened incarnation.
    hellos_after_reopen,
    /// Calls to `record_success`: first answers after a respawn or reopen.
    successes,
    /// Spawns that failed (each also counted as a crash).
    spawn_failures,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
