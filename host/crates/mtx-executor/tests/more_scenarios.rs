//! Fenced signals, model swaps (C-SWAP-1/2), LOCKED automation (C-LOCK-1), cancellation
//! (C-CANCEL-1), the live observer and the Job History index.

mod support;

use std::sync::Mutex;

use mtx_executor::{NoObserver, RunObserver, run_job};
use mtx_types::{
    ExecutionPolicy, ExecutionPolicyExtension, JobStatus, ModelSwapPolicy, SwapFallbackStrategy,
};
use support::*;

const A: &str = "src/a.txt";

fn one_mt(test: &str) -> Fixture {
    fixture(&[(A, "old text\n")], &[test], &["src/a.txt says hello"])
}

#[test]
fn completion_tags_inside_a_code_fence_are_not_a_claim() {
    let fx = one_mt("grep -q hello src/a.txt");
    let quoted = format!("Here is the template:\n```\n{}```\n", write_and_claim("MT-001", A, "hello\n", 1));
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &quoted), ("MT-001", 0, 2, &right)]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let p = progress(&out.job_dir);
    let first = &p["micro_tasks"][0]["iterations"][0];
    assert_eq!(first["claimed_complete"], false);
    assert_eq!(first["outcome"], "RETRY");
    // Only the real claim was validated.
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-012").len(), 1);
}

/// 7b at level 0, 14b at level 1: a false completion streak forces a model swap.
fn swap_run(policy: ExecutionPolicy) -> (Fixture, mtx_executor::JobOutcome) {
    let fx = one_mt("grep -q hello src/a.txt");
    let wrong = write_and_claim("MT-001", A, "nope\n", 1);
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &wrong), ("MT-001", 0, 2, &wrong), ("MT-001", 1, 1, &right)]);
    let out = run_job(&setup(&fx, cas, policy), &fx.wp, &NoObserver).unwrap();
    (fx, out)
}

#[test]
fn c_swap_1_escalation_to_another_model_swaps_with_a_state_hash() {
    let (_fx, out) = swap_run(short_chain_policy());
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let requested = events_of(&out.job_dir, "FR-EVT-MODEL-001");
    assert_eq!(requested.len(), 1);
    let p = &requested[0]["payload"];
    assert_eq!(p["current_model_id"], "qwen2.5-coder:7b");
    assert_eq!(p["target_model_id"], "qwen2.5-coder:14b");
    assert_eq!(p["state_hash"].as_str().unwrap().len(), 64);
    let request_path =
        out.job_dir.join("model_swap").join(format!("{}.json", p["request_id"].as_str().unwrap()));
    assert!(request_path.is_file());
    // MODEL-002 comes after the recompiled context of the new model (CTX-002).
    let all: Vec<String> =
        events(&out.job_dir).iter().map(|e| e["event_type"].as_str().unwrap().to_string()).collect();
    let i1 = all.iter().position(|t| t == "FR-EVT-MODEL-001").unwrap();
    let i2 = all.iter().position(|t| t == "FR-EVT-MODEL-002").unwrap();
    let ctx_between = all[i1..i2].iter().any(|t| t == "FR-EVT-CTX-002");
    assert!(ctx_between, "{:?}", &all[i1..=i2]);
    assert_eq!(iterations(&out.job_dir, "MT-001").last().unwrap().1, 1);
}

#[test]
fn c_swap_2_swaps_disallowed_with_abort_fail_the_job() {
    let mut policy = short_chain_policy();
    policy.extensions.push(ExecutionPolicyExtension::model_swap(ModelSwapPolicy {
        allow_swaps: false,
        fallback_strategy: SwapFallbackStrategy::Abort,
        ..ModelSwapPolicy::default()
    }));
    let (_fx, out) = swap_run(policy);
    assert_eq!(out.status, JobStatus::Failed);
    assert_eq!(out.status_reason, "model_swap_failed");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MODEL-001").len(), 1);
    let failed = events_of(&out.job_dir, "FR-EVT-MODEL-003");
    assert_eq!(failed[0]["payload"]["error_summary"], "swap_disallowed_by_policy");
    assert!(events_of(&out.job_dir, "FR-EVT-MODEL-002").is_empty());
    assert!(events_of(&out.job_dir, "FR-EVT-MODEL-005").is_empty());
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-010").len(), 1);
}

#[test]
fn c_lock_1_locked_automation_fails_closed_instead_of_pausing() {
    let fx = one_mt("false");
    let policy = ExecutionPolicy {
        max_iterations_per_mt: 1,
        max_total_iterations: 1,
        automation_level: Some(mtx_types::AutomationLevel::Locked),
        ..ExecutionPolicy::default()
    };
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "x\n", 1))]);
    let out = run_job(&setup(&fx, cas, policy), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Failed);
    assert_eq!(out.status_reason, "locked_fail_closed");
    assert!(events_of(&out.job_dir, "FR-EVT-MT-006").is_empty());
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-010")[0]["payload"]["status_reason"], "locked_fail_closed");
}

#[test]
fn c_cancel_1_cancel_request_stops_before_the_next_iteration() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let (s, out) = run_paused_at_mt_001(&fx, cas);
    std::fs::write(out.job_dir.join("cancel_requested"), b"").unwrap();
    mtx_executor::decide_gate(&s.state_dir, &out.job_id, mtx_types::GateChoice::Continue, None, "eve")
        .unwrap();
    let resumed = mtx_executor::resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Cancelled);
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-011").len(), 1);
    assert!(events_of(&out.job_dir, "FR-EVT-MT-002").is_empty());
    assert_eq!(progress(&out.job_dir)["status"], "cancelled");
    assert_eq!(fx.read(A).as_deref(), Some("old text\n"));
}

#[derive(Default)]
struct Collect(Mutex<Vec<(u64, String)>>);

impl RunObserver for Collect {
    fn event(&self, event: &mtx_store::EventEnvelope) {
        self.0.lock().unwrap().push((event.seq, event.event_type.clone()));
    }
}

#[test]
fn observer_sees_every_durable_event_in_order_and_history_indexes_the_job() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let seen = Collect::default();
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &seen).unwrap();
    assert_eq!(out.status, JobStatus::Completed);
    let seen = seen.0.into_inner().unwrap();
    let on_disk: Vec<(u64, String)> = events(&out.job_dir)
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["event_type"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(seen, on_disk);
    let history = mtx_store::JobHistory::open(&fx.state().join("history.sqlite")).unwrap();
    let row = history.get_job(&out.job_id).unwrap().expect("a job history row");
    assert_eq!(row.status, JobStatus::Completed);
    assert_eq!(row.wp_id, "WP-TEST-1");
    let indexed = history.query_events(&out.job_id, &Default::default()).unwrap();
    assert_eq!(indexed.len(), on_disk.len());
}

#[test]
fn mt_val_errors_stop_the_job_before_it_starts_and_list_every_violation() {
    let fx = one_mt("grep -q hello src/a.txt");
    // MT-VAL-006 checks token budgets against the policy's local context windows.
    let mut policy = ExecutionPolicy::default();
    for level in &mut policy.escalation_chain {
        level.context_window = 600;
    }
    let s = setup(&fx, cassette(&[]), policy);
    let err = run_job(&s, &fx.wp, &NoObserver).unwrap_err();
    let mtx_executor::ExecError::InvalidInput(message) = err else { panic!("expected InvalidInput") };
    assert!(message.contains("MT-VAL-006"), "{message}");
    // The job was created and is recorded as failed.
    let jobs: Vec<_> = std::fs::read_dir(fx.state().join("jobs")).unwrap().flatten().collect();
    assert_eq!(jobs.len(), 1);
    let job_dir = jobs[0].path();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("job.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["status_reason"], "mt_definitions_invalid");
    assert_eq!(events_of(&job_dir, "FR-EVT-MT-010")[0]["payload"]["status_reason"], "mt_definitions_invalid");
    assert!(events_of(&job_dir, "FR-EVT-MT-001").is_empty());
    assert!(job_dir.join("mt_definitions.json").is_file());
}

#[test]
fn a_failing_plugin_pauses_at_a_plugin_failure_gate_and_continue_retries() {
    let fx = one_mt("grep -q hello src/a.txt");
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let mut s = setup(&fx, cas, ExecutionPolicy::default());
    let good_selector = s.plugins.lora_selector.clone();
    let path = mtx_plugin::builtins::fixtures::path("bad-output").expect("fixture bad-output is built");
    s.plugins.lora_selector =
        mtx_plugin::PluginSpec::file(path, "lora_selector", mtx_plugin::World::LoraSelector);
    // Give the selector a LoRA to consider, so it is asked at level 0.
    s.loras.push(mtx_types::LoRAInfo {
        lora_id: "text-lora".into(),
        lora_version: None,
        base_model_id: "qwen2.5-coder:7b".into(),
        trained_on_task_types: vec!["text".into()],
        specialization: Vec::new(),
        weak_on_task_types: Vec::new(),
        last_trained_at: None,
        eval_metrics: None,
        training_priority: None,
    });
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::AwaitingUser, "{out:?}");
    let failure = &events_of(&out.job_dir, "FR-EVT-MTX-003")[0]["payload"];
    assert_eq!(failure["kind"], "bad_output");
    assert_eq!(failure["world"], "lora-selector");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-006")[0]["payload"]["reason"], "plugin_failure");
    assert!(events_of(&out.job_dir, "FR-EVT-MT-002").is_empty(), "no model call after the failure");
    mtx_executor::decide_gate(&s.state_dir, &out.job_id, mtx_types::GateChoice::Continue, None, "fred")
        .unwrap();
    s.plugins.lora_selector = good_selector;
    let resumed = mtx_executor::resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::Completed, "{resumed:?}");
    let selection = &events_of(&out.job_dir, "FR-EVT-MT-013")[0]["payload"];
    assert_eq!(selection["lora_id"], "text-lora");
}

#[test]
fn c_evt_1_finished_job_verifies_and_every_iteration_walks_the_traceability_chain() {
    let fx = one_mt("grep -q hello src/a.txt");
    let wrong = write_and_claim("MT-001", A, "nope\n", 1);
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let cas = cassette(&[("MT-001", 0, 1, &wrong), ("MT-001", 0, 2, &right)]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let report = mtx_store::verify_job(&fx.state(), &out.job_id).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.job_dir.join("job.json")).unwrap()).unwrap();
    let trace_id = record["trace_id"].as_str().unwrap();
    let workflow_run_id = record["workflow_run_id"].as_str().unwrap();
    let artifacts = fx.state().join("artifacts");
    for done in events_of(&out.job_dir, "FR-EVT-MT-003") {
        assert_eq!(done["job_id"], out.job_id.as_str());
        assert_eq!(done["trace_id"], trace_id);
        assert_eq!(done["workflow_run_id"], workflow_run_id);
        let snapshot_ref = &done["payload"]["context_snapshot_ref"];
        let snapshot: serde_json::Value = serde_json::from_slice(
            &std::fs::read(artifacts.join(snapshot_ref["path"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(snapshot["context_snapshot_id"], done["payload"]["context_snapshot_id"]);
        assert_eq!(snapshot["job_id"], out.job_id.as_str());
        assert_eq!(snapshot["workflow_run_id"], workflow_run_id);
        assert_eq!(snapshot["step_id"], done["payload"]["step_id"]);
    }
    // The Tool Bus and the plugin host report through the same log.
    for kind in ["FR-EVT-007", "FR-EVT-GATE-001", "FR-EVT-CAP-001", "FR-EVT-PLUGIN-001", "FR-EVT-CTX-002"] {
        assert!(!events_of(&out.job_dir, kind).is_empty(), "no {kind}");
    }
    assert!(ledger(&out.job_dir).iter().any(|r| r["kind"] == "plugin_call"));
    assert_eq!(record["metrics"]["mt_metrics"]["MT-001"]["iterations"], 2);
    assert_eq!(record["metrics"]["mt_metrics"]["MT-001"]["validation_attempts"], 2);
}

#[test]
fn model_timeout_is_retried_once_with_more_time_then_escalates() {
    let fx = one_mt("grep -q hello src/a.txt");
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let mut cas: serde_json::Value = serde_json::from_str(&cassette(&[("MT-001", 1, 1, &right)])).unwrap();
    cas["entries"].as_array_mut().unwrap().push(serde_json::json!({
        "mt_id": "MT-001", "level": 0, "iteration": 1,
        "error": {"kind": "timeout", "message": "recorded timeout"}
    }));
    let out = run_job(&setup(&fx, cas.to_string(), ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    // Two calls for the first iteration (the second is attempt 2 with the raised timeout,
    // capped at 300 s), one at level 1. The ledger keeps each call's input for replay.
    let inputs: Vec<serde_json::Value> = ledger(&out.job_dir)
        .into_iter()
        .filter(|r| r["kind"] == "plugin_call" && r["output"]["function"] == "complete")
        .map(|r| serde_json::from_str::<serde_json::Value>(r["output"]["input"].as_str().unwrap()).unwrap())
        .filter(|i| i["mt_id"] != "JOB-SUMMARY")
        .collect();
    let attempts: Vec<(u64, u64)> =
        inputs.iter().map(|i| (i["level"].as_u64().unwrap(), i["attempt"].as_u64().unwrap())).collect();
    assert_eq!(attempts, [(0, 1), (0, 2), (1, 1)]);
    // The prompt itself stays out of the ledger (it is the step's prompt.txt); its hash stays.
    let first = ledger(&out.job_dir).into_iter().find(|r| r["output"]["function"] == "complete").unwrap();
    assert!(inputs.iter().all(|i| i["prompt"].is_null()));
    let prompt_sha = first["output"]["input_elided"]["prompt"]["sha256"].as_str().unwrap().to_string();
    let step_prompts: Vec<String> = std::fs::read_dir(out.job_dir.join("step_outputs"))
        .unwrap()
        .filter_map(|d| std::fs::read(d.unwrap().path().join("prompt.txt")).ok())
        .map(|b| mtx_types::sha256_hex(&b))
        .collect();
    assert!(step_prompts.contains(&prompt_sha), "the elided prompt is a step's prompt.txt");
    assert!(inputs[1]["timeout_ms"].as_u64() >= inputs[0]["timeout_ms"].as_u64());
    let esc = &events_of(&out.job_dir, "FR-EVT-MT-005")[0]["payload"];
    assert_eq!(esc["failure_category"], "timeout_exceeded");
    assert_eq!(esc["reason"], "model_timeout");
    assert_eq!(
        iterations(&out.job_dir, "MT-001"),
        [(1, 0, "ESCALATE".to_string()), (1, 1, "SUCCESS".to_string())]
    );
}

#[test]
fn c_swap_3_failed_swap_with_continue_with_current_rolls_back_and_can_complete() {
    let fx = one_mt("grep -q hello src/a.txt");
    let wrong = write_and_claim("MT-001", A, "nope\n", 1);
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    // The backend does not know the 14b model: its budgets are unknown, the swap fails.
    let mut cas: serde_json::Value = serde_json::from_str(&cassette(&[
        ("MT-001", 0, 1, &wrong),
        ("MT-001", 0, 2, &wrong),
        ("MT-001", 0, 3, &right),
    ]))
    .unwrap();
    cas["models"].as_object_mut().unwrap().remove("qwen2.5-coder:14b");
    let mut policy = short_chain_policy();
    policy.extensions.push(ExecutionPolicyExtension::model_swap(ModelSwapPolicy {
        fallback_strategy: SwapFallbackStrategy::ContinueWithCurrent,
        ..ModelSwapPolicy::default()
    }));
    let out = run_job(&setup(&fx, cas.to_string(), policy), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let failed = &events_of(&out.job_dir, "FR-EVT-MODEL-003")[0]["payload"];
    assert_eq!(failed["error_summary"], "budget_exceeded");
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MODEL-005").len(), 1);
    assert!(events_of(&out.job_dir, "FR-EVT-MODEL-002").is_empty());
    assert_eq!(
        iterations(&out.job_dir, "MT-001"),
        [(1, 0, "RETRY".into()), (2, 0, "ESCALATE".into()), (3, 0, "SUCCESS".into())]
    );
}

/// A long MT keeps its oldest iteration records in archive chunks (11.4): the saved
/// progress artifact stays small, every reader still sees the whole history, `mtx verify`
/// checks the chunks, and a job resumed from a gate goes on adding chunks.
#[test]
fn a_long_mt_keeps_its_old_iteration_records_in_archive_chunks() {
    let fx = one_mt("true");
    // planner-default gives the MT `retry_budget` 3: four iterations per level, so a chain
    // of many levels of one model lets the total-iteration limit bind.
    let mut policy = ExecutionPolicy::default();
    let template = policy.escalation_chain[0].clone();
    let mut chain: Vec<_> = (0..100)
        .map(|level| mtx_types::EscalationLevel { level, lora_selector: None, ..template.clone() })
        .collect();
    let gate = policy.escalation_chain.iter().find(|l| l.is_hard_gate && !l.is_cloud).unwrap().clone();
    chain.push(mtx_types::EscalationLevel { level: 100, ..gate });
    policy.escalation_chain = chain;
    policy.max_total_iterations = 70;
    policy.max_total_tokens = Some(1_000_000_000);
    policy.enable_distillation = false;
    let answer = no_claim();
    let entries: Vec<(&str, u32, u32, &str)> = (0..40)
        .flat_map(|level| (1..=6).map(move |i| (level, i)))
        .map(|(l, i)| ("MT-001", l, i, answer.as_str()))
        .collect();
    let s = setup(&fx, cassette(&entries), policy);

    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::AwaitingUser, "{out:?}");
    let saved_form = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("progress_artifact.json")).unwrap()).unwrap()
    };
    let saved = saved_form(&out.job_dir);
    let entry = &saved["micro_tasks"][0];
    assert_eq!(entry["iterations"].as_array().unwrap().len(), 70 - 32, "32 records left the artifact");
    assert_eq!(entry["archived_iterations"][0]["path"], "progress_archive/MT-001_00001.json");
    assert_eq!(entry["archived_iterations"][0]["count"], 32);
    assert_eq!(saved["aggregate_stats"]["total_iterations"], 70);
    assert!(out.job_dir.join("progress_archive/MT-001_00001.json").is_file());

    let store = mtx_store::ProgressStore::new(&out.job_dir.join("progress_artifact.json"));
    let loaded: mtx_types::progress::ProgressArtifact = store.load().unwrap();
    let steps: Vec<String> = loaded.micro_tasks[0].iterations.iter().map(|r| r.step_id.clone()).collect();
    let expected: Vec<String> = (1..=70).map(|i| mtx_types::step_id("MT-001", i)).collect();
    assert_eq!(steps, expected);
    let report = mtx_store::verify_job(&s.state_dir, &out.job_id).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Raise the limit and go on: the resumed job reads the chunks back and adds more.
    mtx_executor::decide_gate(&s.state_dir, &out.job_id, mtx_types::GateChoice::Continue, None, "alice")
        .unwrap();
    let resumed = mtx_executor::resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::AwaitingUser, "{resumed:?}");
    assert_eq!(resumed.summary.pending_gate.as_deref(), Some("max_total_iterations"), "{resumed:?}");
    let loaded: mtx_types::progress::ProgressArtifact = store.load().unwrap();
    assert_eq!(loaded.micro_tasks[0].iterations.len(), 140);
    assert_eq!(loaded.micro_tasks[0].archived_iterations.len(), 3);
    assert_eq!(loaded.aggregate_stats.total_iterations, 140);
    assert_eq!(saved_form(&out.job_dir)["micro_tasks"][0]["iterations"].as_array().unwrap().len(), 140 - 96);
    let report = mtx_store::verify_job(&s.state_dir, &out.job_id).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // An edited chunk is caught by `mtx verify` and refused on load.
    let chunk = out.job_dir.join("progress_archive/MT-001_00033.json");
    let text =
        std::fs::read_to_string(&chunk).unwrap().replacen("\"tokens_prompt\":100", "\"tokens_prompt\":99", 1);
    std::fs::write(&chunk, text).unwrap();
    let report = mtx_store::verify_job(&s.state_dir, &out.job_id).unwrap();
    assert!(report.problems.iter().any(|p| p.message.contains("MT-001_00033.json")), "{:?}", report.problems);
    assert!(store.load::<mtx_types::progress::ProgressArtifact>().is_err());
}

/// A run ledger near its 50 MB cap (11.4): FR-EVT-MTX-001 `storage_near_cap` at 80 %, and
/// a `resource_exhausted` hard gate while one more iteration's records would still fit,
/// instead of a failed append in the middle of a step.
#[test]
fn a_ledger_near_its_cap_warns_then_gates_resource_exhausted() {
    use mtx_store::ledger::{LEDGER_CAP_BYTES, PluginCallRecord};
    let fx = one_mt("true");
    let policy = ExecutionPolicy { max_total_iterations: 1, ..ExecutionPolicy::default() };
    let answer = no_claim();
    let s = setup(&fx, cassette(&[("MT-001", 0, 1, &answer), ("MT-001", 0, 2, &answer)]), policy);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.summary.pending_gate.as_deref(), Some("max_total_iterations"), "{out:?}");
    assert!(events_of(&out.job_dir, "FR-EVT-MTX-001").is_empty());

    // Grow the ledger to within half a megabyte of its cap with large records.
    {
        let mut ledger = mtx_store::RunLedger::open(&out.job_dir.join("run_ledger.jsonl")).unwrap();
        let pad = "x".repeat(1 << 20);
        while ledger.size_bytes() + (1 << 20) + 4096 < LEDGER_CAP_BYTES - (512 << 10) {
            ledger
                .append_deferred(&mtx_store::LedgerRecord::PluginCall(PluginCallRecord {
                    plugin: "padding".into(),
                    digest: "0".repeat(64),
                    world: None,
                    input_hash: "0".repeat(64),
                    output: serde_json::json!({ "pad": pad }),
                    mt_id: None,
                    step_id: None,
                }))
                .unwrap();
        }
        ledger.sync().unwrap();
    }
    mtx_executor::decide_gate(&s.state_dir, &out.job_id, mtx_types::GateChoice::Continue, None, "alice")
        .unwrap();
    let resumed = mtx_executor::resume_job(&s, &out.job_id, &NoObserver).unwrap();
    assert_eq!(resumed.status, JobStatus::AwaitingUser, "{resumed:?}");
    assert_eq!(resumed.summary.pending_gate.as_deref(), Some("resource_exhausted"), "{resumed:?}");
    let warning = &events_of(&out.job_dir, "FR-EVT-MTX-001")[0]["payload"];
    assert_eq!(warning["kind"], "storage_near_cap");
    assert_eq!(warning["resource"], "run_ledger.jsonl");
    let gates = events_of(&out.job_dir, "FR-EVT-MT-006");
    assert_eq!(gates.last().unwrap()["payload"]["reason"], "resource_exhausted");
    // No iteration started after the gate was due; the ledger stayed under its cap.
    assert_eq!(events_of(&out.job_dir, "FR-EVT-MT-002").len(), 1);
    assert!(std::fs::metadata(out.job_dir.join("run_ledger.jsonl")).unwrap().len() < LEDGER_CAP_BYTES);
}
