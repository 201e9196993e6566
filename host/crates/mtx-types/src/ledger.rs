//! The run ledger (MTX-SPEC 3.8): step records, step ids and the idempotency key.
//!
//! The key recipe is a stability contract: recovery finds finished steps by it, so the
//! encoding here must never change. This module must never touch storage.

use serde::{Deserialize, Serialize};

use crate::common::{ArtifactHandle, Sha256Hex, sha256_hex};

/// MTX-SPEC 3.8.1 RunLedger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLedger {
    pub ledger_id: String,
    pub wp_id: String,
    pub job_id: String,
    pub created_at: String,
    #[serde(default)]
    pub steps: Vec<LedgerStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_reason: Option<String>,
}

/// MTX-SPEC 3.8.2 LedgerStep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStep {
    pub step_id: String,
    pub idempotency_key: Sha256Hex,
    pub status: LedgerStepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_artifact_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub recoverable: bool,
    pub escalation_level: u32,
}

/// `status` of a LedgerStep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStepStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

/// Step id `{mt_id}_iter-{NNN}` where NNN is the MT's attempt ordinal across all levels
/// (1-based, zero-padded to at least three digits), so ids never repeat after an
/// escalation resets the per-level iteration counter (3.8.2 note).
pub fn step_id(mt_id: &str, attempt_ordinal: u32) -> String {
    format!("{mt_id}_iter-{attempt_ordinal:03}")
}

/// The idempotency key of 3.8.3: SHA-256 over `key=value\n` lines of the five inputs,
/// `iteration` being the per-level number and an absent LoRA the empty string.
pub fn idempotency_key(
    mt_id: &str,
    iteration: u32,
    model_id: &str,
    lora_id: Option<&str>,
    prompt_hash: &str,
) -> Sha256Hex {
    let text = format!(
        "mt_id={mt_id}\niteration={iteration}\nmodel_id={model_id}\nlora_id={}\nprompt_hash={prompt_hash}\n",
        lora_id.unwrap_or("")
    );
    sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_are_zero_padded_ordinals() {
        assert_eq!(step_id("MT-001", 1), "MT-001_iter-001");
        assert_eq!(step_id("MT-001", 42), "MT-001_iter-042");
        assert_eq!(step_id("MT-001", 1234), "MT-001_iter-1234");
    }

    #[test]
    fn idempotency_key_follows_the_recipe() {
        let prompt = sha256_hex(b"prompt");
        let expected = sha256_hex(
            format!("mt_id=MT-001\niteration=2\nmodel_id=m\nlora_id=\nprompt_hash={prompt}\n").as_bytes(),
        );
        assert_eq!(idempotency_key("MT-001", 2, "m", None, &prompt), expected);
        assert_eq!(idempotency_key("MT-001", 2, "m", Some(""), &prompt), expected);
    }

    #[test]
    fn c_idem_1_same_inputs_same_key_any_change_new_key() {
        let p = sha256_hex(b"prompt");
        let q = sha256_hex(b"other prompt");
        let base = idempotency_key("MT-001", 1, "qwen2.5-coder:7b", Some("rust-lora"), &p);
        assert_eq!(base, idempotency_key("MT-001", 1, "qwen2.5-coder:7b", Some("rust-lora"), &p));
        assert_eq!(base.len(), 64);
        let variants = [
            idempotency_key("MT-002", 1, "qwen2.5-coder:7b", Some("rust-lora"), &p),
            idempotency_key("MT-001", 2, "qwen2.5-coder:7b", Some("rust-lora"), &p),
            idempotency_key("MT-001", 1, "qwen2.5-coder:14b", Some("rust-lora"), &p),
            idempotency_key("MT-001", 1, "qwen2.5-coder:7b", None, &p),
            idempotency_key("MT-001", 1, "qwen2.5-coder:7b", Some("rust-lora"), &q),
        ];
        for v in &variants {
            assert_ne!(v, &base);
        }
    }

    #[test]
    fn ledger_round_trips() {
        let ledger = RunLedger {
            ledger_id: "l".into(),
            wp_id: "WP".into(),
            job_id: "j".into(),
            created_at: "t".into(),
            steps: vec![LedgerStep {
                step_id: step_id("MT-001", 1),
                idempotency_key: idempotency_key("MT-001", 1, "m", None, "h"),
                status: LedgerStepStatus::InProgress,
                started_at: Some("t".into()),
                completed_at: None,
                output_artifact_ref: None,
                error: None,
                recoverable: true,
                escalation_level: 0,
            }],
            resume_point: Some("MT-001_iter-001".into()),
            resume_reason: Some("crash_recovery".into()),
        };
        let v = serde_json::to_value(&ledger).unwrap();
        assert_eq!(v["steps"][0]["status"], "in_progress");
        assert_eq!(serde_json::from_value::<RunLedger>(v).unwrap(), ledger);
    }
}
