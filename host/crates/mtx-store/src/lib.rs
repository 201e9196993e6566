//! Durable state of mtx: everything that must survive a `kill -9` (MTX-SPEC 8, 9, 11.5).
//!
//! Every write here is atomic (temp file, fsync, rename, fsync of the directory) or
//! append-only with fsync. Nothing in this crate spawns processes or touches the
//! workspace under execution.

pub mod artifact;
mod chain;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fsutil;
pub mod ledger;
pub mod recorder;

pub use artifact::{ArtifactMeta, ArtifactStore};
pub use chain::{ChainDefect, GENESIS_HASH, TornTail};
pub use error::StoreError;
pub use failpoint::failpoint;
pub use ledger::{LedgerHeader, LedgerRecord, RunLedger};
pub use recorder::{Correlation, Event, EventEnvelope, FlightRecorder};
