//! Launch claims: exactly one caller wins each launch the state allows.
//!
//! - two claims of one key racing, for a key without an entry (both insert, under the write
//!   guard) and for a key whose retry's backoff has just ended (both update its word by
//!   compare-and-swap under the read guard): exactly one `Launch`, the other told to wait for
//!   the whole launch timeout;
//! - a claim racing the crash report of the winner's launch: while that launch is pending the
//!   claim never wins; once it ran (a success within the probation), the claim may win or not,
//!   but the crash's refusal is never lost;
//! - a claim made once the winner's claim has lapsed, racing a late crash report from that
//!   winner: either order is a sequential one, and the crash's backoff is never lost.
//!
//! Each has a teeth variant: with claims applied by load-then-store instead of
//! compare-and-swap (`broken_state`), loom must find the interleaving no sequential order has.
#![cfg(loom)]

use std::time::{Duration, Instant};

use backend_recovery::BackendLaunchDecision;
use backend_recovery_loom_tests::{
    BACKOFF, History, Key, Op, Scenario, WINDOW, broken_state, failure_of, fixed_state,
    model_policy,
};

const KEY: Key = "indexer";

/// The launch timeout of [`model_policy`]: 10 s, clamped to the 1 s window.
const TIMEOUT: Duration = WINDOW;

/// Exactly one thread's claim is `Launch`; every other waits for the whole timeout.
fn exactly_one_launch(history: &History) {
    let claims = history.thread_claims();
    let launches = claims.iter().filter(|claim| claim.is_launch()).count();
    assert!(
        launches <= 1,
        "{launches} claims won one launch, at most one may\n{claims:#?}"
    );
    assert_eq!(launches, 1, "no claim won: {claims:#?}");
    for claim in claims.iter().filter(|claim| !claim.is_launch()) {
        assert_eq!(
            **claim,
            BackendLaunchDecision::Wait {
                retry_after: TIMEOUT
            }
        );
    }
}

/// Two threads claim [`KEY`] at one instant: a new key, or one whose backoff just ended.
fn racing_claims(tracked: bool) -> Scenario {
    let base = Instant::now();
    let mut scenario = Scenario::new(model_policy());
    let at = if tracked {
        scenario = scenario.setup([Op::Crash(KEY, base)]);
        base + BACKOFF
    } else {
        base
    };
    scenario
        .thread([Op::Claim(KEY, at)])
        .thread([Op::Claim(KEY, at)])
        .after([Op::Claim(KEY, at)])
}

// Two claims of a key without an entry: one launches.
#[test]
fn two_claims_of_a_new_key_one_launches() {
    racing_claims(false).check_sequential_consistency(
        "launch_claims: two claims, new key",
        fixed_state,
        exactly_one_launch,
    );
}

// Two claims once a retry's backoff has ended: one launches.
#[test]
fn two_claims_of_a_due_retry_one_launches() {
    racing_claims(true).check_sequential_consistency(
        "launch_claims: two claims, due retry",
        fixed_state,
        exactly_one_launch,
    );
}

// Teeth: two claims by load-then-store both win.
#[test]
fn teeth_two_claims_by_load_then_store_both_launch() {
    let message = failure_of(|| {
        racing_claims(true).check_sequential_consistency(
            "launch_claims: teeth, two claims",
            broken_state,
            exactly_one_launch,
        );
    });
    assert!(
        message.starts_with("2 claims won one launch"),
        "the broken claim failed for another reason: {message}"
    );
    println!("teeth: load-then-store claims fail the two-claims model as they must");
}

/// The setup grants a retry and its relaunch; then, at one instant, the relaunched backend's
/// crash is reported while another caller claims. With `running`, the relaunch had answered
/// (a success within the probation, so the crash is kept and the claim settled); else it is
/// still pending.
fn claim_racing_the_winners_crash(running: bool) -> Scenario {
    let base = Instant::now();
    let launched = base + BACKOFF;
    let at = launched + Duration::from_millis(5);
    let mut setup = vec![Op::Crash(KEY, base), Op::Claim(KEY, launched)];
    if running {
        setup.push(Op::SuccessAt(KEY, launched + Duration::from_millis(1)));
    }
    Scenario::new(probation_policy())
        .setup(setup)
        .thread([Op::Crash(KEY, at)])
        .thread([Op::Claim(KEY, at)])
        .after([Op::Status(KEY, at), Op::Claim(KEY, at)])
}

/// [`model_policy`] with a probation as long as the window.
fn probation_policy() -> backend_recovery::BackendRecoveryPolicy {
    backend_recovery::BackendRecoveryPolicy::builder()
        .retry_backoff(BACKOFF)
        .budget_window(WINDOW)
        .min_uptime(WINDOW)
        .build()
        .expect("in range")
}

/// No thread's claim wins while the winner's launch is pending.
fn no_second_launch(history: &History) {
    let claims = history.thread_claims();
    assert!(
        claims.iter().all(|claim| !claim.is_launch()),
        "a claim won while the winner's launch was pending: {claims:#?}"
    );
}

/// Whichever came first, the crash spent the budget: the gate refuses afterwards.
fn refusal_survives(history: &History) {
    let (_, gate) = &history.after[0];
    assert!(
        matches!(
            gate,
            backend_recovery_loom_tests::Outcome::Reported(
                backend_recovery::BackendRecoveryStatus::Unavailable { .. }
            )
        ),
        "the crash's refusal was lost: {history:#?}"
    );
}

// A claim racing the crash report of the winner's pending launch never launches.
#[test]
fn a_claim_racing_the_winners_crash_never_launches() {
    claim_racing_the_winners_crash(false).check_sequential_consistency(
        "launch_claims: claim racing the winner's crash, launch pending",
        fixed_state,
        no_second_launch,
    );
}

// The relaunch ran, then died: a claim racing its crash report never hides the refusal.
#[test]
fn a_claim_racing_the_crash_of_a_running_relaunch_keeps_the_refusal() {
    claim_racing_the_winners_crash(true).check_sequential_consistency(
        "launch_claims: claim racing the winner's crash, relaunch running",
        fixed_state,
        refusal_survives,
    );
}

// Teeth: with load-then-store, the claim can overwrite the crash's refusal.
#[test]
fn teeth_a_claim_by_load_then_store_loses_the_crash() {
    let message = failure_of(|| {
        claim_racing_the_winners_crash(true).check_sequential_consistency(
            "launch_claims: teeth, claim racing the winner's crash",
            broken_state,
            refusal_survives,
        );
    });
    assert!(
        message.starts_with("the crash's refusal was lost"),
        "the broken claim failed for another reason: {message}"
    );
    println!("teeth: a load-then-store claim fails the claim-vs-crash model as it must");
}

/// A retry's relaunch claimed in the setup and never reported; at its lapse another caller
/// claims while the first winner's late crash report arrives (opening a new window: the
/// first has closed).
fn lapsed_claim_racing_a_late_report() -> Scenario {
    let base = Instant::now();
    let launched = base + BACKOFF;
    let lapsed = launched + TIMEOUT;
    Scenario::new(model_policy())
        .setup([Op::Crash(KEY, base), Op::Claim(KEY, launched)])
        .thread([Op::Claim(KEY, lapsed)])
        .thread([Op::Crash(KEY, lapsed)])
        .after([Op::Status(KEY, lapsed), Op::Claim(KEY, lapsed)])
}

/// Whichever came first, the late crash's backoff is seen afterwards: the gate backs off.
fn backoff_survives(history: &History) {
    let (_, gate) = &history.after[0];
    assert!(
        matches!(
            gate,
            backend_recovery_loom_tests::Outcome::Reported(
                backend_recovery::BackendRecoveryStatus::BackingOff { .. }
            )
        ),
        "the late crash's backoff was lost: {history:#?}"
    );
}

// A lapsed claim racing a late report from its winner.
#[test]
fn a_lapsed_claim_racing_a_late_report_keeps_the_backoff() {
    lapsed_claim_racing_a_late_report().check_sequential_consistency(
        "launch_claims: lapsed claim racing a late report",
        fixed_state,
        backoff_survives,
    );
}

// Teeth: with load-then-store, the lapsed claim can overwrite the crash's backoff.
#[test]
fn teeth_a_lapsed_claim_by_load_then_store_loses_the_backoff() {
    let message = failure_of(|| {
        lapsed_claim_racing_a_late_report().check_sequential_consistency(
            "launch_claims: teeth, lapsed claim racing a late report",
            broken_state,
            backoff_survives,
        );
    });
    assert!(
        message.starts_with("the late crash's backoff was lost"),
        "the broken claim failed for another reason: {message}"
    );
    println!("teeth: a load-then-store claim fails the lapsed-claim model as it must");
}
