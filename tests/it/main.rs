//! Integration tests, one binary: the spec case by case, a differential property test against an
//! independent reference model, and a real-thread stress test.

mod bad_input;
mod differential;
mod features;
mod linearizability;
mod reference;
mod schedule;
mod soak;
mod spec_cases;
mod stress;
