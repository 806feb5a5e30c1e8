//! The respawner: one thread that spawns each granted respawn once its backoff has passed.
//!
//! A crash report that the state counted and answered `Retry` sends one [`Respawn`] here; no
//! other report does (see `supervisor.rs`), so each granted retry is one respawn. Keeping the
//! wait on this thread means no worker sleeps through a backoff while Hellos queue up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::supervisor::Supervisor;

/// Spawn service `service`'s next incarnation at `at`, if `after_incarnation` is still the last
/// one whose crash was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Respawn {
    // Field order is the heap's order: earliest first.
    pub(crate) at: Instant,
    pub(crate) service: usize,
    pub(crate) after_incarnation: u64,
}

/// What the respawner receives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Schedule {
    Respawn(Respawn),
    Stop,
}

/// Runs until it receives [`Schedule::Stop`] or every sender is gone.
pub(crate) fn run(supervisor: &Arc<Supervisor>, scheduled: &Receiver<Schedule>) {
    let mut due: BinaryHeap<Reverse<Respawn>> = BinaryHeap::new();
    loop {
        let next = due.peek().map(|Reverse(respawn)| respawn.at);
        let received = match next {
            Some(at) => scheduled.recv_deadline(at),
            None => scheduled.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Schedule::Respawn(respawn)) => due.push(Reverse(respawn)),
            Ok(Schedule::Stop) => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(Reverse(respawn)) = due.peek().copied() {
            if respawn.at > now {
                break;
            }
            due.pop();
            supervisor.respawn_due(respawn);
        }
    }
}
