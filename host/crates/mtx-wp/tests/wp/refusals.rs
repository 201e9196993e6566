//! The refusals of MTX-SPEC 14.5 (stubs, draft suites) and R-GEN-1 (supplied MTs):
//! each a distinct error naming the marker found (tests/fixtures/refusals).

use mtx_wp::{SourceKind, WpError, load_work_packet};

use crate::support::{fixture, temp_packet};

fn refused(name: &str) -> WpError {
    load_work_packet(&fixture("refusals").join(name)).expect_err(name)
}

#[test]
fn stub_contracts_are_refused_naming_the_marker() {
    for (file, marker) in [
        ("stub-schema.json", "schema_id hsk.work_packet_stub_contract@1"),
        ("stub-execution-authority.json", "execution_authority NON_EXECUTION_STUB"),
        ("stub-lifecycle-status.json", "lifecycle.status STUB (NOT READY FOR DEV)"),
        ("stub-activation-required.json", "lifecycle.activation_required true"),
        ("stub-may-start-coder.json", "activation_contract.may_start_coder false"),
        ("stub-status.md", "Status STUB (NOT READY FOR DEV)"),
    ] {
        match refused(file) {
            WpError::StubContract { marker: found, .. } => assert_eq!(found, marker, "{file}"),
            other => panic!("{file}: expected StubContract, got {other:?}"),
        }
    }
}

#[test]
fn draft_mt_suites_are_refused_naming_the_marker() {
    for (file, marker) in [
        ("draft-file-kind.md", "file_kind: draft_microtask_suite"),
        ("draft-status.md", "status: draft_non_executable"),
        ("draft-official-microtasks-generated.md", "official_microtasks_generated: false"),
    ] {
        let err = refused(file);
        assert!(err.to_string().contains("draft micro-task suite"), "{err}");
        match err {
            WpError::DraftMtSuite { marker: found, .. } => assert_eq!(found, marker, "{file}"),
            other => panic!("{file}: expected DraftMtSuite, got {other:?}"),
        }
    }
}

#[test]
fn a_folder_holding_only_a_draft_suite_gets_the_draft_refusal() {
    let text = std::fs::read_to_string(fixture("refusals").join("draft-status.md")).unwrap();
    let dir = temp_packet(&[("MT_SUITE.md", &text)]);
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::DraftMtSuite { .. })));
}

#[test]
fn supplied_mt_definitions_are_refused_as_system_generated() {
    for (file, key) in [
        ("rgen-mt-definitions-ref.json", "mt_definitions_ref"),
        ("rgen-native.toml", "mt_definitions"),
        ("rgen-markdown.md", "mt_definitions"),
    ] {
        let err = refused(file);
        assert!(err.to_string().contains("system-generated"), "{err}");
        match err {
            WpError::GeneratedMtDefinitions { key: found, .. } => assert_eq!(found, key, "{file}"),
            other => panic!("{file}: expected GeneratedMtDefinitions, got {other:?}"),
        }
    }
}

#[test]
fn a_sound_json_first_contract_is_used_and_not_refused() {
    let wp = load_work_packet(&fixture("refusals").join("sound-contract.json")).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::Json));
    assert_eq!(wp.wp_id, "WP-1-Refuse-v1");
    assert_eq!(wp.in_scope_paths, ["src/**"]);
    assert_eq!(wp.test_plan, ["cargo test"]);
    assert_eq!(wp.done_means, ["it is refused"]);
}

#[test]
fn an_in_sync_json_first_contract_is_preferred_over_its_markdown() {
    let contract = std::fs::read_to_string(fixture("refusals").join("sound-contract.json")).unwrap();
    let markdown = std::fs::read_to_string(fixture("quirks").join("8-wrapper-commands.md")).unwrap();
    let dir = temp_packet(&[("packet.json", &contract), ("packet.md", &markdown)]);
    let wp = load_work_packet(dir.path()).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::Json));
    assert_eq!(wp.wp_id, "WP-1-Refuse-v1");
}

#[test]
fn an_out_of_sync_contract_without_markdown_is_used_with_a_warning() {
    let text = std::fs::read_to_string(fixture("refusals").join("sound-contract.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["markdown_projection"]["status"] = "GENERATED_PENDING".into();
    let dir = temp_packet(&[("packet.json", &v.to_string())]);
    let wp = load_work_packet(dir.path()).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::Json));
    assert!(wp.warnings[0].contains("not GENERATED_IN_SYNC"), "{:?}", wp.warnings);
}

#[test]
fn unreadable_inputs_are_errors_not_panics() {
    let dir = temp_packet(&[("packet.md", "")]);
    std::fs::write(dir.path().join("packet.md"), [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::Io { .. })));
    let dir = temp_packet(&[("packet.md", "no title, no fields\n")]);
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::MissingField { field }) if field == "wp_id"));
    let dir = temp_packet(&[("packet.json", "{ not json")]);
    assert!(matches!(load_work_packet(dir.path()), Err(WpError::Json { .. })));
    let dir = temp_packet(&[("wp.yaml", "wp_id: x")]);
    assert!(matches!(load_work_packet(&dir.path().join("wp.yaml")), Err(WpError::UnsupportedFormat { .. })));
}
