//! Conformance scenarios of MTX-SPEC 13.3 run end to end: built-in plugins, a replay
//! cassette written by each test, verify commands `true` / `false` / `grep`.

mod support;

use mtx_executor::{ExecError, GateChoice, NoObserver, decide_gate, resume_job, run_job};
use mtx_types::{ExecutionPolicy, JobStatus};
use support::*;

const A: &str = "src/a.txt";

fn one_mt(test: &str) -> Fixture {
    fixture(&[(A, "old text\n")], &[test], &["src/a.txt says hello"])
}

#[test]
fn c_loop_1_claim_with_passing_verify_completes_the_job() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello world\n", 1))]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    assert_eq!(out.status_reason, "completed");
    assert_eq!(fx.read(A).as_deref(), Some("hello world\n"));
    let dir = &out.job_dir;
    assert_eq!(
        loop_events(dir),
        ["MT-001", "MT-013", "MT-002", "LLM-INFERENCE", "MT-012", "MT-003", "MT-004", "MT-009"]
    );
    let done = &events_of(dir, "FR-EVT-MT-003")[0];
    assert_eq!(done["payload"]["outcome"]["status"], "SUCCESS");
    assert_eq!(done["payload"]["decision"], "complete");
    assert!(events_of(dir, "FR-EVT-MT-012")[0]["payload"]["passed"].as_bool().unwrap());
    let steps = ledger_steps(dir);
    let completed: Vec<_> = steps.iter().filter(|s| s["status"] == "completed").collect();
    assert_eq!(completed.len(), 1);
    assert!(completed[0]["output_artifact_ref"]["path"].as_str().unwrap().ends_with("output.json"));
    let p = progress(dir);
    assert_eq!(p["status"], "completed");
    assert_eq!(iterations(dir, "MT-001"), [(1, 0, "SUCCESS".to_string())]);
    // Traceability: every iteration's snapshot id is carried by MT-003 and the step output.
    let snapshot_id = done["payload"]["context_snapshot_id"].as_str().unwrap();
    assert_eq!(p["micro_tasks"][0]["iterations"][0]["context_snapshot_id"], snapshot_id);
    assert_eq!(out.summary.mts_completed, 1);
    assert_eq!(out.summary.iterations_per_level.get(&0), Some(&1));
}

#[test]
fn c_loop_3_second_false_completion_escalates_with_a_record() {
    let fx = one_mt("grep -q hello src/a.txt");
    let wrong = write_and_claim("MT-001", A, "goodbye\n", 1);
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &wrong), ("MT-001", 0, 2, &wrong), ("MT-001", 1, 1, &right)]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;
    assert_eq!(
        iterations(dir, "MT-001"),
        [(1, 0, "RETRY".into()), (2, 0, "ESCALATE".into()), (1, 1, "SUCCESS".into())]
    );
    let esc = &events_of(dir, "FR-EVT-MT-005")[0]["payload"];
    assert_eq!(esc["from_level"], 0);
    assert_eq!(esc["to_level"], 1);
    assert_eq!(esc["reason"], "false_completion_streak");
    assert_eq!(esc["iterations_at_previous_level"], 2);
    let record_path = dir.join(esc["escalation_record_ref"]["path"].as_str().unwrap());
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(record_path).unwrap()).unwrap();
    assert_eq!(record["escalation_chain"][0]["outcome"], "ESCALATE");
    assert_eq!(record["escalation_chain"][0]["level"], 0);
    // C-DIST-1: the success after escalation stored a distillation candidate.
    let cand = &events_of(dir, "FR-EVT-MT-015")[0]["payload"];
    let cand_path = dir.join(cand["candidate_ref"]["path"].as_str().unwrap());
    let candidate: serde_json::Value = serde_json::from_slice(&std::fs::read(cand_path).unwrap()).unwrap();
    assert_eq!(candidate["student_attempt"]["outcome"], "VALIDATION_FAILED");
    assert_eq!(candidate["teacher_success"]["outcome"], "VALIDATION_PASSED");
    assert_eq!(candidate["mt_id"], "MT-001");
    assert!(candidate["data_trust_score"].as_f64().unwrap() > 0.0);
    assert_eq!(out.summary.distillation_candidates, 1);
    assert_eq!(out.summary.escalations, 1);
    let rate = out.summary.false_completion_rate.get("qwen2.5-coder:7b").copied().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
    // The three validated steps' passed specs served the MT's history; a finished MT's are
    // not carried in every later save.
    let ext = &support::progress(dir)["mtx_executor"];
    assert_eq!(ext["passed_specs"], serde_json::json!({}), "{ext}");
}

#[test]
fn c_loop_2_no_claim_retries_then_escalates_incomplete() {
    let fx = one_mt("grep -q hello src/a.txt");
    let policy = ExecutionPolicy { max_iterations_per_mt: 2, ..ExecutionPolicy::default() };
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas =
        cassette(&[("MT-001", 0, 1, &no_claim()), ("MT-001", 0, 2, &no_claim()), ("MT-001", 1, 1, &right)]);
    let out = run_job(&setup(&fx, cas, policy), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;
    assert_eq!(
        iterations(dir, "MT-001"),
        [(1, 0, "RETRY".into()), (2, 0, "ESCALATE".into()), (1, 1, "SUCCESS".into())]
    );
    let esc = &events_of(dir, "FR-EVT-MT-005")[0]["payload"];
    assert_eq!(esc["failure_category"], "incomplete_implementation");
    // No claim: no validation ran on the first two iterations.
    assert_eq!(events_of(dir, "FR-EVT-MT-012").len(), 1);
}

#[test]
fn c_loop_4_total_iteration_limit_pauses_at_a_hard_gate() {
    let fx = one_mt("false");
    let policy =
        ExecutionPolicy { max_iterations_per_mt: 1, max_total_iterations: 1, ..ExecutionPolicy::default() };
    let wrong = write_and_claim("MT-001", A, "x\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &wrong)]);
    let out = run_job(&setup(&fx, cas, policy), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::AwaitingUser);
    assert_eq!(out.status_reason, "paused_hard_gate");
    let ev = loop_events(&out.job_dir);
    let i5 = ev.iter().position(|e| e == "MT-005").unwrap();
    let i6 = ev.iter().position(|e| e == "MT-006").unwrap();
    assert!(i5 < i6, "{ev:?}");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-006")[0]["payload"]["reason"], "max_total_iterations");
    assert_eq!(progress(&out.job_dir)["status"], "paused");
    assert_eq!(out.summary.pending_gate.as_deref(), Some("max_total_iterations"));
}

#[test]
fn c_loop_5_repeated_block_escalates_and_every_block_is_reported() {
    let fx = one_mt("grep -q hello src/a.txt");
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[
        ("MT-001", 0, 1, &blocked("the spec is unclear")),
        ("MT-001", 0, 2, &blocked("the spec is unclear")),
        ("MT-001", 1, 1, &right),
    ]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;
    let blocks = events_of(dir, "FR-EVT-MT-017");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["payload"]["recoverable"], true);
    assert_eq!(blocks[1]["payload"]["recoverable"], false);
    let decisions: Vec<String> = events_of(dir, "FR-EVT-MT-003")
        .iter()
        .map(|e| e["payload"]["decision"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(decisions, ["retry", "escalate", "complete"]);
}

#[test]
fn c_loop_7_exhausted_chain_gates_then_skip_continue_and_abort() {
    // Short chain: 7b, 14b, HARD_GATE, cloud. Two levels of false completions reach the gate.
    let wrong = write_and_claim("MT-001", A, "x\n", 1);
    let entries = [
        ("MT-001", 0, 1, wrong.as_str()),
        ("MT-001", 0, 2, wrong.as_str()),
        ("MT-001", 1, 1, wrong.as_str()),
        ("MT-001", 1, 2, wrong.as_str()),
    ];
    // skip -> MT skipped, job completed_with_issues
    let fx = one_mt("false");
    let s = setup(&fx, cassette(&entries), short_chain_policy());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::AwaitingUser, "{out:?}");
    let gate = &events_of(&out.job_dir, "FR-EVT-MT-006")[0]["payload"];
    assert_eq!(gate["reason"], "escalation_exhausted");
    assert_eq!(mt_status(&out.job_dir, "MT-001"), "blocked");
    // Resuming without a decision is refused.
    assert!(matches!(resume_job(&s, &out.job_id, &NoObserver), Err(ExecError::InvalidInput(_))));
    let d = decide_gate(&s.state_dir, &out.job_id, GateChoice::Skip, Some("not worth it"), "alice").unwrap();
    assert_eq!(d.gate_reason, "escalation_exhausted");
    // A second decision for the same gate is refused.
    assert!(matches!(
        decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "alice"),
        Err(ExecError::NotPaused(_))
    ));
    let gate_file = out.job_dir.join("gate_decisions").join(format!("{}.json", d.decision_id));
    assert!(gate_file.is_file());
    let recorded = events_of(&out.job_dir, "FR-EVT-MTX-002");
    assert_eq!(recorded[0]["actor"], "human");
    assert!(ledger(&out.job_dir).iter().any(|r| r["kind"] == "gate_decision" && r["decision"] == "skip"));
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::CompletedWithIssues, "{resumed:?}");
    assert_eq!(mt_status(&out.job_dir, "MT-001"), "skipped");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-016")[0]["payload"]["reason"], "gate_decision");

    // abort -> job failed
    let fx = one_mt("false");
    let s = setup(&fx, cassette(&entries), short_chain_policy());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Abort, None, "alice").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Failed);
    assert_eq!(mt_status(&out.job_dir, "MT-001"), "failed");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-010").len(), 1);

    // continue -> moves past the gate level to the cloud level, which is not allowed
    let fx = one_mt("false");
    let s = setup(&fx, cassette(&entries), short_chain_policy());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "alice").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::AwaitingUser);
    let gates = events_of(&out.job_dir, "FR-EVT-MT-006");
    assert_eq!(gates.len(), 2);
    assert_eq!(gates[1]["payload"]["reason"], "cloud_escalation_disallowed");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-CLOUD-003").len(), 1);
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-008").len(), 1);
}

#[test]
fn c_pause_1_pause_point_then_resume_with_continue() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let (s, out) = run_paused_at_mt_001(&fx, cas);
    assert_eq!(out.status, JobStatus::AwaitingUser);
    assert_eq!(out.status_reason, "paused_user_gate");
    assert_eq!(loop_events(&out.job_dir), ["MT-001", "MT-007"]);
    assert!(
        ledger(&out.job_dir)
            .iter()
            .any(|r| r["kind"] == "resume" && r["resume_reason"] == "pause_point:MT-001")
    );
    assert_eq!(fx.read(A).as_deref(), Some("old text\n"), "nothing ran before the pause");
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "bob").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    let ev = loop_events(&out.job_dir);
    assert_eq!(&ev[..3], ["MT-001", "MT-007", "MT-008"]);
    assert_eq!(ev.last().unwrap(), "MT-009");
}

/// A crash after the plan was written but before `job.json` took its reference leaves the
/// placeholder there; a resumed job reports the file as it is.
#[test]
fn a_resumed_job_names_its_mt_definitions_as_they_are() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let (s, out) = run_paused_at_mt_001(&fx, cas);
    let record_path = out.job_dir.join("job.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["mt_definitions_ref"] = serde_json::json!({
        "artifact_id": "placeholder", "path": "mt_definitions.json",
        "sha256": mtx_types::sha256_hex(b""), "size_bytes": null, "media_type": null,
    });
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "bob").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    let reference = &events_of(&out.job_dir, "FR-EVT-MT-009")[0]["payload"]["mt_definitions_ref"];
    let bytes = std::fs::read(out.job_dir.join("mt_definitions.json")).unwrap();
    assert_eq!(reference["sha256"], mtx_types::sha256_hex(&bytes), "{reference}");
    assert_eq!(reference["media_type"], "application/json", "{reference}");
}

#[test]
fn c_rec_3_completed_job_resumes_without_any_model_call() {
    let fx = one_mt("true");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed);
    let before = events(&out.job_dir).len();
    let again = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(again.status, JobStatus::Completed);
    assert_eq!(events(&out.job_dir).len(), before, "no event, so no model call");
}

#[test]
fn c_gen_1_packet_carrying_mt_definitions_is_refused() {
    let fx = one_mt("true");
    let mut packet: serde_json::Value = serde_json::from_slice(&std::fs::read(&fx.wp).unwrap()).unwrap();
    packet["mt_definitions"] = serde_json::json!([]);
    std::fs::write(&fx.wp, serde_json::to_vec(&packet).unwrap()).unwrap();
    let s = setup(&fx, cassette(&[]), ExecutionPolicy::default());
    let err = run_job(&s, &fx.wp, &NoObserver).unwrap_err();
    assert!(matches!(&err, ExecError::InvalidInput(m) if m.contains("mt_definitions")), "{err}");
    assert_eq!(fx.read(A).as_deref(), Some("old text\n"));
}

#[test]
fn c_tool_1_verify_tool_not_granted_fails_the_job() {
    let fx = one_mt("ls src");
    let s = setup(&fx, cassette(&[]), ExecutionPolicy::default());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Failed);
    assert_eq!(out.status_reason, "capability_violation");
    let cap = events_of(&out.job_dir, "FR-EVT-CAP-001");
    assert_eq!(cap[0]["payload"]["decision_outcome"], "deny");
    assert_eq!(cap[0]["payload"]["capability_id"], "proc.exec:ls");
    assert_eq!(
        events_of(&out.job_dir, "FR-EVT-MT-010")[0]["payload"]["status_reason"],
        "capability_violation"
    );
    assert!(events_of(&out.job_dir, "FR-EVT-MT-002").is_empty(), "no iteration ran");
}

#[test]
fn scope_violation_is_refused_recorded_and_outside_file_unchanged() {
    let fx = fixture(
        &[(A, "old text\n"), ("notes.txt", "keep me\n")],
        &["grep -q hello src/a.txt"],
        &["src/a.txt says hello"],
    );
    let escape = "<file path=\"notes.txt\">\nhacked\n</file>\n".to_string();
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &escape), ("MT-001", 0, 2, &right)]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    assert_eq!(fx.read("notes.txt").as_deref(), Some("keep me\n"));
    let p = progress(&out.job_dir);
    let first = &p["micro_tasks"][0]["iterations"][0];
    assert_eq!(first["failure_category"], "scope_violation");
    assert!(first["error_summary"].as_str().unwrap().contains("notes.txt"));
}

#[test]
fn evidence_pointing_past_the_end_of_the_file_is_a_false_completion() {
    let fx = one_mt("grep -q hello src/a.txt");
    let lying = format!(
        "<file path=\"{A}\">\nhello\n</file>\n<mt_complete>\nMT_ID: MT-001\nEVIDENCE:\n- \"src/a.txt says hello\" -> {A}:40-60\n</mt_complete>\n"
    );
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &lying), ("MT-001", 0, 2, &right)]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let v = events_of(&out.job_dir, "FR-EVT-MT-012");
    assert_eq!(v[0]["payload"]["passed"], false);
    assert_eq!(v[0]["payload"]["evidence_verified"], false);
    assert_eq!(iterations(&out.job_dir, "MT-001")[0].2, "RETRY");
}

#[test]
fn c_loop_6_elapsed_duration_gates_before_the_next_iteration() {
    let fx = one_mt("grep -q hello src/a.txt");
    let policy = ExecutionPolicy {
        max_duration_ms: 60_000,
        pause_points: vec!["MT-001".into()],
        ..ExecutionPolicy::default()
    };
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, policy);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::AwaitingUser);
    // The job started 90 s ago: past max_duration_ms, not yet past twice that (poison).
    let path = out.job_dir.join("progress_artifact.json");
    let mut p: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let started = chrono::Utc::now() - chrono::Duration::seconds(90);
    p.as_object_mut().unwrap().remove("content_sha256");
    p["created_at"] = serde_json::json!(started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    std::fs::write(&path, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "carol").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::AwaitingUser, "{resumed:?}");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-006")[0]["payload"]["reason"], "max_duration");
    assert!(events_of(&out.job_dir, "FR-EVT-MT-002").is_empty(), "the gate comes before any iteration");
    assert_eq!(fx.read(A).as_deref(), Some("old text\n"));
}
