use super::*;
use std::time::Duration;

use crate::policy::BackendRecoveryPolicy;

const MS: u64 = 1_000_000;

fn policy(backoff_ms: u64, window_ms: u64) -> Rules {
    Rules::new(BackendRecoveryPolicy::new(
        Duration::from_millis(backoff_ms),
        Duration::from_millis(window_ms),
    ))
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
    let remembers = |rich: &RichCell| rich.shared_ref().lock_report().counted().is_some();
    let mut plain = Cell::vacant();
    Form::Plain(&plain).update(|w| crash(w, 0, &p, 0));
    assert!(
        Form::Plain(&mut plain).forget_crashes(false),
        "nothing to remember: removed"
    );
    let mut rich = RichCell::from(Cell::vacant());
    assert!(!remembers(&rich));
    assert!(
        Form::Rich(&mut rich).forget_crashes(false),
        "cached only: removed"
    );
    let (first, duplicate) = rich.report_crash(7, 10 * MS, &p, 0);
    assert!(first.is_retry() && !duplicate);
    assert!(remembers(&rich));
    assert!(
        !Form::Rich(&mut rich).forget_crashes(true),
        "kept as a tombstone"
    );
    assert_eq!(rich.load().crashes(), 0);
    assert_eq!(
        rich.load().purgeable_from(&p),
        10 * MS,
        "the tombstone keeps its window"
    );
    let (replayed, duplicate) = rich.report_crash(7, 20 * MS, &p, 0);
    assert!(duplicate, "incarnation 7 is still remembered");
    assert_eq!(replayed.retry_after(), Duration::from_millis(65));
}

#[test]
fn reports_without_the_write_guard_answer_only_on_a_live_usable_word() {
    let p = policy(75, 1_000);
    let mut rich = RichCell::from(Cell::vacant());
    let shared = rich.shared();
    let report = |incarnation, usable: fn(Word) -> bool| {
        shared.report_crash(incarnation, 10 * MS, &p, 0, usable)
    };
    assert_eq!(
        report(7, Word::crashable_without_write_guard),
        None,
        "a vacant word takes the write guard"
    );
    assert_eq!(
        shared.load_live().map(Word::crashes),
        Some(0),
        "nothing changed"
    );
    let (first, duplicate) = report(7, |_| true).expect("a live word");
    assert!(first.is_retry() && !duplicate);
    let (again, duplicate) = report(7, Word::crashable_without_write_guard).expect("live");
    assert!(duplicate && again == first, "a duplicate replays the count");
    let (second, duplicate) = report(8, Word::crashable_without_write_guard).expect("live");
    assert!(!second.is_retry() && !duplicate, "the next death counts");
    Form::Rich(&mut rich).retire();
    assert_eq!(
        report(8, |_| true),
        None,
        "a removed cell's report is gone with it"
    );
    assert_eq!(report(9, |_| true), None, "and nothing counts on it");
}
