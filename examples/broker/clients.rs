//! The clients: threads that send Hellos at a steady rate and honour `retry_after_ms`.
//!
//! A client sends its Hellos to the services in turn, one at a time, waiting for each reply.
//! A reply that says come back later (refused, lost, deferred) puts that service aside until
//! its `retry_after_ms` has passed; the client goes on with the others meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::workers::{Hello, Reply};

/// What one client saw.
#[derive(Debug)]
pub(crate) struct ClientLog {
    /// Per service, the round trip of each served Hello, from sending it to the reply.
    pub(crate) latencies: Vec<Vec<Duration>>,
}

/// How a client sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// Hellos per second.
    pub(crate) rate: f64,
    /// Where this client's first Hello falls within the first interval, in `0.0..1.0`, so
    /// that clients do not all send at the same instants.
    pub(crate) phase: f64,
}

/// Sends Hellos for `services` services until `stop` is set or the broker stops.
pub(crate) fn run(
    services: usize,
    pace: Pace,
    hellos: &Sender<Hello>,
    stop: &AtomicBool,
) -> ClientLog {
    let interval = Duration::from_secs_f64(1.0 / pace.rate);
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    let mut log = ClientLog {
        latencies: vec![Vec::new(); services],
    };
    let start = Instant::now();
    let mut not_before = vec![start; services];
    let mut turn = 0;
    let mut next = start + interval.mul_f64(pace.phase);
    while sleep_until(next, stop) {
        let now = Instant::now();
        let ready = (0..services)
            .map(|k| (turn + k) % services)
            .find(|&service| not_before[service] <= now);
        let Some(service) = ready else {
            // Every service asked this client to wait: sleep until the first may be asked.
            next = not_before.iter().copied().min().unwrap_or(now);
            continue;
        };
        turn = service + 1;
        let sent = Instant::now();
        let hello = Hello {
            service,
            reply: reply_tx.clone(),
        };
        if hellos.send(hello).is_err() {
            break;
        }
        let Ok(reply) = reply_rx.recv() else { break };
        let answered = Instant::now();
        match reply {
            Reply::Served { .. } => log.latencies[service].push(answered - sent),
            Reply::Refused { retry_after_ms }
            | Reply::Lost { retry_after_ms }
            | Reply::Deferred { retry_after_ms } => {
                not_before[service] = answered + Duration::from_millis(retry_after_ms);
            }
            Reply::Stopping => break,
        }
        // Keep the rate, but after a slow reply start again from now rather than burst.
        next = (next + interval).max(answered);
    }
    log
}

/// Sleeps until `deadline`, waking every 50 ms to check `stop`; `false` if it was set.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
