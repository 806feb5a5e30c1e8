//! The command line: the broker's flags and `--help`, and the hidden backend mode in which the
//! broker re-executes its own binary as each backend process.
//!
//! Parsed by clap: `--flag value` or `--flag=value`, nothing positional, a flag given twice
//! keeps its last value (`--service` adds one each time). Each value is checked as it is parsed,
//! against the same ranges as the settings it feeds. A mistake is an error naming the flag; the
//! caller exits with clap's status for it, 2.

use std::collections::HashSet;
use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::time::Duration;

use backend_recovery::BackendRecoveryPolicy;
use clap::builder::{RangedU64ValueParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser};

/// What `--help` prints above the flags.
const ABOUT: &str = "\
broker: a small multi-threaded process broker. It supervises real backend processes, serves
client Hellos from a pool of worker threads, and asks backend-recovery what to do each time a
backend dies: respawn it once after a backoff, or refuse it until its budget window has passed.

Run it with: cargo run --release --example broker -- [OPTIONS]";

/// What `--help` prints below the flags.
const AFTER_HELP: &str = "\
The crate's own defaults are a 250 ms backoff and a 30 s window: the spawn budget of the
broker it comes from. This demo uses 50 ms and 1 s instead, so that a run of a couple of
seconds shows the whole cycle: a crash granted a respawn, the next crash refused for the
rest of the window, and the window closing so that the backend is respawned again.

How it runs:
    Each backend is this same binary, re-executed as `broker --backend NAME --crash-rate P
    --seed S` in a process group of its own. It answers `HELLO` lines on its stdin and exits
    when its stdin closes, so even a broker killed with SIGKILL leaves no backend running.
    The live progress line goes to stderr, the summary to stdout. Ctrl-C (or SIGTERM) stops the
    run early and still reaps every backend; the exit status is then 130. A second Ctrl-C exits
    at once.";

/// One service the broker supervises.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServiceSpec {
    /// Its name, also the backend's.
    pub(crate) name: String,
    /// Probability that a Hello kills its backend.
    pub(crate) crash_rate: f64,
}

/// The policy flags as given, for the summary; [`BrokerOptions::policy`] is what they build.
#[derive(Args, Clone, Copy, Debug, PartialEq)]
#[command(next_help_heading = "Recovery policy (backend_recovery::BackendRecoveryPolicy)")]
pub(crate) struct PolicySettings {
    /// Delay before a crashed backend is respawned
    #[arg(long = "backoff-ms", value_name = "MS", default_value = "50",
          value_parser = millis(0..=3_600_000))]
    pub(crate) backoff: Duration,
    /// Budget window, opened by a backend's first crash
    #[arg(long = "window-ms", value_name = "MS", default_value = "1000",
          value_parser = millis(1..=3_600_000))]
    pub(crate) window: Duration,
    /// Respawns granted per window, 0 to 14
    #[arg(long, value_name = "N", default_value = "1",
          value_parser = clap::value_parser!(u32).range(0..=14))]
    pub(crate) retries: u32,
    /// Multiply the backoff by F for each further retry in a window, capped at the window; 1 (fixed) to 1000
    #[arg(long, value_name = "F", default_value = "1", value_parser = number(1.0, 1000.0))]
    pub(crate) backoff_factor: f64,
    /// Lengthen each backoff by up to this fraction, 0 to 1
    #[arg(long, value_name = "F", default_value = "0", value_parser = number(0.0, 1.0))]
    pub(crate) jitter: f64,
    /// Probation: a backend's crashes are forgotten only once it has answered this long after its launch
    #[arg(long = "min-uptime-ms", value_name = "MS", default_value = "100",
          value_parser = millis(0..=3_600_000))]
    pub(crate) min_uptime: Duration,
}

/// A broker run.
#[derive(Clone, Debug)]
pub(crate) struct BrokerOptions {
    pub(crate) duration: Duration,
    pub(crate) workers: usize,
    pub(crate) clients: usize,
    /// Hellos per second, per client.
    pub(crate) rate: f64,
    pub(crate) services: Vec<ServiceSpec>,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) settings: PolicySettings,
    pub(crate) policy: BackendRecoveryPolicy,
}

/// The hidden mode: be one backend process (`broker --backend NAME --crash-rate P --seed S`, as
/// the broker itself spawns it).
#[derive(Clone, Debug, PartialEq, Parser)]
#[command(
    name = "broker",
    about = "One backend process of the broker (spawned by the broker)"
)]
pub(crate) struct BackendOptions {
    /// The service this backend serves
    #[arg(long = "backend", value_name = "NAME")]
    pub(crate) name: String,
    /// Probability that a Hello kills this backend, 0 to 1
    #[arg(long, value_name = "P", default_value = "0", value_parser = number(0.0, 1.0))]
    pub(crate) crash_rate: f64,
    /// Seed of this backend's crash draws
    #[arg(long, value_name = "N", default_value = "0")]
    pub(crate) seed: u64,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    Broker(Box<BrokerOptions>),
    Backend(BackendOptions),
}

/// The broker's flags, as clap parses them; [`BrokerOptions`] is what the run uses.
#[derive(Debug, Parser)]
#[command(name = "broker", about = ABOUT, long_about = None, after_help = AFTER_HELP,
          args_override_self = true, allow_negative_numbers = true)]
struct Cli {
    /// Stop after this many seconds (fractions allowed), 0.001 to 86400
    #[arg(long, value_name = "SECS", default_value = "10",
          value_parser = number(0.001, 86_400.0).map(Duration::from_secs_f64))]
    duration: Duration,
    /// Worker threads serving Hellos, 1 to 256
    #[arg(long, value_name = "N", default_value = "4",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    workers: usize,
    /// Client threads sending Hellos, 1 to 1024
    #[arg(long, value_name = "N", default_value = "8",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    clients: usize,
    /// Hellos per second sent by each client, 0.1 to 100000
    #[arg(long, value_name = "N", default_value = "50", value_parser = number(0.1, 100_000.0))]
    rate: f64,
    /// A service whose backend dies on a Hello with probability RATE (0 healthy, 1 crash-loops); repeat for several, replacing the defaults
    #[arg(long = "service", value_name = "NAME:RATE", value_parser = service,
          default_values = ["accounts:0", "catalog:0", "search:0.02", "thumbnails:1"])]
    services: Vec<ServiceSpec>,
    /// Seed of the backends' crash draws
    #[arg(long, value_name = "N", default_value = "1")]
    seed: u64,
    /// Print the final summary as one JSON object instead of the table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    settings: PolicySettings,
}

/// Parses the command line, program name first. An `Err` is clap's: `--help` (printed to
/// stdout, status 0) or a mistake (stderr, status 2); the caller ends with `error.exit()`.
pub(crate) fn parse(args: &[OsString]) -> Result<Command, clap::Error> {
    let backend_mode = args.iter().skip(1).any(|arg| {
        arg.to_str()
            .is_some_and(|arg| arg == "--backend" || arg.starts_with("--backend="))
    });
    if backend_mode {
        return BackendOptions::try_parse_from(args).map(Command::Backend);
    }
    let cli = Cli::try_parse_from(args)?;
    let mut names = HashSet::new();
    if let Some(twice) = cli.services.iter().find(|s| !names.insert(s.name.as_str())) {
        let message = format!("service `{}` is given twice", twice.name);
        return Err(Cli::command().error(ErrorKind::ArgumentConflict, message));
    }
    let policy = policy(&cli.settings).map_err(|error| {
        let message = format!("bad recovery policy: {error}");
        Cli::command().error(ErrorKind::ValueValidation, message)
    })?;
    Ok(Command::Broker(Box::new(BrokerOptions {
        duration: cli.duration,
        workers: cli.workers,
        clients: cli.clients,
        rate: cli.rate,
        services: cli.services,
        seed: cli.seed,
        json: cli.json,
        settings: cli.settings,
        policy,
    })))
}

/// The checked policy the settings stand for.
fn policy(settings: &PolicySettings) -> Result<BackendRecoveryPolicy, impl std::fmt::Display> {
    let mut builder = BackendRecoveryPolicy::builder()
        .retry_backoff(settings.backoff)
        .budget_window(settings.window)
        .retries_per_window(settings.retries)
        .jitter(settings.jitter)
        .min_uptime(settings.min_uptime);
    if settings.backoff_factor > 1.0 {
        builder = builder.exponential_backoff(settings.backoff_factor, settings.window);
    }
    builder.build()
}

/// `NAME:RATE`.
fn service(value: &str) -> Result<ServiceSpec, String> {
    let Some((name, rate)) = value.split_once(':') else {
        return Err("expected NAME:RATE, such as search:0.02".to_string());
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || !name.chars().all(valid) {
        return Err(format!(
            "service name `{name}` must be letters, digits, `-` or `_`"
        ));
    }
    let crash_rate =
        finite_in(rate, 0.0, 1.0).map_err(|error| format!("crash rate `{rate}`: {error}"))?;
    Ok(ServiceSpec {
        name: name.to_string(),
        crash_rate,
    })
}

/// A value parser of a finite number in `min..=max`.
fn number(min: f64, max: f64) -> impl TypedValueParser<Value = f64> {
    move |value: &str| finite_in(value, min, max)
}

/// A value parser of a whole number of milliseconds in `range`.
fn millis(range: RangeInclusive<u64>) -> impl TypedValueParser<Value = Duration> {
    RangedU64ValueParser::<u64>::new()
        .range(range)
        .map(Duration::from_millis)
}

/// `value` as a finite number in `min..=max`.
fn finite_in(value: &str, min: f64, max: f64) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => Err(format!("expected a number from {min} to {max}")),
    }
}
