//! CompletionSignal and CompletionEvidence (MTX-SPEC 3.10): what the completion parser
//! found in a model response. Data only; it must never parse model text itself.

use serde::{Deserialize, Serialize};

/// MTX-SPEC 3.10 CompletionSignal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionSignal {
    pub claimed_complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Vec<CompletionEvidence>>,
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_block: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_need: Option<String>,
    #[serde(default)]
    pub malformed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_verified: Option<bool>,
    #[serde(default)]
    pub parse_warnings: Vec<String>,
}

/// MTX-SPEC 3.10 CompletionEvidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionEvidence {
    pub criterion: String,
    /// `file:start-end`, or `file:line` meaning start = end.
    pub evidence_location: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_signal_round_trips() {
        let s = CompletionSignal {
            claimed_complete: true,
            evidence: Some(vec![CompletionEvidence {
                criterion: "c".into(),
                evidence_location: "a.rs:1-3".into(),
            }]),
            claimed_mt_id: Some("MT-001".into()),
            parse_warnings: vec!["mt_id_mismatch".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["malformed"], false);
        assert_eq!(serde_json::from_value::<CompletionSignal>(v).unwrap(), s);
    }
}
