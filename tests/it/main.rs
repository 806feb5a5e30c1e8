//! Integration tests, one binary: the spec case by case, a differential property test against an
//! independent reference model, a real-thread stress test, and a broker's Hello router replayed
//! with real threads (`relaunch`).

mod bad_input;
mod broker;
mod differential;
mod expected;
mod features;
mod linearizability;
mod panics;
/// The reference model, shared with the loom models: the same file is a module of the
/// `loom-tests` crate, which exports it, hence its `pub` items (and `pub` here, so that they are
/// reachable).
#[path = "../../loom-tests/src/reference.rs"]
pub mod reference;
mod relaunch;

mod schedule;
mod soak;
mod spec_cases;
mod stress;
