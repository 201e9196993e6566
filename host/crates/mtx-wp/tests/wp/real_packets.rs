//! The three real Handshake packets (tests/fixtures/real, see SOURCE.md).

use mtx_wp::{SourceKind, WpError, load_work_packet, lossy_reasons, path_in_scope, wp_scope};

use crate::support::{fixture, real_folder};

const FR_MD: &str = "WP-1-FR-ModelSessionId-v1.packet.md";
const FR_JSON: &str = "WP-1-FR-ModelSessionId-v1.packet.json";

#[test]
fn fr_model_session_id_markdown_parses() {
    let wp = load_work_packet(&fixture("real").join(FR_MD)).unwrap();
    assert_eq!(wp.wp_id, "WP-1-FR-ModelSessionId-v1");
    assert_eq!(wp.source_kind, Some(SourceKind::MarkdownModern));
    assert_eq!(
        wp.in_scope_paths,
        [
            "src/backend/handshake_core/src/flight_recorder/mod.rs",
            "src/backend/handshake_core/src/flight_recorder/duckdb.rs",
            "src/backend/handshake_core/src/workflows.rs",
        ]
    );
    assert_eq!(
        wp.test_plan,
        [
            "cargo test fr_model_session_id",
            "cargo test flight_recorder_round_trip",
            "cargo test query_by_session",
            "cargo test --manifest-path src/backend/handshake_core/Cargo.toml",
            "just gov-check",
        ]
    );
    assert_eq!(wp.done_means.len(), 6);
    assert_eq!(wp.done_means[0], "FlightRecorderEvent struct has model_session_id: Option<String> field.");
    assert!(wp.done_means.iter().all(|d| !d.contains("PRIMITIVES_EXPOSED") && !d.starts_with("PRIM-")));
    assert_eq!(wp.out_of_scope.len(), 3);
    assert_eq!(wp.risk_tier.as_deref(), Some("HIGH"));
    assert_eq!(wp.status.as_deref(), Some("Validated (PASS)"));
    assert_eq!(wp.touched_file_budget, Some(3));
    assert_eq!(wp.broad_tool_allowlist.as_deref(), Some("NONE"));
    assert_eq!(wp.implementation_order.len(), 3);
    assert!(wp.implementation_order[1].starts_with("MT-002: Update all 9 session emitters"));
    assert_eq!(wp.clause_rows.len(), 3);
    assert_eq!(wp.clause_rows[2].clause, "DuckDB schema for model_session_id");
    assert_eq!(wp.clause_rows[2].code_surfaces, ["src/backend/handshake_core/src/flight_recorder/duckdb.rs"]);
    assert_eq!(
        wp.clause_rows[2].tests,
        ["cargo test flight_recorder_round_trip", "cargo test query_by_session"]
    );
    assert_eq!(wp.bootstrap.run_commands.len(), 6);
    assert_eq!(wp.bootstrap.risk_map.len(), 3);
    assert!(wp.projection.iter().any(|(k, v)| k == "generator" && v == "wp-contract-import.mjs"));
    assert!(wp.warnings.iter().any(|w| w.contains("DONE_MEANS: stopped at stray label PRIMITIVES_EXPOSED")));
}

#[test]
fn calendar_storage_worktree_prefix_is_normalised() {
    let wp = load_work_packet(&fixture("real").join("WP-1-Calendar-Storage-v2.packet.md")).unwrap();
    assert_eq!(wp.wp_id, "WP-1-Calendar-Storage-v2");
    assert_eq!(wp.in_scope_paths.len(), 8);
    assert_eq!(wp.in_scope_paths[0], "src/backend/handshake_core/migrations/0015_calendar_storage.sql");
    assert!(
        wp.in_scope_paths.iter().all(|p| p.starts_with("src/backend/handshake_core/")),
        "{:?}",
        wp.in_scope_paths
    );
    assert!(wp.warnings.iter().any(|w| w.contains("stripped worktree prefix ../handshake_main/")));
    // Commands are kept verbatim: the prefix is part of the command, not a scope path.
    assert_eq!(wp.test_plan.len(), 3);
    assert_eq!(
        wp.test_plan[0],
        "cargo test --manifest-path ../handshake_main/src/backend/handshake_core/Cargo.toml calendar_storage_tests"
    );
    assert_eq!(wp.done_means.len(), 4);
    assert!(wp.done_means[3].starts_with("WP Validator and Integration Validator pass"));
    assert_eq!(wp.out_of_scope.len(), 6);
    assert!(path_in_scope("src/backend/handshake_core/src/storage/calendar.rs", &wp.in_scope_paths));
}

#[test]
fn distillation_directory_scopes_drop_their_notes() {
    let wp = load_work_packet(&fixture("real").join("WP-1-Distillation-v2.packet.md")).unwrap();
    assert_eq!(wp.wp_id, "WP-1-Distillation-v2");
    assert_eq!(
        wp.in_scope_paths,
        [
            "src/backend/handshake_core/src/models/",
            "src/backend/handshake_core/src/distillation/",
            "src/backend/handshake_core/src/workflows.rs",
            "src/backend/handshake_core/src/flight_recorder/",
            "src/backend/handshake_core/src/storage/",
            "src/backend/handshake_core/migrations/",
            "src/backend/handshake_core/src/capabilities.rs",
        ]
    );
    assert!(path_in_scope("src/backend/handshake_core/src/models/skill_bank.rs", &wp.in_scope_paths));
    assert!(!path_in_scope("src/backend/handshake_core/src/api/mod.rs", &wp.in_scope_paths));
    assert_eq!(
        wp.test_plan,
        [
            "cargo test -p handshake_core",
            "just validator-spec-regression",
            "just validator-scan WP-1-Distillation-v2"
        ]
    );
    assert_eq!(wp.done_means.len(), 12);
    assert_eq!(wp.implementation_order.len(), 12);
    assert_eq!(wp.warnings.iter().filter(|w| w.contains("dropped note")).count(), 7);
}

#[test]
fn fr_packet_json_is_detected_lossy_and_the_markdown_is_used() {
    let dir = real_folder(&[(FR_JSON, "packet.json"), (FR_MD, "packet.md")]);
    let wp = load_work_packet(dir.path()).unwrap();
    assert_eq!(wp.source_kind, Some(SourceKind::MarkdownModern));
    assert_eq!(wp.in_scope_paths.len(), 3, "the JSON captured one path; the markdown has three");
    assert_eq!(wp.done_means.len(), 6);
    assert!(wp.warnings[0].contains("packet.json treated as a lossy import"), "{:?}", wp.warnings);
}

#[test]
fn fr_packet_json_lossy_reasons_name_each_symptom() {
    let text = std::fs::read_to_string(fixture("real").join(FR_JSON)).unwrap();
    let contract: serde_json::Value = serde_json::from_str(&text).unwrap();
    let md = load_work_packet(&fixture("real").join(FR_MD)).unwrap();
    let reasons = lossy_reasons(&contract, Some(&md));
    assert!(reasons.iter().any(|r| r.contains("wp-contract-import.mjs")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("kept its bullet dash")));
    assert!(reasons.iter().any(|r| r.contains("acceptance_criteria is empty")));
}

#[test]
fn lossy_json_without_markdown_is_refused() {
    let dir = real_folder(&[(FR_JSON, "packet.json")]);
    match load_work_packet(dir.path()) {
        Err(WpError::LossyJsonWithoutMarkdown { reasons, .. }) => assert!(reasons.contains("import tool")),
        other => panic!("expected LossyJsonWithoutMarkdown, got {other:?}"),
    }
}

#[test]
fn fr_mt_contracts_load_as_hints() {
    let dir = real_folder(&[
        (FR_JSON, "packet.json"),
        (FR_MD, "packet.md"),
        ("WP-1-FR-ModelSessionId-v1.MT-001.json", "MT-001.json"),
        ("WP-1-FR-ModelSessionId-v1.MT-002.json", "MT-002.json"),
        ("WP-1-FR-ModelSessionId-v1.MT-003.json", "MT-003.json"),
    ]);
    let wp = load_work_packet(dir.path()).unwrap();
    let ids: Vec<&str> = wp.mt_hints.iter().map(|h| h.mt_id.as_str()).collect();
    assert_eq!(ids, ["MT-001", "MT-002", "MT-003"]);
    let h = &wp.mt_hints;
    assert_eq!(h[0].clause, "11.5.1 FlightRecorderEventBase model_session_id field");
    assert_eq!(h[0].code_surfaces, ["src/backend/handshake_core/src/flight_recorder/mod.rs"]);
    assert_eq!(
        h[0].expected_tests,
        ["cargo test fr_model_session_id", "cargo test flight_recorder_round_trip"]
    );
    assert!(h[0].depends_on.is_empty());
    assert_eq!(h[1].depends_on, ["MT-001"]);
    assert_eq!(h[2].depends_on, ["MT-002"]);
    assert_eq!(h[2].code_surfaces, ["src/backend/handshake_core/src/flight_recorder/duckdb.rs"]);
    assert!(h.iter().all(|x| x.lifecycle_status == "PENDING" && !x.active));
    assert!(!wp.warnings.iter().any(|w| w.contains("outside IN_SCOPE_PATHS")), "{:?}", wp.warnings);
}

#[test]
fn prefixed_mt_contracts_next_to_a_prefixed_packet_are_hints_too() {
    let wp = load_work_packet(&fixture("real").join(FR_MD)).unwrap();
    assert_eq!(wp.mt_hints.len(), 3);
    let other = load_work_packet(&fixture("real").join("WP-1-Distillation-v2.packet.md")).unwrap();
    assert!(other.mt_hints.is_empty(), "hints of another WP must not attach");
}

#[test]
fn wp_scope_maps_the_fr_packet() {
    let wp = load_work_packet(&fixture("real").join(FR_MD)).unwrap();
    let scope = wp_scope(&wp);
    assert_eq!(scope.in_scope_paths, wp.in_scope_paths);
    assert_eq!(scope.test_plan.len(), 5);
    assert_eq!(scope.done_means.len(), 6);
    assert!(scope.description.starts_with("Add model_session_id field to FlightRecorderEvent struct"));
    assert!(scope.description.contains("Why: Without model_session_id"));
}

/// The FR packet's three human-written MT contracts, turned into definitions the way a
/// planner would (surfaces -> files.modify, proof targets -> verify, lifecycle deps ->
/// depends_on), pass validation against the packet scope and run in three waves.
#[test]
fn fr_gold_mts_validate_against_the_packet_scope() {
    use mtx_types::{
        DoneCriterion, DoneVerification, ExecutionPolicy, ExecutionTier, ExpectedOutput, FileAccessSpec,
        MicroTaskDefinition, RiskLevel, VerificationSpec,
    };
    let dir = real_folder(&[
        (FR_MD, "packet.md"),
        ("WP-1-FR-ModelSessionId-v1.MT-001.json", "MT-001.json"),
        ("WP-1-FR-ModelSessionId-v1.MT-002.json", "MT-002.json"),
        ("WP-1-FR-ModelSessionId-v1.MT-003.json", "MT-003.json"),
    ]);
    let wp = load_work_packet(dir.path()).unwrap();
    let defs: Vec<MicroTaskDefinition> = wp
        .mt_hints
        .iter()
        .map(|h| MicroTaskDefinition {
            mt_id: h.mt_id.clone(),
            name: h.clause.chars().take(100).collect(),
            scope: h.clause.clone(),
            files: FileAccessSpec { read: vec![], modify: h.code_surfaces.clone(), create: vec![] },
            actions: vec![format!("Implement {}", h.clause)],
            verify: h.expected_tests.iter().map(|c| VerificationSpec::exit_0(c.as_str())).collect(),
            done: vec![DoneCriterion {
                description: h.clause.clone(),
                verification: DoneVerification::Automated,
                verify_ref: Some(0),
            }],
            depends_on: h.depends_on.clone(),
            token_budget: 2048,
            execution_tier: Some(ExecutionTier::LocalSmall),
            allowed_tools: Some(vec![]),
            retry_budget: Some(3),
            escalation_target: None,
            expected_output: Some(ExpectedOutput::Patch),
            task_tags: vec!["rust".into()],
            risk_level: RiskLevel::High,
            notes: None,
            extra: Default::default(),
        })
        .collect();
    let report = mtx_wp::validate_definitions(&defs, &wp_scope(&wp), &ExecutionPolicy::default(), &[]);
    assert!(report.errors.is_empty() && report.warnings.is_empty(), "{report:?}");
    let waves = mtx_wp::compute_waves(&defs).unwrap();
    assert_eq!(waves, vec![vec!["MT-001"], vec!["MT-002"], vec!["MT-003"]]);
}
