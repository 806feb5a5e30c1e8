//! The supervisor: which incarnation of each service's backend is live, what happens when one
//! dies, and the one recovery state every thread shares.
//!
//! Each service has a slot, behind its own lock, that moves through these states:
//!
//! ```text
//!             counted crash: Retry                 respawner, after retry_after
//!   Live(n) ─────────────────────────▶ RespawnAt ─────────────────────────────▶ Live(n+1)
//!     │                                                                       ▲
//!     │ counted crash: Refuse                                                 │
//!     ▼              first Hello after the window closed (the gate is open)   │
//!   Down ─────────────────────────────────────────────────────────────────────┘  (reopen)
//!
//!   any state ── broker stops ──▶ Stopped
//! ```
//!
//! Single flight. Every thread that sees incarnation `n` die (the watcher that reaped it, each
//! worker that had a Hello in flight or writes to the broken pipe) reports it with
//! `record_crash_of(key, n, now)`. The state counts the first report of an incarnation newer
//! than the last one it counted and answers the others, the duplicates, with the same decision.
//! The broker makes the same comparison (`last_counted`) under the service's lock, around the
//! call, so it knows which report the state counted: that report alone acts, scheduling the one
//! respawn (on `Retry`) or marking the service down (on `Refuse`). The others only tell their
//! client when to come back. Spawns happen only under the lock, from `RespawnAt` or `Down`, so
//! there is never a second process for one incarnation.
//!
//! Locks. The slot lock is per service, and a Hello holds it only to copy the live backend's
//! pointer; the gate check before it (`status`) takes no lock of the broker's, and crash
//! reports of different services never wait for each other.
//!
//! After a refusal. The gate (`status`) refuses every Hello, with the rest of the window as
//! `retry_after_ms`, until the window closes. The broker does not respawn the backend when the
//! window closes: it waits for demand. The first Hello that finds the gate open and the slot
//! `Down` checks the gate again under the lock and spawns a new incarnation (a reopen); later
//! Hellos find it `Live`. If that incarnation crashes, it opens a new window with a whole
//! budget.
//!
//! Success. The first Hello answered by an incarnation spawned after a crash records success,
//! which makes the backend's next crash a first crash again: a flaky backend is respawned each
//! time, but a crash-looping one, which never answers, spends its budget and is refused.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryState, BrokerInstanceKey,
};
use crossbeam_channel::Sender;

use crate::backend::{Backend, Launch, SpawnKind};
use crate::counters::{Counters, bump};
use crate::options::{BrokerOptions, ServiceSpec};
use crate::respawner::{self, Respawn, Schedule};

/// Everything the broker supervises.
pub(crate) struct Supervisor {
    pub(crate) services: Vec<Service>,
    /// One state for every service, shared by every thread: no global lock.
    pub(crate) state: BackendRecoveryState,
    executable: PathBuf,
    seed: u64,
    respawns: Sender<Schedule>,
    respawner: Mutex<Option<JoinHandle<()>>>,
}

/// One supervised service.
pub(crate) struct Service {
    pub(crate) spec: ServiceSpec,
    pub(crate) key: BackendKey,
    pub(crate) counters: Counters,
    slot: Mutex<Slot>,
}

/// A service's backend, under the service's lock.
struct Slot {
    backing: Backing,
    /// The last incarnation whose crash report the state counted.
    last_counted: u64,
    /// The last incarnation spawned (or tried).
    last_spawned: u64,
    /// Incarnations whose watcher may still run: at most the live one and the last few dead.
    spawned: Vec<Arc<Backend>>,
    /// Incarnations that ended and whose watcher was joined, for the summary.
    ended: Vec<ChildRecord>,
}

/// One backend process, as the summary reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildRecord {
    pub(crate) pid: u32,
    /// Whether the broker waited for it (its exit status is known).
    pub(crate) reaped: bool,
}

impl ChildRecord {
    fn of(backend: &Backend) -> Self {
        ChildRecord {
            pid: backend.pid,
            reaped: backend.exit_status().is_some(),
        }
    }
}

impl Slot {
    /// Joins the watchers that are done and keeps only their record, so that a long run with
    /// a crash loop does not pile up threads and handles.
    fn prune_ended(&mut self) {
        let ended = &mut self.ended;
        self.spawned.retain(|backend| {
            if !backend.watcher_finished() {
                return true;
            }
            backend.join_watcher();
            ended.push(ChildRecord::of(backend));
            false
        });
    }
}

enum Backing {
    Live(Arc<Backend>),
    RespawnAt(Instant),
    Down,
    Stopped,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `duration` in whole milliseconds, rounded up as the crate's wire hints are, at least 1.
fn millis_rounded_up(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Why a Hello got no backend to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBackend {
    /// The gate refused it; come back after this many ms.
    Refused { retry_after_ms: u64 },
    /// A respawn (or a failed spawn's retry) is pending; come back after this many ms.
    Deferred { retry_after_ms: u64 },
    /// The broker is stopping.
    Stopping,
}

impl Supervisor {
    /// Builds the recovery state and spawns every service's first backend and the respawner.
    pub(crate) fn start(
        options: &BrokerOptions,
        executable: PathBuf,
    ) -> io::Result<Arc<Supervisor>> {
        let (respawns, scheduled) = crossbeam_channel::unbounded();
        let services = options
            .services
            .iter()
            .map(|spec| Service {
                spec: spec.clone(),
                key: BackendKey::new(BrokerInstanceKey::Shared, spec.name.clone(), "1.0.0"),
                counters: Counters::default(),
                slot: Mutex::new(Slot {
                    backing: Backing::Down,
                    last_counted: 0,
                    last_spawned: 0,
                    spawned: Vec::new(),
                    ended: Vec::new(),
                }),
            })
            .collect();
        let supervisor = Arc::new(Supervisor {
            services,
            state: BackendRecoveryState::with_policy(options.policy),
            executable,
            seed: options.seed,
            respawns,
            respawner: Mutex::new(None),
        });
        for index in 0..supervisor.services.len() {
            let mut slot = lock(&supervisor.services[index].slot);
            if let Err(error) = supervisor.spawn_locked(index, &mut slot, SpawnKind::Initial) {
                drop(slot);
                supervisor.stop();
                return Err(error);
            }
        }
        let handle = {
            let supervisor = Arc::clone(&supervisor);
            thread::Builder::new()
                .name("respawner".into())
                .spawn(move || respawner::run(&supervisor, &scheduled))
        };
        match handle {
            Ok(handle) => *lock(&supervisor.respawner) = Some(handle),
            Err(error) => {
                supervisor.stop();
                return Err(error);
            }
        }
        Ok(supervisor)
    }

    /// The backend a Hello for service `index` should go to, once the gate let it through.
    pub(crate) fn backend_for_hello(
        self: &Arc<Self>,
        index: usize,
    ) -> Result<Arc<Backend>, NoBackend> {
        let service = &self.services[index];
        let mut slot = lock(&service.slot);
        match &slot.backing {
            Backing::Live(backend) => Ok(Arc::clone(backend)),
            Backing::RespawnAt(at) => {
                bump(&service.counters.deferred);
                let wait = at.saturating_duration_since(Instant::now());
                Err(NoBackend::Deferred {
                    retry_after_ms: millis_rounded_up(wait),
                })
            }
            Backing::Stopped => Err(NoBackend::Stopping),
            Backing::Down => {
                // The gate said open before this lock was taken; ask again under it, so that a
                // refusal counted meanwhile is not undone by a reopen.
                let status = self.state.status(&service.key, Instant::now());
                if let Some(retry_after_ms) = status.retry_after_ms() {
                    bump(&service.counters.refused);
                    return Err(NoBackend::Refused { retry_after_ms });
                }
                bump(&service.counters.reopens);
                self.spawn_locked(index, &mut slot, SpawnKind::Reopen)
                    .map_err(|_| match &slot.backing {
                        Backing::RespawnAt(at) => NoBackend::Deferred {
                            retry_after_ms: millis_rounded_up(
                                at.saturating_duration_since(Instant::now()),
                            ),
                        },
                        _ => NoBackend::Refused {
                            retry_after_ms: self
                                .state
                                .status(&service.key, Instant::now())
                                .retry_after_ms()
                                .unwrap_or(1),
                        },
                    })
            }
        }
    }

    /// A Hello was answered by `backend`. The first answer of an incarnation spawned after a
    /// crash records success, unless that incarnation has since been reported dead.
    pub(crate) fn served(&self, index: usize, backend: &Backend) {
        let service = &self.services[index];
        bump(&service.counters.served);
        if backend.kind != SpawnKind::Initial && backend.first_answer() {
            let slot = lock(&service.slot);
            if slot.last_counted < backend.incarnation {
                self.state.record_success(&service.key);
                bump(&service.counters.successes);
            }
        }
    }

    /// A thread saw incarnation `incarnation` of service `index` die: report it, and act on the
    /// decision if this report is the one the state counted. Returns the decision.
    pub(crate) fn report_crash(
        self: &Arc<Self>,
        index: usize,
        incarnation: u64,
    ) -> BackendRecoveryDecision {
        let mut slot = lock(&self.services[index].slot);
        self.report_locked(index, &mut slot, incarnation)
    }

    /// The watcher of a backend saw it end. Unless the broker killed it, that is a crash.
    fn backend_exited(self: &Arc<Self>, index: usize, backend: &Backend) {
        if backend.retired() {
            return;
        }
        bump(&self.services[index].counters.crashes);
        self.report_crash(index, backend.incarnation);
    }

    /// A respawn's backoff has passed: spawn the next incarnation, unless the broker stopped.
    pub(crate) fn respawn_due(self: &Arc<Self>, respawn: Respawn) {
        let mut slot = lock(&self.services[respawn.service].slot);
        let due = matches!(slot.backing, Backing::RespawnAt(_))
            && slot.last_counted == respawn.after_incarnation;
        if due {
            bump(&self.services[respawn.service].counters.respawns);
            // A failed spawn has been reported as a crash of the new incarnation.
            let _ = self.spawn_locked(respawn.service, &mut slot, SpawnKind::Respawn);
        }
    }

    /// Services whose backend is running.
    pub(crate) fn live_backends(&self) -> usize {
        self.services
            .iter()
            .filter(|service| match &lock(&service.slot).backing {
                Backing::Live(backend) => !backend.is_dead(),
                _ => false,
            })
            .count()
    }

    /// Every backend process of service `index` spawned so far, in order.
    pub(crate) fn children(&self, index: usize) -> Vec<ChildRecord> {
        let slot = lock(&self.services[index].slot);
        let running = slot.spawned.iter().map(|backend| ChildRecord::of(backend));
        slot.ended.iter().copied().chain(running).collect()
    }

    /// Stops supervising: no more spawns, every running backend killed and every child reaped.
    /// Call it once no worker is serving Hellos any more.
    pub(crate) fn stop(&self) {
        let _ = self.respawns.send(Schedule::Stop);
        let respawner = lock(&self.respawner).take();
        if let Some(respawner) = respawner {
            let _ = respawner.join();
        }
        for service in &self.services {
            let mut slot = lock(&service.slot);
            slot.backing = Backing::Stopped;
            for backend in &slot.spawned {
                backend.retire();
            }
        }
        // Outside the locks: a watcher reports a crash under its service's lock before ending.
        for service in &self.services {
            let backends = lock(&service.slot).spawned.clone();
            for backend in backends {
                backend.join_watcher();
            }
        }
    }

    /// Reports a crash under the service's lock; see the module's notes on single flight.
    fn report_locked(
        self: &Arc<Self>,
        index: usize,
        slot: &mut Slot,
        incarnation: u64,
    ) -> BackendRecoveryDecision {
        let service = &self.services[index];
        let now = Instant::now();
        let decision = self
            .state
            .record_crash_of(service.key.clone(), incarnation, now);
        bump(&service.counters.crash_reports);
        if incarnation <= slot.last_counted {
            bump(&service.counters.duplicate_reports);
            return decision;
        }
        // The state counted this report (it compares incarnations as we do, under our lock):
        // this thread alone acts on the decision.
        slot.last_counted = incarnation;
        let stopped = matches!(slot.backing, Backing::Stopped);
        match &decision {
            BackendRecoveryDecision::Retry { retry_after, .. } => {
                bump(&service.counters.retries_granted);
                if !stopped {
                    let at = now + *retry_after;
                    slot.backing = Backing::RespawnAt(at);
                    let _ = self.respawns.send(Schedule::Respawn(Respawn {
                        at,
                        service: index,
                        after_incarnation: incarnation,
                    }));
                }
            }
            BackendRecoveryDecision::Refuse { .. } => {
                bump(&service.counters.refusals);
                if !stopped {
                    slot.backing = Backing::Down;
                }
            }
        }
        decision
    }

    /// Spawns the next incarnation of service `index` under its lock. A spawn that fails counts
    /// as a crash of that incarnation: it is reported, and the slot follows the decision.
    fn spawn_locked(
        self: &Arc<Self>,
        index: usize,
        slot: &mut Slot,
        kind: SpawnKind,
    ) -> io::Result<Arc<Backend>> {
        let service = &self.services[index];
        slot.prune_ended();
        slot.last_spawned += 1;
        let incarnation = slot.last_spawned;
        let launch = Launch {
            executable: &self.executable,
            name: &service.spec.name,
            crash_rate: service.spec.crash_rate,
            // A different crash sequence for every service and incarnation.
            seed: self.seed ^ ((index as u64) << 48) ^ incarnation.wrapping_mul(0x9E37_79B9),
        };
        let supervisor = Arc::clone(self);
        let on_exit = move |backend: &Backend| supervisor.backend_exited(index, backend);
        match Backend::spawn(&launch, incarnation, kind, on_exit) {
            Ok(backend) => {
                slot.spawned.push(Arc::clone(&backend));
                slot.backing = Backing::Live(Arc::clone(&backend));
                Ok(backend)
            }
            Err(error) => {
                eprintln!(
                    "broker: cannot spawn {} (incarnation {incarnation}): {error}",
                    service.spec.name
                );
                bump(&service.counters.spawn_failures);
                bump(&service.counters.crashes);
                if kind != SpawnKind::Initial {
                    self.report_locked(index, slot, incarnation);
                }
                Err(error)
            }
        }
    }
}
