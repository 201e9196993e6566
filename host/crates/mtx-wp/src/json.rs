//! `packet.json` contracts (MTX-SPEC 14.3) and per-MT contract hints (14.4.1).
//!
//! Imported contracts are often wrong, so this module also decides when a contract is
//! lossy and the markdown next to it must be used instead (14.3.3). MT contracts become
//! planner hints only; this module must never turn them into MT definitions (R-GEN-1).

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::error::WpError;
use crate::markdown::out_of_scope;
use crate::packet::{MtHint, SourceKind, WorkPacket};
use crate::paths::{normalise_paths, path_in_scope};

/// Schema id of a Work Packet contract.
pub const WORK_PACKET_CONTRACT_SCHEMA: &str = "hsk.work_packet_contract@1";
/// Schema id of a per-MT contract.
pub const MICROTASK_CONTRACT_SCHEMA: &str = "hsk.microtask_contract@1";

static MT_FILE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:(.+)\.)?(MT-\d{3,})\.json$").unwrap());

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn strings_at(v: &Value, pointer: &str) -> Option<Vec<String>> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// Whether a list looks like fragments of one sentence split on commas: a dash-captured
/// bullet, unbalanced parentheses, or a later entry that continues a sentence.
fn looks_fragmented(entries: &[String]) -> bool {
    entries.iter().any(|e| e.starts_with("- ") || e.matches('(').count() != e.matches(')').count())
        || (entries.len() >= 2
            && entries[1..]
                .iter()
                .any(|e| e.starts_with(|c: char| c.is_ascii_lowercase()) && e.contains(' ')))
}

/// The reasons (14.3.3) to treat a contract as a lossy import; empty when it looks sound.
/// `markdown` is the packet parsed from the markdown next to it, when there is one.
pub fn lossy_reasons(contract: &Value, markdown: Option<&WorkPacket>) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(generator) = str_at(contract, "/markdown_projection/generator")
        && generator.to_ascii_lowercase().contains("import")
    {
        reasons.push(format!("markdown_projection.generator is the import tool {generator}"));
    }
    let allowed = strings_at(contract, "/scope/allowed_paths").unwrap_or_default();
    if let Some(bad) = allowed.iter().find(|p| p.starts_with("- ")) {
        reasons.push(format!("scope.allowed_paths entry {bad:?} kept its bullet dash"));
    }
    for field in ["forbidden_paths", "spec_anchors"] {
        let entries = strings_at(contract, &format!("/scope/{field}")).unwrap_or_default();
        if looks_fragmented(&entries) {
            reasons.push(format!("scope.{field} looks like fragments of one sentence"));
        }
    }
    let criteria = strings_at(contract, "/scope/acceptance_criteria").unwrap_or_default();
    if criteria.is_empty()
        && contract.pointer("/scope/acceptance_criteria_ref").is_none()
        && markdown.is_some_and(|m| !m.done_means.is_empty())
    {
        reasons.push("scope.acceptance_criteria is empty while the markdown has DONE_MEANS".to_string());
    }
    if str_at(contract, "/workflow/lane").is_none_or(|l| l.trim().is_empty()) {
        reasons.push("workflow.lane is empty".to_string());
    }
    reasons
}

/// Whether the contract says its markdown projection is generated and in sync.
pub fn projection_in_sync(contract: &Value) -> bool {
    str_at(contract, "/markdown_projection/status") == Some("GENERATED_IN_SYNC")
}

/// Builds a WorkPacket from a contract (no fallback logic; see `load_work_packet`).
pub fn work_packet_from_contract(contract: &Value) -> Result<WorkPacket, WpError> {
    let mut warnings = Vec::new();
    let wp_id = str_at(contract, "/wp_id").ok_or_else(|| WpError::MissingField { field: "wp_id".into() })?;
    if str_at(contract, "/schema_id") != Some(WORK_PACKET_CONTRACT_SCHEMA) {
        warnings.push(format!(
            "schema_id is {:?}, expected {WORK_PACKET_CONTRACT_SCHEMA}",
            str_at(contract, "/schema_id").unwrap_or("")
        ));
    }
    let allowed = strings_at(contract, "/scope/allowed_paths").unwrap_or_default();
    let forbidden = strings_at(contract, "/scope/forbidden_paths").unwrap_or_default();
    let mut wp = WorkPacket {
        wp_id: wp_id.to_string(),
        title: str_at(contract, "/title").unwrap_or(wp_id).to_string(),
        source_kind: Some(SourceKind::Json),
        what: str_at(contract, "/scope/summary").unwrap_or("").to_string(),
        why: str_at(contract, "/scope/why").unwrap_or("").to_string(),
        in_scope_paths: normalise_paths(&allowed, "scope.allowed_paths", &mut warnings),
        out_of_scope: out_of_scope(&forbidden, &mut warnings),
        done_means: strings_at(contract, "/scope/acceptance_criteria").unwrap_or_default(),
        test_plan: strings_at(contract, "/scope/test_plan").unwrap_or_default(),
        risk_tier: str_at(contract, "/lifecycle/risk_tier").map(str::to_uppercase),
        status: str_at(contract, "/lifecycle/status").map(str::to_string),
        spec_anchors: strings_at(contract, "/scope/spec_anchors").unwrap_or_default(),
        ..WorkPacket::default()
    };
    if let Some(r) = str_at(contract, "/scope/acceptance_criteria_ref") {
        warnings.push(format!(
            "scope.acceptance_criteria_ref {r:?} points into a refinement file mtx does not read"
        ));
    }
    wp.description = wp.full_description();
    wp.warnings = warnings;
    Ok(wp)
}

/// Normalises one MT contract of either shape (14.4.1) into a hint.
pub fn mt_hint_from_contract(v: &Value) -> Option<MtHint> {
    let mt_id = str_at(v, "/mt_id")?.to_uppercase();
    let first = |ptrs: &[&str]| {
        ptrs.iter().filter_map(|p| str_at(v, p)).map(str::trim).find(|s| !s.is_empty()).map(str::to_string)
    };
    let list_of = |ptrs: &[&str]| ptrs.iter().find_map(|p| strings_at(v, p)).unwrap_or_default();
    Some(MtHint {
        clause: first(&["/scope/summary", "/title", "/goal", "/clause"]).unwrap_or_else(|| mt_id.clone()),
        code_surfaces: list_of(&["/scope/allowed_paths", "/owned_files"]),
        expected_tests: list_of(&["/scope/proof_targets", "/proof_commands"]),
        depends_on: list_of(&["/lifecycle/depends_on", "/depends_on_mts"]),
        lifecycle_status: str_at(v, "/lifecycle/status").unwrap_or("").to_uppercase(),
        active: v.pointer("/lifecycle/active").and_then(Value::as_bool) == Some(true),
        mt_id,
    })
}

/// Reads the MT contract files next to a packet: `MT-NNN.json` or `<WP_ID>.MT-NNN.json`
/// (three or more digits), sorted by MT id. Contracts for another WP are skipped, and
/// code surfaces outside the packet scope are reported as warnings.
pub fn load_mt_hints(
    dir: &Path,
    packet: &WorkPacket,
    warnings: &mut Vec<String>,
) -> Result<Vec<MtHint>, WpError> {
    let io = |source| WpError::Io { path: dir.to_path_buf(), source };
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(c) = MT_FILE.captures(&name) {
            if c.get(1).is_some_and(|prefix| prefix.as_str() != packet.wp_id) {
                continue;
            }
            files.push((c[2].to_string(), entry.path()));
        }
    }
    files.sort();
    let mut hints = Vec::new();
    for (_, path) in files {
        let text =
            std::fs::read_to_string(&path).map_err(|source| WpError::Io { path: path.clone(), source })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| WpError::Json { path: path.clone(), message: e.to_string() })?;
        let shown = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        if str_at(&value, "/wp_id").is_some_and(|w| w != packet.wp_id) {
            warnings.push(format!("mt hint {shown}: belongs to another work packet, skipped"));
            continue;
        }
        if str_at(&value, "/schema_id") != Some(MICROTASK_CONTRACT_SCHEMA) {
            warnings.push(format!("mt hint {shown}: schema_id is not {MICROTASK_CONTRACT_SCHEMA}"));
        }
        let Some(hint) = mt_hint_from_contract(&value) else {
            warnings.push(format!("mt hint {shown}: no mt_id, skipped"));
            continue;
        };
        for surface in &hint.code_surfaces {
            if !path_in_scope(surface, &packet.in_scope_paths) {
                warnings.push(format!(
                    "mt hint {}: code surface {surface} is outside IN_SCOPE_PATHS",
                    hint.mt_id
                ));
            }
        }
        hints.push(hint);
    }
    Ok(hints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_shape_hint_is_normalised() {
        let v = serde_json::json!({
            "mt_id": "mt-416", "title": "Ledger", "owned_files": ["src/a.rs"],
            "proof_commands": ["cargo test a"], "depends_on_mts": ["MT-415"],
            "lifecycle": {"active": true, "status": "ready_for_validation"}
        });
        let h = mt_hint_from_contract(&v).unwrap();
        assert_eq!(h.mt_id, "MT-416");
        assert_eq!(h.clause, "Ledger");
        assert_eq!(h.code_surfaces, ["src/a.rs"]);
        assert_eq!(h.expected_tests, ["cargo test a"]);
        assert_eq!(h.depends_on, ["MT-415"]);
        assert_eq!(h.lifecycle_status, "READY_FOR_VALIDATION");
        assert!(h.active);
    }

    #[test]
    fn sound_contract_has_no_lossy_reasons() {
        let v = serde_json::json!({
            "workflow": {"lane": "MANUAL_RELAY"},
            "markdown_projection": {"status": "GENERATED_IN_SYNC", "generator": "wp-contract-build.mjs"},
            "scope": {"allowed_paths": ["src/**"], "forbidden_paths": ["docs/"], "spec_anchors": ["A 1.2"],
                      "acceptance_criteria": ["it works"]}
        });
        assert!(lossy_reasons(&v, None).is_empty());
        assert!(projection_in_sync(&v));
    }
}
