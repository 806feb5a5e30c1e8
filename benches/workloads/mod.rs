//! The workloads: what each thread does, to which keys, at which instants.
//!
//! A workload gives every thread a [`Lane`]: its own precomputed operations (or, for churn, its
//! own stream of fresh keys) and its own precomputed [`Clock`]. A lane runs in *steps*, one
//! operation each (three for churn); criterion's iteration count is the number of steps every
//! thread runs, and each bench's `Throughput::Elements` is `threads * operations per step`.
//!
//! Time is simulated so that budget windows open and close as they would in a broker: each
//! workload fixes how many steps, over all threads, make one budget window (30 s, the default
//! policy), and each lane's clock advances by its share every [`TICK_STEPS`] steps. Lanes run at
//! about the same rate, so their clocks agree closely; where they drift apart, the stores see
//! instants slightly out of order between threads, which they must handle anyway.
//!
//! Stores are pre-populated as the workload's steady state would have them, with windows opened
//! at instants spread over the window before the lanes' clocks start, so they close one by one.

mod sequence;
mod workers;

use std::hint::black_box;
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryStatus};

use crate::stores::{Key, Store};
use sequence::Clock;

pub(crate) use workers::{bench, criterion_config};

/// Steps between two instants of a lane's clock: a coarse clock, as a broker reading the time
/// once per batch of events would have.
const TICK_STEPS: u32 = 16;

/// Operations in a replayed lane's table before it repeats (2 MiB per lane): long enough that
/// one lane alone touches most of the 100,000 keys, so working sets are those of the workload.
const REPLAY_LEN: usize = 1 << 18;

/// Keys alive at once in churn, over all threads.
const CHURN_LIVE_KEYS: u64 = 1024;

/// In churn, one key in this many is abandoned to purging instead of recording a success.
const CHURN_ABANDONED_EVERY: u64 = 4;

/// In churn, steps of one lane between two of its purges: with the lanes taking turns, four
/// purges per budget window over all threads, whatever the thread count.
const CHURN_PURGE_PERIOD: u64 = CHURN_LIVE_KEYS / 4;

/// Backends of broker-gate, and how many of them crash-loop (1%): the only keys with entries.
const BROKER_KEYS: u64 = 10_000;
const BROKER_LOOPING: u64 = 100;

/// In broker-gate, one operation in this many is a crash (of a looping key), the rest checks.
const BROKER_CRASH_EVERY: u64 = 1_000;

/// In broker-gate, crashes of each looping key per budget window: it keeps dying, so its checks
/// mostly find its budget spent.
const BROKER_CRASHES_PER_WINDOW: u64 = 4;

/// In refused-gate, one operation in this many is a crash of the checked backend (it is still
/// crash-looping): a hundred per window, so that its budget is spent again soon after each
/// window closes.
const REFUSED_CRASH_EVERY: u64 = 10_000;

/// The policy of every store in the benches: the spec's defaults, 250 ms and 30 s.
pub(crate) fn policy() -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::default()
}

/// One row of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// **hot-key**: every thread records crashes of one key, the crash storm when all workers
    /// see the same backend die. A window takes 4,096 crashes: one retry, one refusal that
    /// counts, then refusals of an exhausted budget until the window reopens.
    HotKey,
    /// **uniform-1k**: crashes spread uniformly over 1,000 existing keys, each crashed about
    /// twice per window: crashes open windows, are refused within them, and find closed ones.
    Uniform1k,
    /// **uniform-100k**: as uniform-1k over 100,000 keys, a working set beyond the L2 cache.
    Uniform100k,
    /// **gate**: read-mostly; 99 `status` checks to 1 crash, uniform over 1,000 existing keys
    /// (every Hello consults the state). Crashes come at uniform-1k's rate per key, so the
    /// checks see healthy, recovering and unavailable backends.
    Gate,
    /// **churn**: new keys keep arriving. Each step crashes a fresh key (an insert), crashes
    /// again the key inserted half a lifetime earlier (a refusal that counts), and records the
    /// success of the key inserted a lifetime earlier (a removal); one key in four is abandoned
    /// instead (a gate check sees it once more) and left for `purge_expired`, which the lanes
    /// call in turn four times per window. 1,024 keys alive at once, each living one budget
    /// window, plus the abandoned ones awaiting a purge.
    Churn,
    /// **broker-gate**: what a broker's state sees most. 10,000 backends, of which 1% crash-loop
    /// and are the only keys with entries; 999 `status` checks (a client's Hello) of any of the
    /// 10,000 to 1 crash of a looping one, each looping backend dying four times per window. So
    /// almost every check is of a healthy backend without an entry.
    BrokerGate,
    /// **crash-storm**: every worker connected to a backend sees it die and reports the death
    /// through `record_crash_of` with the same incarnation; a new incarnation begins when all
    /// workers have reported. Lane `t` reports incarnation `i` at its step `i`, so with the lanes
    /// running at about the same rate each death is reported once per thread (a lane ahead of
    /// the others counts the next death, the others' reports of it are duplicates; a lane
    /// behind reports stale incarnations). One backend; a window takes 4,096 reports.
    CrashStorm,
    /// **refused-gate**: clients hammering a crash-looping backend. Every thread checks one
    /// backend whose budget is spent; it keeps crashing, one operation in 10,000 (a hundred
    /// times a window), so it is refused again soon after each window closes.
    RefusedGate,
}

impl Workload {
    /// Every workload, in the order of the report.
    pub(crate) const ALL: [Workload; 8] = [
        Workload::HotKey,
        Workload::Uniform1k,
        Workload::Uniform100k,
        Workload::Gate,
        Workload::Churn,
        Workload::BrokerGate,
        Workload::CrashStorm,
        Workload::RefusedGate,
    ];

    /// Whether the workload reports crashes by incarnation (`record_crash_of`): the baselines
    /// then keep [`ReportedEntry`](crate::stores::ReportedEntry)s.
    pub(crate) fn reports_incarnations(self) -> bool {
        self == Workload::CrashStorm
    }

    /// The criterion group name, the chart's panel title and the table's row label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::HotKey => "hot-key",
            Workload::Uniform1k => "uniform-1k",
            Workload::Uniform100k => "uniform-100k",
            Workload::Gate => "gate",
            Workload::Churn => "churn",
            Workload::BrokerGate => "broker-gate",
            Workload::CrashStorm => "crash-storm",
            Workload::RefusedGate => "refused-gate",
        }
    }

    /// Store operations in one step of one lane.
    pub(crate) fn ops_per_step(self) -> u64 {
        match self {
            Workload::Churn => 3,
            _ => 1,
        }
    }

    /// Steps, over all threads together, that make one budget window of simulated time.
    pub(crate) fn steps_per_window(self) -> u64 {
        match self {
            Workload::HotKey => 4096,
            Workload::Uniform1k => 1_000 * 2,
            Workload::Uniform100k => 100_000 * 2,
            Workload::Gate => 1_000 * 2 * 100,
            Workload::Churn => CHURN_LIVE_KEYS,
            Workload::BrokerGate => BROKER_LOOPING * BROKER_CRASHES_PER_WINDOW * BROKER_CRASH_EVERY,
            Workload::CrashStorm => 4096,
            Workload::RefusedGate => REFUSED_CRASH_EVERY * 100,
        }
    }

    /// Keys of a replayed workload, all present before the lanes start (broker-gate: the keys it
    /// draws from, of which only the looping ones are present).
    fn keys(self) -> u64 {
        match self {
            Workload::HotKey | Workload::CrashStorm | Workload::RefusedGate => 1,
            Workload::Uniform1k | Workload::Gate => 1_000,
            Workload::Uniform100k => 100_000,
            Workload::Churn => CHURN_LIVE_KEYS,
            Workload::BrokerGate => BROKER_KEYS,
        }
    }

    /// Pre-populates `store` and builds one lane for each of `threads` threads.
    ///
    /// Every instant passed to the store is taken at or after this call, so after the store was
    /// built: the stores never see an instant from before they existed.
    pub(crate) fn prepare<S: Store>(self, store: &S, threads: usize) -> Vec<Lane> {
        let window = nanos(policy().budget_window);
        let base = Instant::now();
        let at = |offset: u64| base + Duration::from_nanos(offset);
        // Each lane runs `1 / threads` of the steps, so its clock moves `threads` times faster.
        let threads_u64 = threads as u64;
        let step = window * threads_u64 / self.steps_per_window();
        let clock = Clock::new(
            at(window),
            Duration::from_nanos(step * u64::from(TICK_STEPS)),
        );
        match self {
            Workload::Churn => {
                let live = CHURN_LIVE_KEYS / threads_u64;
                (0..threads_u64)
                    .map(|thread| {
                        // Disjoint key ranges per thread: thread t's keys are (t + 1) << 40 | id.
                        let prefix = (thread + 1) << 40;
                        for id in 0..live {
                            store.record_crash(prefix | id, at(step * id));
                        }
                        let script = Script::Churn {
                            prefix,
                            next_fresh: live,
                            live,
                            purge_phase: thread * (CHURN_PURGE_PERIOD / threads_u64),
                        };
                        Lane::new(script, clock.clone())
                    })
                    .collect()
            }
            Workload::CrashStorm => {
                // The backend has died before: incarnation 0 is counted, each lane reports from 1.
                store.record_crash_of(0, 0, at(0));
                let script = Script::Storm {
                    next_incarnation: 1,
                };
                (0..threads)
                    .map(|_| Lane::new(script.clone(), clock.clone()))
                    .collect()
            }
            _ => {
                match self {
                    // The looping keys (every hundredth) crashed at instants over the window.
                    Workload::BrokerGate => {
                        for looping in 0..BROKER_LOOPING {
                            let key = looping * (BROKER_KEYS / BROKER_LOOPING);
                            store.record_crash(key, at(window * looping / BROKER_LOOPING));
                        }
                    }
                    // Its budget spent at the lanes' first instant.
                    Workload::RefusedGate => {
                        store.record_crash(0, at(window));
                        store.record_crash(0, at(window));
                    }
                    _ => {
                        let keys = self.keys();
                        for key in 0..keys {
                            store.record_crash(key, at(window * key / keys));
                        }
                    }
                }
                (0..threads_u64)
                    .map(|thread| {
                        let script = Script::Replay {
                            ops: self.replay_ops(thread),
                            next: 0,
                        };
                        Lane::new(script, clock.clone())
                    })
                    .collect()
            }
        }
    }

    /// The operations one thread replays: deterministic, different for every thread.
    fn replay_ops(self, thread: u64) -> Box<[Op]> {
        let workload = Workload::ALL
            .iter()
            .position(|&w| w == self)
            .expect("every workload is in ALL") as u64;
        // Seeded: the same table in every run.
        let mut rng = fastrand::Rng::with_seed((workload << 32) | thread);
        let keys = self.keys();
        (0..REPLAY_LEN)
            .map(|_| match self {
                Workload::HotKey => Op::crash(0),
                Workload::Uniform1k | Workload::Uniform100k => Op::crash(rng.u64(..keys)),
                Workload::Gate => {
                    let key = rng.u64(..keys);
                    if rng.u64(..100) == 0 {
                        Op::crash(key)
                    } else {
                        Op::status(key)
                    }
                }
                Workload::BrokerGate => {
                    if rng.u64(..BROKER_CRASH_EVERY) == 0 {
                        let looping = rng.u64(..BROKER_LOOPING);
                        Op::crash(looping * (BROKER_KEYS / BROKER_LOOPING))
                    } else {
                        Op::status(rng.u64(..keys))
                    }
                }
                Workload::RefusedGate => {
                    if rng.u64(..REFUSED_CRASH_EVERY) == 0 {
                        Op::crash(0)
                    } else {
                        Op::status(0)
                    }
                }
                Workload::Churn | Workload::CrashStorm => {
                    unreachable!("churn and crash-storm draw from counters, they replay nothing")
                }
            })
            .collect()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).expect("the bench window fits 584 years")
}

/// What a store answered to one operation; the benches black-box it, the agreement check
/// compares it between stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Crash(BackendRecoveryDecision),
    Status(BackendRecoveryStatus),
    /// Entries removed by a `purge_expired` of [`lifecycle`] (lanes do not report theirs).
    Purged(usize),
}

/// What a fresh `S` answers on one thread over three budget windows of `workload`.
pub(crate) fn answers<S: Store>(workload: Workload) -> Vec<Answer> {
    let store = S::with_policy(policy());
    let mut lanes = workload.prepare(&store, 1);
    let mut answers = Vec::new();
    lanes[0].run(&store, 3 * workload.steps_per_window(), |answer| {
        answers.push(answer);
    });
    answers
}

/// What a fresh `S` answers to what the lanes cannot show: a crash after a success (no lane
/// touches a key again once it succeeded) and the counts of purges.
pub(crate) fn lifecycle<S: Store>() -> Vec<Answer> {
    let store = S::with_policy(policy());
    let t0 = Instant::now();
    let at = |seconds: u64| t0 + Duration::from_secs(seconds);
    let (spent, old, young) = (1, 2, 3);
    let mut answers = Vec::new();
    let mut crash = |key, now| answers.push(Answer::Crash(store.record_crash(key, now)));
    crash(spent, at(0));
    crash(spent, at(1));
    crash(old, at(0));
    crash(young, at(20));
    answers.push(Answer::Status(store.status(&spent, at(1))));
    store.record_success(&spent);
    answers.push(Answer::Status(store.status(&spent, at(1))));
    answers.push(Answer::Crash(store.record_crash(spent, at(2))));
    // At 40 s the windows of `old` (from 0 s) and `spent` (from 2 s) have closed, that of
    // `young` (from 20 s) has not: two purged, then none.
    answers.push(Answer::Purged(store.purge_expired(at(40))));
    answers.push(Answer::Purged(store.purge_expired(at(40))));
    answers.push(Answer::Status(store.status(&young, at(40))));
    answers.push(Answer::Crash(store.record_crash(old, at(41))));
    answers
}

/// What a fresh `S` answers to reports by incarnation that crash-storm's lanes on one thread
/// never make: duplicates, a stale report, and a new window.
pub(crate) fn incarnations<S: Store>() -> Vec<Answer> {
    let store = S::with_policy(policy());
    let t0 = Instant::now();
    let at = |millis: u64| t0 + Duration::from_millis(millis);
    let mut answers = Vec::new();
    let mut report = |incarnation, now| {
        answers.push(Answer::Crash(store.record_crash_of(7, incarnation, now)));
    };
    report(1, at(0));
    report(1, at(10));
    report(2, at(1_000));
    report(2, at(1_500));
    report(1, at(2_000));
    report(3, at(40_000));
    report(3, at(40_100));
    report(2, at(40_200));
    answers.push(Answer::Status(store.status(&7, at(40_300))));
    answers
}

/// Panics unless `theirs` (the answers of the store `name`) equal `ours`, naming the first
/// difference. Both come from the same operations, so they have the same length.
pub(crate) fn assert_agree(name: &str, what: &str, ours: &[Answer], theirs: &[Answer]) {
    if let Some(at) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{name} disagrees with ours on {what} at answer {at}: {:?} against ours {:?}",
            theirs[at], ours[at],
        );
    }
}

/// One replayed operation: a crash or a gate check of a key, packed in a word to halve the
/// table's memory traffic.
#[derive(Clone, Copy, Debug)]
struct Op(u64);

impl Op {
    const STATUS: u64 = 1 << 63;

    fn crash(key: Key) -> Self {
        Op(key)
    }

    fn status(key: Key) -> Self {
        Op(key | Op::STATUS)
    }

    fn is_status(self) -> bool {
        self.0 & Op::STATUS != 0
    }

    fn key(self) -> Key {
        self.0 & !Op::STATUS
    }
}

/// Where a lane's keys come from.
#[derive(Clone, Debug)]
enum Script {
    /// A precomputed table of operations, replayed in a loop.
    Replay { ops: Box<[Op]>, next: usize },
    /// Fresh keys from a counter (a sequence that never repeats cannot be a table): crash
    /// `next_fresh`, crash `next_fresh - live / 2` again, forget `next_fresh - live` (or check
    /// it, if abandoned); purge when `next_fresh % CHURN_PURGE_PERIOD == purge_phase`.
    Churn {
        prefix: u64,
        next_fresh: u64,
        live: u64,
        purge_phase: u64,
    },
    /// crash-storm: report the death of incarnation `next_incarnation` of key 0, then move on
    /// to the next.
    Storm { next_incarnation: u64 },
}

/// One thread's share of a workload: its operations and its clock.
#[derive(Debug)]
pub(crate) struct Lane {
    script: Script,
    clock: Clock,
    now: Instant,
    steps_to_tick: u32,
}

impl Lane {
    fn new(script: Script, mut clock: Clock) -> Self {
        Lane {
            script,
            now: clock.next_instant(),
            clock,
            steps_to_tick: TICK_STEPS,
        }
    }

    /// Runs `steps` steps against `store`, handing every answer to `observe`.
    pub(crate) fn run<S: Store>(&mut self, store: &S, steps: u64, mut observe: impl FnMut(Answer)) {
        for _ in 0..steps {
            self.steps_to_tick -= 1;
            if self.steps_to_tick == 0 {
                self.steps_to_tick = TICK_STEPS;
                self.now = self.clock.next_instant();
            }
            let now = self.now;
            match &mut self.script {
                Script::Replay { ops, next } => {
                    let op = ops[*next];
                    // REPLAY_LEN is a power of two.
                    *next = (*next + 1) & (REPLAY_LEN - 1);
                    if op.is_status() {
                        observe(Answer::Status(store.status(&op.key(), now)));
                    } else {
                        observe(Answer::Crash(store.record_crash(op.key(), now)));
                    }
                }
                Script::Churn {
                    prefix,
                    next_fresh,
                    live,
                    purge_phase,
                } => {
                    let fresh = *next_fresh;
                    *next_fresh += 1;
                    observe(Answer::Crash(store.record_crash(*prefix | fresh, now)));
                    let middle_aged = *prefix | (fresh - *live / 2);
                    observe(Answer::Crash(store.record_crash(middle_aged, now)));
                    let oldest = fresh - *live;
                    if oldest % CHURN_ABANDONED_EVERY == 0 {
                        observe(Answer::Status(store.status(&(*prefix | oldest), now)));
                    } else {
                        store.record_success(&(*prefix | oldest));
                    }
                    if fresh % CHURN_PURGE_PERIOD == *purge_phase {
                        // Not an element of the throughput, but timed: its cost is spread over
                        // the steps between purges. Not compared either: ours also purges by
                        // itself, so the counts differ while the decisions do not.
                        black_box(store.purge_expired(now));
                    }
                }
                Script::Storm { next_incarnation } => {
                    let incarnation = *next_incarnation;
                    *next_incarnation += 1;
                    observe(Answer::Crash(store.record_crash_of(0, incarnation, now)));
                }
            }
        }
    }
}
