//! Deterministic inputs for the lanes: a tiny PRNG for key sequences and a precomputed clock.
//!
//! Both are computed before the timed region: the PRNG fills each lane's operation table when
//! the lane is built, and the clock's instants are laid out in a table that a lane walks.

use std::time::{Duration, Instant};

/// SplitMix64 (Steele, Lea and Flood): one add and a few multiply-xorshifts per draw, good
/// enough to spread keys, and no dependency.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..bound`, by multiply-shift (Lemire), without modulo bias worth measuring.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

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
