//! The console's JSON API over a real loopback server: every endpoint, the guards, the
//! live stream, and a paused job continued from the console.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mtx_console::{ConsoleConfig, OperatorActions};
use mtx_store::{Event, FlightRecorder, LedgerRecord, ProgressStore};
use mtx_types::ProgressArtifact;
use serde_json::{Value, json};
use support::{CONSENT, DONE, FakeActions, GATED, WP, fixture, get, post, request, start};

fn ids(jobs: &Value) -> Vec<String> {
    jobs["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn job_history_lists_jobs_newest_first_with_counts_and_filters() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));

    let all = get(console.addr, "/api/jobs");
    assert_eq!(all.status, 200);
    let all = all.json();
    assert_eq!(ids(&all), [CONSENT, GATED, DONE]);
    let gated = &all["jobs"][1];
    assert_eq!(gated["profile_id"], "micro_task_executor_v1");
    assert_eq!(gated["status"], "awaiting_user");
    assert_eq!(gated["counts"]["total_mts"], 3);
    assert_eq!(gated["counts"]["completed_mts"], 1);
    assert_eq!(gated["counts"]["total_iterations"], 4);
    assert_eq!(gated["counts"]["escalations"], 1);
    assert_eq!(gated["pending_gate"]["gate_reason"], "iteration_limit");
    assert_eq!(all["jobs"][0]["pending_consent"], true);

    let awaiting = get(console.addr, "/api/jobs?status=awaiting_user").json();
    assert_eq!(ids(&awaiting), [CONSENT, GATED]);
    let by_wp = get(console.addr, "/api/jobs?wp=WP-2-Other-v1").json();
    assert_eq!(ids(&by_wp), [DONE]);
    let both = get(console.addr, &format!("/api/jobs?status=completed&wp={WP}")).json();
    assert!(ids(&both).is_empty());

    let bad = get(console.addr, "/api/jobs?status=sleeping");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("sleeping"));
}

#[test]
fn job_history_falls_back_to_job_directories_without_an_index() {
    let fx = fixture();
    std::fs::remove_file(fx.state_dir().join("history.sqlite")).unwrap();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let jobs = get(console.addr, "/api/jobs?status=completed").json();
    assert_eq!(ids(&jobs), [DONE]);
    assert!(!fx.state_dir().join("history.sqlite").exists(), "a read never creates the index");
}

#[test]
fn the_job_view_has_waves_iterations_escalations_candidates_and_the_gate() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let r = get(console.addr, &format!("/api/jobs/{GATED}"));
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(d["job"]["status"], "awaiting_user");
    assert_eq!(d["waves"], json!([["MT-001"], ["MT-002", "MT-003"]]));

    let mt1 = &d["progress"]["micro_tasks"][0];
    let levels: Vec<_> =
        mt1["iterations"].as_array().unwrap().iter().map(|i| i["escalation_level"].clone()).collect();
    let outcomes: Vec<_> =
        mt1["iterations"].as_array().unwrap().iter().map(|i| i["outcome"].clone()).collect();
    assert_eq!(levels, [json!(0), json!(0), json!(1)]);
    assert_eq!(outcomes, [json!("RETRY"), json!("ESCALATE"), json!("SUCCESS")]);

    let escalations = d["escalations"].as_array().unwrap();
    assert_eq!(escalations.len(), 1, "the event and the progress entry name the same record");
    assert_eq!(escalations[0]["mt_id"], "MT-001");
    assert_eq!(escalations[0]["to_level"], 1);
    assert_eq!(escalations[0]["from_lora"], "rust-general-v3");
    assert_eq!(escalations[0]["record"]["attempts"][1]["outcome"], "ESCALATE");
    assert_eq!(escalations[0]["record_ref"]["sha256"], fx.escalation_record.sha256.as_str());

    let candidates = d["distillation_candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0]["candidate"]["teacher_success"]["model_id"], "qwen2.5-coder:14b");

    assert_eq!(d["pending_gate"]["gate_reason"], "iteration_limit");
    assert_eq!(d["pending_gate"]["mt_id"], "MT-002");
    assert!(d["pending_consent"].is_null());
    assert_eq!(d["last_seq"], 15);
    let problems = d["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "gate deny");
    assert_eq!(problems[0]["mt_id"], "MT-002");
    assert!(problems[0]["detail"].as_str().unwrap().starts_with("G-SCOPE op-7"));

    let consent = get(console.addr, &format!("/api/jobs/{CONSENT}")).json();
    assert_eq!(consent["pending_consent"]["requested_model_id"], "gpt-4o");
    assert_eq!(consent["projection_plan"]["plan"]["projection_plan_id"], "plan-1");

    assert_eq!(get(console.addr, "/api/jobs/no-such-job").status, 404);
    assert_eq!(get(console.addr, "/api/jobs/..").status, 400, "never leaves the jobs directory");
}

#[test]
fn a_newer_version_of_an_escalation_record_joins_its_escalation() {
    // The executor writes a new version of an escalation record when the MT succeeds
    // (MTX-SPEC 3.9.1); the event keeps naming the version of the escalation, the progress
    // entry names the newest one.
    let fx = fixture();
    let job = fx.job(GATED);
    let newest = job
        .write_file(
            "escalations/MT-001_v002.json",
            br#"{"mt_id": "MT-001", "version": 2, "remediation": {"success_level": 1,
                 "success_model_id": "qwen2.5-coder:14b", "drop_back_decision": {"action": "STAY"}}}"#,
        )
        .unwrap();
    let store = ProgressStore::new(&job.progress_artifact());
    let mut p: ProgressArtifact = store.load().unwrap();
    p.micro_tasks[0].escalation_record_ref = Some(newest.clone());
    // MT-002 has a record but no FR-EVT-MT-005 (a log cut short): it still gets a row.
    let unannounced =
        job.write_file("escalations/MT-002_v001.json", br#"{"mt_id": "MT-002", "version": 1}"#).unwrap();
    p.micro_tasks[1].escalation_record_ref = Some(unannounced.clone());
    store.save(&mut p).unwrap();

    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let d = get(console.addr, &format!("/api/jobs/{GATED}")).json();
    let escalations = d["escalations"].as_array().unwrap();
    let mts: Vec<&str> = escalations.iter().map(|e| e["mt_id"].as_str().unwrap()).collect();
    assert_eq!(mts, ["MT-001", "MT-002"], "one row per escalation, not per record version: {escalations:?}");
    let first = &escalations[0];
    assert_eq!(first["to_level"], 1);
    assert_eq!(first["record_ref"]["sha256"], fx.escalation_record.sha256.as_str());
    assert_eq!(first["latest_record_ref"]["sha256"], newest.sha256.as_str());
    assert_eq!(first["latest_record"]["remediation"]["success_level"], 1);
    assert!(first["latest_error"].is_null());
    assert_eq!(escalations[1]["record_ref"]["sha256"], unannounced.sha256.as_str());
    assert_eq!(escalations[1]["record"]["version"], 1);
}

#[test]
fn an_unreadable_progress_artifact_is_reported_not_hidden() {
    let fx = fixture();
    let path = fx.job(GATED).progress_artifact();
    let text = std::fs::read_to_string(&path).unwrap().replace("iteration_limit", "edited_by_hand");
    std::fs::write(&path, text).unwrap();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let d = get(console.addr, &format!("/api/jobs/{GATED}")).json();
    assert!(d["progress"].is_null());
    assert!(d["progress_error"].as_str().unwrap().contains("content_sha256"), "{}", d["progress_error"]);
}

#[test]
fn events_are_filtered_by_type_mt_and_seq_and_link_their_artifacts() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let base = format!("/api/jobs/{GATED}/events");

    let all = get(console.addr, &base).json();
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 15);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order");
    assert!(all["event_types"].as_array().unwrap().contains(&json!("FR-EVT-MT-015")));
    assert_eq!(all["mt_ids"], json!(["MT-001", "MT-002"]));

    let distill = get(console.addr, &format!("{base}?type=FR-EVT-MT-015")).json();
    assert_eq!(distill["events"].as_array().unwrap().len(), 1);
    assert_eq!(distill["events"][0]["event_name"], "micro_task_distillation_candidate");

    let mt2 = get(console.addr, &format!("{base}?mt=MT-002")).json();
    assert!(mt2["events"].as_array().unwrap().iter().all(|e| e["mt_id"] == "MT-002"));
    assert_eq!(mt2["events"].as_array().unwrap().len(), 4);

    let after = get(console.addr, &format!("{base}?after=13")).json();
    let after_seqs: Vec<_> = after["events"].as_array().unwrap().iter().map(|e| e["seq"].clone()).collect();
    assert_eq!(after_seqs, [json!(14), json!(15)]);

    let validation = get(console.addr, &format!("{base}?type=FR-EVT-MT-012")).json();
    let refs = validation["events"][0]["artifact_refs"].as_array().unwrap();
    let fields: Vec<_> = refs.iter().map(|r| r["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["payload.stdout_ref", "payload.diff_ref"]);
    assert_eq!(refs[0]["sha256"], fx.stdout.sha256.as_str());

    assert_eq!(get(console.addr, &format!("{base}?after=twelve")).status, 400);
    assert_eq!(get(console.addr, "/api/jobs/missing/events").status, 404);
}

#[test]
fn a_step_lists_its_files_with_their_hashes() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let r = get(console.addr, &format!("/api/jobs/{GATED}/steps/MT-001_iter-001"));
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    let names: Vec<_> = d["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["context_snapshot.json", "output.json", "prompt.txt", "response.txt"]);
    let prompt = d["files"].as_array().unwrap().iter().find(|f| f["name"] == "prompt.txt").unwrap();
    assert_eq!(prompt["sha256"], fx.prompt.sha256.as_str());
    assert_eq!(prompt["path"], fx.prompt.path.as_str());
    let fields: Vec<_> =
        d["output_refs"].as_array().unwrap().iter().map(|r| r["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "output.context_snapshot_ref",
            "output.prompt_snapshot_ref",
            "output.output_snapshot_ref",
            "output.validation_ref"
        ]
    );
    assert_eq!(d["ledger_step"]["status"], "completed");
    assert_eq!(d["iteration"]["outcome"], "RETRY");
    assert_eq!(get(console.addr, &format!("/api/jobs/{GATED}/steps/MT-009_iter-001")).status, 404);
}

#[test]
fn the_ledger_view_shows_records_and_the_verified_chain() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let d = get(console.addr, &format!("/api/jobs/{GATED}/ledger")).json();
    let kinds: Vec<_> =
        d["records"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["header", "step", "step", "step", "step", "step"]);
    assert_eq!(d["records"][2]["record"]["status"], "completed");
    assert_eq!(
        d["records"][2]["record"]["output_artifact_ref"]["path"].as_str().unwrap().split('/').next_back(),
        Some("output.json")
    );
    assert_eq!(d["chain"]["ledger_ok"], true, "{}", d["chain"]);
    assert_eq!(d["chain"]["all_ok"], true, "{}", d["chain"]);
    assert_eq!(d["chain"]["ledger_records"], 6);
    assert_eq!(d["chain"]["events"], 15);
}

#[test]
fn a_tampered_ledger_is_reported_as_a_broken_chain() {
    let fx = fixture();
    let path = fx.job(GATED).run_ledger();
    let text = std::fs::read_to_string(&path).unwrap().replacen("\"in_progress\"", "\"completed\"", 1);
    std::fs::write(&path, text).unwrap();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let d = get(console.addr, &format!("/api/jobs/{GATED}/ledger")).json();
    assert_eq!(d["chain"]["ledger_ok"], false);
    assert_eq!(d["chain"]["all_ok"], false);
    let problems = d["chain"]["problems"].as_array().unwrap();
    assert_eq!(problems[0]["file"], "run_ledger.jsonl");
    assert_eq!(problems[0]["line"], 2);
    assert!(d["read_error"].is_string(), "the broken chain is not shown as if it were whole");
}

#[test]
fn artifacts_are_served_with_their_verified_hash_and_sidecar() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));

    let stdout = get(console.addr, &format!("/api/artifacts/{}?path={}", fx.stdout.sha256, fx.stdout.path));
    assert_eq!(stdout.status, 200);
    let a = stdout.json();
    assert_eq!(a["text"], "running 3 tests\ntest parses_major ... FAILED\n");
    assert_eq!(a["verified"], true);
    assert_eq!(a["meta"]["kind"], "stdout");
    assert_eq!(a["size_bytes"], fx.stdout.size_bytes.unwrap());

    let no_path = get(console.addr, &format!("/api/artifacts/{}", fx.diff.sha256)).json();
    assert!(no_path["text"].as_str().unwrap().starts_with("diff --git"));

    let prompt = get(
        console.addr,
        &format!("/api/artifacts/{}?path={}&job={GATED}", fx.prompt.sha256, fx.prompt.path),
    );
    assert_eq!(prompt.status, 200);
    assert!(prompt.json()["text"].as_str().unwrap().contains("Implement parse_version"));
}

#[test]
fn artifact_requests_outside_the_stores_or_with_the_wrong_hash_are_refused() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let sha = &fx.stdout.sha256;
    let cases = [
        (format!("/api/artifacts/{sha}?path=sha256/00/{sha}"), 400),
        (format!("/api/artifacts/{sha}?path=../../etc/passwd&job={GATED}"), 400),
        (format!("/api/artifacts/{sha}?path=/etc/passwd&job={GATED}"), 400),
        (format!("/api/artifacts/{sha}?path=job.json"), 400),
        ("/api/artifacts/not-a-hash".to_owned(), 400),
        (format!("/api/artifacts/{}", "0".repeat(64)), 404),
        (format!("/api/artifacts/{sha}?path=job.json&job={GATED}"), 409),
        (format!("/api/artifacts/{}?path={}&job={GATED}", fx.stdout.sha256, fx.prompt.path), 409),
    ];
    for (path, status) in cases {
        let r = get(console.addr, &path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    // A blob whose bytes changed after it was stored.
    let blob = fx.state_dir().join("artifacts").join(&fx.diff.path);
    std::fs::write(&blob, b"tampered").unwrap();
    assert_eq!(get(console.addr, &format!("/api/artifacts/{}", fx.diff.sha256)).status, 409);
}

#[test]
fn a_paused_job_is_continued_from_the_console() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());

    let r = post(
        console.addr,
        &format!("/api/jobs/{GATED}/gate"),
        r#"{"decision":"continue","note":"raise the limit"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["recorded"]["decision"], "continue");
    assert_eq!(body["recorded"]["actor"]["user_id"], mtx_console::CONSOLE_USER_ID);
    assert_eq!(body["resumed"], true);
    assert_eq!(
        actions.calls(),
        [format!("gate {GATED} continue raise the limit"), format!("resume {GATED}")]
    );

    // The views show what the executor recorded: no gate, the decision in the ledger,
    // FR-EVT-MTX-002 and the resume in the Flight Recorder.
    let d = get(console.addr, &format!("/api/jobs/{GATED}")).json();
    assert!(d["pending_gate"].is_null());
    assert_eq!(d["progress"]["status"], "in_progress");
    assert_eq!(d["decisions"][0]["record"]["decision"], "continue");
    let ledger = get(console.addr, &format!("/api/jobs/{GATED}/ledger")).json();
    let last = ledger["records"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "gate_decision");
    assert_eq!(last["record"]["gate_reason"], "iteration_limit");
    assert_eq!(ledger["chain"]["all_ok"], true, "{}", ledger["chain"]);
    let events = get(console.addr, &format!("/api/jobs/{GATED}/events?after=15")).json();
    let types: Vec<_> =
        events["events"].as_array().unwrap().iter().map(|e| e["event_type"].clone()).collect();
    assert_eq!(types, [json!("FR-EVT-MTX-002"), json!("FR-EVT-MT-008")]);

    // A second decision finds no gate: refused, reported, and the job is not resumed again.
    let again = post(console.addr, &format!("/api/jobs/{GATED}/gate"), r#"{"decision":"skip"}"#);
    assert_eq!(again.status, 409);
    assert!(again.json()["error"].as_str().unwrap().contains("not paused"));
    assert_eq!(actions.calls().len(), 3);
}

#[test]
fn a_decision_recorded_elsewhere_is_shown_and_the_job_resumed_on_request() {
    let fx = fixture();
    // As `mtx gate` leaves it: the decision is on the pending gate, the job still waits.
    let store = mtx_store::ProgressStore::new(&fx.job(GATED).progress_artifact());
    let mut p: mtx_types::ProgressArtifact = store.load().unwrap();
    p.current_state.pending_gate.as_mut().unwrap().decision_ref = Some(fx.prompt.clone());
    store.save(&mut p).unwrap();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let d = get(console.addr, &format!("/api/jobs/{GATED}")).json();
    assert_eq!(d["gate_decided"], true);
    assert_eq!(d["consent_decided"], false);

    assert_eq!(post(console.addr, &format!("/api/jobs/{GATED}/resume"), "[]").status, 400);
    let r = post(console.addr, &format!("/api/jobs/{GATED}/resume"), "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(actions.calls(), [format!("resume {GATED}")]);
    assert!(get(console.addr, &format!("/api/jobs/{GATED}")).json()["pending_gate"].is_null());
    assert_eq!(post(console.addr, "/api/jobs/nope/resume", "{}").status, 404);
}

#[test]
fn a_failed_resume_is_reported_and_the_recorded_decision_stands() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    actions.fail_resume.store(true, std::sync::atomic::Ordering::SeqCst);
    let console = start(fx.state_dir(), None, actions.clone());
    let r = post(console.addr, &format!("/api/jobs/{GATED}/gate"), r#"{"decision":"continue"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["recorded"]["decision"], "continue");
    assert_eq!(body["resumed"], false);
    assert!(body["resume_error"].as_str().unwrap().contains("workspace"));
    let d = get(console.addr, &format!("/api/jobs/{GATED}")).json();
    assert_eq!(d["gate_decided"], true, "the page offers resume, not a second decision");
    let retry = post(console.addr, &format!("/api/jobs/{GATED}/resume"), "{}");
    assert_eq!(retry.status, 409);
    assert!(retry.json()["error"].as_str().unwrap().contains("workspace"));
}

#[test]
fn a_running_job_takes_skip_and_cancel_requests_and_a_paused_one_refuses_them() {
    let fx = fixture();
    // The gated job, resumed: in progress on its active MT.
    let actions = FakeActions::new(fx.state_dir());
    actions.resume(GATED).unwrap();
    let console = start(fx.state_dir(), None, actions.clone());
    let r = post(console.addr, &format!("/api/jobs/{GATED}/request"), r#"{"kind":"skip","note":"dup"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["requested"]["kind"], "skip");
    assert_eq!(r.json()["requested"]["requested_by"], "operator-console");
    let r = post(console.addr, &format!("/api/jobs/{GATED}/request"), r#"{"kind":"cancel"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        actions.calls()[1..],
        [format!("request {GATED} skip dup"), format!("request {GATED} cancel -")]
    );

    let bad = post(console.addr, &format!("/api/jobs/{GATED}/request"), r#"{"kind":"pause"}"#);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("skip, cancel"));
    let paused = post(console.addr, &format!("/api/jobs/{CONSENT}/request"), r#"{"kind":"skip"}"#);
    assert_eq!(paused.status, 409, "{}", paused.body);
    assert!(paused.json()["error"].as_str().unwrap().contains("paused"));
    assert_eq!(post(console.addr, "/api/jobs/nope/request", r#"{"kind":"skip"}"#).status, 404);
}

#[test]
fn skip_and_abort_are_recorded_as_sent() {
    for decision in ["skip", "abort"] {
        let fx = fixture();
        let actions = FakeActions::new(fx.state_dir());
        let console = start(fx.state_dir(), None, actions.clone());
        let r = post(
            console.addr,
            &format!("/api/jobs/{GATED}/gate"),
            &format!(r#"{{"decision":"{decision}"}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(actions.calls()[0], format!("gate {GATED} {decision} -"));
        let ledger = mtx_store::ledger::read_records(&fx.job(GATED).run_ledger()).unwrap();
        assert!(matches!(&ledger.last().unwrap().record,
            LedgerRecord::GateDecision(g) if g.decision == decision));
    }
}

#[test]
fn bad_gate_requests_are_refused_before_any_action() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let gate = format!("/api/jobs/{GATED}/gate");
    for (body, status) in [
        (r#"{"decision":"maybe"}"#, 400),
        (r#"{"decision":"continue","extra":1}"#, 400),
        (r#"{"note":"x"}"#, 400),
        ("not json", 400),
    ] {
        let r = post(console.addr, &gate, body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    assert_eq!(post(console.addr, "/api/jobs/nope/gate", r#"{"decision":"continue"}"#).status, 404);
    assert_eq!(
        post(console.addr, &format!("/api/jobs/{DONE}/gate"), r#"{"decision":"continue"}"#).status,
        409
    );
    assert_eq!(
        actions.calls(),
        [format!("gate {DONE} continue -")],
        "only the completed job reached the executor"
    );
    assert_eq!(get(console.addr, &gate).status, 405);
}

#[test]
fn consent_is_recorded_and_the_job_resumed() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let r = post(
        console.addr,
        &format!("/api/jobs/{CONSENT}/consent"),
        r#"{"approve":true,"note":"ok to send"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recorded"]["approved"], true);
    assert_eq!(actions.calls(), [format!("consent {CONSENT} true ok to send"), format!("resume {CONSENT}")]);
    let events = get(console.addr, &format!("/api/jobs/{CONSENT}/events?type=FR-EVT-CLOUD-002")).json();
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    let d = get(console.addr, &format!("/api/jobs/{CONSENT}")).json();
    assert!(d["pending_consent"].is_null());
    assert_eq!(d["decisions"][0]["kind"], "consent");

    let none_pending = post(console.addr, &format!("/api/jobs/{GATED}/consent"), r#"{"approve":false}"#);
    assert_eq!(none_pending.status, 409);
    assert_eq!(
        post(console.addr, &format!("/api/jobs/{CONSENT}/consent"), r#"{"approve":"yes"}"#).status,
        400
    );
}

#[test]
fn cross_site_requests_never_reach_the_executor() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let path = format!("/api/jobs/{GATED}/gate");
    let body = Some(r#"{"decision":"abort"}"#);
    let own = format!("http://{}", console.addr);
    let cases: [&[(&str, &str)]; 5] = [
        &[("Content-Type", "application/json"), ("Origin", "http://evil.example")],
        &[("Content-Type", "application/json"), ("Origin", "null")],
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Origin", own.as_str())],
        &[("Content-Type", "text/plain"), ("X-Mtx-Console", "1")],
        &[("Content-Type", "application/json")],
    ];
    for headers in cases {
        let r = request(console.addr, "POST", &path, headers, body);
        assert_eq!(r.status, 403, "{headers:?}");
    }
    assert!(actions.calls().is_empty());
    let same_origin = request(
        console.addr,
        "POST",
        &path,
        &[("Content-Type", "application/json"), ("Origin", own.as_str())],
        body,
    );
    assert_eq!(same_origin.status, 200, "{}", same_origin.body);
}

#[test]
fn without_a_token_only_loopback_host_names_are_served() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let rebound = request(console.addr, "GET", "/api/jobs", &[("Host", "attacker.example:7878")], None);
    assert_eq!(rebound.status, 403);
    let localhost = request(console.addr, "GET", "/api/jobs", &[("Host", "localhost:7878")], None);
    assert_eq!(localhost.status, 200);
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), Some("tok-123"), actions.clone());
    for path in
        ["/", "/api/jobs", &format!("/api/jobs/{GATED}"), &format!("/api/artifacts/{}", fx.stdout.sha256)]
    {
        assert_eq!(get(console.addr, path).status, 401, "{path}");
        assert_eq!(get(console.addr, &format!("{path}?token=wrong")).status, 401, "{path}");
    }
    assert_eq!(get(console.addr, "/?token=tok-123").status, 200);
    let bearer = request(console.addr, "GET", "/api/jobs", &[("Authorization", "Bearer tok-123")], None);
    assert_eq!(bearer.status, 200);
    // A token also lets a non-loopback Host through (the console was bound to be reached).
    let remote =
        request(console.addr, "GET", "/api/jobs?token=tok-123", &[("Host", "console.lan:7878")], None);
    assert_eq!(remote.status, 200);
    let no_token_post = post(console.addr, &format!("/api/jobs/{GATED}/gate"), r#"{"decision":"continue"}"#);
    assert_eq!(no_token_post.status, 401);
    assert!(actions.calls().is_empty());
}

#[test]
fn serve_refuses_a_non_loopback_address_without_a_token() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fx = fixture();
    let config = ConsoleConfig {
        state_dir: fx.state_dir().to_owned(),
        addr: "0.0.0.0:0".parse().unwrap(),
        token: None,
    };
    let actions: std::sync::Arc<dyn OperatorActions> = FakeActions::new(fx.state_dir());
    let err = runtime.block_on(mtx_console::serve(config, actions, None)).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<mtx_console::ConsoleError>(),
        Some(mtx_console::ConsoleError::TokenRequired(_))
    ));
}

#[test]
fn the_page_is_served_with_protective_headers() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let page = get(console.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("mtx operator console"));
    assert!(page.body.contains("gate-continue"), "the script is embedded");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(page.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(get(console.addr, "/no/such/page").status, 404);
}

#[test]
fn the_live_stream_sends_events_recorded_after_it_opened() {
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let mut stream = TcpStream::connect(console.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET /api/jobs/{GATED}/stream?after=14 HTTP/1.1\r\nHost: {}\r\n\r\n", console.addr)
        .unwrap();

    // The stream first replays what follows `after` (seq 15), then what is recorded later.
    let fr = FlightRecorder::open(&fx.job(GATED).events(), support::correlation(GATED, WP)).unwrap();
    fr.emit(Event::new("FR-EVT-MT-007", json!({"wp_id": WP, "mt_id": "MT-002"}))).unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains("FR-EVT-MT-007") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"));
    let first = text.find("id: 15").expect("seq 15 replayed");
    let second = text.find("id: 16").expect("seq 16 streamed");
    assert!(first < second);
    assert!(text.contains("event: fr"));
    assert!(!text.contains("id: 14\n"), "nothing at or before `after`");
}

#[test]
fn the_live_stream_says_when_the_job_record_changes() {
    // The executor marks a finished job in job.json after its last FR record, so a page
    // following the FR records alone would never see the job finish.
    let fx = fixture();
    let console = start(fx.state_dir(), None, FakeActions::new(fx.state_dir()));
    let mut stream = TcpStream::connect(console.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET /api/jobs/{DONE}/stream?after=0 HTTP/1.1\r\nHost: {}\r\n\r\n", console.addr).unwrap();
    let mut seen = Vec::new();
    let mut read_until = |wanted: &str| {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(wanted) {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the stream closed before {wanted:?}: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    // The replayed record comes from the same look at the job that noted its job.json.
    let replayed = read_until("event: fr");
    assert!(!replayed.contains("event: job"), "an unchanged record is not announced: {replayed}");

    let path = fx.job(DONE).job_json();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["status"] = json!("completed_with_issues");
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    let text = read_until("data: completed_with_issues");
    assert!(text.contains("event: job\ndata: completed_with_issues"), "{text}");
}
