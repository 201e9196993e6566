//! The native Work Packet form (`wp.toml` / `wp.json`) for packets written by hand.
//!
//! Strict on purpose: an unknown key is an error naming the key, so a typo never turns
//! into a silently empty field. It must never accept MT definitions (R-GEN-1; the
//! loader refuses those before this module sees the document).

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::error::WpError;
use crate::markdown::out_of_scope;
use crate::packet::{SourceKind, WorkPacket};
use crate::paths::normalise_paths;

/// Keys a native packet may carry.
pub const NATIVE_KEYS: [&str; 9] = [
    "wp_id",
    "title",
    "description",
    "in_scope_paths",
    "out_of_scope",
    "test_plan",
    "done_means",
    "risk_tier",
    "task_tags",
];

static WP_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^WP-[A-Za-z0-9][A-Za-z0-9._-]*$").unwrap());

#[derive(Debug, Deserialize)]
struct NativePacket {
    wp_id: String,
    title: String,
    description: String,
    in_scope_paths: Vec<String>,
    #[serde(default)]
    out_of_scope: Vec<String>,
    test_plan: Vec<String>,
    done_means: Vec<String>,
    #[serde(default)]
    risk_tier: Option<String>,
    #[serde(default)]
    task_tags: Vec<String>,
}

/// Parses the text of a native packet (`toml` selects TOML, otherwise JSON) into a JSON
/// value, so that both forms share one set of checks.
pub(crate) fn native_value(text: &str, toml: bool, path: &Path) -> Result<Value, WpError> {
    if toml {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| WpError::Toml { path: path.to_path_buf(), message: e.to_string() })?;
        serde_json::to_value(table)
            .map_err(|e| WpError::Toml { path: path.to_path_buf(), message: e.to_string() })
    } else {
        serde_json::from_str(text)
            .map_err(|e| WpError::Json { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// Builds a WorkPacket from a parsed native document.
pub(crate) fn work_packet_from_native(value: Value, path: &Path) -> Result<WorkPacket, WpError> {
    let bad = |message: String| WpError::Invalid { path: path.to_path_buf(), message };
    let Some(map) = value.as_object() else {
        return Err(bad("a native work packet must be a table / object".to_string()));
    };
    if let Some(key) = map.keys().find(|k| !NATIVE_KEYS.contains(&k.as_str())) {
        return Err(WpError::UnknownKey { path: path.to_path_buf(), key: key.clone() });
    }
    for required in ["wp_id", "title", "description", "in_scope_paths", "test_plan", "done_means"] {
        if !map.contains_key(required) {
            return Err(WpError::MissingField { field: required.to_string() });
        }
    }
    let native: NativePacket = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if !WP_ID.is_match(&native.wp_id) {
        return Err(bad(format!("wp_id {:?} does not match ^WP-[A-Za-z0-9][A-Za-z0-9._-]*$", native.wp_id)));
    }
    let risk_tier = match native.risk_tier.map(|r| r.to_uppercase()) {
        Some(r) if !["LOW", "MEDIUM", "HIGH"].contains(&r.as_str()) => {
            return Err(bad(format!("risk_tier {r:?} is not one of LOW, MEDIUM, HIGH")));
        }
        other => other,
    };
    let mut warnings = Vec::new();
    let test_plan: Vec<String> = native
        .test_plan
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && !c.starts_with('#'))
        .collect();
    Ok(WorkPacket {
        in_scope_paths: normalise_paths(&native.in_scope_paths, "in_scope_paths", &mut warnings),
        out_of_scope: out_of_scope(&native.out_of_scope, &mut warnings),
        wp_id: native.wp_id,
        title: native.title,
        source_kind: Some(SourceKind::Native),
        what: native.description.clone(),
        description: native.description,
        test_plan,
        done_means: native.done_means,
        risk_tier,
        task_tags: native.task_tags,
        warnings,
        ..WorkPacket::default()
    })
}
