//! Shorthands for the decisions the tests expect.

use std::time::Duration;

use backend_recovery::{BackendRecoveryDecision, BackendRecoveryRefusalReason};

pub(crate) fn retry(retry_after: Duration, attempt: u32) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Retry {
        retry_after,
        attempt,
    }
}

pub(crate) fn refuse(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after,
    }
}

/// A refusal because the state is full.
pub(crate) fn full(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::CapacityExhausted,
        retry_after,
    }
}
