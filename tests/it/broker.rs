//! The broker example (`examples/broker.rs`), run as a user runs it: a real multi-threaded broker
//! supervising real backend processes for about 2 s, then stopped by Ctrl-C, then killed.
//!
//! `cargo test` builds the examples before it runs the tests, in the same profile; this file
//! finds the binary beside its own (`target/<profile>/deps/it-*` → `target/<profile>/examples/`).
//! Run alone (`cargo test --test it broker`), cargo builds no example: if the binary is missing,
//! or older than its sources, the test builds it with `cargo build --example broker`, or fails
//! saying how to.
//!
//! The assertions are on what happened (counters, decisions, processes), never on how long it
//! took. The only clock is the broker's own: its `--duration` of 2 s is eight of the run's
//! 250 ms budget windows (`WINDOW_MS`), and a whole cycle of the crash loop (a crash granted a
//! respawn after 50 ms, the respawned backend's crash refused, the window closing, the reopen)
//! takes about one window. A run whose threads were stalled for most of those 2 s could still
//! see no reopen; one stalled for a second still sees several.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Two healthy services, a flaky one and one that crash-loops (every Hello kills it).
const SERVICES: [&str; 8] = [
    "--service",
    "accounts:0",
    "--service",
    "catalog:0",
    "--service",
    "search:0.02",
    "--service",
    "thumbnails:1",
];
const HEALTHY: [&str; 2] = ["accounts", "catalog"];
const CRASH_LOOPING: &str = "thumbnails";

/// The example's binary, built by `cargo test` beside this test's (checked once per run).
fn broker_example() -> &'static Path {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(locate_or_build_example)
}

fn locate_or_build_example() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let example = profile_dir
        .join("examples")
        .join(format!("broker{}", std::env::consts::EXE_SUFFIX));
    if !example.exists() || older_than_its_sources(&example) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--example", "broker"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let built = build.status();
        assert!(
            matches!(built, Ok(status) if status.success()) && example.exists(),
            "the broker example at {} is missing or stale and `cargo build --example broker` \
             failed ({built:?}): build it first, or run the whole suite with `cargo test`",
            example.display(),
        );
    }
    example
}

/// Whether a source of the example (or of the crate) changed after `binary` was built, as when
/// `cargo test --test it` runs after an edit: cargo rebuilds no example then.
fn older_than_its_sources(binary: &Path) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("examples/broker.rs"), root.join("Cargo.toml")];
    for dir in ["examples/broker", "src"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            sources.extend(entries.filter_map(|entry| entry.ok().map(|e| e.path())));
        }
    }
    sources
        .iter()
        .any(|source| modified(source).is_some_and(|changed| changed > built))
}

/// Runs the broker to its end with `--json` and returns its summary. A broker still running
/// a minute after its `--duration` fails the test rather than hanging it.
fn run_to_end(args: &[&str], duration_secs: u64) -> Value {
    let mut broker = Broker::start(args, &["--json"]);
    let stdout = broker.drain(|child| child.stdout.take());
    let stderr = broker.drain(|child| child.stderr.take());
    let status = broker.wait_until(Instant::now() + Duration::from_secs(duration_secs + 60));
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!("the broker did not stop by itself; stderr:\n{stderr}");
    };
    assert!(
        status.success(),
        "the broker failed ({status}); stderr:\n{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!("the broker's --json output is not JSON ({error}):\n{stdout}")
    })
}

/// A broker example process that is killed and reaped if the test ends before it does.
struct Broker {
    child: Option<Child>,
}

impl Broker {
    fn start(args: &[&str], more: &[&str]) -> Broker {
        let child = Command::new(broker_example())
            .args(args)
            .args(more)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the broker example");
        Broker { child: Some(child) }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the broker was waited for")
    }

    fn id(&mut self) -> u32 {
        self.child().id()
    }

    /// Reads one of its pipes to the end on a thread: a broker writing to a full or closed
    /// pipe would stall or fail.
    fn drain<R: Read + Send + 'static>(
        &mut self,
        pipe: impl FnOnce(&mut Child) -> Option<R>,
    ) -> thread::JoinHandle<String> {
        let mut pipe = pipe(self.child()).expect("a piped stream");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    }

    /// Its exit status, if it ends before `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for the broker") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Its backends exit by themselves once their stdin closes with it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the broker in the background and waits for its first stderr line, which it prints
/// once every backend is up and Ctrl-C is handled. Returns the broker, the initial backends'
/// pids, and a thread that drains the rest of stderr.
fn start_in_background(args: &[&str]) -> (Broker, Vec<u32>, thread::JoinHandle<String>) {
    let mut broker = Broker::start(args, &[]);
    let mut stderr = BufReader::new(broker.child().stderr.take().expect("piped stderr"));
    let mut first = String::new();
    stderr
        .read_line(&mut first)
        .expect("read the broker's stderr");
    // "broker: 4 backends started (pids 101 102 103 104); ..."
    let pids: Vec<u32> = first
        .split_once("(pids ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(pids, _)| pids.split(' ').filter_map(|pid| pid.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        !pids.is_empty(),
        "the broker's first line names no pids: {first:?}"
    );
    let drain = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    (broker, pids, drain)
}

/// Sends `signal` to `pid`.
fn send_signal(signal: Signal, pid: u32) {
    let sent = kill(nix_pid(pid), signal);
    assert!(sent.is_ok(), "kill({pid}, {signal}) failed: {sent:?}");
}

fn nix_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("a pid fits an i32"))
}

/// Whether `pid` is a live backend of a broker example: a process that is not a zombie, not a
/// kernel thread, and whose command line is a backend's, or still empty: `spawn` returns once
/// `execve` is past the point of no return, a moment before the kernel has set up the new
/// image's arguments. A command line of anything else is a recycled pid, not ours.
fn backend_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // After the parenthesised command name: state, ppid, pgrp, session, tty, tpgid, flags.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if matches!(fields.first(), None | Some(&"Z" | &"X")) {
            return false;
        }
        const PF_KTHREAD: u64 = 0x0020_0000;
        let flags = fields.get(6).and_then(|flags| flags.parse::<u64>().ok());
        if flags.is_some_and(|flags| flags & PF_KTHREAD != 0) {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.is_empty() || String::from_utf8_lossy(&cmdline).contains("--backend")
    } else {
        // Signal 0: only checks that the process exists.
        kill(nix_pid(pid), None).is_ok()
    }
}

fn service<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|service| service["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in the summary"))
}

fn count(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {value}"))
}

fn pids(value: &Value) -> Vec<u32> {
    value["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|pid| pid.as_u64().expect("a pid") as u32)
        .collect()
}

/// Every child the broker reports is reaped, by its own account and as seen from outside.
fn assert_no_backend_left(summary: &Value) {
    let children = &summary["children"];
    let all = pids(children);
    assert!(!all.is_empty(), "no backend was spawned: {summary}");
    assert_eq!(count(children, "spawned"), all.len() as u64);
    assert_eq!(
        count(children, "reaped"),
        all.len() as u64,
        "the broker did not reap every backend: {summary}"
    );
    let running: Vec<u32> = all
        .into_iter()
        .filter(|&pid| backend_running(pid))
        .collect();
    assert!(running.is_empty(), "backends still running: {running:?}");
}

/// The budget window of the run that checks the crash loop's whole cycle: an eighth of its
/// duration.
const WINDOW_MS: u64 = 250;

#[test]
fn broker_refuses_a_crash_loop_for_the_window_and_keeps_healthy_services_serving() {
    let window = WINDOW_MS.to_string();
    let mut args = vec!["--duration", "2", "--window-ms", &window];
    args.extend(SERVICES);
    let summary = run_to_end(&args, 2);
    let report = serde_json::to_string_pretty(&summary).unwrap();
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["policy"]["budget_window_ms"], WINDOW_MS, "{report}");

    // The crash loop: its first death is granted a respawn, the respawned backend dies too and
    // that death is refused; Hellos are then refused at the gate until the window passes.
    let looping = service(&summary, CRASH_LOOPING);
    assert_eq!(count(looping, "served"), 0, "it never answers: {report}");
    assert!(
        count(looping, "refusals") >= 1,
        "budget never spent: {report}"
    );
    assert!(count(looping, "refused") >= 1, "no Hello refused: {report}");
    // After the window, a Hello got through the gate again: the backend was reopened and the
    // Hello forwarded to it, and its death opened a new window with a whole budget, so it was
    // granted a respawn again.
    assert!(count(looping, "reopens") >= 1, "never reopened: {report}");
    assert!(
        count(looping, "hellos_after_reopen") >= 1,
        "no Hello served after the window: {report}"
    );
    assert!(
        count(looping, "retries_granted") >= 2,
        "no retry in a second window: {report}"
    );

    // Healthy services serve throughout: never refused, never crashed, never respawned.
    for name in HEALTHY {
        let healthy = service(&summary, name);
        assert!(
            count(healthy, "served") > 0,
            "{name} served nothing: {report}"
        );
        for field in [
            "refused",
            "lost",
            "deferred",
            "crashes",
            "crash_reports",
            "respawns",
            "reopens",
        ] {
            assert_eq!(count(healthy, field), 0, "{name}: {field} in {report}");
        }
        assert_eq!(pids(healthy).len(), 1, "{name} was respawned: {report}");
    }

    // Every service: one respawn at most per granted retry (the initial spawn and the reopens
    // after a window are counted apart), and each death counted exactly once.
    let mut duplicates = 0;
    let mut retries = 0;
    for service in summary["services"].as_array().unwrap() {
        let name = &service["name"];
        let (respawns, granted) = (
            count(service, "respawns"),
            count(service, "retries_granted"),
        );
        assert!(
            respawns <= granted,
            "{name}: {respawns} respawns > {granted} retries"
        );
        let spawns = count(service, "initial_spawns") + respawns + count(service, "reopens");
        assert_eq!(
            pids(service).len() as u64,
            spawns - count(service, "spawn_failures"),
            "{name}: every spawn is accounted for"
        );
        let counted = granted + count(service, "refusals");
        assert_eq!(
            count(service, "crashes"),
            counted,
            "{name}: deaths vs decisions"
        );
        assert_eq!(
            count(service, "crash_reports"),
            counted + count(service, "duplicate_reports"),
            "{name}: reports"
        );
        duplicates += count(service, "duplicate_reports");
        retries += granted;
    }
    // Each death was seen by its watcher and by the worker whose Hello it lost, and more: the
    // state coalesced the extra reports, exactly as many as the broker counted.
    let metrics = &summary["state_metrics"];
    assert!(duplicates > 0, "no duplicate report: {report}");
    assert_eq!(
        count(metrics, "duplicates_coalesced"),
        duplicates,
        "{report}"
    );
    assert_eq!(count(metrics, "retries_granted"), retries, "{report}");

    assert_no_backend_left(&summary);
}

#[test]
fn ctrl_c_stops_the_broker_and_reaps_every_backend() {
    let mut args = vec!["--duration", "120", "--json"];
    args.extend(SERVICES);
    let (mut broker, initial, drain) = start_in_background(&args);
    let stdout = broker.drain(|child| child.stdout.take());
    send_signal(Signal::SIGINT, broker.id());
    let status = broker.wait_until(Instant::now() + Duration::from_secs(60));
    let (stdout, stderr) = (stdout.join().unwrap(), drain.join().unwrap());
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(130),
        "an interrupted broker exits with 130; stderr:\n{stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["interrupted"], true);
    let all = pids(&summary["children"]);
    assert!(initial.iter().all(|pid| all.contains(pid)), "{summary}");
    assert_no_backend_left(&summary);
}

#[test]
fn backends_exit_by_themselves_when_their_broker_is_killed() {
    // Healthy services only, so that every backend is known to be running when the broker dies.
    let args = [
        "--duration",
        "120",
        "--service",
        "accounts:0",
        "--service",
        "catalog:0",
    ];
    let (mut broker, backends, drain) = start_in_background(&args);
    let _stdout = broker.drain(|child| child.stdout.take());
    assert!(
        backends.iter().all(|&pid| backend_running(pid)),
        "healthy backends {backends:?} are running"
    );
    send_signal(Signal::SIGKILL, broker.id());
    let status = broker.wait_until(Instant::now() + Duration::from_secs(60));
    assert_eq!(
        status.and_then(|status| status.signal()),
        Some(9),
        "the broker was killed"
    );
    drain.join().unwrap();
    // Nobody reaps them or kills them now: each must see its stdin close and exit. Poll, with
    // a deadline far beyond what that takes, so that a slow machine is no failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut running: Vec<u32> = backends.clone();
    while !running.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        running.retain(|&pid| backend_running(pid));
    }
    assert!(
        running.is_empty(),
        "backends outlived their killed broker: {running:?}"
    );
}
