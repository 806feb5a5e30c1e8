//! The command line: the broker's flags and `--help`, and the hidden backend mode in which the
//! broker re-executes its own binary as each backend process.
//!
//! Hand-parsed: `--flag value` or `--flag=value`, nothing positional. Every mistake is a one-line
//! message naming the flag, and the caller exits with status 2.

use std::time::Duration;

use backend_recovery::BackendRecoveryPolicy;

/// What `--help` prints.
pub(crate) const HELP: &str = "\
broker: a small multi-threaded process broker. It supervises real backend processes, serves
client Hellos from a pool of worker threads, and asks backend-recovery what to do each time a
backend dies: respawn it once after a backoff, or refuse it until its budget window has passed.

USAGE:
    cargo run --release --example broker -- [OPTIONS]

OPTIONS:
    --duration SECS        stop after this many seconds (fractions allowed)       [default: 10]
    --workers N            worker threads serving Hellos                          [default: 4]
    --clients N            client threads sending Hellos                          [default: 8]
    --rate N               Hellos per second sent by each client                  [default: 50]
    --service NAME:RATE    a service whose backend dies on a Hello with probability RATE
                           (0 = healthy, 1 = crash-loops: dies on every Hello). Repeat it for
                           several; any --service replaces the default set, which is
                           accounts:0 catalog:0 search:0.02 thumbnails:1
    --seed N               seed of the backends' crash draws                      [default: 1]
    --json                 print the final summary as one JSON object instead of the table
    -h, --help             print this help

RECOVERY POLICY (backend_recovery::BackendRecoveryPolicy):
    --backoff-ms MS        delay before a crashed backend is respawned            [default: 50]
    --window-ms MS         budget window, opened by a backend's first crash       [default: 1000]
    --retries N            respawns granted per window, 0 to 14                   [default: 1]
    --backoff-factor F     multiply the backoff by F for each further retry in a window,
                           capped at the window; 1 keeps it fixed                 [default: 1]
    --jitter F             lengthen each backoff by up to this fraction, 0 to 1   [default: 0]

    The crate's own defaults are a 250 ms backoff and a 30 s window: the spawn budget of the
    broker it comes from. This demo uses 50 ms and 1 s instead, so that a run of a couple of
    seconds shows the whole cycle: a crash granted a respawn, the next crash refused for the
    rest of the window, and the window closing so that the backend is respawned again.

HOW IT RUNS:
    Each backend is this same binary, re-executed as `broker --backend NAME --crash-rate P
    --seed S` in a process group of its own. It answers `HELLO` lines on its stdin and exits
    when its stdin closes, so even a broker killed with SIGKILL leaves no backend running.
    The live progress line goes to stderr, the summary to stdout. Ctrl-C (or SIGTERM) stops the
    run early and still reaps every backend; the exit status is then 130. A second Ctrl-C exits
    at once.
";

/// One service the broker supervises.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServiceSpec {
    /// Its name, also the backend's.
    pub(crate) name: String,
    /// Probability that a Hello kills its backend.
    pub(crate) crash_rate: f64,
}

/// The policy flags as given, for the summary; [`BrokerOptions::policy`] is what they build.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PolicySettings {
    pub(crate) backoff: Duration,
    pub(crate) window: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff_factor: f64,
    pub(crate) jitter: f64,
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

/// The hidden mode: be one backend process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BackendOptions {
    pub(crate) name: String,
    pub(crate) crash_rate: f64,
    pub(crate) seed: u64,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    Help,
    Broker(BrokerOptions),
    Backend(BackendOptions),
}

/// The default services: two healthy, one flaky, one crash-looping.
fn default_services() -> Vec<ServiceSpec> {
    [
        ("accounts", 0.0),
        ("catalog", 0.0),
        ("search", 0.02),
        ("thumbnails", 1.0),
    ]
    .into_iter()
    .map(|(name, crash_rate)| ServiceSpec {
        name: name.to_string(),
        crash_rate,
    })
    .collect()
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    let backend_mode = args
        .iter()
        .any(|arg| arg == "--backend" || arg.starts_with("--backend="));
    if backend_mode {
        return parse_backend(args).map(Command::Backend);
    }
    let mut duration = Duration::from_secs(10);
    let mut workers = 4;
    let mut clients = 8;
    let mut rate = 50.0;
    let mut services = Vec::new();
    let mut seed = 1;
    let mut json = false;
    let mut settings = PolicySettings {
        backoff: Duration::from_millis(50),
        window: Duration::from_secs(1),
        retries: 1,
        backoff_factor: 1.0,
        jitter: 0.0,
    };

    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--json" => {
                flags.no_value(flag)?;
                json = true;
            }
            "--duration" => {
                let secs = number(flag, flags.value(flag)?, 0.001, 86_400.0, "seconds")?;
                duration = Duration::from_secs_f64(secs);
            }
            "--workers" => workers = whole(flag, flags.value(flag)?, 1, 256)? as usize,
            "--clients" => clients = whole(flag, flags.value(flag)?, 1, 1024)? as usize,
            "--rate" => rate = number(flag, flags.value(flag)?, 0.1, 100_000.0, "Hellos/s")?,
            "--service" => {
                let service = service(flags.value(flag)?)?;
                if services
                    .iter()
                    .any(|s: &ServiceSpec| s.name == service.name)
                {
                    return Err(format!("service `{}` is given twice", service.name));
                }
                services.push(service);
            }
            "--seed" => seed = whole(flag, flags.value(flag)?, 0, u64::MAX)?,
            "--backoff-ms" => {
                let ms = whole(flag, flags.value(flag)?, 0, 3_600_000)?;
                settings.backoff = Duration::from_millis(ms);
            }
            "--window-ms" => {
                let ms = whole(flag, flags.value(flag)?, 1, 3_600_000)?;
                settings.window = Duration::from_millis(ms);
            }
            "--retries" => settings.retries = whole(flag, flags.value(flag)?, 0, 14)? as u32,
            "--backoff-factor" => {
                settings.backoff_factor = number(flag, flags.value(flag)?, 1.0, 1000.0, "")?;
            }
            "--jitter" => settings.jitter = number(flag, flags.value(flag)?, 0.0, 1.0, "")?,
            _ => return Err(format!("unknown flag `{flag}`")),
        }
    }
    if services.is_empty() {
        services = default_services();
    }
    let policy = policy(&settings)?;
    Ok(Command::Broker(BrokerOptions {
        duration,
        workers,
        clients,
        rate,
        services,
        seed,
        json,
        settings,
        policy,
    }))
}

/// The checked policy the settings stand for.
fn policy(settings: &PolicySettings) -> Result<BackendRecoveryPolicy, String> {
    let mut builder = BackendRecoveryPolicy::builder()
        .retry_backoff(settings.backoff)
        .budget_window(settings.window)
        .retries_per_window(settings.retries)
        .jitter(settings.jitter);
    if settings.backoff_factor > 1.0 {
        builder = builder.exponential_backoff(settings.backoff_factor, settings.window);
    }
    builder
        .build()
        .map_err(|error| format!("bad recovery policy: {error}"))
}

/// `broker --backend NAME --crash-rate P --seed S`, as the broker itself spawns it.
fn parse_backend(args: &[String]) -> Result<BackendOptions, String> {
    let mut options = BackendOptions {
        name: String::new(),
        crash_rate: 0.0,
        seed: 0,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--backend" => options.name = flags.value(flag)?.to_string(),
            "--crash-rate" => options.crash_rate = number(flag, flags.value(flag)?, 0.0, 1.0, "")?,
            "--seed" => options.seed = whole(flag, flags.value(flag)?, 0, u64::MAX)?,
            _ => return Err(format!("unknown flag `{flag}` in backend mode")),
        }
    }
    Ok(options)
}

/// `NAME:RATE`.
fn service(value: &str) -> Result<ServiceSpec, String> {
    let Some((name, rate)) = value.split_once(':') else {
        return Err(format!(
            "`--service` expects NAME:RATE, such as search:0.02, got `{value}`"
        ));
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || !name.chars().all(valid) {
        return Err(format!(
            "service name `{name}` must be letters, digits, `-` or `_`"
        ));
    }
    Ok(ServiceSpec {
        name: name.to_string(),
        crash_rate: number("--service", rate, 0.0, 1.0, "crash rate")?,
    })
}

/// A whole number in `min..=max`.
fn whole(flag: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{flag}` expects a whole number from {min} to {max}, got `{value}`"
        )),
    }
}

/// A finite number in `min..=max`; `what` names the unit in the message.
fn number(flag: &str, value: &str, min: f64, max: f64, what: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => {
            let what = if what.is_empty() {
                String::new()
            } else {
                format!(" ({what})")
            };
            Err(format!(
                "`{flag}` expects a number from {min} to {max}{what}, got `{value}`"
            ))
        }
    }
}

/// A cursor over `--flag value` and `--flag=value` arguments.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    /// The value given as `--flag=value`, if the current flag had one.
    inline: Option<&'a str>,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Self {
        Flags {
            args: args.iter(),
            inline: None,
        }
    }

    /// The next flag's name; an error for a stray value.
    fn next_flag(&mut self) -> Result<Option<&'a str>, String> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if arg == "-h" {
            self.inline = None;
            return Ok(Some(arg));
        }
        if !arg.starts_with("--") || arg == "--" {
            return Err(format!("unexpected argument `{arg}`"));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (arg.as_str(), None),
        };
        self.inline = inline;
        Ok(Some(flag))
    }

    /// The current flag's value.
    fn value(&mut self, flag: &str) -> Result<&'a str, String> {
        if let Some(value) = self.inline.take() {
            return Ok(value);
        }
        match self.args.next() {
            Some(value) if !value.starts_with("--") => Ok(value),
            _ => Err(format!("`{flag}` needs a value")),
        }
    }

    /// An error if the current flag, a switch, was given a value.
    fn no_value(&mut self, flag: &str) -> Result<(), String> {
        match self.inline.take() {
            Some(value) => Err(format!("`{flag}` takes no value, got `{value}`")),
            None => Ok(()),
        }
    }
}
