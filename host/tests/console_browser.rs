//! The operator console in a real browser on real runs: `mtx run examples/wordfreq`
//! (escalates, succeeds, leaves a distillation candidate) and `mtx run examples/semver-lite`
//! (pauses at a hard gate) write one state directory; `mtx console` serves it with the
//! executor's own actions; headless Chromium (Debian's `chromium` package, driven over the
//! DevTools protocol) checks the Job History, finds the escalation and the FR-EVT-MT-015
//! event of the wordfreq job, and clicks "Continue" on the gated semver-lite job. The state
//! directory then shows the decision recorded as `mtx gate` records it and the job resumed
//! to completion. Screenshots are saved under `$CARGO_TARGET_TMPDIR/mtx-console-real-runs/`.
//!
//! The test fails (it does not skip) when Chromium is missing and cannot be installed.

#[path = "../crates/mtx-console/tests/chromium/mod.rs"]
mod chromium;
mod support;

use std::path::{Path, PathBuf};

use chromium::{Chromium, PNG_SIGNATURE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{CLI_USER, RunningConsole, job_event_types, job_events, mtx, mtx_json, run_example, text};

/// The note the operator types next to the decision, in the page and on the command line.
const NOTE: &str = "reviewed in the console";

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mtx-console-real-runs")
}

fn first_event<'a>(events: &'a [Value], event_type: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event_type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} among {} events", events.len()))
}

/// The ledger's gate decisions of a job (`mtx ledger --json`).
fn gate_decisions(job: &str, state: &Path) -> Vec<Value> {
    let ledger = mtx_json(&["ledger", job], state);
    ledger
        .as_array()
        .expect("ledger rows")
        .iter()
        .filter(|row| row["record"]["kind"] == "gate_decision")
        .map(|row| row["record"].clone())
        .collect()
}

/// The JSON document an artifact handle names (`sha256/...` in the artifact store, any
/// other path in the job's directory), after checking its bytes hash to the handle's sha256.
fn stored_json(state: &Path, job: &str, handle: &Value) -> Value {
    let rel = handle["path"].as_str().unwrap_or_else(|| panic!("not an artifact handle: {handle}"));
    let path = if rel.starts_with("sha256/") {
        state.join("artifacts").join(rel)
    } else {
        state.join("jobs").join(job).join(rel)
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(hex::encode(Sha256::digest(&bytes)), handle["sha256"].as_str().unwrap(), "{}", path.display());
    serde_json::from_slice(&bytes).unwrap()
}

/// The decision document a ledger row names.
fn decision_document(state: &Path, job: &str, record: &Value) -> Value {
    stored_json(state, job, &record["decision_ref"])
}

/// `value` without the fields that name one particular decision (its id, time, operator
/// and the file it was written to), to compare what the console and the CLI record.
fn without_identity(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(obj) = v.as_object_mut() {
        for key in ["decision_id", "decided_at", "decision_ref", "job_id"] {
            obj.remove(key);
        }
        if let Some(actor) = obj.get_mut("actor").and_then(Value::as_object_mut) {
            actor.remove("user_id");
        }
    }
    v
}

/// What `mtx gate <job> --decision continue --note NOTE` records for a semver-lite run, in
/// a state directory of its own: (ledger row, FR-EVT-MTX-002 event, decision document).
fn recorded_by_the_cli() -> (Value, Value, Value) {
    let state = tempfile::tempdir().unwrap();
    let (code, summary, _) = run_example("semver-lite", state.path());
    assert_eq!(code, 3, "semver-lite pauses at its hard gate: {summary}");
    let job = summary["job_id"].as_str().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let gate =
        mtx(&["gate", job, "--decision", "continue", "--note", NOTE, "--state-dir", state_arg], state.path());
    assert!(gate.status.success(), "{}", text(&gate));
    let record = gate_decisions(job, state.path()).pop().expect("mtx gate writes a ledger row");
    let event = first_event(&job_events(job, state.path()), "FR-EVT-MTX-002").clone();
    let document = decision_document(state.path(), job, &record);
    (record, event, document)
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > PNG_SIGNATURE.len(), "{} is empty", path.display());
    assert!(bytes.starts_with(PNG_SIGNATURE), "{} is not a PNG", path.display());
    println!("screenshot: {}", path.display());
}

#[test]
fn an_operator_reviews_real_example_runs_in_chromium_and_continues_the_gated_one() {
    // First, so that a machine without Chromium fails at once.
    let chromium = Chromium::launch();
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let (code, summary, _) = run_example("wordfreq", s);
    assert_eq!(code, 0, "wordfreq completes: {summary}");
    let wordfreq = summary["job_id"].as_str().unwrap().to_owned();
    let (code, summary, _) = run_example("semver-lite", s);
    assert_eq!(code, 3, "semver-lite pauses at its hard gate: {summary}");
    let semver = summary["job_id"].as_str().unwrap().to_owned();

    // What the page has to show, as the CLI reads it from the same state directory.
    let jobs = mtx_json(&["jobs"], s);
    let row = |job: &str| jobs.as_array().unwrap().iter().find(|r| r["job_id"] == job).unwrap().clone();
    let wf_events = job_events(&wordfreq, s);
    let escalation = first_event(&wf_events, "FR-EVT-MT-005")["payload"].clone();
    let candidates: Vec<&Value> = wf_events.iter().filter(|e| e["event_type"] == "FR-EVT-MT-015").collect();
    assert!(!candidates.is_empty(), "wordfreq leaves a distillation candidate");
    let candidate_ref = candidates[0]["payload"]["candidate_ref"].clone();
    let shown = mtx_json(&["show", &semver], s);
    let gate = shown["progress"]["current_state"]["pending_gate"].clone();
    assert!(gate["gate_reason"].is_string(), "semver-lite waits at a gate: {shown}");

    let console = RunningConsole::start(s);
    let mut page = chromium.new_page();
    let shots = shots_dir();
    // Screenshots of an earlier run must not stand in for this run's.
    let _ = std::fs::remove_dir_all(&shots);

    // Job History: both jobs, their profile and status; the gated one names its gate.
    page.navigate(&format!("{}/#/jobs", console.url()));
    page.wait_for("the two jobs", "document.querySelectorAll('tr.job-row').length === 2");
    for (job, status) in [(&wordfreq, "completed"), (&semver, "awaiting_user")] {
        let listed = page.text(&format!("tr.job-row[data-job=\"{job}\"]"));
        assert!(listed.contains("micro_task_executor_v1"), "{job} with its profile:\n{listed}");
        assert!(listed.contains(row(job)["wp_id"].as_str().unwrap()), "{job} with its WP:\n{listed}");
        assert_eq!(page.text(&format!("tr.job-row[data-job=\"{job}\"] .badge")), status, "{listed}");
    }
    let listed = page.text(&format!("tr.job-row[data-job=\"{semver}\"]"));
    assert!(listed.contains(&format!("gate: {}", gate["gate_reason"].as_str().unwrap())), "{listed}");
    page.screenshot(&shots.join("job-history.png"));

    // The wordfreq job: its escalation with the escalation record, its distillation candidate.
    page.click(&format!("tr.job-row[data-job=\"{wordfreq}\"] a"));
    page.wait_for("the escalations", "document.querySelector('#escalations tr.escalation')");
    let escalations = page.text("#escalations");
    for wanted in [
        format!("L{} {}", escalation["from_level"], escalation["from_model"].as_str().unwrap())
            + &escalation["from_lora"].as_str().map(|l| format!(" + {l}")).unwrap_or_default(),
        format!("L{} {}", escalation["to_level"], escalation["to_model"].as_str().unwrap()),
        escalation["reason"].as_str().unwrap().to_owned(),
        escalation["failure_category"].as_str().unwrap().to_owned(),
    ] {
        assert!(escalations.contains(&wanted), "{wanted:?} in the escalations:\n{escalations}");
    }
    // One row per escalation, each with its record readable (3.9.1: the newest version of
    // the record, with the remediation, joins the MT's last escalation).
    let escalation_count = wf_events.iter().filter(|e| e["event_type"] == "FR-EVT-MT-005").count();
    assert_eq!(
        page.eval("document.querySelectorAll('#escalations tr.escalation').length"),
        json!(escalation_count),
        "{escalations}"
    );
    assert_eq!(page.eval("document.querySelectorAll('#escalations .bad').length"), json!(0), "{escalations}");
    assert!(escalations.contains("succeeded at L"), "the remediation of the newest version:\n{escalations}");
    page.wait_for(
        "the distillation candidate",
        &format!("document.querySelectorAll('#candidates tr.candidate').length === {}", candidates.len()),
    );
    let stored = stored_json(s, &wordfreq, &candidate_ref);
    for (cell, who) in [("student", "student_attempt"), ("teacher", "teacher_success")] {
        let shown = page.text(&format!("#candidates tr.candidate td.{cell}"));
        assert!(shown.contains(stored[who]["model_id"].as_str().unwrap()), "the {who}:\n{shown}");
        assert!(shown.contains(stored[who]["outcome"].as_str().unwrap()), "the {who}:\n{shown}");
    }
    page.screenshot(&shots.join("wordfreq-job.png"));

    // The escalation record in the artifact viewer, its bytes checked against its sha256.
    let record_ref = &escalation["escalation_record_ref"];
    page.click("#escalations tr.escalation a");
    page.wait_for("the escalation record", "document.querySelector('#artifact-text')");
    assert!(page.text("#artifact-sha").contains(record_ref["sha256"].as_str().unwrap()));
    assert!(page.text("#artifact-text").contains("escalation_chain"), "an EscalationRecord");

    // The Flight Recorder, filtered to FR-EVT-MT-015, linking the candidate it names.
    page.eval(&format!("location.hash = '#/job/{wordfreq}/events'"));
    page.wait_for(
        "the escalation and the distillation events",
        "document.querySelector('tr.event[data-type=\"FR-EVT-MT-005\"]') \
         && document.querySelector('tr.event[data-type=\"FR-EVT-MT-015\"]')",
    );
    page.eval(
        "(() => { const t = document.querySelector('#filter-type'); t.value = 'FR-EVT-MT-015'; \
         t.dispatchEvent(new Event('change')); })()",
    );
    page.wait_for(
        "only the FR-EVT-MT-015 rows",
        &format!(
            "document.querySelectorAll('tr.event').length === {} \
             && document.querySelectorAll('tr.event[data-type=\"FR-EVT-MT-015\"]').length === {0}",
            candidates.len()
        ),
    );
    let link = page.eval("document.querySelector('tr.event[data-type=\"FR-EVT-MT-015\"] a').title");
    assert_eq!(link, candidate_ref["sha256"], "the event links the candidate it names");
    page.screenshot(&shots.join("wordfreq-distillation-events.png"));

    // The gated semver-lite job, reached from the Job History: Continue, with a note.
    page.click("#crumbs a");
    page.wait_for(
        "the Job History",
        &format!("document.querySelector('tr.job-row[data-job=\"{semver}\"] a')"),
    );
    page.click(&format!("tr.job-row[data-job=\"{semver}\"] a"));
    page.wait_for("the Continue button", "document.querySelector('#gate-continue')");
    assert_eq!(page.text("#gate-reason"), gate["gate_reason"].as_str().unwrap());
    page.eval(&format!("document.querySelector('#gate-note').value = {}", json!(NOTE)));
    page.screenshot(&shots.join("semver-lite-gate.png"));
    page.click("#gate-continue");
    // The console records the decision, then resumes the job, which runs to completion.
    page.wait_for(
        "the job completed after the decision",
        "document.querySelector('#gate-none') && document.querySelector('h1 .badge').innerText === 'completed' \
         && document.querySelector('#decisions')",
    );
    assert!(page.text("#decisions").contains("continue"), "{}", page.text("#decisions"));
    page.screenshot(&shots.join("semver-lite-after-continue.png"));

    // The state directory: the decision is recorded exactly as `mtx gate` records it
    // (ledger row, FR-EVT-MTX-002, decision document), by the console's operator.
    let decisions = gate_decisions(&semver, s);
    assert_eq!(decisions.len(), 1, "one decision: {decisions:?}");
    let record = &decisions[0];
    let events = job_events(&semver, s);
    let event = first_event(&events, "FR-EVT-MTX-002");
    let document = decision_document(s, &semver, record);
    assert_eq!(record["decision"], "continue");
    assert_eq!(record["gate_reason"], gate["gate_reason"]);
    assert_eq!(record["mt_id"], gate["mt_id"]);
    assert_eq!(event["payload"]["decision_id"], record["decision_id"]);
    assert_eq!(event["payload"]["decision_ref"], record["decision_ref"]);
    assert_eq!(document["decision_id"], record["decision_id"]);
    assert_eq!(document["notes"], NOTE);
    assert_eq!(document["actor"], json!({"kind": "human", "user_id": mtx_console::CONSOLE_USER_ID}));

    let (cli_record, cli_event, cli_document) = recorded_by_the_cli();
    assert_eq!(cli_document["actor"]["user_id"], CLI_USER);
    assert_eq!(without_identity(record), without_identity(&cli_record), "the ledger row");
    assert_eq!(without_identity(&document), without_identity(&cli_document), "the decision document");
    assert_eq!(without_identity(&event["payload"]), without_identity(&cli_event["payload"]), "the event");
    for field in ["event_name", "actor", "mt_id", "wp_id"] {
        assert_eq!(event[field], cli_event[field], "the event's {field}");
    }

    // And the job resumed after it: FR-EVT-MT-008 follows the decision, the job completed,
    // and its hash chains verify.
    let types = job_event_types(&semver, s);
    let at = |t: &str| types.iter().position(|e| e == t).unwrap_or_else(|| panic!("{t} in {types:?}"));
    assert!(at("FR-EVT-MT-006") < at("FR-EVT-MTX-002") && at("FR-EVT-MTX-002") < at("FR-EVT-MT-008"));
    assert_eq!(types.last().map(String::as_str), Some("FR-EVT-MT-009"));
    // `mtx show` reads job.json, which the executor writes before the Job History index.
    let resumed = mtx_json(&["show", &semver], s);
    assert_eq!(resumed["job"]["status"], "completed", "{}", resumed["job"]);
    assert_eq!(resumed["progress"]["status"], "completed");
    assert!(resumed["progress"]["current_state"]["pending_gate"].is_null(), "the gate is passed");
    let verify = mtx(&["verify", &semver, "--state-dir", s.to_str().unwrap()], s);
    assert!(verify.status.success(), "{}", text(&verify));
    drop(console);

    for name in [
        "job-history.png",
        "wordfreq-job.png",
        "wordfreq-distillation-events.png",
        "semver-lite-gate.png",
        "semver-lite-after-continue.png",
    ] {
        assert_png(&shots.join(name));
    }
}
