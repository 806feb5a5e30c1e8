//! The crate wired into a broker's Hello router the obvious way, with real threads and the real
//! clock: the three ways such a router went wrong before launch claims, backoff at the gate and
//! probation, replayed against the crate's API.
//!
//! The router, per Hello: check the gate (`status`); serve a running backend; otherwise claim
//! the launch (`claim_launch`), and if this Hello won it, look at the backend again (another
//! launch may have finished since), launch, then report the outcome (`record_crash` on
//! failure, `record_success_at` on success). A backend found dead is reported
//! with `record_crash` first. Nothing else coordinates the threads: no lock of the router's own.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use backend_recovery::{
    BackendLaunchDecision, BackendRecoveryPolicy, BackendRecoveryState, BackendRecoveryStatus,
};

const BACKOFF: Duration = Duration::from_millis(20);
const WINDOW: Duration = Duration::from_secs(30);
const THREADS: usize = 8;
/// How long a test may run before it is declared stuck (never reached in a passing run).
const STUCK: Duration = Duration::from_secs(20);

/// What a Hello was told.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Served,
    /// Come back after this long (positive).
    Wait(Duration),
    Refused(Duration),
    /// This Hello launched the backend.
    Launched,
}

/// No instance runs.
const DOWN: u8 = 0;
/// An instance runs.
const UP: u8 = 1;
/// The instance died and a Hello that found it dead is reporting it: it is not up, and not
/// down yet for the router (a broker learns of a death once, then reports it, then forgets the
/// process; a Hello in between sees the dead process, not an empty slot).
const DYING: u8 = 2;
/// The instance started and its launcher is reporting the success of its first answer: no
/// other request reaches it before that (so a death is seen only after the success).
const STARTING: u8 = 3;

/// A simulated service: how its launches go, and whether an instance is up.
struct Service {
    /// Launches fail outright.
    fails_to_start: bool,
    /// An instance dies right after it answered its first request.
    dies_after_start: bool,
    /// [`DOWN`], [`STARTING`], [`UP`] or [`DYING`].
    instance: AtomicU8,
    launches: Mutex<Vec<Instant>>,
    crashes_reported: Mutex<Vec<Instant>>,
}

impl Service {
    fn new(fails_to_start: bool, dies_after_start: bool) -> Self {
        Service {
            fails_to_start,
            dies_after_start,
            instance: AtomicU8::new(DOWN),
            launches: Mutex::new(Vec::new()),
            crashes_reported: Mutex::new(Vec::new()),
        }
    }

    fn launches(&self) -> Vec<Instant> {
        self.launches.lock().unwrap().clone()
    }
}

/// One Hello for `service`, as the router handles it.
fn hello(state: &BackendRecoveryState<&'static str>, service: &Service) -> Answer {
    let key = "indexer";
    let now = Instant::now();
    match state.status(&key, now) {
        BackendRecoveryStatus::Unavailable { retry_after, .. } => {
            return Answer::Refused(retry_after);
        }
        BackendRecoveryStatus::BackingOff { retry_after, .. } => return Answer::Wait(retry_after),
        _ => {}
    }
    match service.instance.load(Ordering::SeqCst) {
        UP if !service.dies_after_start => return Answer::Served,
        UP => {
            // It died after starting: the Hello that finds it dead reports it, once.
            if service
                .instance
                .compare_exchange(UP, DYING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                service.crashes_reported.lock().unwrap().push(now);
                let decision = state.record_crash(key, now);
                service.instance.store(DOWN, Ordering::SeqCst);
                return match decision.is_retry() {
                    true => Answer::Wait(decision.retry_after()),
                    false => Answer::Refused(decision.retry_after()),
                };
            }
            return Answer::Wait(Duration::from_millis(1));
        }
        DYING | STARTING => return Answer::Wait(Duration::from_millis(1)),
        _ => {}
    }
    match state.claim_launch(&key, now) {
        BackendLaunchDecision::Launch => {}
        BackendLaunchDecision::Wait { retry_after } => return Answer::Wait(retry_after),
        BackendLaunchDecision::Refuse { retry_after, .. } => return Answer::Refused(retry_after),
        other => panic!("unknown claim answer {other:?}"),
    }
    // Look again before launching: a launch that finished between the look above and this
    // claim left the backend running and, healthy, nothing in the state to claim against. The
    // claim is then settled by the success it found, and the Hello goes where the others go.
    match service.instance.load(Ordering::SeqCst) {
        DOWN => {}
        found => {
            state.record_success_at(&key, now);
            return match found {
                UP if !service.dies_after_start => Answer::Served,
                _ => Answer::Wait(Duration::from_millis(1)),
            };
        }
    }
    service.launches.lock().unwrap().push(Instant::now());
    // Launching takes a moment, as a process spawn does.
    thread::sleep(Duration::from_millis(2));
    let done = Instant::now();
    if service.fails_to_start {
        service.crashes_reported.lock().unwrap().push(done);
        state.record_crash(key, done);
    } else {
        service.instance.store(STARTING, Ordering::SeqCst);
        state.record_success_at(&key, done);
        service.instance.store(UP, Ordering::SeqCst);
    }
    Answer::Launched
}

/// `THREADS` threads send Hellos from one instant on (a barrier), each until `done` says so,
/// sleeping what it is told to wait. Returns every answer, per thread.
fn hellos(
    state: &Arc<BackendRecoveryState<&'static str>>,
    service: &Arc<Service>,
    done: impl Fn(&Answer, &[Answer]) -> bool + Send + Sync + 'static,
) -> Vec<Vec<Answer>> {
    let start = Arc::new(Barrier::new(THREADS));
    let done = Arc::new(done);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (state, service, start, done) = (
                Arc::clone(state),
                Arc::clone(service),
                Arc::clone(&start),
                Arc::clone(&done),
            );
            thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let mut answers = Vec::new();
                loop {
                    assert!(began.elapsed() < STUCK, "stuck: {answers:?}");
                    let answer = hello(&state, &service);
                    answers.push(answer.clone());
                    if done(&answer, &answers) {
                        return answers;
                    }
                    // A router re-checks a waiting Hello now and then, at most what it was told.
                    match answer {
                        Answer::Wait(wait) => thread::sleep(wait.min(Duration::from_millis(5))),
                        _ => thread::sleep(Duration::from_micros(200)),
                    }
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn policy(min_uptime: Duration) -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::builder()
        .retry_backoff(BACKOFF)
        .budget_window(WINDOW)
        .min_uptime(min_uptime)
        .build()
        .unwrap()
}

/// Failure 1 and 2: eight threads Hello a service whose launches fail. Exactly one launch per
/// granted retry (plus the first), each after its backoff; everyone else is told to wait, with
/// a positive retry-after, and then refused once the budget is spent.
#[test]
fn eight_hellos_of_a_failing_service_launch_once_per_granted_retry_after_its_backoff() {
    let state = Arc::new(BackendRecoveryState::with_policy(policy(Duration::ZERO)));
    let service = Arc::new(Service::new(true, false));
    let answers = hellos(&state, &service, |answer, _| {
        matches!(answer, Answer::Refused(_))
    });

    let launches = service.launches();
    let crashes = service.crashes_reported.lock().unwrap().clone();
    let retries = state.metrics().retries_granted;
    assert_eq!(retries, 1, "the policy grants one retry per window");
    assert_eq!(
        launches.len() as u64,
        1 + retries,
        "one launch for the new backend and one per granted retry: {answers:?}"
    );
    assert!(launches.len() >= 2, "the granted retry was relaunched");
    // The relaunch came after the first launch's failure plus the backoff.
    assert!(
        launches[1] >= crashes[0] + BACKOFF,
        "relaunched {:?} after the crash, before its {BACKOFF:?} backoff",
        launches[1] - crashes[0]
    );
    for answer in answers.iter().flatten() {
        match answer {
            Answer::Wait(wait) | Answer::Refused(wait) => {
                assert!(!wait.is_zero(), "told to wait for nothing: {answers:?}")
            }
            Answer::Launched => {}
            Answer::Served => panic!("a backend that never started was served"),
        }
    }
    let waited = answers
        .iter()
        .flatten()
        .filter(|a| matches!(a, Answer::Wait(_)));
    assert!(waited.count() > 0, "nobody was told to wait: {answers:?}");
}

/// Failure 3: a service that dies right after every launch. With a probation, a success just
/// after a launch does not forget the crash before it, so the budget is spent and the service
/// refused; the launches are the first one and one per granted retry.
#[test]
fn a_service_dying_after_every_launch_is_refused_once_its_budget_is_spent() {
    let state = Arc::new(BackendRecoveryState::with_policy(policy(
        Duration::from_secs(10),
    )));
    let service = Arc::new(Service::new(false, true));
    let answers = hellos(&state, &service, |answer, _| {
        matches!(answer, Answer::Refused(_))
    });
    let retries = state.metrics().retries_granted;
    assert_eq!(retries, 1);
    assert_eq!(service.launches().len() as u64, 1 + retries, "{answers:?}");
    let gate = state.status(&"indexer", Instant::now());
    assert!(
        matches!(gate, BackendRecoveryStatus::Unavailable { .. }),
        "refused for the rest of the window: {gate:?}"
    );
}

/// The same service without a probation (the spec's success): every launch's success forgets
/// the crash before it, so the loop is never refused. Stopped after eight launches.
#[test]
fn without_a_probation_the_same_service_is_relaunched_for_ever() {
    let state = Arc::new(BackendRecoveryState::with_policy(policy(Duration::ZERO)));
    let service = Arc::new(Service::new(false, true));
    let launched = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&launched);
    let answers = hellos(&state, &service, move |answer, _| {
        if *answer == Answer::Launched {
            count.fetch_add(1, Ordering::SeqCst);
        }
        count.load(Ordering::SeqCst) >= 8 || matches!(answer, Answer::Refused(_))
    });
    let refused = answers
        .iter()
        .flatten()
        .any(|a| matches!(a, Answer::Refused(_)));
    assert!(
        !refused,
        "the spec's success forgets each crash: never refused"
    );
    assert!(launched.load(Ordering::SeqCst) >= 8);
}

/// A healthy service: launched once, by one Hello; every Hello after that is served at once,
/// never told to wait, even with a probation.
#[test]
fn a_healthy_service_is_launched_once_and_never_delayed() {
    let state = Arc::new(BackendRecoveryState::with_policy(policy(
        Duration::from_secs(10),
    )));
    let service = Arc::new(Service::new(false, false));
    let answers = hellos(&state, &service, |_, answers| answers.len() >= 200);
    assert_eq!(service.launches().len(), 1, "{answers:?}");
    for thread in &answers {
        // Before the one launch finished, a Hello is told to wait for it; after, served.
        let first_served = thread.iter().position(|a| *a == Answer::Served);
        let first_served = first_served.expect("every thread is served");
        assert!(
            thread[first_served..].iter().all(|a| *a == Answer::Served),
            "a running healthy backend was delayed: {thread:?}"
        );
    }
    assert_eq!(
        state.status(&"indexer", Instant::now()),
        BackendRecoveryStatus::Healthy
    );
    assert!(state.is_empty(), "nothing is kept for a healthy backend");
}
