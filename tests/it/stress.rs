//! Real threads: many rounds of 8 workers released together by a barrier.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState};

const THREADS: usize = 8;
const ROUNDS: u64 = 10_000;

/// Every round, all threads record the first crash of the round's shared key at one instant:
/// exactly one of them is granted the retry. Each thread also crashes a key of its own, twice,
/// and must see exactly the spec's answers for a key nobody else touches.
#[test]
fn one_retry_per_round_and_private_keys_stay_private() {
    let window = Duration::from_secs(30);
    let backoff = Duration::from_millis(75);
    let now = Instant::now();
    let state = Arc::new(BackendRecoveryState::<(u64, usize)>::with_policy(
        BackendRecoveryPolicy::new(backoff, window),
    ));
    let barrier = Arc::new(Barrier::new(THREADS));

    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (state, barrier) = (Arc::clone(&state), Arc::clone(&barrier));
            thread::spawn(move || {
                // A wrong answer is recorded, not asserted here: a worker that panicked would
                // leave the others waiting at the barrier for ever, and the test would hang
                // instead of failing. Every worker keeps going; the main thread asserts.
                let mut retries_per_round = Vec::with_capacity(ROUNDS as usize);
                let mut wrong = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait();
                    // Key (round, usize::MAX) is shared by all threads this round.
                    let shared = state.record_crash((round, usize::MAX), now);
                    let own_first = state.record_crash((round, thread), now);
                    let own_second = state.record_crash((round, thread), now);
                    let own_first_ok = own_first
                        == BackendRecoveryDecision::Retry {
                            retry_after: backoff,
                            attempt: 1,
                        };
                    let own_second_ok =
                        own_second.retry_after() == window && !own_second.is_retry();
                    let (retried, shared_ok) = match shared {
                        BackendRecoveryDecision::Retry {
                            retry_after,
                            attempt,
                        } => (1, (retry_after, attempt) == (backoff, 1)),
                        BackendRecoveryDecision::Refuse { retry_after, .. } => {
                            (0, retry_after == window)
                        }
                    };
                    retries_per_round.push(retried);
                    if !(own_first_ok && own_second_ok && shared_ok) {
                        wrong.push(format!(
                            "thread {thread} round {round}: own key {own_first:?} then \
                             {own_second:?}, shared key {shared:?}"
                        ));
                    }
                }
                (retries_per_round, wrong)
            })
        })
        .collect();

    let mut totals = vec![0u32; ROUNDS as usize];
    let mut wrong = Vec::new();
    for worker in workers {
        let (retries, wrong_answers) = worker.join().unwrap();
        for (round, retried) in retries.into_iter().enumerate() {
            totals[round] += retried;
        }
        wrong.extend(wrong_answers);
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers, the first: {:?}",
        wrong.len(),
        wrong.first()
    );
    for (round, retries) in totals.iter().enumerate() {
        assert_eq!(*retries, 1, "round {round} granted {retries} retries");
    }
    // One shared key plus one key per thread, every round.
    assert_eq!(state.len(), ROUNDS as usize * (THREADS + 1));
}
