//! Unit-level walks through the loop's pure steps for the scenarios of MTX-SPEC 12.3
//! (scenario 1) and 13.3 (C-LOOP-3), composed the way the executor composes them.

use crate::completion::{EvidenceProblemKind, parse_completion, verify_evidence};
use crate::context::{CompileInput, LoopStatus, compile_context};
use crate::decision::{
    Decision, IterationFacts, IterationObservation, ProposedDecision, enforce, failure_counts,
    reference_decision,
};
use crate::edits::{EditRules, parse_edits, resolve_edits};
use crate::summary::{IterationReport, summarize_iteration};
use crate::test_support::mt_with_files;
use crate::types::{DeterminismMode, FailureCategory, RetrievalConfig};
use crate::workspace::MemReader;

/// One iteration of a scripted model: edits applied, signal parsed, evidence checked,
/// verify outcome given. Returns the observation and the evidence problems.
fn run_iteration(
    response: &str,
    workspace: &mut MemReader,
    verify_passed: bool,
    level: u32,
) -> (IterationObservation, Vec<EvidenceProblemKind>, bool) {
    let mt = mt_with_files(&["README.md"], &["src/a.rs"], &[]);
    let resolved =
        resolve_edits(&parse_edits(response), &mt, workspace, &EditRules::default()).expect("memory reader");
    for w in &resolved.writes {
        workspace.files.insert(w.path.clone(), w.content.clone().into_bytes());
    }
    let signal = parse_completion(response, &mt.mt_id);
    let check = verify_evidence(&signal, &mt, workspace);
    let obs = IterationObservation {
        level,
        claimed_complete: signal.claimed_complete,
        validation_ran: signal.claimed_complete,
        validation_passed: signal.claimed_complete && verify_passed,
        evidence_verified: check.verified,
        scope_refused: !resolved.scope_violations.is_empty(),
    };
    (obs, check.problems.into_iter().map(|p| p.kind).collect(), check.scope_violation)
}

fn facts_for(history: &[IterationObservation], iteration: u32, scope_violation: bool) -> IterationFacts {
    let last = history.last().unwrap();
    let streaks = failure_counts(history, last.level);
    IterationFacts {
        claimed_complete: last.claimed_complete,
        validation_passed: last.validation_passed,
        evidence_verified: last.evidence_verified,
        scope_violation,
        iteration,
        effective_max_iterations: 5,
        level: last.level,
        max_level: 6,
        false_completion_streak: streaks.false_completion_streak,
        failure_streak: streaks.failure_streak,
        ..Default::default()
    }
}

const EDIT: &str = "<file path=\"src/a.rs\">\nfn parse_config() -> u32 {\n    2\n}\n</file>\n";

fn claim(location: &str) -> String {
    format!(
        "{EDIT}<mt_complete>\nMT_ID: MT-001\nEVIDENCE:\n- \"parse_config returns the parsed value\" -> {location}\n</mt_complete>\n"
    )
}

#[test]
fn scenario_1_gaming_evidence_retries_then_escalates() {
    let mut ws = MemReader::new([("src/a.rs", "fn old() {}\n"), ("README.md", "r\n")]);
    let mut history = Vec::new();

    // First: evidence cites a file that does not exist; the verify command passes.
    let (obs, problems, scope) = run_iteration(&claim("src/ghost.rs:1-3"), &mut ws, true, 0);
    assert_eq!(
        problems,
        vec![
            EvidenceProblemKind::OutOfScope,
            EvidenceProblemKind::TooFewValidLines { required: 1, valid: 0 }
        ]
    );
    assert!(obs.claimed_complete && obs.validation_ran && !obs.evidence_verified);
    history.push(obs);
    let f1 = facts_for(&history, 1, scope);
    assert_eq!(reference_decision(&f1).decision, ProposedDecision::Retry);
    assert!(enforce(&reference_decision(&f1), &f1).is_ok());
    // A policy that believes the claim is refused.
    assert!(
        enforce(
            &crate::decision::Proposal {
                decision: ProposedDecision::Complete,
                failure_category: None,
                reason: "trust".into(),
                recoverable_block: None
            },
            &f1
        )
        .is_err()
    );

    // Second: a line range beyond the end of the file: second consecutive false completion.
    let (obs, problems, scope) = run_iteration(&claim("src/a.rs:2-40"), &mut ws, true, 0);
    assert_eq!(problems[0], EvidenceProblemKind::RangeOutOfBounds { line_count: 3 });
    history.push(obs);
    let f2 = facts_for(&history, 2, scope);
    let p = reference_decision(&f2);
    assert_eq!(enforce(&p, &f2).unwrap().decision, Decision::Escalate { next_level: 1 });
}

#[test]
fn evidence_outside_the_file_lists_is_a_scope_violation() {
    let mut ws =
        MemReader::new([("src/a.rs", "fn old() {}\n"), ("README.md", "r\n"), ("Cargo.toml", "[package]\n")]);
    let (obs, problems, scope) = run_iteration(&claim("Cargo.toml:1"), &mut ws, true, 0);
    assert!(scope && !obs.evidence_verified);
    assert_eq!(problems[0], EvidenceProblemKind::OutOfScope);
    let f = facts_for(&[obs], 1, scope);
    assert_eq!(reference_decision(&f).failure_category, Some(FailureCategory::ScopeViolation));
}

#[test]
fn c_loop_1_valid_claim_completes() {
    let mut ws = MemReader::new([("src/a.rs", "fn old() {}\n"), ("README.md", "r\n")]);
    let (obs, problems, _) = run_iteration(&claim("src/a.rs:1-3"), &mut ws, true, 0);
    assert!(problems.is_empty(), "{problems:?}");
    let f = facts_for(&[obs], 1, false);
    assert_eq!(enforce(&reference_decision(&f), &f).unwrap().decision, Decision::Complete);
}

#[test]
fn a_false_claim_is_reported_in_the_next_prompt() {
    let mut ws = MemReader::new([("src/a.rs", "fn old() {}\n"), ("README.md", "r\n")]);
    let response = claim("src/a.rs:7");
    run_iteration(&response, &mut ws, true, 0);
    let mt = mt_with_files(&["README.md"], &["src/a.rs"], &[]);
    let signal = parse_completion(&response, &mt.mt_id);
    let check = verify_evidence(&signal, &mt, &ws);
    let summary = summarize_iteration(&IterationReport {
        claimed_complete: true,
        evidence_problems: check.problems,
        ..Default::default()
    });
    let status = LoopStatus {
        iteration: 2,
        max_iterations: 5,
        max_level: 6,
        model_id: "m".into(),
        total_mts: 1,
        ..Default::default()
    };
    let input = CompileInput {
        mt: &mt,
        status: &status,
        previous: Some(&summary),
        retrieval: RetrievalConfig::default(),
        determinism: DeterminismMode::Replay,
    };
    let prompt = compile_context(&input, &ws).unwrap().envelope.rendered_prompt;
    assert!(prompt.contains("Previous Outcome: FAIL: evidence_invalid"));
    assert!(prompt.contains("Evidence problem: src/a.rs:7 (range_out_of_bounds)"));
    assert!(prompt.contains("   2 |     2"), "the file shows the model's edit with line numbers");
}

const FRAGMENTS: [&str; 22] = [
    "<file path=\"src/a.rs\">",
    "</file>",
    "<edit path=\"src/a.rs\">",
    "</edit>",
    "<<<<<<< SEARCH",
    "=======",
    ">>>>>>> REPLACE",
    "```",
    "~~~",
    "```rust",
    "<mt_complete>",
    "</mt_complete>",
    "MT_ID: MT-001",
    "EVIDENCE:",
    "- \"c\" -> src/a.rs:1",
    "<blocked>",
    "REASON: x",
    "</blocked>",
    "fn old() {}",
    "   1 | x",
    "\r",
    "ü{file}",
];

proptest::proptest! {
    /// Arbitrary interleavings of protocol fragments never panic any step, quoted spans
    /// stay inside the text, and a claim is always for the current MT.
    #[test]
    fn protocol_fragments_in_any_order_are_handled(
        picks in proptest::collection::vec((0usize..FRAGMENTS.len(), proptest::bool::ANY), 0..40),
    ) {
        let mut text = String::new();
        for (i, newline) in picks {
            text.push_str(FRAGMENTS[i]);
            if newline {
                text.push('\n');
            }
        }
        for span in crate::edits::edit_block_spans(&text) {
            proptest::prop_assert!(span.start <= span.end && span.end <= text.len());
        }
        let mt = mt_with_files(&["README.md"], &["src/a.rs"], &[]);
        let ws = MemReader::new([("src/a.rs", "fn old() {}\n")]);
        let resolved = resolve_edits(&parse_edits(&text), &mt, &ws, &EditRules::default()).unwrap();
        for w in &resolved.writes {
            proptest::prop_assert_eq!(w.path.as_str(), "src/a.rs");
        }
        let signal = parse_completion(&text, "MT-001");
        if signal.claimed_complete {
            proptest::prop_assert_eq!(signal.claimed_mt_id.as_deref(), Some("MT-001"));
            proptest::prop_assert!(signal.evidence.as_ref().is_some_and(|e| !e.is_empty()));
        }
        let check = verify_evidence(&signal, &mt, &ws);
        proptest::prop_assert!(signal.claimed_complete || !check.verified, "no claim is never verified");
    }
}
