//! The worker pool: threads that take client Hellos from one channel and serve them.
//!
//! For each Hello a worker asks the gate first, `status(key, now)`: that only reads the shared
//! state, so every worker can check every Hello without contending. A service whose budget is
//! spent is refused with the rest of its window as `retry_after_ms`; one whose granted retry is
//! still backing off is deferred until the backoff ends. Otherwise the Hello goes to the
//! service's live backend process, or, if there is none, claims its launch (`supervisor.rs`).
//! If the backend dies with the Hello in flight, the worker reports the crash (so does every
//! other thread that saw it die) and tells the client when to come back: after the backoff if
//! a retry was granted, after the window if not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryStatus;

use crossbeam_channel::{Receiver, Sender};

use crate::backend::{Answer, SpawnKind};
use crate::counters::bump;
use crate::supervisor::{NoBackend, Supervisor};

/// A client's request for service `service`, and where to send the reply.
#[derive(Debug)]
pub(crate) struct Hello {
    pub(crate) service: usize,
    pub(crate) reply: Sender<Reply>,
}

/// The broker's answer to a Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The backend answered.
    Served { pid: u32 },
    /// Refused at the gate: the backend's budget is spent. Come back after `retry_after_ms`.
    Refused { retry_after_ms: u64 },
    /// The backend died with this Hello in flight. Come back after `retry_after_ms`.
    Lost { retry_after_ms: u64 },
    /// The backend is being respawned. Come back after `retry_after_ms`.
    Deferred { retry_after_ms: u64 },
    /// The broker is stopping.
    Stopping,
}

/// Serves Hellos until the channel closes.
pub(crate) fn run(supervisor: &Arc<Supervisor>, hellos: &Receiver<Hello>) {
    for hello in hellos {
        let reply = serve(supervisor, hello.service);
        // A client that stopped waiting is no error.
        let _ = hello.reply.send(reply);
    }
}

/// One Hello: the gate, then the live backend, or a launch if this Hello wins it.
fn serve(supervisor: &Arc<Supervisor>, index: usize) -> Reply {
    let service = &supervisor.services[index];
    let now = Instant::now();
    let gate = supervisor.state.status(&service.key, now);
    match gate {
        BackendRecoveryStatus::Unavailable { retry_after, .. } => {
            bump(&service.counters.refused);
            return Reply::Refused {
                retry_after_ms: millis(retry_after),
            };
        }
        BackendRecoveryStatus::BackingOff { retry_after, .. } => {
            bump(&service.counters.deferred);
            return Reply::Deferred {
                retry_after_ms: millis(retry_after),
            };
        }
        _ => {}
    }
    let after_crash = matches!(gate, BackendRecoveryStatus::Recovering { .. });
    let backend = match supervisor.backend_for_hello(index, now, after_crash) {
        Ok(backend) => backend,
        Err(NoBackend::Refused(wait)) => {
            return Reply::Refused {
                retry_after_ms: millis(wait),
            };
        }
        Err(NoBackend::Deferred(wait)) => {
            return Reply::Deferred {
                retry_after_ms: millis(wait),
            };
        }
        Err(NoBackend::Stopping) => return Reply::Stopping,
    };
    if backend.kind == SpawnKind::Reopen {
        bump(&service.counters.hellos_after_reopen);
    }
    match backend.hello() {
        Answer::Served { pid } => {
            supervisor.served(index, &backend);
            Reply::Served { pid }
        }
        Answer::Died => {
            bump(&service.counters.lost);
            // After the backoff on `Retry`, after the window on `Refuse`: either way the
            // decision's own hint, which a duplicate report gets as well.
            let report = supervisor.report_crash(index, backend.incarnation);
            Reply::Lost {
                retry_after_ms: report.decision.retry_after_ms().max(1),
            }
        }
        Answer::Retired => Reply::Stopping,
    }
}

/// A wait in whole milliseconds, rounded up (as the crate's wire hints are), at least 1.
fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}
