//! The errors of an audit command, typed so the CLI can tell a missing job from a broken
//! record or an unusable override.

use std::path::PathBuf;

use mtx_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no job {job_id} under {state_dir}")]
    NoJob { job_id: String, state_dir: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("{file} is not a valid {what}: {reason}")]
    BadRecord { file: String, what: &'static str, reason: String },
    #[error("ledger record {seq} of job {job_id} is not a replayable plugin call: {reason}")]
    BadPluginCall { job_id: String, seq: u64, reason: String },
    #[error("recorded plugin call {call_index} cannot be replayed: {reason}")]
    BadCall { call_index: usize, reason: String },
    #[error("plugin override {plugin}: {reason}")]
    Override { plugin: String, reason: String },
    #[error("the plugin host could not start: {reason}")]
    Host { reason: String },
    #[error("minimum trust {value} is outside [0, 1]")]
    BadTrust { value: f64 },
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AuditError::Io { path: path.to_owned(), source }
    }
}
