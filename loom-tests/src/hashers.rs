//! Hashers for the models, and the states built with them.
//!
//! Loom replays a model many times and must see the same program each time, so a key has to
//! land in the same shard in every run: `RandomState` would move it. [`FixedHasher`] hashes
//! deterministically; [`OneShard`] sends every key to the same shard, which is how the
//! shared-shard model (`shared_shard.rs`) puts two keys under one lock.

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasherDefault, Hasher};

use backend_recovery::{BackendRecoveryPolicy, BackendRecoveryState};

use crate::scenario::Key;

/// SipHash with fixed keys: deterministic across runs.
pub type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// A hasher whose every hash is 0, so every key shares shard 0 (of any shard count).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, _bytes: &[u8]) {}
}

/// Builds [`ConstantHasher`]s: all keys in one shard.
pub type OneShard = BuildHasherDefault<ConstantHasher>;

/// A state whose keys are hashed deterministically.
pub fn fixed_state(policy: BackendRecoveryPolicy) -> BackendRecoveryState<Key, FixedHasher> {
    BackendRecoveryState::with_policy_and_hasher(policy, FixedHasher::default())
}

/// A state whose keys all share one shard.
pub fn one_shard_state(policy: BackendRecoveryPolicy) -> BackendRecoveryState<Key, OneShard> {
    BackendRecoveryState::with_policy_and_hasher(policy, OneShard::default())
}

/// A deterministic state whose crashes update cells by load-then-store instead of
/// compare-and-swap: the bug the teeth model must catch. Loom builds only.
#[cfg(loom)]
pub fn broken_state(policy: BackendRecoveryPolicy) -> BackendRecoveryState<Key, FixedHasher> {
    fixed_state(policy).with_broken_cell_updates()
}
