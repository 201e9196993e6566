//! The micro-task loop controller of mtx (MTX-SPEC 5): plans a Work Packet into MTs
//! through the `mt-planner` plugin, enforces MT-VAL, runs each MT as a bounded loop of
//! model iterations (context compilation, model call, strict completion parsing, scoped
//! edits through the Tool Bus, validation, decision), escalates along the chain, pauses at
//! hard gates and pause points, asks for consent before any cloud call, and records every
//! step in the state directory (progress artifact, run ledger, Flight Recorder, Job
//! History) in the order of 8.4.
//!
//! Code map: [`convert`] (WIT records <-> spec records), [`toolport`] (the validator's
//! Tool Bus port), [`recording`] (the one writer of a job's logs), `job` (creating, loading
//! and persisting a job), `runner` (the loop itself), `operator` (gate and consent
//! decisions recorded by `mtx gate` / `mtx consent`).
//!
//! This crate never spawns a process and never writes into the workspace itself: commands
//! and edits go through the Tool Bus, models and policies through plugins.

pub mod convert;
mod job;
mod operator;
pub mod recording;
mod runner;
pub mod toolport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mtx_plugin::{PluginSpec, World};
use serde::Serialize;

pub use mtx_types::{ConsentReceipt, GateChoice, GateDecision, ProjectionPlan};
pub use operator::OperatorRequest;

/// The plugins a run uses, one per role plus the validators.
#[derive(Debug, Clone)]
pub struct PluginSet {
    pub planner: PluginSpec,
    pub model_backend: PluginSpec,
    pub lora_selector: PluginSpec,
    pub escalation_policy: PluginSpec,
    pub validators: Vec<PluginSpec>,
}

impl PluginSet {
    /// The built-in defaults: planner-default, backend-replay, lora-by-tags,
    /// escalation-default, [validator-command, validator-integrity].
    pub fn defaults() -> Self {
        PluginSet {
            planner: PluginSpec::builtin("planner-default", "planner", World::MtPlanner),
            model_backend: PluginSpec::builtin("backend-replay", "model_backend", World::ModelBackend),
            lora_selector: PluginSpec::builtin("lora-by-tags", "lora_selector", World::LoraSelector),
            escalation_policy: PluginSpec::builtin(
                "escalation-default",
                "escalation_policy",
                World::EscalationPolicy,
            ),
            validators: vec![
                PluginSpec::builtin("validator-command", "validators", World::Validator),
                PluginSpec::builtin("validator-integrity", "validators", World::Validator),
            ],
        }
    }
}

/// What the run config grants the Tool Bus.
#[derive(Debug, Clone, Default)]
pub struct ToolBusSettings {
    /// Programs verify commands may run (`proc.exec:<tool>`), e.g. `["cargo"]`.
    pub proc_exec: Vec<String>,
    /// A shell for commands that need shell syntax; `None` refuses such commands.
    pub shell_program: Option<String>,
    /// Names of environment variables passed to commands (values from the host).
    pub env: Vec<String>,
}

/// Everything a run needs besides the Work Packet.
#[derive(Debug, Clone)]
pub struct ExecutorSetup {
    pub state_dir: PathBuf,
    pub workspace: PathBuf,
    pub plugins: PluginSet,
    pub policy: mtx_types::ExecutionPolicy,
    pub loras: Vec<mtx_types::LoRAInfo>,
    pub toolbus: ToolBusSettings,
    pub capability_profile_id: String,
    pub cache_dir: Option<PathBuf>,
    pub user_id: String,
}

/// A live view of a run: called after each Flight Recorder event is durable.
pub trait RunObserver: Send + Sync {
    fn event(&self, _event: &mtx_store::EventEnvelope) {}
}

/// A [`RunObserver`] that ignores everything.
pub struct NoObserver;

impl RunObserver for NoObserver {}

/// How a `run_job` / `resume_job` call ended.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub job_id: String,
    pub status: mtx_types::JobStatus,
    pub status_reason: String,
    pub job_dir: PathBuf,
    pub summary: JobSummary,
}

/// Counts an operator reads after a run (and the metrics of 9.8 in short).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    pub mts_total: u32,
    pub mts_completed: u32,
    pub mts_skipped: u32,
    pub mts_failed: u32,
    /// Iterations run per escalation level.
    pub iterations_per_level: BTreeMap<u32, u32>,
    pub escalations: u32,
    pub drop_backs: u32,
    pub hard_gates: u32,
    pub distillation_candidates: u32,
    /// The reason of the gate or pause the job waits at, if any.
    pub pending_gate: Option<String>,
    pub mt_ids: Vec<String>,
    pub total_tokens_prompt: u64,
    pub total_tokens_completion: u64,
    /// False completions / claims, per `model_id` or `model_id+lora_id`.
    pub false_completion_rate: BTreeMap<String, f64>,
}

/// Why a call failed before or outside the loop's own outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Bad packet, refused stub/draft, MT-VAL errors, bad configuration (CLI exit 2).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Unknown job id (CLI exit 2).
    #[error("not found: {0}")]
    NotFound(String),
    /// A gate or consent decision for a job that is not waiting for one (CLI exit 2).
    #[error("job is not paused: {0}")]
    NotPaused(String),
    /// Anything else (CLI exit 1).
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl From<mtx_store::StoreError> for ExecError {
    fn from(e: mtx_store::StoreError) -> Self {
        ExecError::Internal(anyhow::Error::new(e))
    }
}

/// Plans and runs the Work Packet at `wp_path` as a new job. Jobs of the state directory
/// left `in_progress` by a crash are marked stalled and recorded (FR-EVT-WF-RECOVERY)
/// first; they continue only on `resume_job`.
pub fn run_job(
    setup: &ExecutorSetup,
    wp_path: &Path,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    runner::run_job(setup, wp_path, observer)
}

/// Continues a job: a paused one with its recorded decision (5.5, 8.8), a crashed one
/// after ledger reconciliation (8.5); a finished one returns without any model call.
pub fn resume_job(
    setup: &ExecutorSetup,
    job_id: &str,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    runner::resume_job(setup, job_id, observer)
}

/// Records an operator's decision on the gate or pause point a job waits at.
pub fn decide_gate(
    state_dir: &Path,
    job_id: &str,
    decision: GateChoice,
    note: Option<&str>,
    user_id: &str,
) -> Result<GateDecision, ExecError> {
    operator::decide_gate(state_dir, job_id, decision, note, user_id)
}

/// Records consent (or its refusal) for the pending cloud escalation of a job (5.14).
pub fn decide_consent(
    state_dir: &Path,
    job_id: &str,
    approve: bool,
    note: Option<&str>,
    user_id: &str,
) -> Result<ConsentReceipt, ExecError> {
    operator::decide_consent(state_dir, job_id, approve, note, user_id)
}

/// Asks a running job to skip its active MT at the next decision (5.15).
pub fn request_skip(
    state_dir: &Path,
    job_id: &str,
    note: Option<&str>,
    user_id: &str,
) -> Result<OperatorRequest, ExecError> {
    operator::request_skip(state_dir, job_id, note, user_id)
}

/// Asks a running job to stop at its next check (5.15).
pub fn request_cancel(
    state_dir: &Path,
    job_id: &str,
    note: Option<&str>,
    user_id: &str,
) -> Result<OperatorRequest, ExecError> {
    operator::request_cancel(state_dir, job_id, note, user_id)
}

/// The projection plan of the cloud escalation a job waits for, if any.
pub fn projection_plan(state_dir: &Path, job_id: &str) -> Result<Option<ProjectionPlan>, ExecError> {
    operator::projection_plan(state_dir, job_id)
}
