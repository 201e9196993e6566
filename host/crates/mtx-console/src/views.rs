//! What the console shows, read from the state directory as JSON (MTX-SPEC 15.3).
//!
//! Every view reads the authoritative files on each call (9.9): `job.json`, the progress
//! artifact, `events.jsonl`, `run_ledger.jsonl` and the artifacts their handles name; the
//! Job History index only lists jobs. Nothing is cached between calls, so a view taken
//! while a job runs is the job as it stands. This module only reads: it never writes,
//! repairs or creates anything in the state directory.

use std::path::{Path, PathBuf};

use mtx_store::history::{JobFilter, JobRow};
use mtx_store::ledger::read_records;
use mtx_store::recorder::read_events;
use mtx_store::{ArtifactStore, JobDir, JobHistory, LedgerRecord, ProgressStore, StateDir, StoreError};
use mtx_types::{ArtifactHandle, JobStatus, ProgressArtifact, sha256_hex};
use serde_json::{Map, Value, json};

/// Largest artifact text the viewer returns; the rest is cut and flagged `truncated`.
pub const MAX_ARTIFACT_TEXT: usize = 2 * 1024 * 1024;

/// Why a view could not be produced; each kind maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The job, file or artifact does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// A parameter is malformed or names something outside the stores (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Stored bytes do not match the hash that names them (409).
    #[error("integrity: {0}")]
    Integrity(String),
    /// The executor refused an action, e.g. the job is not paused (409).
    #[error("refused: {0}")]
    Refused(String),
    /// A file of the state directory cannot be read or parsed (500).
    #[error("cannot read {}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    /// Reading the state failed (500).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Filters of the Job History page.
#[derive(Debug, Clone, Default)]
pub struct JobsQuery {
    pub status: Option<String>,
    pub wp: Option<String>,
}

/// Filters of the event stream.
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    pub event_type: Option<String>,
    pub mt: Option<String>,
    /// Only events with a larger `seq`.
    pub after: Option<u64>,
}

/// A job directory that exists, or `NotFound`.
pub fn job_dir(state_dir: &Path, job_id: &str) -> Result<JobDir, ViewError> {
    let job = StateDir::new(state_dir)
        .job(job_id)
        .map_err(|_| ViewError::BadRequest(format!("{job_id:?} is not a job id")))?;
    if !job.root().is_dir() {
        return Err(ViewError::NotFound(format!("no job {job_id} in {}", state_dir.display())));
    }
    Ok(job)
}

fn read_json(path: &Path) -> Result<Option<Value>, ViewError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| unreadable(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(path, e)),
    }
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> ViewError {
    ViewError::Unreadable { path: path.to_owned(), message: e.to_string() }
}

/// The progress artifact as stored, validated; `Err` carries the reason it is unreadable.
fn load_progress(job: &JobDir) -> Result<Option<ProgressArtifact>, String> {
    let store = ProgressStore::new(&job.progress_artifact());
    if !store.exists() {
        return Ok(None);
    }
    store.load::<ProgressArtifact>().map(Some).map_err(|e| e.to_string())
}

// ------------------------------------------------------------------------ job history

/// `GET /api/jobs`: the Job History, newest first, each row with the counts and the gate
/// state of its progress artifact.
pub fn list_jobs(state_dir: &Path, query: &JobsQuery) -> Result<Value, ViewError> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<JobStatus>(Value::from(s))
                .map_err(|_| ViewError::BadRequest(format!("unknown job status {s:?}")))?,
        ),
    };
    let wp = query.wp.clone().filter(|s| !s.is_empty());
    let state = StateDir::new(state_dir);
    let rows = if state.history_db().exists() {
        let history = JobHistory::open(&state.history_db())?;
        history.list_jobs(&JobFilter { status, wp_id: wp, limit: None })?
    } else {
        // No index yet: the job directories are the truth (the index is rebuildable).
        scan_job_dirs(&state)?
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .filter(|r| wp.as_deref().is_none_or(|w| r.wp_id == w))
            .collect()
    };
    let jobs: Vec<Value> = rows.iter().map(|row| job_summary(&state, row)).collect();
    Ok(json!({ "state_dir": state_dir.display().to_string(), "jobs": jobs }))
}

fn scan_job_dirs(state: &StateDir) -> Result<Vec<JobRow>, ViewError> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(state.jobs_dir()) else { return Ok(rows) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(job) = state.job(&name) else { continue };
        let Ok(Some(doc)) = read_json(&job.job_json()) else { continue };
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        let Ok(status) = serde_json::from_value(doc.get("status").cloned().unwrap_or(Value::Null)) else {
            continue;
        };
        rows.push(JobRow {
            job_id: text("job_id").unwrap_or(name),
            job_kind: text("job_kind").unwrap_or_default(),
            profile_id: text("profile_id").unwrap_or_default(),
            protocol_id: text("protocol_id").unwrap_or_default(),
            wp_id: text("wp_id").unwrap_or_default(),
            status,
            status_reason: text("status_reason").unwrap_or_default(),
            created_at: text("created_at").unwrap_or_default(),
            started_at: text("started_at"),
            completed_at: text("completed_at"),
            updated_at: text("updated_at").unwrap_or_default(),
            current_mt: None,
            current_level: None,
            models_used: Vec::new(),
            metrics: doc.get("metrics").cloned().unwrap_or(Value::Null),
            job_dir: job.root().display().to_string(),
        });
    }
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.job_id.cmp(&b.job_id)));
    Ok(rows)
}

fn job_summary(state: &StateDir, row: &JobRow) -> Value {
    let mut out = serde_json::to_value(row).unwrap_or(Value::Null);
    // Counts and gate state come from the progress artifact (9.9), not from the index.
    let progress = state.job(&row.job_id).ok().and_then(|job| load_progress(&job).ok().flatten());
    if let (Some(p), Some(obj)) = (progress, out.as_object_mut()) {
        let s = &p.aggregate_stats;
        obj.insert(
            "counts".into(),
            json!({
                "total_mts": s.total_mts,
                "completed_mts": s.completed_mts,
                "failed_mts": s.failed_mts,
                "skipped_mts": s.skipped_mts,
                "total_iterations": s.total_iterations,
                "escalations": s.escalation_count,
                "drop_backs": s.drop_back_count,
                "distillation_candidates": s.distillation_candidates_generated,
                "total_duration_ms": s.total_duration_ms,
                "tokens": s.total_tokens_prompt + s.total_tokens_completion,
            }),
        );
        obj.insert("progress_status".into(), serde_json::to_value(p.status).unwrap_or(Value::Null));
        obj.insert("current_mt".into(), json!(p.current_state.active_mt));
        obj.insert("current_level".into(), json!(p.current_state.active_model_level));
        obj.insert("pending_gate".into(), json!(p.current_state.pending_gate));
        obj.insert("pending_consent".into(), json!(p.current_state.pending_cloud_escalation.is_some()));
    }
    out
}

// ------------------------------------------------------------------------------ job

/// `GET /api/jobs/{id}`: `job.json`, the progress artifact, the MT waves, escalation
/// records, distillation candidates, the pending gate and consent, and recorded decisions.
pub fn job_detail(state_dir: &Path, job_id: &str) -> Result<Value, ViewError> {
    let job = job_dir(state_dir, job_id)?;
    let record = read_json(&job.job_json())?;
    let (progress, progress_error) = match load_progress(&job) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let events = if job.events().exists() { read_events(&job.events()).ok() } else { Some(Vec::new()) };
    let events: Vec<Value> = events
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::to_value(e.envelope).ok())
        .collect();
    let waves = waves(&job, &events, progress.as_ref());

    let mut escalations = Vec::new();
    let mut seen_refs = Vec::new();
    for e in events.iter().filter(|e| e["event_type"] == "FR-EVT-MT-005") {
        let p = &e["payload"];
        let handle = handle_of(&p["escalation_record_ref"]);
        let (record, error) = load_json_handle(state_dir, &job, handle.as_ref());
        if let Some(h) = &handle {
            seen_refs.push(h.sha256.clone());
        }
        escalations.push(json!({
            "seq": e["seq"], "timestamp": e["timestamp"], "mt_id": p["mt_id"],
            "from_model": p["from_model"], "from_lora": p["from_lora"], "from_level": p["from_level"],
            "to_model": p["to_model"], "to_level": p["to_level"],
            "reason": p["reason"], "failure_category": p["failure_category"],
            "iterations_at_previous_level": p["iterations_at_previous_level"],
            "record_ref": p["escalation_record_ref"], "record": record, "error": error,
        }));
    }
    let mut candidates = Vec::new();
    for e in events.iter().filter(|e| e["event_type"] == "FR-EVT-MT-015") {
        let p = &e["payload"];
        let handle = handle_of(&p["candidate_ref"]);
        let (candidate, error) = load_json_handle(state_dir, &job, handle.as_ref());
        if let Some(h) = &handle {
            seen_refs.push(h.sha256.clone());
        }
        candidates.push(json!({
            "seq": e["seq"], "timestamp": e["timestamp"], "mt_id": p["mt_id"],
            "candidate_ref": p["candidate_ref"], "candidate": candidate, "error": error,
        }));
    }
    // References the progress artifact holds without a matching event are shown too, so
    // nothing recorded is hidden. An escalation record is versioned (3.9.1): each
    // FR-EVT-MT-005 names the version written at that escalation, and the progress entry
    // the newest one (with `remediation` once the MT succeeded or hit a gate). That newest
    // version belongs to the MT's last escalation, not to an escalation of its own; only
    // an MT with no escalation event at all (an event log cut short) gets a row from it.
    if let Some(p) = &progress {
        for mt in &p.micro_tasks {
            if let Some(h) = mt.escalation_record_ref.as_ref().filter(|h| !seen_refs.contains(&h.sha256)) {
                let (record, error) = load_json_handle(state_dir, &job, Some(h));
                let last_of_mt = escalations.iter_mut().rev().find(|e| e["mt_id"] == mt.mt_id.as_str());
                match last_of_mt.and_then(Value::as_object_mut) {
                    Some(row) => {
                        row.insert("latest_record_ref".into(), json!(h));
                        row.insert("latest_record".into(), json!(record));
                        row.insert("latest_error".into(), json!(error));
                    }
                    None => escalations.push(json!({
                        "mt_id": mt.mt_id, "record_ref": h, "record": record, "error": error,
                    })),
                }
            }
            let summary = mt.distillation_candidate.as_ref();
            if let Some(h) =
                summary.and_then(|s| s.candidate_ref.as_ref()).filter(|h| !seen_refs.contains(&h.sha256))
            {
                let (candidate, error) = load_json_handle(state_dir, &job, Some(h));
                candidates.push(json!({
                    "mt_id": mt.mt_id, "candidate_ref": h, "candidate": candidate, "error": error,
                }));
            }
        }
    }

    let problems: Vec<Value> = events.iter().filter_map(problem).collect();
    let pending_gate = progress.as_ref().and_then(|p| p.current_state.pending_gate.clone());
    let pending_consent = progress.as_ref().and_then(|p| p.current_state.pending_cloud_escalation.clone());
    let projection_plan = pending_consent.as_ref().map(|c| {
        let (plan, error) = load_json_handle(state_dir, &job, Some(&c.projection_plan_ref));
        json!({ "plan": plan, "error": error })
    });
    let decisions = recorded_decisions(&job);
    // A decision recorded while the job still waits: the executor acts on it at the next
    // resume, and a second decision would be refused, so the page offers resume instead.
    let gate_decided = pending_gate.as_ref().is_some_and(|g| g.decision_ref.is_some());
    let consent_decided = pending_consent.as_ref().is_some_and(|c| {
        decisions.iter().any(|d| d["kind"] == "consent" && d["record"]["request_id"] == c.request_id.as_str())
    });
    let last_seq = events.last().map_or(0, |e| e["seq"].as_u64().unwrap_or(0));
    Ok(json!({
        "job_id": job_id,
        "job": record,
        "progress": progress,
        "progress_error": progress_error,
        "waves": waves,
        "escalations": escalations,
        "distillation_candidates": candidates,
        "pending_gate": pending_gate,
        "pending_consent": pending_consent,
        "projection_plan": projection_plan,
        "decisions": decisions,
        "problems": problems,
        "gate_decided": gate_decided,
        "consent_decided": consent_decided,
        "last_seq": last_seq,
    }))
}

/// The operator-console problems of MTX-SPEC 15.3 an event stands for: gate denials and
/// degraded gates, capability denials, plugin failures and denied grants, recovery,
/// resource warnings and a failed loop. `None` for any other event.
fn problem(e: &Value) -> Option<Value> {
    let p = &e["payload"];
    let text = |k: &str| p[k].as_str().unwrap_or("").to_owned();
    let (kind, detail) = match e["event_type"].as_str()? {
        "FR-EVT-GATE-001" if p["outcome"] == "deny" || p["outcome"] == "degraded" => (
            format!("gate {}", text("outcome")),
            format!("{} {}: {}", text("gate"), text("op_id"), text("reason")),
        ),
        "FR-EVT-CAP-001" if p["decision_outcome"] == "deny" => {
            ("capability denied".to_owned(), format!("{} for {}", text("capability_id"), text("actor_id")))
        }
        "FR-EVT-PLUGIN-002" if p["decision_outcome"] == "deny" => {
            ("plugin grant denied".to_owned(), format!("{}: {}", text("plugin"), text("grant")))
        }
        "FR-EVT-MTX-003" => (
            "plugin failure".to_owned(),
            format!("{} ({}): {}", text("plugin"), text("kind"), text("message")),
        ),
        "FR-EVT-WF-RECOVERY" => (
            "recovery".to_owned(),
            format!("{} -> {}: {}", text("from_state"), text("to_state"), text("reason")),
        ),
        "FR-EVT-MTX-001" => (
            "resource warning".to_owned(),
            format!("{} at {} of {}", text("kind"), p["value"], p["threshold"]),
        ),
        "FR-EVT-MTX-004" => ("log repaired".to_owned(), format!("{}: {}", text("file"), text("reason"))),
        "FR-EVT-MT-010" => {
            ("loop failed".to_owned(), format!("{} {}", text("status_reason"), text("error_message")))
        }
        _ => return None,
    };
    Some(json!({
        "seq": e["seq"], "timestamp": e["timestamp"], "event_type": e["event_type"], "mt_id": e["mt_id"],
        "kind": kind, "detail": detail.trim(),
    }))
}

/// The MT waves: from the loop-start event (FR-EVT-MT-001 `execution_waves`), else the MT
/// definitions document, else one wave in progress order.
fn waves(job: &JobDir, events: &[Value], progress: Option<&ProgressArtifact>) -> Vec<Vec<String>> {
    let as_waves = |v: &Value| -> Option<Vec<Vec<String>>> {
        let waves: Vec<Vec<String>> = serde_json::from_value(v.clone()).ok()?;
        (!waves.is_empty()).then_some(waves)
    };
    if let Some(w) = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "FR-EVT-MT-001")
        .and_then(|e| as_waves(&e["payload"]["execution_waves"]))
    {
        return w;
    }
    if let Ok(Some(doc)) = read_json(&job.mt_definitions())
        && let Some(w) = as_waves(&doc["execution_waves"])
    {
        return w;
    }
    progress.map_or_else(Vec::new, |p| vec![p.micro_tasks.iter().map(|m| m.mt_id.clone()).collect()])
}

/// Gate decisions and consents from the ledger, newest last.
fn recorded_decisions(job: &JobDir) -> Vec<Value> {
    let Ok(entries) = read_records(&job.run_ledger()) else { return Vec::new() };
    entries
        .into_iter()
        .filter(|e| matches!(e.record, LedgerRecord::GateDecision(_) | LedgerRecord::Consent(_)))
        .map(|e| json!({ "seq": e.seq, "kind": e.record.kind(), "record": record_json(&e.record) }))
        .collect()
}

fn handle_of(v: &Value) -> Option<ArtifactHandle> {
    serde_json::from_value(v.clone()).ok()
}

fn load_json_handle(
    state_dir: &Path,
    job: &JobDir,
    handle: Option<&ArtifactHandle>,
) -> (Option<Value>, Option<String>) {
    let Some(handle) = handle else { return (None, Some("the record names no artifact".into())) };
    match read_handle(state_dir, Some(job), &handle.path, &handle.sha256) {
        Ok((bytes, _)) => match serde_json::from_slice(&bytes) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("{} is not JSON: {e}", handle.path))),
        },
        Err(e) => (None, Some(e.to_string())),
    }
}

// --------------------------------------------------------------------------- events

/// `GET /api/jobs/{id}/events`: the job's Flight Recorder records in `seq` order, each
/// with the artifact handles its payload names.
pub fn events(state_dir: &Path, job_id: &str, query: &EventsQuery) -> Result<Value, ViewError> {
    let job = job_dir(state_dir, job_id)?;
    let stored = if job.events().exists() { read_events(&job.events())? } else { Vec::new() };
    let last_seq = stored.last().map_or(0, |e| e.envelope.seq);
    let mut types: Vec<String> = stored.iter().map(|e| e.envelope.event_type.clone()).collect();
    types.sort();
    types.dedup();
    let mut mts: Vec<String> = stored.iter().filter_map(|e| e.envelope.mt_id.clone()).collect();
    mts.sort();
    mts.dedup();
    let filter_type = query.event_type.as_deref().filter(|s| !s.is_empty());
    let filter_mt = query.mt.as_deref().filter(|s| !s.is_empty());
    let events: Vec<Value> = stored
        .into_iter()
        .map(|e| e.envelope)
        .filter(|e| query.after.is_none_or(|after| e.seq > after))
        .filter(|e| filter_type.is_none_or(|t| e.event_type == t))
        .filter(|e| filter_mt.is_none_or(|m| e.mt_id.as_deref() == Some(m)))
        .map(|e| {
            let mut refs = Vec::new();
            collect_handles(&Value::Object(e.payload.clone()), "payload", &mut refs);
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("artifact_refs".into(), Value::Array(refs));
            }
            v
        })
        .collect();
    Ok(
        json!({ "job_id": job_id, "events": events, "last_seq": last_seq, "event_types": types, "mt_ids": mts }),
    )
}

/// Every ArtifactHandle-shaped object (a string `path` and a 64-hex `sha256`) under `v`.
fn collect_handles(v: &Value, at: &str, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            let path = map.get("path").and_then(Value::as_str);
            let sha = map.get("sha256").and_then(Value::as_str).filter(|s| is_sha256(s));
            if let (Some(path), Some(sha)) = (path, sha) {
                out.push(json!({ "field": at, "path": path, "sha256": sha }));
                return;
            }
            for (k, child) in map {
                collect_handles(child, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_handles(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// ----------------------------------------------------------------------------- steps

/// `GET /api/jobs/{id}/steps/{step_id}`: one iteration's evidence: its ledger snapshot,
/// its progress record, and every file of `step_outputs/<idempotency_key>/` (prompt,
/// context snapshot, response, validation evidence, `output.json`) with its sha256, plus
/// the handles `output.json` names.
pub fn step(state_dir: &Path, job_id: &str, step_id: &str) -> Result<Value, ViewError> {
    let job = job_dir(state_dir, job_id)?;
    let entries = read_records(&job.run_ledger())?;
    let ledger_step = entries
        .iter()
        .rev()
        .find_map(|e| match &e.record {
            LedgerRecord::Step(s) if s.step_id == step_id => Some(s.clone()),
            _ => None,
        })
        .ok_or_else(|| ViewError::NotFound(format!("no step {step_id} in the ledger of job {job_id}")))?;
    let key = &ledger_step.idempotency_key;
    let dir = job.step_dir(key).map_err(|_| ViewError::Unreadable {
        path: job.run_ledger(),
        message: format!("bad idempotency key {key:?}"),
    })?;
    let mut files = Vec::new();
    if let Ok(read) = std::fs::read_dir(&dir) {
        let mut names: Vec<String> = read
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| unreadable(&path, e))?;
            files.push(json!({
                "name": name,
                "path": format!("step_outputs/{key}/{name}"),
                "sha256": sha256_hex(&bytes),
                "size_bytes": bytes.len(),
            }));
        }
    }
    let mut output_refs = Vec::new();
    if let Ok(Some(output)) = read_json(&dir.join("output.json")) {
        collect_handles(&output, "output", &mut output_refs);
    }
    let iteration = load_progress(&job).ok().flatten().and_then(|p| {
        p.micro_tasks.iter().flat_map(|m| m.iterations.iter()).find(|i| i.step_id == step_id).cloned()
    });
    Ok(json!({
        "job_id": job_id,
        "step_id": step_id,
        "ledger_step": ledger_step,
        "iteration": iteration,
        "files": files,
        "output_refs": output_refs,
    }))
}

// --------------------------------------------------------------------------- ledger

/// The on-disk object of a ledger record (custom kinds keep their fields next to `kind`).
fn record_json(record: &LedgerRecord) -> Value {
    match record {
        LedgerRecord::Custom { kind, fields } => {
            let mut map = Map::new();
            map.insert("kind".into(), Value::from(kind.as_str()));
            map.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(map)
        }
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// `GET /api/jobs/{id}/ledger`: every run ledger record, the folded steps, and the
/// verification report of `mtx verify` (hash chains, records, artifacts).
pub fn ledger(state_dir: &Path, job_id: &str) -> Result<Value, ViewError> {
    let job = job_dir(state_dir, job_id)?;
    let (records, read_error) = match read_records(&job.run_ledger()) {
        Ok(entries) => (
            entries
                .iter()
                .map(|e| json!({ "seq": e.seq, "kind": e.record.kind(), "record": record_json(&e.record) }))
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let report = mtx_store::verify_job(state_dir, job_id)?;
    let ledger_problems: Vec<_> =
        report.problems.iter().filter(|p| p.file == "run_ledger.jsonl").cloned().collect();
    let events_problems: Vec<_> =
        report.problems.iter().filter(|p| p.file.starts_with("events")).cloned().collect();
    Ok(json!({
        "job_id": job_id,
        "records": records,
        "read_error": read_error,
        "chain": {
            "ledger_ok": ledger_problems.is_empty() && read_error.is_none(),
            "events_ok": events_problems.is_empty(),
            "all_ok": report.is_ok(),
            "ledger_records": report.ledger_records,
            "events": report.events,
            "inputs_checked": report.inputs_checked,
            "artifacts_checked": report.artifacts_checked,
            "progress_checked": report.progress_checked,
            "problems": report.problems,
        },
    }))
}

// ------------------------------------------------------------------------ artifacts

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads the bytes a handle names and checks them against `sha256`. `sha256/..` paths
/// must be exactly the store path of that hash; other paths are relative to the job
/// directory and must stay inside it. Returns the bytes and the file read.
fn read_handle(
    state_dir: &Path,
    job: Option<&JobDir>,
    path: &str,
    sha256: &str,
) -> Result<(Vec<u8>, PathBuf), ViewError> {
    if !is_sha256(sha256) {
        return Err(ViewError::BadRequest(format!("{sha256:?} is not a lowercase sha256")));
    }
    if path.starts_with("sha256/") {
        let expected = format!("sha256/{}/{sha256}", &sha256[..2]);
        if path != expected {
            return Err(ViewError::BadRequest(format!(
                "{path:?} is not the store path of {sha256} (expected {expected})"
            )));
        }
        let root = StateDir::new(state_dir).artifacts_dir();
        if !root.join(path).is_file() {
            return Err(ViewError::NotFound(format!("artifact {path}")));
        }
        let store = ArtifactStore::open(&root)?;
        let handle = ArtifactHandle {
            artifact_id: String::new(),
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            size_bytes: None,
            media_type: None,
        };
        return match store.get(&handle) {
            Ok(bytes) => Ok((bytes, root.join(path))),
            Err(StoreError::HashMismatch { path, expected, actual }) => {
                Err(ViewError::Integrity(format!("{path} holds bytes with sha256 {actual}, not {expected}")))
            }
            Err(StoreError::Missing(p)) => Err(ViewError::NotFound(format!("artifact {p}"))),
            Err(e) => Err(e.into()),
        };
    }
    let Some(job) = job else {
        return Err(ViewError::BadRequest(format!(
            "{path:?} is not an artifact store path (sha256/..); a job-relative path needs ?job="
        )));
    };
    let file = job.resolve(path).map_err(|_| ViewError::BadRequest(format!("{path:?} is not a job path")))?;
    // A symlink inside the job directory must not lead the viewer out of it.
    let (Ok(real), Ok(root)) = (file.canonicalize(), job.root().canonicalize()) else {
        return Err(ViewError::NotFound(format!("{path} in job {}", job.job_id())));
    };
    if !real.starts_with(&root) || !real.is_file() {
        return Err(ViewError::BadRequest(format!("{path:?} leaves the job directory")));
    }
    let bytes = std::fs::read(&real).map_err(|e| unreadable(&real, e))?;
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(ViewError::Integrity(format!("{path} holds bytes with sha256 {actual}, not {sha256}")));
    }
    Ok((bytes, real))
}

/// `GET /api/artifacts/{sha256}?path=..&job=..`: an artifact's bytes as text, checked
/// against its hash, with the store's sidecar metadata when there is one. Without `path`
/// the store path of the hash is used.
pub fn artifact(
    state_dir: &Path,
    sha256: &str,
    path: Option<&str>,
    job_id: Option<&str>,
) -> Result<Value, ViewError> {
    if !is_sha256(sha256) {
        return Err(ViewError::BadRequest(format!("{sha256:?} is not a lowercase sha256")));
    }
    let store_path = format!("sha256/{}/{sha256}", &sha256[..2]);
    let path = path.filter(|p| !p.is_empty()).unwrap_or(&store_path);
    let job = job_id.filter(|j| !j.is_empty()).map(|j| job_dir(state_dir, j)).transpose()?;
    let (bytes, _) = read_handle(state_dir, job.as_ref(), path, sha256)?;
    let meta = if path.starts_with("sha256/") {
        read_json(&StateDir::new(state_dir).artifacts_dir().join(format!("{path}.meta.json"))).ok().flatten()
    } else {
        None
    };
    let truncated = bytes.len() > MAX_ARTIFACT_TEXT;
    let shown = &bytes[..bytes.len().min(MAX_ARTIFACT_TEXT)];
    let binary = std::str::from_utf8(shown).is_err() && !truncated;
    Ok(json!({
        "sha256": sha256,
        "verified": true,
        "path": path,
        "job_id": job_id,
        "size_bytes": bytes.len(),
        "meta": meta,
        "binary": binary,
        "truncated": truncated,
        "text": String::from_utf8_lossy(shown),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_found_at_any_depth() {
        let sha = "ab".repeat(32);
        let v = json!({"a": {"ref": {"artifact_id": "x", "path": "sha256/ab/x", "sha256": sha}},
                       "list": [{"path": "p", "sha256": "short"}, {"path": "step_outputs/k/prompt.txt", "sha256": sha}]});
        let mut out = Vec::new();
        collect_handles(&v, "payload", &mut out);
        let fields: Vec<_> = out.iter().map(|h| h["field"].as_str().unwrap().to_owned()).collect();
        assert_eq!(fields, ["payload.a.ref", "payload.list[1]"]);
    }

    #[test]
    fn store_paths_must_match_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "ab".repeat(32);
        let wrong = read_handle(dir.path(), None, &format!("sha256/cd/{sha}"), &sha);
        assert!(matches!(wrong, Err(ViewError::BadRequest(_))));
        let escape = read_handle(dir.path(), None, "sha256/../../etc/passwd", &sha);
        assert!(matches!(escape, Err(ViewError::BadRequest(_))));
        let no_job = read_handle(dir.path(), None, "step_outputs/k/prompt.txt", &sha);
        assert!(matches!(no_job, Err(ViewError::BadRequest(_))));
        let bad_hash = read_handle(dir.path(), None, "sha256/ab/x", "ABC");
        assert!(matches!(bad_hash, Err(ViewError::BadRequest(_))));
    }
}
