#!/usr/bin/env bash
# Runs the loom models of backend-recovery's concurrent protocol (loom-tests/tests/*.rs).
# Local runs and .ci/run both use this script.
#
#   bash loom-tests/run.sh                          # default bound: 2 preemptions per interleaving
#   LOOM_MAX_PREEMPTIONS=3 bash loom-tests/run.sh   # deeper: 1.5-5x the interleavings, still seconds
#   LOOM_MAX_PREEMPTIONS=unbounded bash loom-tests/run.sh   # exhaustive: about 50 s once built, but
#                                        # automatic_purge.rs's helping case runs over 10 minutes
#   LOOM_MAX_PREEMPTIONS=unbounded bash loom-tests/run.sh -- --skip helps   # all the rest
#   bash loom-tests/run.sh --test first_crash       # extra arguments go to `cargo test`
#   bash loom-tests/run.sh -- --test-threads=1      # ...including the test harness's own
# A run in which no model reports passing fails, so that models compiled out cannot pass.
#
# The teeth model needs a bound of at least 1: the double Retry takes one preemption between
# the broken cell's load and store, so with 0 loom finds nothing and that test fails.
#
# Release mode, because loom replays each model thousands of times; debug assertions stay on,
# because the crate's debug_assert!s are part of what the models check. The loom build has its
# own target directory so that it never invalidates the normal one. Other loom variables
# (LOOM_LOG, LOOM_LOCATION, LOOM_MAX_BRANCHES, LOOM_MAX_DURATION) pass through to loom.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
echo "loom models: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS"
if [ "$LOOM_MAX_PREEMPTIONS" = unbounded ]; then
  # loom explores without a bound when the variable is unset.
  unset LOOM_MAX_PREEMPTIONS
else
  export LOOM_MAX_PREEMPTIONS
fi
export RUSTFLAGS="--cfg loom -C debug-assertions ${RUSTFLAGS:-}"
# Cargo prefers CARGO_ENCODED_RUSTFLAGS to RUSTFLAGS: if the environment set it, `--cfg loom`
# would be dropped and every model file compiled out, passing with no model run.
unset CARGO_ENCODED_RUSTFLAGS
# Show each model's name, bound and interleaving count even when it passes.
export RUST_TEST_NOCAPTURE="${RUST_TEST_NOCAPTURE:-1}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release -p backend-recovery-loom-tests --target-dir target/loom "$@" 2>&1 | tee "$log"
# Every model reports itself through `run_model`; a run that reports none checked nothing.
if ! grep -q '^loom model .*: passed' "$log"; then
  echo "loom-tests/run.sh: no loom model ran (was --cfg loom dropped?)" >&2
  exit 1
fi
