//! A model as data: the operations each thread runs, every sequential order of them replayed on
//! the [`ReferenceModel`], and (under `cfg(loom)`) the same operations run on the real state in
//! every interleaving loom explores.
//!
//! `Scenario::check_sequential_consistency` checks small histories for sequential
//! consistency: a concurrent run must produce exactly the answers, final statuses, length and
//! counters (`metrics()`) of *some* sequential order of the threads' operations (each thread's
//! own order kept). The expected histories are computed, never guessed: every interleaving of
//! the operations is replayed on the independent [`ReferenceModel`].
//!
//! Not linearizability: loom has no real time, so no order of calls in time to respect beyond
//! each thread's own. An operation that completed before another started may still be placed
//! after it. Real-time order is checked on real threads (`tests/it/linearizability.rs`).

use std::time::{Duration, Instant};

use backend_recovery::{
    BackendLaunchDecision, BackendRecoveryDecision, BackendRecoveryMetrics, BackendRecoveryPolicy,
    BackendRecoveryStatus,
};

use crate::reference::ReferenceModel;

/// The key type of every model: small, `Copy`, and hashed the same way in every run.
pub type Key = &'static str;

/// Backoff of the models' policy; distinct from the window so a `Retry` and a `Refuse` never
/// carry the same delay by accident.
pub const BACKOFF: Duration = Duration::from_millis(75);

/// Budget window of the models' policy.
pub const WINDOW: Duration = Duration::from_secs(1);

/// The policy every model uses: [`BACKOFF`] and [`WINDOW`].
pub fn model_policy() -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::new(BACKOFF, WINDOW)
}

/// The decision [`model_policy`] gives a key's first crash in a window: a retry after
/// [`BACKOFF`].
pub fn first_retry() -> BackendRecoveryDecision {
    BackendRecoveryDecision::Retry {
        retry_after: BACKOFF,
        attempt: 1,
    }
}

/// Retries per window of [`multi_retry_policy`].
pub const RETRIES: u32 = 2;

/// The multi-retry settings of the models: [`RETRIES`] retries per window, the delay growing from
/// [`BACKOFF`] by a factor of 2 per attempt (75 ms, then 150 ms) up to a cap of [`WINDOW`], and
/// the same window.
pub fn multi_retry_policy() -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::builder()
        .retry_backoff(BACKOFF)
        .budget_window(WINDOW)
        .retries_per_window(RETRIES)
        .exponential_backoff(2.0, WINDOW)
        .build()
        .expect("the models' multi-retry policy is valid")
}

/// One call on the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `record_crash(key, now)`.
    Crash(Key, Instant),
    /// `record_success(key)`.
    Success(Key),
    /// `status(key, now)`.
    Status(Key, Instant),
    /// `record_crash_of(key, incarnation, now)`.
    CrashOf(Key, u64, Instant),
    /// `purge_expired(now)`.
    Purge(Instant),
    /// `claim_launch(key, now)`.
    Claim(Key, Instant),
    /// `record_success_at(key, now)`.
    SuccessAt(Key, Instant),
}

/// What one call answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A crash's decision.
    Decided(BackendRecoveryDecision),
    /// `record_success` returned.
    Forgot,
    /// A gate check's status.
    Reported(BackendRecoveryStatus),
    /// How many entries `purge_expired` removed.
    Purged(usize),
    /// A launch claim's answer.
    Claimed(BackendLaunchDecision),
    /// Whether `record_success_at` forgot the crashes.
    Succeeded(bool),
}

/// Every call of one run with its answer, and the state's length at the end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct History {
    /// Calls made before any thread started, in order.
    pub setup: Vec<(Op, Outcome)>,
    /// Each thread's calls, in its own program order.
    pub threads: Vec<Vec<(Op, Outcome)>>,
    /// Calls made after every thread finished, in order.
    pub after: Vec<(Op, Outcome)>,
    /// `len()` at the very end.
    pub len: usize,
    /// `metrics()` at the very end.
    pub metrics: BackendRecoveryMetrics,
}

impl History {
    /// The threads' crash decisions (`record_crash` and `record_crash_of`), thread by thread.
    pub fn thread_decisions(&self) -> Vec<&BackendRecoveryDecision> {
        self.threads
            .iter()
            .flatten()
            .filter_map(|(_, outcome)| match outcome {
                Outcome::Decided(decision) => Some(decision),
                _ => None,
            })
            .collect()
    }

    /// Every thread's launch-claim answers, thread by thread.
    pub fn thread_claims(&self) -> Vec<&BackendLaunchDecision> {
        self.threads
            .iter()
            .flatten()
            .filter_map(|(_, outcome)| match outcome {
                Outcome::Claimed(claim) => Some(claim),
                _ => None,
            })
            .collect()
    }

    /// The setup's crash decisions (`record_crash` and `record_crash_of`), in order.
    pub fn setup_decisions(&self) -> Vec<&BackendRecoveryDecision> {
        self.setup
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                Outcome::Decided(decision) => Some(decision),
                _ => None,
            })
            .collect()
    }

    /// Every `record_crash` of `key` with its instant and decision, setup included (reports by
    /// incarnation are not listed: a duplicate is not a crash).
    pub fn crashes_of(&self, key: Key) -> Vec<(Instant, &BackendRecoveryDecision)> {
        self.setup
            .iter()
            .chain(self.threads.iter().flatten())
            .filter_map(|(op, outcome)| match (op, outcome) {
                (Op::Crash(crashed, at), Outcome::Decided(decision)) if *crashed == key => {
                    Some((*at, decision))
                }
                _ => None,
            })
            .collect()
    }

    /// The decision answered to call `index` of thread `thread`, which must be a crash or a
    /// report by incarnation.
    pub fn decision(&self, thread: usize, index: usize) -> &BackendRecoveryDecision {
        match &self.threads[thread][index] {
            (_, Outcome::Decided(decision)) => decision,
            other => panic!("call {index} of thread {thread} is not a crash: {other:?}"),
        }
    }

    /// The status answered by the `index`-th call after the threads finished.
    pub fn final_status(&self, index: usize) -> &BackendRecoveryStatus {
        match &self.after[index] {
            (_, Outcome::Reported(status)) => status,
            other => panic!("final call {index} is not a status: {other:?}"),
        }
    }

    /// How many entries call `index` of thread `thread` purged; it must be `purge_expired`.
    pub fn purged(&self, thread: usize, index: usize) -> usize {
        match &self.threads[thread][index] {
            (_, Outcome::Purged(removed)) => *removed,
            other => panic!("call {index} of thread {thread} is not a purge: {other:?}"),
        }
    }
}

/// Operations to run: some before the threads, one list per thread, some after them.
#[derive(Clone, Debug)]
pub struct Scenario {
    policy: BackendRecoveryPolicy,
    /// `None`: no cap.
    max_entries: Option<usize>,
    setup: Vec<Op>,
    threads: Vec<Vec<Op>>,
    after: Vec<Op>,
}

impl Scenario {
    /// A scenario with no operations yet, on a state with `policy`.
    pub fn new(policy: BackendRecoveryPolicy) -> Self {
        Scenario {
            policy,
            max_entries: None,
            setup: Vec::new(),
            threads: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Caps the state (and the reference) at `max_entries` keys: `with_max_entries`.
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// Operations run by the model's main thread before any other thread starts.
    pub fn setup(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.setup.extend(ops);
        self
    }

    /// One more concurrent thread, running `ops` in order. The first one runs on the model's
    /// main thread, so `n` threads cost `n - 1` spawns.
    pub fn thread(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.threads.push(ops.into_iter().collect());
        self
    }

    /// Operations run by the main thread after every thread finished.
    pub fn after(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.after.extend(ops);
        self
    }

    /// The distinct histories of every sequential order of the threads' operations.
    pub fn sequential_histories(&self) -> Vec<History> {
        let mut histories = Vec::new();
        let mut next = vec![0; self.threads.len()];
        self.interleave(&mut next, &mut Vec::new(), &mut histories);
        histories
    }

    /// Depth-first over the interleavings: `next[t]` is thread `t`'s next operation, `order` the
    /// threads picked so far.
    fn interleave(&self, next: &mut [usize], order: &mut Vec<usize>, out: &mut Vec<History>) {
        let mut complete = true;
        for thread in 0..self.threads.len() {
            if next[thread] < self.threads[thread].len() {
                complete = false;
                next[thread] += 1;
                order.push(thread);
                self.interleave(next, order, out);
                order.pop();
                next[thread] -= 1;
            }
        }
        if complete {
            let history = self.replay(order);
            if !out.contains(&history) {
                out.push(history);
            }
        }
    }

    /// The history of one sequential order on the reference.
    fn replay(&self, order: &[usize]) -> History {
        let mut reference = ReferenceModel::new(self.policy);
        if let Some(max_entries) = self.max_entries {
            reference = reference.with_max_entries(max_entries);
        }
        let mut run = |op: Op| (op, apply_to_reference(&mut reference, op));
        let setup = self.setup.iter().map(|&op| run(op)).collect();
        let mut threads = vec![Vec::new(); self.threads.len()];
        for &thread in order {
            let op = self.threads[thread][threads[thread].len()];
            threads[thread].push(run(op));
        }
        let after = self.after.iter().map(|&op| run(op)).collect();
        History {
            setup,
            threads,
            after,
            len: reference.len(),
            metrics: reference.metrics(),
        }
    }
}

fn apply_to_reference(reference: &mut ReferenceModel<Key>, op: Op) -> Outcome {
    match op {
        Op::Crash(key, now) => Outcome::Decided(reference.record_crash(key, now)),
        Op::Success(key) => {
            reference.record_success(&key);
            Outcome::Forgot
        }
        Op::Status(key, now) => Outcome::Reported(reference.status(&key, now)),
        Op::CrashOf(key, incarnation, now) => {
            Outcome::Decided(reference.record_crash_of(key, incarnation, now).decision)
        }
        Op::Purge(now) => Outcome::Purged(reference.purge_expired(now)),
        Op::Claim(key, now) => Outcome::Claimed(reference.claim_launch(key, now)),
        Op::SuccessAt(key, now) => Outcome::Succeeded(reference.record_success_at(&key, now)),
    }
}

#[cfg(loom)]
mod under_loom {
    use std::hash::BuildHasher;

    use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};

    use super::{History, Key, Op, Outcome, Scenario};
    use crate::model::run_model;

    impl Scenario {
        /// Model-checks the scenario for sequential consistency: in every interleaving loom
        /// explores (within its bounds), `properties` must hold and the history must equal one
        /// of the sequential orders' (each thread's order kept; no real-time order, which loom
        /// does not have).
        ///
        /// `make_state` builds a fresh state for each interleaving. `properties` is first run
        /// on every sequential history, so a property that the spec itself breaks fails here,
        /// before loom starts, and a failure under loom is a concurrency bug.
        pub fn check_sequential_consistency<S, M, P>(self, name: &str, make_state: M, properties: P)
        where
            S: BuildHasher + Clone + Send + Sync + 'static,
            M: Fn(BackendRecoveryPolicy) -> BackendRecoveryState<Key, S> + Send + Sync + 'static,
            P: Fn(&History) + Send + Sync + 'static,
        {
            assert!(
                !self.threads.is_empty(),
                "a model needs at least one thread"
            );
            let expected = self.sequential_histories();
            for history in &expected {
                properties(history);
            }
            run_model(name, move || {
                let mut state = make_state(self.policy);
                if let Some(max_entries) = self.max_entries {
                    state = state.with_max_entries(max_entries);
                }
                let observed = self.run_once(state);
                properties(&observed);
                assert!(
                    expected.contains(&observed),
                    "sequential consistency: no sequential order produces this history\n\
                     observed: {observed:#?}\nsequential orders give: {expected:#?}"
                );
            });
        }

        /// One interleaving: setup, the threads concurrently, then the final calls.
        fn run_once<S>(&self, state: BackendRecoveryState<Key, S>) -> History
        where
            S: BuildHasher + Clone + Send + Sync + 'static,
        {
            let state = loom::sync::Arc::new(state);
            let setup = apply_all(&state, &self.setup);
            let spawned: Vec<_> = self.threads[1..]
                .iter()
                .map(|ops| {
                    let (state, ops) = (loom::sync::Arc::clone(&state), ops.clone());
                    loom::thread::spawn(move || apply_all(&state, &ops))
                })
                .collect();
            let mut threads = vec![apply_all(&state, &self.threads[0])];
            threads.extend(
                spawned
                    .into_iter()
                    .map(|thread| thread.join().expect("a model thread panicked")),
            );
            let after = apply_all(&state, &self.after);
            History {
                setup,
                threads,
                after,
                len: state.len(),
                metrics: state.metrics(),
            }
        }
    }

    fn apply_all<S: BuildHasher + Clone>(
        state: &BackendRecoveryState<Key, S>,
        ops: &[Op],
    ) -> Vec<(Op, Outcome)> {
        ops.iter().map(|&op| (op, apply(state, op))).collect()
    }

    fn apply<S: BuildHasher + Clone>(state: &BackendRecoveryState<Key, S>, op: Op) -> Outcome {
        match op {
            Op::Crash(key, now) => Outcome::Decided(state.record_crash(key, now)),
            Op::Success(key) => {
                state.record_success(&key);
                Outcome::Forgot
            }
            Op::Status(key, now) => Outcome::Reported(state.status(&key, now)),
            Op::CrashOf(key, incarnation, now) => {
                Outcome::Decided(state.record_crash_of(key, incarnation, now).decision)
            }
            Op::Purge(now) => Outcome::Purged(state.purge_expired(now)),
            Op::Claim(key, now) => Outcome::Claimed(state.claim_launch(&key, now)),
            Op::SuccessAt(key, now) => Outcome::Succeeded(state.record_success_at(&key, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_single_crashes_have_one_history_per_winner() {
        let at = Instant::now();
        let scenario = Scenario::new(model_policy())
            .thread([Op::Crash("a", at)])
            .thread([Op::Crash("a", at)]);
        let histories = scenario.sequential_histories();
        assert_eq!(histories.len(), 2);
        for history in &histories {
            let retries = history
                .thread_decisions()
                .iter()
                .filter(|d| d.is_retry())
                .count();
            assert_eq!(retries, 1);
        }
    }

    #[test]
    fn three_first_crashes_with_two_retries_grant_attempts_one_and_two() {
        let at = Instant::now();
        let mut scenario = Scenario::new(multi_retry_policy());
        for _ in 0..3 {
            scenario = scenario.thread([Op::Crash("a", at)]);
        }
        let histories = scenario.sequential_histories();
        // The refused crash is any of the three, and the retries go to the other two in either
        // order: every thread can get each of the three answers.
        assert_eq!(histories.len(), 6);
        for history in &histories {
            let mut delays: Vec<_> = history
                .thread_decisions()
                .iter()
                .map(|d| (d.is_retry(), d.retry_after()))
                .collect();
            delays.sort();
            assert_eq!(
                delays,
                [(false, WINDOW), (true, BACKOFF), (true, 2 * BACKOFF)]
            );
        }
    }

    #[test]
    fn program_order_is_kept() {
        let at = Instant::now();
        let scenario = Scenario::new(model_policy())
            .thread([Op::Crash("a", at), Op::Crash("a", at)])
            .thread([Op::Status("a", at)]);
        // Three orders: the status before, between or after the two crashes.
        assert_eq!(scenario.sequential_histories().len(), 3);
        for history in scenario.sequential_histories() {
            assert!(history.decision(0, 0).is_retry());
            assert!(!history.decision(0, 1).is_retry());
        }
    }
}
