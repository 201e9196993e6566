//! The mtx-types records this crate consumes and produces, named in one place.
//! It must never define loop behaviour.

pub use mtx_types::context::RetrievalConfig;
pub use mtx_types::{
    ArtifactHandle, CompletionEvidence, CompletionSignal, ContextSnapshot, DeterminismMode, DoneVerification,
    EscalationLevel, EscalationTarget, ExecutionTier, FailureCategory, LoopDecision, MicroTaskDefinition,
    PromptEnvelope, PromptEnvelopeHashes, SnapshotSection, SnapshotSource, SourceMode, canonical_json,
    sha256_hex,
};

#[cfg(test)]
pub use mtx_types::{DoneCriterion, FileAccessSpec, RiskLevel, VerificationSpec};
