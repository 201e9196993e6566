//! Loading a Work Packet from a file or a directory, with the refusals of MTX-SPEC 14.5
//! and R-GEN-1, and the mapping to the job input `wp_scope` (14.6).
//!
//! Refusals happen here, before any job exists, and each names the marker it found.
//! This module reads files only; it must never write anything or create a job.

use std::path::{Path, PathBuf};

use mtx_types::WorkPacketScope;
use serde_json::Value;

use crate::error::WpError;
use crate::hints::load_mt_hints;
use crate::json::{lossy_reasons, projection_in_sync, work_packet_from_contract};
use crate::markdown::{any_field, front_matter, has_label, parse_markdown, projection_keys};
use crate::native::{native_value, work_packet_from_native};
use crate::packet::{SourceKind, WorkPacket};

/// Schema id of a non-executable stub contract.
pub const STUB_CONTRACT_SCHEMA: &str = "hsk.work_packet_stub_contract@1";
/// Keys whose presence means MT definitions were supplied as input (R-GEN-1).
pub const GENERATED_MT_KEYS: [&str; 2] = ["mt_definitions", "mt_definitions_ref"];

/// Loads a Work Packet from a file (`.md`, `.json`, `.toml`) or a directory. A directory
/// is searched for `packet.json`, then `packet.md`, then `<WP_ID>.md`, then `wp.toml` /
/// `wp.json`. MT contract files next to the packet are attached as hints.
pub fn load_work_packet(path: &Path) -> Result<WorkPacket, WpError> {
    let file = if path.is_dir() { find_packet_file(path)? } else { path.to_path_buf() };
    let mut wp = load_file(&file)?;
    if wp.wp_id.trim().is_empty() {
        return Err(WpError::MissingField { field: "wp_id".into() });
    }
    if wp.test_plan.is_empty() {
        wp.warnings.push("packet has no TEST_PLAN commands".to_string());
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut warnings = std::mem::take(&mut wp.warnings);
    wp.mt_hints = load_mt_hints(dir, &wp, &mut warnings)?;
    wp.warnings = warnings;
    Ok(wp)
}

/// The job input `wp_scope` of a parsed packet (14.6).
pub fn wp_scope(wp: &WorkPacket) -> WorkPacketScope {
    WorkPacketScope {
        in_scope_paths: wp.in_scope_paths.clone(),
        out_of_scope: wp.out_of_scope.clone(),
        done_means: wp.done_means.clone(),
        test_plan: wp.test_plan.clone(),
        description: wp.full_description(),
    }
}

/// Largest packet file read. Real packets are well under 1 MiB; the cap keeps a wrong
/// path (a log, a binary) from being read whole.
pub const MAX_PACKET_BYTES: u64 = 16 * 1024 * 1024;

fn read(path: &Path) -> Result<String, WpError> {
    let io = |source| WpError::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PACKET_BYTES {
        return Err(WpError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "file is {len} bytes, more than the {MAX_PACKET_BYTES} bytes a work packet may have"
            ),
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

fn find_packet_file(dir: &Path) -> Result<PathBuf, WpError> {
    for name in ["packet.json", "packet.md"] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    if let Some(dir_name) = dir.file_name().map(|n| n.to_string_lossy().to_string()) {
        let legacy = dir.join(format!("{dir_name}.md"));
        if dir_name.starts_with("WP-") && legacy.is_file() {
            return Ok(legacy);
        }
    }
    let io = |source| WpError::Io { path: dir.to_path_buf(), source };
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(entry.map_err(io)?.file_name().to_string_lossy().to_string());
    }
    names.sort();
    let legacy: Vec<&String> = names.iter().filter(|n| n.starts_with("WP-") && n.ends_with(".md")).collect();
    match legacy.as_slice() {
        [one] => return Ok(dir.join(one)),
        [] => {}
        many => {
            return Err(WpError::Ambiguous {
                dir: dir.to_path_buf(),
                candidates: many.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    for name in ["wp.toml", "wp.json"] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    // A folder holding only a draft suite gets the draft refusal, not "not found".
    for name in names.iter().filter(|n| n.ends_with(".md")) {
        refuse_draft(&read(&dir.join(name))?, &dir.join(name))?;
    }
    Err(WpError::NotFound { dir: dir.to_path_buf() })
}

fn load_file(path: &Path) -> Result<WorkPacket, WpError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let text = read(path)?;
    match ext.as_str() {
        "md" | "markdown" => load_markdown(&text, path),
        "toml" => {
            let value = native_value(&text, true, path)?;
            refuse_generated_value(&value, path)?;
            work_packet_from_native(value, path)
        }
        "json" => {
            let value = native_value(&text, false, path)?;
            refuse_generated_value(&value, path)?;
            if is_contract(&value) {
                load_contract(value, path)
            } else {
                work_packet_from_native(value, path)
            }
        }
        _ => Err(WpError::UnsupportedFormat { path: path.to_path_buf() }),
    }
}

fn is_contract(v: &Value) -> bool {
    v.get("schema_id").and_then(Value::as_str).is_some_and(|s| s.starts_with("hsk."))
        || v.get("contract_authority").is_some()
        || v.get("markdown_projection").is_some()
}

fn markdown_kind(path: &Path) -> SourceKind {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if name == "packet.md" || name.ends_with(".packet.md") {
        SourceKind::MarkdownModern
    } else {
        SourceKind::MarkdownLegacy
    }
}

fn load_markdown(text: &str, path: &Path) -> Result<WorkPacket, WpError> {
    refuse_draft(text, path)?;
    refuse_stub_markdown(text, path)?;
    for key in GENERATED_MT_KEYS {
        if has_label(text, key) {
            return Err(WpError::GeneratedMtDefinitions { path: path.to_path_buf(), key: key.to_string() });
        }
    }
    parse_markdown(text, markdown_kind(path))
}

/// The markdown packet next to a contract: same stem with `.md`, `packet.md`, or the file
/// named by `markdown_projection.path`.
fn sibling_markdown(contract: &Value, path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    let mut candidates = vec![path.with_extension("md"), dir.join("packet.md")];
    if let Some(p) = contract.pointer("/markdown_projection/path").and_then(Value::as_str)
        && let Some(name) = Path::new(p).file_name()
    {
        candidates.push(dir.join(name));
    }
    candidates.into_iter().find(|c| c.is_file())
}

fn load_contract(value: Value, path: &Path) -> Result<WorkPacket, WpError> {
    refuse_stub_value(&value, path)?;
    let md_path = sibling_markdown(&value, path);
    let markdown = match &md_path {
        Some(p) => Some(load_markdown(&read(p)?, p)?),
        None => None,
    };
    let reasons = lossy_reasons(&value, markdown.as_ref());
    let shown = path.file_name().unwrap_or_default().to_string_lossy().to_string();
    if !reasons.is_empty() {
        let joined = reasons.join("; ");
        return match markdown {
            Some(mut md) => {
                md.warnings.insert(
                    0,
                    format!("{shown} treated as a lossy import ({joined}); parsed the markdown packet"),
                );
                Ok(md)
            }
            None => Err(WpError::LossyJsonWithoutMarkdown { path: path.to_path_buf(), reasons: joined }),
        };
    }
    match markdown {
        Some(mut md) if !projection_in_sync(&value) => {
            md.warnings.insert(
                0,
                format!("{shown}: markdown projection is not GENERATED_IN_SYNC; parsed the markdown"),
            );
            Ok(md)
        }
        markdown => {
            let mut wp = work_packet_from_contract(&value)?;
            if markdown.is_none() && !projection_in_sync(&value) {
                wp.warnings.insert(
                    0,
                    format!("{shown}: markdown projection is not GENERATED_IN_SYNC and no markdown is next to it; used the contract"),
                );
            }
            if let Some(md) = markdown {
                if wp.test_plan.is_empty() && !md.test_plan.is_empty() {
                    wp.warnings.push("test_plan taken from the in-sync markdown projection".to_string());
                    wp.test_plan = md.test_plan;
                }
                wp.clause_rows = md.clause_rows;
                wp.implementation_order = md.implementation_order;
                wp.bootstrap = md.bootstrap;
                wp.touched_file_budget = md.touched_file_budget;
                wp.broad_tool_allowlist = md.broad_tool_allowlist;
                wp.projection = md.projection;
            }
            Ok(wp)
        }
    }
}

fn find_key(v: &Value, keys: &[&str]) -> Option<String> {
    match v {
        Value::Object(map) => map.iter().find_map(|(k, child)| {
            if keys.contains(&k.as_str()) { Some(k.clone()) } else { find_key(child, keys) }
        }),
        Value::Array(items) => items.iter().find_map(|c| find_key(c, keys)),
        _ => None,
    }
}

fn refuse_generated_value(v: &Value, path: &Path) -> Result<(), WpError> {
    match find_key(v, &GENERATED_MT_KEYS) {
        Some(key) => Err(WpError::GeneratedMtDefinitions { path: path.to_path_buf(), key }),
        None => Ok(()),
    }
}

fn refuse_stub_value(v: &Value, path: &Path) -> Result<(), WpError> {
    let stub = |marker: String| Err(WpError::StubContract { path: path.to_path_buf(), marker });
    if v.get("schema_id").and_then(Value::as_str) == Some(STUB_CONTRACT_SCHEMA) {
        return stub(format!("schema_id {STUB_CONTRACT_SCHEMA}"));
    }
    if v.get("execution_authority").and_then(Value::as_str) == Some("NON_EXECUTION_STUB") {
        return stub("execution_authority NON_EXECUTION_STUB".into());
    }
    if let Some(status) = v.pointer("/lifecycle/status").and_then(Value::as_str)
        && status.trim().to_uppercase().starts_with("STUB")
    {
        return stub(format!("lifecycle.status {status}"));
    }
    if v.pointer("/lifecycle/activation_required").and_then(Value::as_bool) == Some(true) {
        return stub("lifecycle.activation_required true".into());
    }
    if v.pointer("/activation_contract/may_start_coder").and_then(Value::as_bool) == Some(false) {
        return stub("activation_contract.may_start_coder false".into());
    }
    Ok(())
}

fn truthy(v: &str, yes: bool) -> bool {
    let v = v.trim().to_ascii_lowercase();
    if yes { v == "true" || v == "yes" } else { v == "false" || v == "no" }
}

fn refuse_stub_markdown(text: &str, path: &Path) -> Result<(), WpError> {
    let stub = |marker: String| Err(WpError::StubContract { path: path.to_path_buf(), marker });
    if projection_keys(text).iter().any(|(k, v)| k == "schema_id" && v == STUB_CONTRACT_SCHEMA) {
        return stub(format!("projection schema_id {STUB_CONTRACT_SCHEMA}"));
    }
    if let Some(v) = any_field(text, "EXECUTION_AUTHORITY")
        && v.trim() == "NON_EXECUTION_STUB"
    {
        return stub("EXECUTION_AUTHORITY NON_EXECUTION_STUB".into());
    }
    if let Some(v) = any_field(text, "Status")
        && v.trim().to_uppercase().starts_with("STUB")
    {
        return stub(format!("Status {v}"));
    }
    if let Some(v) = any_field(text, "ACTIVATION_REQUIRED")
        && truthy(&v, true)
    {
        return stub(format!("ACTIVATION_REQUIRED {v}"));
    }
    if let Some(v) = any_field(text, "MAY_START_CODER")
        && truthy(&v, false)
    {
        return stub(format!("MAY_START_CODER {v}"));
    }
    Ok(())
}

fn refuse_draft(text: &str, path: &Path) -> Result<(), WpError> {
    for (k, v) in front_matter(text) {
        let marker = match (k.as_str(), v.as_str()) {
            ("file_kind", "draft_microtask_suite") => true,
            ("status", "draft_non_executable") => true,
            ("official_microtasks_generated", v) => truthy(v, false),
            _ => false,
        };
        if marker {
            return Err(WpError::DraftMtSuite { path: path.to_path_buf(), marker: format!("{k}: {v}") });
        }
    }
    Ok(())
}
