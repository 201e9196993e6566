//! The data contract of mtx: the records of MTX-SPEC section 3, as serde types.
//!
//! Field names, enum spellings and ids are the spec's, exactly. Top-level documents keep
//! unknown fields on read. This crate holds data and pure helpers only; it must never
//! do I/O.

mod canonical;
pub mod cloud;
pub mod common;
pub mod completion;
pub mod context;
pub mod distill;
pub mod escalation;
pub mod gate;
pub mod job;
pub mod ledger;
pub mod mtdef;
pub mod policy;
pub mod progress;
pub mod swap;
pub mod validation;

pub use cloud::{CloudEscalationRequest, ConsentReceipt, ProjectionPlan, UiSurface};
pub use common::{
    ArtifactHandle, Sha256Hex, TokenUsage, canonical_json, canonical_json_value, now_rfc3339, sha256_hex,
};
pub use completion::{CompletionEvidence, CompletionSignal};
pub use context::{
    ContextSnapshot, DeterminismMode, MTContextCompilationConfig, PromptEnvelope, PromptEnvelopeHashes,
    SnapshotSection, SnapshotSource, SourceMode,
};
pub use distill::{
    DistillationCandidate, StudentAttempt, StudentOutcome, TeacherSuccess, TrustSignals, data_trust_score,
    distillation_eligible,
};
pub use escalation::{
    AttemptOutcome, Confidence, DropBackAction, DropBackDecision, EscalationAttempt, EscalationRecord,
    FailureCategory, LoopDecision, Remediation,
};
pub use gate::{GateChoice, GateDecision};
pub use job::{
    AccessMode, ContractError, EntityRef, ErrorCategory, ExecutionPhase, ExecutionState, JOB_KIND, JobError,
    JobInputs, JobStatus, LayerScope, MicroTaskExecutorJob, PROFILE_ID, PROTOCOL_ID, SafetyMode,
    WorkPacketScope, WorkspaceScope, check_job_contract, status_reason,
};
pub use ledger::{LedgerStep, LedgerStepStatus, RunLedger, idempotency_key, step_id};
pub use mtdef::{
    DoneCriterion, DoneVerification, EscalationTarget, ExecutionTier, ExpectedOutput, FileAccessSpec,
    MicroTaskDefinition, RiskLevel, VerificationSpec, VerifyExpect,
};
pub use policy::{
    AutomationLevel, ChainError, DropBackStrategy, EscalationLevel, ExecutionPolicy,
    ExecutionPolicyExtension, HARD_GATE_MODEL_ID, LoRASelectionStrategy, LoraSelectorMode, ModelSwapPolicy,
    SwapFallbackStrategy,
};
pub use progress::{
    AggregateStats, CurrentState, EntryChanges, IterationOutcome, IterationRecord, JobMetrics,
    LearningContext, LoRAInfo, MTMetrics, MTProgressEntry, MTStatus, MicroTaskMetrics, MicroTasks,
    ProgressArtifact, ProgressStatus, is_valid_mt_id,
};
pub use swap::{ModelSwapRequest, state_hash};
pub use validation::{ValidationResult, VerifySpecResult};
