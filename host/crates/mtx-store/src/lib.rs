//! Durable state of mtx: everything that must survive a `kill -9` (MTX-SPEC 8, 9, 11.5).
//!
//! Every write here is atomic (temp file, fsync, rename, fsync of the directory) or
//! append-only with fsync, or goes through a running job's journal, which makes it durable
//! with one fdatasync of the journal before the file is written. Nothing in this crate
//! spawns processes or touches the workspace under execution.
//!
//! Code map:
//! - `jobdir`: the 8.1 layout (`StateDir`, `JobDir`) and step outputs (`StepOutput`,
//!   `output.json` is the "step finished" marker).
//! - `chain` (private): hash-chained JSON Lines shared by the ledger and the recorder.
//! - `ledger`: `RunLedger`, `run_ledger.jsonl` (8.3); `fold` gives the 3.8 object.
//! - `events` + `recorder`: the event registry and validators (9.2-9.5) and the
//!   write-ahead `FlightRecorder` over `events.jsonl`.
//! - `progress`: `ProgressStore`, the atomically replaced progress artifact (8.2).
//! - `recovery`: the startup scan and ledger reconciliation (8.5, 8.7); `rebuild`: the
//!   progress rebuild of 8.6.
//! - `history`: `JobHistory`, the SQLite index behind `mtx jobs` / `mtx events`.
//! - `verify`: `verify_job`, the checks of `mtx verify`.
//! - `artifact`: the content-addressed `ArtifactStore`.
//! - `journal`: a running job's write-ahead `Journal` (`journal.wal`): write groups and
//!   log appends durable with one fdatasync, replayed after a crash; `spare`: the
//!   `SparePool` of empty files and directories it writes into instead of creating them.
//! - `failpoint`: SIGKILL crash points for the crash tests.
//!
//! One iteration with this crate, in the order of MTX-SPEC 8.4:
//!
//! ```text
//! recorder.emit(Event::new("FR-EVT-MT-002", payload))        write-ahead, fsynced
//! ledger.append_step(step in_progress)                       durable before the model call
//! job.write_step_file(key, "response.txt", bytes)             verbatim, atomic
//! job.write_step_output(&StepOutput { .. })                   commit marker, written last
//! ledger.append_step(step completed + output_artifact_ref)
//! progress.save(&mut artifact)                                atomic replace, validated
//! recorder.emit(Event::new("FR-EVT-MT-003", payload))
//! history.index_event(job_id, &stored)                        optional; reindex rebuilds it
//! ```
//!
//! At startup: `recovery::scan`, then per job `recovery::plan`, emit
//! `recovery::recovery_event` (FR-EVT-WF-RECOVERY), `recovery::apply`. A log has one
//! writer: share one `FlightRecorder` (it is `Sync`) and one `RunLedger` per job.
//!
//! Invariant: a ledger or event record is on disk (fsynced) before `append` / `emit`
//! returns, and no complete record is ever rewritten or removed; only a torn final line
//! is cut off, and that repair is itself recorded.
//! Invariant: the progress artifact on disk is always a whole, validated document (the
//! old one or the new one), never larger than 10 MB.
//! Invariant: `history.sqlite` holds nothing the job files do not; `reindex` rebuilds it.

pub mod artifact;
mod chain;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fsutil;
pub mod history;
pub mod inputs;
pub mod jobdir;
pub mod journal;
pub mod ledger;
pub mod progress;
pub mod rebuild;
pub mod recorder;
pub mod recovery;
pub mod spare;
pub mod verify;

pub use artifact::{ArtifactMeta, ArtifactStore};
pub use chain::{ChainDefect, GENESIS_HASH, TornTail};
pub use error::StoreError;
pub use failpoint::failpoint;
pub use history::JobHistory;
pub use inputs::{INPUT_PACK_FILE, InputPack, InputRef, read_input};
pub use jobdir::{JobDir, StateDir, StepOutput};
pub use journal::{JOURNAL_FILE, Journal, JournalReplay};
pub use ledger::{LedgerHeader, LedgerRecord, RunLedger};
pub use progress::{ProgressDocument, ProgressStore};
pub use recorder::{Correlation, Event, EventEnvelope, FlightRecorder};
pub use verify::verify_job;
