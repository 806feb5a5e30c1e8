//! One backend's recovery state as a packed 64-bit word, the pure transitions over it, and the
//! atomic cell that applies them by compare-and-swap.
//!
//! The transitions are where the spec's behaviour lives: plain functions of
//! `(word, now, policy)`, tested without threads. [`Cell`] adds only the CAS loop, so a policy
//! bug and a concurrency bug are never in the same function.
//!
//! State machine of one word (`n` = crashes counted in the open window):
//!
//! ```text
//!   vacant (n = 0) --crash--> n = 1, window opens at now          -> Retry(attempt 1)
//!   n >= 1, window open --crash--> n + 1 (saturating, see [`Word`]) -> Retry(attempt n + 1)
//!                                      while n + 1 <= retries per window, else Refuse(rest)
//!   n >= 1, window closed --crash--> n = 1, window opens at now    -> Retry(attempt 1)
//! ```
//!
//! (With the spec's one retry per window, the second crash in a window is refused; with zero
//! retries, every crash is.)
//!
//! A window is closed once `now - window_start >= budget_window`; a `now` before the window
//! start counts as zero elapsed, as in the spec.
//!
//! Most cells are the word alone ([`Cell`]). The few that need more ([`RichCell`]: one a thread
//! caches, one that remembers the last crash report counted by incarnation, see
//! [`RichCell::report_crash`]) live in a second table of their shard. The report is not
//! atomic: it is reached only through `&mut RichCell`, that is under the table's write guard,
//! so the type system keeps it exclusive.

use std::time::Duration;

use crate::decision::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendRecoveryStatus,
};
use crate::epoch::{MAX_TICK, TICK_BITS};
use crate::policy::{BackendRecoveryPolicy, MAX_RETRIES_PER_WINDOW};
use crate::table::Form;
use std::sync::Arc;

use crate::sync::{AtomicU64, Ordering};

/// The packed state of one backend.
///
/// | bits   | field          | meaning                                                          |
/// |--------|----------------|------------------------------------------------------------------|
/// | 0..4   | `crashes`      | crashes counted in the open window; 0 = no window (vacant)       |
/// | 4..64  | `window_start` | tick (ns since the state's epoch) of the crash that opened it    |
///
/// Limits: `window_start` holds 60 bits, [`MAX_TICK`] ns or about 36.5 years from the epoch (see
/// `epoch.rs`). `crashes` holds up to 15 but saturates at [`count_ceiling`], one past the retries
/// a window allows: beyond that every crash is refused alike, so a larger count would change no
/// decision. Saturating early also means that once a backend is refused, further crash reports
/// leave the word unchanged and cost a load, not a write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

const CRASH_BITS: u32 = 64 - TICK_BITS;
const CRASH_MASK: u64 = (1 << CRASH_BITS) - 1;

/// A policy as the transitions apply it: the policy, and its budget window in ticks, computed
/// once. Why: a crash compares the time since its window opened with the window; as
/// `Duration`s, that built one from nanoseconds (a division) per crash, and uniform-100k's
/// crashes are short enough for that to show (`docs/throughput-investigation.md`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    policy: BackendRecoveryPolicy,
    /// The budget window in nanoseconds, or `u64::MAX` for a window at least that long: then no
    /// tick difference (at most [`MAX_TICK`]) reaches it, as no `Duration` of one reaches the
    /// window itself, so comparing ticks decides exactly as comparing durations.
    window: u64,
}

impl Rules {
    pub(crate) fn new(policy: BackendRecoveryPolicy) -> Self {
        let window = u64::try_from(policy.budget_window.as_nanos()).unwrap_or(u64::MAX);
        Rules { policy, window }
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

/// The largest crash count a word stores for `policy`; see [`Word`].
#[inline]
fn count_ceiling(policy: &BackendRecoveryPolicy) -> u32 {
    policy.retries_per_window.min(MAX_RETRIES_PER_WINDOW) + 1
}
const _: () = assert!(
    (MAX_RETRIES_PER_WINDOW as u64) < CRASH_MASK,
    "the crash count must fit its bits"
);

impl Word {
    /// No crash recorded: decides like a key the state has never seen.
    pub(crate) const VACANT: Word = Word(0);

    #[inline]
    fn new(window_start: u64, crashes: u32) -> Self {
        debug_assert!(window_start <= MAX_TICK);
        debug_assert!(crashes <= MAX_RETRIES_PER_WINDOW + 1);
        Word((window_start << CRASH_BITS) | u64::from(crashes))
    }

    /// Crashes counted in the window, whether or not it is still open.
    #[inline]
    fn crashes(self) -> u32 {
        // Masked to CRASH_BITS, so the cast cannot truncate.
        (self.0 & CRASH_MASK) as u32
    }

    /// The tick the window opened at (kept, in a tombstone, after its crashes are forgotten).
    #[inline]
    pub(crate) fn window_start(self) -> u64 {
        self.0 >> CRASH_BITS
    }

    /// A word whose window opened at `start`, for asking when it expires.
    pub(crate) fn started_at(start: u64) -> Self {
        Word::new(start.min(MAX_TICK), 0)
    }

    /// Whether a crash may update this word without the table's write guard: not the mark of
    /// a removed cell (it takes no more crashes), and not a word with no crash counted, vacant
    /// (only ever seen under the write guard that inserts it) or a tombstone (see
    /// [`CellMut::forget_crashes`]): reviving a tombstone may open a window earlier than its
    /// shard's purge bound, which only the write guard may lower (see `Table::retain`).
    #[inline]
    pub(crate) fn updatable_without_write_guard(self) -> bool {
        self != RETIRED && self.crashes() != 0
    }

    /// The same window with no crash counted: decides like a vacant word, but keeps the window's
    /// start so that the entry expires when the window it stood for would have.
    fn without_crashes(self) -> Self {
        Word::new(self.window_start(), 0)
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

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("window_start", &self.window_start())
            .field("crashes", &self.crashes())
            .finish()
    }
}

/// Time from `start` to `now`; zero if `now` is earlier, as the spec's `elapsed_since`.
#[inline]
fn elapsed(start: u64, now: u64) -> Duration {
    Duration::from_nanos(now.saturating_sub(start))
}

/// The spec's `record_crash` as a pure function: the word after a crash at `now`, and the answer.
/// `jitter_seed` is the key's [`jitter_seed`](crate::jitter_seed), or anything when the policy
/// has no jitter.
#[inline]
pub(crate) fn crash(
    word: Word,
    now: u64,
    policy: &Rules,
    jitter_seed: u64,
) -> (Word, BackendRecoveryDecision) {
    let (start, crashes, elapsed) = match word.open_window(now, policy) {
        Some((start, crashes, elapsed)) => {
            (start, (crashes + 1).min(count_ceiling(policy)), elapsed)
        }
        None => (now, 1, 0),
    };
    let decision = if crashes <= policy.retries_per_window {
        BackendRecoveryDecision::Retry {
            retry_after: policy.retry_delay(crashes, jitter_seed),
            attempt: crashes,
        }
    } else {
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: policy.remaining(elapsed),
        }
    };
    (Word::new(start, crashes), decision)
}

/// Whether `word`'s window started at least `after` before `now`. With `after` at least the
/// budget window, an expired word decides exactly like a missing one at `now` and later.
pub(crate) fn expired(word: Word, now: u64, after: Duration) -> bool {
    elapsed(word.window_start(), now) >= after
}

/// How long until [`expired`] turns true for `word`.
pub(crate) fn time_until_expired(word: Word, now: u64, after: Duration) -> Duration {
    after.saturating_sub(elapsed(word.window_start(), now))
}

/// The last crash report a cell counted by incarnation, and what it was answered.
#[derive(Clone, Debug)]
struct CountedReport {
    incarnation: u64,
    at: u64,
    decision: BackendRecoveryDecision,
}

impl CountedReport {
    /// The answer for a duplicate of this report at `now`: the same kind and attempt, with the
    /// retry-after shortened by the time since the counted report, so that both point at the
    /// same moment.
    fn replay(&self, now: u64) -> BackendRecoveryDecision {
        let since = elapsed(self.at, now);
        match self.decision.clone() {
            BackendRecoveryDecision::Retry {
                retry_after,
                attempt,
            } => BackendRecoveryDecision::Retry {
                retry_after: retry_after.saturating_sub(since),
                attempt,
            },
            BackendRecoveryDecision::Refuse {
                reason,
                retry_after,
            } => BackendRecoveryDecision::Refuse {
                reason,
                retry_after: retry_after.saturating_sub(since),
            },
        }
    }
}

/// What a gate check at `now` reports for `word`, consistent with what [`crash`] would answer.
#[inline]
pub(crate) fn status(word: Word, now: u64, policy: &Rules) -> BackendRecoveryStatus {
    let Some((_, crashes, elapsed)) = word.open_window(now, policy) else {
        return BackendRecoveryStatus::Healthy;
    };
    let remaining = policy.remaining(elapsed);
    if crashes <= policy.retries_per_window {
        BackendRecoveryStatus::Recovering {
            crashes_in_window: crashes,
            window_remaining: remaining,
        }
    } else {
        BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: remaining,
        }
    }
}

/// The word of a cell removed from the table (see [`RichCell::retire`]): every crash bit set and a
/// window start past [`MAX_TICK`], so no live word can equal it.
pub(crate) const RETIRED: Word = Word(u64::MAX);
const _: () = assert!((MAX_TICK << CRASH_BITS) | CRASH_MASK != RETIRED.0);
#[cfg(not(loom))]
const _: () = assert!(
    std::mem::size_of::<Cell>() == 8,
    "a plain cell is its word alone"
);

/// A [`Word`] that many threads update at once: a backend's cell as most entries keep it.
///
/// Orderings: the word is the whole state of its backend and publishes no other memory, so
/// coherence of this one location is all the protocol needs and `Relaxed` suffices. The cell's
/// creation is ordered by the table's shard locks; its removal by the [`RETIRED`] mark, which
/// is part of the word.
///
/// Why the word alone: a table entry is a key and a cell, and the fewer bytes it takes, the
/// fewer cache lines and pages 100,000 backends span. With 8-byte keys, a bare table with
/// 16-byte entries ran uniform-100k at 2 threads at a median 3.21x the mutex over 12 rounds,
/// and with 24-byte entries at 2.66x over 30, in alternating rounds
/// (`docs/throughput-investigation.md`). What a few cells need beyond the word lives in a
/// [`RichCell`], in the shard's second table (`table.rs`). The price falls on those few: a key
/// reported by incarnation is rich from its first report, so a broker that reports every crash
/// that way pays an allocation per key and a pointer per access, as all keys did before.
pub(crate) struct Cell {
    word: AtomicU64,
}

/// A cell that needs more than its word: one a thread caches, or one that remembers a crash
/// reported by incarnation. A plain [`Cell`] becomes rich under the write guard (`From`), and
/// stays rich until its entry is removed.
///
/// Its word lives in a [`Shared`] behind an [`Arc`], so that a thread's read cache
/// (`cache.rs`) can keep reading and updating it after the table's guard is gone. Only rich
/// cells have that extra allocation and pointer: with every word behind an `Arc`, uniform-100k
/// ran at half speed.
pub(crate) struct RichCell {
    shared: Arc<Shared>,
    /// The last crash counted by incarnation ([`RichCell::report_crash`]). Boxed: most rich
    /// cells are cached ones, which never have it.
    last_report: Option<Box<CountedReport>>,
}

/// A cell in the table, in either form, as a read guard sees it.
pub(crate) type CellRef<'a> = Form<&'a Cell, &'a RichCell>;

/// A cell in the table, in either form, under the write guard.
pub(crate) type CellMut<'a> = Form<&'a mut Cell, &'a mut RichCell>;

/// The word of a [`RichCell`], which may outlive the cell's entry in the table.
///
/// std's `Arc` even under loom: the models check the word, a loom atomic; the reference count
/// decides only when memory is freed, which no answer depends on.
#[derive(Debug)]
pub(crate) struct Shared {
    word: AtomicU64,
}

impl Shared {
    /// The word, or `None` once the cell has been removed from the table.
    ///
    /// Why a word read here is one the table could have answered at that moment: a cell is
    /// marked [`RETIRED`] under the write guard that removes it, before the removal, and the
    /// mark is the word itself; so a word that is not the mark is the entry's current word.
    /// Loom model 12 checks this against removal and re-insertion.
    #[inline]
    pub(crate) fn load_live(&self) -> Option<Word> {
        // Relaxed: see `Cell` on orderings.
        let word = Word(self.word.load(Ordering::Relaxed));
        (word != RETIRED).then_some(word)
    }

    /// Applies `transition` by compare-and-swap, as [`CellRef::update`], unless the word may not
    /// be updated without the write guard (`None`; see [`Word::updatable_without_write_guard`]).
    /// A removal's mark makes a racing compare-and-swap fail.
    #[inline]
    pub(crate) fn update_live<R>(&self, transition: impl FnMut(Word) -> (Word, R)) -> Option<R> {
        update_word(&self.word, transition, Word::updatable_without_write_guard)
    }

    /// [`update_live`](Self::update_live) with a plain store instead of the compare-and-swap:
    /// the bug the loom teeth models must catch. Loom builds only.
    #[cfg(loom)]
    pub(crate) fn update_live_without_cas<R>(
        &self,
        transition: impl FnOnce(Word) -> (Word, R),
    ) -> Option<R> {
        let current = Word(self.word.load(Ordering::Relaxed));
        if !current.updatable_without_write_guard() {
            return None;
        }
        Some(store_without_cas(&self.word, current, transition))
    }
}

/// The compare-and-swap loop of every update: applies `transition` to the word in `atomic`
/// while `usable` accepts it, and returns its answer for the word it was applied to, or `None`
/// if `usable` refused the word first.
///
/// `transition` may run several times, once per lost race. A transition that leaves the word
/// unchanged is answered from the load alone, with no write: that load is the operation's
/// linearization point.
#[inline]
fn update_word<R>(
    atomic: &AtomicU64,
    mut transition: impl FnMut(Word) -> (Word, R),
    usable: impl Fn(Word) -> bool,
) -> Option<R> {
    // Relaxed: see `Cell` on orderings.
    let mut current = Word(atomic.load(Ordering::Relaxed));
    loop {
        if !usable(current) {
            return None;
        }
        let (next, answer) = transition(current);
        if next == current {
            return Some(answer);
        }
        // Relaxed on success and failure: see `Cell` on orderings. A weak CAS can fail
        // spuriously, which the loop absorbs.
        match atomic.compare_exchange_weak(current.0, next.0, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Some(answer),
            Err(actual) => current = Word(actual),
        }
    }
}

/// The broken update of the loom teeth models: load, then store, no compare.
#[cfg(loom)]
fn store_without_cas<R>(
    atomic: &AtomicU64,
    current: Word,
    transition: impl FnOnce(Word) -> (Word, R),
) -> R {
    let (next, answer) = transition(current);
    if next != current {
        // Relaxed, as in `update_word`: the bug is the missing compare, not the ordering.
        atomic.store(next.0, Ordering::Relaxed);
    }
    answer
}

impl Cell {
    /// A cell that has recorded nothing yet.
    pub(crate) fn vacant() -> Self {
        Cell {
            word: AtomicU64::new(Word::VACANT.0),
        }
    }

    /// The current word. A plain load: gate checks never write shared memory in the cell.
    #[inline]
    pub(crate) fn load(&self) -> Word {
        Form::Plain(self).load()
    }
}

impl From<Cell> for RichCell {
    /// Moves the word into a [`Shared`]. By value, so under the write guard: the plain word is
    /// updated only under a read guard, so the move loses nothing.
    fn from(cell: Cell) -> Self {
        RichCell {
            shared: Arc::new(Shared {
                word: AtomicU64::new(cell.load().0),
            }),
            last_report: None,
        }
    }
}

impl RichCell {
    /// The current word.
    #[inline]
    pub(crate) fn load(&self) -> Word {
        Form::Rich(self).load()
    }

    /// Another handle on the cell's word, for a thread's read cache.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Marks the cell removed by storing [`RETIRED`] in its word. Callers retire a cell under
    /// the write guard that removes it from the table, so no reader can find the cell, in the
    /// table or in a cache, after the removal without seeing the mark; a cached crash's
    /// compare-and-swap racing the removal either lands first (and is forgotten with the entry,
    /// as a crash just before a success) or fails on the mark. (A plain cell is in no cache:
    /// nothing to mark.)
    pub(crate) fn retire(&mut self) {
        // Relaxed: see `Cell` on orderings.
        self.shared.word.store(RETIRED.0, Ordering::Relaxed);
    }

    /// Records a crash reported for `incarnation`, the backend's spawn generation, under the
    /// shard's write guard (hence `&mut`).
    ///
    /// The first report of an incarnation newer than the last one counted is a crash like any
    /// other; any other report is a duplicate (several workers saw the same death) or stale,
    /// is not counted, and gets the counted report's answer replayed at `now`. Returns the
    /// answer and whether the report was a duplicate.
    pub(crate) fn report_crash(
        &mut self,
        incarnation: u64,
        now: u64,
        policy: &Rules,
        jitter_seed: u64,
    ) -> (BackendRecoveryDecision, bool) {
        match self.last_report.as_deref() {
            Some(counted) if incarnation <= counted.incarnation => (counted.replay(now), true),
            _ => {
                // A CAS, not a store: a crash through a read cache may race it (the write
                // guard keeps out only the crashes that go through the table).
                let decision =
                    Form::Rich(&*self).update(|word| crash(word, now, policy, jitter_seed));
                self.last_report = Some(Box::new(CountedReport {
                    incarnation,
                    at: now,
                    decision: decision.clone(),
                }));
                (decision, false)
            }
        }
    }
}

impl<'a> CellRef<'a> {
    /// The atomic that holds the word.
    #[inline]
    fn atomic(self) -> &'a AtomicU64 {
        match self {
            Form::Plain(cell) => &cell.word,
            Form::Rich(rich) => &rich.shared.word,
        }
    }

    /// The current word. A plain load: gate checks never write shared memory in the cell.
    #[inline]
    pub(crate) fn load(self) -> Word {
        // Relaxed: see `Cell` on orderings.
        Word(self.atomic().load(Ordering::Relaxed))
    }

    /// A handle on the cell's word for a thread's read cache, if the cell is rich.
    pub(crate) fn shared(self) -> Option<Arc<Shared>> {
        match self {
            Form::Plain(_) => None,
            Form::Rich(rich) => Some(rich.shared()),
        }
    }

    /// Applies `transition` atomically and returns its answer for the word it was applied to
    /// (see [`update_word`]).
    #[inline]
    pub(crate) fn update<R>(self, transition: impl FnMut(Word) -> (Word, R)) -> R {
        let answer = update_word(self.atomic(), transition, |_| true);
        answer.expect("`usable` accepts every word")
    }

    /// The bug the loom teeth model must catch: [`update`](Self::update) with a plain store
    /// instead of the compare-and-swap, so two threads that loaded the same word both act on
    /// it. Loom builds only; nothing but a state built `with_broken_cell_updates` calls it.
    #[cfg(loom)]
    pub(crate) fn update_without_cas<R>(self, transition: impl FnOnce(Word) -> (Word, R)) -> R {
        store_without_cas(self.atomic(), self.load(), transition)
    }
}

impl CellMut<'_> {
    /// The same cell, read-only.
    #[inline]
    pub(crate) fn as_ref(&self) -> CellRef<'_> {
        match self {
            Form::Plain(cell) => Form::Plain(&**cell),
            Form::Rich(rich) => Form::Rich(&**rich),
        }
    }

    /// Marks the cell removed (see [`RichCell::retire`]).
    pub(crate) fn retire(&mut self) {
        if let Form::Rich(rich) = self {
            rich.retire();
        }
    }

    /// Retires the cell if `expired` holds for its word, as one compare-and-swap, so that a
    /// cached crash that reopens the window at the last moment keeps the entry instead of
    /// being lost with it. Returns whether it retired the cell (the caller then removes it).
    pub(crate) fn retire_if(&mut self, expired: impl Fn(Word) -> bool) -> bool {
        let retired = update_word(self.as_ref().atomic(), |_| (RETIRED, ()), expired);
        retired.is_some()
    }

    /// Forgets the crashes after a verified success, under the shard's write guard. Returns
    /// `true` if the whole entry can go; `false` if it must stay as a tombstone that remembers
    /// the last incarnation counted, so that a late report of the dead incarnation is still a
    /// duplicate rather than a new crash. The tombstone decides like a missing key and expires
    /// with the window it stood for.
    pub(crate) fn forget_crashes(&mut self) -> bool {
        match self {
            Form::Rich(rich) if rich.last_report.is_some() => {
                // A compare-and-swap, not a store: a crash through a read cache may race it.
                Form::Rich(&**rich).update(|word| (word.without_crashes(), ()));
                false
            }
            _ => true,
        }
    }
}

/// The window's start: an entry is purgeable once its window started long enough ago. Only a
/// crash that revives a tombstone can move it earlier, and the state sends those to the write
/// guard.
impl crate::table::Purgeable for Cell {
    #[inline]
    fn purgeable_from(&self) -> u64 {
        self.load().window_start()
    }
}

/// As for [`Cell`].
impl crate::table::Purgeable for RichCell {
    #[inline]
    fn purgeable_from(&self) -> u64 {
        self.load().window_start()
    }
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cell").field(&self.load()).finish()
    }
}

impl std::fmt::Debug for RichCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RichCell")
            .field("word", &self.load())
            .field("last_report", &self.last_report)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn policy(backoff_ms: u64, window_ms: u64) -> Rules {
        Rules::new(BackendRecoveryPolicy::new(
            Duration::from_millis(backoff_ms),
            Duration::from_millis(window_ms),
        ))
    }

    fn refuse(retry_after: Duration) -> BackendRecoveryDecision {
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after,
        }
    }

    #[test]
    fn word_round_trips_its_fields_at_the_limits() {
        let word = Word::new(MAX_TICK, MAX_RETRIES_PER_WINDOW + 1);
        assert_eq!(word.window_start(), MAX_TICK);
        assert_eq!(word.crashes(), MAX_RETRIES_PER_WINDOW + 1);
        assert_eq!(Word::new(0, 0), Word::VACANT);
    }

    #[test]
    fn first_crash_retries_then_refuses_for_the_rest_of_the_window() {
        let p = policy(75, 30_000);
        let (word, first) = crash(Word::VACANT, 10 * MS, &p, 0);
        assert_eq!(
            first,
            BackendRecoveryDecision::Retry {
                retry_after: Duration::from_millis(75),
                attempt: 1
            }
        );
        let (_, second) = crash(word, 2_010 * MS, &p, 0);
        assert_eq!(second, refuse(Duration::from_secs(28)));
    }

    #[test]
    fn window_boundary_is_inclusive_and_reopens() {
        let p = policy(75, 1_000);
        let (word, _) = crash(Word::VACANT, 0, &p, 0);
        let (word, just_inside) = crash(word, 1_000 * MS - 1, &p, 0);
        assert_eq!(just_inside, refuse(Duration::from_nanos(1)));
        let (word, at_boundary) = crash(word, 1_000 * MS, &p, 0);
        assert!(at_boundary.is_retry());
        assert_eq!(word.window_start(), 1_000 * MS);
        assert_eq!(word.crashes(), 1);
    }

    #[test]
    fn refused_word_stops_changing_once_saturated() {
        let p = policy(75, 1_000);
        let (word, _) = crash(Word::VACANT, 0, &p, 0);
        let (word, _) = crash(word, MS, &p, 0);
        let (again, decision) = crash(word, 2 * MS, &p, 0);
        assert_eq!(again, word);
        assert_eq!(decision, refuse(Duration::from_millis(998)));
    }

    #[test]
    fn time_running_backwards_counts_as_zero_elapsed() {
        let p = policy(75, 1_000);
        let (word, _) = crash(Word::VACANT, 500 * MS, &p, 0);
        let (word, earlier) = crash(word, 100 * MS, &p, 0);
        assert_eq!(earlier, refuse(Duration::from_secs(1)));
        assert_eq!(word.window_start(), 500 * MS);
    }

    #[test]
    fn status_agrees_with_the_next_crash() {
        let p = policy(75, 1_000);
        assert_eq!(status(Word::VACANT, 0, &p), BackendRecoveryStatus::Healthy);
        let (word, _) = crash(Word::VACANT, 0, &p, 0);
        assert_eq!(
            status(word, 400 * MS, &p),
            BackendRecoveryStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: Duration::from_millis(600),
            }
        );
        let (word, refused) = crash(word, 400 * MS, &p, 0);
        assert_eq!(
            status(word, 400 * MS, &p).retry_after(),
            Some(refused.retry_after())
        );
        assert_eq!(status(word, 1_000 * MS, &p), BackendRecoveryStatus::Healthy);
    }

    #[test]
    fn duration_max_policy_decides_without_panicking() {
        let p = Rules::new(BackendRecoveryPolicy::new(Duration::MAX, Duration::MAX));
        let (word, first) = crash(Word::VACANT, MAX_TICK, &p, 0);
        assert_eq!(first.retry_after(), Duration::MAX);
        let (_, second) = crash(word, 0, &p, 0);
        assert_eq!(second, refuse(Duration::MAX));
    }

    #[test]
    fn windows_in_ticks_decide_as_durations_at_every_limit() {
        let nanos = Duration::from_nanos;
        let windows = [
            nanos(1),
            nanos(MAX_TICK - 1),
            nanos(MAX_TICK),
            nanos(MAX_TICK + 1),
            nanos(u64::MAX - 1),
            nanos(u64::MAX),
            nanos(u64::MAX) + nanos(1),
            Duration::MAX,
        ];
        for window in windows {
            let rules = Rules::new(BackendRecoveryPolicy::new(Duration::MAX, window));
            let (word, _) = crash(Word::VACANT, 1, &rules, 0);
            for now in [0, 1, 2, MAX_TICK - 1, MAX_TICK] {
                // The spec's rule, in `Duration`s.
                let elapsed = nanos(now.saturating_sub(1));
                let open = elapsed < window;
                let expected = if open {
                    BackendRecoveryStatus::Recovering {
                        crashes_in_window: 1,
                        window_remaining: window - elapsed,
                    }
                } else {
                    BackendRecoveryStatus::Healthy
                };
                assert_eq!(status(word, now, &rules), expected, "{window:?} at {now}");
                let (_, again) = crash(word, now, &rules, 0);
                assert_eq!(again.is_retry(), !open, "{window:?} at {now}");
                if open {
                    assert_eq!(again, refuse(window - elapsed), "{window:?} at {now}");
                }
            }
        }
    }

    #[test]
    fn cell_update_applies_the_transition() {
        let p = policy(75, 1_000);
        let cell = Cell::vacant();
        assert!(Form::Plain(&cell).update(|w| crash(w, 0, &p, 0)).is_retry());
        assert!(
            !Form::Plain(&cell)
                .update(|w| crash(w, MS, &p, 0))
                .is_retry()
        );
        assert_eq!(cell.load().crashes(), 2);
    }

    #[test]
    fn a_rich_cell_keeps_the_word_and_updates_reach_every_handle() {
        let p = policy(75, 1_000);
        let cell = Cell::vacant();
        assert!(Form::Plain(&cell).update(|w| crash(w, 0, &p, 0)).is_retry());
        assert!(
            Form::Plain(&cell).shared().is_none(),
            "a plain cell has no handle"
        );
        let before = cell.load();
        let mut rich = RichCell::from(cell);
        let handle = rich.shared();
        assert_eq!(handle.load_live(), Some(before), "the move keeps the word");
        assert!(!Form::Rich(&rich).update(|w| crash(w, MS, &p, 0)).is_retry());
        assert_eq!(rich.load().crashes(), 2);
        assert_eq!(
            handle.load_live(),
            Some(rich.load()),
            "the handle sees the update"
        );
        Form::Rich(&mut rich).retire();
        assert_eq!(handle.load_live(), None, "a retired cell reads as gone");
    }

    #[test]
    fn only_a_cell_that_remembers_a_report_stays_as_a_tombstone() {
        let p = policy(75, 1_000);
        let mut plain = Cell::vacant();
        Form::Plain(&plain).update(|w| crash(w, 0, &p, 0));
        assert!(
            Form::Plain(&mut plain).forget_crashes(),
            "nothing to remember: removed"
        );
        let mut rich = RichCell::from(Cell::vacant());
        assert!(
            Form::Rich(&mut rich).forget_crashes(),
            "cached only: removed"
        );
        let (first, duplicate) = rich.report_crash(7, 10 * MS, &p, 0);
        assert!(first.is_retry() && !duplicate);
        assert!(
            !Form::Rich(&mut rich).forget_crashes(),
            "kept as a tombstone"
        );
        assert_eq!(rich.load(), Word::new(10 * MS, 0));
        let (replayed, duplicate) = rich.report_crash(7, 20 * MS, &p, 0);
        assert!(duplicate, "incarnation 7 is still remembered");
        assert_eq!(replayed.retry_after(), Duration::from_millis(65));
    }
}
