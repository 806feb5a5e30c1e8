//! Loom builds only: the switches of the teeth models, the deliberate bugs each model must
//! catch (they sit in `sync::Teeth`, which the table holds), and the hooks that let a model reach
//! an automatic purge with a few keys.

use std::hash::{BuildHasher, Hash};

use super::BackendRecoveryState;

impl<K: Hash + Eq + Send, S: BuildHasher + Clone> BackendRecoveryState<K, S> {
    /// The same state with a deliberately broken cell update (load, then store, no
    /// compare-and-swap), which the loom teeth model must catch.
    #[doc(hidden)]
    pub fn with_broken_cell_updates(mut self) -> Self {
        self.cells.teeth.cell_updates = true;
        self
    }

    /// The same state with removals that forget to retire the cell they remove, so a thread's
    /// cached copy stays readable after the removal: the bug the read cache's loom teeth model
    /// must catch.
    #[doc(hidden)]
    pub fn with_broken_retirement(mut self) -> Self {
        self.cells.teeth.retirement = true;
        self
    }

    /// The same state with inserts that do not mark their key in the shard's presence summary,
    /// so a gate check can answer `Healthy` for a key that has an entry: the bug the summary's
    /// loom teeth model must catch (`table.rs`).
    #[doc(hidden)]
    pub fn with_broken_presence_summary(mut self) -> Self {
        self.cells.teeth.presence = true;
        self
    }

    /// The same state with reports by incarnation counted without their cell's report lock
    /// (the check of the last incarnation counted and the count are two steps), which the
    /// reports' loom teeth model must catch.
    #[doc(hidden)]
    pub fn with_broken_report_lock(mut self) -> Self {
        self.cells.teeth.report_lock = true;
        self
    }

    /// The same state with successes that decide whether to keep a cell as a tombstone
    /// without holding its report lock, so that a report through a read cache can be counted
    /// in between and forgotten with the entry: the bug the loom teeth model must catch.
    #[doc(hidden)]
    pub fn with_broken_success_lock(mut self) -> Self {
        self.cells.teeth.success_lock = true;
        self
    }

    /// The same state with its automatic purges due after `slack` inserts instead of 1,024
    /// (`occupancy.rs`), so that a loom model reaches them with a few keys. For a new
    /// state.
    #[doc(hidden)]
    pub fn with_purge_slack(mut self, slack: usize) -> Self {
        self.occupancy = self.occupancy.with_slack(slack);
        self
    }

    /// The entry count at which the next automatic purge falls due, and whether a thread leads
    /// one now, for the models' checks.
    #[doc(hidden)]
    pub fn automatic_purge_schedule(&self) -> (usize, bool) {
        self.occupancy.schedule()
    }
}
