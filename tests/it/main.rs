//! Integration tests, one binary: the spec case by case, a differential property test against an
//! independent reference model, and a real-thread stress test.

mod differential;
mod features;
mod linearizability;
mod reference;
mod schedule;
mod spec_cases;
mod stress;
