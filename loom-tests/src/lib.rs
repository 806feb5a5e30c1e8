//! Shared pieces of the loom models of `backend-recovery`'s concurrent protocol.
//!
//! The models themselves are in `tests/`, one file per property, each gated by `#![cfg(loom)]`;
//! run them with `loom-tests/run.sh`. This crate gives them:
//!
//! - [`ReferenceModel`]: the spec as a sequential model, independent of the crate's packed
//!   word, shared with the main crate's differential and linearizability tests;
//! - [`Scenario`]: operations per thread, every sequential order of them replayed on the
//!   reference, and `Scenario::check_sequential_consistency`, which runs them on the real state
//!   under loom and requires each interleaving's history to equal a sequential one;
//! - [`fixed_state`] and [`one_shard_state`]: states whose keys land in the same shard in
//!   every run (loom replays the program and must see the same one each time);
//! - `run_model` (loom builds only): the one way a model enters loom, and `failure_of` for the
//!   teeth models, which must fail.
//!
//! Everything but the loom parts also builds, and is unit-tested, without loom
//! (`cargo test -p backend-recovery-loom-tests`); `run.sh` runs the same unit tests under loom.

mod hashers;
#[cfg(loom)]
mod model;
mod reference;
mod scenario;

#[cfg(loom)]
pub use hashers::broken_state;
pub use hashers::{ConstantHasher, FixedHasher, OneShard, fixed_state, one_shard_state};
#[cfg(loom)]
pub use model::{failure_of, run_model};
pub use reference::ReferenceModel;
pub use scenario::{
    BACKOFF, History, Key, Op, Outcome, RETRIES, Scenario, WINDOW, first_retry, model_policy,
    multi_retry_policy,
};
