//! The spec, sequentially: one independent model that every test of the crate compares with.
//!
//! Shared by both test suites: the loom models use it through this crate (`Scenario` replays
//! every sequential order on it), and the main crate's integration tests include this very file
//! (`#[path = ...] mod reference;` in `tests/it/main.rs`) for the differential property tests
//! and the linearizability checker. So it must compile in both places: it depends on nothing
//! but std and the crate's *public* types (policy, decisions, statuses, counters).
//!
//! It follows `spec/recovery.rs` (an entry per key with a window start and a crash count,
//! refreshed when its window has closed) with `Instant`s and an ordered map: no ticks, no packed
//! word, no atomics, no shards. It shares no code with the crate, so agreeing with it checks
//! spec parity. Everything beyond the spec is written from the crate's documentation, not its
//! code:
//!
//! - the policy ([`BackendRecoveryPolicy`]'s public fields), clamped as its docs say a state
//!   clamps it: zero durations to 1 ms, at most [`MAX_RETRIES_PER_WINDOW`] retries, a growth
//!   factor of at least 1, jitter of at most 1;
//! - retries per window: the first `retries_per_window` crashes of a window are each granted a
//!   `Retry` with `attempt` 1, 2, ...; any further crash is refused with the rest of the window;
//! - the backoff schedule of `retry_delay`'s docs, recomputed here: `retry_backoff ×
//!   factor^(n-1)` in integer nanoseconds, rounded down at each step and at most the cap, plus
//!   jitter `delay × jitter × u` with `u` a 32-bit fraction drawn by splitmix64's finaliser from
//!   the key's hash (std's `DefaultHasher::new()`) and the attempt, the cap still bounding the
//!   sum;
//! - the gate check: `Healthy` with no open window, `Recovering` while the window still has a
//!   retry to grant, `Unavailable` with the rest of the window after that;
//! - reports by incarnation ([`record_crash_of`](ReferenceModel::record_crash_of)): the first
//!   report of an incarnation newer than the last one counted for the key counts as a crash;
//!   any other report is a duplicate and replays the counted decision, its retry-after shortened
//!   by the time since the counted report. A success leaves such a key as a tombstone (no crash
//!   in the window, incarnation remembered) until its window would have closed;
//! - [`purge_expired`](ReferenceModel::purge_expired): removes the entries whose window has
//!   closed, tombstones included (and with them the incarnation they remember, as documented);
//! - a capacity ([`with_max_entries`](ReferenceModel::with_max_entries)): a crash of an
//!   untracked key in a full state first purges the entries whose window started at least two
//!   budget windows ago; if that frees no place it is refused with `CapacityExhausted`,
//!   carrying the time until the first entry could be purged so, or the budget window if there
//!   is none. Tracked keys keep their exact behaviour;
//! - the counters of `metrics()`;
//! - launches ([`claim_launch`](ReferenceModel::claim_launch)): each entry also has a launch
//!   stage and instant. A crash sets them from its decision: a `Retry` to "backing off until
//!   now + retry-after", a `Refuse` to "refused until now + retry-after", keeping the later of
//!   that instant and the one before. A claim is refused while the budget is spent or a
//!   refusal runs; told to wait while a backoff runs or another claim (won less than the
//!   launch timeout ago) is pending; else it is won, and the stage becomes "claimed at now" (or
//!   at the instant before, if later). A key without an entry is inserted by its claim, with no
//!   window. The gate check answers `BackingOff` while a backoff runs (unless the budget is
//!   spent);
//! - probation ([`record_success_at`](ReferenceModel::record_success_at)): with a `min_uptime`,
//!   a success less than that after the launch instant (the claim, or the end of the backoff
//!   or refusal) keeps a key that has crashes in an open window, settling a claim to "running";
//! - purging with launches: an entry is purged at age `A` once its window started at least
//!   `A` ago and its launch has settled at least `A` less one budget window ago (a claim settles
//!   a launch timeout after its instant, anything else at its instant).
//!
//! It never purges by itself: the crate's automatic purge starts only once an insert brings the
//! count to 1024 entries (`SLACK` in the crate's `occupancy.rs`), and an automatic purge changes
//! no decision, only `len()` and `entries_purged`, which the tests that reach it do not compare.
//!
//! The model is `Clone + Eq + Hash` so that a linearizability search can remember the states it
//! has refuted. To keep equal states equal, a window's crash count stops one past its retries
//! (every later crash is refused alike, so a larger count would change no answer).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendCrashReport, BackendLaunchDecision, BackendRecoveryDecision, BackendRecoveryMetrics,
    BackendRecoveryPolicy, BackendRecoveryRefusalReason, BackendRecoveryStatus, BackoffGrowth,
    MAX_RETRIES_PER_WINDOW,
};

/// The single-threaded state, as the broker kept it behind its global mutex, with everything
/// the crate documents beyond the spec. Keys are any `Hash + Ord` type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceModel<K> {
    /// Clamped into range at construction, as a state clamps its policy.
    policy: BackendRecoveryPolicy,
    entries: BTreeMap<K, Entry>,
    /// `usize::MAX` when there is no cap.
    max_entries: usize,
    metrics: BackendRecoveryMetrics,
}

/// One tracked key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry {
    /// `None` for a key inserted by a launch claim, which has had no window yet.
    window_started_at: Option<Instant>,
    /// Crashes in the window, at most one past the retries; 0 for a tombstone, which has no
    /// window but remembers its last counted report.
    crashes_in_window: u32,
    last_report: Option<CountedReport>,
    stage: Stage,
    /// The launch instant of the stage; `None` before any.
    launch_at: Option<Instant>,
}

/// Who may launch a tracked key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// Nothing pending: a claim wins.
    Idle,
    /// Won at `launch_at`; pending until the launch timeout has passed.
    Claimed,
    /// A retry was granted: no launch before `launch_at`.
    Backoff,
    /// Refused: no launch before `launch_at`.
    Refused,
}

/// The last report counted by incarnation for a key, and what it was answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CountedReport {
    incarnation: u64,
    at: Instant,
    decision: BackendRecoveryDecision,
}

impl<K: Hash + Ord> ReferenceModel<K> {
    /// An empty state with `policy`, clamped as the crate documents.
    pub fn new(policy: BackendRecoveryPolicy) -> Self {
        ReferenceModel {
            policy: clamped(policy),
            entries: BTreeMap::new(),
            max_entries: usize::MAX,
            metrics: BackendRecoveryMetrics::default(),
        }
    }

    /// The same state, holding at most `max_entries` keys.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The spec's `record_crash`; a new key in a full state may be refused for capacity.
    pub fn record_crash(&mut self, key: K, now: Instant) -> BackendRecoveryDecision {
        let (decision, _) = self.crash(key, now);
        self.count(&decision);
        decision
    }

    /// A crash report for `incarnation`: counted as [`record_crash`](Self::record_crash) if the
    /// incarnation is newer than the last one counted for `key`, else a duplicate that replays
    /// the counted decision at `now`.
    pub fn record_crash_of(
        &mut self,
        key: K,
        incarnation: u64,
        now: Instant,
    ) -> BackendCrashReport {
        let counted = self
            .entries
            .get(&key)
            .and_then(|entry| entry.last_report.as_ref())
            .filter(|counted| incarnation <= counted.incarnation);
        if let Some(counted) = counted {
            let replayed = counted.replay(now);
            self.metrics.duplicates_coalesced += 1;
            return BackendCrashReport {
                decision: replayed,
                counted: false,
            };
        }
        let (decision, entry) = self.crash(key, now);
        let counted = entry.is_some();
        if let Some(entry) = entry {
            entry.last_report = Some(CountedReport {
                incarnation,
                at: now,
                decision: decision.clone(),
            });
        }
        self.count(&decision);
        BackendCrashReport { decision, counted }
    }

    /// The spec's `record_success`: [`record_success_at`](Self::record_success_at) now (the
    /// instant matters only with a probation).
    pub fn record_success(&mut self, key: &K) {
        self.record_success_at(key, Instant::now());
    }

    /// A success at `now`: forgets the key (a key reported by incarnation stays as a tombstone
    /// remembering that incarnation), unless a probation keeps its crashes. Counted whether or
    /// not it was tracked. Returns whether the crashes were forgotten.
    pub fn record_success_at(&mut self, key: &K, now: Instant) -> bool {
        self.metrics.successes += 1;
        let min_uptime = self.policy.min_uptime;
        let Some(entry) = self.entries.get_mut(key) else {
            return true;
        };
        let up = entry
            .launch_at
            .map_or(Duration::MAX, |at| elapsed_since(at, now));
        let open = entry.open_window(now, self.policy.budget_window).is_some();
        if !min_uptime.is_zero() && open && up < min_uptime {
            if entry.stage == Stage::Claimed {
                entry.stage = Stage::Idle;
            }
            return false;
        }
        if entry.last_report.is_some() {
            entry.crashes_in_window = 0;
            entry.stage = Stage::Idle;
        } else {
            self.entries.remove(key);
        }
        true
    }

    /// A launch claim at `now`: `Launch` for exactly one caller per launch the state allows.
    pub fn claim_launch(&mut self, key: K, now: Instant) -> BackendLaunchDecision {
        let refuse = |retry_after| BackendLaunchDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after,
        };
        if !self.entries.contains_key(&key) {
            if let Err(wait) = self.make_room(now) {
                return BackendLaunchDecision::Refuse {
                    reason: BackendRecoveryRefusalReason::CapacityExhausted,
                    retry_after: wait,
                };
            }
            let entry = Entry {
                window_started_at: None,
                crashes_in_window: 0,
                last_report: None,
                stage: Stage::Claimed,
                launch_at: Some(now),
            };
            self.entries.insert(key, entry);
            return BackendLaunchDecision::Launch;
        }
        let policy = self.policy;
        let entry = self.entries.get_mut(&key).expect("tracked");
        if let Some((started_at, crashes)) = entry.open_window(now, policy.budget_window)
            && crashes > policy.retries_per_window
        {
            return refuse(policy.budget_window - elapsed_since(started_at, now));
        }
        let until = match (entry.stage, entry.launch_at) {
            (Stage::Claimed, Some(at)) => Some(later(at, policy.launch_timeout)),
            (Stage::Backoff | Stage::Refused, Some(at)) => Some(at),
            _ => None,
        };
        if let Some(until) = until
            && now < until
        {
            let retry_after = until - now;
            return if entry.stage == Stage::Refused {
                refuse(retry_after)
            } else {
                BackendLaunchDecision::Wait { retry_after }
            };
        }
        entry.stage = Stage::Claimed;
        entry.launch_at = entry.launch_at.max(Some(now));
        BackendLaunchDecision::Launch
    }

    /// `purge_expired`: removes the entries whose window has closed at `now`; how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        self.purge(now, self.policy.budget_window)
    }

    /// What a gate check at `now` reports: what the next crash at `now` would be told, or that
    /// a granted retry's backoff still runs.
    pub fn status(&self, key: &K, now: Instant) -> BackendRecoveryStatus {
        let window = self.policy.budget_window;
        let Some(entry) = self.entries.get(key) else {
            return BackendRecoveryStatus::Healthy;
        };
        let open = entry.open_window(now, window);
        if let Some((started_at, crashes)) = open
            && crashes > self.policy.retries_per_window
        {
            return BackendRecoveryStatus::Unavailable {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: window - elapsed_since(started_at, now),
            };
        }
        if entry.stage == Stage::Backoff
            && let Some(until) = entry.launch_at
            && now < until
        {
            return BackendRecoveryStatus::BackingOff {
                crashes_in_window: open.map_or(0, |(_, crashes)| crashes),
                retry_after: until - now,
            };
        }
        match open {
            Some((started_at, crashes)) => BackendRecoveryStatus::Recovering {
                crashes_in_window: crashes,
                window_remaining: window - elapsed_since(started_at, now),
            },
            None => BackendRecoveryStatus::Healthy,
        }
    }

    /// Keys with an entry, closed windows and tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters `metrics()` would show.
    pub fn metrics(&self) -> BackendRecoveryMetrics {
        self.metrics
    }

    /// The spec's crash of `key` at `now`, uncounted: its decision, and its entry unless it was
    /// refused for capacity.
    fn crash(&mut self, key: K, now: Instant) -> (BackendRecoveryDecision, Option<&mut Entry>) {
        if !self.entries.contains_key(&key)
            && let Err(wait) = self.make_room(now)
        {
            let refusal = BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                retry_after: wait,
            };
            return (refusal, None);
        }
        let key_hash = if self.policy.jitter_per_mille == 0 {
            0
        } else {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish()
        };
        let policy = self.policy;
        let entry = self.entries.entry(key).or_insert(Entry {
            window_started_at: None,
            crashes_in_window: 0,
            last_report: None,
            stage: Stage::Idle,
            launch_at: None,
        });
        // No open window (a new key, a tombstone, or a window that has closed): this crash
        // opens one.
        if entry.open_window(now, policy.budget_window).is_none() {
            entry.window_started_at = Some(now);
            entry.crashes_in_window = 0;
        }
        let ceiling = policy.retries_per_window + 1;
        entry.crashes_in_window = ceiling.min(entry.crashes_in_window + 1);
        let nth = entry.crashes_in_window;
        let decision = if nth <= policy.retries_per_window {
            BackendRecoveryDecision::Retry {
                retry_after: scheduled_delay(&policy, key_hash, nth),
                attempt: nth,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: policy.budget_window
                    - elapsed_since(entry.window_started_at.expect("open"), now),
            }
        };
        entry.stage = if decision.is_retry() {
            Stage::Backoff
        } else {
            Stage::Refused
        };
        entry.launch_at = entry
            .launch_at
            .max(Some(later(now, decision.retry_after())));
        (decision, Some(entry))
    }

    /// `Ok` if a place is free for one more key, after purging the entries two windows old if
    /// the state is full; else how long until an entry could be purged so.
    fn make_room(&mut self, now: Instant) -> Result<(), Duration> {
        if self.entries.len() < self.max_entries {
            return Ok(());
        }
        let age = self.policy.budget_window.saturating_mul(2);
        self.purge(now, age);
        if self.entries.len() < self.max_entries {
            return Ok(());
        }
        let soonest = self
            .entries
            .values()
            .map(|entry| entry.purged_in(now, age, &self.policy))
            .min();
        Err(soonest.unwrap_or(self.policy.budget_window))
    }

    /// Removes the entries whose window started at least `age` before `now`; how many.
    fn purge(&mut self, now: Instant, age: Duration) -> usize {
        let policy = self.policy;
        let before = self.entries.len();
        self.entries
            .retain(|_, entry| !entry.purged_in(now, age, &policy).is_zero());
        let removed = before - self.entries.len();
        self.metrics.entries_purged += removed as u64;
        removed
    }

    fn count(&mut self, decision: &BackendRecoveryDecision) {
        let metrics = &mut self.metrics;
        match decision {
            BackendRecoveryDecision::Retry { .. } => metrics.retries_granted += 1,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                ..
            } => metrics.capacity_refusals += 1,
            BackendRecoveryDecision::Refuse { .. } => metrics.refusals += 1,
        }
    }
}

impl Entry {
    /// `(start, crashes)` of the entry's window if it is open at `now`.
    fn open_window(&self, now: Instant, budget_window: Duration) -> Option<(Instant, u32)> {
        let start = self.window_started_at?;
        let open = self.crashes_in_window > 0 && elapsed_since(start, now) < budget_window;
        open.then_some((start, self.crashes_in_window))
    }

    /// Time from `now` until a purge at age `age` removes the entry (zero: it would now): its
    /// window must have started `age` ago, and its launch settled `age` less a window ago.
    fn purged_in(&self, now: Instant, age: Duration, policy: &BackendRecoveryPolicy) -> Duration {
        let window = self.window_started_at.map_or(Duration::ZERO, |start| {
            age.saturating_sub(elapsed_since(start, now))
        });
        let settles = match (self.stage, self.launch_at) {
            (Stage::Claimed, Some(at)) => Some(later(at, policy.launch_timeout)),
            (Stage::Idle | Stage::Backoff | Stage::Refused, Some(at)) => Some(at),
            (_, None) => None,
        };
        let launch = settles.map_or(Duration::ZERO, |settles| {
            let due = later(settles, age.saturating_sub(policy.budget_window));
            due.saturating_duration_since(now)
        });
        window.max(launch)
    }
}

/// `at + delay`, or as far as an `Instant` here goes (decades past any test's instants).
fn later(at: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(40 * 366 * 24 * 3600);
    at.checked_add(delay.min(FAR))
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

impl CountedReport {
    /// What a duplicate reported at `now` is told: the same decision, pointing at the same
    /// moment, so its retry-after is shorter by the time since the counted report.
    fn replay(&self, now: Instant) -> BackendRecoveryDecision {
        let mut decision = self.decision.clone();
        let (BackendRecoveryDecision::Retry { retry_after, .. }
        | BackendRecoveryDecision::Refuse { retry_after, .. }) = &mut decision;
        *retry_after = retry_after.saturating_sub(elapsed_since(self.at, now));
        decision
    }
}

/// `policy` with every setting in the range its docs give: what a state does with it.
fn clamped(policy: BackendRecoveryPolicy) -> BackendRecoveryPolicy {
    let nonzero = |duration: Duration| {
        if duration.is_zero() {
            Duration::from_millis(1)
        } else {
            duration
        }
    };
    let mut clamped = policy;
    clamped.retry_backoff = nonzero(policy.retry_backoff);
    clamped.budget_window = nonzero(policy.budget_window);
    clamped.retries_per_window = MAX_RETRIES_PER_WINDOW.min(policy.retries_per_window);
    clamped.jitter_per_mille = 1000.min(policy.jitter_per_mille);
    clamped.launch_timeout = nonzero(policy.launch_timeout.min(clamped.budget_window));
    if let BackoffGrowth::Exponential {
        factor_per_mille,
        cap,
    } = policy.backoff_growth
    {
        clamped.backoff_growth = BackoffGrowth::Exponential {
            factor_per_mille: 1000.max(factor_per_mille),
            cap: nonzero(cap),
        };
    }
    clamped
}

/// The documented schedule: the delay before retry `attempt` (1-based) of a window, for a key
/// whose hash is `key_hash` (only read when the policy has jitter).
fn scheduled_delay(policy: &BackendRecoveryPolicy, key_hash: u64, attempt: u32) -> Duration {
    let mut nanos = policy.retry_backoff.as_nanos();
    let mut cap = u128::MAX;
    if let BackoffGrowth::Exponential {
        factor_per_mille,
        cap: growth_cap,
    } = policy.backoff_growth
    {
        cap = growth_cap.as_nanos();
        nanos = nanos.min(cap);
        // Each step stays at most the cap (< 2^95) times a factor below 2^32: no overflow.
        for _ in 1..attempt {
            nanos = (nanos * u128::from(factor_per_mille) / 1000).min(cap);
        }
    }
    if policy.jitter_per_mille > 0 {
        let mut z = key_hash ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let fraction = u128::from((z ^ (z >> 31)) >> 32);
        nanos += ((nanos * u128::from(policy.jitter_per_mille) / 1000) * fraction) >> 32;
    }
    let nanos = nanos.min(cap);
    match u64::try_from(nanos / 1_000_000_000) {
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

/// The spec's `elapsed_since`: zero when `now` is earlier than `started_at`.
fn elapsed_since(started_at: Instant, now: Instant) -> Duration {
    now.checked_duration_since(started_at)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> BackendRecoveryPolicy {
        BackendRecoveryPolicy::new(75 * MS, Duration::from_secs(1))
    }

    fn model() -> ReferenceModel<&'static str> {
        ReferenceModel::new(policy())
    }

    #[test]
    fn follows_the_spec_through_one_window_and_the_next() {
        let base = Instant::now();
        let mut reference = model();
        assert!(reference.record_crash("a", base).is_retry());
        assert_eq!(
            reference.status(&"a", base + 400 * MS),
            BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: 600 * MS,
            }
        );
        let refused = reference.record_crash("a", base + 400 * MS);
        assert_eq!(refused.retry_after(), 600 * MS);
        assert!(!reference.status(&"a", base + 999 * MS).is_available());
        assert_eq!(
            reference.status(&"a", base + Duration::from_secs(1)),
            BackendRecoveryStatus::Healthy
        );
        assert!(
            reference
                .record_crash("a", base + Duration::from_secs(1))
                .is_retry()
        );
        reference.record_success(&"a");
        assert!(reference.is_empty());
    }

    #[test]
    fn an_earlier_instant_counts_as_no_time_elapsed() {
        let base = Instant::now();
        let mut reference = model();
        reference.record_crash("a", base + Duration::from_secs(1));
        assert_eq!(
            reference.record_crash("a", base).retry_after(),
            Duration::from_secs(1)
        );
    }

    /// A multi-retry schedule: 100 ms doubling up to 1 s over five retries, then a refusal
    /// for the rest of the window; the gate says `Recovering` until the budget is spent.
    #[test]
    fn retries_per_window_follow_the_exponential_schedule() {
        let base = Instant::now();
        let mut policy = BackendRecoveryPolicy::new(100 * MS, Duration::from_secs(30));
        policy.retries_per_window = 5;
        policy.backoff_growth = BackoffGrowth::Exponential {
            factor_per_mille: 2000,
            cap: Duration::from_secs(1),
        };
        let mut reference = ReferenceModel::new(policy);
        for (attempt, delay) in (1..).zip([100, 200, 400, 800, 1000]) {
            let now = base + Duration::from_secs(u64::from(attempt));
            assert_eq!(
                reference.record_crash("a", now),
                BackendRecoveryDecision::Retry {
                    retry_after: delay * MS,
                    attempt,
                }
            );
            assert_eq!(
                reference.status(&"a", now).retry_after(),
                Some(delay * MS),
                "backing off"
            );
        }
        let now = base + Duration::from_secs(10);
        assert_eq!(
            reference.record_crash("a", now),
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: Duration::from_secs(21),
            }
        );
        assert!(!reference.status(&"a", now).is_available());
    }

    /// Jitter is fixed per key and attempt, within its fraction, and drawn from the key's hash
    /// with std's fixed keys, which the crate publishes as `jitter_seed`.
    #[test]
    fn jitter_is_deterministic_per_key_and_attempt() {
        let mut policy = BackendRecoveryPolicy::new(100 * MS, Duration::from_secs(30));
        policy.jitter_per_mille = 500;
        for key in ["a", "b", "indexer"] {
            let seed = backend_recovery::jitter_seed(&key);
            let first = ReferenceModel::new(policy).record_crash(key, Instant::now());
            assert_eq!(first.retry_after(), policy.retry_delay(1, seed));
            assert!(first.retry_after() >= 100 * MS && first.retry_after() < 150 * MS);
        }
    }

    #[test]
    fn settings_out_of_range_are_clamped() {
        let mut policy = BackendRecoveryPolicy::new(MS, MS);
        policy.retry_backoff = Duration::ZERO;
        policy.retries_per_window = 100;
        let mut reference = ReferenceModel::new(policy);
        let base = Instant::now();
        for attempt in 1..=MAX_RETRIES_PER_WINDOW {
            assert_eq!(
                reference.record_crash("a", base),
                BackendRecoveryDecision::Retry {
                    retry_after: MS,
                    attempt
                }
            );
        }
        assert!(!reference.record_crash("a", base).is_retry());
    }

    #[test]
    fn reports_of_one_incarnation_count_once_and_stale_ones_replay() {
        let base = Instant::now();
        let mut reference = model();
        assert!(reference.record_crash_of("a", 7, base).decision.is_retry());
        assert_eq!(
            reference.record_crash_of("a", 7, base + 30 * MS).decision,
            BackendRecoveryDecision::Retry {
                retry_after: 45 * MS,
                attempt: 1,
            }
        );
        let refused = reference.record_crash_of("a", 8, base + 400 * MS).decision;
        assert_eq!(refused.retry_after(), 600 * MS);
        // A stale report of 7 now replays 8's refusal.
        assert_eq!(
            reference
                .record_crash_of("a", 7, base + 500 * MS)
                .decision
                .retry_after(),
            500 * MS
        );
        let metrics = reference.metrics();
        assert_eq!(
            (
                metrics.retries_granted,
                metrics.refusals,
                metrics.duplicates_coalesced
            ),
            (1, 1, 2)
        );
    }

    #[test]
    fn success_leaves_a_tombstone_for_keys_reported_by_incarnation() {
        let base = Instant::now();
        let mut reference = model();
        reference.record_crash_of("a", 1, base);
        reference.record_crash("b", base);
        reference.record_success(&"a");
        reference.record_success(&"b");
        assert_eq!(reference.len(), 1);
        assert_eq!(reference.status(&"a", base), BackendRecoveryStatus::Healthy);
        // The dead incarnation is still a duplicate; a crash of the next opens a new window.
        assert!(reference.record_crash_of("a", 1, base).decision.is_retry());
        assert_eq!(reference.metrics().duplicates_coalesced, 1);
        let later = base + 300 * MS;
        assert!(reference.record_crash_of("a", 2, later).decision.is_retry());
        assert_eq!(
            reference.status(&"a", later),
            BackendRecoveryStatus::BackingOff {
                crashes_in_window: 1,
                retry_after: 75 * MS,
            }
        );
        assert_eq!(reference.purge_expired(later + Duration::from_secs(1)), 1);
        assert!(reference.is_empty());
        assert_eq!(reference.metrics().successes, 2);
    }

    #[test]
    fn a_full_state_purges_two_windows_then_refuses_with_the_wait() {
        let base = Instant::now();
        let mut reference = model().with_max_entries(1);
        assert!(reference.record_crash("a", base).is_retry());
        let full = reference.record_crash("b", base + 400 * MS);
        assert_eq!(
            full,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                retry_after: 1_600 * MS,
            }
        );
        // Tracked keys keep their exact behaviour.
        assert!(!reference.record_crash("a", base).is_retry());
        // Two windows after "a" opened its window, its place can be taken.
        assert!(
            reference
                .record_crash("b", base + Duration::from_secs(2))
                .is_retry()
        );
        let metrics = reference.metrics();
        assert_eq!((metrics.capacity_refusals, metrics.entries_purged), (1, 1));
        assert_eq!(reference.len(), 1);
        let none = model().with_max_entries(0).record_crash("a", base);
        assert_eq!(none.retry_after(), Duration::from_secs(1));
    }

    /// Equal histories make equal models, whatever happened to the counts past the ceiling:
    /// what a linearizability search relies on to prune.
    #[test]
    fn counts_past_the_budget_make_equal_states() {
        let base = Instant::now();
        let mut twice = model();
        let mut thrice = model();
        for _ in 0..2 {
            twice.record_crash("a", base);
        }
        for _ in 0..3 {
            thrice.record_crash("a", base);
        }
        assert_ne!(twice, thrice, "the refusal counters differ");
        twice.record_crash("a", base);
        assert_eq!(twice, thrice);
    }
}
