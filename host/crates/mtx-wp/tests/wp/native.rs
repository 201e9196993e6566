//! The native hand-written form (`wp.toml` / `wp.json`) and directory resolution.

use mtx_wp::{SourceKind, WpError, load_work_packet, wp_scope};

use crate::support::{fixture, temp_packet};

#[test]
fn native_toml_packet_loads() {
    let wp = load_work_packet(&fixture("native").join("wp.toml")).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::Native));
    assert_eq!(wp.wp_id, "WP-1-Greeting-v1");
    assert_eq!(wp.title, "Greet by name");
    assert_eq!(wp.in_scope_paths, ["src/", "tests/greet.rs"]);
    assert_eq!(wp.out_of_scope, ["Cargo.lock", "Localisation of the greeting"]);
    assert_eq!(wp.test_plan, ["cargo test --lib greet", "cargo clippy -- -D warnings"]);
    assert_eq!(wp.done_means.len(), 2);
    assert_eq!(wp.risk_tier.as_deref(), Some("LOW"));
    assert_eq!(wp.task_tags, ["rust", "strings"]);
    let scope = wp_scope(&wp);
    assert!(scope.description.starts_with("Add a `greet(name)` function"));
}

#[test]
fn native_json_packet_loads_with_optional_fields_absent() {
    let wp = load_work_packet(&fixture("native").join("wp.json")).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::Native));
    assert_eq!(wp.risk_tier, None);
    assert!(wp.task_tags.is_empty());
    assert!(wp.out_of_scope.is_empty());
}

#[test]
fn unknown_native_key_is_an_error_naming_it() {
    let err = load_work_packet(&fixture("native").join("typo.toml")).unwrap_err();
    assert!(err.to_string().contains("\"in_scope_path\""), "{err}");
    assert!(matches!(err, WpError::UnknownKey { key, .. } if key == "in_scope_path"));
}

#[test]
fn missing_required_native_key_is_an_error() {
    let dir = temp_packet(&[("wp.toml", "wp_id = \"WP-1-X\"\ntitle = \"x\"\ndescription = \"x\"\n")]);
    let err = load_work_packet(dir.path()).unwrap_err();
    assert!(matches!(err, WpError::MissingField { field } if field == "in_scope_paths"));
}

#[test]
fn bad_native_values_are_rejected() {
    let base = "title = \"x\"\ndescription = \"x\"\nin_scope_paths = [\"src/\"]\ntest_plan = [\"t\"]\ndone_means = [\"d\"]\n";
    let dir = temp_packet(&[("wp.toml", &format!("wp_id = \"not-a-wp\"\n{base}"))]);
    assert!(load_work_packet(dir.path()).unwrap_err().to_string().contains("does not match"));
    let dir = temp_packet(&[("wp.toml", &format!("wp_id = \"WP-1-X\"\nrisk_tier = \"extreme\"\n{base}"))]);
    assert!(load_work_packet(dir.path()).unwrap_err().to_string().contains("risk_tier"));
    let dir = temp_packet(&[("wp.toml", "wp_id = [")]);
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::Toml { .. })));
}

#[test]
fn directory_resolution_follows_the_preference_order() {
    let native = std::fs::read_to_string(fixture("native").join("wp.toml")).unwrap();
    let md = std::fs::read_to_string(fixture("quirks").join("8-wrapper-commands.md")).unwrap();
    let contract = std::fs::read_to_string(fixture("refusals").join("sound-contract.json")).unwrap();

    let dir = temp_packet(&[("wp.toml", &native), ("packet.md", &md)]);
    assert_eq!(load_work_packet(dir.path()).unwrap().source_kind, Some(SourceKind::MarkdownModern));

    let dir = temp_packet(&[("packet.json", &contract), ("wp.toml", &native)]);
    assert_eq!(load_work_packet(dir.path()).unwrap().source_kind, Some(SourceKind::Json));

    let dir = temp_packet(&[("WP-1-Quirk-Wrappers-v1.md", &md), ("wp.toml", &native)]);
    assert_eq!(load_work_packet(dir.path()).unwrap().source_kind, Some(SourceKind::MarkdownLegacy));

    let dir = temp_packet(&[("wp.toml", &native)]);
    assert_eq!(load_work_packet(dir.path()).unwrap().source_kind, Some(SourceKind::Native));
}

#[test]
fn empty_or_ambiguous_directories_are_errors() {
    let dir = temp_packet(&[("notes.txt", "x")]);
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::NotFound { .. })));
    let dir = temp_packet(&[("WP-1-A.md", "# Task Packet: WP-1-A"), ("WP-1-B.md", "# Task Packet: WP-1-B")]);
    assert!(
        matches!(load_work_packet(dir.path()), Err(WpError::Ambiguous { candidates, .. }) if candidates.len() == 2)
    );
}
