//! The last crash a rich cell counted by incarnation ([`Report`]), kept beside the cell's word
//! so that the reports of one death are told apart without waiting: the duplicates, most of
//! the reports of a death, read it with loads alone, and only the report that counts writes it.
//!
//! Writers take a lock, which keeps them one at a time and lets a report's check and count be
//! one step. Readers do not: the fields are behind a sequence number as well (a sequence lock
//! over atomics). A writer makes the sequence odd, stores the fields, and makes it even again;
//! a reader loads the sequence, the fields and the sequence again, and keeps what it read only
//! if the sequence was even and unchanged, and otherwise reads under the lock. The orderings
//! are the standard ones for a sequence lock:
//! - the writer's odd store is followed by a `Release` fence, so no field store is ordered
//!   before it; its even store is `Release`, so every field store happens before it;
//! - the reader's first load is `Acquire`, so it sees every field stored before the even
//!   sequence it read; an `Acquire` fence after the field loads, before the second load, makes
//!   a field load that saw a later writer's store also see that writer's odd sequence (through
//!   the writer's `Release` fence), so the check fails.
//!
//! Fields are `Relaxed` atomics, so a torn read is only ever discarded, never undefined. No
//! thread ever spins: a reader that meets a writer waits on the lock.

use std::time::Duration;

use crate::decision::{BackendRecoveryDecision, BackendRecoveryRefusalReason};
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering, fence};

/// A crash counted by incarnation, and what it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) incarnation: u64,
    /// The tick of the report that counted it.
    pub(crate) at: u64,
    pub(crate) decision: BackendRecoveryDecision,
}

impl Counted {
    /// The answer for a duplicate of this report at `now`: the same kind and attempt, with the
    /// retry-after shortened by the time since the counted report (none if `now` is earlier),
    /// so that both point at the same moment.
    pub(crate) fn replay(&self, now: u64) -> BackendRecoveryDecision {
        let since = Duration::from_nanos(now.saturating_sub(self.at));
        match self.decision.clone() {
            BackendRecoveryDecision::Retry {
                retry_after,
                attempt,
            } => BackendRecoveryDecision::Retry {
                retry_after: retry_after.saturating_sub(since),
                attempt,
            },
            BackendRecoveryDecision::Refuse {
                reason,
                retry_after,
            } => BackendRecoveryDecision::Refuse {
                reason,
                retry_after: retry_after.saturating_sub(since),
            },
        }
    }
}

/// What `Report::kind` holds, in bits 48 and up of its `rest` field.
const NONE: u64 = 0;
const RETRY: u64 = 1;
const UNAVAILABLE: u64 = 2;
const CAPACITY: u64 = 3;

/// How many times a reader tries to read a report between a writer's stores before it waits
/// on the lock: a writer's stores take a few nanoseconds, a wait on a contended lock far more.
/// Under loom, once: a load there may keep reading an old value, so a loop of them would not
/// end, where the lock always makes progress.
#[cfg(not(loom))]
const OPTIMISTIC_READS: u32 = 16;
#[cfg(loom)]
const OPTIMISTIC_READS: u32 = 1;

/// How many times a report that finds the lock held watches for the holder's count before it
/// waits on the lock. Under loom, never: see [`OPTIMISTIC_READS`].
#[cfg(not(loom))]
const WATCHES: u32 = 64;
#[cfg(loom)]
const WATCHES: u32 = 1;

/// The last [`Counted`] report of a cell, if any (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Held by every report that may count, and by a success deciding whether to keep the cell.
    lock: Mutex<()>,
    /// Even: the fields are settled; odd: the lock's holder is storing them.
    sequence: AtomicU64,
    incarnation: AtomicU64,
    at: AtomicU64,
    /// The decision's retry-after: whole seconds.
    seconds: AtomicU64,
    /// The retry-after's nanoseconds (bits 0-29), the attempt (bits 32-47) and the kind (48+).
    rest: AtomicU64,
}

impl Report {
    /// The last report counted, if any, read without writing anything unless a writer is at
    /// work: then under the lock, once the writer is done.
    pub(crate) fn read(&self) -> Option<Counted> {
        for _ in 0..OPTIMISTIC_READS {
            if let Some(read) = self.try_read() {
                return read;
            }
            std::hint::spin_loop();
        }
        self.lock().counted()
    }

    /// The last report counted, if any, or `None` if a writer was storing one meanwhile.
    fn try_read(&self) -> Option<Option<Counted>> {
        let before = self.sequence.load(Ordering::Acquire);
        if before & 1 == 0 {
            let fields = self.fields();
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return Some(decode(fields));
            }
        }
        None
    }

    /// Takes the lock for a report that may count: the holder alone writes the fields, until
    /// the guard is dropped (on unwind too).
    pub(crate) fn lock(&self) -> ReportGuard<'_> {
        ReportGuard {
            report: self,
            _held: self.lock.lock(),
        }
    }

    /// Takes the lock as [`lock`](Self::lock), unless while the lock is held by another report
    /// that report turns out to cover this one (`covers`): then that report, read without
    /// writing anything. Of the reports of one death that arrive together, one counts and the
    /// others, which would all wait for the lock only to find the death counted, watch for the
    /// count instead.
    pub(crate) fn lock_unless(
        &self,
        covers: impl Fn(&Counted) -> bool,
    ) -> Result<ReportGuard<'_>, Counted> {
        for _ in 0..WATCHES {
            // Loads while the lock is held (`is_locked`), and a compare-and-swap only once it
            // looks free: every read-modify-write would take the line from the writer.
            if !self.lock.is_locked() {
                if let Some(held) = self.lock.try_lock() {
                    return Ok(ReportGuard {
                        report: self,
                        _held: held,
                    });
                }
            }
            if let Some(Some(counted)) = self.try_read() {
                if covers(&counted) {
                    return Err(counted);
                }
            }
            std::hint::spin_loop();
        }
        Ok(self.lock())
    }

    /// The fields as stored, which may be torn unless the lock is held or the sequence checked.
    fn fields(&self) -> [u64; 4] {
        [
            self.incarnation.load(Ordering::Relaxed),
            self.at.load(Ordering::Relaxed),
            self.seconds.load(Ordering::Relaxed),
            self.rest.load(Ordering::Relaxed),
        ]
    }
}

/// The lock on a [`Report`]: the last report counted, and the right to replace it.
pub(crate) struct ReportGuard<'a> {
    report: &'a Report,
    _held: MutexGuard<'a, ()>,
}

impl ReportGuard<'_> {
    /// The last report counted, if any.
    pub(crate) fn counted(&self) -> Option<Counted> {
        decode(self.report.fields())
    }

    /// Replaces the last report counted by `counted`.
    pub(crate) fn set(&self, counted: &Counted) {
        let [incarnation, at, seconds, rest] = encode(counted);
        let report = self.report;
        // Only the lock's holder writes the sequence, so this load reads its latest value.
        let sequence = report.sequence.load(Ordering::Relaxed);
        report.sequence.store(sequence | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        report.incarnation.store(incarnation, Ordering::Relaxed);
        report.at.store(at, Ordering::Relaxed);
        report.seconds.store(seconds, Ordering::Relaxed);
        report.rest.store(rest, Ordering::Relaxed);
        report
            .sequence
            .store((sequence | 1).wrapping_add(1), Ordering::Release);
    }
}

/// The fields of a report: exact for every decision (an attempt is at most 15, a retry-after
/// any `Duration`).
fn encode(counted: &Counted) -> [u64; 4] {
    let (kind, attempt, retry_after) = match counted.decision {
        BackendRecoveryDecision::Retry {
            retry_after,
            attempt,
        } => (RETRY, attempt, retry_after),
        BackendRecoveryDecision::Refuse {
            reason,
            retry_after,
        } => {
            let kind = match reason {
                BackendRecoveryRefusalReason::BackendUnavailable => UNAVAILABLE,
                BackendRecoveryRefusalReason::CapacityExhausted => CAPACITY,
            };
            (kind, 0, retry_after)
        }
    };
    // An attempt is at most one past the most retries a policy allows; 16 bits hold it.
    let attempt = u64::from(attempt) & 0xffff;
    let rest = u64::from(retry_after.subsec_nanos()) | attempt << 32 | kind << 48;
    [counted.incarnation, counted.at, retry_after.as_secs(), rest]
}

/// The report the fields hold, if any.
fn decode([incarnation, at, seconds, rest]: [u64; 4]) -> Option<Counted> {
    // Below a billion: the nanoseconds of a `Duration`, unless torn (then discarded anyway).
    let nanos = (rest & 0x3fff_ffff) as u32 % 1_000_000_000;
    let retry_after = Duration::new(seconds, nanos);
    // 16 bits: the cast is exact.
    let attempt = ((rest >> 32) & 0xffff) as u32;
    let decision = match rest >> 48 {
        NONE => return None,
        RETRY => BackendRecoveryDecision::Retry {
            retry_after,
            attempt,
        },
        UNAVAILABLE => BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after,
        },
        _ => BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::CapacityExhausted,
            retry_after,
        },
    };
    Some(Counted {
        incarnation,
        at,
        decision,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_decision_round_trips() {
        let report = Report::default();
        assert_eq!(report.read(), None, "nothing counted yet");
        let decisions = [
            BackendRecoveryDecision::Retry {
                retry_after: Duration::from_nanos(250_000_001),
                attempt: 15,
            },
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: Duration::MAX,
            },
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::CapacityExhausted,
                retry_after: Duration::ZERO,
            },
        ];
        for (incarnation, decision) in [0, u64::MAX, 7].into_iter().zip(decisions) {
            let counted = Counted {
                incarnation,
                at: u64::MAX - incarnation,
                decision,
            };
            report.lock().set(&counted);
            assert_eq!(report.read(), Some(counted.clone()));
            assert_eq!(report.lock().counted(), Some(counted));
        }
    }

    #[test]
    fn a_read_without_the_lock_is_kept_only_between_writes() {
        let report = Report::default();
        let counted = Counted {
            incarnation: 3,
            at: 5,
            decision: BackendRecoveryDecision::Retry {
                retry_after: Duration::from_millis(250),
                attempt: 1,
            },
        };
        report.lock().set(&counted);
        let settled = report.sequence.load(Ordering::Relaxed);
        assert_eq!(settled & 1, 0, "a finished write leaves the sequence even");
        assert_eq!(
            report.try_read(),
            Some(Some(counted.clone())),
            "read with loads alone"
        );
        // A writer between its first and last store.
        report.sequence.store(settled + 1, Ordering::Relaxed);
        assert_eq!(report.try_read(), None, "a read during a write is not kept");
        report.sequence.store(settled + 2, Ordering::Relaxed);
        assert_eq!(report.try_read(), Some(Some(counted)));
    }

    #[test]
    fn a_reader_never_keeps_a_torn_report() {
        let report = Report::default();
        let counted = |n: u64| Counted {
            incarnation: n,
            at: n,
            decision: BackendRecoveryDecision::Retry {
                retry_after: Duration::from_nanos(n),
                attempt: 1,
            },
        };
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 1..20_000 {
                    report.lock().set(&counted(n));
                }
            });
            let mut last = 0;
            while last < 19_999 {
                if let Some(read) = report.read() {
                    let n = read.incarnation;
                    assert_eq!(read, counted(n), "fields of one report");
                    assert!(n >= last, "reports never go back");
                    last = n;
                }
            }
        });
    }
}
