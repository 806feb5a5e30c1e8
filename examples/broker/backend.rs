//! The broker's handle on one incarnation of a backend: the child process, its pipes, the Hellos
//! in flight on them, and the watcher thread that sees it end.
//!
//! Workers pipeline Hellos on one backend: each writes its request line under the stdin lock,
//! then waits for the answer that carries its request id. The watcher thread reads every answer
//! and hands it to the worker waiting for it. When the backend's stdout reaches EOF, the watcher
//! reaps the child, answers every Hello still in flight with [`Answer::Died`], and calls the
//! supervisor's exit callback. A death is thus seen by the watcher and by every worker that had
//! a Hello in flight, or that writes to the broken pipe afterwards: each reports it, and the
//! recovery state counts it once.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::Sender;

/// Why this incarnation was spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpawnKind {
    /// At startup.
    Initial,
    /// After a crash was granted a retry, once its backoff had passed.
    Respawn,
    /// After a refused backend's budget window had closed, on demand.
    Reopen,
}

/// What became of one Hello sent to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The backend answered; `pid` is the process that did.
    Served { pid: u32 },
    /// The backend died before answering.
    Died,
    /// The broker is stopping and killed the backend.
    Retired,
}

/// How to start a backend process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch<'a> {
    pub(crate) executable: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) crash_rate: f64,
    pub(crate) seed: u64,
}

/// One running (or ended) backend process.
pub(crate) struct Backend {
    pub(crate) incarnation: u64,
    pub(crate) pid: u32,
    pub(crate) kind: SpawnKind,
    /// When the process was started: its probation runs from here.
    pub(crate) spawned_at: Instant,
    child: Mutex<Child>,
    /// `None` once the backend has ended: its pipe is closed then, not kept until the broker
    /// stops (a crash loop would otherwise run the broker out of file descriptors).
    stdin: Mutex<Option<ChildStdin>>,
    in_flight: Mutex<InFlight>,
    next_request: AtomicU64,
    /// Set by the first Hello answered.
    answered: AtomicBool,
    /// Set once a success forgot the service's crashes: later answers report nothing.
    forgiven: AtomicBool,
    /// Set when the broker kills a backend that is still running: its end is no crash.
    retired: AtomicBool,
    /// Set by the watcher once the child is reaped.
    exit_status: Mutex<Option<ExitStatus>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// The Hellos waiting for an answer, and whether the backend is known to be dead.
#[derive(Default)]
struct InFlight {
    dead: bool,
    waiting: HashMap<u64, Sender<Answer>>,
}

/// Locks a mutex, going on past a poisoned one: a panicking worker must not stop the others from
/// reaping children.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend {
    /// Starts a backend process and its watcher; `on_exit` runs on the watcher thread once the
    /// process has ended and been reaped.
    pub(crate) fn spawn(
        launch: &Launch<'_>,
        incarnation: u64,
        kind: SpawnKind,
        on_exit: impl FnOnce(&Backend) + Send + 'static,
    ) -> io::Result<Arc<Backend>> {
        let mut command = Command::new(launch.executable);
        command
            .arg("--backend")
            .arg(launch.name)
            .arg("--crash-rate")
            .arg(launch.crash_rate.to_string())
            .arg("--seed")
            .arg(launch.seed.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // A process group of its own: Ctrl-C in the terminal reaches the broker only, which
        // then stops its backends itself instead of seeing them all "crash" at once.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let spawned_at = Instant::now();
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both pipes were requested");
        };
        let backend = Arc::new(Backend {
            incarnation,
            pid: child.id(),
            kind,
            spawned_at,
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            in_flight: Mutex::new(InFlight::default()),
            next_request: AtomicU64::new(1),
            answered: AtomicBool::new(false),
            forgiven: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            exit_status: Mutex::new(None),
            watcher: Mutex::new(None),
        });
        let watched = Arc::clone(&backend);
        let watcher = thread::Builder::new()
            .name(format!("watch-{}-{incarnation}", launch.name))
            .spawn(move || watch(&watched, stdout, on_exit));
        match watcher {
            Ok(handle) => *lock(&backend.watcher) = Some(handle),
            Err(error) => {
                // Without a watcher nobody would read its answers: do not keep it.
                let mut child = lock(&backend.child);
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        }
        Ok(backend)
    }

    /// Sends one Hello and waits for what becomes of it.
    pub(crate) fn hello(&self) -> Answer {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = crossbeam_channel::bounded(1);
        {
            let mut in_flight = lock(&self.in_flight);
            if in_flight.dead {
                return self.death();
            }
            in_flight.waiting.insert(id, answer_tx);
        }
        let line = format!("HELLO {id}\n");
        // One write per line, under the lock, so that pipelined requests never interleave.
        let written = match lock(&self.stdin).as_mut() {
            Some(stdin) => stdin.write_all(line.as_bytes()).is_ok(),
            None => false,
        };
        if !written {
            // Broken pipe: the backend is gone (the watcher will see its EOF too).
            lock(&self.in_flight).waiting.remove(&id);
            return self.death();
        }
        // The watcher answers every waiting Hello before it lets go of it.
        answer_rx.recv().unwrap_or(Answer::Died)
    }

    /// `true` the first time it is called on this incarnation.
    pub(crate) fn first_answer(&self) -> bool {
        !self.answered.swap(true, Ordering::Relaxed)
    }

    /// Whether a success of this incarnation forgot its service's crashes.
    pub(crate) fn forgiven(&self) -> bool {
        self.forgiven.load(Ordering::Relaxed)
    }

    /// Records that a success of this incarnation forgot its service's crashes.
    pub(crate) fn forgive(&self) {
        self.forgiven.store(true, Ordering::Relaxed);
    }

    /// Whether the backend is known to have ended.
    pub(crate) fn is_dead(&self) -> bool {
        lock(&self.in_flight).dead
    }

    /// Whether the broker killed it while it was running.
    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// How the process ended, once it has been reaped.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *lock(&self.exit_status)
    }

    /// Kills the process if it is still running, as the broker stops. A backend that already
    /// ended by itself keeps its crash: only a kill of a running one makes it retired.
    pub(crate) fn retire(&self) {
        let mut child = lock(&self.child);
        if let Ok(None) = child.try_wait() {
            self.retired.store(true, Ordering::Relaxed);
            let _ = child.kill();
        }
    }

    /// Whether the watcher has reaped the process and is done.
    pub(crate) fn watcher_finished(&self) -> bool {
        lock(&self.watcher)
            .as_ref()
            .is_none_or(|handle| handle.is_finished())
    }

    /// Waits for the watcher, which reaps the process.
    pub(crate) fn join_watcher(&self) {
        let handle = lock(&self.watcher).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// The answer for a Hello on a backend that has ended.
    fn death(&self) -> Answer {
        if self.retired() {
            Answer::Retired
        } else {
            Answer::Died
        }
    }
}

/// The watcher: reads answers until EOF, then reaps the child and fails what is in flight.
fn watch(backend: &Backend, stdout: ChildStdout, on_exit: impl FnOnce(&Backend)) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        if let (Some("OK"), Some(id), Some(pid)) = (words.next(), words.next(), words.next()) {
            let (Ok(id), Ok(pid)) = (id.parse::<u64>(), pid.parse::<u32>()) else {
                continue;
            };
            let waiting = lock(&backend.in_flight).waiting.remove(&id);
            if let Some(waiting) = waiting {
                let _ = waiting.send(Answer::Served { pid });
            }
        }
    }
    // EOF: the process closed its stdout, which it does only by ending. Kill it anyway before
    // waiting, so that a backend which closed stdout and lived on could not hang the broker
    // (on one that has ended, the kill does nothing). The child lock is held only here.
    let status = {
        let mut child = lock(&backend.child);
        let _ = child.kill();
        child.wait().ok()
    };
    *lock(&backend.exit_status) = status;
    lock(&backend.stdin).take();
    let waiting = {
        let mut in_flight = lock(&backend.in_flight);
        in_flight.dead = true;
        std::mem::take(&mut in_flight.waiting)
    };
    let answer = backend.death();
    for (_, waiting) in waiting {
        let _ = waiting.send(answer);
    }
    on_exit(backend);
}
