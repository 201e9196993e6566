//! Finalisation (MTX-SPEC 5.4): the end-of-job summary call to the level-0 model, its
//! record, and the rule that its failure never changes the outcome.

mod support;

use mtx_executor::{NoObserver, run_job};
use mtx_types::{ExecutionPolicy, JobStatus};
use serde_json::Value;
use support::*;

const A: &str = "src/a.txt";

fn summary_doc(job_dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(job_dir.join("summaries/job_summary.json")).unwrap()).unwrap()
}

#[test]
fn a_finished_job_asks_the_level_0_model_for_its_summary_and_records_it() {
    let fx = fixture(&[(A, "old\n")], &["grep -q hello src/a.txt"], &["src/a.txt says hello"]);
    let cas = cassette(&[
        ("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1)),
        ("JOB-SUMMARY", 0, 0, "MT-001 changed src/a.txt at level 0; nothing was escalated."),
    ]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");

    let doc = summary_doc(&out.job_dir);
    assert_eq!(doc["summary"], "MT-001 changed src/a.txt at level 0; nothing was escalated.");
    assert_eq!(doc["error"], Value::Null);
    assert_eq!(doc["model_id"], "qwen2.5-coder:7b");
    assert_eq!(doc["mt_outcomes"][0]["mt_id"], "MT-001");
    assert_eq!(doc["mt_outcomes"][0]["status"], "completed");

    // Recorded like any model call, before the job's final event.
    let all = events(&out.job_dir);
    let summary_calls: Vec<usize> = (0..all.len())
        .filter(|&i| {
            all[i]["event_type"] == "FR-EVT-LLM-INFERENCE" && all[i]["payload"]["step_id"] == "JOB-SUMMARY"
        })
        .collect();
    assert_eq!(summary_calls.len(), 1);
    assert_eq!(all[summary_calls[0]]["payload"]["operation"], "job_summary");
    let last = all.len() - 1;
    assert_eq!(all[last]["event_type"], "FR-EVT-MT-009");
    assert!(summary_calls[0] < last);

    let record: Value =
        serde_json::from_slice(&std::fs::read(out.job_dir.join("job.json")).unwrap()).unwrap();
    assert_eq!(record["job_outputs"]["job_summary_ref"]["path"], "summaries/job_summary.json");
    assert!(mtx_store::verify_job(&fx.state(), &out.job_id).unwrap().is_ok());
}

#[test]
fn a_failed_summary_is_a_warning_and_the_outcome_stands() {
    let fx = fixture(&[(A, "old\n")], &["grep -q hello src/a.txt"], &["src/a.txt says hello"]);
    // No cassette entry for the summary: the backend refuses the call.
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let out = run_job(&setup(&fx, cas, ExecutionPolicy::default()), &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let doc = summary_doc(&out.job_dir);
    assert_eq!(doc["summary"], Value::Null);
    assert!(doc["error"].as_str().unwrap().contains("no cassette entry for JOB-SUMMARY"), "{doc}");
    assert!(
        events_of(&out.job_dir, "FR-EVT-LLM-INFERENCE")
            .iter()
            .all(|e| e["payload"]["step_id"] != "JOB-SUMMARY")
    );
    assert_eq!(progress(&out.job_dir)["status"], "completed");
}
