//! The spec, case by case, through the public API.

use std::time::{Duration, Instant};

use crate::expected::{refuse, retry};
use backend_recovery::{
    BackendKey, BackendRecoveryPolicy, BackendRecoveryRefusalReason, BackendRecoveryState,
    BackendRecoveryStatus, BrokerInstanceKey, DEFAULT_RECOVERY_BUDGET_WINDOW,
    DEFAULT_RECOVERY_RETRY_BACKOFF,
};

const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

fn policy(backoff: Duration, window: Duration) -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::new(backoff, window)
}

fn state(backoff: Duration, window: Duration) -> BackendRecoveryState<String> {
    BackendRecoveryState::with_policy(policy(backoff, window))
}

fn key(name: &str) -> String {
    name.to_string()
}

#[test]
fn instant_taken_before_the_state_is_exact() {
    // The plain case: the instant predates the state.
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    assert_eq!(
        s.record_crash(key("a"), now),
        retry(Duration::from_millis(75), 1)
    );
    assert_eq!(
        s.record_crash(key("a"), now + Duration::from_secs(2)),
        refuse(Duration::from_secs(28))
    );
}

#[test]
fn second_crash_refuses_with_the_exact_rest_of_the_window() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    s.record_crash(key("a"), now);
    assert_eq!(
        s.record_crash(key("a"), now + Duration::from_nanos(1_234_567_891)),
        refuse(Duration::from_secs(30) - Duration::from_nanos(1_234_567_891))
    );
    // Every later crash in the window is refused too, with the rest measured from its instant.
    assert_eq!(
        s.record_crash(key("a"), now + Duration::from_secs(29)),
        refuse(Duration::from_secs(1))
    );
}

#[test]
fn crash_exactly_at_the_window_end_opens_a_new_window() {
    let now = Instant::now();
    let window = Duration::from_secs(30);
    let s = state(Duration::from_millis(75), window);
    s.record_crash(key("a"), now);
    assert_eq!(
        s.record_crash(key("a"), now + window - Duration::from_nanos(1)),
        refuse(Duration::from_nanos(1))
    );
    assert_eq!(
        s.record_crash(key("a"), now + window),
        retry(Duration::from_millis(75), 1)
    );
    // The new window starts at the crash that opened it.
    assert_eq!(
        s.record_crash(key("a"), now + window + Duration::from_secs(10)),
        refuse(Duration::from_secs(20))
    );
}

#[test]
fn success_forgets_the_key() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    s.record_crash(key("a"), now);
    s.record_crash(key("a"), now);
    assert_eq!(s.len(), 1);
    s.record_success("a");
    assert!(s.is_empty());
    assert_eq!(s.status("a", now), BackendRecoveryStatus::Healthy);
    assert_eq!(
        s.record_crash(key("a"), now),
        retry(Duration::from_millis(75), 1)
    );
}

#[test]
fn keys_are_independent() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    s.record_crash(key("a"), now);
    s.record_crash(key("a"), now);
    assert_eq!(
        s.record_crash(key("b"), now),
        retry(Duration::from_millis(75), 1)
    );
    s.record_success("b");
    assert!(!s.status("a", now).is_available());
}

#[test]
fn instants_out_of_order_count_as_zero_elapsed() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    s.record_crash(key("a"), now + Duration::from_secs(5));
    assert_eq!(
        s.record_crash(key("a"), now),
        refuse(Duration::from_secs(30))
    );
    assert_eq!(
        s.status("a", now),
        BackendRecoveryStatus::Unavailable {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_secs(30),
        }
    );
    // The window still runs from its first crash.
    assert_eq!(
        s.record_crash(key("a"), now + Duration::from_secs(35)),
        retry(Duration::from_millis(75), 1)
    );
}

#[test]
fn zero_durations_clamp_to_one_millisecond() {
    let now = Instant::now();
    let s = state(Duration::ZERO, Duration::ZERO);
    assert_eq!(s.policy().retry_backoff, Duration::from_millis(1));
    assert_eq!(s.policy().budget_window, Duration::from_millis(1));
    assert_eq!(
        s.record_crash(key("a"), now),
        retry(Duration::from_millis(1), 1)
    );
    assert_eq!(
        s.record_crash(key("a"), now),
        refuse(Duration::from_millis(1))
    );
    assert!(
        s.record_crash(key("a"), now + Duration::from_millis(1))
            .is_retry()
    );
}

#[test]
fn zero_written_into_a_policy_field_is_clamped_by_the_state() {
    let mut p = BackendRecoveryPolicy::default();
    p.budget_window = Duration::ZERO;
    let s = BackendRecoveryState::<String>::with_policy(p);
    assert_eq!(s.policy().budget_window, Duration::from_millis(1));
}

#[test]
fn defaults_are_the_brokers() {
    let s = BackendRecoveryState::<String>::new();
    assert_eq!(s.policy().retry_backoff, DEFAULT_RECOVERY_RETRY_BACKOFF);
    assert_eq!(s.policy().budget_window, DEFAULT_RECOVERY_BUDGET_WINDOW);
    assert_eq!(DEFAULT_RECOVERY_RETRY_BACKOFF, Duration::from_millis(250));
    assert_eq!(DEFAULT_RECOVERY_BUDGET_WINDOW, Duration::from_secs(30));
}

#[test]
fn duration_max_policies_decide_without_panicking() {
    let now = Instant::now();
    let s = state(Duration::MAX, Duration::MAX);
    assert_eq!(s.record_crash(key("a"), now), retry(Duration::MAX, 1));
    let later = now + 10 * YEAR;
    assert_eq!(
        s.record_crash(key("a"), later),
        refuse(Duration::MAX - 10 * YEAR)
    );
    assert_eq!(s.record_crash(key("a"), now), refuse(Duration::MAX));
    let status = s.status("a", later);
    assert_eq!(status.retry_after(), Some(Duration::MAX - 10 * YEAR));
    assert_eq!(status.retry_after_ms(), Some(u64::MAX));
}

#[test]
fn thirty_years_later_is_still_exact_to_the_nanosecond() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    let later = now + 30 * YEAR;
    assert!(s.record_crash(key("a"), later).is_retry());
    assert_eq!(
        s.record_crash(key("a"), later + Duration::from_nanos(29_999_999_999)),
        refuse(Duration::from_nanos(1))
    );
    assert!(
        s.record_crash(key("a"), later + Duration::from_secs(30))
            .is_retry()
    );
}

#[test]
fn a_century_later_saturates_without_panicking() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    // Past the exact range every instant reads as the same last tick: the window never closes
    // on its own, which is the documented, conservative answer.
    let far = now + 100 * YEAR;
    assert!(s.record_crash(key("a"), far).is_retry());
    assert_eq!(
        s.record_crash(key("a"), far + YEAR),
        refuse(Duration::from_secs(30))
    );
    assert!(!s.status("a", far + 2 * YEAR).is_available());
}

#[test]
fn instants_from_before_the_state_was_built_are_exact() {
    let now = Instant::now();
    // Within the epoch's lookback when the platform's clock reaches that far back.
    let Some(long_ago) = now.checked_sub(YEAR) else {
        return;
    };
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    assert!(s.record_crash(key("a"), long_ago).is_retry());
    assert_eq!(
        s.record_crash(key("a"), long_ago + Duration::from_secs(1)),
        refuse(Duration::from_secs(29))
    );
}

#[test]
fn status_agrees_with_what_the_next_crash_returns() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    assert_eq!(s.status("a", now), BackendRecoveryStatus::Healthy);
    assert!(s.record_crash(key("a"), now).is_retry());

    let t = now + Duration::from_secs(4);
    assert_eq!(
        s.status("a", t),
        BackendRecoveryStatus::Recovering {
            crashes_in_window: 1,
            window_remaining: Duration::from_secs(26),
        }
    );
    let refused = s.record_crash(key("a"), t);
    assert_eq!(refused, refuse(Duration::from_secs(26)));

    let u = now + Duration::from_secs(10);
    let status = s.status("a", u);
    assert_eq!(
        status.retry_after(),
        s.record_crash(key("a"), u).retry_after().into()
    );
    assert_eq!(status.retry_after_ms(), Some(20_000));

    let closed = now + Duration::from_secs(30);
    assert_eq!(s.status("a", closed), BackendRecoveryStatus::Healthy);
    assert!(s.record_crash(key("a"), closed).is_retry());
}

#[test]
fn status_never_creates_an_entry() {
    let now = Instant::now();
    let s = state(Duration::from_millis(75), Duration::from_secs(30));
    assert_eq!(s.status("never-seen", now), BackendRecoveryStatus::Healthy);
    s.record_success("never-seen");
    assert!(s.is_empty());
}

#[test]
fn default_key_type_is_the_brokers_backend_key() {
    let now = Instant::now();
    let s = BackendRecoveryState::new();
    let indexer = BackendKey::new(BrokerInstanceKey::Shared, "indexer", "1.0");
    let private = BackendKey::new(
        BrokerInstanceKey::Private {
            service_name: "indexer".into(),
        },
        "indexer",
        "1.0",
    );
    assert!(s.record_crash(indexer.clone(), now).is_retry());
    assert!(s.record_crash(private.clone(), now).is_retry());
    assert!(!s.record_crash(indexer.clone(), now).is_retry());
    s.record_success(&indexer);
    assert_eq!(s.len(), 1);
    assert!(matches!(
        s.status(&private, now),
        BackendRecoveryStatus::BackingOff { .. }
    ));
}

#[test]
fn state_is_send_and_sync_and_shareable_as_a_static() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BackendRecoveryState>();
    assert_send_sync::<BackendRecoveryState<String>>();
    let debug = format!(
        "{:?}",
        state(Duration::from_millis(75), Duration::from_secs(30))
    );
    assert!(debug.contains("len: 0"), "{debug}");
}
