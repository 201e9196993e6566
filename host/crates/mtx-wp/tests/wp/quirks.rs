//! One synthetic fixture per parser quirk of MTX-SPEC 14.2.9, plus the grammar rules of
//! 14.2.1-14.2.8 (tests/fixtures/quirks).

use mtx_wp::{SourceKind, WorkPacket, load_work_packet, path_in_scope};

use crate::support::fixture;

fn quirk(name: &str) -> WorkPacket {
    load_work_packet(&fixture("quirks").join(name)).unwrap()
}

fn warned(wp: &WorkPacket, needle: &str) -> bool {
    wp.warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn quirk_1_parenthetical_notes_are_dropped_from_paths() {
    let wp = quirk("1-parenthetical-notes.md");
    assert_eq!(wp.in_scope_paths, ["src/models/", "src/workflows.rs"]);
    assert!(warned(&wp, "dropped note \"(new skill_bank module)\""));
    assert!(warned(&wp, "stripped backticks"));
    // Prose in OUT_OF_SCOPE keeps its note: it is not a path.
    assert_eq!(wp.out_of_scope, ["UI polish (later packet)"]);
}

#[test]
fn quirk_2_worktree_prefixes_are_stripped_and_duplicates_dropped() {
    let wp = quirk("2-worktree-prefix.md");
    assert_eq!(wp.in_scope_paths, ["src/storage/calendar.rs", "src/storage/mod.rs"]);
    assert!(warned(&wp, "stripped worktree prefix ../handshake_main/"));
    assert!(warned(&wp, "replaced backslashes"));
    assert!(warned(&wp, "dropped duplicate"));
    assert_eq!(wp.test_plan, ["cargo test --manifest-path ../handshake_main/Cargo.toml storage"]);
}

#[test]
fn quirk_3_directories_and_globs_match_as_prefixes_and_bare_double_star_matches_nothing() {
    let wp = quirk("3-dirs-and-globs.md");
    assert_eq!(wp.in_scope_paths, ["src/backend/process_ledger/**", "docs/", "tests/**/*", "**"]);
    assert!(path_in_scope("src/backend/process_ledger/mod.rs", &wp.in_scope_paths));
    assert!(path_in_scope("docs/guide/intro.md", &wp.in_scope_paths));
    assert!(path_in_scope("tests/a/b.rs", &wp.in_scope_paths));
    assert!(!path_in_scope("src/main.rs", &wp.in_scope_paths), "bare ** must not allow everything");
}

#[test]
fn quirk_4_test_plan_fence_with_comments_and_bad_indentation() {
    let wp = quirk("4-test-plan-fence.md");
    assert_eq!(
        wp.test_plan,
        ["cargo test --lib", "cargo test --test integration", "cargo clippy -- -D warnings"]
    );
    assert!(warned(&wp, "TEST_PLAN: normalised indentation of 2 command line(s)"));
}

#[test]
fn quirk_5_done_means_stops_at_a_stray_label() {
    let wp = quirk("5-done-means-stray-label.md");
    assert_eq!(wp.done_means, ["The struct has the field.", "All tests pass: cargo test."]);
    assert!(warned(&wp, "DONE_MEANS: stopped at stray label PRIMITIVES_EXPOSED"));
}

#[test]
fn quirk_6_html_comments_after_values_are_removed() {
    let wp = quirk("6-html-comments.md");
    assert_eq!(wp.what, "Values followed by comments.");
    assert_eq!(wp.risk_tier.as_deref(), Some("MEDIUM"));
    assert_eq!(wp.touched_file_budget, Some(5));
    assert_eq!(wp.in_scope_paths, ["src/a.rs"]);
    assert_eq!(wp.broad_tool_allowlist.as_deref(), Some("NONE"));
    assert!(warned(&wp, "removed HTML comment"));
}

#[test]
fn quirk_7_colon_inside_bold() {
    let wp = quirk("7-bold-colon.md");
    assert_eq!(wp.wp_id, "WP-1-Quirk-Bold-v1");
    assert_eq!(wp.status.as_deref(), Some("Done"));
    assert_eq!(wp.risk_tier.as_deref(), Some("LOW"));
    assert_eq!(wp.what, "Bold labels everywhere.");
    assert_eq!(wp.in_scope_paths, ["src/"]);
    assert!(warned(&wp, "read bold label form"));
}

#[test]
fn quirk_8_wrapper_commands_are_kept_verbatim() {
    let wp = quirk("8-wrapper-commands.md");
    assert_eq!(wp.test_plan, ["just validator-scan WP-1-Quirk-Wrappers-v1", "make test"]);
}

#[test]
fn preamble_sections_fences_rows_and_history_follow_the_grammar() {
    let wp = quirk("grammar-preamble.md");
    assert!(warned(&wp, "stripped UTF-8 BOM"));
    assert!(wp.projection.contains(&("source_hash".to_string(), "abc123".to_string())));
    // METADATA wins over the template preamble; history sections are ignored.
    assert_eq!(wp.wp_id, "WP-1-Grammar-v1");
    // The fenced `## SCOPE` decoy is not a section.
    assert_eq!(wp.what, "The real scope.");
    assert_eq!(wp.why, "Because.");
    assert_eq!(wp.description, "The real scope.\n\nWhy: Because.");
    assert!(wp.out_of_scope.is_empty(), "OUT_OF_SCOPE: NONE is an empty list");
    assert_eq!(wp.touched_file_budget, Some(2));
    assert_eq!(wp.clause_rows.len(), 1);
    assert_eq!(wp.clause_rows[0].clause, "1.1 Field exists");
    assert_eq!(wp.clause_rows[0].code_surfaces, ["src/a.rs", "src/b.rs"]);
    assert_eq!(wp.clause_rows[0].tests, ["cargo test a", "cargo test b"]);
    assert_eq!(wp.implementation_order, ["MT-001: Add the field.", "MT-002: Use the field."]);
    assert_eq!(wp.bootstrap.files_to_open, ["src/a.rs"]);
    assert_eq!(wp.bootstrap.search_terms, ["alpha", "beta"]);
    assert_eq!(wp.bootstrap.risk_map[0].risk, "field missing");
    assert_eq!(wp.bootstrap.risk_map[0].consequence, "queries fail");
    assert_eq!(wp.source_kind, Some(SourceKind::MarkdownLegacy));
}

#[test]
fn legacy_packet_without_label_lines_uses_the_heading_fallback() {
    let wp = quirk("heading-fallback.md");
    assert_eq!(wp.wp_id, "WP-1-Legacy-v1");
    assert_eq!(wp.in_scope_paths, ["src/legacy/"]);
    assert!(warned(&wp, "dropped placeholder N/A"));
    assert_eq!(wp.test_plan, ["cargo test legacy"]);
    assert!(warned(&wp, "TEST_PLAN: no fenced block"));
    assert_eq!(wp.done_means, ["Legacy works."]);
}
