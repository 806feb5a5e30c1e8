//! The atomic cell that applies a word's transitions (`word.rs`) by compare-and-swap, and the
//! two forms a cell takes in the table.
//!
//! Most cells are the word alone ([`Cell`]). The few that need more ([`RichCell`]: one a thread
//! caches, one that remembers the last crash report counted by incarnation, see
//! [`Shared::report_crash`]) live in a second table of their shard.

mod report;

use std::sync::Arc;

use crate::decision::BackendRecoveryDecision;
use crate::sync::{AtomicU128, Ordering};
use crate::table::Form;
use crate::word::{RETIRED, Rules, Word, crash};

pub(crate) use report::ReportGuard;
use report::{Counted, Report};

#[cfg(not(loom))]
const _: () = assert!(
    std::mem::size_of::<Cell>() == 16,
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
/// fewer cache lines and pages 100,000 backends span: with 24-byte entries instead of 16,
/// uniform-100k runs markedly slower (see `docs/design.md`). What a few cells need beyond the
/// word lives in a [`RichCell`], in the shard's second table (`table.rs`). The price falls on
/// those few: a key reported by incarnation is rich from its first report, so a broker that
/// reports every crash that way pays an allocation per key and a pointer per access.
pub(crate) struct Cell {
    word: AtomicU128,
}

/// A cell that needs more than its word: one a thread caches, or one that remembers a crash
/// reported by incarnation. A plain [`Cell`] becomes rich under the write guard (`From`), and
/// stays rich until its entry is removed.
///
/// Its word and its last counted report live in a [`Shared`] behind an [`Arc`], so that a
/// thread's read cache (`cache.rs`) can keep reading and updating them after the table's guard
/// is gone. Only rich cells have that extra allocation and pointer: with every word behind an
/// `Arc`, uniform-100k would run at less than half the speed (see `docs/design.md`).
pub(crate) struct RichCell {
    shared: Arc<Shared>,
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
#[repr(align(64))]
pub(crate) struct Shared {
    word: AtomicU128,
    /// The last crash counted by incarnation ([`Shared::report_crash`]).
    report: Report,
}

impl Shared {
    /// Records a crash of this cell's key reported for `incarnation`, the backend's spawn
    /// generation, from any thread and under any guard or none (through a read cache).
    ///
    /// The first report of an incarnation newer than the last one counted is a crash like any
    /// other; any other report is a duplicate (several workers saw the same death) or stale,
    /// is not counted, and gets the counted report's decision replayed at `now`. Returns the
    /// answer and whether the report was a duplicate; `None`, with nothing changed, if the cell
    /// was removed or `usable` refuses the word the crash would be counted on (the caller then
    /// goes to the table, or to its write guard).
    ///
    /// A duplicate reads the last report with loads alone. A report that may count takes the
    /// report's lock, checks again and counts, so that the check and the count are one step;
    /// the count is a compare-and-swap, because a crash through a read cache may race it.
    pub(crate) fn report_crash(
        &self,
        incarnation: u64,
        now: u64,
        rules: &Rules,
        jitter_seed: u64,
        usable: impl Fn(Word) -> bool,
        #[cfg(loom)] unlocked: bool,
    ) -> Option<(BackendRecoveryDecision, bool)> {
        let replay = |counted: Counted| {
            // A report is the cell's only while the cell is live: a purge forgets it with the
            // entry. A cell is retired for good, so a live word now means a live cell when the
            // report was read, where the duplicate takes effect.
            self.load_live()?;
            Some((counted.replay(now), true))
        };
        let covers = |counted: &Counted| incarnation <= counted.incarnation;
        if let Some(counted) = self.report.read().filter(covers) {
            return replay(counted);
        }
        let usable = |word| word != RETIRED && usable(word);
        let count = |word| crash(word, now, rules, jitter_seed);
        let counted = |decision: &BackendRecoveryDecision| Counted {
            incarnation,
            at: now,
            decision: decision.clone(),
        };
        #[cfg(loom)]
        if unlocked {
            // The teeth models' bug: the check above and the count are two steps.
            let decision = update_word(&self.word, count, usable)?;
            self.report.lock().set(&counted(&decision));
            return Some((decision, false));
        }
        let report = match self.report.lock_unless(covers) {
            Ok(report) => report,
            Err(counted) => return replay(counted),
        };
        if let Some(counted) = report.counted().filter(covers) {
            drop(report);
            return replay(counted);
        }
        let decision = update_word(&self.word, count, usable)?;
        report.set(&counted(&decision));
        Some((decision, false))
    }

    /// The report's lock, which a success holds while it decides whether to keep the cell as
    /// a tombstone (if it remembers a report) and retires it otherwise: no report can be
    /// counted in between and then be forgotten with the entry.
    pub(crate) fn lock_report(&self) -> ReportGuard<'_> {
        self.report.lock()
    }

    /// Whether the cell remembers a report, read without the lock: the teeth models' broken
    /// success. Loom builds only.
    #[cfg(loom)]
    pub(crate) fn remembers_report(&self) -> bool {
        self.report.read().is_some()
    }

    /// The word, or `None` once the cell has been removed from the table.
    ///
    /// Why a word read here is one the table could have answered at that moment: a cell is
    /// marked [`RETIRED`] under the write guard that removes it, before the removal, and the
    /// mark is the word itself; so a word that is not the mark is the entry's current word.
    /// The loom model `loom-tests/tests/cached_status.rs` checks this against removal and
    /// re-insertion.
    #[inline]
    pub(crate) fn load_live(&self) -> Option<Word> {
        // Relaxed: see `Cell` on orderings.
        let word = Word::from_bits(self.word.load(Ordering::Relaxed));
        (word != RETIRED).then_some(word)
    }

    /// Applies `transition` by compare-and-swap, as [`CellRef::update`], unless `usable`
    /// refuses the word (`None`): the word of a removed cell always is, so a removal's mark
    /// makes a racing compare-and-swap fail. The check is inside the loop, on the very word
    /// the compare-and-swap replaces.
    #[inline]
    pub(crate) fn update_live<R>(
        &self,
        transition: impl FnMut(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        update_word(&self.word, transition, |word| {
            word != RETIRED && usable(word)
        })
    }

    /// [`update_live`](Self::update_live) with a plain store instead of the compare-and-swap:
    /// the bug the loom teeth models must catch. Loom builds only.
    #[cfg(loom)]
    pub(crate) fn update_live_without_cas<R>(
        &self,
        transition: impl FnOnce(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        let current = Word::from_bits(self.word.load(Ordering::Relaxed));
        if current == RETIRED || !usable(current) {
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
    atomic: &AtomicU128,
    mut transition: impl FnMut(Word) -> (Word, R),
    usable: impl Fn(Word) -> bool,
) -> Option<R> {
    // Relaxed: see `Cell` on orderings.
    let mut current = Word::from_bits(atomic.load(Ordering::Relaxed));
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
        match atomic.compare_exchange_weak(
            current.to_bits(),
            next.to_bits(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(answer),
            Err(actual) => current = Word::from_bits(actual),
        }
    }
}

/// The broken update of the loom teeth models: load, then store, no compare.
#[cfg(loom)]
fn store_without_cas<R>(
    atomic: &AtomicU128,
    current: Word,
    transition: impl FnOnce(Word) -> (Word, R),
) -> R {
    let (next, answer) = transition(current);
    if next != current {
        // Relaxed, as in `update_word`: the bug is the missing compare, not the ordering.
        atomic.store(next.to_bits(), Ordering::Relaxed);
    }
    answer
}

impl Cell {
    /// A cell that has recorded nothing yet.
    pub(crate) fn vacant() -> Self {
        Cell {
            word: AtomicU128::new(Word::VACANT.to_bits()),
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
                word: AtomicU128::new(cell.load().to_bits()),
                report: Report::default(),
            }),
        }
    }
}

impl RichCell {
    /// The current word.
    #[inline]
    pub(crate) fn load(&self) -> Word {
        Form::Rich(self).load()
    }

    /// The cell's word and report.
    pub(crate) fn shared_ref(&self) -> &Shared {
        &self.shared
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
        self.shared.word.store(RETIRED.to_bits(), Ordering::Relaxed);
    }

    /// [`Shared::report_crash`] under the shard's write guard: any live word is usable, so it
    /// always answers.
    pub(crate) fn report_crash(
        &mut self,
        incarnation: u64,
        now: u64,
        rules: &Rules,
        jitter_seed: u64,
    ) -> (BackendRecoveryDecision, bool) {
        let answer = self.shared.report_crash(
            incarnation,
            now,
            rules,
            jitter_seed,
            |_| true,
            #[cfg(loom)]
            false,
        );
        answer.expect("a cell in the table under the write guard is live")
    }
}

impl<'a> CellRef<'a> {
    /// The atomic that holds the word.
    #[inline]
    fn atomic(self) -> &'a AtomicU128 {
        match self {
            Form::Plain(cell) => &cell.word,
            Form::Rich(rich) => &rich.shared.word,
        }
    }

    /// The current word. A plain load: gate checks never write shared memory in the cell.
    #[inline]
    pub(crate) fn load(self) -> Word {
        // Relaxed: see `Cell` on orderings.
        Word::from_bits(self.atomic().load(Ordering::Relaxed))
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
        let answer = self.update_if(transition, |_| true);
        answer.expect("`usable` accepts every word")
    }

    /// As [`update`](Self::update), unless `usable` refuses the word (`None`). The check is
    /// part of the compare-and-swap loop: it holds for the very word the transition replaces.
    #[inline]
    pub(crate) fn update_if<R>(
        self,
        transition: impl FnMut(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        update_word(self.atomic(), transition, usable)
    }

    /// The bug the loom teeth model must catch: [`update_if`](Self::update_if) with a plain
    /// store instead of the compare-and-swap, so two threads that loaded the same word both act
    /// on it. Loom builds only; nothing but a state built `with_broken_cell_updates` calls it.
    #[cfg(loom)]
    pub(crate) fn update_without_cas<R>(
        self,
        transition: impl FnOnce(Word) -> (Word, R),
        usable: impl Fn(Word) -> bool,
    ) -> Option<R> {
        let current = self.load();
        usable(current).then(|| store_without_cas(self.atomic(), current, transition))
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

    /// Forgets the crashes after a verified success, under the shard's write guard, given
    /// whether the cell `remembers` a report counted by incarnation (read under the report's
    /// lock, see [`Shared::lock_report`]). Returns `true` if the whole entry can go; `false` if
    /// it must stay as a tombstone that remembers the last incarnation counted, so that a late
    /// report of the dead incarnation is still a duplicate rather than a new crash. The
    /// tombstone decides like a missing key and expires with the window it stood for.
    pub(crate) fn forget_crashes(&mut self, remembers: bool) -> bool {
        if !remembers {
            return true;
        }
        // A compare-and-swap, not a store: a crash through a read cache may race it.
        self.as_ref().update(|word| (word.forgotten(), ()));
        false
    }
}

/// The window's start: an entry is purgeable once its window started long enough ago. Only a
/// crash that revives a tombstone can move it earlier, and the state sends those to the write
/// guard.
impl crate::table::Purgeable for Cell {
    type Rules = Rules;
    #[inline]
    fn purgeable_from(&self, rules: &Rules) -> u64 {
        self.load().purgeable_from(rules)
    }
}

/// As for [`Cell`].
impl crate::table::Purgeable for RichCell {
    type Rules = Rules;
    #[inline]
    fn purgeable_from(&self, rules: &Rules) -> u64 {
        self.load().purgeable_from(rules)
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
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
