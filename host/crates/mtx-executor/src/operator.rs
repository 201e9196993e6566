//! Operator decisions on a paused job: gate decisions (3.18, 5.5) and cloud consent
//! (5.14). Each writes its artifact, a ledger record and a Flight Recorder event with
//! actor `human`, and marks the pending record so `resume_job` can act on it.
//!
//! Nothing here continues the job; only `resume_job` does. A decision is refused when the
//! job is not waiting for one, or when one was already recorded.
//!
//! Requests to a running job (skip its active MT, cancel it; 5.15) cannot write to its
//! logs, which the running process holds locked: they are request files in the job
//! directory that the loop reads at its next check and records when it honours them.

use std::path::Path;

use mtx_store::events::Actor;
use mtx_store::ledger::{ConsentRecord, GateDecisionRecord};
use mtx_store::{
    Correlation, Event, FlightRecorder, JobDir, JobHistory, Journal, LedgerRecord, ProgressStore, RunLedger,
    StateDir,
};
use mtx_types::gate::{ActorKind, GateActor};
use mtx_types::{
    CloudEscalationRequest, ConsentReceipt, GateChoice, GateDecision, MicroTaskExecutorJob, ProgressArtifact,
    ProgressStatus, ProjectionPlan, now_rfc3339,
};
use serde_json::json;

use crate::ExecError;
use crate::job::{internal, read_record};

struct Paused {
    dir: JobDir,
    state: StateDir,
    record: MicroTaskExecutorJob,
    store: ProgressStore,
    progress: ProgressArtifact,
}

fn open(state_dir: &Path, job_id: &str) -> Result<Paused, ExecError> {
    let (state, dir) = find(state_dir, job_id)?;
    read_paused(state, dir)
}

/// [`open`] for a decision, which appends to the job's logs: a journal a crashed run left
/// is replayed first (a paused job's is empty), so the decision reads and continues the
/// job's files as they are durable.
fn open_for_decision(state_dir: &Path, job_id: &str) -> Result<Paused, ExecError> {
    let (state, dir) = find(state_dir, job_id)?;
    Journal::recover(dir.root(), state.root())?;
    read_paused(state, dir)
}

fn find(state_dir: &Path, job_id: &str) -> Result<(StateDir, JobDir), ExecError> {
    let state = StateDir::new(state_dir);
    let dir = state.job(job_id).map_err(|_| ExecError::NotFound(format!("job {job_id}")))?;
    if !dir.root().is_dir() {
        return Err(ExecError::NotFound(format!("job {job_id} in {}", state_dir.display())));
    }
    Ok((state, dir))
}

fn read_paused(state: StateDir, dir: JobDir) -> Result<Paused, ExecError> {
    let record = read_record(&dir)?;
    let store = ProgressStore::new(&dir.progress_artifact());
    let progress: ProgressArtifact = store
        .load()
        .map_err(|_| ExecError::NotPaused(format!("job {} has no progress artifact", dir.job_id())))?;
    Ok(Paused { dir, state, record, store, progress })
}

fn correlation(record: &MicroTaskExecutorJob) -> Correlation {
    Correlation {
        trace_id: record.trace_id.clone(),
        job_id: record.job_id.clone(),
        workflow_run_id: record.workflow_run_id.clone(),
        wp_id: record.wp_id.clone(),
    }
}

fn emit(p: &Paused, event: Event) -> Result<(), ExecError> {
    let recorder = FlightRecorder::open(&p.dir.events(), correlation(&p.record))?;
    let stored = recorder.emit_stored(event)?;
    if let Ok(h) = JobHistory::open(&p.state.history_db()) {
        let _ = h.index_event(&p.record.job_id, &stored);
    }
    Ok(())
}

/// Name of a pending skip request in the job directory.
pub const SKIP_FILE: &str = "skip_requested.json";

/// What an operator asked of a running job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorRequest {
    pub request_id: String,
    pub job_id: String,
    /// `skip` or `cancel`.
    pub kind: String,
    /// The MT a skip applies to (the active MT when it was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    pub requested_by: String,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

fn running(p: &Paused, job_id: &str, what: &str) -> Result<(), ExecError> {
    match p.progress.status {
        ProgressStatus::InProgress => Ok(()),
        ProgressStatus::Paused => Err(ExecError::InvalidInput(format!(
            "job {job_id} is paused; decide its gate instead (`mtx gate {job_id} --decision skip|abort`)"
        ))),
        other => Err(ExecError::InvalidInput(format!("job {job_id} is {other:?}, nothing to {what}"))),
    }
}

/// How long [`request_skip`] reads a running job's progress again while it shows no active
/// MT (an MT that started in the last moment, its save not yet in place).
const ACTIVE_MT_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Asks a running job to skip its active MT (5.15). The loop honours it at the MT's next
/// decision (rule 2 of 5.6), unless that iteration succeeds, and records FR-EVT-MT-016
/// with reason `user_skip`.
pub fn request_skip(
    state_dir: &Path,
    job_id: &str,
    note: Option<&str>,
    user_id: &str,
) -> Result<OperatorRequest, ExecError> {
    let mut p = open(state_dir, job_id)?;
    running(&p, job_id, "skip")?;
    // A running job puts each progress save in place just after it (its store's thread
    // exchanges the names once the copy is synced), so an MT that has just started may not
    // show yet: read again for a moment before saying there is none.
    let started = std::time::Instant::now();
    while p.progress.current_state.active_mt.is_none() && started.elapsed() < ACTIVE_MT_PATIENCE {
        std::thread::sleep(std::time::Duration::from_millis(2));
        p = open(state_dir, job_id)?;
        running(&p, job_id, "skip")?;
    }
    let Some(mt_id) = p.progress.current_state.active_mt.clone() else {
        return Err(ExecError::InvalidInput(format!("job {job_id} has no active MT to skip")));
    };
    write_request(&p, job_id, "skip", Some(mt_id), note, user_id, SKIP_FILE)
}

/// Asks a running job to stop (5.15): the loop records FR-EVT-MT-011 at its next check
/// (an iteration's start, or right after a model call) and ends `cancelled`.
pub fn request_cancel(
    state_dir: &Path,
    job_id: &str,
    note: Option<&str>,
    user_id: &str,
) -> Result<OperatorRequest, ExecError> {
    let p = open(state_dir, job_id)?;
    running(&p, job_id, "cancel")?;
    write_request(&p, job_id, "cancel", None, note, user_id, crate::runner::CANCEL_FILE)
}

fn write_request(
    p: &Paused,
    job_id: &str,
    kind: &str,
    mt_id: Option<String>,
    note: Option<&str>,
    user_id: &str,
    file: &str,
) -> Result<OperatorRequest, ExecError> {
    let request = OperatorRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        job_id: job_id.to_string(),
        kind: kind.to_string(),
        mt_id,
        requested_by: user_id.to_string(),
        requested_at: now_rfc3339(),
        notes: note.map(str::to_owned),
    };
    p.dir.write_file(file, &serde_json::to_vec_pretty(&request).map_err(internal)?)?;
    Ok(request)
}

pub fn decide_gate(
    state_dir: &Path,
    job_id: &str,
    decision: GateChoice,
    note: Option<&str>,
    user_id: &str,
) -> Result<GateDecision, ExecError> {
    let mut p = open_for_decision(state_dir, job_id)?;
    if p.progress.status != ProgressStatus::Paused {
        return Err(ExecError::NotPaused(format!("job {job_id} is {:?}, not paused", p.record.status)));
    }
    let Some(gate) = p.progress.current_state.pending_gate.clone() else {
        return Err(ExecError::NotPaused(format!(
            "job {job_id} waits for cloud consent, not a gate decision; use `mtx consent`"
        )));
    };
    if gate.decision_ref.is_some() {
        return Err(ExecError::NotPaused(format!(
            "job {job_id} already has a decision for {}; resume it",
            gate.gate_reason
        )));
    }
    let decided = GateDecision {
        decision_id: uuid::Uuid::now_v7().to_string(),
        job_id: job_id.to_string(),
        wp_id: p.record.wp_id.clone(),
        mt_id: Some(gate.mt_id.clone()),
        gate_reason: gate.gate_reason.clone(),
        decision,
        actor: GateActor { kind: ActorKind::Human, user_id: user_id.to_string() },
        decided_at: now_rfc3339(),
        notes: note.map(str::to_owned),
    };
    let bytes = serde_json::to_vec_pretty(&decided).map_err(internal)?;
    let handle = p.dir.write_file(&format!("gate_decisions/{}.json", decided.decision_id), &bytes)?;
    let choice = serde_json::to_value(decision).map_err(internal)?;
    let choice = choice.as_str().unwrap_or("continue").to_string();
    let mut ledger = RunLedger::open(&p.dir.run_ledger())?;
    ledger.append(&LedgerRecord::GateDecision(GateDecisionRecord {
        decision_id: decided.decision_id.clone(),
        mt_id: decided.mt_id.clone(),
        gate_reason: decided.gate_reason.clone(),
        decision: choice.clone(),
        decision_ref: Some(handle.clone()),
    }))?;
    drop(ledger);
    emit(
        &p,
        Event::new(
            "FR-EVT-MTX-002",
            json!({
                "decision_id": decided.decision_id,
                "job_id": job_id,
                "wp_id": decided.wp_id,
                "mt_id": decided.mt_id,
                "gate_reason": decided.gate_reason,
                "decision": choice,
                "actor": decided.actor,
                "decided_at": decided.decided_at,
                "notes": decided.notes,
                "decision_ref": handle,
            }),
        )
        .actor(Actor::Human)
        .mt(&gate.mt_id),
    )?;
    if let Some(g) = p.progress.current_state.pending_gate.as_mut() {
        g.decision_ref = Some(handle);
    }
    p.store.save(&mut p.progress)?;
    Ok(decided)
}

pub fn decide_consent(
    state_dir: &Path,
    job_id: &str,
    approve: bool,
    note: Option<&str>,
    user_id: &str,
) -> Result<ConsentReceipt, ExecError> {
    let p = open_for_decision(state_dir, job_id)?;
    let Some(pending) = p.progress.current_state.pending_cloud_escalation.clone() else {
        return Err(ExecError::NotPaused(format!("job {job_id} is not waiting for cloud consent")));
    };
    let receipt_rel = format!("cloud_escalation/consent_{}.json", pending.request_id);
    if p.dir.root().join(&receipt_rel).exists() {
        return Err(ExecError::NotPaused(format!(
            "cloud escalation {} of job {job_id} already has a consent decision",
            pending.request_id
        )));
    }
    let plan = read_plan(&p.dir, &pending.projection_plan_ref.path)?;
    let receipt = ConsentReceipt {
        schema_version: mtx_types::cloud::CONSENT_RECEIPT_SCHEMA_VERSION.into(),
        consent_receipt_id: uuid::Uuid::now_v7().to_string(),
        projection_plan_id: plan.projection_plan_id.clone(),
        payload_sha256: plan.payload_sha256.clone(),
        approved: approve,
        approved_at: now_rfc3339(),
        user_id: user_id.to_string(),
        ui_surface: Some(mtx_types::UiSurface::OperatorConsole),
        notes: note.map(str::to_owned),
    };
    let receipt_ref =
        p.dir.write_file(&receipt_rel, &serde_json::to_vec_pretty(&receipt).map_err(internal)?)?;
    let request = CloudEscalationRequest {
        schema_version: mtx_types::cloud::CLOUD_ESCALATION_SCHEMA_VERSION.into(),
        request_id: pending.request_id.clone(),
        wp_id: p.record.wp_id.clone(),
        mt_id: pending.mt_id.clone(),
        reason: "local_levels_exhausted".into(),
        local_attempts: pending.local_attempts,
        last_error_summary: pending.last_error_summary.clone(),
        requested_model_id: pending.requested_model_id.clone(),
        projection_plan_id: plan.projection_plan_id.clone(),
        consent_receipt_id: receipt.consent_receipt_id.clone(),
    };
    p.dir.write_file(
        &format!("cloud_escalation/request_{}.json", pending.request_id),
        &serde_json::to_vec_pretty(&request).map_err(internal)?,
    )?;
    let mut ledger = RunLedger::open(&p.dir.run_ledger())?;
    ledger.append(&LedgerRecord::Consent(ConsentRecord {
        request_id: pending.request_id.clone(),
        approved: approve,
        consent_receipt_id: Some(receipt.consent_receipt_id.clone()),
        receipt_ref: Some(receipt_ref),
    }))?;
    drop(ledger);
    emit(
        &p,
        Event::new(
            if approve { "FR-EVT-CLOUD-002" } else { "FR-EVT-CLOUD-003" },
            json!({
                "request_id": pending.request_id,
                "reason": if approve { "operator_approved" } else { "operator_denied" },
                "requested_model_id": pending.requested_model_id,
                "consent_receipt_id": receipt.consent_receipt_id,
                "projection_plan_id": plan.projection_plan_id,
                "payload_sha256": plan.payload_sha256,
                "job_id": job_id,
                "wp_id": p.record.wp_id,
                "mt_id": pending.mt_id,
            }),
        )
        .actor(Actor::Human)
        .mt(&pending.mt_id),
    )?;
    Ok(receipt)
}

fn read_plan(dir: &JobDir, rel: &str) -> Result<ProjectionPlan, ExecError> {
    let bytes = std::fs::read(dir.resolve(rel)?).map_err(internal)?;
    serde_json::from_slice(&bytes).map_err(internal)
}

pub fn projection_plan(state_dir: &Path, job_id: &str) -> Result<Option<ProjectionPlan>, ExecError> {
    let p = match open(state_dir, job_id) {
        Ok(p) => p,
        Err(ExecError::NotPaused(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    match &p.progress.current_state.pending_cloud_escalation {
        Some(pending) => read_plan(&p.dir, &pending.projection_plan_ref.path).map(Some),
        None => Ok(None),
    }
}
