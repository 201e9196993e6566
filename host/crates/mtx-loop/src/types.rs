//! The mtx-types records this crate consumes and produces, named in one place.
//! It must never define loop behaviour.

pub use mtx_types::{
    CompletionEvidence, CompletionSignal, DoneVerification, EscalationLevel, EscalationTarget, ExecutionTier,
    FailureCategory, LoopDecision, MicroTaskDefinition, sha256_hex,
};

#[cfg(test)]
pub use mtx_types::{DoneCriterion, FileAccessSpec, RiskLevel, VerificationSpec};
