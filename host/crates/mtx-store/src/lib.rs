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
pub mod history;
pub mod jobdir;
pub mod ledger;
pub mod progress;
pub mod rebuild;
pub mod recorder;
pub mod recovery;
pub mod verify;

pub use artifact::{ArtifactMeta, ArtifactStore};
pub use chain::{ChainDefect, GENESIS_HASH, TornTail};
pub use error::StoreError;
pub use failpoint::failpoint;
pub use history::JobHistory;
pub use jobdir::{JobDir, StateDir, StepOutput};
pub use ledger::{LedgerHeader, LedgerRecord, RunLedger};
pub use progress::{ProgressDocument, ProgressStore};
pub use recorder::{Correlation, Event, EventEnvelope, FlightRecorder};
pub use verify::verify_job;
