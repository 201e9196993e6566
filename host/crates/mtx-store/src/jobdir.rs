//! The state directory layout of MTX-SPEC 8.1.
//!
//! ```text
//! <state_dir>/history.sqlite              Job History (an index; the files are the truth)
//! <state_dir>/artifacts/sha256/..         shared content-addressed store
//! <state_dir>/jobs/<job_id>/job.json
//!     mt_definitions.json  progress_artifact.json  run_ledger.jsonl  events.jsonl
//!     step_outputs/<idempotency_key>/{prompt.txt, context_snapshot.json, response.txt,
//!         validation.json, validation_evidence.json, output.json}
//!     escalations/  distillation_candidates/  distillation_pending/  model_swap/
//!     cloud_escalation/  gate_decisions/  summaries/
//! ```
//!
//! `output.json` is written last in a step directory: it is the "step finished" marker
//! recovery relies on (8.5), so it is only ever written atomically. This module names
//! paths and writes step files; it never deletes anything and never writes outside the
//! state directory (every relative name is checked).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtx_types::{ArtifactHandle, IterationRecord, PromptEnvelopeHashes, sha256_hex};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::fsutil::{Content, WriteGroup};
use crate::journal::Journal;

/// Sub-directories created for every job.
pub const JOB_SUBDIRS: &[&str] = &[
    "step_outputs",
    "escalations",
    "distillation_candidates",
    "distillation_pending",
    "model_swap",
    "cloud_escalation",
    "gate_decisions",
    "summaries",
];

/// The root of mtx state (`<workspace>/.mtx` unless configured otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Self {
        StateDir { root: root.to_owned() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// `spare/<job_id>/`: the spare inodes of a running job's journal (`crate::spare`).
    pub fn spare_dir(&self, job_id: &str) -> PathBuf {
        self.root.join("spare").join(job_id)
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    pub fn history_db(&self) -> PathBuf {
        self.root.join("history.sqlite")
    }

    /// Creates the state directory (and its parents) if it does not exist.
    pub fn create(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.root).map_err(|e| StoreError::io(&self.root, e))
    }

    /// Copies a source tree into a new scratch workspace `workspaces/<name>` under the
    /// state dir (skipping `target/` and `.mtx/`), so a run never changes the source it
    /// was given. Fails if the destination already exists.
    pub fn scratch_workspace(&self, name: &str, from: &Path) -> Result<PathBuf, StoreError> {
        check_name("workspace name", name)?;
        let dest = self.root.join("workspaces").join(name);
        if dest.exists() {
            return Err(StoreError::io(
                &dest,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            ));
        }
        copy_tree(from, &dest)?;
        Ok(dest)
    }

    /// The directory of one job; the id is checked to be a plain name.
    pub fn job(&self, job_id: &str) -> Result<JobDir, StoreError> {
        check_name("job_id", job_id)?;
        Ok(JobDir { root: self.jobs_dir().join(job_id), job_id: job_id.to_owned(), journal: None })
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(to).map_err(|e| StoreError::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| StoreError::io(from, e))? {
        let entry = entry.map_err(|e| StoreError::io(from, e))?;
        let name = entry.file_name();
        if name == "target" || name == ".mtx" {
            continue;
        }
        let src = entry.path();
        let kind = entry.file_type().map_err(|e| StoreError::io(&src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &to.join(&name))?;
        } else if kind.is_file() {
            fs::copy(&src, to.join(&name)).map_err(|e| StoreError::io(&src, e))?;
        }
    }
    Ok(())
}

/// `jobs/<job_id>/` of one job.
#[derive(Debug, Clone)]
pub struct JobDir {
    root: PathBuf,
    job_id: String,
    /// The running job's journal: its writes go through it (`crate::journal`).
    journal: Option<Arc<Journal>>,
}

impl PartialEq for JobDir {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.job_id == other.job_id
    }
}

impl Eq for JobDir {}

/// The "step finished" record, `step_outputs/<idempotency_key>/output.json` (8.1).
///
/// The 8.1 fields, plus \[D\] `mt_id` and the finished step's `iteration_record`, so a
/// progress artifact lost to corruption can be rebuilt exactly from step outputs (8.6), and
/// \[D\] `loop_commit`, what the loop does after the step (its counters, events and
/// decision), so a crash between this marker and the progress save finishes the step
/// without running it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    pub step_id: String,
    pub idempotency_key: String,
    pub prompt_hash: String,
    pub context_snapshot_id: String,
    pub context_snapshot_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_snapshot_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_envelope_hashes: Option<PromptEnvelopeHashes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_snapshot_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snapshot_ref: Option<ArtifactHandle>,
    /// `null` when validation did not run.
    pub validation_ref: Option<ArtifactHandle>,
    pub mt_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration_record: Option<IterationRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_commit: Option<serde_json::Value>,
}

/// The handle of a file of the job directory: `rel` is relative to it, the media type
/// follows the name.
fn file_handle(artifact_id: String, rel: String, bytes: &[u8]) -> ArtifactHandle {
    let media_type = if rel.ends_with(".json") { "application/json" } else { "text/plain" };
    ArtifactHandle {
        artifact_id,
        sha256: sha256_hex(bytes),
        size_bytes: Some(bytes.len() as u64),
        media_type: Some(media_type.to_owned()),
        path: rel,
    }
}

/// A UUID derived from the bytes (version 8, custom), so the handle of an existing file
/// is the same every time recovery or a rebuild builds it.
pub(crate) fn stable_artifact_id(bytes: &[u8]) -> String {
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes));
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(first).into_uuid().to_string()
}

fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255;
    if ok { Ok(()) } else { Err(StoreError::invalid(what, format!("{name:?} is not a plain file name"))) }
}

impl JobDir {
    /// A job directory at an explicit path (tests, `reindex` of a copied job).
    pub fn at(root: &Path, job_id: &str) -> Self {
        JobDir { root: root.to_owned(), job_id: job_id.to_owned(), journal: None }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// This directory with its writes going through `journal`.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The journal the writes go through, if any.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// [`JobDir::journal`], shared.
    pub fn shared_journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }

    /// `journal.wal`.
    pub fn journal_path(&self) -> PathBuf {
        self.root.join(crate::journal::JOURNAL_FILE)
    }

    /// Creates the job directory and its sub-directories (idempotent).
    pub fn create(&self) -> Result<(), StoreError> {
        for sub in JOB_SUBDIRS {
            let dir = self.root.join(sub);
            crate::fsutil::create_dir_durable(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        Ok(())
    }

    pub fn job_json(&self) -> PathBuf {
        self.root.join("job.json")
    }

    pub fn mt_definitions(&self) -> PathBuf {
        self.root.join("mt_definitions.json")
    }

    pub fn progress_artifact(&self) -> PathBuf {
        self.root.join("progress_artifact.json")
    }

    pub fn run_ledger(&self) -> PathBuf {
        self.root.join("run_ledger.jsonl")
    }

    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    pub fn subdir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `step_outputs/<idempotency_key>/`.
    pub fn step_dir(&self, idempotency_key: &str) -> Result<PathBuf, StoreError> {
        check_name("idempotency_key", idempotency_key)?;
        Ok(self.root.join("step_outputs").join(idempotency_key))
    }

    /// Atomically writes one file of a step (`prompt.txt`, `response.txt`, ...) and
    /// returns a handle whose path is relative to the job directory.
    pub fn write_step_file(
        &self,
        idempotency_key: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<ArtifactHandle, StoreError> {
        check_name("step file name", name)?;
        let path = self.step_dir(idempotency_key)?.join(name);
        crate::fsutil::atomic_write_in(&path, bytes, self.journal())?;
        Ok(file_handle(
            uuid::Uuid::now_v7().to_string(),
            format!("step_outputs/{idempotency_key}/{name}"),
            bytes,
        ))
    }

    /// Writes several files of one step, each atomically, in the order given, with one
    /// directory fsync for all of them; returns their handles in the same order.
    pub fn write_step_files(
        &self,
        idempotency_key: &str,
        files: &[(&str, &[u8])],
    ) -> Result<Vec<ArtifactHandle>, StoreError> {
        for (name, _) in files {
            check_name("step file name", name)?;
        }
        let dir = self.step_dir(idempotency_key)?;
        let mut group = WriteGroup::default();
        for (name, bytes) in files {
            group.add(&dir, name, &Content::Bytes(bytes));
        }
        group.commit_in(self.journal())?;
        Ok(files
            .iter()
            .map(|(name, bytes)| {
                file_handle(
                    uuid::Uuid::now_v7().to_string(),
                    format!("step_outputs/{idempotency_key}/{name}"),
                    bytes,
                )
            })
            .collect())
    }

    /// Adds files of one step to `group`, to be written with the group's other files (a
    /// response's artifact and the step files that share its bytes, say).
    pub fn stage_step_entries(
        &self,
        group: &mut WriteGroup,
        idempotency_key: &str,
        files: &[(&str, Content<'_>)],
    ) -> Result<(), StoreError> {
        let dir = self.step_dir(idempotency_key)?;
        for (name, content) in files {
            check_name("step file name", name)?;
            group.add(&dir, name, content);
        }
        Ok(())
    }

    /// Like [`JobDir::write_step_file`], but a file the step already has stands: its handle
    /// is returned and nothing is written. For records that an earlier, interrupted run of
    /// the same step may already have referenced in the Flight Recorder (validation
    /// results): rewriting them would break those references.
    pub fn write_step_file_once(
        &self,
        idempotency_key: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<ArtifactHandle, StoreError> {
        check_name("step file name", name)?;
        self.step_dir(idempotency_key)?;
        self.write_file_once(&format!("step_outputs/{idempotency_key}/{name}"), bytes)
    }

    /// Writes `output.json`, the step's commit marker; call it after every other file
    /// of the step is written (8.4 item 4).
    pub fn write_step_output(&self, output: &StepOutput) -> Result<ArtifactHandle, StoreError> {
        self.step_output(output, WriteGroup::commit_in)
    }

    /// [`JobDir::write_step_output`] through the journal's next sync (see
    /// [`WriteGroup::stage_in`]): the commit marker is durable, and on disk, with the barrier
    /// before the progress save.
    pub fn stage_step_output(&self, output: &StepOutput) -> Result<ArtifactHandle, StoreError> {
        self.step_output(output, WriteGroup::stage_in)
    }

    fn step_output(
        &self,
        output: &StepOutput,
        write: impl FnOnce(WriteGroup, Option<&Journal>) -> Result<(), StoreError>,
    ) -> Result<ArtifactHandle, StoreError> {
        let mut bytes = serde_json::to_vec_pretty(output)
            .map_err(|e| StoreError::invalid("step output", e.to_string()))?;
        bytes.push(b'\n');
        let key = &output.idempotency_key;
        let mut group = WriteGroup::default();
        group.add(&self.step_dir(key)?, "output.json", &Content::Bytes(&bytes));
        write(group, self.journal())?;
        Ok(file_handle(uuid::Uuid::now_v7().to_string(), format!("step_outputs/{key}/output.json"), &bytes))
    }

    /// Whether `step_outputs/<key>/output.json` exists.
    pub fn step_output_exists(&self, idempotency_key: &str) -> bool {
        // A journal that cannot settle is broken, and its next use says so.
        self.settled().is_ok()
            && self.step_dir(idempotency_key).is_ok_and(|d| d.join("output.json").is_file())
    }

    /// Waits until the files the journal holds are in place ([`Journal::settle`]): every
    /// read of a journaled file of the job runs it first.
    pub fn settled(&self) -> Result<(), StoreError> {
        self.journal().map_or(Ok(()), Journal::settle)
    }

    /// Reads `output.json` of a step; `None` when the step never finished.
    pub fn read_step_output(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<(StepOutput, ArtifactHandle)>, StoreError> {
        let path = self.step_dir(idempotency_key)?.join("output.json");
        self.settled()?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let output: StepOutput =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        let handle = file_handle(
            stable_artifact_id(&bytes),
            format!("step_outputs/{idempotency_key}/output.json"),
            &bytes,
        );
        Ok(Some((output, handle)))
    }

    /// Atomically writes `rel` (e.g. `job.json`, `gate_decisions/<id>.json`) inside the
    /// job directory and returns its handle (path relative to the job directory).
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<ArtifactHandle, StoreError> {
        let path = self.resolve(rel)?;
        crate::fsutil::atomic_write_in(&path, bytes, self.journal())?;
        Ok(file_handle(stable_artifact_id(bytes), rel.to_owned(), bytes))
    }

    /// Like [`JobDir::write_file`], but a file that exists stands: its handle is returned
    /// and nothing is written (see [`JobDir::write_step_file_once`]).
    pub fn write_file_once(&self, rel: &str, bytes: &[u8]) -> Result<ArtifactHandle, StoreError> {
        match self.handle_of(rel)? {
            Some(existing) => Ok(existing),
            None => self.write_file(rel, bytes),
        }
    }

    /// The handle of `rel` as it is on disk (the one [`JobDir::write_file`] gave for these
    /// bytes); `None` when there is no such file.
    pub fn handle_of(&self, rel: &str) -> Result<Option<ArtifactHandle>, StoreError> {
        let path = self.resolve(rel)?;
        self.settled()?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(file_handle(stable_artifact_id(&bytes), rel.to_owned(), &bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Removes `rel` (a consumed request file, say) from the job directory; `false` when
    /// it was not there.
    pub fn discard(&self, rel: &str) -> Result<bool, StoreError> {
        let path = self.resolve(rel)?;
        self.settled()?;
        if let Some(journal) = self.journal()
            && path.exists()
        {
            journal.log_remove(&path)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Resolves a handle path relative to this job directory, refusing escapes.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let ok = !rel.is_empty()
            && !rel.starts_with('/')
            && !rel.contains('\\')
            && !rel.split('/').any(|c| c == ".." || c.is_empty() || c == ".");
        if !ok {
            return Err(StoreError::BadPath(rel.to_owned()));
        }
        Ok(self.root.join(rel))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn output(key: &str, step_id: &str) -> StepOutput {
        StepOutput {
            step_id: step_id.into(),
            idempotency_key: key.into(),
            prompt_hash: sha256_hex(b"p"),
            context_snapshot_id: uuid::Uuid::now_v7().to_string(),
            context_snapshot_hash: sha256_hex(b"c"),
            context_snapshot_ref: None,
            prompt_envelope_hashes: None,
            prompt_snapshot_ref: None,
            output_snapshot_ref: None,
            validation_ref: None,
            mt_id: step_id[..6].into(),
            iteration_record: None,
            loop_commit: None,
        }
    }

    #[test]
    fn the_layout_is_created_and_step_outputs_mark_finished_steps() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let job = state.job("job-1").unwrap();
        job.create().unwrap();
        for sub in JOB_SUBDIRS {
            assert!(job.root().join(sub).is_dir(), "{sub}");
        }
        let key = "a".repeat(64);
        assert!(!job.step_output_exists(&key));
        let h = job.write_step_file(&key, "response.txt", b"verbatim").unwrap();
        assert!(!job.step_output_exists(&key), "only output.json marks a finished step");
        assert_eq!(std::fs::read(job.resolve(&h.path).unwrap()).unwrap(), b"verbatim");
        let out = output(&key, "MT-001_iter-001");
        let written = job.write_step_output(&out).unwrap();
        assert!(job.step_output_exists(&key));
        let (read, handle) = job.read_step_output(&key).unwrap().unwrap();
        assert_eq!(read, out);
        assert_eq!(handle.sha256, written.sha256);
    }

    #[test]
    fn a_file_of_the_job_is_removed_once_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("job-1").unwrap();
        job.create().unwrap();
        job.write_file("skip_requested.json", b"{}").unwrap();
        assert!(job.discard("skip_requested.json").unwrap());
        assert!(!job.discard("skip_requested.json").unwrap(), "already gone");
        assert!(job.discard("../outside").is_err());
    }

    #[test]
    fn a_step_writes_several_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("job-1").unwrap();
        job.create().unwrap();
        let key = "c".repeat(64);
        let handles =
            job.write_step_files(&key, &[("response.txt", b"text"), ("response.json", b"{}")]).unwrap();
        assert_eq!(handles[0].path, format!("step_outputs/{key}/response.txt"));
        assert_eq!(handles[1].sha256, sha256_hex(b"{}"));
        assert_eq!(std::fs::read(job.resolve(&handles[0].path).unwrap()).unwrap(), b"text");
        assert!(job.write_step_files(&key, &[("../x", b"")]).is_err(), "names are checked");
    }

    #[test]
    fn a_write_once_step_file_keeps_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("job-1").unwrap();
        job.create().unwrap();
        let key = "b".repeat(64);
        let first = job.write_step_file_once(&key, "validation.json", b"first").unwrap();
        let again = job.write_step_file_once(&key, "validation.json", b"second").unwrap();
        assert_eq!(std::fs::read(job.resolve(&again.path).unwrap()).unwrap(), b"first");
        assert_eq!(again.sha256, first.sha256, "the handle names what is on disk");
        assert_eq!(again.size_bytes, Some(5));
    }

    #[test]
    fn names_that_escape_the_job_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.job("../x").is_err());
        let job = state.job("j").unwrap();
        assert!(job.write_step_file("..", "x", b"").is_err());
        assert!(job.write_step_file(&"a".repeat(64), "../../x", b"").is_err());
        assert!(matches!(job.resolve("step_outputs/../../x"), Err(StoreError::BadPath(_))));
        assert!(matches!(job.resolve("/etc/passwd"), Err(StoreError::BadPath(_))));
        assert!(matches!(job.write_file("../escape.json", b"{}"), Err(StoreError::BadPath(_))));
    }

    #[test]
    fn job_files_are_written_atomically_with_a_handle() {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("j").unwrap();
        job.create().unwrap();
        let h = job.write_file("gate_decisions/d1.json", b"{\"decision\":\"continue\"}").unwrap();
        assert_eq!(h.path, "gate_decisions/d1.json");
        assert_eq!(h.sha256, sha256_hex(b"{\"decision\":\"continue\"}"));
        assert_eq!(
            std::fs::read(job.root().join("gate_decisions/d1.json")).unwrap(),
            b"{\"decision\":\"continue\"}"
        );
    }
}
