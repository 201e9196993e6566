//! Crash recovery (C-REC-1/2, idempotency across a resume), cloud consent (C-CLOUD-1/2)
//! and smart drop-back (C-LOOP-8).

mod support;

use std::path::Path;

use mtx_executor::{
    ExecError, GateChoice, NoObserver, decide_consent, decide_gate, projection_plan, resume_job, run_job,
};
use mtx_store::RunLedger;
use mtx_types::{ExecutionPolicy, JobStatus, LedgerStep, LedgerStepStatus};
use serde_json::{Value, json};
use support::*;

const A: &str = "src/a.txt";

fn one_mt(test: &str) -> Fixture {
    fixture(&[(A, "old text\n")], &[test], &["src/a.txt says hello"])
}

fn edit_progress(job_dir: &Path, f: impl FnOnce(&mut Value)) {
    let path = job_dir.join("progress_artifact.json");
    let mut p: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Hand edits drop the integrity member (a document without one is not checked).
    p.as_object_mut().unwrap().remove("content_sha256");
    f(&mut p);
    std::fs::write(&path, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
}

fn append_in_progress(job_dir: &Path, step_id: &str, key: &str) {
    let mut ledger = RunLedger::open(&job_dir.join("run_ledger.jsonl")).unwrap();
    ledger
        .append_step(&LedgerStep {
            step_id: step_id.into(),
            idempotency_key: key.into(),
            status: LedgerStepStatus::InProgress,
            started_at: Some(mtx_types::now_rfc3339()),
            completed_at: None,
            output_artifact_ref: None,
            error: None,
            recoverable: true,
            escalation_level: 0,
        })
        .unwrap();
}

/// A job paused at its pause point, then turned into a job that crashed while running
/// (progress in_progress, the pause released).
fn crashed_before_first_step(
    fx: &Fixture,
    cas: String,
) -> (mtx_executor::ExecutorSetup, mtx_executor::JobOutcome) {
    let (s, out) = run_paused_at_mt_001(fx, cas);
    assert_eq!(out.status, JobStatus::AwaitingUser);
    edit_progress(&out.job_dir, |p| {
        p["status"] = json!("in_progress");
        p["current_state"].as_object_mut().unwrap().remove("pending_gate");
        p["mtx_executor"]["released_pauses"] = json!(["MT-001"]);
        p["mtx_executor"]["waiting_for"] = Value::Null;
    });
    (s, out)
}

#[test]
fn c_rec_2_in_progress_step_without_output_is_retried() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let (s, out) = crashed_before_first_step(&fx, cas);
    append_in_progress(&out.job_dir, "MT-001_iter-001", &"0".repeat(64));
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    let rec = &events_of(&out.job_dir, "FR-EVT-WF-RECOVERY")[0]["payload"];
    assert_eq!(rec["steps_to_retry"], 1);
    assert_eq!(rec["steps_recovered"], 0);
    assert_eq!(rec["resume_point"], "MT-001_iter-001");
    assert_eq!(rec["from_state"], "running");
    assert_eq!(rec["to_state"], "stalled");
    let statuses: Vec<String> = ledger_steps(&out.job_dir)
        .iter()
        .filter(|st| st["step_id"] == "MT-001_iter-001")
        .map(|st| st["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["in_progress", "pending", "in_progress", "completed"]);
    let resumed_events = events_of(&out.job_dir, "FR-EVT-MT-008");
    assert_eq!(resumed_events[0]["payload"]["resumed_from"], "crash_recovery");
}

#[test]
fn c_rec_1_in_progress_step_with_output_is_marked_completed() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed);
    // The process died after output.json was written but before the final records.
    let step = ledger_steps(&out.job_dir).into_iter().find(|st| st["status"] == "completed").unwrap();
    append_in_progress(&out.job_dir, "MT-001_iter-001", step["idempotency_key"].as_str().unwrap());
    edit_progress(&out.job_dir, |p| {
        p["status"] = json!("in_progress");
        p.as_object_mut().unwrap().remove("completed_at");
    });
    let job_json = out.job_dir.join("job.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&job_json).unwrap()).unwrap();
    record["status"] = json!("running");
    std::fs::write(&job_json, serde_json::to_vec(&record).unwrap()).unwrap();
    let calls_before = model_calls(&out.job_dir);
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    let rec = &events_of(&out.job_dir, "FR-EVT-WF-RECOVERY")[0]["payload"];
    assert_eq!(rec["steps_recovered"], 1);
    assert_eq!(rec["steps_to_retry"], 0);
    let last = ledger_steps(&out.job_dir).into_iter().last().unwrap();
    assert_eq!(last["status"], "completed");
    assert_eq!(model_calls(&out.job_dir), calls_before, "a finished step is never re-run");
}

/// Model calls of MT steps (the end-of-job summary call is not one).
fn model_calls(job_dir: &Path) -> usize {
    events_of(job_dir, "FR-EVT-PLUGIN-001")
        .iter()
        .filter(|e| e["payload"]["function"] == "complete" && e["payload"]["step_id"] != "JOB-SUMMARY")
        .count()
}

#[test]
fn idempotency_key_is_stable_and_a_stored_response_is_never_requested_again() {
    // Job B, on an identical workspace, learns the step's key and response.
    let answer = write_and_claim("MT-001", A, "hello\n", 1);
    let fx_b = one_mt("grep -q hello src/a.txt");
    let out_b = run_job(
        &setup(&fx_b, cassette(&[("MT-001", 0, 1, &answer)]), ExecutionPolicy::default()),
        &fx_b.wp,
        &NoObserver,
    )
    .unwrap();
    assert_eq!(out_b.status, JobStatus::Completed);
    let key = ledger_steps(&out_b.job_dir)[0]["idempotency_key"].as_str().unwrap().to_string();

    // Job A crashed right after storing the response of the same step.
    let fx = one_mt("grep -q hello src/a.txt");
    let (mut s, out) = crashed_before_first_step(&fx, cassette(&[]));
    let step_dir = out.job_dir.join("step_outputs").join(&key);
    std::fs::create_dir_all(&step_dir).unwrap();
    for f in ["response.txt", "response.json"] {
        std::fs::copy(out_b.job_dir.join("step_outputs").join(&key).join(f), step_dir.join(f)).unwrap();
    }
    append_in_progress(&out.job_dir, "MT-001_iter-001", &key);
    // The cassette now answers nothing: any model call would fail.
    s.plugins.model_backend.config.insert("cassette".into(), cassette(&[]));
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    assert_eq!(model_calls(&out.job_dir), 0);
    let keys: Vec<String> = ledger_steps(&out.job_dir)
        .iter()
        .filter(|st| st["status"] == "completed")
        .map(|st| st["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, [key]);
    assert_eq!(fx.read(A).as_deref(), Some("hello\n"));
}

fn cloud_policy(allowed: bool) -> ExecutionPolicy {
    ExecutionPolicy { cloud_escalation_allowed: allowed, ..short_chain_policy() }
}

/// False completions on both local levels of the short chain, then the gate level.
fn to_the_cloud(
    fx: &Fixture,
    allowed: bool,
    cloud_answer: &str,
) -> (mtx_executor::ExecutorSetup, mtx_executor::JobOutcome) {
    let wrong = write_and_claim("MT-001", A, "nope\n", 1);
    let cas = cassette(&[
        ("MT-001", 0, 1, &wrong),
        ("MT-001", 0, 2, &wrong),
        ("MT-001", 1, 1, &wrong),
        ("MT-001", 1, 2, &wrong),
        ("MT-001", 3, 1, cloud_answer),
    ]);
    let s = setup(fx, cas, cloud_policy(allowed));
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-006")[0]["payload"]["reason"], "escalation_exhausted");
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "dana").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    (s, resumed)
}

#[test]
fn c_cloud_2_cloud_level_needs_consent_bound_to_the_payload() {
    let fx = one_mt("grep -q hello src/a.txt");
    let (s, out) = to_the_cloud(&fx, true, &write_and_claim("MT-001", A, "hello\n", 1));
    assert_eq!(out.status, JobStatus::AwaitingUser, "{out:?}");
    assert_eq!(out.status_reason, "paused_cloud_consent");
    let plan = projection_plan(&s.state_dir, &out.job_id).unwrap().expect("a projection plan");
    assert_eq!(plan.payload_sha256.len(), 64);
    let requested = &events_of(&out.job_dir, "FR-EVT-CLOUD-001")[0];
    assert_eq!(requested["payload"]["payload_sha256"], plan.payload_sha256.as_str());
    assert!(requested["payload"].get("prompt").is_none(), "no transmitted content in the event");
    // No consent yet: resume is refused and the cloud model was never called.
    assert!(matches!(resume_job(&s, &out.job_id, &NoObserver), Err(ExecError::InvalidInput(_))));
    let receipt = decide_consent(&s.state_dir, &out.job_id, true, Some("ok"), "dana").unwrap();
    assert_eq!(receipt.payload_sha256, plan.payload_sha256);
    assert!(matches!(
        decide_consent(&s.state_dir, &out.job_id, true, None, "dana"),
        Err(ExecError::NotPaused(_))
    ));
    assert_eq!(events_of(&out.job_dir, "FR-EVT-CLOUD-002")[0]["actor"], "human");
    let done = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-CLOUD-004").len(), 1);
    assert_eq!(iterations(&out.job_dir, "MT-001").last().unwrap().1, 3);
}

#[test]
fn c_cloud_2_changed_payload_invalidates_the_consent() {
    let fx = one_mt("grep -q hello src/a.txt");
    let (s, out) = to_the_cloud(&fx, true, &write_and_claim("MT-001", A, "hello\n", 1));
    let first = projection_plan(&s.state_dir, &out.job_id).unwrap().unwrap();
    decide_consent(&s.state_dir, &out.job_id, true, None, "dana").unwrap();
    // The workspace changed after consent: the prompt, and so the payload, differ.
    std::fs::write(fx.ws.path().join(A), "changed meanwhile\n").unwrap();
    let again = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(again.status_reason, "paused_cloud_consent");
    let second = projection_plan(&s.state_dir, &out.job_id).unwrap().unwrap();
    assert_ne!(first.payload_sha256, second.payload_sha256);
    assert_eq!(events_of(&out.job_dir, "FR-EVT-CLOUD-001").len(), 2);
    assert!(events_of(&out.job_dir, "FR-EVT-CLOUD-004").is_empty());
}

#[test]
fn c_cloud_denied_consent_gates_the_job() {
    let fx = one_mt("grep -q hello src/a.txt");
    let (s, out) = to_the_cloud(&fx, true, &write_and_claim("MT-001", A, "hello\n", 1));
    decide_consent(&s.state_dir, &out.job_id, false, Some("no"), "dana").unwrap();
    assert_eq!(events_of(&out.job_dir, "FR-EVT-CLOUD-003").len(), 1);
    let after = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(after.status, JobStatus::AwaitingUser);
    let gates = events_of(&out.job_dir, "FR-EVT-MT-006");
    assert_eq!(gates.last().unwrap()["payload"]["reason"], "cloud_escalation_denied");
}

#[test]
fn c_cloud_1_disallowed_cloud_level_gates_and_reports_denial() {
    let fx = one_mt("grep -q hello src/a.txt");
    let (_s, out) = to_the_cloud(&fx, false, "unused");
    assert_eq!(out.status, JobStatus::AwaitingUser);
    assert_eq!(
        events_of(&out.job_dir, "FR-EVT-MT-006").last().unwrap()["payload"]["reason"],
        "cloud_escalation_disallowed"
    );
    assert_eq!(
        events_of(&out.job_dir, "FR-EVT-CLOUD-003")[0]["payload"]["reason"],
        "cloud_escalation_disallowed"
    );
    assert!(events_of(&out.job_dir, "FR-EVT-CLOUD-001").is_empty());
}

#[test]
fn c_loop_8_smart_drop_back_after_a_scope_violation_escalation() {
    let b = "src/b.txt";
    let fx = fixture(
        &[(A, "a\n"), (b, "b\n"), ("notes.txt", "n\n")],
        &["true"],
        &["src/a.txt says hello", "src/b.txt says bye"],
    );
    let escape = "<file path=\"notes.txt\">\nx\n</file>\n".to_string();
    let cas = cassette(&[
        ("MT-001", 0, 1, &escape),
        ("MT-001", 0, 2, &escape),
        ("MT-001", 1, 1, &write_and_claim("MT-001", A, "hello\n", 1)),
        ("MT-002", 0, 1, &write_and_claim("MT-002", b, "bye\n", 1)),
    ]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let esc = &events_of(&out.job_dir, "FR-EVT-MT-005")[0]["payload"];
    assert_eq!(esc["failure_category"], "scope_violation");
    let drop = &events_of(&out.job_dir, "FR-EVT-MT-014")[0]["payload"];
    assert_eq!(drop["from_level"], 1);
    assert_eq!(drop["to_level"], 0);
    assert_eq!(iterations(&out.job_dir, "MT-002"), [(1, 0, "SUCCESS".to_string())]);
    assert_eq!(out.summary.drop_backs, 1);
    assert_eq!(fx.read("notes.txt").as_deref(), Some("n\n"));
}

#[test]
fn corrupt_progress_artifact_is_rebuilt_from_the_ledger_and_step_outputs() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    // The process died while running and the progress artifact is garbage.
    std::fs::write(out.job_dir.join("progress_artifact.json"), b"{ not json").unwrap();
    let job_json = out.job_dir.join("job.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&job_json).unwrap()).unwrap();
    record["status"] = json!("running");
    std::fs::write(&job_json, serde_json::to_vec(&record).unwrap()).unwrap();
    let calls_before = model_calls(&out.job_dir);
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    assert_eq!(iterations(&out.job_dir, "MT-001"), [(1, 0, "SUCCESS".to_string())]);
    assert_eq!(model_calls(&out.job_dir), calls_before);
}

#[test]
fn broken_ledger_chain_fails_the_job_with_state_corruption() {
    let fx = one_mt("grep -q hello src/a.txt");
    let (s, out) = run_paused_at_mt_001(&fx, cassette(&[]));
    decide_gate(&s.state_dir, &out.job_id, GateChoice::Continue, None, "gil").unwrap();
    let path = out.job_dir.join("run_ledger.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[0] = lines[0].replace("WP-TEST-1", "WP-FORGED");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Failed);
    assert_eq!(resumed.status_reason, "state_corruption");
    let record: Value =
        serde_json::from_slice(&std::fs::read(out.job_dir.join("job.json")).unwrap()).unwrap();
    assert_eq!(record["status_reason"], "state_corruption");
    assert!(events_of(&out.job_dir, "FR-EVT-MT-002").is_empty());
}

#[test]
fn a_new_run_marks_a_crashed_job_stalled_and_records_its_recovery() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let (s, crashed) = crashed_before_first_step(&fx, cas);
    append_in_progress(&crashed.job_dir, "MT-001_iter-001", &"1".repeat(64));
    // Another run in the same state directory: the crashed job is found, not continued.
    let other = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_ne!(other.job_id, crashed.job_id);
    let rec = events_of(&crashed.job_dir, "FR-EVT-WF-RECOVERY");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["payload"]["steps_to_retry"], 1);
    let record: Value =
        serde_json::from_slice(&std::fs::read(crashed.job_dir.join("job.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "stalled");
    assert!(events_of(&crashed.job_dir, "FR-EVT-MT-002").is_empty(), "only resume continues it");
    // Resuming continues it without recording the recovery twice.
    let resumed = resume_job(&s, &crashed.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    assert_eq!(events_of(&crashed.job_dir, "FR-EVT-WF-RECOVERY").len(), 1);
}

#[test]
fn a_step_that_succeeded_before_the_crash_completes_its_mt_without_a_new_call() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    // The crash hit after output.json and the ledger, before the progress artifact.
    edit_progress(&out.job_dir, |p| {
        p["status"] = json!("in_progress");
        p.as_object_mut().unwrap().remove("completed_at");
        p["micro_tasks"][0]["status"] = json!("in_progress");
        p["micro_tasks"][0]["iterations"] = json!([]);
        // A finished MT's records are archived; before the commit there were none.
        p["micro_tasks"][0].as_object_mut().unwrap().remove("archived_iterations");
        p["micro_tasks"][0].as_object_mut().unwrap().remove("final_iteration");
        p["current_state"]["total_iterations"] = json!(0);
        p["current_state"]["active_mt"] = json!("MT-001");
    });
    let calls_before = model_calls(&out.job_dir);
    let resumed = resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    assert_eq!(iterations(&out.job_dir, "MT-001"), [(1, 0, "SUCCESS".to_string())]);
    assert_eq!(model_calls(&out.job_dir), calls_before);
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-004").len(), 2);
}
