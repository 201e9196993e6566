//! End-to-end tests of the `mtx` binary on the examples: the newcomer's path, word for
//! word. They live here rather than in tests/ because only the package that owns the
//! binary gets its path (`CARGO_BIN_EXE_mtx`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{RunningConsole, job_event_types, mtx, repo_root, run_example, text};

fn scratch_workspace(state: &Path, example: &str) -> PathBuf {
    std::fs::read_dir(state.join("workspaces"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(example))
        .expect("the example ran in a scratch workspace")
}

fn crate_tests_pass(dir: &Path) -> bool {
    Command::new("cargo")
        .args(["test", "--offline", "--quiet"])
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

#[test]
fn wordfreq_escalates_succeeds_and_leaves_verifiable_evidence() {
    let state = tempfile::tempdir().unwrap();
    let (code, summary, events) = run_example("wordfreq", state.path());
    assert_eq!(code, 0, "summary: {summary}");
    assert_eq!(summary["status"], "completed");
    let job = summary["job_id"].as_str().unwrap().to_owned();
    for wanted in ["FR-EVT-MT-001", "FR-EVT-MT-005", "FR-EVT-MT-012", "FR-EVT-MT-015", "FR-EVT-MT-009"] {
        assert!(events.iter().any(|e| e == wanted), "{wanted} missing from the live events {events:?}");
    }
    assert!(summary["summary"]["escalations"].as_u64().unwrap() >= 1);
    assert!(summary["summary"]["distillation_candidates"].as_u64().unwrap() >= 1);
    assert_eq!(
        job_event_types(&job, state.path()),
        events,
        "the recorded events are the ones the run showed"
    );

    // The repository's example is untouched; the scratch copy now passes its tests.
    let workspace = scratch_workspace(state.path(), "wordfreq");
    assert!(crate_tests_pass(&workspace), "the example crate's tests pass after the run");
    assert!(!crate_tests_pass_without_change(), "the example crate in the repository still fails its tests");

    let verify = mtx(&["verify", &job, "--state-dir", state.path().to_str().unwrap()], state.path());
    assert!(verify.status.success(), "{}", text(&verify));

    // Every recorded plugin decision reproduces; the escalation left a training pair.
    let state_arg = state.path().to_str().unwrap();
    let replay = mtx(&["replay", &job, "--state-dir", state_arg], state.path());
    assert!(replay.status.success(), "{}", text(&replay));
    assert!(text(&replay).contains("escalation-default"), "{}", text(&replay));
    let export = mtx(&["distill", "export", "--state-dir", state_arg], state.path());
    assert!(export.status.success(), "{}", text(&export));
    let records: Vec<Value> =
        String::from_utf8_lossy(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!records.is_empty(), "the distillation export holds the escalation's pair");
    let metrics =
        mtx(&["metrics", "--job", &job, "--format", "prometheus", "--state-dir", state_arg], state.path());
    assert!(metrics.status.success(), "{}", text(&metrics));
    for line in
        String::from_utf8_lossy(&metrics.stdout).lines().filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "prometheus sample {line:?} has a numeric value");
    }

    let jobs = mtx(&["jobs", "--state-dir", state.path().to_str().unwrap(), "--json"], state.path());
    let rows: Vec<Value> = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(rows[0]["profile_id"], "micro_task_executor_v1");
    assert_eq!(rows[0]["status"], "completed");
    // The Job History is an index: lost, it is rebuilt from the job directories.
    for file in ["history.sqlite", "history.sqlite-wal", "history.sqlite-shm"] {
        let _ = std::fs::remove_file(state.path().join(file));
    }
    let lost = mtx(&["jobs", "--state-dir", state_arg], state.path());
    assert_eq!(lost.status.code(), Some(2), "{}", text(&lost));
    let rebuilt = mtx(&["jobs", "--reindex", "--state-dir", state_arg, "--json"], state.path());
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    assert!(
        String::from_utf8_lossy(&rebuilt.stderr)
            .contains(&format!("reindexed 1 jobs ({} events)", events.len())),
        "{}",
        text(&rebuilt)
    );
    let rows: Vec<Value> = serde_json::from_slice(&rebuilt.stdout).unwrap();
    assert_eq!(
        (rows[0]["job_id"].as_str(), rows[0]["status"].as_str()),
        (Some(job.as_str()), Some("completed"))
    );

    // 5.4: the end-of-job summary, answered by the cassette's JOB-SUMMARY entry.
    let summary_path = state.path().join("jobs").join(&job).join("summaries/job_summary.json");
    let summary: Value = serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    assert!(summary["summary"].as_str().is_some_and(|t| t.contains("MT-001")), "{summary}");
    assert_eq!(summary["error"], Value::Null);
    let show = mtx(&["show", &job, "--state-dir", state_arg], state.path());
    assert!(show.status.success(), "{}", text(&show));
    let shown = text(&show);
    assert!(shown.contains("summary (end-of-job model call)"), "{shown}");
    assert!(shown.contains(summary["summary"].as_str().unwrap()), "{shown}");
}

fn crate_tests_pass_without_change() -> bool {
    let copy = tempfile::tempdir().unwrap();
    let src = repo_root().join("examples/wordfreq/crate");
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        let dest = copy.path().join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, dest).unwrap();
    }
    crate_tests_pass(copy.path())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn semver_lite_pauses_at_the_hard_gate_and_resumes_after_the_decision() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap().to_owned();
    let (code, summary, events) = run_example("semver-lite", state.path());
    assert_eq!(code, 3, "paused jobs exit 3; summary: {summary}");
    assert_eq!(summary["status"], "awaiting_user");
    assert!(events.iter().any(|e| e == "FR-EVT-MT-006"), "hard gate event missing: {events:?}");
    assert!(events.iter().any(|e| e == "FR-EVT-MT-005"));
    let job = summary["job_id"].as_str().unwrap().to_owned();

    // Resuming without a decision is refused and changes nothing.
    let early = mtx(&["resume", &job, "--state-dir", &state_arg], state.path());
    assert_eq!(early.status.code(), Some(2), "{}", text(&early));
    // Skip and cancel are requests to a running job; a paused one points at `mtx gate`.
    for verb in ["skip", "cancel"] {
        let refused = mtx(&[verb, &job, "--state-dir", &state_arg], state.path());
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(text(&refused).contains("mtx gate"), "{}", text(&refused));
    }

    let gate = mtx(
        &["gate", &job, "--decision", "continue", "--note", "reviewed", "--state-dir", &state_arg],
        state.path(),
    );
    assert!(gate.status.success(), "{}", text(&gate));
    let resumed = mtx(&["resume", &job, "--state-dir", &state_arg, "--json"], state.path());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));

    let all = job_event_types(&job, state.path());
    let gate_at = all.iter().position(|e| e == "FR-EVT-MT-006").unwrap();
    let decided_at = all.iter().position(|e| e == "FR-EVT-MTX-002").expect("the decision is recorded");
    let resumed_at = all.iter().position(|e| e == "FR-EVT-MT-008").expect("the resume is recorded");
    assert!(gate_at < decided_at && decided_at < resumed_at);
    assert_eq!(all.last().map(String::as_str), Some("FR-EVT-MT-009"));
    assert!(crate_tests_pass(&scratch_workspace(state.path(), "semver-lite")));

    let verify = mtx(&["verify", &job, "--state-dir", &state_arg], state.path());
    assert!(verify.status.success(), "{}", text(&verify));
    let replay = mtx(&["replay", &job, "--state-dir", &state_arg], state.path());
    assert!(replay.status.success(), "a paused and resumed run replays identically: {}", text(&replay));
}

#[test]
fn bad_input_gets_exit_code_2_and_a_specific_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = mtx(&["run", "no-such-packet.md"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("no-such-packet.md"), "{}", text(&missing));

    std::fs::write(
        dir.path().join("mtx.toml"),
        "[plugins.planner]\ncomponent = \"builtin:planner-default\"\ncolour = 1\n",
    )
    .unwrap();
    let bad_config = mtx(&["plugins", "--config", "mtx.toml"], dir.path());
    assert_eq!(bad_config.status.code(), Some(2));
    assert!(text(&bad_config).contains("colour"), "{}", text(&bad_config));

    let no_state = mtx(&["jobs", "--state-dir", "nowhere"], dir.path());
    assert_eq!(no_state.status.code(), Some(2));
    assert!(text(&no_state).contains("no mtx state"), "{}", text(&no_state));
}

#[test]
fn plugins_lists_every_default_with_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let out = mtx(&["plugins", "--json", "--state-dir", dir.path().to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<&str> = rows.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["planner", "model_backend", "lora_selector", "escalation_policy", "validators", "validators"]
    );
    for row in &rows {
        assert_eq!(row["sha256"].as_str().unwrap().len(), 64, "{row}");
        assert!(row["version"].is_string(), "{row}");
        assert_eq!(row["grants"], serde_json::json!([]), "defaults grant nothing");
    }
}

#[test]
fn help_and_version_work_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    assert!(mtx(&["--version"], dir.path()).status.success());
    for sub in [
        "run", "resume", "skip", "cancel", "gate", "consent", "jobs", "show", "events", "ledger", "verify",
        "replay", "metrics", "plugins", "console",
    ] {
        let out = mtx(&[sub, "--help"], dir.path());
        assert!(out.status.success(), "{sub} --help");
        assert!(text(&out).contains("Examples:"), "{sub} --help shows examples");
    }
}

/// One HTTP request to the console on loopback; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         X-Mtx-Console: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_console_shows_a_real_gated_run_and_continues_it() {
    let state = tempfile::tempdir().unwrap();
    let (code, summary, _) = run_example("semver-lite", state.path());
    assert_eq!(code, 3);
    let job = summary["job_id"].as_str().unwrap().to_owned();

    let console = RunningConsole::start(state.path());
    let port = console.port;

    let (status, jobs) = http(port, "GET", "/api/jobs", None);
    assert_eq!(status, 200, "{jobs}");
    assert!(jobs.contains(&job) && jobs.contains("micro_task_executor_v1"), "{jobs}");
    let (status, events) = http(port, "GET", &format!("/api/jobs/{job}/events?type=FR-EVT-MT-005"), None);
    assert_eq!(status, 200);
    assert!(events.contains("FR-EVT-MT-005"), "{events}");

    let (status, body) = http(
        port,
        "POST",
        &format!("/api/jobs/{job}/gate"),
        Some(r#"{"decision":"continue","note":"from the console"}"#),
    );
    assert_eq!(status, 200, "{body}");

    // The console resumes the job in the background; wait for the executor to finish it.
    let mut finished = false;
    for _ in 0..240 {
        let (_, detail) = http(port, "GET", &format!("/api/jobs/{job}"), None);
        if detail.contains("\"completed\"") && !detail.contains("\"in_progress\"") {
            finished = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(console);
    assert!(finished, "the job resumed from the console completes");
    let all = job_event_types(&job, state.path());
    assert!(all.iter().any(|e| e == "FR-EVT-MTX-002"), "the console's decision is recorded like the CLI's");
    assert_eq!(all.last().map(String::as_str), Some("FR-EVT-MT-009"));
    let verify = mtx(&["verify", &job, "--state-dir", state.path().to_str().unwrap()], state.path());
    assert!(verify.status.success(), "{}", text(&verify));
}
