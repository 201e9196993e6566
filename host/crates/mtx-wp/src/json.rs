//! `packet.json` contracts (MTX-SPEC 14.3).
//!
//! Imported contracts are often wrong, so this module also decides when a contract is
//! lossy and the markdown next to it must be used instead (14.3.3). It must never trust
//! a contract's own claim of authority over that evidence.

use serde_json::Value;

use crate::error::WpError;
use crate::markdown::out_of_scope;
use crate::packet::{SourceKind, WorkPacket};
use crate::paths::normalise_paths;

/// Schema id of a Work Packet contract.
pub const WORK_PACKET_CONTRACT_SCHEMA: &str = "hsk.work_packet_contract@1";

pub(crate) fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub(crate) fn strings_at(v: &Value, pointer: &str) -> Option<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
