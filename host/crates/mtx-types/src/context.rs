//! Context compilation records (MTX-SPEC 3.16): the compile config, the prompt envelope
//! and the context snapshot with its self-hash. Data and hashing only; it must never
//! read workspace files (the context compiler does).

use serde::{Deserialize, Serialize};

use crate::common::{ArtifactHandle, Sha256Hex, canonical_json, sha256_hex};

/// MTX-SPEC 3.16.1 MTContextCompilationConfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MTContextCompilationConfig {
    pub token_budget: u32,
    pub budget_allocation: BudgetAllocation,
    pub retrieval: RetrievalConfig,
    #[serde(default)]
    pub determinism: DeterminismMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAllocation {
    pub system_rules: u32,
    pub iteration_context: u32,
    pub mt_definition: u32,
    pub file_contents: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_output: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievalConfig {
    #[serde(default = "yes")]
    pub prefer_context_packs: bool,
    #[serde(default = "ten")]
    pub max_shadow_results: u32,
    #[serde(default = "yes")]
    pub include_neighbors: bool,
    #[serde(default = "twenty")]
    pub neighbor_lines: u32,
}

fn yes() -> bool {
    true
}
fn ten() -> u32 {
    10
}
fn twenty() -> u32 {
    20
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            prefer_context_packs: true,
            max_shadow_results: 10,
            include_neighbors: true,
            neighbor_lines: 20,
        }
    }
}

/// `strict` or `replay` (default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeterminismMode {
    Strict,
    #[default]
    Replay,
}

/// MTX-SPEC 3.16.2 PromptEnvelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptEnvelope {
    pub stable_prefix: String,
    pub variable_suffix: String,
    pub rendered_prompt: String,
    pub stable_prefix_hash: Sha256Hex,
    pub variable_suffix_hash: Sha256Hex,
    pub full_prompt_hash: Sha256Hex,
}

impl PromptEnvelope {
    /// Builds an envelope and its three hashes.
    pub fn new(stable_prefix: String, variable_suffix: String, rendered_prompt: String) -> Self {
        PromptEnvelope {
            stable_prefix_hash: sha256_hex(stable_prefix.as_bytes()),
            variable_suffix_hash: sha256_hex(variable_suffix.as_bytes()),
            full_prompt_hash: sha256_hex(rendered_prompt.as_bytes()),
            stable_prefix,
            variable_suffix,
            rendered_prompt,
        }
    }

    /// The `prompt_envelope_hashes` object of a ContextSnapshot.
    pub fn hashes(&self) -> PromptEnvelopeHashes {
        PromptEnvelopeHashes {
            stable_prefix_hash: self.stable_prefix_hash.clone(),
            variable_suffix_hash: self.variable_suffix_hash.clone(),
            full_prompt_hash: self.full_prompt_hash.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptEnvelopeHashes {
    pub stable_prefix_hash: Sha256Hex,
    pub variable_suffix_hash: Sha256Hex,
    pub full_prompt_hash: Sha256Hex,
}

/// MTX-SPEC 3.16.3 ContextSnapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSnapshot {
    pub context_snapshot_id: String,
    pub job_id: String,
    pub workflow_run_id: String,
    pub wp_id: String,
    pub mt_id: String,
    pub step_id: String,
    pub iteration: u32,
    pub escalation_level: u32,
    pub created_at: String,
    pub determinism_mode: DeterminismMode,
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    pub model_context_window: u32,
    pub policy_profile_id: String,
    pub token_estimator: String,
    pub token_budget: u32,
    pub sections: Vec<SnapshotSection>,
    pub scope_inputs_hash: Sha256Hex,
    pub sources: Vec<SnapshotSource>,
    pub retrieval_candidates_count: u32,
    pub selected_count: u32,
    pub prompt_envelope_hashes: PromptEnvelopeHashes,
    pub prompt_ref: ArtifactHandle,
    pub warnings: Vec<String>,
    pub snapshot_hash: Sha256Hex,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSection {
    pub name: String,
    pub budget_tokens: u32,
    pub used_tokens: u32,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSource {
    pub path: String,
    /// Digest of the file bytes; `null` when the file is missing.
    pub sha256: Option<Sha256Hex>,
    pub mode: SourceMode,
    pub line_ranges: Vec<[u32; 2]>,
    pub tokens: u32,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceMode {
    ContextPack,
    Full,
    Chunks,
    Omitted,
}

impl ContextSnapshot {
    /// SHA-256 of this record's canonical JSON without the `snapshot_hash` field.
    pub fn compute_snapshot_hash(&self) -> Sha256Hex {
        let mut value = serde_json::to_value(self).expect("serialising a snapshot cannot fail");
        if let Some(map) = value.as_object_mut() {
            map.remove("snapshot_hash");
        }
        sha256_hex(&canonical_json(&value))
    }

    /// Sets `snapshot_hash` to [`Self::compute_snapshot_hash`].
    pub fn seal(&mut self) {
        self.snapshot_hash = self.compute_snapshot_hash();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> ContextSnapshot {
        let env = PromptEnvelope::new("a".into(), "b".into(), "ab".into());
        ContextSnapshot {
            context_snapshot_id: "s".into(),
            job_id: "j".into(),
            workflow_run_id: "r".into(),
            wp_id: "WP".into(),
            mt_id: "MT-001".into(),
            step_id: "MT-001_iter-001".into(),
            iteration: 1,
            escalation_level: 0,
            created_at: "t".into(),
            determinism_mode: DeterminismMode::Replay,
            model_id: "m".into(),
            lora_id: None,
            model_context_window: 8192,
            policy_profile_id: "p".into(),
            token_estimator: "bytes_div_4".into(),
            token_budget: 2048,
            sections: vec![SnapshotSection {
                name: "FILES".into(),
                budget_tokens: 1,
                used_tokens: 1,
                truncated: false,
            }],
            scope_inputs_hash: sha256_hex(b""),
            sources: vec![SnapshotSource {
                path: "src/lib.rs".into(),
                sha256: None,
                mode: SourceMode::Omitted,
                line_ranges: vec![[1, 3]],
                tokens: 0,
                truncated: false,
            }],
            retrieval_candidates_count: 0,
            selected_count: 0,
            prompt_envelope_hashes: env.hashes(),
            prompt_ref: ArtifactHandle {
                artifact_id: "a".into(),
                path: "p".into(),
                sha256: sha256_hex(b"ab"),
                size_bytes: None,
                media_type: None,
            },
            warnings: vec![],
            snapshot_hash: String::new(),
        }
    }

    #[test]
    fn snapshot_hash_ignores_its_own_field_and_tracks_content() {
        let mut s = snapshot();
        s.seal();
        let sealed = s.snapshot_hash.clone();
        assert_eq!(s.compute_snapshot_hash(), sealed);
        s.token_budget = 4096;
        assert_ne!(s.compute_snapshot_hash(), sealed);
        let v = serde_json::to_value(&s).unwrap();
        assert!(v["sources"][0]["sha256"].is_null());
        assert_eq!(serde_json::from_value::<ContextSnapshot>(v).unwrap(), s);
    }
}
