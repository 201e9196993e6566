//! The MicroTaskExecutorJob record (MTX-SPEC 3.1), ExecutionState (3.4) and the job
//! contract invariant (3.1.5).
//!
//! Pure data and checks. It must never create, store or dispatch a job; the store and
//! the loop do that and call [`check_job_contract`] first.

use serde::{Deserialize, Serialize};

use crate::common::ArtifactHandle;
use crate::context::ContextSnapshot;
use crate::policy::ExecutionPolicy;
use crate::progress::{JobMetrics, MicroTaskMetrics};

/// Profile id of this job profile.
pub const PROFILE_ID: &str = "micro_task_executor_v1";
/// Protocol id of this job profile.
pub const PROTOCOL_ID: &str = "micro_task_executor_v1";
/// Job kind of this job profile.
pub const JOB_KIND: &str = "micro_task_execution";
/// Workflow definition id of the loop (section 0).
pub const WORKFLOW_DEFINITION_ID: &str = "mt_execution_loop_v1";
/// Version of the workflow definition.
pub const WORKFLOW_DEFINITION_VERSION: &str = "1.0.0";

/// A job record that breaks the contract invariant of 3.1.5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid job contract: job_kind {job_kind:?}, profile_id {profile_id:?}, protocol_id {protocol_id:?} \
     (micro_task_execution requires both ids to be micro_task_executor_v1 and vice versa)"
)]
pub struct ContractError {
    pub job_kind: String,
    pub profile_id: String,
    pub protocol_id: String,
}

/// The contract invariant of 3.1.5: `micro_task_execution` jobs carry both ids equal to
/// `micro_task_executor_v1`, and either id being `micro_task_executor_v1` requires that
/// job kind. Jobs of other kinds with other ids are not this profile's business.
pub fn check_job_contract(job_kind: &str, profile_id: &str, protocol_id: &str) -> Result<(), ContractError> {
    let ours = job_kind == JOB_KIND || profile_id == PROFILE_ID || protocol_id == PROTOCOL_ID;
    let exact = job_kind == JOB_KIND && profile_id == PROFILE_ID && protocol_id == PROTOCOL_ID;
    if ours && !exact {
        return Err(ContractError {
            job_kind: job_kind.to_string(),
            profile_id: profile_id.to_string(),
            protocol_id: protocol_id.to_string(),
        });
    }
    Ok(())
}

/// MTX-SPEC 3.1.4 JobStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Stalled,
    AwaitingValidation,
    AwaitingUser,
    Completed,
    CompletedWithIssues,
    Failed,
    Cancelled,
    Poisoned,
}

impl JobStatus {
    /// Whether the status is terminal (no further transitions).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed
                | JobStatus::CompletedWithIssues
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::Poisoned
        )
    }
}

/// `status_reason` values of 3.1.7.
pub mod status_reason {
    pub const COMPLETED: &str = "completed";
    pub const COMPLETED_WITH_ISSUES: &str = "completed_with_issues";
    pub const CANCELLED: &str = "cancelled";
    pub const MT_DEFINITIONS_INVALID: &str = "mt_definitions_invalid";
    pub const PAUSED_USER_GATE: &str = "paused_user_gate";
    pub const PAUSED_HARD_GATE: &str = "paused_hard_gate";
    pub const PAUSED_HUMAN_GATE: &str = "paused_human_gate";
    pub const PAUSED_CLOUD_CONSENT: &str = "paused_cloud_consent";
    pub const LOCKED_FAIL_CLOSED: &str = "locked_fail_closed";
    pub const MODEL_SWAP_FAILED: &str = "model_swap_failed";
    pub const MODEL_SWAP_TIMEOUT: &str = "model_swap_timeout";
    pub const INVALID_JOB_CONTRACT: &str = "invalid_job_contract";
    pub const CAPABILITY_VIOLATION: &str = "capability_violation";
    pub const STATE_CORRUPTION: &str = "state_corruption";
    pub const POISONED_DURATION: &str = "poisoned_duration";
    pub const PLUGIN_FAILURE: &str = "plugin_failure";

    /// Every value, in spec order.
    pub const ALL: [&str; 16] = [
        COMPLETED,
        COMPLETED_WITH_ISSUES,
        CANCELLED,
        MT_DEFINITIONS_INVALID,
        PAUSED_USER_GATE,
        PAUSED_HARD_GATE,
        PAUSED_HUMAN_GATE,
        PAUSED_CLOUD_CONSENT,
        LOCKED_FAIL_CLOSED,
        MODEL_SWAP_FAILED,
        MODEL_SWAP_TIMEOUT,
        INVALID_JOB_CONTRACT,
        CAPABILITY_VIOLATION,
        STATE_CORRUPTION,
        POISONED_DURATION,
        PLUGIN_FAILURE,
    ];
}

/// `access_mode` of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    AnalysisOnly,
    PreviewOnly,
    ApplyScoped,
}

/// `safety_mode` of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafetyMode {
    Strict,
    Normal,
    Experimental,
}

/// MTX-SPEC 3.0 WorkspaceScope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceScope {
    pub root: String,
    pub in_scope_paths: Vec<String>,
    #[serde(default)]
    pub out_of_scope: Vec<String>,
}

/// MTX-SPEC 3.0 EntityRef.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: String,
    pub id: String,
}

/// MTX-SPEC 3.0 LayerScope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerScope {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl Default for LayerScope {
    fn default() -> Self {
        LayerScope {
            read: vec!["raw".into(), "derived".into(), "display".into()],
            write: vec!["derived".into()],
        }
    }
}

/// MTX-SPEC 11.1 error categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    ModelTimeout,
    ModelError,
    ValidationTimeout,
    ValidationError,
    CapabilityViolation,
    StateCorruption,
    ResourceExhausted,
    PluginFailure,
}

/// MTX-SPEC 3.0 JobError.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub category: ErrorCategory,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_ref: Option<ArtifactHandle>,
}

/// WorkPacketScope of 3.1.6: the parsed scope of a Work Packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPacketScope {
    pub in_scope_paths: Vec<String>,
    #[serde(default)]
    pub out_of_scope: Vec<String>,
    pub done_means: Vec<String>,
    pub test_plan: Vec<String>,
    pub description: String,
}

/// Job inputs of 3.1.6. `mt_definitions` / `mt_definitions_ref` are not fields: any input
/// carrying them lands in `extra`, and [`JobInputs::generated_mt_field`] names it so the
/// caller can refuse it (R-GEN-1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInputs {
    pub wp_id: String,
    pub wp_scope: WorkPacketScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_policy: Option<ExecutionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl JobInputs {
    /// The name of a field that must be absent (R-GEN-1), if present.
    pub fn generated_mt_field(&self) -> Option<&'static str> {
        ["mt_definitions", "mt_definitions_ref"].into_iter().find(|k| self.extra.contains_key(*k))
    }
}

/// MTX-SPEC 3.4 ExecutionPhase (exactly ten values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionPhase {
    Initializing,
    ExecutingMt,
    Validating,
    Escalating,
    PausedUserGate,
    PausedHardGate,
    GeneratingSummaries,
    Finalizing,
    Completed,
    Failed,
}

/// MTX-SPEC 3.4 ExecutionState.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionState {
    pub current_mt_index: u32,
    pub current_iteration: u32,
    pub current_escalation_level: u32,
    pub current_model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_lora_id: Option<String>,
    pub total_iterations: u32,
    pub total_escalations: u32,
    pub total_drop_backs: u32,
    pub started_at: String,
    pub last_activity_at: String,
    pub phase: ExecutionPhase,
}

/// The MicroTaskExecutorJob record (3.1.1 to 3.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroTaskExecutorJob {
    // 3.1.1 inherited core fields
    pub job_id: String,
    pub job_kind: String,
    pub protocol_id: String,
    pub task_schema_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<String>,
    pub profile_id: String,
    pub capability_profile_id: String,
    pub access_mode: AccessMode,
    pub safety_mode: SafetyMode,
    pub workspace_scope: WorkspaceScope,
    #[serde(default)]
    pub entity_refs: Vec<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_snapshot: Option<ContextSnapshot>,
    #[serde(default)]
    pub layer_scope: LayerScope,
    pub status: JobStatus,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    // 3.1.2 profile fields
    pub wp_id: String,
    pub mt_definitions_ref: ArtifactHandle,
    pub progress_artifact_ref: ArtifactHandle,
    pub run_ledger_ref: ArtifactHandle,
    pub execution_policy: ExecutionPolicy,
    pub execution_state: ExecutionState,
    pub metrics: MicroTaskMetrics,
    // 3.1.3 further job-model fields
    pub trace_id: String,
    pub workflow_run_id: String,
    pub status_reason: String,
    pub updated_at: String,
    pub job_inputs: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_outputs: Option<serde_json::Value>,
    pub job_metrics: JobMetrics,
    /// Unknown fields, kept on read (section 3).
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl MicroTaskExecutorJob {
    /// [`check_job_contract`] on this record's ids.
    pub fn check_contract(&self) -> Result<(), ContractError> {
        check_job_contract(&self.job_kind, &self.profile_id, &self.protocol_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_accepts_the_exact_triple_and_foreign_jobs() {
        assert!(check_job_contract(JOB_KIND, PROFILE_ID, PROTOCOL_ID).is_ok());
        assert!(check_job_contract("workflow_run", "other", "other").is_ok());
    }

    #[test]
    fn contract_rejects_every_mismatch() {
        for (kind, profile, protocol) in [
            ("workflow_run", PROFILE_ID, PROTOCOL_ID),
            (JOB_KIND, "other", PROTOCOL_ID),
            (JOB_KIND, PROFILE_ID, "other"),
            ("workflow_run", "other", PROTOCOL_ID),
            ("workflow_run", PROFILE_ID, "other"),
        ] {
            let err = check_job_contract(kind, profile, protocol).unwrap_err();
            assert_eq!(err.job_kind, kind);
        }
    }

    #[test]
    fn job_record_round_trips_with_unknown_fields() {
        let handle = |p: &str| ArtifactHandle {
            artifact_id: "0190a1b2-0000-7000-8000-000000000001".into(),
            path: p.into(),
            sha256: crate::sha256_hex(p.as_bytes()),
            size_bytes: None,
            media_type: None,
        };
        let job = MicroTaskExecutorJob {
            job_id: "j1".into(),
            job_kind: JOB_KIND.into(),
            protocol_id: PROTOCOL_ID.into(),
            task_schema_version: "1.0.0".into(),
            parent_job_id: None,
            profile_id: PROFILE_ID.into(),
            capability_profile_id: "default".into(),
            access_mode: AccessMode::ApplyScoped,
            safety_mode: SafetyMode::Normal,
            workspace_scope: WorkspaceScope {
                root: "/ws".into(),
                in_scope_paths: vec!["src".into()],
                out_of_scope: vec![],
            },
            entity_refs: vec![EntityRef { kind: "wp".into(), id: "WP-1".into() }],
            context_snapshot: None,
            layer_scope: LayerScope::default(),
            status: JobStatus::AwaitingUser,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            started_at: None,
            completed_at: None,
            error: None,
            wp_id: "WP-1".into(),
            mt_definitions_ref: handle("mt_definitions.json"),
            progress_artifact_ref: handle("progress.json"),
            run_ledger_ref: handle("ledger.json"),
            execution_policy: ExecutionPolicy::default(),
            execution_state: ExecutionState {
                current_mt_index: 0,
                current_iteration: 1,
                current_escalation_level: 0,
                current_model_id: "qwen2.5-coder:7b".into(),
                current_lora_id: None,
                total_iterations: 0,
                total_escalations: 0,
                total_drop_backs: 0,
                started_at: "2026-01-01T00:00:00.000Z".into(),
                last_activity_at: "2026-01-01T00:00:00.000Z".into(),
                phase: ExecutionPhase::PausedHardGate,
            },
            metrics: MicroTaskMetrics::default(),
            trace_id: "t".into(),
            workflow_run_id: "r".into(),
            status_reason: status_reason::PAUSED_HARD_GATE.into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            job_inputs: serde_json::json!({"wp_id": "WP-1"}),
            job_outputs: None,
            job_metrics: JobMetrics::default(),
            extra: serde_json::Map::new(),
        };
        let mut v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["status"], "awaiting_user");
        assert_eq!(v["execution_state"]["phase"], "paused_hard_gate");
        v["x_future"] = serde_json::json!(42);
        let back: MicroTaskExecutorJob = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.extra["x_future"], 42);
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        assert!(back.check_contract().is_ok());
    }

    #[test]
    fn job_inputs_name_a_generated_mt_field() {
        let inputs: JobInputs = serde_json::from_value(serde_json::json!({
            "wp_id": "WP-1",
            "wp_scope": {"in_scope_paths": [], "done_means": [], "test_plan": [], "description": ""},
            "mt_definitions_ref": {"artifact_id": "a", "path": "p", "sha256": "0"}
        }))
        .unwrap();
        assert_eq!(inputs.generated_mt_field(), Some("mt_definitions_ref"));
    }
}
