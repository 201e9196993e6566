//! Escalation records and decisions (MTX-SPEC 3.9, 3.19).
//!
//! Data only: the escalation policy component proposes, the host records. This module
//! must never choose a level or a category itself.

use serde::{Deserialize, Serialize};

/// MTX-SPEC 3.9.1 EscalationRecord; `remediation` is absent until the episode resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord {
    pub mt_id: String,
    pub wp_id: String,
    pub created_at: String,
    pub escalation_chain: Vec<EscalationAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
    /// Unknown fields, kept on read (section 3).
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `EscalationRecord.remediation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediation {
    pub success_level: u32,
    pub success_model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_lora_id: Option<String>,
    pub failure_category: FailureCategory,
    #[serde(default)]
    pub contributing_factors: Vec<String>,
    pub drop_back_decision: DropBackDecision,
}

/// MTX-SPEC 3.9.2 EscalationAttempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationAttempt {
    pub level: u32,
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_version: Option<String>,
    pub iterations: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub tokens_used: u64,
    pub outcome: AttemptOutcome,
}

/// `outcome` of an EscalationAttempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptOutcome {
    Escalate,
    Success,
    HardGate,
}

/// MTX-SPEC 3.9.3 FailureCategory: exactly ten values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCategory {
    SyntaxErrorIsolated,
    SyntaxErrorSystemic,
    LogicErrorRegression,
    ScopeViolation,
    ValidationFlaky,
    TimeoutExceeded,
    ContextOverflow,
    HallucinationApi,
    IncompleteImplementation,
    Unknown,
}

impl FailureCategory {
    /// All ten values, in spec order.
    pub const ALL: [FailureCategory; 10] = [
        FailureCategory::SyntaxErrorIsolated,
        FailureCategory::SyntaxErrorSystemic,
        FailureCategory::LogicErrorRegression,
        FailureCategory::ScopeViolation,
        FailureCategory::ValidationFlaky,
        FailureCategory::TimeoutExceeded,
        FailureCategory::ContextOverflow,
        FailureCategory::HallucinationApi,
        FailureCategory::IncompleteImplementation,
        FailureCategory::Unknown,
    ];

    /// Maps any string to one of the ten values; anything unrecognised (including the
    /// prior implementation's `blocked`, `validation_failed`, `max_iterations`) is `unknown`.
    pub fn from_str_lossy(s: &str) -> FailureCategory {
        serde_json::from_value(serde_json::Value::String(s.to_string())).unwrap_or(FailureCategory::Unknown)
    }
}

/// MTX-SPEC 3.9.4 DropBackDecision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropBackDecision {
    pub action: DropBackAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_level: Option<u32>,
    pub reason: String,
    pub confidence: Confidence,
}

/// `action` of a DropBackDecision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DropBackAction {
    DropBack,
    StayEscalated,
}

/// `confidence` of a DropBackDecision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

/// MTX-SPEC 3.19 LoopDecision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopDecision {
    Complete,
    Retry,
    Escalate,
    Skip,
    Abort,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_category_has_exactly_the_ten_spellings() {
        let names: Vec<String> = FailureCategory::ALL
            .iter()
            .map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "syntax_error_isolated",
                "syntax_error_systemic",
                "logic_error_regression",
                "scope_violation",
                "validation_flaky",
                "timeout_exceeded",
                "context_overflow",
                "hallucination_api",
                "incomplete_implementation",
                "unknown"
            ]
        );
        assert_eq!(FailureCategory::from_str_lossy("validation_failed"), FailureCategory::Unknown);
        assert_eq!(FailureCategory::from_str_lossy("scope_violation"), FailureCategory::ScopeViolation);
    }

    #[test]
    fn escalation_record_round_trips_with_and_without_remediation() {
        let v = serde_json::json!({
            "mt_id": "MT-001", "wp_id": "WP-1", "created_at": "t",
            "escalation_chain": [
                {"level": 0, "model_id": "a", "iterations": 5, "tokens_used": 900, "outcome": "ESCALATE"},
                {"level": 1, "model_id": "a", "lora_id": "l", "iterations": 1, "tokens_used": 100, "outcome": "SUCCESS"}
            ],
            "x_unknown": [1]
        });
        let rec: EscalationRecord = serde_json::from_value(v.clone()).unwrap();
        assert!(rec.remediation.is_none());
        assert_eq!(serde_json::to_value(&rec).unwrap(), v);

        let mut with = v.clone();
        with["remediation"] = serde_json::json!({
            "success_level": 1, "success_model_id": "a", "failure_category": "syntax_error_isolated",
            "contributing_factors": ["rust"],
            "drop_back_decision": {"action": "DROP_BACK", "target_level": 0, "reason": "isolated", "confidence": "HIGH"}
        });
        let rec: EscalationRecord = serde_json::from_value(with.clone()).unwrap();
        assert_eq!(rec.remediation.as_ref().unwrap().drop_back_decision.action, DropBackAction::DropBack);
        assert_eq!(serde_json::to_value(&rec).unwrap(), with);
    }

    #[test]
    fn loop_decision_spelling() {
        assert_eq!(serde_json::to_string(&LoopDecision::Escalate).unwrap(), "\"escalate\"");
        assert_eq!(serde_json::to_string(&AttemptOutcome::HardGate).unwrap(), "\"HARD_GATE\"");
    }
}
