//! DistillationCandidate (MTX-SPEC 3.12) and its trust score.
//!
//! Phase 1 records candidates only; this module must never trigger training. The trust
//! score must reflect validation quality, never a constant.

use serde::{Deserialize, Serialize};

use crate::common::ArtifactHandle;
use crate::escalation::FailureCategory;

/// MTX-SPEC 3.12 DistillationCandidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillationCandidate {
    pub skill_log_entry_id: String,
    pub mt_id: String,
    pub wp_id: String,
    pub student_attempt: StudentAttempt,
    pub teacher_success: TeacherSuccess,
    pub task_type_tags: Vec<String>,
    pub contributing_factors: Vec<String>,
    pub data_trust_score: f64,
    pub distillation_eligible: bool,
    pub tokenizer: TokenizerInfo,
}

/// `student_attempt` of a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentAttempt {
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_version: Option<String>,
    pub prompt_snapshot_ref: ArtifactHandle,
    pub output_snapshot_ref: ArtifactHandle,
    pub outcome: StudentOutcome,
    pub iterations: u32,
}

/// `student_attempt.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StudentOutcome {
    ValidationFailed,
    Incomplete,
    Error,
}

/// `teacher_success` of a candidate; `outcome` is always `VALIDATION_PASSED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherSuccess {
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    pub prompt_snapshot_ref: ArtifactHandle,
    pub output_snapshot_ref: ArtifactHandle,
    pub outcome: TeacherOutcome,
    pub iterations: u32,
}

/// The single allowed teacher outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TeacherOutcome {
    #[default]
    ValidationPassed,
}

/// `tokenizer` metadata of a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub student_tokenizer_id: String,
    pub teacher_tokenizer_id: String,
}

/// The validation-quality signals the default trust formula reads (3.12 rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustSignals {
    /// A non-blocking verify spec failed in the teacher's passing validation.
    pub teacher_nonblocking_failed: bool,
    /// The dominant failure category of the lower levels.
    pub failure_category: FailureCategory,
    /// Number of verify specs of the MT.
    pub teacher_verify_count: usize,
    pub student_outcome: StudentOutcome,
}

/// Default `data_trust_score` [D]: 1.0 minus 0.3 for a failed non-blocking spec, 0.3 for
/// `validation_flaky`, 0.2 for a single verify spec, 0.2 for a student `ERROR`; clamped
/// to [0, 1]. Computed in tenths so that the 0.5 eligibility boundary is exact.
pub fn data_trust_score(signals: &TrustSignals) -> f64 {
    let mut tenths: i32 = 10;
    if signals.teacher_nonblocking_failed {
        tenths -= 3;
    }
    if signals.failure_category == FailureCategory::ValidationFlaky {
        tenths -= 3;
    }
    if signals.teacher_verify_count == 1 {
        tenths -= 2;
    }
    if signals.student_outcome == StudentOutcome::Error {
        tenths -= 2;
    }
    f64::from(tenths.clamp(0, 10)) / 10.0
}

/// `distillation_eligible` = score >= 0.5 and the teacher's evidence verified.
pub fn distillation_eligible(score: f64, teacher_evidence_verified: bool) -> bool {
    score >= 0.5 && teacher_evidence_verified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals() -> TrustSignals {
        TrustSignals {
            teacher_nonblocking_failed: false,
            failure_category: FailureCategory::SyntaxErrorIsolated,
            teacher_verify_count: 2,
            student_outcome: StudentOutcome::ValidationFailed,
        }
    }

    #[test]
    fn clean_signals_score_one() {
        assert_eq!(data_trust_score(&signals()), 1.0);
    }

    #[test]
    fn each_penalty_lowers_the_score() {
        let s = TrustSignals { teacher_nonblocking_failed: true, ..signals() };
        assert_eq!(data_trust_score(&s), 0.7);
        let s = TrustSignals { failure_category: FailureCategory::ValidationFlaky, ..signals() };
        assert_eq!(data_trust_score(&s), 0.7);
        let s = TrustSignals { teacher_verify_count: 1, ..signals() };
        assert_eq!(data_trust_score(&s), 0.8);
        let s = TrustSignals { student_outcome: StudentOutcome::Error, ..signals() };
        assert_eq!(data_trust_score(&s), 0.8);
    }

    #[test]
    fn boundary_and_clamp() {
        let s = TrustSignals { teacher_nonblocking_failed: true, teacher_verify_count: 1, ..signals() };
        let score = data_trust_score(&s);
        assert_eq!(score, 0.5);
        assert!(distillation_eligible(score, true));
        assert!(!distillation_eligible(score, false));
        let all = TrustSignals {
            teacher_nonblocking_failed: true,
            failure_category: FailureCategory::ValidationFlaky,
            teacher_verify_count: 1,
            student_outcome: StudentOutcome::Error,
        };
        assert_eq!(data_trust_score(&all), 0.0);
        assert!(!distillation_eligible(0.4, true));
    }
}
