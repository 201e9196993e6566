//! MicroTaskDefinition and its parts (MTX-SPEC 3.6).
//!
//! The planner produces these records and the host validates them (MT-VAL, in mtx-wp)
//! before anything executes. The routing fields of 3.6.6 are `Option` here so that a
//! definition missing them still parses and the validator can report MT-VAL-011..013;
//! this module must never enforce limits itself.

use serde::{Deserialize, Serialize};

/// MTX-SPEC 3.6.1 MicroTaskDefinition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroTaskDefinition {
    pub mt_id: String,
    pub name: String,
    pub scope: String,
    pub files: FileAccessSpec,
    pub actions: Vec<String>,
    pub verify: Vec<VerificationSpec>,
    pub done: Vec<DoneCriterion>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    pub token_budget: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_tier: Option<ExecutionTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_target: Option<EscalationTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<ExpectedOutput>,
    #[serde(default)]
    pub task_tags: Vec<String>,
    pub risk_level: RiskLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Unknown fields, kept on read and written back unchanged (section 3).
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// MTX-SPEC 3.6.2 FileAccessSpec. All three lists are required (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccessSpec {
    pub read: Vec<String>,
    pub modify: Vec<String>,
    pub create: Vec<String>,
}

/// MTX-SPEC 3.6.3 VerificationSpec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationSpec {
    pub command: String,
    pub expect: VerifyExpect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_blocking")]
    pub blocking: bool,
}

/// Default verify timeout (3.6.3).
pub const DEFAULT_VERIFY_TIMEOUT_MS: u64 = 30_000;
/// Bounds of a verify `timeout_ms` (3.6.3, 3.6.5).
pub const VERIFY_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=300_000;

fn default_timeout_ms() -> u64 {
    DEFAULT_VERIFY_TIMEOUT_MS
}
fn default_blocking() -> bool {
    true
}

impl VerificationSpec {
    /// A blocking `exit_0` spec with the default timeout.
    pub fn exit_0(command: impl Into<String>) -> Self {
        VerificationSpec {
            command: command.into(),
            expect: VerifyExpect::Exit0,
            pattern: None,
            timeout_ms: DEFAULT_VERIFY_TIMEOUT_MS,
            blocking: true,
        }
    }

    /// The `expected` encoding of VerifySpecResult (3.11): `exit_0`, `exit_nonzero`,
    /// `contains:<pattern>` or `not_contains:<pattern>`.
    pub fn expected_string(&self) -> String {
        let pattern = self.pattern.as_deref().unwrap_or("");
        match self.expect {
            VerifyExpect::Exit0 => "exit_0".to_string(),
            VerifyExpect::ExitNonzero => "exit_nonzero".to_string(),
            VerifyExpect::Contains => format!("contains:{pattern}"),
            VerifyExpect::NotContains => format!("not_contains:{pattern}"),
        }
    }
}

/// `expect` of a VerificationSpec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VerifyExpect {
    #[serde(rename = "exit_0")]
    Exit0,
    #[serde(rename = "exit_nonzero")]
    ExitNonzero,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "not_contains")]
    NotContains,
}

impl VerifyExpect {
    /// Whether this expectation needs a `pattern`.
    pub fn needs_pattern(self) -> bool {
        matches!(self, VerifyExpect::Contains | VerifyExpect::NotContains)
    }
}

/// MTX-SPEC 3.6.4 DoneCriterion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneCriterion {
    pub description: String,
    pub verification: DoneVerification,
    /// Index into `verify`; signed so that a bad negative index parses and is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_ref: Option<i64>,
}

/// `verification` of a DoneCriterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoneVerification {
    Automated,
    EvidenceRequired,
}

/// `execution_tier` of an MT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionTier {
    LocalSmall,
    LocalLarge,
    Cloud,
    HumanReview,
}

/// `escalation_target` of an MT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationTarget {
    LocalLarge,
    Cloud,
    HumanReview,
    RoleMailbox,
}

/// `expected_output` of an MT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedOutput {
    Patch,
    Artifact,
    StructuredAnswer,
    DecisionSupport,
}

/// `risk_level` of an MT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> serde_json::Value {
        serde_json::json!({
            "mt_id": "MT-003",
            "name": "Implement nested config merging with lifetimes",
            "scope": "Add a ConfigMerger trait",
            "files": {"read": ["src/config/mod.rs"], "modify": ["src/config/merger.rs"], "create": []},
            "actions": ["define trait", "add tests"],
            "verify": [
                {"command": "cargo check --lib", "expect": "exit_0", "timeout_ms": 60000, "blocking": true},
                {"command": "cargo test", "expect": "contains", "pattern": "ok", "timeout_ms": 120000, "blocking": false}
            ],
            "done": [
                {"description": "compiles", "verification": "automated", "verify_ref": 0},
                {"description": "documented", "verification": "evidence_required"}
            ],
            "depends_on": ["MT-001", "MT-002"],
            "token_budget": 3500,
            "execution_tier": "local_small",
            "allowed_tools": [],
            "retry_budget": 3,
            "expected_output": "patch",
            "task_tags": ["rust"],
            "risk_level": "medium",
            "x_planner_note": {"keep": true}
        })
    }

    #[test]
    fn definition_round_trips_and_keeps_unknown_fields() {
        let def: MicroTaskDefinition = serde_json::from_value(example()).unwrap();
        assert_eq!(def.execution_tier, Some(ExecutionTier::LocalSmall));
        assert_eq!(def.verify[1].expect, VerifyExpect::Contains);
        assert_eq!(def.done[1].verification, DoneVerification::EvidenceRequired);
        assert!(def.extra.contains_key("x_planner_note"));
        assert_eq!(serde_json::to_value(&def).unwrap(), example());
    }

    #[test]
    fn verify_defaults_apply_when_omitted() {
        let spec: VerificationSpec =
            serde_json::from_value(serde_json::json!({"command": "true", "expect": "exit_nonzero"})).unwrap();
        assert_eq!(spec.timeout_ms, 30_000);
        assert!(spec.blocking);
        assert_eq!(spec.expected_string(), "exit_nonzero");
    }

    #[test]
    fn unknown_enum_spelling_is_rejected() {
        let mut v = example();
        v["risk_level"] = "HIGH".into();
        assert!(serde_json::from_value::<MicroTaskDefinition>(v).is_err());
    }
}
