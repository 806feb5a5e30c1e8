//! [`run_model`]: the one way every model enters loom; [`failure_of`] for the teeth models,
//! which must fail.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Runs `f` in every interleaving loom explores, printing the model's name, the bound and what
/// was explored.
///
/// The builder comes from `loom::model::Builder::new()`, which reads loom's environment itself:
/// `LOOM_MAX_PREEMPTIONS` bounds the preemptions per interleaving (unset means unbounded, which
/// is why `run.sh` sets 2), and `LOOM_MAX_BRANCHES`, `LOOM_MAX_DURATION`, `LOOM_LOG` and
/// `LOOM_LOCATION` work as loom documents them.
pub fn run_model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let builder = loom::model::Builder::new();
    let bound = builder
        .preemption_bound
        .map_or_else(|| "unbounded".to_string(), |bound| bound.to_string());
    println!("loom model `{name}`: exploring, preemption bound {bound}");
    // A std counter, invisible to loom on purpose: it only counts the interleavings.
    let interleavings = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&interleavings);
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "loom model `{name}`: passed, {} interleavings in {:.2?}",
        interleavings.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// Runs `model`, which must fail (a teeth model: a deliberately broken state that loom must
/// catch), and returns the message it failed with, so the caller can check that it failed for
/// the right reason. Panics if the model passes.
pub fn failure_of(model: impl FnOnce()) -> String {
    let failure = panic::catch_unwind(AssertUnwindSafe(model))
        .expect_err("loom accepted a teeth model: the broken state went unnoticed");
    failure
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            failure
                .downcast_ref::<&str>()
                .map(|message| message.to_string())
        })
        .unwrap_or_else(|| "<not a string>".to_string())
}
