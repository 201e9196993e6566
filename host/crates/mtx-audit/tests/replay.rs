//! `mtx replay`: recorded runs built with the real plugin host replay identically; a
//! changed recorded seed is caught at the first differing call; a stricter policy reports
//! exactly the decisions that change; a tampered input is caught by `mtx verify` and by
//! replay itself; a component that cannot be found is reported as missing.

mod common;

use std::path::PathBuf;

use common::*;
use mtx_audit::AuditError;
use mtx_audit::replay::{RecordedCall, replay_calls, replay_job};
use mtx_plugin::World;
use mtx_plugin::bindings::types;

/// A run through the default built-ins: plan, select a LoRA, decide twice, drop back.
fn default_run() -> Vec<mtx_plugin::PluginCall> {
    let (host, recorder) = host();
    let planner = host.load(&builtin("planner-default", World::MtPlanner)).unwrap();
    let selector = host.load(&builtin("lora-by-tags", World::LoraSelector)).unwrap();
    let policy = host.load(&builtin("escalation-default", World::EscalationPolicy)).unwrap();
    host.plan(&planner, &planner_input(), &ctx("2026-01-01T00:00:00Z")).unwrap();
    host.select_lora(&selector, &selection_input(), &ctx("2026-01-01T00:00:01Z")).unwrap();
    host.decide(&policy, &decision_input(1, Some(false)), &ctx("2026-01-01T00:00:02Z")).unwrap();
    host.decide(&policy, &decision_input(2, Some(true)), &ctx("2026-01-01T00:00:03Z")).unwrap();
    host.drop_back(
        &policy,
        &drop_back_input(types::DropBackStrategy::Always, 1),
        &ctx("2026-01-01T00:00:04Z"),
    )
    .unwrap();
    recorder.calls()
}

#[test]
fn a_run_of_the_default_plugins_replays_identically() {
    let state = tempfile::tempdir().unwrap();
    let calls = default_run();
    assert_eq!(calls.len(), 5);
    write_job(state.path(), JOB, &calls);

    let report = replay_job(state.path(), JOB, &[]).unwrap();

    assert!(report.is_identical(), "{}", report.render_text());
    assert_eq!(report.first_difference, None);
    assert!(report.changed_decisions.is_empty());
    let rows: Vec<(&str, u64, u64, u64, u64)> = report
        .rows
        .iter()
        .map(|r| (r.plugin.as_str(), r.calls, r.identical, r.different, r.missing))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("planner-default", 1, 1, 0, 0),
            ("lora-by-tags", 1, 1, 0, 0),
            ("escalation-default", 3, 3, 0, 0)
        ]
    );
    let text = report.render_text();
    assert!(text.contains("escalation-default") && text.contains("replay identical"), "{text}");
}

#[test]
fn a_changed_recorded_seed_is_caught_at_the_first_differing_call() {
    // clock-random reports the random values it observes: under the host they are fixed
    // by the recorded seed, so a record whose seed is not the one the call observed is
    // exactly the non-determinism replay must catch.
    let (host, recorder) = host();
    let plugin = host.load(&fixture("clock-random", World::EscalationPolicy)).unwrap();
    for i in 1..=3 {
        host.decide(&plugin, &decision_input(i, Some(false)), &ctx("2026-01-01T00:00:00Z")).unwrap();
    }
    let mut calls: Vec<RecordedCall> = recorder.calls().iter().map(RecordedCall::from).collect();
    let fixture = fixture_path("clock-random");
    let locate = [("clock_random".to_owned(), fixture.clone())];
    let clean = replay_calls(&calls, &locate).unwrap();
    assert!(clean.is_identical(), "{}", clean.render_text());
    assert_eq!(clean.rows[0].identical, 3);

    calls[1].seed = format!("{:016x}", u64::from_str_radix(&calls[1].seed, 16).unwrap() ^ 1);
    let report = replay_calls(&calls, &locate).unwrap();

    assert!(!report.is_identical());
    let row = &report.rows[0];
    assert_eq!((row.calls, row.identical, row.different), (3, 2, 1));
    let d = report.first_difference.as_ref().expect("a difference is reported");
    assert_eq!(
        (d.plugin.as_str(), d.function.as_str(), d.call_index, d.kind.as_str()),
        ("clock_random", "decide", 2, "output")
    );
    assert_eq!(d.input, calls[1].input);
    assert_eq!(Some(&d.recorded_output), calls[1].output.as_ref());
    assert_ne!(d.recorded_output, d.replayed_output);
    let text = report.render_text();
    assert!(text.contains("first difference: call 2 to clock_random::decide"), "{text}");
    assert!(text.contains("replay DIFFERS"), "{text}");
}

#[test]
fn a_stricter_policy_reports_exactly_the_decisions_that_change() {
    let state = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    let policy = host.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    let outcomes = [Some(false), Some(true), None, Some(false), Some(true)];
    for (i, passed) in outcomes.iter().enumerate() {
        host.decide(&policy, &decision_input(i as u32 + 1, *passed), &ctx("2026-01-01T00:00:00Z")).unwrap();
    }
    write_job(state.path(), JOB, &recorder.calls());

    // A component file is recorded under its file stem.
    let strict = [("good_policy".to_owned(), fixture_path("strict-policy"))];
    let report = replay_job(state.path(), JOB, &strict).unwrap();

    let changed: Vec<(usize, &str, &str)> = report
        .changed_decisions
        .iter()
        .map(|c| (c.call_index, c.recorded.as_str(), c.replayed.as_str()))
        .collect();
    assert_eq!(
        changed,
        vec![
            (1, "Retry (Unknown)", "Escalate (Unknown)"),
            (3, "Retry (Unknown)", "Escalate (Unknown)"),
            (4, "Retry (Unknown)", "Escalate (Unknown)"),
        ]
    );
    assert_eq!(report.changed_decisions[0].step_id.as_deref(), Some("MT-001_iter-001"));
    let row = &report.rows[0];
    assert!(row.overridden);
    assert_eq!((row.calls, row.identical, row.different, row.missing), (5, 2, 3, 0));
    // A counterfactual is an answer, not a failed replay.
    assert!(report.is_identical());
    assert_eq!(report.first_difference, None);
    let text = report.render_text();
    assert!(text.contains("decisions that change (3)"), "{text}");
    assert!(
        text.contains("call 3 good_policy::decide MT-001_iter-003: Retry (Unknown) -> Escalate (Unknown)"),
        "{text}"
    );
}

#[test]
fn a_component_that_cannot_be_found_is_reported_missing_and_an_override_locates_it() {
    let state = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    let policy = host.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    host.decide(&policy, &decision_input(1, Some(true)), &ctx("2026-01-01T00:00:00Z")).unwrap();
    write_job(state.path(), JOB, &recorder.calls());

    let report = replay_job(state.path(), JOB, &[]).unwrap();
    assert!(!report.is_identical());
    assert_eq!(report.rows[0].missing, 1);
    let d = report.first_difference.as_ref().unwrap();
    assert_eq!(d.kind, "missing component");
    assert!(d.replayed_output.contains(&policy.digest), "{}", d.replayed_output);

    // The same bytes given by path are the recorded component, not an override.
    let located =
        replay_job(state.path(), JOB, &[("good_policy".to_owned(), fixture_path("good-policy"))]).unwrap();
    assert!(located.is_identical(), "{}", located.render_text());
    assert!(!located.rows[0].overridden);
    assert_eq!(located.rows[0].identical, 1);
}

#[test]
fn an_override_for_a_plugin_the_run_never_called_is_refused() {
    let state = tempfile::tempdir().unwrap();
    write_job(state.path(), JOB, &default_run());
    let err =
        replay_job(state.path(), JOB, &[("no-such-policy".to_owned(), PathBuf::from("x.wasm"))]).unwrap_err();
    assert!(matches!(err, AuditError::Override { ref plugin, .. } if plugin == "no-such-policy"), "{err}");
}

#[test]
fn a_missing_job_is_a_typed_error() {
    let state = tempfile::tempdir().unwrap();
    let err = replay_job(state.path(), "job-nope", &[]).unwrap_err();
    assert!(matches!(err, AuditError::NoJob { ref job_id, .. } if job_id == "job-nope"), "{err}");
}

#[test]
fn a_tampered_recorded_input_is_reported_by_verify_and_refused_by_replay() {
    let state = tempfile::tempdir().unwrap();
    let job_root = write_job(state.path(), JOB, &default_run());
    let ledger = job_root.join("run_ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    // Change the recorded decision input of the first `decide` call: iteration 1 -> 7.
    let line = text.lines().position(|l| l.contains("\\\"iteration\\\":1")).expect("a decide record");
    let tampered: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == line { l.replacen("\\\"iteration\\\":1", "\\\"iteration\\\":7", 1) } else { l.to_owned() }
        })
        .collect();
    std::fs::write(&ledger, tampered.join("\n") + "\n").unwrap();

    let verify = mtx_store::verify_job(state.path(), JOB).unwrap();
    let problem = verify
        .problems
        .iter()
        .find(|p| p.file == "run_ledger.jsonl")
        .unwrap_or_else(|| panic!("verify reports the ledger: {:?}", verify.problems));
    assert_eq!(problem.line, Some(line as u64 + 1), "{problem:?}");

    let err = replay_job(state.path(), JOB, &[]).unwrap_err();
    assert!(matches!(err, AuditError::Store(mtx_store::StoreError::ChainBroken { .. })), "{err}");
}

#[test]
fn an_input_that_does_not_match_its_recorded_hash_is_a_difference() {
    // Replay also checks each input against its recorded hash, for records taken from a
    // source without a hash chain.
    let mut calls: Vec<RecordedCall> = default_run().iter().map(RecordedCall::from).collect();
    calls[2].input = calls[2].input.replacen("\"iteration\":1", "\"iteration\":7", 1);
    let report = replay_calls(&calls, &[]).unwrap();
    assert!(!report.is_identical());
    let d = report.first_difference.unwrap();
    assert_eq!((d.call_index, d.kind.as_str()), (3, "input hash"));
}

#[test]
fn a_validator_that_asked_the_tool_bus_is_skipped_and_a_pure_one_is_compared() {
    // validator-integrity reads the changed files through the Tool Bus; what the bus
    // answered is not in the plugin-call record, so replay must not claim the call
    // reproduced. good-validator never touches the bus and is compared as usual.
    let (host, recorder) = host();
    let integrity = host.load(&builtin("validator-integrity", World::Validator)).unwrap();
    let good = host.load(&fixture("good-validator", World::Validator)).unwrap();
    let _ = host.validate(&integrity, &validation_input(true), &ctx("2026-01-01T00:00:00Z"));
    host.validate(&good, &validation_input(true), &ctx("2026-01-01T00:00:00Z")).unwrap();
    let calls: Vec<RecordedCall> = recorder.calls().iter().map(RecordedCall::from).collect();

    let report =
        replay_calls(&calls, &[("good_validator".to_owned(), fixture_path("good-validator"))]).unwrap();

    let rows: Vec<(&str, u64, u64, u64)> =
        report.rows.iter().map(|r| (r.plugin.as_str(), r.calls, r.identical, r.skipped)).collect();
    assert_eq!(rows, vec![("validator-integrity", 1, 0, 1), ("good_validator", 1, 1, 0)]);
    assert!(report.is_identical(), "{}", report.render_text());
}

#[test]
fn a_recorded_call_with_an_unreadable_seed_is_a_typed_error_naming_the_call() {
    let mut calls: Vec<RecordedCall> = default_run().iter().map(RecordedCall::from).collect();
    calls[1].seed = "not-hex".into();
    let err = replay_calls(&calls, &[]).unwrap_err();
    assert!(
        matches!(err, AuditError::BadCall { call_index: 2, ref reason } if reason.contains("not-hex")),
        "{err}"
    );
}
