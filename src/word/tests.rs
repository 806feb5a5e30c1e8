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

fn wait(ms: u64) -> BackendLaunchDecision {
    BackendLaunchDecision::Wait {
        retry_after: Duration::from_millis(ms),
    }
}

#[test]
fn word_round_trips_its_fields_at_the_limits() {
    let word = Word {
        budget: Budget::new(MAX_TICK, MAX_RETRIES_PER_WINDOW + 1),
        launch: Launch::new(Stage::Refused, MAX_TICK),
    };
    assert_eq!(word.budget.window_start(), MAX_TICK);
    assert_eq!(word.crashes(), MAX_RETRIES_PER_WINDOW + 1);
    assert_eq!(word.stage(), Stage::Refused);
    assert_eq!(word.launch.tick(), MAX_TICK);
    assert_eq!(Word::from_bits(word.to_bits()), word);
    assert_ne!(word, RETIRED);
    assert_eq!(Word::from_bits(0), Word::VACANT);
    assert_eq!(Word::from_bits(u128::MAX), RETIRED);
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
    assert_eq!(word.budget.window_start(), 1_000 * MS);
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
    assert_eq!(word.budget.window_start(), 500 * MS);
    assert_eq!(
        word.launch.tick(),
        1_100 * MS,
        "the refusal from its own instant"
    );
    assert_eq!(word.stage(), Stage::Refused);
}

#[test]
fn status_backs_off_then_agrees_with_the_next_crash() {
    let p = policy(75, 1_000);
    assert_eq!(status(Word::VACANT, 0, &p), BackendRecoveryStatus::Healthy);
    let (word, _) = crash(Word::VACANT, 0, &p, 0);
    assert_eq!(
        status(word, 25 * MS, &p),
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 1,
            retry_after: Duration::from_millis(50),
        }
    );
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
fn one_claim_wins_and_the_others_wait_until_it_lapses() {
    let p = policy(75, 30_000);
    let timeout = p.policy.launch_timeout.as_millis() as u64;
    let (word, first) = claim(Word::VACANT, 100 * MS, &p);
    assert_eq!(first, BackendLaunchDecision::Launch);
    let (same, second) = claim(word, 150 * MS, &p);
    assert_eq!(second, wait(timeout - 50));
    assert_eq!(same, word, "a lost claim writes nothing");
    let (_, lapsed) = claim(word, (100 + timeout) * MS, &p);
    assert_eq!(lapsed, BackendLaunchDecision::Launch);
}

#[test]
fn a_claim_after_a_crash_waits_for_the_backoff_and_the_refusal() {
    let p = policy(75, 1_000);
    let (word, _) = claim(Word::VACANT, 0, &p);
    let (word, retry) = crash(word, 10 * MS, &p, 0);
    assert!(retry.is_retry());
    assert_eq!(claim(word, 10 * MS, &p).1, wait(75));
    let (word, relaunch) = claim(word, 85 * MS, &p);
    assert_eq!(relaunch, BackendLaunchDecision::Launch);
    let (word, refused) = crash(word, 100 * MS, &p, 0);
    let (_, answer) = claim(word, 100 * MS, &p);
    assert_eq!(answer.retry_after(), Some(refused.retry_after()));
    assert!(matches!(answer, BackendLaunchDecision::Refuse { .. }));
    assert_eq!(
        claim(word, 1_010 * MS, &p).1,
        BackendLaunchDecision::Launch,
        "reopened with its window"
    );
}

#[test]
fn a_success_within_probation_keeps_the_crashes() {
    let p = Rules::new(
        BackendRecoveryPolicy::builder()
            .retry_backoff(Duration::from_millis(75))
            .budget_window(Duration::from_secs(30))
            .min_uptime(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let (word, _) = crash(Word::VACANT, 0, &p, 0);
    let (word, _) = claim(word, 100 * MS, &p);
    let (running, forget) = succeed(word, 200 * MS, &p);
    assert!(!forget, "up 100 ms of 5 s");
    assert_eq!(running.stage(), Stage::Idle, "the claim is settled");
    assert_eq!(running.crashes(), 1);
    let (_, forget) = succeed(running, 5_100 * MS, &p);
    assert!(forget, "up 5 s");
    let (_, forget) = succeed(claim(Word::VACANT, 0, &p).0, MS, &p);
    assert!(forget, "no crash to keep");
    let (_, forget) = succeed(word, 200 * MS, &policy(75, 30_000));
    assert!(forget, "no probation: the spec's success");
}

#[test]
fn duration_max_policy_decides_without_panicking() {
    let p = Rules::new(BackendRecoveryPolicy::new(Duration::MAX, Duration::MAX));
    let (word, first) = crash(Word::VACANT, MAX_TICK, &p, 0);
    assert_eq!(first.retry_after(), Duration::MAX);
    let (word, second) = crash(word, 0, &p, 0);
    assert_eq!(second, refuse(Duration::MAX));
    assert!(matches!(
        claim(word, MAX_TICK, &p).1,
        BackendLaunchDecision::Refuse { .. }
    ));
    assert!(succeed(word, MAX_TICK, &p).1);
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
        let rules = Rules::new(BackendRecoveryPolicy::new(nanos(1), window));
        let (word, _) = crash(Word::VACANT, 1, &rules, 0);
        for now in [2, 3, MAX_TICK - 1, MAX_TICK] {
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
fn purge_waits_for_the_window_and_the_launch_to_settle() {
    let p = policy(75, 1_000);
    let (word, _) = crash(Word::VACANT, 0, &p, 0);
    assert_eq!(word.purgeable_from(&p), 0, "the window's start");
    let (claimed, _) = claim(word, 5_000 * MS, &p);
    // The claim lapses at 6 s (the timeout is clamped to the 1 s window).
    assert_eq!(claimed.purgeable_from(&p), 5_000 * MS);
    assert!(!expired(claimed, 5_500 * MS, Duration::from_secs(1), &p));
    assert!(expired(claimed, 6_000 * MS, Duration::from_secs(1), &p));
    assert_eq!(
        time_until_expired(
            claimed.purgeable_from(&p),
            5_500 * MS,
            Duration::from_secs(1)
        ),
        Duration::from_millis(500)
    );
    let (failed, _) = crash(claimed, 5_010 * MS, &p, 0);
    assert_eq!(failed.purgeable_from(&p), 5_010 * MS, "its new window");
    let long = policy(75, 30_000);
    let (claimed, _) = claim(Word::VACANT, 0, &long);
    let (failed, _) = crash(claimed, MS, &long, 0);
    assert_eq!(
        (claimed.purgeable_from(&long), failed.purgeable_from(&long)),
        (0, MS),
        "a crash of a claimed key: from the lapse to the new window"
    );
    assert_eq!(word.forgotten().crashes(), 0);
    assert_eq!(word.forgotten().stage(), Stage::Idle);
}
