//! Deterministic inputs for the lanes: a precomputed clock. (Key sequences come from a seeded
//! `fastrand::Rng`, in `mod.rs`.)
//!
//! Both are computed before the timed region: the PRNG fills each lane's operation table when
//! the lane is built, and the clock's instants are laid out in a table that a lane walks.

use std::time::{Duration, Instant};

/// Instants a lane reads instead of calling `Instant::now()`: `start`, `start + tick`,
/// `start + 2 * tick`, ... laid out in a table.
///
/// When the lane has read the whole table, every instant in it moves forward by the table's
/// span (one add per table entry, so a small fraction of an add per operation) and the walk
/// starts over: time keeps going forward however long criterion runs a lane.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    instants: Vec<Instant>,
    next: usize,
    span: Duration,
}

impl Clock {
    /// Instants in the table before it moves forward.
    const TABLE_LEN: u32 = 4096;

    pub(crate) fn new(start: Instant, tick: Duration) -> Self {
        let instants = (0..Self::TABLE_LEN).map(|i| start + tick * i).collect();
        Clock {
            instants,
            next: 0,
            span: tick * Self::TABLE_LEN,
        }
    }

    /// The next instant of the sequence.
    pub(crate) fn next_instant(&mut self) -> Instant {
        if self.next == self.instants.len() {
            for instant in &mut self.instants {
                *instant += self.span;
            }
            self.next = 0;
        }
        let now = self.instants[self.next];
        self.next += 1;
        now
    }
}
