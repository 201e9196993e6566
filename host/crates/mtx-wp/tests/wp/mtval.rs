//! C-VAL-1..14: one fixture per MT-VAL rule (tests/fixtures/mtval), asserting the rule id
//! and its severity; only ERRORs make a report fail.

use mtx_types::{ExecutionPolicy, MicroTaskDefinition, WorkPacketScope};
use mtx_wp::{Severity, ValidationReport, validate_definitions};

use crate::support::fixture;

const TOOLS: [&str; 2] = ["context.search", "version.diff"];

fn scope() -> WorkPacketScope {
    WorkPacketScope {
        in_scope_paths: vec!["src/".into()],
        out_of_scope: vec!["src/secret.rs".into(), "anything about the UI".into()],
        done_means: vec!["done".into()],
        test_plan: vec!["cargo test".into()],
        description: "fixture".into(),
    }
}

fn defs(name: &str) -> Vec<MicroTaskDefinition> {
    let text = std::fs::read_to_string(fixture("mtval").join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn report(name: &str) -> ValidationReport {
    validate_definitions(&defs(name), &scope(), &ExecutionPolicy::default(), &TOOLS)
}

fn severities(r: &ValidationReport, rule: &str) -> Vec<Severity> {
    r.items().filter(|(_, i)| i.rule_id == rule).map(|(s, _)| s).collect()
}

#[test]
fn valid_definitions_pass_with_only_the_budget_info() {
    let r = report("valid");
    assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
    assert_eq!(r.infos.len(), 1);
    assert_eq!(r.infos[0].rule_id, "MT-VAL-010");
}

#[test]
fn each_rule_fixture_reports_its_rule_with_its_severity() {
    use Severity::{Error, Info, Warning};
    let cases = [
        ("MT-VAL-001", Error),
        ("MT-VAL-002", Error),
        ("MT-VAL-003", Error),
        ("MT-VAL-004", Error),
        ("MT-VAL-005", Error),
        ("MT-VAL-006", Error),
        ("MT-VAL-007", Warning),
        ("MT-VAL-008", Warning),
        ("MT-VAL-009", Warning),
        ("MT-VAL-010", Info),
        ("MT-VAL-011", Error),
        ("MT-VAL-012", Error),
        ("MT-VAL-013", Error),
        ("MT-VAL-014", Warning),
        ("MT-SCHEMA", Error),
    ];
    for (rule, severity) in cases {
        let r = report(rule);
        let found = severities(&r, rule);
        assert!(!found.is_empty(), "{rule}: not reported in {r:?}");
        assert!(found.iter().all(|s| *s == severity), "{rule}: expected {severity:?}, got {found:?}");
        // Only the fixture's own rule (and the budget info) shows up: fixtures are minimal.
        for (_, item) in r.items() {
            assert!(item.rule_id == rule || item.rule_id == "MT-VAL-010", "{rule}: stray finding {item:?}");
        }
        assert_eq!(r.has_errors(), severity == Error, "{rule}: only ERRORs fail the job");
    }
}

#[test]
fn duplicate_ids_are_reported_once_per_duplicate() {
    let r = report("MT-VAL-001");
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].mt_id.as_deref(), Some("MT-001"));
}

#[test]
fn cycle_message_names_the_cycle() {
    let r = report("MT-VAL-004");
    let cycle: Vec<&str> = r.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(cycle, ["MT-VAL-004 dependency cycle: MT-002 -> MT-003 -> MT-002"]);
}

#[test]
fn out_of_scope_paths_are_errors_even_inside_scope_but_prose_is_ignored() {
    let mut d = defs("valid");
    d[0].files.modify = vec!["src/secret.rs".into()];
    let r = validate_definitions(&d, &scope(), &ExecutionPolicy::default(), &TOOLS);
    assert_eq!(severities(&r, "MT-VAL-005"), [Severity::Error]);
    assert!(r.errors[0].message.contains("OUT_OF_SCOPE"));
}

#[test]
fn budget_window_is_the_smallest_local_level() {
    let mut policy = ExecutionPolicy::default();
    policy.escalation_chain[2].context_window = 2048;
    // Gate and cloud levels never set the window, however small.
    policy.escalation_chain[6].context_window = 512;
    let mut d = defs("valid");
    d[0].token_budget = 1600;
    let r = validate_definitions(&d, &scope(), &policy, &TOOLS);
    assert_eq!(severities(&r, "MT-VAL-006"), [Severity::Error]);
    d[0].token_budget = 1536;
    let r = validate_definitions(&d, &scope(), &policy, &TOOLS);
    assert!(severities(&r, "MT-VAL-006").is_empty());
}

#[test]
fn tool_families_are_accepted_and_unknown_tools_rejected() {
    let mut d = defs("valid");
    d[0].allowed_tools = Some(vec!["context".into(), "version.*".into()]);
    let r = validate_definitions(&d, &scope(), &ExecutionPolicy::default(), &TOOLS);
    assert!(!r.has_errors(), "{r:?}");
    let r = report("MT-VAL-011");
    assert_eq!(r.errors.len(), 2, "one missing field, one unregistered tool: {r:?}");
    assert!(r.errors.iter().any(|e| e.message.contains("shell.exec")));
}

#[test]
fn schema_limits_check_the_timeout_maximum_and_the_pattern() {
    let r = report("MT-SCHEMA");
    let fields: Vec<&str> = r.errors.iter().filter_map(|e| e.field.as_deref()).collect();
    assert!(fields.contains(&"verify[0].timeout_ms"), "{fields:?}");
    assert!(fields.contains(&"verify[0].pattern"), "{fields:?}");
}

#[test]
fn report_serialises_with_the_spec_item_shape() {
    let v = serde_json::to_value(report("MT-VAL-007")).unwrap();
    assert_eq!(v["warnings"][0]["rule_id"], "MT-VAL-007");
    assert_eq!(v["warnings"][0]["mt_id"], "MT-001");
    assert!(v["errors"].as_array().unwrap().is_empty());
}
