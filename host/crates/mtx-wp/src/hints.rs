//! Per-MT contracts next to a packet, read as planner hints (MTX-SPEC 14.4): JSON
//! contracts of both shapes (14.4.1) and MT markdown projections (14.4.2).
//!
//! Hints guide the planner and nothing else: this module must never turn a contract
//! into an executable MT definition (R-GEN-1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::error::WpError;
use crate::json::{str_at, strings_at};
use crate::markdown::any_field;
use crate::packet::{MtHint, WorkPacket};
use crate::paths::path_in_scope;

/// Schema id of a per-MT contract.
pub const MICROTASK_CONTRACT_SCHEMA: &str = "hsk.microtask_contract@1";

// Real suites exceed three digits (MT-416), so hint files accept `MT-\d{3,}`.
static MT_FILE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:(.+)\.)?(MT-\d{3,})\.(json|md)$").unwrap());
static MT_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^#\s+((?:MT-)?[0-9][0-9A-Za-z._-]*)\s*:\s*(.+?)\s*$").unwrap());
static BACKTICKED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]+)`").unwrap());

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

/// Normalises an MT markdown projection (14.4.2) into a hint.
pub fn mt_hint_from_markdown(text: &str) -> Option<MtHint> {
    let title = MT_TITLE.captures(text);
    let mt_id = any_field(text, "MT_ID").or_else(|| title.as_ref().map(|c| c[1].to_string()))?.to_uppercase();
    let clause = any_field(text, "CLAUSE")
        .or_else(|| title.as_ref().map(|c| c[2].to_string()))
        .unwrap_or_else(|| mt_id.clone());
    let split = |v: &str, seps: &[char]| -> Vec<String> {
        v.split(seps)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("NONE"))
            .collect()
    };
    let code_surfaces = match any_field(text, "CODE_SURFACES") {
        Some(v) if v.contains('`') => BACKTICKED.captures_iter(&v).map(|c| c[1].trim().to_string()).collect(),
        Some(v) => split(&v, &[';', ',']),
        None => Vec::new(),
    };
    Some(MtHint {
        clause,
        code_surfaces,
        expected_tests: any_field(text, "EXPECTED_TESTS").map(|v| split(&v, &[';'])).unwrap_or_default(),
        depends_on: any_field(text, "DEPENDS_ON").map(|v| split(&v, &[';', ',', ' '])).unwrap_or_default(),
        lifecycle_status: String::new(),
        active: false,
        mt_id,
    })
}

/// Reads the MT contract files next to a packet: `MT-NNN.json` / `MT-NNN.md`, optionally
/// prefixed `<WP_ID>.` (three or more digits), sorted by MT id; JSON wins over markdown
/// for the same id. Contracts for another WP are skipped, and code surfaces outside the
/// packet scope are reported as warnings.
pub fn load_mt_hints(
    dir: &Path,
    packet: &WorkPacket,
    warnings: &mut Vec<String>,
) -> Result<Vec<MtHint>, WpError> {
    let io = |source| WpError::Io { path: dir.to_path_buf(), source };
    // MT id -> (is markdown, path); JSON sorts first and wins.
    let mut files: BTreeMap<String, (bool, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(c) = MT_FILE.captures(&name) {
            if c.get(1).is_some_and(|prefix| prefix.as_str() != packet.wp_id) {
                continue;
            }
            let candidate = (&c[3] == "md", entry.path());
            let slot = files.entry(c[2].to_string()).or_insert_with(|| candidate.clone());
            if candidate < *slot {
                *slot = candidate;
            }
        }
    }
    let mut hints = Vec::new();
    for (is_md, path) in files.into_values() {
        let text =
            std::fs::read_to_string(&path).map_err(|source| WpError::Io { path: path.clone(), source })?;
        let shown = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let hint = if is_md {
            if any_field(&text, "WP_ID").is_some_and(|w| w != packet.wp_id) {
                warnings.push(format!("mt hint {shown}: belongs to another work packet, skipped"));
                continue;
            }
            mt_hint_from_markdown(&text)
        } else {
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| WpError::Json { path: path.clone(), message: e.to_string() })?;
            if str_at(&value, "/wp_id").is_some_and(|w| w != packet.wp_id) {
                warnings.push(format!("mt hint {shown}: belongs to another work packet, skipped"));
                continue;
            }
            if str_at(&value, "/schema_id") != Some(MICROTASK_CONTRACT_SCHEMA) {
                warnings.push(format!("mt hint {shown}: schema_id is not {MICROTASK_CONTRACT_SCHEMA}"));
            }
            mt_hint_from_contract(&value)
        };
        let Some(hint) = hint else {
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
    fn markdown_projection_hint_is_normalised() {
        let md = "# MT-002: Emitters carry the id\n\n## METADATA\n- WP_ID: WP-1-X\n- MT_ID: MT-002\n\
                  - CODE_SURFACES: `src/a.rs`, `src/b.rs`\n- EXPECTED_TESTS: cargo test a; cargo test b\n\
                  - DEPENDS_ON: MT-001\n";
        let h = mt_hint_from_markdown(md).unwrap();
        assert_eq!(h.mt_id, "MT-002");
        assert_eq!(h.clause, "Emitters carry the id");
        assert_eq!(h.code_surfaces, ["src/a.rs", "src/b.rs"]);
        assert_eq!(h.expected_tests, ["cargo test a", "cargo test b"]);
        assert_eq!(h.depends_on, ["MT-001"]);
        let none = mt_hint_from_markdown("# MT-003: x\n- DEPENDS_ON: NONE\n").unwrap();
        assert!(none.depends_on.is_empty());
    }
}
