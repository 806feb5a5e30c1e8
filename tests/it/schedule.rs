//! Supervisor-grade policies through the state: retries per window, exponential backoff up to a
//! cap, deterministic jitter.

use std::time::{Duration, Instant};

use crate::expected::{refuse, retry};
use backend_recovery::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState, BackendRecoveryStatus,
    PolicyError,
};

const MS: Duration = Duration::from_millis(1);

#[test]
fn exponential_schedule_is_pinned_exactly() {
    let policy = BackendRecoveryPolicy::builder()
        .retry_backoff(100 * MS)
        .budget_window(Duration::from_secs(30))
        .retries_per_window(5)
        .exponential_backoff(2.0, Duration::from_secs(1))
        .build()
        .unwrap();
    let now = Instant::now();
    let s = BackendRecoveryState::<&str>::with_policy(policy);
    let at = |secs: u64| now + Duration::from_secs(secs);
    assert_eq!(s.record_crash("a", at(0)), retry(100 * MS, 1));
    assert_eq!(s.record_crash("a", at(1)), retry(200 * MS, 2));
    assert_eq!(s.record_crash("a", at(2)), retry(400 * MS, 3));
    assert_eq!(
        s.status("a", at(2)),
        BackendRecoveryStatus::BackingOff {
            crashes_in_window: 3,
            retry_after: 400 * MS,
        }
    );
    assert_eq!(
        s.status("a", at(2) + 400 * MS),
        BackendRecoveryStatus::Recovering {
            crashes_in_window: 3,
            window_remaining: Duration::from_secs(28) - 400 * MS,
        }
    );
    assert_eq!(s.record_crash("a", at(3)), retry(800 * MS, 4));
    assert_eq!(s.record_crash("a", at(4)), retry(1000 * MS, 5));
    // Budget spent: refused for the rest of the window opened by the first crash.
    assert_eq!(s.record_crash("a", at(5)), refuse(Duration::from_secs(25)));
    assert_eq!(s.record_crash("a", at(6)), refuse(Duration::from_secs(24)));
    assert_eq!(
        s.status("a", at(6)).retry_after(),
        Some(Duration::from_secs(24))
    );
    // A new window starts the schedule over.
    assert_eq!(s.record_crash("a", at(30)), retry(100 * MS, 1));
}

#[test]
fn zero_retries_refuse_every_crash() {
    let policy = BackendRecoveryPolicy::builder()
        .budget_window(Duration::from_secs(10))
        .retries_per_window(0)
        .build()
        .unwrap();
    let now = Instant::now();
    let s = BackendRecoveryState::<&str>::with_policy(policy);
    assert_eq!(s.status("a", now), BackendRecoveryStatus::Healthy);
    assert_eq!(s.record_crash("a", now), refuse(Duration::from_secs(10)));
    assert_eq!(
        s.record_crash("a", now + Duration::from_secs(4)),
        refuse(Duration::from_secs(6))
    );
    assert!(!s.status("a", now).is_available());
}

#[test]
fn duplicates_replay_the_attempt_they_duplicate() {
    let policy = BackendRecoveryPolicy::builder()
        .retry_backoff(100 * MS)
        .retries_per_window(3)
        .exponential_backoff(3.0, Duration::from_secs(60))
        .build()
        .unwrap();
    let now = Instant::now();
    let s = BackendRecoveryState::<&str>::with_policy(policy);
    assert_eq!(s.record_crash_of("a", 1, now).decision, retry(100 * MS, 1));
    assert_eq!(s.record_crash_of("a", 2, now).decision, retry(300 * MS, 2));
    assert_eq!(
        s.record_crash_of("a", 2, now + 100 * MS).decision,
        retry(200 * MS, 2)
    );
    assert_eq!(s.record_crash_of("a", 3, now).decision, retry(900 * MS, 3));
    assert!(!s.record_crash_of("a", 4, now).decision.is_retry());
}

fn jittered(jitter: f64) -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::builder()
        .retry_backoff(Duration::from_secs(1))
        .budget_window(Duration::from_secs(10))
        .retries_per_window(2)
        .exponential_backoff(2.0, Duration::from_millis(2_500))
        .jitter(jitter)
        .build()
        .unwrap()
}

#[test]
fn jitter_is_the_same_for_a_key_in_every_window_and_every_state() {
    let now = Instant::now();
    let first = BackendRecoveryState::<String>::with_policy(jittered(0.5));
    let second = BackendRecoveryState::<String>::with_policy(jittered(0.5));
    for key in ["indexer", "scheduler", "mailer"] {
        let a = first.record_crash(key.to_string(), now);
        let b = second.record_crash(key.to_string(), now + Duration::from_secs(3));
        let again = first.record_crash(key.to_string(), now + Duration::from_secs(20));
        assert_eq!(a, b, "{key}: same key, another state");
        assert_eq!(a, again, "{key}: same key, a later window");
        assert_eq!(
            a.retry_after(),
            jittered(0.5).retry_delay(1, backend_recovery::jitter_seed(key))
        );
    }
}

#[test]
fn jitter_spreads_a_thousand_keys_across_its_range_and_respects_the_cap() {
    let now = Instant::now();
    let s = BackendRecoveryState::<u32>::with_policy(jittered(0.5));
    let mut bins = [0u32; 10];
    for key in 0..1_000 {
        let first = s.record_crash(key, now).retry_after();
        assert!(first >= Duration::from_secs(1) && first < Duration::from_millis(1_500));
        // Tenths of the allowed range [1 s, 1.5 s).
        let bin = (first - Duration::from_secs(1)).as_nanos() * 10 / 500_000_000;
        bins[bin as usize] += 1;
        // The second retry is 2 s plus up to 1 s of jitter, but never past the 2.5 s cap.
        let second = s.record_crash(key, now).retry_after();
        assert!(second >= Duration::from_secs(2) && second <= Duration::from_millis(2_500));
    }
    // About 100 per bin; every tenth of the range is used.
    assert!(bins.iter().all(|&n| n >= 50), "{bins:?}");
}

#[test]
fn builder_rejects_settings_that_make_no_sense() {
    let b = BackendRecoveryPolicy::builder;
    assert!(matches!(
        b().retries_per_window(15).build(),
        Err(PolicyError::TooManyRetries { requested: 15, .. })
    ));
    assert!(matches!(
        b().exponential_backoff(0.99, Duration::MAX).build(),
        Err(PolicyError::FactorBelowOne { .. })
    ));
    assert!(matches!(
        b().jitter(1.01).build(),
        Err(PolicyError::JitterOutOfRange { .. })
    ));
}

#[test]
fn out_of_range_fields_written_directly_are_clamped_by_the_state() {
    let mut policy = BackendRecoveryPolicy::default();
    policy.retries_per_window = u32::MAX;
    policy.jitter_per_mille = u32::MAX;
    let s = BackendRecoveryState::<&str>::with_policy(policy);
    assert_eq!(s.policy().retries_per_window, 14);
    assert_eq!(s.policy().jitter_per_mille, 1000);
    let now = Instant::now();
    for attempt in 1..=14 {
        assert!(
            matches!(s.record_crash("a", now), BackendRecoveryDecision::Retry { attempt: a, .. } if a == attempt)
        );
    }
    assert!(!s.record_crash("a", now).is_retry());
}
