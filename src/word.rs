//! One backend's state as a packed 128-bit word, and the pure transitions over it.
//!
//! The transitions are where the behaviour lives: plain functions of `(word, now, rules)`,
//! tested here without threads. `cell.rs` adds only the compare-and-swap that applies them, so
//! a policy bug and a concurrency bug are never in the same function.
//!
//! A word has two halves, updated together by one compare-and-swap:
//!
//! - the **budget** (the spec's entry): crashes counted in the open window and the window's
//!   start. `n` = crashes counted:
//!
//!   ```text
//!   vacant (n = 0) --crash--> n = 1, window opens at now          -> Retry(attempt 1)
//!   n >= 1, window open --crash--> n + 1 (saturating, see Budget) -> Retry(attempt n + 1)
//!                                      while n + 1 <= retries per window, else Refuse(rest)
//!   n >= 1, window closed --crash--> n = 1, window opens at now    -> Retry(attempt 1)
//!   ```
//!
//!   A window is closed once `now - window_start >= budget_window`; a `now` before the window
//!   start counts as zero elapsed, as in the spec. The budget alone decides every crash.
//!
//! - the **launch**: who may launch the backend, and from when. One tag and one tick:
//!
//!   ```text
//!   Idle(t)     no launch pending; t = the last launch        --claim--> Claimed(now): Launch
//!   Claimed(t)  a launch won at t, not yet reported           --claim--> Wait(t + timeout - now)
//!               (lapses at t + launch_timeout)                  after the lapse: Claimed(now)
//!   Backoff(d)  a crash was granted a retry: launch from d    --claim--> Wait(d - now), then Launch
//!   Refused(d)  a crash was refused: no launch before d       --claim--> Refuse(d - now), then Launch
//!   any --crash--> Backoff(now + retry_after) or Refused(now + retry_after), from the decision
//!   Claimed(t) --success--> Idle(t) (or the key is forgotten, if past its probation)
//!   ```
//!
//!   The tick never moves back: every transition keeps the later of the old tick and its own, so
//!   an instant that arrives out of order cannot shorten a backoff or revive a lapsed claim, and
//!   the entry's purge bound (`purgeable_from`) never moves earlier without the write guard.

use std::time::Duration;

use crate::decision::{
    BackendLaunchDecision, BackendRecoveryDecision, BackendRecoveryRefusalReason,
    BackendRecoveryStatus,
};
use crate::epoch::{MAX_TICK, TICK_BITS};
use crate::policy::{BackendRecoveryPolicy, MAX_RETRIES_PER_WINDOW};

/// A policy as the transitions apply it: the policy, and its durations in ticks, computed once.
/// Why: a crash compares the time since its window opened with the window; as `Duration`s,
/// that would build one from nanoseconds (a division) per crash, which shows on short crash
/// paths.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    policy: BackendRecoveryPolicy,
    /// The budget window in nanoseconds, or `u64::MAX` for a window at least that long: then no
    /// tick difference (at most [`MAX_TICK`]) reaches it, as no `Duration` of one reaches the
    /// window itself, so comparing ticks decides exactly as comparing durations.
    window: u64,
    /// The launch timeout in ticks (at most the window, by the policy's normalisation).
    launch_timeout: u64,
    /// The probation in ticks, saturating.
    min_uptime: u64,
}

/// `duration` in ticks, saturating at `u64::MAX`.
#[inline]
fn ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Rules {
    pub(crate) fn new(policy: BackendRecoveryPolicy) -> Self {
        Rules {
            policy,
            window: ticks(policy.budget_window),
            launch_timeout: ticks(policy.launch_timeout),
            min_uptime: ticks(policy.min_uptime),
        }
    }

    /// What is left of the window `elapsed` ticks after it opened; zero once it has closed.
    #[inline]
    fn remaining(&self, elapsed: u64) -> Duration {
        if self.window == u64::MAX {
            // Possibly longer than u64 nanoseconds: only `Duration` holds it.
            self.budget_window
                .saturating_sub(Duration::from_nanos(elapsed))
        } else {
            Duration::from_nanos(self.window.saturating_sub(elapsed))
        }
    }
}

impl std::ops::Deref for Rules {
    type Target = BackendRecoveryPolicy;

    fn deref(&self) -> &BackendRecoveryPolicy {
        &self.policy
    }
}

/// The budget half: the spec's entry.
///
/// | bits   | field          | meaning                                                          |
/// |--------|----------------|------------------------------------------------------------------|
/// | 0..4   | `crashes`      | crashes counted in the open window; 0 = no window (vacant)       |
/// | 4..64  | `window_start` | tick (ns since the state's epoch) of the crash that opened it    |
///
/// `crashes` holds up to 15 but saturates at [`count_ceiling`], one past the retries a window
/// allows: beyond that every crash is refused alike, so a larger count would change no decision.
/// Saturating early also means that once a backend is refused, further crash reports leave the
/// word unchanged and cost a load, not a write.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Budget(u64);

const CRASH_BITS: u32 = 64 - TICK_BITS;
const CRASH_MASK: u64 = (1 << CRASH_BITS) - 1;
const _: () = assert!(
    (MAX_RETRIES_PER_WINDOW as u64) < CRASH_MASK,
    "the crash count must fit its bits"
);

/// The largest crash count a budget stores for `policy`; see [`Budget`].
#[inline]
fn count_ceiling(policy: &BackendRecoveryPolicy) -> u32 {
    policy.retries_per_window.min(MAX_RETRIES_PER_WINDOW) + 1
}

impl Budget {
    #[inline]
    fn new(window_start: u64, crashes: u32) -> Self {
        debug_assert!(window_start <= MAX_TICK);
        debug_assert!(crashes <= MAX_RETRIES_PER_WINDOW + 1);
        Budget((window_start << CRASH_BITS) | u64::from(crashes))
    }

    #[inline]
    fn crashes(self) -> u32 {
        // Masked to CRASH_BITS, so the cast cannot truncate.
        (self.0 & CRASH_MASK) as u32
    }

    #[inline]
    fn window_start(self) -> u64 {
        self.0 >> CRASH_BITS
    }

    /// `(window_start, crashes, ticks elapsed since the start)` if a window is open at `now`;
    /// `None` if vacant or closed.
    #[inline]
    fn open_window(self, now: u64, rules: &Rules) -> Option<(u64, u32, u64)> {
        let crashes = self.crashes();
        let start = self.window_start();
        // Saturating: a `now` before the start counts as no time elapsed, as in the spec.
        let elapsed = now.saturating_sub(start);
        (crashes > 0 && elapsed < rules.window).then_some((start, crashes, elapsed))
    }
}

/// What the launch half says; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Idle,
    Claimed,
    Backoff,
    Refused,
}

/// The launch half: a [`Stage`] in bits 0..2 and a tick in bits 2..62.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Launch(u64);

impl Launch {
    #[inline]
    fn new(stage: Stage, tick: u64) -> Self {
        debug_assert!(tick <= MAX_TICK);
        Launch((tick << 2) | stage as u64)
    }

    #[inline]
    fn stage(self) -> Stage {
        match self.0 & 0b11 {
            0 => Stage::Idle,
            1 => Stage::Claimed,
            2 => Stage::Backoff,
            _ => Stage::Refused,
        }
    }

    #[inline]
    fn tick(self) -> u64 {
        self.0 >> 2
    }

    /// `stage` at `tick`, or at the current tick if that is later (see the module docs).
    #[inline]
    fn then(self, stage: Stage, tick: u64) -> Self {
        Launch::new(stage, tick.max(self.tick()))
    }
}

/// The whole state of one backend: see the module docs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word {
    budget: Budget,
    launch: Launch,
}

impl Word {
    /// No crash recorded, no launch claimed: decides like a key the state has never seen.
    pub(crate) const VACANT: Word = Word {
        budget: Budget(0),
        launch: Launch(0),
    };

    /// The 128 bits the atomic cell stores: the budget in the low half.
    #[inline]
    pub(crate) fn to_bits(self) -> u128 {
        (u128::from(self.launch.0) << 64) | u128::from(self.budget.0)
    }

    /// The inverse of [`to_bits`](Self::to_bits).
    #[inline]
    pub(crate) fn from_bits(bits: u128) -> Self {
        Word {
            // Each half is 64 bits of the 128: the casts keep exactly those.
            budget: Budget(bits as u64),
            launch: Launch((bits >> 64) as u64),
        }
    }

    /// Crashes counted in the window, whether or not it is still open.
    #[inline]
    pub(crate) fn crashes(self) -> u32 {
        self.budget.crashes()
    }

    /// The launch half's stage.
    #[cfg(test)]
    pub(crate) fn stage(self) -> Stage {
        self.launch.stage()
    }

    /// Whether a crash may update this word without the table's write guard: not the mark of
    /// a removed cell, and not a word with no crash counted, vacant (only ever seen under the
    /// write guard that inserts it) or a tombstone: reviving one may open a window earlier than
    /// its shard's purge bound, which only the write guard may lower (see `Table::retain`).
    #[inline]
    pub(crate) fn crashable_without_write_guard(self) -> bool {
        self != RETIRED && self.crashes() != 0
    }

    /// Whether a launch may be claimed on this word without the write guard: any live word. A
    /// claim moves only the launch tick, and only later, so it never lowers a purge bound.
    #[inline]
    pub(crate) fn claimable_without_write_guard(self) -> bool {
        self != RETIRED
    }

    /// The tick from which the entry may be purged: it expires `age` (at least a budget window)
    /// after this, when its window has closed and its launch half has settled: a pending claim
    /// lapsed, a backoff or refusal ended. Each of those ends at most a budget window after
    /// its tick, so the launch half counts from its end less a window. Without a claim and with
    /// a backoff shorter than the window, that is the window's start, as in the spec.
    ///
    /// Settling a claim moves it earlier (the claim's lapse gives way to the crash's backoff, or
    /// to the launch's success); the table lowers its shard's bound after such an update
    /// (`Table::read_update`, `Table::remove_if`).
    #[inline]
    pub(crate) fn purgeable_from(self, rules: &Rules) -> u64 {
        let tick = self.launch.tick();
        let settled = match self.launch.stage() {
            Stage::Claimed => tick.saturating_add(rules.launch_timeout),
            Stage::Idle | Stage::Backoff | Stage::Refused => tick,
        };
        self.budget
            .window_start()
            .max(settled.saturating_sub(rules.window))
    }

    /// The same word with no crash counted and no launch pending: decides like a vacant word,
    /// but keeps its ticks, so the entry expires when the one it stood for would have.
    pub(crate) fn forgotten(self) -> Self {
        Word {
            budget: Budget::new(self.budget.window_start(), 0),
            launch: Launch::new(Stage::Idle, self.launch.tick()),
        }
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("window_start", &self.budget.window_start())
            .field("crashes", &self.budget.crashes())
            .field("stage", &self.launch.stage())
            .field("launch_tick", &self.launch.tick())
            .finish()
    }
}

/// The word of a cell removed from the table: every bit set, which no live word has (a launch
/// tick is at most [`MAX_TICK`]).
pub(crate) const RETIRED: Word = Word {
    budget: Budget(u64::MAX),
    launch: Launch(u64::MAX),
};
const _: () = assert!((MAX_TICK << 2) | 0b11 != u64::MAX);

/// Time from `start` to `now`; zero if `now` is earlier, as the spec's `elapsed_since`.
#[inline]
fn elapsed(start: u64, now: u64) -> Duration {
    Duration::from_nanos(now.saturating_sub(start))
}

/// `now + delay` as a tick, saturating at [`MAX_TICK`].
#[inline]
fn deadline(now: u64, delay: Duration) -> u64 {
    now.saturating_add(ticks(delay)).min(MAX_TICK)
}

/// The spec's `record_crash` as a pure function: the word after a crash at `now`, and the answer.
/// `jitter_seed` is the key's [`jitter_seed`](crate::jitter_seed), or anything when the policy
/// has no jitter. The launch half follows the decision: a retry may launch from the end of its
/// backoff, a refusal not before the end of the window.
#[inline]
pub(crate) fn crash(
    word: Word,
    now: u64,
    rules: &Rules,
    jitter_seed: u64,
) -> (Word, BackendRecoveryDecision) {
    let (start, crashes, elapsed) = match word.budget.open_window(now, rules) {
        Some((start, crashes, elapsed)) => {
            (start, (crashes + 1).min(count_ceiling(rules)), elapsed)
        }
        None => (now, 1, 0),
    };
    let (decision, stage) = if crashes <= rules.retries_per_window {
        let retry = BackendRecoveryDecision::Retry {
            retry_after: rules.retry_delay(crashes, jitter_seed),
            attempt: crashes,
        };
        (retry, Stage::Backoff)
    } else {
        let refuse = BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: rules.remaining(elapsed),
        };
        (refuse, Stage::Refused)
    };
    let word = Word {
        budget: Budget::new(start, crashes),
        launch: word
            .launch
            .then(stage, deadline(now, decision.retry_after())),
    };
    (word, decision)
}

/// What a gate check at `now` reports for `word`: `Unavailable` while the budget is spent,
/// `BackingOff` while a granted retry's backoff runs, else what the budget says.
#[inline]
pub(crate) fn status(word: Word, now: u64, rules: &Rules) -> BackendRecoveryStatus {
    let open = word.budget.open_window(now, rules);
    if let Some(retry_after) = spent(open, rules) {
        return BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after,
        };
    }
    let crashes_in_window = open.map_or(0, |(_, crashes, _)| crashes);
    if word.launch.stage() == Stage::Backoff && now < word.launch.tick() {
        return BackendRecoveryStatus::BackingOff {
            crashes_in_window,
            retry_after: elapsed(now, word.launch.tick()),
        };
    }
    match open {
        Some((_, crashes, elapsed)) => BackendRecoveryStatus::Recovering {
            crashes_in_window: crashes,
            window_remaining: rules.remaining(elapsed),
        },
        None => BackendRecoveryStatus::Healthy,
    }
}

/// The rest of the window if `open` (from [`Budget::open_window`]) has spent its retries.
#[inline]
fn spent(open: Option<(u64, u32, u64)>, rules: &Rules) -> Option<Duration> {
    let (_, crashes, elapsed) = open?;
    (crashes > rules.retries_per_window).then(|| rules.remaining(elapsed))
}

/// A claim of the right to launch the backend at `now`: the word after it and the answer.
///
/// Refused while the budget is spent or a refusal's deadline has not passed; told to wait while
/// a backoff runs or another claim is pending (until it lapses); else the claim is won, and the
/// launch half records it.
#[inline]
pub(crate) fn claim(word: Word, now: u64, rules: &Rules) -> (Word, BackendLaunchDecision) {
    let refuse = |retry_after| BackendLaunchDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after,
    };
    if let Some(retry_after) = spent(word.budget.open_window(now, rules), rules) {
        return (word, refuse(retry_after));
    }
    let tick = word.launch.tick();
    let pending_until = match word.launch.stage() {
        Stage::Idle => None,
        Stage::Claimed => Some(tick.saturating_add(rules.launch_timeout)),
        Stage::Backoff | Stage::Refused => Some(tick),
    };
    match pending_until {
        Some(until) if now < until => {
            let retry_after = elapsed(now, until);
            let answer = if word.launch.stage() == Stage::Refused {
                refuse(retry_after)
            } else {
                BackendLaunchDecision::Wait { retry_after }
            };
            (word, answer)
        }
        _ => {
            let word = Word {
                launch: word.launch.then(Stage::Claimed, now),
                ..word
            };
            (word, BackendLaunchDecision::Launch)
        }
    }
}

/// A success reported at `now`: `(word, true)` if the key's crashes are to be forgotten (the
/// caller removes the entry, the word unchanged); else the word with a pending claim settled
/// as a launch that is running, and `false`.
///
/// Forgotten unless the policy sets a probation (`min_uptime`) and the backend has not been up
/// that long: `now` is less than `min_uptime` after the launch tick (the last claim won, or the
/// end of the backoff or refusal no launch could start before). A key with no crash in an open
/// window has nothing to keep and is always forgotten.
#[inline]
pub(crate) fn succeed(word: Word, now: u64, rules: &Rules) -> (Word, bool) {
    let up = now.saturating_sub(word.launch.tick());
    let open = word.budget.open_window(now, rules).is_some();
    if rules.min_uptime == 0 || !open || up >= rules.min_uptime {
        return (word, true);
    }
    let launch = match word.launch.stage() {
        Stage::Claimed => Launch::new(Stage::Idle, word.launch.tick()),
        _ => word.launch,
    };
    (Word { launch, ..word }, false)
}

/// Whether `word`'s entry became purgeable at least `after` before `now`. With `after` at least
/// the budget window (which bounds the launch timeout), an expired word decides exactly like a
/// missing one at `now` and later.
pub(crate) fn expired(word: Word, now: u64, after: Duration, rules: &Rules) -> bool {
    elapsed(word.purgeable_from(rules), now) >= after
}

/// How long until an entry purgeable from tick `from` expires at age `after`.
pub(crate) fn time_until_expired(from: u64, now: u64, after: Duration) -> Duration {
    after.saturating_sub(elapsed(from, now))
}

#[cfg(test)]
mod tests;
