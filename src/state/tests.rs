use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::cache::lookups_to_cache;

/// How a test shows, without a timeout, that a thread blocks on a guard the test holds.
///
/// A timeout proves nothing: a thread that would not block may simply not have run yet on
/// a loaded machine. Instead every event takes a number from one sequence. The thread takes
/// one when its operation returns (`finished`); the test waits until the thread sleeps in
/// the kernel with the operation unfinished, then takes one when it releases the guard
/// (`released`), and requires `finished > released`. The operation sleeps in nothing but a
/// lock (no I/O, no channel), so a sleeping thread is parked on the lock, and an operation
/// that did not block returns, and takes its number, before the test's: the test then
/// fails, however the threads were scheduled.
///
/// Linux only: a thread's scheduler state is read from `/proc` (elsewhere these controls are
/// skipped).
struct Blocking {
    sequence: AtomicU64,
    /// Set just before the operation starts: from then on the thread sleeps only on a lock.
    started: AtomicBool,
    /// The blocking operation's number once it has returned; 0 before.
    finished: AtomicU64,
}

impl Blocking {
    fn new() -> Self {
        Blocking {
            sequence: AtomicU64::new(1),
            started: AtomicBool::new(false),
            finished: AtomicU64::new(0),
        }
    }

    /// The calling thread's `/proc` directory, for [`wait_until_parked`](Self::wait_until_parked).
    fn this_thread() -> PathBuf {
        let task = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        PathBuf::from("/proc").join(task)
    }

    /// Runs `operation`, the one that must block, and records when it returned.
    fn run<T>(&self, operation: impl FnOnce() -> T) -> T {
        self.started.store(true, SeqCst);
        let answer = operation();
        self.finished
            .store(self.sequence.fetch_add(1, SeqCst), SeqCst);
        answer
    }

    /// Waits until `thread`, which has called [`run`](Self::run), sleeps with its operation
    /// unfinished; fails if the operation returns first.
    fn wait_until_parked(&self, thread: &Path, what: &str) {
        loop {
            assert_eq!(
                self.finished.load(SeqCst),
                0,
                "{what} completed while the guard was held"
            );
            if !self.started.load(SeqCst) {
                std::thread::yield_now();
                continue;
            }
            let stat = std::fs::read_to_string(thread.join("stat")).expect("the thread's stat");
            // The state follows the parenthesised command name: `S` is an interruptible
            // sleep, as in a futex wait.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if state == Some("S") {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Releases `guard`; returns the release's number.
    fn release(&self, guard: impl Sized) -> u64 {
        let released = self.sequence.fetch_add(1, SeqCst);
        drop(guard);
        released
    }

    /// After the blocked operation returned: it returned after the release.
    fn assert_returned_after(&self, released: u64, what: &str) {
        let finished = self.finished.load(SeqCst);
        assert!(
            finished > released,
            "{what} returned (event {finished}) before the guard was released (event \
             {released})"
        );
    }
}

/// Every key hashes alike, so all keys share one shard.
#[derive(Clone, Default)]
struct OneShard;
struct ZeroHasher;
impl BuildHasher for OneShard {
    type Hasher = ZeroHasher;
    fn build_hasher(&self) -> ZeroHasher {
        ZeroHasher
    }
}
impl std::hash::Hasher for ZeroHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

/// A crash of a key that has an entry completes while another thread holds that key's shard
/// read guard, so it takes no exclusive lock. As a control, a crash of a new key in the same
/// shard, which must insert under the write guard, waits until the guard is released.
#[test]
fn crash_of_a_known_key_takes_no_exclusive_lock() {
    let now = Instant::now();
    let state = BackendRecoveryState::<u32, OneShard>::with_policy_and_hasher(
        BackendRecoveryPolicy::default(),
        OneShard,
    );
    assert!(state.record_crash(1, now).is_retry());

    let state = &state;
    let blocking = &Blocking::new();
    std::thread::scope(|scope| {
        let guard = state.cells.hold_read_guard(&1);

        let (known_done, known) = mpsc::channel();
        scope.spawn(move || known_done.send(state.record_crash(1, now)).unwrap());
        // Blocking here would mean the known-key path wants the write guard: the test would
        // fail by timeout rather than hang forever.
        let decision = known.recv_timeout(Duration::from_secs(60));
        assert!(matches!(&decision, Ok(d) if !d.is_retry()), "{decision:?}");

        // The control (see `Blocking`).
        if !cfg!(target_os = "linux") {
            return;
        }
        let (thread_is, thread) = mpsc::channel();
        let inserter = scope.spawn(move || {
            thread_is.send(Blocking::this_thread()).unwrap();
            blocking.run(|| state.record_crash(2, now))
        });
        let what = "an insert into a read-locked shard";
        blocking.wait_until_parked(&thread.recv().unwrap(), what);
        let released = blocking.release(guard);
        assert!(inserter.join().unwrap().is_retry());
        blocking.assert_returned_after(released, what);
    });
}

/// A thread caches a key on its `lookups_to_cache()`th lookup in a short while, and checks it
/// from then on without the shard's lock: such a check completes while another thread holds
/// the write guard. As a control, that lookup itself (the key not yet cached) waits for the
/// guard.
#[test]
fn a_key_checked_often_is_then_checked_without_the_lock() {
    let now = Instant::now();
    let state = BackendRecoveryState::<u32>::new();
    assert!(state.record_crash(1, now).is_retry());
    let recovering = state.status(&1, now);
    let lookups = lookups_to_cache();

    let state = &state;
    let blocking = &Blocking::new();
    std::thread::scope(|scope| {
        let (go, wait) = mpsc::channel::<()>();
        let (done, checked) = mpsc::channel();
        let (thread_is, thread) = mpsc::channel();
        // The control (see `Blocking`): the last lookup before the key is cached.
        let control = cfg!(target_os = "linux");
        scope.spawn(move || {
            thread_is.send(Blocking::this_thread()).unwrap();
            for lookup in 1..=lookups + 1 {
                wait.recv().unwrap();
                let status = if control && lookup == lookups {
                    blocking.run(|| state.status(&1, now))
                } else {
                    state.status(&1, now)
                };
                done.send(status).unwrap();
            }
        });
        let thread = thread.recv().unwrap();
        for _ in 1..lookups {
            go.send(()).unwrap();
            assert_eq!(checked.recv().unwrap(), recovering);
        }

        let guard = state.cells.hold_write_guard(&1u32);
        go.send(()).unwrap();
        if control {
            let what = format!(
                "lookup {lookups} of a key (cached only from that one on), while its shard \
                 was write-locked,"
            );
            blocking.wait_until_parked(&thread, &what);
            let released = blocking.release(guard);
            assert_eq!(checked.recv().unwrap(), recovering);
            blocking.assert_returned_after(released, &what);
        } else {
            drop(guard);
            assert_eq!(checked.recv().unwrap(), recovering);
        }

        let _guard = state.cells.hold_write_guard(&1u32);
        go.send(()).unwrap();
        // A wait here means the cached check took the lock: fail by timeout, not hang.
        let cached = checked.recv_timeout(Duration::from_secs(60));
        assert_eq!(cached, Ok(recovering));
    });
}

/// The entry count the state keeps by itself agrees with the table after inserts, a
/// success, a tombstone, a capacity refusal and purges.
#[test]
fn entry_count_matches_the_table() {
    let now = Instant::now();
    let window = Duration::from_secs(1);
    let state = BackendRecoveryState::<u32>::with_policy(BackendRecoveryPolicy::new(
        Duration::from_millis(1),
        window,
    ))
    .with_max_entries(3_000);
    for key in 0..2_500 {
        state.record_crash(key, now + Duration::from_millis(u64::from(key)));
        assert_eq!(state.len(), state.cells.len());
    }
    state.record_success(&0);
    state.record_crash_of(1, 9, now);
    state.record_success(&1);
    assert_eq!(state.len(), state.cells.len());
    let late = now + Duration::from_secs(5);
    let before = state.len();
    let removed = state.purge_expired(late);
    assert!(removed > 0);
    assert_eq!(state.len(), before - removed);
    assert_eq!(state.len(), state.cells.len());
    for key in 10_000..20_000 {
        state.record_crash(key, late);
    }
    assert_eq!(state.len(), state.cells.len());
    assert_eq!(state.len(), 3_000);
}
