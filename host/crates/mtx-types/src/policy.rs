//! ExecutionPolicy, the escalation chain and their enums (MTX-SPEC 3.2, 3.3, 5.12).
//!
//! Holds the policy record, its spec defaults and the chain rules. It must never decide
//! anything at run time; the loop reads the policy, this module only describes it.

use serde::{Deserialize, Serialize};

/// Sentinel `model_id` of a level that means "no model, human gate".
pub const HARD_GATE_MODEL_ID: &str = "HARD_GATE";
/// Schema id of the model-swap policy extension (3.2.1).
pub const EXEC_POLICY_EXT_SCHEMA_VERSION: &str = "hsk.exec_policy_ext@0.4";
/// `kind` discriminator of the model-swap policy extension (3.2.1).
pub const MODEL_SWAP_POLICY_KIND: &str = "model_swap_policy";

/// MTX-SPEC 3.2 ExecutionPolicy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPolicy {
    #[serde(default = "default_max_iterations_per_mt")]
    pub max_iterations_per_mt: u32,
    #[serde(default = "default_max_total_iterations")]
    pub max_total_iterations: u32,
    #[serde(default = "default_max_duration_ms")]
    pub max_duration_ms: u64,
    #[serde(default = "default_escalation_chain")]
    pub escalation_chain: Vec<EscalationLevel>,
    #[serde(default)]
    pub cloud_escalation_allowed: bool,
    #[serde(default)]
    pub drop_back_strategy: DropBackStrategy,
    #[serde(default)]
    pub lora_selection: LoRASelectionStrategy,
    #[serde(default)]
    pub pause_points: Vec<String>,
    #[serde(default = "default_true")]
    pub enable_distillation: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ExecutionPolicyExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automation_level: Option<AutomationLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit_lora_id: Option<String>,
}

fn default_max_iterations_per_mt() -> u32 {
    5
}
fn default_max_total_iterations() -> u32 {
    100
}
fn default_max_duration_ms() -> u64 {
    3_600_000
}
fn default_true() -> bool {
    true
}
fn default_context_window() -> u32 {
    8192
}

impl Default for ExecutionPolicy {
    fn default() -> Self {
        ExecutionPolicy {
            max_iterations_per_mt: default_max_iterations_per_mt(),
            max_total_iterations: default_max_total_iterations(),
            max_duration_ms: default_max_duration_ms(),
            escalation_chain: default_escalation_chain(),
            cloud_escalation_allowed: false,
            drop_back_strategy: DropBackStrategy::Smart,
            lora_selection: LoRASelectionStrategy::AutoByTaskTags,
            pause_points: Vec::new(),
            enable_distillation: true,
            extensions: Vec::new(),
            automation_level: None,
            max_total_tokens: None,
            explicit_lora_id: None,
        }
    }
}

/// The seven-level default chain of MTX-SPEC 5.12.
pub fn default_escalation_chain() -> Vec<EscalationLevel> {
    let row =
        |level: u32, model: &str, selector: LoraSelectorMode, cloud: bool, gate: bool| EscalationLevel {
            level,
            model_id: model.to_string(),
            lora_id: None,
            lora_selector: Some(selector),
            is_cloud: cloud,
            is_hard_gate: gate,
            context_window: default_context_window(),
        };
    vec![
        row(0, "qwen2.5-coder:7b", LoraSelectorMode::Auto, false, false),
        row(1, "qwen2.5-coder:7b", LoraSelectorMode::Alternate, false, false),
        row(2, "qwen2.5-coder:14b", LoraSelectorMode::Auto, false, false),
        row(3, "qwen2.5-coder:14b", LoraSelectorMode::Alternate, false, false),
        row(4, "qwen2.5-coder:32b", LoraSelectorMode::None, false, false),
        row(5, HARD_GATE_MODEL_ID, LoraSelectorMode::None, false, true),
        row(6, "gpt-4o", LoraSelectorMode::None, true, true),
    ]
}

/// Why an escalation chain breaks the rules of MTX-SPEC 3.3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("escalation chain is empty")]
    Empty,
    #[error("escalation chain entry {index} has level {found}, levels must be contiguous from 0")]
    NotContiguous { index: usize, found: u32 },
    #[error("escalation level {level} uses model HARD_GATE but is_hard_gate is false")]
    HardGateNotFlagged { level: u32 },
    #[error("escalation level {level} has an empty model_id")]
    EmptyModelId { level: u32 },
}

impl ExecutionPolicy {
    /// Checks the chain rules of 3.3: levels contiguous from 0 and equal to their index,
    /// a `HARD_GATE` model only on a level flagged `is_hard_gate`.
    pub fn validate_chain(&self) -> Result<(), ChainError> {
        validate_chain(&self.escalation_chain)
    }

    /// Checks the ranges of 3.2 (`max_iterations_per_mt` in [1, 20], `max_total_iterations`
    /// in [1, 500], `max_duration_ms` > 0), the chain rules, and that `pause_points` are MT
    /// ids. Returns every problem found, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !(1..=20).contains(&self.max_iterations_per_mt) {
            problems.push(format!("max_iterations_per_mt {} is not in [1, 20]", self.max_iterations_per_mt));
        }
        if !(1..=500).contains(&self.max_total_iterations) {
            problems.push(format!("max_total_iterations {} is not in [1, 500]", self.max_total_iterations));
        }
        if self.max_duration_ms == 0 {
            problems.push("max_duration_ms must be greater than 0".to_string());
        }
        if let Err(e) = self.validate_chain() {
            problems.push(format!("escalation_chain: {e}"));
        }
        for p in &self.pause_points {
            if !crate::progress::is_valid_mt_id(p) {
                problems.push(format!("pause_points entry {p:?} does not match ^MT-[0-9]{{3}}$"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// The automation level in force; an absent field means `AUTONOMOUS`.
    pub fn effective_automation_level(&self) -> AutomationLevel {
        self.automation_level.unwrap_or_default()
    }

    /// Whether cloud levels may be used: `cloud_escalation_allowed`, and never under
    /// `LOCKED` (3.2), whatever the flag says.
    pub fn cloud_allowed(&self) -> bool {
        self.cloud_escalation_allowed && self.effective_automation_level() != AutomationLevel::Locked
    }

    /// `MaxEscalationLevel(policy)`: the highest `level` in the chain (0 for an empty chain).
    pub fn max_escalation_level(&self) -> u32 {
        self.escalation_chain.iter().map(|l| l.level).max().unwrap_or(0)
    }

    /// The model-swap policy in force: the last extension of kind `model_swap_policy`
    /// wins (3.2.1); without one the [D] defaults apply.
    pub fn model_swap_policy(&self) -> ModelSwapPolicy {
        self.extensions
            .iter()
            .rev()
            .find(|e| e.kind == MODEL_SWAP_POLICY_KIND)
            .and_then(|e| e.model_swap_policy.clone())
            .unwrap_or_default()
    }
}

/// Chain validation on a bare list of levels (see [`ExecutionPolicy::validate_chain`]).
pub fn validate_chain(chain: &[EscalationLevel]) -> Result<(), ChainError> {
    if chain.is_empty() {
        return Err(ChainError::Empty);
    }
    for (index, level) in chain.iter().enumerate() {
        if level.level as usize != index {
            return Err(ChainError::NotContiguous { index, found: level.level });
        }
        if level.model_id.is_empty() {
            return Err(ChainError::EmptyModelId { level: level.level });
        }
        if level.model_id == HARD_GATE_MODEL_ID && !level.is_hard_gate {
            return Err(ChainError::HardGateNotFlagged { level: level.level });
        }
    }
    Ok(())
}

/// MTX-SPEC 3.3 EscalationLevel, plus the mtx extension `context_window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationLevel {
    pub level: u32,
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_selector: Option<LoraSelectorMode>,
    pub is_cloud: bool,
    pub is_hard_gate: bool,
    /// mtx extension: the context window of this level's model in tokens. MT-VAL-006 needs
    /// it per level; 8192 when a policy file omits it.
    #[serde(default = "default_context_window")]
    pub context_window: u32,
}

impl EscalationLevel {
    /// Whether this level runs no model at all (the `HARD_GATE` sentinel).
    pub fn is_gate_only(&self) -> bool {
        self.model_id == HARD_GATE_MODEL_ID
    }
}

/// `lora_selector` of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraSelectorMode {
    Auto,
    Alternate,
    None,
}

/// What to do after an escalated MT succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropBackStrategy {
    Always,
    Never,
    #[default]
    Smart,
}

/// LoRA selection strategy of the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoRASelectionStrategy {
    #[default]
    AutoByTaskTags,
    Explicit,
    None,
}

/// `automation_level` [D] of the consent model; absent means `AUTONOMOUS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutomationLevel {
    FullHuman,
    Hybrid,
    #[default]
    Autonomous,
    Locked,
}

/// MTX-SPEC 3.2.1 ExecutionPolicyExtension. Kinds other than `model_swap_policy` are kept
/// verbatim and ignored by the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPolicyExtension {
    pub schema_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_swap_policy: Option<ModelSwapPolicy>,
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ExecutionPolicyExtension {
    /// A `model_swap_policy` extension with the current schema id.
    pub fn model_swap(policy: ModelSwapPolicy) -> Self {
        ExecutionPolicyExtension {
            schema_version: EXEC_POLICY_EXT_SCHEMA_VERSION.to_string(),
            kind: MODEL_SWAP_POLICY_KIND.to_string(),
            model_swap_policy: Some(policy),
            extra: serde_json::Map::new(),
        }
    }
}

/// `model_swap_policy` body of 3.2.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSwapPolicy {
    #[serde(default = "default_true")]
    pub allow_swaps: bool,
    #[serde(default = "default_max_swaps")]
    pub max_swaps_per_job: u32,
    #[serde(default = "default_swap_timeout_ms")]
    pub swap_timeout_ms: u64,
    #[serde(default)]
    pub fallback_strategy: SwapFallbackStrategy,
}

fn default_max_swaps() -> u32 {
    10
}
fn default_swap_timeout_ms() -> u64 {
    300_000
}

impl Default for ModelSwapPolicy {
    fn default() -> Self {
        ModelSwapPolicy {
            allow_swaps: true,
            max_swaps_per_job: default_max_swaps(),
            swap_timeout_ms: default_swap_timeout_ms(),
            fallback_strategy: SwapFallbackStrategy::Abort,
        }
    }
}

/// `fallback_strategy` of the model-swap policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapFallbackStrategy {
    #[default]
    Abort,
    ContinueWithCurrent,
    EscalateToCloud,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_matches_spec_defaults_and_chain() {
        let p = ExecutionPolicy::default();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["max_iterations_per_mt"], 5);
        assert_eq!(v["max_total_iterations"], 100);
        assert_eq!(v["max_duration_ms"], 3_600_000);
        assert_eq!(v["cloud_escalation_allowed"], false);
        assert_eq!(v["drop_back_strategy"], "smart");
        assert_eq!(v["lora_selection"], "auto_by_task_tags");
        assert_eq!(v["pause_points"], serde_json::json!([]));
        assert_eq!(v["enable_distillation"], true);
        let expected = [
            (0, "qwen2.5-coder:7b", "auto", false, false),
            (1, "qwen2.5-coder:7b", "alternate", false, false),
            (2, "qwen2.5-coder:14b", "auto", false, false),
            (3, "qwen2.5-coder:14b", "alternate", false, false),
            (4, "qwen2.5-coder:32b", "none", false, false),
            (5, "HARD_GATE", "none", false, true),
            (6, "gpt-4o", "none", true, true),
        ];
        let chain = v["escalation_chain"].as_array().unwrap();
        assert_eq!(chain.len(), expected.len());
        for (row, (level, model, selector, cloud, gate)) in chain.iter().zip(expected) {
            assert_eq!(row["level"], level);
            assert_eq!(row["model_id"], model);
            assert_eq!(row["lora_selector"], selector);
            assert_eq!(row["is_cloud"], cloud);
            assert_eq!(row["is_hard_gate"], gate);
        }
        assert_eq!(p.max_escalation_level(), 6);
        assert!(p.validate_chain().is_ok());
    }

    #[test]
    fn empty_policy_document_deserialises_to_the_defaults() {
        let p: ExecutionPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, ExecutionPolicy::default());
    }

    #[test]
    fn chain_validation_reports_each_broken_rule() {
        let mut p = ExecutionPolicy::default();
        p.escalation_chain[2].level = 3;
        assert_eq!(p.validate_chain(), Err(ChainError::NotContiguous { index: 2, found: 3 }));

        let mut p = ExecutionPolicy::default();
        p.escalation_chain[5].is_hard_gate = false;
        assert_eq!(p.validate_chain(), Err(ChainError::HardGateNotFlagged { level: 5 }));

        let mut p = ExecutionPolicy::default();
        p.escalation_chain.clear();
        assert_eq!(p.validate_chain(), Err(ChainError::Empty));

        let mut p = ExecutionPolicy::default();
        p.escalation_chain.remove(0);
        assert_eq!(p.validate_chain(), Err(ChainError::NotContiguous { index: 0, found: 1 }));
    }

    #[test]
    fn policy_ranges_are_checked() {
        assert_eq!(ExecutionPolicy::default().validate(), Ok(()));
        let p = ExecutionPolicy {
            max_iterations_per_mt: 21,
            max_total_iterations: 0,
            max_duration_ms: 0,
            pause_points: vec!["MT-01".into()],
            ..ExecutionPolicy::default()
        };
        let problems = p.validate().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("max_iterations_per_mt 21"));
        assert!(problems[3].contains("\"MT-01\""));
    }

    #[test]
    fn last_model_swap_extension_wins() {
        let mut p = ExecutionPolicy::default();
        assert_eq!(p.model_swap_policy(), ModelSwapPolicy::default());
        p.extensions.push(ExecutionPolicyExtension::model_swap(ModelSwapPolicy {
            max_swaps_per_job: 1,
            ..Default::default()
        }));
        p.extensions.push(ExecutionPolicyExtension::model_swap(ModelSwapPolicy {
            max_swaps_per_job: 2,
            ..Default::default()
        }));
        assert_eq!(p.model_swap_policy().max_swaps_per_job, 2);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"kind\":\"model_swap_policy\""));
        let back: ExecutionPolicy = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn locked_automation_forbids_cloud_whatever_the_flag() {
        let mut p = ExecutionPolicy { cloud_escalation_allowed: true, ..ExecutionPolicy::default() };
        assert_eq!(p.effective_automation_level(), AutomationLevel::Autonomous);
        assert!(p.cloud_allowed());
        p.automation_level = Some(AutomationLevel::Locked);
        assert!(!p.cloud_allowed());
    }

    #[test]
    fn automation_level_spelling() {
        assert_eq!(serde_json::to_string(&AutomationLevel::FullHuman).unwrap(), "\"FULL_HUMAN\"");
        assert_eq!(serde_json::to_string(&AutomationLevel::Locked).unwrap(), "\"LOCKED\"");
    }
}
