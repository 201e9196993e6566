//! ModelSwapRequest (MTX-SPEC 3.14) and the swap state hash (5.13.2 step 3).
//! Data and hashing only; it must never load or unload a model.

use serde::{Deserialize, Serialize};

use crate::common::{Sha256Hex, sha256_hex};

pub const MODEL_SWAP_SCHEMA_VERSION: &str = "hsk.model_swap@0.4";

/// MTX-SPEC 3.14 ModelSwapRequest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSwapRequest {
    pub schema_version: String,
    pub request_id: String,
    pub current_model_id: String,
    pub target_model_id: String,
    pub role: SwapRole,
    pub priority: SwapPriority,
    pub reason: String,
    pub swap_strategy: SwapStrategy,
    pub state_persist_refs: Vec<String>,
    pub state_hash: Sha256Hex,
    pub context_compile_ref: String,
    pub max_vram_mb: u64,
    pub max_ram_mb: u64,
    pub timeout_ms: u64,
    pub requester: SwapRequester,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapRole {
    Frontend,
    Orchestrator,
    Worker,
    Validator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapPriority {
    Low,
    Normal,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapStrategy {
    UnloadReload,
    KeepHotSwap,
    DiskOffload,
}

/// `requester` of a ModelSwapRequest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRequester {
    pub subsystem: SwapSubsystem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapSubsystem {
    MtExecutor,
    Governance,
    Ui,
    Orchestrator,
}

/// `state_hash` of 5.13.2 step 3: for each ref in ascending order append
/// `ref\n<sha256 of its bytes>\n`, then SHA-256 the whole string.
pub fn state_hash(refs_with_bytes: &[(&str, &[u8])]) -> Sha256Hex {
    let mut sorted: Vec<&(&str, &[u8])> = refs_with_bytes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = String::new();
    for (r, bytes) in sorted {
        text.push_str(r);
        text.push('\n');
        text.push_str(&sha256_hex(bytes));
        text.push('\n');
    }
    sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_hash_is_order_independent_and_content_sensitive() {
        let a = state_hash(&[("b.json", b"2"), ("a.json", b"1")]);
        let b = state_hash(&[("a.json", b"1"), ("b.json", b"2")]);
        assert_eq!(a, b);
        let expected =
            sha256_hex(format!("a.json\n{}\nb.json\n{}\n", sha256_hex(b"1"), sha256_hex(b"2")).as_bytes());
        assert_eq!(a, expected);
        assert_ne!(a, state_hash(&[("a.json", b"1"), ("b.json", b"3")]));
    }

    #[test]
    fn swap_request_round_trips() {
        let r = ModelSwapRequest {
            schema_version: MODEL_SWAP_SCHEMA_VERSION.into(),
            request_id: "r".into(),
            current_model_id: "a".into(),
            target_model_id: "b".into(),
            role: SwapRole::Worker,
            priority: SwapPriority::Normal,
            reason: "escalation".into(),
            swap_strategy: SwapStrategy::UnloadReload,
            state_persist_refs: vec![],
            state_hash: state_hash(&[]),
            context_compile_ref: "c".into(),
            max_vram_mb: 1,
            max_ram_mb: 2,
            timeout_ms: 3,
            requester: SwapRequester {
                subsystem: SwapSubsystem::MtExecutor,
                job_id: None,
                wp_id: None,
                mt_id: None,
            },
            metadata: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["requester"]["subsystem"], "mt_executor");
        assert_eq!(v["swap_strategy"], "unload_reload");
        assert_eq!(serde_json::from_value::<ModelSwapRequest>(v).unwrap(), r);
    }
}
