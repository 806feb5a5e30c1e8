//! What the broker shows: the live progress line on stderr while it runs, and the summary on
//! stdout at the end, as a table or, with `--json`, as one JSON object.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use backend_recovery::BackendRecoveryMetrics;
use serde::Serialize;

use crate::counters::Tally;
use crate::options::BrokerOptions;
use crate::supervisor::Supervisor;

/// The progress line: rewritten in place (`\r`) on a terminal, one line a second otherwise.
#[derive(Debug)]
pub(crate) struct Progress {
    terminal: bool,
    every: Duration,
    last: Instant,
    last_served: u64,
    width: usize,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let terminal = io::stderr().is_terminal();
        Progress {
            terminal,
            every: Duration::from_millis(if terminal { 250 } else { 1000 }),
            last: Instant::now(),
            last_served: 0,
            width: 0,
        }
    }

    /// Prints the line if it is due.
    pub(crate) fn tick(&mut self, supervisor: &Supervisor, elapsed: Duration) {
        let since = self.last.elapsed();
        if since < self.every {
            return;
        }
        let tallies: Vec<Tally> = supervisor
            .services
            .iter()
            .map(|service| service.counters.read())
            .collect();
        let total = |field: fn(&Tally) -> u64| tallies.iter().map(field).sum::<u64>();
        let served = total(|t| t.served);
        let rate = (served - self.last_served) as f64 / since.as_secs_f64();
        let line = format!(
            "[{:5.1} s] {:6.0} served/s | live backends {}/{} | refused {} | crashes {} | restarts {}",
            elapsed.as_secs_f64(),
            rate,
            supervisor.live_backends(),
            supervisor.services.len(),
            total(|t| t.refused),
            total(|t| t.crashes),
            total(|t| t.respawns + t.reopens),
        );
        let mut stderr = io::stderr().lock();
        if self.terminal {
            // Pad over the longer line this one replaces.
            let _ = write!(stderr, "\r{line:<width$}", width = self.width);
            self.width = line.len();
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        self.last = Instant::now();
        self.last_served = served;
    }

    /// Ends the line in place on a terminal, so that what follows starts on its own line.
    pub(crate) fn finish(&self) {
        if self.terminal && self.width > 0 {
            eprintln!();
        }
    }
}

/// One service's results.
#[derive(Debug)]
pub(crate) struct ServiceSummary {
    pub(crate) name: String,
    pub(crate) crash_rate: f64,
    pub(crate) tally: Tally,
    /// Served Hellos' round trips, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// Every backend process spawned for it.
    pub(crate) pids: Vec<u32>,
    /// Those the broker did not see reaped (should be none).
    pub(crate) unreaped: Vec<u32>,
}

/// A run's results.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    pub(crate) options: &'a BrokerOptions,
    pub(crate) elapsed: Duration,
    pub(crate) interrupted: bool,
    pub(crate) services: Vec<ServiceSummary>,
    pub(crate) metrics: BackendRecoveryMetrics,
}

impl ServiceSummary {
    /// The `p`-quantile of the served Hellos' round trips (nearest rank).
    fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = (p * n as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, n) - 1])
    }
}

/// Milliseconds with two decimals, or `-` when there is nothing to measure.
fn millis(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |d| {
        format!("{:.2}", d.as_secs_f64() * 1000.0)
    })
}

impl Summary<'_> {
    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.services.iter().flat_map(|s| s.pids.iter().copied())
    }

    fn unreaped(&self) -> usize {
        self.services.iter().map(|s| s.unreaped.len()).sum()
    }

    /// `true` if every child was reaped.
    pub(crate) fn all_reaped(&self) -> bool {
        self.unreaped() == 0
    }

    /// The table, for people.
    pub(crate) fn table(&self) -> String {
        let o = self.options;
        let s = &o.settings;
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "broker ran {:.1} s{}: {} workers, {} clients at {} Hellos/s each",
            self.elapsed.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            o.workers,
            o.clients,
            o.rate,
        ));
        line(format!(
            "policy: backoff {} ms, window {} ms, {} retr{} per window, probation {} ms{}{}",
            s.backoff.as_millis(),
            s.window.as_millis(),
            s.retries,
            if s.retries == 1 { "y" } else { "ies" },
            s.min_uptime.as_millis(),
            if s.backoff_factor > 1.0 {
                format!(", backoff x{} per retry", s.backoff_factor)
            } else {
                String::new()
            },
            if s.jitter > 0.0 {
                format!(", jitter {}", s.jitter)
            } else {
                String::new()
            },
        ));
        line(String::new());
        line(format!(
            "{:<12} {:>5} {:>7} {:>5} {:>7} {:>7} {:>7} {:>5} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6}",
            "service",
            "crash",
            "served",
            "lost",
            "refused",
            "crashes",
            "reports",
            "dups",
            "retries",
            "refusals",
            "respawns",
            "reopens",
            "p50 ms",
            "p99 ms",
        ));
        for service in &self.services {
            let t = &service.tally;
            line(format!(
                "{:<12} {:>5} {:>7} {:>5} {:>7} {:>7} {:>7} {:>5} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6}",
                service.name,
                format!("{:.2}", service.crash_rate),
                t.served,
                t.lost,
                t.refused,
                t.crashes,
                t.crash_reports,
                t.duplicate_reports,
                t.retries_granted,
                t.refusals,
                t.respawns,
                t.reopens,
                millis(service.percentile(0.50)),
                millis(service.percentile(0.99)),
            ));
        }
        line(String::new());
        for legend in LEGEND {
            line(legend.to_string());
        }
        line(String::new());
        let m = &self.metrics;
        line(format!(
            "recovery state's metrics: retries granted {}, refusals {}, duplicate reports \
             coalesced {}, successes recorded {}",
            m.retries_granted, m.refusals, m.duplicates_coalesced, m.successes,
        ));
        let deferred: u64 = self.services.iter().map(|s| s.tally.deferred).sum();
        line(format!(
            "Hellos that arrived while a respawn waited out its backoff (told to come back): {deferred}"
        ));
        let spawned = self.pids().count();
        line(format!(
            "backend processes: {spawned} spawned, {} reaped, {}",
            spawned - self.unreaped(),
            if self.all_reaped() {
                "none left running".to_string()
            } else {
                format!("{} NOT reaped", self.unreaped())
            },
        ));
        out
    }

    /// One JSON object, for scripts and the integration test.
    pub(crate) fn json(&self) -> JsonSummary<'_> {
        let o = self.options;
        let s = &o.settings;
        let m = &self.metrics;
        let pids: Vec<u32> = self.pids().collect();
        JsonSummary {
            elapsed_s: self.elapsed.as_secs_f64(),
            interrupted: self.interrupted,
            workers: o.workers,
            clients: o.clients,
            rate_per_client: o.rate,
            policy: JsonPolicy {
                retry_backoff_ms: s.backoff.as_millis() as u64,
                budget_window_ms: s.window.as_millis() as u64,
                retries_per_window: s.retries,
                backoff_factor: s.backoff_factor,
                jitter: s.jitter,
                min_uptime_ms: s.min_uptime.as_millis() as u64,
            },
            services: self.services.iter().map(JsonService::from).collect(),
            state_metrics: JsonMetrics {
                retries_granted: m.retries_granted,
                refusals: m.refusals,
                capacity_refusals: m.capacity_refusals,
                duplicates_coalesced: m.duplicates_coalesced,
                successes: m.successes,
                entries_purged: m.entries_purged,
            },
            children: JsonChildren {
                spawned: pids.len(),
                reaped: pids.len() - self.unreaped(),
                pids,
            },
        }
    }
}

/// The `--json` summary: one object, with the field names scripts and the integration test
/// read.
#[derive(Debug, Serialize)]
pub(crate) struct JsonSummary<'a> {
    elapsed_s: f64,
    interrupted: bool,
    workers: usize,
    clients: usize,
    rate_per_client: f64,
    policy: JsonPolicy,
    services: Vec<JsonService<'a>>,
    state_metrics: JsonMetrics,
    children: JsonChildren,
}

/// The recovery policy's settings, as given on the command line.
#[derive(Debug, Serialize)]
struct JsonPolicy {
    retry_backoff_ms: u64,
    budget_window_ms: u64,
    retries_per_window: u32,
    backoff_factor: f64,
    jitter: f64,
    min_uptime_ms: u64,
}

/// One service: its counters side by side with its name, latencies and processes.
#[derive(Debug, Serialize)]
struct JsonService<'a> {
    name: &'a str,
    crash_rate: f64,
    #[serde(flatten)]
    tally: Tally,
    /// Always 1: every service starts with one backend; respawns and reopens come after.
    initial_spawns: u64,
    /// `null` when it served nothing.
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    pids: &'a [u32],
    unreaped_pids: &'a [u32],
}

impl<'a> From<&'a ServiceSummary> for JsonService<'a> {
    fn from(service: &'a ServiceSummary) -> Self {
        let ms = |p| service.percentile(p).map(|d| d.as_secs_f64() * 1000.0);
        JsonService {
            name: &service.name,
            crash_rate: service.crash_rate,
            tally: service.tally,
            initial_spawns: 1,
            latency_p50_ms: ms(0.50),
            latency_p99_ms: ms(0.99),
            pids: &service.pids,
            unreaped_pids: &service.unreaped,
        }
    }
}

/// The recovery state's own metrics.
#[derive(Debug, Serialize)]
struct JsonMetrics {
    retries_granted: u64,
    refusals: u64,
    capacity_refusals: u64,
    duplicates_coalesced: u64,
    successes: u64,
    entries_purged: u64,
}

/// Every backend process spawned, and how many were reaped.
#[derive(Debug, Serialize)]
struct JsonChildren {
    spawned: usize,
    reaped: usize,
    pids: Vec<u32>,
}

/// What the table's columns mean.
const LEGEND: [&str; 7] = [
    "crash     probability that a Hello kills the service's backend process",
    "served    Hellos its backend answered        lost      Hellos in flight when it died",
    "refused   Hellos refused at the gate (status: budget spent), told retry_after_ms",
    "crashes   backend deaths                     reports   crash reports by every thread that saw one",
    "dups      reports of a death already counted: record_crash_of counted each death once",
    "retries   deaths granted a respawn (Retry)   refusals  deaths refused for the window (Refuse)",
    "respawns  at most 1 per Retry, after backoff reopens   on the first Hello after a refused window",
];

/// Prints the summary to stdout.
pub(crate) fn print(summary: &Summary<'_>) {
    let text = if summary.options.json {
        let json = serde_json::to_string(&summary.json()).expect("the summary serializes");
        format!("{json}\n")
    } else {
        summary.table()
    };
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
