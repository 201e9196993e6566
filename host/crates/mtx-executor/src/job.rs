//! A job's durable state as the loop holds it: the job record (`job.json`), the MT
//! definitions, the progress artifact (with the loop's own bookkeeping under
//! [`EXT_KEY`]), and the shared log writer.
//!
//! Everything that must survive a restart lives in these files; nothing here keeps state
//! that a resume could not read back. It must never call a plugin or the Tool Bus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mtx_store::history::{JobRow, StatusUpdate};
use mtx_store::{JobDir, ProgressStore, StateDir};
use mtx_types::job::{WORKFLOW_DEFINITION_ID, WORKFLOW_DEFINITION_VERSION};
use mtx_types::{
    ArtifactHandle, ExecutionPhase, ExecutionState, JobStatus, MTStatus, MicroTaskDefinition,
    MicroTaskExecutorJob, ProgressArtifact, ProgressStatus, now_rfc3339, sha256_hex,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::recording::JobLog;
use crate::{ExecError, JobOutcome, JobSummary};

/// Key of the loop's bookkeeping inside the progress artifact (kept as an unknown field,
/// so it is written atomically with the rest of the loop state).
pub const EXT_KEY: &str = "mtx_executor";

/// Relative path of the MT definitions artifact in the job directory.
pub const MT_DEFINITIONS_FILE: &str = "mt_definitions.json";

/// Loop state the spec records have no field for, persisted with the progress artifact.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoopExt {
    /// `seq` of the first event recorded after this save: a crashed process's state
    /// changes from here on are replayed, not recorded again, on resume (8.5).
    #[serde(default)]
    pub events_checkpoint: Option<u64>,
    /// `summaries/job_summary.json` once the end-of-job summary ran (5.4).
    #[serde(default)]
    pub job_summary_ref: Option<ArtifactHandle>,
    /// Level the next MT starts at (after a drop-back or a stay-escalated decision).
    #[serde(default)]
    pub job_level: u32,
    /// Level of the active MT, once it started.
    #[serde(default)]
    pub mt_level: Option<u32>,
    /// Iterations at the active level that happened before a gate released it; the
    /// iteration limit counts from here.
    #[serde(default)]
    pub level_iteration_base: u32,
    #[serde(default)]
    pub loaded_model: Option<String>,
    #[serde(default)]
    pub model_swaps: u32,
    /// Pause points released by a `continue` decision.
    #[serde(default)]
    pub released_pauses: Vec<String>,
    #[serde(default)]
    pub token_gate_doublings: u32,
    #[serde(default)]
    pub token_warning_emitted: bool,
    /// FR-EVT-MTX-001 `storage_near_cap` for the run ledger was emitted.
    #[serde(default)]
    pub ledger_warning_emitted: bool,
    #[serde(default)]
    pub hard_gates: u32,
    /// Verify spec indexes that passed, per step id (for the policy's regression rule).
    #[serde(default)]
    pub passed_specs: BTreeMap<String, Vec<u32>>,
    /// Last LoRA used per MT (the `alternate` selector's `previous-lora-id`).
    #[serde(default)]
    pub previous_lora: BTreeMap<String, String>,
    /// `[claims, false completions]` per model (and `model+lora`).
    #[serde(default)]
    pub claims: BTreeMap<String, [u32; 2]>,
    /// What the job waits for: `pause_point`, `hard_gate` or `cloud_consent`.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// Gate decision ids already acted on.
    #[serde(default)]
    pub consumed_decisions: Vec<String>,
    /// The previous iteration's summary, for the next prompt.
    #[serde(default)]
    pub last_summary: Option<mtx_loop::IterationSummary>,
    /// Baseline of the active MT's files: path -> stored content (None = did not exist).
    #[serde(default)]
    pub baseline: BTreeMap<String, Option<ArtifactHandle>>,
    /// Students queued for distillation of the active MT (failed attempts before an
    /// escalation), as `(step_id, model_id, lora_id, level, outcome)`.
    #[serde(default)]
    pub students: Vec<StudentRef>,
    /// Total tokens (prompt + completion) of the job.
    #[serde(default)]
    pub total_tokens: u64,
    /// A cloud level may run once the consent for this payload hash is recorded.
    #[serde(default)]
    pub approved_payload: Option<String>,
    /// Iterations run per escalation level.
    #[serde(default)]
    pub iterations_per_level: BTreeMap<u32, u32>,
    /// Level the active MT started at (the climb ceiling is computed from it).
    #[serde(default)]
    pub mt_start_level: u32,
    /// A gate level an operator's `continue` released for the active MT.
    #[serde(default)]
    pub released_level: Option<u32>,
    /// The next iteration is the first after an escalation.
    #[serde(default)]
    pub after_escalation: bool,
    /// Request id of the cloud escalation awaiting or holding consent.
    #[serde(default)]
    pub cloud_request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudentRef {
    pub step_id: String,
    pub idempotency_key: String,
    pub model_id: String,
    pub lora_id: Option<String>,
    pub level: u32,
    pub iterations: u32,
    pub outcome: mtx_types::StudentOutcome,
    pub prompt_ref: Option<ArtifactHandle>,
    pub output_ref: Option<ArtifactHandle>,
    pub category: Option<mtx_types::FailureCategory>,
}

/// One job, loaded.
pub struct Job {
    pub state: StateDir,
    pub dir: JobDir,
    pub record: MicroTaskExecutorJob,
    pub defs: Vec<MicroTaskDefinition>,
    pub waves: Vec<Vec<String>>,
    pub progress: ProgressArtifact,
    pub progress_store: ProgressStore,
    pub ext: LoopExt,
    pub log: Arc<JobLog>,
}

pub fn internal(e: impl Into<anyhow::Error>) -> ExecError {
    ExecError::Internal(e.into())
}

/// A handle on a file of the job directory, named by its path relative to the job dir (the
/// journal settled first: the file as the records so far leave it).
pub fn file_handle(dir: &JobDir, rel: &str) -> Result<ArtifactHandle, ExecError> {
    dir.settled()?;
    let bytes = std::fs::read(dir.root().join(rel)).unwrap_or_default();
    Ok(ArtifactHandle {
        artifact_id: uuid::Uuid::now_v7().to_string(),
        path: rel.to_string(),
        sha256: sha256_hex(&bytes),
        size_bytes: Some(bytes.len() as u64),
        media_type: Some("application/json".into()),
    })
}

impl Job {
    pub fn wp_id(&self) -> &str {
        &self.record.wp_id
    }

    pub fn job_id(&self) -> &str {
        &self.record.job_id
    }

    pub fn def(&self, mt_id: &str) -> Option<&MicroTaskDefinition> {
        self.defs.iter().find(|d| d.mt_id == mt_id)
    }

    pub fn entry_index(&self, mt_id: &str) -> Option<usize> {
        self.progress.micro_tasks.iter().position(|e| e.mt_id == mt_id)
    }

    /// Writes the progress artifact atomically, with the loop bookkeeping inside.
    pub fn save_progress(&mut self) -> Result<(), ExecError> {
        self.ext.events_checkpoint = Some(self.log.recorder().next_seq());
        let ext = serde_json::to_value(&self.ext).map_err(internal)?;
        self.progress.extra.insert(EXT_KEY.into(), ext);
        // Write-ahead: the events describing this state are durable before it is (the
        // store writes its copy meanwhile, and puts it in place after the barrier, on its
        // own thread: the next save, a flush, or the loop before its next model call waits
        // for that).
        self.progress_store.save_after(&mut self.progress, || self.log.sync_apply_behind())?;
        Ok(())
    }

    /// Changes the job status: `job.json` and the Job History row.
    pub fn set_status(&mut self, status: JobStatus, reason: &str) -> Result<(), ExecError> {
        // The progress file's last exchange durable before a status that may end the run.
        self.progress_store.flush()?;
        let now = now_rfc3339();
        self.record.status = status;
        self.record.status_reason = reason.to_string();
        self.record.updated_at = now.clone();
        if status == JobStatus::Running && self.record.started_at.is_none() {
            self.record.started_at = Some(now.clone());
        }
        if status.is_terminal() {
            self.record.completed_at = Some(now.clone());
        }
        self.write_record()?;
        if let Some(h) = self.log.history() {
            let update = StatusUpdate {
                status: Some(status),
                status_reason: Some(reason.to_string()),
                started_at: self.record.started_at.clone(),
                completed_at: self.record.completed_at.clone(),
                current_mt: self.progress.current_state.active_mt.clone(),
                current_level: Some(self.progress.current_state.active_model_level),
                models_used: Some(self.progress.models_used()),
                metrics: Some(serde_json::to_value(self.summary()).unwrap_or(Value::Null)),
            };
            if let Err(e) = h.update_status(self.job_id(), &update) {
                tracing::warn!(error = %e, "job history status update failed");
            }
        }
        Ok(())
    }

    /// The handle of the progress artifact as the last save left it (once that save is in
    /// place: its store's thread exchanges the names after the save returns).
    pub fn progress_handle(&self) -> Result<ArtifactHandle, ExecError> {
        self.progress_store.settle()?;
        file_handle(&self.dir, "progress_artifact.json")
    }

    /// Rewrites `job.json` from the current state.
    pub fn write_record(&mut self) -> Result<(), ExecError> {
        let cs = &self.progress.current_state;
        let active_index = cs
            .active_mt
            .as_ref()
            .and_then(|m| self.progress.micro_tasks.iter().position(|e| &e.mt_id == m))
            .unwrap_or(0);
        let level = cs.active_model_level;
        let model = self
            .progress
            .policy
            .escalation_chain
            .iter()
            .find(|l| l.level == level)
            .map(|l| l.model_id.clone())
            .unwrap_or_default();
        let current_iteration = cs
            .active_mt
            .as_ref()
            .and_then(|m| self.progress.micro_tasks.iter().find(|e| &e.mt_id == m))
            .and_then(|e| e.iterations.last().map(|i| i.iteration))
            .unwrap_or(0);
        self.record.execution_state = ExecutionState {
            current_mt_index: active_index as u32,
            current_iteration,
            current_escalation_level: level,
            current_model_id: model,
            current_lora_id: None,
            total_iterations: cs.total_iterations,
            total_escalations: cs.total_escalations,
            total_drop_backs: cs.total_drop_backs,
            started_at: self.record.started_at.clone().unwrap_or_else(|| self.record.created_at.clone()),
            last_activity_at: now_rfc3339(),
            phase: phase_of(self.record.status, &self.progress),
        };
        let s = &self.progress.aggregate_stats;
        self.record.metrics.total_mts = s.total_mts;
        self.record.metrics.completed_mts = s.completed_mts;
        self.record.metrics.failed_mts = s.failed_mts;
        self.record.metrics.skipped_mts = s.skipped_mts;
        self.record.metrics.total_iterations = s.total_iterations;
        self.record.metrics.total_tokens_prompt = s.total_tokens_prompt;
        self.record.metrics.total_tokens_completion = s.total_tokens_completion;
        self.record.metrics.total_duration_ms = s.total_duration_ms;
        self.record.metrics.escalation_count = s.escalation_count;
        self.record.metrics.drop_back_count = s.drop_back_count;
        self.record.metrics.distillation_candidates_generated = s.distillation_candidates_generated;
        let mut level0 = (0u32, 0u32);
        self.record.metrics.mt_metrics = self
            .progress
            .micro_tasks
            .iter()
            .map(|e| {
                let started_at_0 = e.iterations.first().is_some_and(|i| i.escalation_level == 0);
                if started_at_0 && matches!(e.status, MTStatus::Completed) {
                    level0.0 += 1;
                    level0.1 += u32::from(e.final_model_level == Some(0));
                }
                let m = mtx_types::MTMetrics {
                    mt_id: e.mt_id.clone(),
                    status: e.status,
                    iterations: e.iterations.len() as u32,
                    final_escalation_level: e
                        .final_model_level
                        .or_else(|| e.iterations.last().map(|i| i.escalation_level))
                        .unwrap_or(0),
                    tokens_prompt: e.iterations.iter().map(|i| i.tokens_prompt).sum(),
                    tokens_completion: e.iterations.iter().map(|i| i.tokens_completion).sum(),
                    duration_ms: e.iterations.iter().map(|i| i.duration_ms).sum(),
                    validation_attempts: e.iterations.iter().filter(|i| i.validation_passed.is_some()).count()
                        as u32,
                    escalation_record_ref: e.escalation_record_ref.clone(),
                    distillation_candidate_ref: e
                        .distillation_candidate
                        .as_ref()
                        .and_then(|c| c.candidate_ref.clone()),
                };
                (e.mt_id.clone(), m)
            })
            .collect();
        self.record.metrics.success_rate_level_0 =
            if level0.0 == 0 { 0.0 } else { f64::from(level0.1) / f64::from(level0.0) };
        self.record.metrics.iterations_at_level =
            self.ext.iterations_per_level.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.record.job_metrics.input_tokens = s.total_tokens_prompt;
        self.record.job_metrics.output_tokens = s.total_tokens_completion;
        self.record.job_metrics.total_tokens = s.total_tokens_prompt + s.total_tokens_completion;
        self.record.job_metrics.tokens_executor = self.record.job_metrics.total_tokens;
        self.record.job_metrics.duration_ms = s.total_duration_ms;
        self.record.progress_artifact_ref = self.progress_handle()?;
        self.record.run_ledger_ref = file_handle(&self.dir, "run_ledger.jsonl")?;
        let bytes = serde_json::to_vec_pretty(&self.record).map_err(internal)?;
        self.dir.write_file("job.json", &bytes)?;
        Ok(())
    }

    /// The short report of the job as it stands.
    pub fn summary(&self) -> JobSummary {
        let s = &self.progress.aggregate_stats;
        let mut rates = BTreeMap::new();
        for (k, [claims, false_claims]) in &self.ext.claims {
            if *claims > 0 {
                rates.insert(k.clone(), f64::from(*false_claims) / f64::from(*claims));
            }
        }
        JobSummary {
            mts_total: s.total_mts,
            mts_completed: s.completed_mts,
            mts_skipped: s.skipped_mts,
            mts_failed: self.progress.micro_tasks.iter().filter(|e| e.status == MTStatus::Failed).count()
                as u32,
            iterations_per_level: self.ext.iterations_per_level.clone(),
            escalations: self.progress.current_state.total_escalations,
            drop_backs: self.progress.current_state.total_drop_backs,
            hard_gates: self.ext.hard_gates,
            distillation_candidates: s.distillation_candidates_generated,
            pending_gate: self
                .progress
                .current_state
                .pending_gate
                .as_ref()
                .map(|g| g.gate_reason.clone())
                .or_else(|| {
                    self.progress
                        .current_state
                        .pending_cloud_escalation
                        .as_ref()
                        .map(|_| "cloud_consent".to_string())
                }),
            mt_ids: self.defs.iter().map(|d| d.mt_id.clone()).collect(),
            total_tokens_prompt: s.total_tokens_prompt,
            total_tokens_completion: s.total_tokens_completion,
            false_completion_rate: rates,
        }
    }

    pub fn outcome(&self) -> JobOutcome {
        JobOutcome {
            job_id: self.job_id().to_string(),
            status: self.record.status,
            status_reason: self.record.status_reason.clone(),
            job_dir: self.dir.root().to_path_buf(),
            summary: self.summary(),
        }
    }

    /// The MT ids in execution order (waves in order, each sorted).
    pub fn order(&self) -> Vec<String> {
        self.waves.iter().flatten().cloned().collect()
    }
}

fn phase_of(status: JobStatus, progress: &ProgressArtifact) -> ExecutionPhase {
    match status {
        JobStatus::Completed | JobStatus::CompletedWithIssues => ExecutionPhase::Completed,
        JobStatus::Failed | JobStatus::Poisoned | JobStatus::Cancelled => ExecutionPhase::Failed,
        JobStatus::AwaitingUser => {
            if progress.current_state.pending_gate.as_ref().is_some_and(|g| g.gate_reason == "pause_point") {
                ExecutionPhase::PausedUserGate
            } else {
                ExecutionPhase::PausedHardGate
            }
        }
        JobStatus::Queued => ExecutionPhase::Initializing,
        _ => ExecutionPhase::ExecutingMt,
    }
}

/// The row the Job History gets when a job is created.
pub fn history_row(record: &MicroTaskExecutorJob, dir: &JobDir) -> JobRow {
    JobRow {
        job_id: record.job_id.clone(),
        job_kind: record.job_kind.clone(),
        profile_id: record.profile_id.clone(),
        protocol_id: record.protocol_id.clone(),
        wp_id: record.wp_id.clone(),
        status: record.status,
        status_reason: record.status_reason.clone(),
        created_at: record.created_at.clone(),
        started_at: record.started_at.clone(),
        completed_at: record.completed_at.clone(),
        updated_at: record.updated_at.clone(),
        current_mt: None,
        current_level: None,
        models_used: Vec::new(),
        metrics: json!({}),
        job_dir: dir.root().display().to_string(),
    }
}

/// Reads `job.json` of an existing job.
pub fn read_record(dir: &JobDir) -> Result<MicroTaskExecutorJob, ExecError> {
    let path = dir.job_json();
    dir.settled()?;
    let bytes = std::fs::read(&path)
        .map_err(|_| ExecError::NotFound(format!("job {} has no job record", dir.job_id())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| internal(anyhow::anyhow!("job record {}: {e}", path.display())))
}

/// The MT definitions document written at job creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefinitionsDoc {
    pub schema_version: String,
    pub wp_id: String,
    pub job_id: String,
    pub micro_tasks: Vec<MicroTaskDefinition>,
    pub execution_waves: Vec<Vec<String>>,
    #[serde(default)]
    pub validation: Value,
}

pub fn read_definitions(dir: &JobDir) -> Result<DefinitionsDoc, ExecError> {
    let path = dir.root().join(MT_DEFINITIONS_FILE);
    dir.settled()?;
    let bytes = std::fs::read(&path).map_err(internal)?;
    serde_json::from_slice(&bytes).map_err(|e| internal(anyhow::anyhow!("{}: {e}", path.display())))
}

/// A fresh progress artifact (5.2 step 5).
pub fn new_progress(
    wp_id: &str,
    job_id: &str,
    policy: &mtx_types::ExecutionPolicy,
    loras: &[mtx_types::LoRAInfo],
    defs: &[MicroTaskDefinition],
    order: &[String],
) -> ProgressArtifact {
    let now = now_rfc3339();
    ProgressArtifact {
        schema_version: mtx_types::progress::PROGRESS_SCHEMA_VERSION.to_string(),
        wp_id: wp_id.to_string(),
        job_id: job_id.to_string(),
        created_at: now.clone(),
        updated_at: now.clone(),
        completed_at: None,
        status: ProgressStatus::InProgress,
        policy: policy.clone(),
        learning_context: mtx_types::LearningContext {
            skill_bank_snapshot_at_start: now,
            loras_available: loras.to_vec(),
            pending_distillation_jobs: 0,
        },
        current_state: mtx_types::CurrentState::default(),
        micro_tasks: order
            .iter()
            .filter_map(|id| defs.iter().find(|d| &d.mt_id == id))
            .map(|d| mtx_types::MTProgressEntry::pending(d.mt_id.clone(), d.name.clone()))
            .collect(),
        aggregate_stats: mtx_types::AggregateStats::default(),
        extra: serde_json::Map::new(),
    }
}

/// The `job_inputs` of the record (3.1.6).
pub fn job_inputs(
    wp_id: &str,
    scope: &mtx_types::WorkPacketScope,
    policy: &mtx_types::ExecutionPolicy,
) -> Value {
    json!({
        "wp_id": wp_id,
        "wp_scope": scope,
        "execution_policy": policy,
        "workflow_definition_id": WORKFLOW_DEFINITION_ID,
        "workflow_definition_version": WORKFLOW_DEFINITION_VERSION,
    })
}

/// Relative path of `p` inside `root`, if it is inside.
pub fn relative_inside(root: &Path, p: &Path) -> Option<String> {
    let root = root.canonicalize().ok()?;
    let p = p.canonicalize().ok()?;
    p.strip_prefix(&root).ok().map(|r| r.display().to_string())
}
