//! ValidationResult and VerifySpecResult (MTX-SPEC 3.11): the recorded outcome of running
//! an MT's verify specs. Data only; it must never run a command.

use serde::{Deserialize, Serialize};

use crate::common::ArtifactHandle;

/// MTX-SPEC 3.11 ValidationResult.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationResult {
    pub passed: bool,
    pub spec_results: Vec<VerifySpecResult>,
    pub evidence_artifact_ref: ArtifactHandle,
    pub started_at: String,
    pub completed_at: String,
    pub total_duration_ms: u64,
}

/// MTX-SPEC 3.11 VerifySpecResult.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySpecResult {
    pub spec_index: u32,
    pub command: String,
    /// `exit_0`, `exit_nonzero`, `contains:<pattern>` or `not_contains:<pattern>`.
    pub expected: String,
    /// -1 when unknown (killed, not started).
    pub actual_exit_code: i32,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_ref: Option<ArtifactHandle>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The aggregate evidence artifact body: `{schema_version: "1.0", evidence: [handles]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceList {
    pub schema_version: String,
    pub evidence: Vec<String>,
}

impl EvidenceList {
    /// Sorted, de-duplicated list of canonical evidence handles.
    pub fn new(mut handles: Vec<String>) -> Self {
        handles.sort();
        handles.dedup();
        EvidenceList { schema_version: "1.0".into(), evidence: handles }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_result_round_trips() {
        let h = ArtifactHandle {
            artifact_id: "a".into(),
            path: "p".into(),
            sha256: "0".repeat(64),
            size_bytes: Some(3),
            media_type: None,
        };
        let r = ValidationResult {
            passed: false,
            spec_results: vec![VerifySpecResult {
                spec_index: 0,
                command: "cargo test".into(),
                expected: "exit_0".into(),
                actual_exit_code: -1,
                passed: false,
                stdout_ref: Some(h.clone()),
                stderr_ref: None,
                duration_ms: 30000,
                error: Some("timeout".into()),
            }],
            evidence_artifact_ref: h,
            started_at: "t0".into(),
            completed_at: "t1".into(),
            total_duration_ms: 30000,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<ValidationResult>(v).unwrap(), r);
    }

    #[test]
    fn evidence_list_is_sorted_and_unique() {
        let e = EvidenceList::new(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(e.evidence, ["a", "b"]);
    }
}
