//! `mtx distill export`: turns the stored DistillationCandidates (MTX-SPEC 3.12) into
//! training-ready JSON Lines records, one per candidate: the teacher's prompt in chat
//! format, the teacher's successful response as the chosen sample, the student's failed
//! response as the rejected sample, task tags, trust score, provenance and the hashes of
//! every artifact used. The record shape is published as a JSON Schema,
//! `schemas/distill-record.schema.json` ([`RECORD_SCHEMA`]).
//!
//! Phase 1 is evidence only (3.12 rule 3): this module never trains, merges or promotes
//! anything, and never writes into the state directory. Every artifact is re-hashed when
//! read: a snapshot whose bytes no longer match its handle fails the export by name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Component, Path};

use mtx_store::StateDir;
use mtx_types::ArtifactHandle;
use mtx_types::distill::DistillationCandidate;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::AuditError;

/// The JSON Schema every exported record validates against.
pub const RECORD_SCHEMA: &str = include_str!("../schemas/distill-record.schema.json");

/// `schema` member of every record.
pub const RECORD_SCHEMA_ID: &str = "mtx.distill_record@1";

/// What an export wrote and skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportSummary {
    pub jobs: u64,
    pub candidates: u64,
    pub exported: u64,
    /// Candidates whose `data_trust_score` is below the threshold.
    pub skipped_low_trust: u64,
    /// Candidates at or above the threshold but marked `distillation_eligible: false`
    /// (the teacher's evidence did not verify).
    pub skipped_ineligible: u64,
    /// Records written per job.
    pub exported_by_job: BTreeMap<String, u64>,
}

impl ExportSummary {
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} candidates in {} jobs: {} exported, {} below the trust threshold, {} not eligible",
            self.candidates, self.jobs, self.exported, self.skipped_low_trust, self.skipped_ineligible
        );
        for (job, n) in &self.exported_by_job {
            let _ = writeln!(out, "  {job}: {n}");
        }
        out
    }
}

/// Writes one JSON line per exported candidate of `job_ids` (every job when empty) to
/// `out`, skipping candidates with a trust score below `min_trust`.
pub fn export(
    state_dir: &Path,
    job_ids: &[String],
    min_trust: f64,
    out: &mut dyn Write,
) -> Result<ExportSummary, AuditError> {
    if !(0.0..=1.0).contains(&min_trust) {
        return Err(AuditError::BadTrust { value: min_trust });
    }
    let state = StateDir::new(state_dir);
    let jobs = if job_ids.is_empty() { all_jobs(&state)? } else { job_ids.to_vec() };
    let mut summary = ExportSummary::default();
    for job_id in &jobs {
        let job = state.job(job_id)?;
        if !job.root().is_dir() {
            return Err(AuditError::NoJob { job_id: job_id.clone(), state_dir: state_dir.to_owned() });
        }
        summary.jobs += 1;
        let dir = job.subdir("distillation_candidates");
        for path in json_files(&dir)? {
            let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
            let candidate: DistillationCandidate =
                serde_json::from_slice(&bytes).map_err(|e| AuditError::BadRecord {
                    file: path.display().to_string(),
                    what: "DistillationCandidate",
                    reason: e.to_string(),
                })?;
            summary.candidates += 1;
            if candidate.data_trust_score < min_trust {
                summary.skipped_low_trust += 1;
                continue;
            }
            if !candidate.distillation_eligible {
                summary.skipped_ineligible += 1;
                continue;
            }
            let record = build_record(&state, job.root(), job_id, &candidate)?;
            let mut line = serde_json::to_vec(&record).map_err(|e| AuditError::BadRecord {
                file: path.display().to_string(),
                what: "export record",
                reason: e.to_string(),
            })?;
            line.push(b'\n');
            out.write_all(&line).map_err(AuditError::Write)?;
            summary.exported += 1;
            *summary.exported_by_job.entry(job_id.clone()).or_default() += 1;
        }
    }
    out.flush().map_err(AuditError::Write)?;
    Ok(summary)
}

/// Job ids under `jobs/`, sorted.
pub(crate) fn all_jobs(state: &StateDir) -> Result<Vec<String>, AuditError> {
    let dir = state.jobs_dir();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| AuditError::io(&dir, e))? {
        let entry = entry.map_err(|e| AuditError::io(&dir, e))?;
        if entry.path().is_dir() {
            ids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// `*.json` files of a directory in name order (none when it does not exist).
fn json_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, AuditError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))? {
        let path = entry.map_err(|e| AuditError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the bytes of a handle and checks them against its sha256. `sha256/..` paths are
/// in the shared artifact store, other paths in the job directory (as `mtx verify` reads
/// them).
fn read_handle(state: &StateDir, job_root: &Path, handle: &ArtifactHandle) -> Result<Vec<u8>, AuditError> {
    let bad =
        |reason: String| AuditError::BadRecord { file: handle.path.clone(), what: "artifact handle", reason };
    let rel = Path::new(&handle.path);
    if handle.path.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad("the path is not a plain relative path".into()));
    }
    let path =
        if handle.path.starts_with("sha256/") { state.artifacts_dir().join(rel) } else { job_root.join(rel) };
    let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
    let actual = mtx_types::sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(&handle.sha256) {
        return Err(bad(format!("its bytes hash to {actual}, not the recorded {}", handle.sha256)));
    }
    Ok(bytes)
}

/// The roles a chat-format message may have in an export record.
const CHAT_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A prompt snapshot as chat messages: kept as is when it already is a message list
/// (or an object with `messages`), otherwise the whole text is one user message.
fn chat_messages(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        let list = match &value {
            Value::Array(_) => Some(value.clone()),
            Value::Object(map) => map.get("messages").filter(|m| m.is_array()).cloned(),
            _ => None,
        };
        if let Some(Value::Array(items)) = list
            && !items.is_empty()
            && items.iter().all(|m| {
                m.get("role").and_then(Value::as_str).is_some_and(|r| CHAT_ROLES.contains(&r))
                    && m.get("content").is_some_and(Value::is_string)
            })
        {
            return Value::Array(
                items.iter().map(|m| json!({"role": m["role"], "content": m["content"]})).collect(),
            );
        }
    }
    json!([{"role": "user", "content": text}])
}

fn build_record(
    state: &StateDir,
    job_root: &Path,
    job_id: &str,
    c: &DistillationCandidate,
) -> Result<Value, AuditError> {
    let s = &c.student_attempt;
    let t = &c.teacher_success;
    let teacher_prompt = read_handle(state, job_root, &t.prompt_snapshot_ref)?;
    let teacher_output = read_handle(state, job_root, &t.output_snapshot_ref)?;
    let student_prompt = read_handle(state, job_root, &s.prompt_snapshot_ref)?;
    let student_output = read_handle(state, job_root, &s.output_snapshot_ref)?;
    Ok(json!({
        "schema": RECORD_SCHEMA_ID,
        "id": c.skill_log_entry_id,
        "job_id": job_id,
        "wp_id": c.wp_id,
        "mt_id": c.mt_id,
        "prompt": chat_messages(&teacher_prompt),
        "chosen": {"role": "assistant", "content": String::from_utf8_lossy(&teacher_output)},
        "rejected": {"role": "assistant", "content": String::from_utf8_lossy(&student_output)},
        "rejected_prompt": chat_messages(&student_prompt),
        "task_tags": c.task_type_tags,
        "contributing_factors": c.contributing_factors,
        "trust_score": c.data_trust_score,
        "provenance": {
            "student": {
                "model_id": s.model_id,
                "lora_id": s.lora_id,
                "lora_version": s.lora_version,
                "outcome": s.outcome,
                "iterations": s.iterations,
                "tokenizer_id": c.tokenizer.student_tokenizer_id,
            },
            "teacher": {
                "model_id": t.model_id,
                "lora_id": t.lora_id,
                "outcome": t.outcome,
                "iterations": t.iterations,
                "tokenizer_id": c.tokenizer.teacher_tokenizer_id,
            },
        },
        "artifacts": {
            "teacher_prompt_sha256": t.prompt_snapshot_ref.sha256,
            "teacher_output_sha256": t.output_snapshot_ref.sha256,
            "student_prompt_sha256": s.prompt_snapshot_ref.sha256,
            "student_output_sha256": s.output_snapshot_ref.sha256,
        },
    }))
}
