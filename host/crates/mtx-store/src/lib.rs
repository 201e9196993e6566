//! Durable state of mtx: everything that must survive a `kill -9`.
//!
//! Every write here is atomic (temp file, fsync, rename, fsync of the directory) or
//! append-only with fsync. Nothing in this crate spawns processes or touches the
//! workspace under execution.

pub mod artifact;
pub mod fsutil;

pub use artifact::{ArtifactMeta, ArtifactStore, StoreError};
