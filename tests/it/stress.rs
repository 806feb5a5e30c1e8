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
                let mut retries_per_round = Vec::with_capacity(ROUNDS as usize);
                for round in 0..ROUNDS {
                    barrier.wait();
                    // Key (round, usize::MAX) is shared by all threads this round.
                    let shared = state.record_crash((round, usize::MAX), now);
                    let own_first = state.record_crash((round, thread), now);
                    let own_second = state.record_crash((round, thread), now);
                    assert_eq!(
                        own_first,
                        BackendRecoveryDecision::Retry {
                            retry_after: backoff,
                            attempt: 1
                        },
                        "thread {thread} round {round}: another thread touched my key"
                    );
                    assert_eq!(own_second.retry_after(), window);
                    assert!(!own_second.is_retry());
                    match shared {
                        BackendRecoveryDecision::Retry {
                            retry_after,
                            attempt,
                        } => {
                            assert_eq!((retry_after, attempt), (backoff, 1));
                            retries_per_round.push(1);
                        }
                        BackendRecoveryDecision::Refuse { retry_after, .. } => {
                            assert_eq!(retry_after, window);
                            retries_per_round.push(0);
                        }
                    }
                }
                retries_per_round
            })
        })
        .collect();

    let mut totals = vec![0u32; ROUNDS as usize];
    for worker in workers {
        for (round, retried) in worker.join().unwrap().into_iter().enumerate() {
            totals[round] += retried;
        }
    }
    for (round, retries) in totals.iter().enumerate() {
        assert_eq!(*retries, 1, "round {round} granted {retries} retries");
    }
    // One shared key plus one key per thread, every round.
    assert_eq!(state.len(), ROUNDS as usize * (THREADS + 1));
}
