//! MT definition validation: MT-VAL-001..014 and the schema limits of 3.6.5 (`MT-SCHEMA`),
//! MTX-SPEC section 4.
//!
//! The planner is untrusted; this is where its output is checked before anything runs.
//! The validator reports and never repairs: it must never change a definition.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use mtx_types::mtdef::VERIFY_TIMEOUT_MS_RANGE;
use mtx_types::{DoneVerification, ExecutionPolicy, ExecutionTier, MicroTaskDefinition, WorkPacketScope};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::paths::{looks_like_path, path_in_scope};
use crate::waves::find_cycles;

/// Tokens reserved for the system overhead in MT-VAL-006.
pub const SYSTEM_OVERHEAD_TOKENS: u32 = 512;

static MT_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^MT-[0-9]{3}$").unwrap());

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One finding `{rule_id, mt_id?, field?, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationItem {
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// `{errors[], warnings[], infos[]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub errors: Vec<ValidationItem>,
    pub warnings: Vec<ValidationItem>,
    pub infos: Vec<ValidationItem>,
}

impl ValidationReport {
    /// Whether the job must stop (`mt_definitions_invalid`): at least one ERROR.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Every item with its severity, errors first.
    pub fn items(&self) -> impl Iterator<Item = (Severity, &ValidationItem)> {
        self.errors
            .iter()
            .map(|i| (Severity::Error, i))
            .chain(self.warnings.iter().map(|i| (Severity::Warning, i)))
            .chain(self.infos.iter().map(|i| (Severity::Info, i)))
    }

    fn push(&mut self, sev: Severity, rule: &str, mt: Option<&str>, field: Option<&str>, message: String) {
        let item = ValidationItem {
            rule_id: rule.to_string(),
            mt_id: mt.map(str::to_string),
            field: field.map(str::to_string),
            message,
        };
        match sev {
            Severity::Error => self.errors.push(item),
            Severity::Warning => self.warnings.push(item),
            Severity::Info => self.infos.push(item),
        }
    }
}

/// Whether a tool entry names a registered Tool Bus operation or a family of them
/// (`context` or `context.*` covers `context.search`), or an operation of a registered family.
fn tool_registered(entry: &str, registered: &[&str]) -> bool {
    let family = entry.strip_suffix(".*").unwrap_or(entry);
    registered.iter().any(|r| {
        let r_family = r.strip_suffix(".*").unwrap_or(r);
        *r == entry
            || r.starts_with(&format!("{family}."))
            || entry.starts_with(&format!("{r_family}."))
            || r_family == family
    })
}

/// The MT-VAL-006 window: the smallest `context_window` among the chain's non-gate,
/// non-cloud levels.
fn local_window(policy: &ExecutionPolicy) -> Option<u32> {
    policy
        .escalation_chain
        .iter()
        .filter(|l| !l.is_hard_gate && !l.is_cloud && !l.is_gate_only())
        .map(|l| l.context_window)
        .min()
}

/// Runs every rule of section 4 on the full set of definitions.
pub fn validate_definitions(
    defs: &[MicroTaskDefinition],
    scope: &WorkPacketScope,
    policy: &ExecutionPolicy,
    registered_tools: &[&str],
) -> ValidationReport {
    use Severity::{Error, Info, Warning};
    let mut r = ValidationReport::default();

    // MT-VAL-001: one report per extra occurrence.
    let mut seen: HashSet<&str> = HashSet::new();
    for d in defs {
        if !seen.insert(d.mt_id.as_str()) {
            r.push(
                Error,
                "MT-VAL-001",
                Some(&d.mt_id),
                Some("mt_id"),
                format!("duplicate mt_id {}", d.mt_id),
            );
        }
    }
    let window = local_window(policy);
    let out_paths: Vec<String> = scope.out_of_scope.iter().filter(|e| looks_like_path(e)).cloned().collect();

    for d in defs {
        let mt = Some(d.mt_id.as_str());
        // MT-VAL-002
        if !MT_ID.is_match(&d.mt_id) {
            r.push(
                Error,
                "MT-VAL-002",
                mt,
                Some("mt_id"),
                format!("mt_id {:?} does not match ^MT-[0-9]{{3}}$", d.mt_id),
            );
        }
        // MT-VAL-003
        for dep in &d.depends_on {
            if !defs.iter().any(|o| &o.mt_id == dep) {
                r.push(
                    Error,
                    "MT-VAL-003",
                    mt,
                    Some("depends_on"),
                    format!("depends_on names unknown MT {dep}"),
                );
            }
        }
        // MT-VAL-005
        for (field, paths) in [("files.modify", &d.files.modify), ("files.create", &d.files.create)] {
            for p in paths.iter() {
                if !path_in_scope(p, &scope.in_scope_paths) {
                    r.push(Error, "MT-VAL-005", mt, Some(field), format!("{p} is outside IN_SCOPE_PATHS"));
                } else if path_in_scope(p, &out_paths) {
                    r.push(
                        Error,
                        "MT-VAL-005",
                        mt,
                        Some(field),
                        format!("{p} matches an OUT_OF_SCOPE entry"),
                    );
                }
            }
        }
        // MT-VAL-006
        if let Some(w) = window
            && d.token_budget > w.saturating_sub(SYSTEM_OVERHEAD_TOKENS)
        {
            r.push(
                Error,
                "MT-VAL-006",
                mt,
                Some("token_budget"),
                format!(
                    "token_budget {} exceeds the smallest local context window {w} minus {SYSTEM_OVERHEAD_TOKENS} overhead",
                    d.token_budget
                ),
            );
        }
        // MT-VAL-007
        if !d.verify.iter().any(|v| v.blocking) {
            r.push(Warning, "MT-VAL-007", mt, Some("verify"), "no verify spec is blocking".to_string());
        }
        // MT-VAL-008
        for (i, c) in d.done.iter().enumerate() {
            if c.verification == DoneVerification::Automated
                && !c.verify_ref.is_some_and(|v| v >= 0 && (v as usize) < d.verify.len())
            {
                r.push(
                    Warning,
                    "MT-VAL-008",
                    mt,
                    Some(&format!("done[{i}].verify_ref")),
                    format!("automated criterion {:?} has no verify_ref into verify", c.description),
                );
            }
        }
        // MT-VAL-009
        let mut actions: HashSet<&str> = HashSet::new();
        for a in &d.actions {
            if !actions.insert(a.as_str()) {
                r.push(Warning, "MT-VAL-009", mt, Some("actions"), format!("action {a:?} is listed twice"));
            }
        }
        // MT-VAL-011
        match &d.allowed_tools {
            None => {
                r.push(Error, "MT-VAL-011", mt, Some("allowed_tools"), "allowed_tools is missing".to_string())
            }
            Some(tools) => {
                for t in tools {
                    if !tool_registered(t, registered_tools) {
                        r.push(
                            Error,
                            "MT-VAL-011",
                            mt,
                            Some("allowed_tools"),
                            format!("{t} is not a registered Tool Bus operation or family"),
                        );
                    }
                }
            }
        }
        // MT-VAL-012
        match d.retry_budget {
            Some(b) if (0..=5).contains(&b) => {}
            Some(b) => r.push(
                Error,
                "MT-VAL-012",
                mt,
                Some("retry_budget"),
                format!("retry_budget {b} is not in [0, 5]"),
            ),
            None => {
                r.push(Error, "MT-VAL-012", mt, Some("retry_budget"), "retry_budget is missing".to_string())
            }
        }
        // MT-VAL-013
        if d.expected_output.is_none() {
            r.push(
                Error,
                "MT-VAL-013",
                mt,
                Some("expected_output"),
                "expected_output is missing".to_string(),
            );
        }
        // MT-VAL-014
        match d.execution_tier {
            Some(ExecutionTier::Cloud) => r.push(
                Warning,
                "MT-VAL-014",
                mt,
                Some("execution_tier"),
                "execution_tier is cloud; prefer local_small or local_large".to_string(),
            ),
            None => r.push(
                Error,
                "MT-SCHEMA",
                mt,
                Some("execution_tier"),
                "execution_tier is missing".to_string(),
            ),
            _ => {}
        }
        schema_limits(d, &mut r);
    }

    // MT-VAL-004
    for cycle in find_cycles(defs) {
        let message = format!("MT-VAL-004 dependency cycle: {}", cycle.join(" -> "));
        r.push(Error, "MT-VAL-004", Some(&cycle[0]), Some("depends_on"), message);
    }

    // MT-VAL-010
    let total: u64 = defs.iter().map(|d| u64::from(d.token_budget)).sum();
    r.push(
        Info,
        "MT-VAL-010",
        None,
        Some("token_budget"),
        format!("sum of token_budget over {} MTs: {total}", defs.len()),
    );
    r
}

/// Parses untrusted planner output (a JSON array of definitions). Where serde would give
/// one opaque error, the routing fields get their own rule: a bad `expected_output` is
/// MT-VAL-013, a non-integer `retry_budget` MT-VAL-012, a malformed `allowed_tools`
/// MT-VAL-011; anything else that does not fit the schema is `MT-SCHEMA`. Findings carry
/// the MT id where the element has one.
pub fn parse_definitions(value: &serde_json::Value) -> Result<Vec<MicroTaskDefinition>, ValidationReport> {
    use serde_json::Value;
    let mut r = ValidationReport::default();
    let Some(items) = value.as_array() else {
        r.push(Severity::Error, "MT-SCHEMA", None, None, "MT definitions must be a JSON array".to_string());
        return Err(r);
    };
    let mut defs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let label = format!("definition {i}");
        let mt = item.get("mt_id").and_then(Value::as_str);
        let before = r.errors.len();
        if let Some(v) = item.get("expected_output")
            && !v
                .as_str()
                .is_some_and(|s| ["patch", "artifact", "structured_answer", "decision_support"].contains(&s))
        {
            r.push(
                Severity::Error,
                "MT-VAL-013",
                mt,
                Some("expected_output"),
                format!("{label}: expected_output {v} is not patch, artifact, structured_answer or decision_support"),
            );
        }
        if let Some(v) = item.get("retry_budget")
            && !v.is_i64()
        {
            r.push(
                Severity::Error,
                "MT-VAL-012",
                mt,
                Some("retry_budget"),
                format!("{label}: retry_budget {v} is not an integer in [0, 5]"),
            );
        }
        if let Some(v) = item.get("allowed_tools")
            && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        {
            r.push(
                Severity::Error,
                "MT-VAL-011",
                mt,
                Some("allowed_tools"),
                format!("{label}: allowed_tools must be a list of tool ids"),
            );
        }
        if r.errors.len() > before {
            continue;
        }
        match serde_json::from_value::<MicroTaskDefinition>(item.clone()) {
            Ok(d) => defs.push(d),
            Err(e) => r.push(Severity::Error, "MT-SCHEMA", mt, None, format!("{label}: {e}")),
        }
    }
    if r.has_errors() { Err(r) } else { Ok(defs) }
}

/// The 3.6.5 limits, reported as `MT-SCHEMA` errors.
fn schema_limits(d: &MicroTaskDefinition, r: &mut ValidationReport) {
    let mt = Some(d.mt_id.as_str());
    let mut err =
        |field: &str, message: String| r.push(Severity::Error, "MT-SCHEMA", mt, Some(field), message);
    let chars = |s: &str| s.chars().count();
    if !(1..=100).contains(&chars(&d.name)) {
        err("name", format!("name has {} characters, allowed 1..100", chars(&d.name)));
    }
    if !(1..=500).contains(&chars(&d.scope)) {
        err("scope", format!("scope has {} characters, allowed 1..500", chars(&d.scope)));
    }
    for (field, len, max) in [
        ("files.read", d.files.read.len(), 10),
        ("files.modify", d.files.modify.len(), 5),
        ("files.create", d.files.create.len(), 3),
    ] {
        if len > max {
            err(field, format!("{field} has {len} entries, at most {max}"));
        }
    }
    if !(1..=10).contains(&d.actions.len()) {
        err("actions", format!("actions has {} items, allowed 1..10", d.actions.len()));
    }
    for (i, a) in d.actions.iter().enumerate() {
        if !(1..=200).contains(&chars(a)) {
            err(&format!("actions[{i}]"), format!("action has {} characters, allowed 1..200", chars(a)));
        }
    }
    if !(1..=5).contains(&d.verify.len()) {
        err("verify", format!("verify has {} items, allowed 1..5", d.verify.len()));
    }
    for (i, v) in d.verify.iter().enumerate() {
        if v.command.trim().is_empty() {
            err(&format!("verify[{i}].command"), "command is empty".to_string());
        }
        if !VERIFY_TIMEOUT_MS_RANGE.contains(&v.timeout_ms) {
            err(
                &format!("verify[{i}].timeout_ms"),
                format!("timeout_ms {} is not in [1000, 300000]", v.timeout_ms),
            );
        }
        if v.expect.needs_pattern() && v.pattern.as_deref().is_none_or(str::is_empty) {
            err(&format!("verify[{i}].pattern"), format!("expect {} needs a pattern", v.expected_string()));
        }
    }
    if !(1..=8).contains(&d.done.len()) {
        err("done", format!("done has {} items, allowed 1..8", d.done.len()));
    }
    for dep in &d.depends_on {
        if !MT_ID.is_match(dep) {
            err("depends_on", format!("depends_on entry {dep:?} does not match ^MT-[0-9]{{3}}$"));
        }
    }
    if !(512..=8192).contains(&d.token_budget) {
        err("token_budget", format!("token_budget {} is not in [512, 8192]", d.token_budget));
    }
}

/// Counts of findings per rule id, for summaries.
pub fn rule_counts(report: &ValidationReport) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, item) in report.items() {
        *m.entry(item.rule_id.clone()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_definitions_turns_bad_routing_values_into_their_rules() {
        let good = serde_json::json!({
            "mt_id": "MT-001", "name": "n", "scope": "s",
            "files": {"read": [], "modify": [], "create": []},
            "actions": ["a"], "verify": [{"command": "true", "expect": "exit_0"}],
            "done": [{"description": "d", "verification": "evidence_required"}],
            "depends_on": [], "token_budget": 1024, "execution_tier": "local_small",
            "allowed_tools": [], "retry_budget": 1, "expected_output": "patch",
            "task_tags": [], "risk_level": "low"
        });
        assert_eq!(parse_definitions(&serde_json::json!([good.clone()])).unwrap().len(), 1);

        let mut bad = good.clone();
        bad["expected_output"] = "essay".into();
        bad["retry_budget"] = "3".into();
        let mut missing_name = good.clone();
        missing_name.as_object_mut().unwrap().remove("name");
        missing_name["mt_id"] = "MT-002".into();
        let r = parse_definitions(&serde_json::json!([bad, missing_name])).unwrap_err();
        let rules: Vec<(&str, Option<&str>)> =
            r.errors.iter().map(|e| (e.rule_id.as_str(), e.mt_id.as_deref())).collect();
        assert_eq!(
            rules,
            [("MT-VAL-013", Some("MT-001")), ("MT-VAL-012", Some("MT-001")), ("MT-SCHEMA", Some("MT-002"))]
        );
        assert!(r.errors[2].message.contains("name"));
        assert!(parse_definitions(&serde_json::json!({"mt_id": "MT-001"})).is_err());
    }
}
