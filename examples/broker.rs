//! A small but real process broker built on `backend-recovery`.
//!
//! It supervises backend child processes, serves client Hellos from a pool of worker threads,
//! and asks one shared [`BackendRecoveryState`] what to do each time a backend dies: respawn it
//! once after a short backoff, or refuse it until its budget window has passed.
//!
//! ```sh
//! cargo run --release --example broker                      # 10 s, then a table per service
//! cargo run --release --example broker -- --help            # every flag
//! cargo run --release --example broker -- --duration 2 --json
//! ```
//!
//! The default run has four services: two healthy, one flaky (a Hello kills its backend with
//! probability 0.02) and one that crash-loops (every Hello kills it). One file per part, under
//! `examples/broker/`:
//!
//! - `options.rs`: the flags, `--help`, and the hidden backend mode;
//! - `backend_process.rs`: the backend, this same binary re-executed as
//!   `broker --backend NAME --crash-rate P --seed S`, answering `HELLO` lines on stdin;
//! - `backend.rs`: the broker's handle on one backend process, its pipelined Hellos and the
//!   watcher thread that reaps it;
//! - `supervisor.rs`: per service, which backend is live; launches claimed from the state (the
//!   first, each granted retry after its backoff, the reopen after a refused window) and what a
//!   death leads to;
//! - `workers.rs`: the worker pool: gate check, then the live backend or a launch;
//! - `clients.rs`: client threads sending Hellos at a rate, honouring `retry_after_ms`;
//! - `counters.rs`, `report.rs`: the tallies, the progress line and the summary.
//!
//! [`BackendRecoveryState`]: backend_recovery::BackendRecoveryState

// The crate root of an example looks for modules beside it; ours live in `broker/`.
#[path = "broker/backend.rs"]
mod backend;
#[path = "broker/backend_process.rs"]
mod backend_process;
#[path = "broker/clients.rs"]
mod clients;
#[path = "broker/counters.rs"]
mod counters;
#[path = "broker/options.rs"]
mod options;
#[path = "broker/report.rs"]
mod report;
#[path = "broker/supervisor.rs"]
mod supervisor;
#[path = "broker/workers.rs"]
mod workers;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clients::{ClientLog, Pace};
use crate::options::{BrokerOptions, Command};
use crate::report::{Progress, ServiceSummary, Summary};
use crate::supervisor::Supervisor;

/// The exit status after an interrupt, as shells report a death by SIGINT.
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match options::parse(&args) {
        Ok(Command::Backend(options)) => backend_process::run(options),
        Ok(Command::Broker(options)) => run_broker(&options),
        // `--help` (status 0) or a mistake in the flags (status 2).
        Err(error) => error.exit(),
    }
}

/// Runs the broker for the options' duration or until Ctrl-C, then prints the summary.
fn run_broker(options: &BrokerOptions) -> ExitCode {
    let interrupts = Arc::new(AtomicUsize::new(0));
    {
        let interrupts = Arc::clone(&interrupts);
        let installed = ctrlc::set_handler(move || {
            if interrupts.fetch_add(1, Ordering::SeqCst) > 0 {
                // Backends exit by themselves once their stdin closes with this process.
                eprintln!("\nbroker: second interrupt, exiting now");
                std::process::exit(INTERRUPTED.into());
            }
        });
        if let Err(error) = installed {
            eprintln!("broker: cannot handle Ctrl-C ({error}); it will stop the broker abruptly");
        }
    }
    let executable = match std::env::current_exe() {
        Ok(executable) => executable,
        Err(error) => {
            eprintln!("broker: cannot find its own executable to run backends: {error}");
            return ExitCode::FAILURE;
        }
    };
    let supervisor = match Supervisor::start(options, executable) {
        Ok(supervisor) => supervisor,
        Err(error) => {
            eprintln!("broker: cannot start the backends: {error}");
            return ExitCode::FAILURE;
        }
    };
    let pids: Vec<String> = (0..supervisor.services.len())
        .flat_map(|index| supervisor.children(index))
        .map(|child| child.pid.to_string())
        .collect();
    eprintln!(
        "broker: {} backends started (pids {}); {} workers, {} clients; running for {:.1} s, \
         Ctrl-C stops early",
        pids.len(),
        pids.join(" "),
        options.workers,
        options.clients,
        options.duration.as_secs_f64(),
    );

    let (hellos, queue) = crossbeam_channel::bounded(options.workers * 4);
    let workers: Vec<JoinHandle<()>> = (0..options.workers)
        .map(|n| {
            let (supervisor, queue) = (Arc::clone(&supervisor), queue.clone());
            thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || workers::run(&supervisor, &queue))
                .expect("spawn a worker thread")
        })
        .collect();
    drop(queue);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<JoinHandle<ClientLog>> = (0..options.clients)
        .map(|n| {
            let (hellos, stop) = (hellos.clone(), Arc::clone(&stop));
            let services = options.services.len();
            let pace = Pace {
                rate: options.rate,
                phase: n as f64 / options.clients as f64,
            };
            thread::Builder::new()
                .name(format!("client-{n}"))
                .spawn(move || clients::run(services, pace, &hellos, &stop))
                .expect("spawn a client thread")
        })
        .collect();

    let started = Instant::now();
    let mut progress = Progress::new();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= options.duration || interrupts.load(Ordering::SeqCst) > 0 {
            break;
        }
        progress.tick(&supervisor, elapsed);
        thread::sleep((options.duration - elapsed).min(Duration::from_millis(50)));
    }
    let elapsed = started.elapsed();
    progress.finish();

    // Stop in dependency order: clients stop sending, workers finish what they hold, then no
    // Hello is in flight and the supervisor kills and reaps every backend.
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<ClientLog> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread panicked"))
        .collect();
    drop(hellos);
    for worker in workers {
        worker.join().expect("a worker thread panicked");
    }
    supervisor.stop();

    let summary = summarize(options, &supervisor, &logs, elapsed, &interrupts);
    report::print(&summary);
    if !summary.all_reaped() {
        eprintln!("broker: some backend processes were not reaped");
        return ExitCode::FAILURE;
    }
    if summary.interrupted {
        ExitCode::from(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Gathers the counters, the clients' latencies and every child's fate.
fn summarize<'a>(
    options: &'a BrokerOptions,
    supervisor: &Supervisor,
    logs: &[ClientLog],
    elapsed: Duration,
    interrupts: &AtomicUsize,
) -> Summary<'a> {
    let services = supervisor
        .services
        .iter()
        .enumerate()
        .map(|(index, service)| {
            let mut latencies: Vec<Duration> = logs
                .iter()
                .flat_map(|log| log.latencies[index].iter().copied())
                .collect();
            latencies.sort_unstable();
            let children = supervisor.children(index);
            ServiceSummary {
                name: service.spec.name.clone(),
                crash_rate: service.spec.crash_rate,
                tally: service.counters.read(),
                latencies,
                pids: children.iter().map(|child| child.pid).collect(),
                unreaped: children
                    .iter()
                    .filter(|child| !child.reaped)
                    .map(|child| child.pid)
                    .collect(),
            }
        })
        .collect();
    Summary {
        options,
        elapsed,
        interrupted: interrupts.load(Ordering::SeqCst) > 0,
        services,
        metrics: supervisor.state.metrics(),
    }
}
