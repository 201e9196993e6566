//! The one error type of the durable state layer.
//!
//! Callers match on the kind: `TooLarge` leads to the `resource_exhausted` hard gate,
//! `StateCorruption` and `ChainBroken` to the 8.6 rebuild or a `state_corruption`
//! failure, `InvalidEvent` / `UnknownEvent` are bugs in the emitting code
//! (`HSK-400-INVALID-EVENT`), `Io` is a storage failure (`HSK-500-DB`) that names the path.
//! This module never decides what to do about an error; it only describes it.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("artifact {path} is corrupt: expected sha256 {expected}, found {actual}")]
    HashMismatch { path: String, expected: String, actual: String },
    #[error("artifact {0} is missing")]
    Missing(String),
    #[error("artifact path {0:?} is not a store path")]
    BadPath(String),
    #[error("invalid metadata for artifact {path}: {message}")]
    BadMeta { path: String, message: String },
    /// A size cap of MTX-SPEC 11.4 would be exceeded; nothing was written.
    #[error("{path} would grow to {size} bytes, over its cap of {cap} bytes")]
    TooLarge { path: PathBuf, size: u64, cap: u64 },
    /// A state file failed to parse or validate (MTX-SPEC 8.2 item 3, 8.6).
    #[error("state corruption in {path}: {message}")]
    StateCorruption { path: PathBuf, message: String },
    /// A hash-chained log has a record that does not link to its predecessor, or an
    /// unreadable record before its last line.
    #[error("hash chain of {path} is broken at line {line}: {message}")]
    ChainBroken { path: PathBuf, line: u64, message: String },
    /// The event id is not in the registry of MTX-SPEC 9.2 / 9.5.
    #[error("unknown event id {0:?}")]
    UnknownEvent(String),
    /// The event's shape is wrong (origin error name `HSK-400-INVALID-EVENT`).
    #[error("invalid event {event_type}: {message}")]
    InvalidEvent { event_type: String, message: String },
    /// A record handed to the store breaks a contract rule (for example the job
    /// contract invariant of MTX-SPEC 3.1.5); nothing was stored.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("job history database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path} already exists")]
    AlreadyExists { path: PathBuf },
    /// Another open handle (this process or another) is appending to the log.
    #[error("{path} is open for writing elsewhere (another mtx process runs this job)")]
    Busy { path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StoreError::Io { path: path.to_owned(), source }
    }

    pub(crate) fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        StoreError::StateCorruption { path: path.to_owned(), message: message.into() }
    }

    pub(crate) fn invalid(what: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid { what: what.to_owned(), message: message.into() }
    }
}
