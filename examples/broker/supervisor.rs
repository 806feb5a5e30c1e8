//! The supervisor: the one recovery state every thread shares, each service's registered
//! backend, and what happens when one is missing or dies.
//!
//! Launches. A Hello that finds no live backend asks the state for the launch
//! (`claim_launch`): exactly one caller wins each launch the state allows (a new service, each
//! granted retry once its backoff has passed, a refused service once its window has closed);
//! every other is told to wait or is refused, with a retry-after. The winner spawns the next
//! incarnation and registers it. So there is never a second process for one launch, and no
//! thread of the broker's own waits out a backoff.
//!
//! Deaths. Every thread that sees incarnation `n` die (the watcher that reaped it, each worker
//! that had a Hello in flight or writes to the broken pipe) reports it with
//! `record_crash_of(key, n, now)`. The state counts the first report and says so (`counted`):
//! that report alone is tallied and takes the dead backend out of the registry, after the
//! crash is recorded, so that no Hello can claim a launch while the death is unrecorded. The
//! others only tell their client when to come back.
//!
//! Success. A backend's first answer settles its launch (`record_success_at`); with the
//! probation (`min_uptime`), its crashes are forgotten only by an answer at least that long
//! after the launch, so a backend that dies soon after every launch spends its budget and is
//! refused, while a flaky one that runs a while is forgiven.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendCrashReport, BackendKey, BackendLaunchDecision, BackendRecoveryDecision,
    BackendRecoveryState, BrokerInstanceKey,
};

use crate::backend::{Backend, Launch, SpawnKind};
use crate::counters::{Counters, bump};
use crate::options::{BrokerOptions, ServiceSpec};

/// Everything the broker supervises.
pub(crate) struct Supervisor {
    pub(crate) services: Vec<Service>,
    /// One state for every service, shared by every thread: no global lock.
    pub(crate) state: BackendRecoveryState,
    executable: PathBuf,
    seed: u64,
    /// The policy's probation, read on every answered Hello.
    min_uptime: Duration,
}

/// One supervised service.
pub(crate) struct Service {
    pub(crate) spec: ServiceSpec,
    pub(crate) key: BackendKey,
    pub(crate) counters: Counters,
    /// The number of the next incarnation to spawn.
    next_incarnation: AtomicU64,
    registry: Mutex<Registry>,
}

/// A service's processes, under its lock: held only to read or swap the live backend and to
/// keep the records for reaping and the summary.
#[derive(Default)]
struct Registry {
    live: Option<Arc<Backend>>,
    /// Incarnations whose watcher may still run.
    spawned: Vec<Arc<Backend>>,
    /// Incarnations that ended and whose watcher was joined, for the summary.
    ended: Vec<ChildRecord>,
    /// The broker is stopping: no more launches.
    stopped: bool,
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

impl Registry {
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a Hello got no backend to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBackend {
    /// Refused: the budget is spent. Come back after this long.
    Refused(Duration),
    /// A launch is pending or a backoff runs. Come back after this long.
    Deferred(Duration),
    /// The broker is stopping.
    Stopping,
}

impl Supervisor {
    /// Builds the recovery state and launches every service's first backend.
    pub(crate) fn start(
        options: &BrokerOptions,
        executable: PathBuf,
    ) -> io::Result<Arc<Supervisor>> {
        let services = options
            .services
            .iter()
            .map(|spec| Service {
                spec: spec.clone(),
                key: BackendKey::new(BrokerInstanceKey::Shared, spec.name.clone(), "1.0.0"),
                counters: Counters::default(),
                next_incarnation: AtomicU64::new(1),
                registry: Mutex::new(Registry::default()),
            })
            .collect();
        let supervisor = Arc::new(Supervisor {
            services,
            state: BackendRecoveryState::with_policy(options.policy),
            executable,
            seed: options.seed,
            min_uptime: options.policy.min_uptime,
        });
        for index in 0..supervisor.services.len() {
            if let Err(NoBackend::Refused(_) | NoBackend::Deferred(_) | NoBackend::Stopping) =
                supervisor.launch(index, Instant::now(), SpawnKind::Initial)
            {
                supervisor.stop();
                return Err(io::Error::other(format!(
                    "cannot start {}",
                    supervisor.services[index].spec.name
                )));
            }
        }
        Ok(supervisor)
    }

    /// The backend a Hello for service `index` should go to, once the gate let it through: the
    /// live one, or one this Hello launches if it wins the claim. `after_crash` says whether
    /// the gate saw crashes in the window (a launch then is a respawn, else a reopen).
    pub(crate) fn backend_for_hello(
        self: &Arc<Self>,
        index: usize,
        now: Instant,
        after_crash: bool,
    ) -> Result<Arc<Backend>, NoBackend> {
        if let Some(live) = lock(&self.services[index].registry).live.clone() {
            return Ok(live);
        }
        let kind = if after_crash {
            SpawnKind::Respawn
        } else {
            SpawnKind::Reopen
        };
        self.launch(index, now, kind)
    }

    /// Claims the launch of service `index` and, if this caller wins, spawns and registers its
    /// next incarnation. A spawn that fails is reported as a crash of that incarnation.
    fn launch(
        self: &Arc<Self>,
        index: usize,
        now: Instant,
        kind: SpawnKind,
    ) -> Result<Arc<Backend>, NoBackend> {
        let service = &self.services[index];
        match self.state.claim_launch(&service.key, now) {
            BackendLaunchDecision::Launch => {}
            BackendLaunchDecision::Refuse { retry_after, .. } => {
                bump(&service.counters.refused);
                return Err(NoBackend::Refused(retry_after));
            }
            wait => {
                bump(&service.counters.deferred);
                return Err(NoBackend::Deferred(wait.retry_after().unwrap_or_default()));
            }
        }
        // Look again: a launch that finished since this Hello looked leaves a healthy backend
        // registered and nothing in the state to claim against. Its success settles the claim.
        if let Some(live) = lock(&service.registry).live.clone() {
            self.state.record_success_at(&service.key, now);
            return Ok(live);
        }
        let incarnation = service.next_incarnation.fetch_add(1, Ordering::Relaxed);
        let launch = Launch {
            executable: &self.executable,
            name: &service.spec.name,
            crash_rate: service.spec.crash_rate,
            // A different crash sequence for every service and incarnation.
            seed: fastrand::Rng::with_seed(self.seed ^ ((index as u64) << 48) ^ incarnation)
                .u64(..),
        };
        let supervisor = Arc::clone(self);
        let on_exit = move |backend: &Backend| supervisor.backend_exited(index, backend);
        let backend = match Backend::spawn(&launch, incarnation, kind, on_exit) {
            Ok(backend) => backend,
            Err(error) => {
                eprintln!(
                    "broker: cannot spawn {} (incarnation {incarnation}): {error}",
                    service.spec.name
                );
                bump(&service.counters.spawn_failures);
                bump(&service.counters.crashes);
                let report = self.report_crash(index, incarnation);
                return Err(NoBackend::Deferred(report.decision.retry_after()));
            }
        };
        match kind {
            SpawnKind::Initial => {}
            SpawnKind::Respawn => bump(&service.counters.respawns),
            SpawnKind::Reopen => bump(&service.counters.reopens),
        }
        let mut registry = lock(&service.registry);
        registry.prune_ended();
        registry.spawned.push(Arc::clone(&backend));
        if registry.stopped {
            backend.retire();
            return Err(NoBackend::Stopping);
        }
        registry.live = Some(Arc::clone(&backend));
        Ok(backend)
    }

    /// A Hello was answered by `backend`. Its first answer settles its launch; with a
    /// probation, the first answer after `min_uptime` forgets the service's crashes.
    pub(crate) fn served(&self, index: usize, backend: &Backend) {
        let service = &self.services[index];
        bump(&service.counters.served);
        let now = Instant::now();
        let first = backend.first_answer();
        let proven = now.saturating_duration_since(backend.spawned_at) >= self.min_uptime;
        if (first || proven) && !backend.forgiven() {
            if self.state.record_success_at(&service.key, now) {
                backend.forgive();
            }
            bump(&service.counters.successes);
        }
    }

    /// A thread saw incarnation `incarnation` of service `index` die: report it. The report
    /// the state counted is tallied and unregisters the dead backend, after the crash is
    /// recorded. Returns the state's answer.
    pub(crate) fn report_crash(&self, index: usize, incarnation: u64) -> BackendCrashReport {
        let service = &self.services[index];
        let report = self
            .state
            .record_crash_of(service.key.clone(), incarnation, Instant::now());
        bump(&service.counters.crash_reports);
        if !report.counted {
            bump(&service.counters.duplicate_reports);
            return report;
        }
        bump(match report.decision {
            BackendRecoveryDecision::Retry { .. } => &service.counters.retries_granted,
            BackendRecoveryDecision::Refuse { .. } => &service.counters.refusals,
        });
        let mut registry = lock(&service.registry);
        if registry
            .live
            .as_ref()
            .is_some_and(|live| live.incarnation == incarnation)
        {
            registry.live = None;
        }
        report
    }

    /// The watcher of a backend saw it end. Unless the broker killed it, that is a crash.
    fn backend_exited(&self, index: usize, backend: &Backend) {
        if backend.retired() {
            return;
        }
        bump(&self.services[index].counters.crashes);
        self.report_crash(index, backend.incarnation);
    }

    /// Services whose backend is running.
    pub(crate) fn live_backends(&self) -> usize {
        self.services
            .iter()
            .filter(|service| {
                lock(&service.registry)
                    .live
                    .as_ref()
                    .is_some_and(|live| !live.is_dead())
            })
            .count()
    }

    /// Every backend process of service `index` spawned so far, in order.
    pub(crate) fn children(&self, index: usize) -> Vec<ChildRecord> {
        let registry = lock(&self.services[index].registry);
        let running = registry
            .spawned
            .iter()
            .map(|backend| ChildRecord::of(backend));
        registry.ended.iter().copied().chain(running).collect()
    }

    /// Stops supervising: no more launches, every running backend killed and every child
    /// reaped. Call it once no worker is serving Hellos any more.
    pub(crate) fn stop(&self) {
        for service in &self.services {
            let mut registry = lock(&service.registry);
            registry.stopped = true;
            registry.live = None;
            for backend in &registry.spawned {
                backend.retire();
            }
        }
        // Outside the locks: a watcher reports a crash, which takes its service's lock.
        for service in &self.services {
            let backends = lock(&service.registry).spawned.clone();
            for backend in backends {
                backend.join_watcher();
            }
        }
    }
}
