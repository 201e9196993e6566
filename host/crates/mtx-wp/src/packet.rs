//! The parsed Work Packet (MTX-SPEC 14.1): one value whatever the source format.
//!
//! Plain data. It must never hold anything the planner could execute directly: MT hints
//! stay hints (R-GEN-1), and the scope handed to the loop is built by `wp_scope`.

use serde::{Deserialize, Serialize};

/// Which input a packet was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `packet.json` (`hsk.work_packet_contract@1`).
    Json,
    /// Modern `<WP_DIR>/packet.md`.
    MarkdownModern,
    /// Legacy `<WP_ID>.md`.
    MarkdownLegacy,
    /// The native hand-written form (`wp.toml` / `wp.json`), see README.md.
    Native,
}

/// A parsed Work Packet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkPacket {
    pub wp_id: String,
    pub title: String,
    pub source_kind: Option<SourceKind>,
    /// `What` of the SCOPE section (or `scope.summary`).
    pub what: String,
    /// `Why` of the SCOPE section (or `scope.why`).
    pub why: String,
    /// Free description of a native packet; for other forms `what` plus `why`.
    pub description: String,
    pub in_scope_paths: Vec<String>,
    pub out_of_scope: Vec<String>,
    pub test_plan: Vec<String>,
    pub done_means: Vec<String>,
    /// Upper-cased `RISK_TIER` (`LOW`, `MEDIUM`, `HIGH`) when given.
    pub risk_tier: Option<String>,
    pub status: Option<String>,
    pub touched_file_budget: Option<u32>,
    pub broad_tool_allowlist: Option<String>,
    pub spec_anchors: Vec<String>,
    /// `IMPLEMENTATION_ORDER` bullets, verbatim.
    pub implementation_order: Vec<String>,
    pub clause_rows: Vec<ClauseRow>,
    pub bootstrap: Bootstrap,
    pub mt_hints: Vec<MtHint>,
    /// Tags for LoRA selection (native packets only).
    pub task_tags: Vec<String>,
    /// Keys of a generated-projection comment (`schema_id`, `source_hash`, ...).
    pub projection: Vec<(String, String)>,
    /// Every normalisation or recovery the parser applied, in order.
    pub warnings: Vec<String>,
}

/// A structured clause row (14.2.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClauseRow {
    pub clause: String,
    pub code_surfaces: Vec<String>,
    pub tests: Vec<String>,
}

/// The BOOTSTRAP section: planner hints, never verify commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub files_to_open: Vec<String>,
    pub search_terms: Vec<String>,
    pub run_commands: Vec<String>,
    pub risk_map: Vec<RiskMapEntry>,
}

/// One `"risk" -> "consequence"` bullet of RISK_MAP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskMapEntry {
    pub risk: String,
    pub consequence: String,
}

/// A per-MT contract normalised to one hint record (14.4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtHint {
    pub mt_id: String,
    pub clause: String,
    pub code_surfaces: Vec<String>,
    pub expected_tests: Vec<String>,
    pub depends_on: Vec<String>,
    pub lifecycle_status: String,
    pub active: bool,
}

impl WorkPacket {
    /// The job `description`: the explicit description, else `What` plus `Why`.
    pub fn full_description(&self) -> String {
        if !self.description.is_empty() {
            return self.description.clone();
        }
        match (self.what.is_empty(), self.why.is_empty()) {
            (false, false) => format!("{}\n\nWhy: {}", self.what, self.why),
            (false, true) => self.what.clone(),
            (true, false) => format!("Why: {}", self.why),
            (true, true) => String::new(),
        }
    }
}
