//! Cloud escalation records (MTX-SPEC 3.13): the request, the projection plan that says
//! what would leave the machine, and the human consent bound to its exact payload hash.
//! Data only; it must never send anything.

use serde::{Deserialize, Serialize};

use crate::common::Sha256Hex;

pub const CLOUD_ESCALATION_SCHEMA_VERSION: &str = "hsk.cloud_escalation@0.4";
pub const PROJECTION_PLAN_SCHEMA_VERSION: &str = "hsk.projection_plan@0.4";
pub const CONSENT_RECEIPT_SCHEMA_VERSION: &str = "hsk.consent_receipt@0.4";

/// MTX-SPEC 3.13 CloudEscalationRequest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEscalationRequest {
    pub schema_version: String,
    pub request_id: String,
    pub wp_id: String,
    pub mt_id: String,
    pub reason: String,
    pub local_attempts: u32,
    /// At most 256 characters.
    pub last_error_summary: String,
    pub requested_model_id: String,
    pub projection_plan_id: String,
    pub consent_receipt_id: String,
}

/// MTX-SPEC 3.13 ProjectionPlan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionPlan {
    pub schema_version: String,
    pub projection_plan_id: String,
    pub include_artifact_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_fields: Option<Vec<String>>,
    pub redactions_applied: Vec<String>,
    pub max_bytes: u64,
    pub payload_sha256: Sha256Hex,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
}

/// MTX-SPEC 3.13 ConsentReceipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentReceipt {
    pub schema_version: String,
    pub consent_receipt_id: String,
    pub projection_plan_id: String,
    pub payload_sha256: Sha256Hex,
    pub approved: bool,
    pub approved_at: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_surface: Option<UiSurface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl ConsentReceipt {
    /// Whether this receipt approves exactly `plan` (same plan id and payload hash).
    pub fn approves(&self, plan: &ProjectionPlan) -> bool {
        self.approved
            && self.projection_plan_id == plan.projection_plan_id
            && self.payload_sha256 == plan.payload_sha256
    }
}

/// `ui_surface` of a ConsentReceipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UiSurface {
    CloudEscalationModal,
    Settings,
    OperatorConsole,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_binds_to_the_payload_hash() {
        let plan = ProjectionPlan {
            schema_version: PROJECTION_PLAN_SCHEMA_VERSION.into(),
            projection_plan_id: "p".into(),
            include_artifact_refs: vec!["artifact:a:prompt.txt".into()],
            include_fields: None,
            redactions_applied: vec!["none".into()],
            max_bytes: 1000,
            payload_sha256: "a".repeat(64),
            created_at: "t".into(),
            job_id: None,
            wp_id: Some("WP".into()),
            mt_id: None,
        };
        let mut receipt = ConsentReceipt {
            schema_version: CONSENT_RECEIPT_SCHEMA_VERSION.into(),
            consent_receipt_id: "c".into(),
            projection_plan_id: "p".into(),
            payload_sha256: "a".repeat(64),
            approved: true,
            approved_at: "t".into(),
            user_id: "u".into(),
            ui_surface: Some(UiSurface::CloudEscalationModal),
            notes: None,
        };
        assert!(receipt.approves(&plan));
        let v = serde_json::to_value(&receipt).unwrap();
        assert_eq!(v["ui_surface"], "cloud_escalation_modal");
        assert_eq!(serde_json::from_value::<ConsentReceipt>(v).unwrap(), receipt);
        receipt.payload_sha256 = "b".repeat(64);
        assert!(!receipt.approves(&plan));
    }
}
