//! Shared helpers for the loom models live in `tests/`; this library is empty on purpose.
