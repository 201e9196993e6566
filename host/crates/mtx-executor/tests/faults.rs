//! Crash and storage-fault tests of a whole job (MTX-SPEC 13.4, 8.5, 8.6): the process is
//! killed with SIGKILL at every named failpoint of the loop and at random moments, then
//! resumed until the job completes, and the result is compared with an uninterrupted run.
//!
//! A real kill cannot happen inside the test process, so each test re-executes this test
//! binary as a child (`--exact child_entry`) with `MTX_FAULTS_ROLE` selecting what the
//! child does (`run` a new job or `resume` one) on a job kept in a shared directory. The
//! parent decides where the child dies (`MTX_FAILPOINTS`, a timer, a file-size limit) and
//! checks what the child left behind.
//!
//! The comparison with the uninterrupted run (see `normalise`) ignores only what differs
//! between two runs by construction: wall-clock times, durations, random ids, the paths of
//! the two state directories, and the hashes of records that contain any of these.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mtx_executor::{ExecError, ExecutorSetup, NoObserver, resume_job, run_job};
use mtx_types::ExecutionPolicy;
use serde_json::{Value, json};
use support::{cassette, no_claim, write_and_claim};

const ROLE: &str = "MTX_FAULTS_ROLE";
const ROOT: &str = "MTX_FAULTS_ROOT";
const JOB: &str = "MTX_FAULTS_JOB";
const OUTCOME: &str = "MTX-FAULTS-OUTCOME ";

const A: &str = "src/a.txt";
const B: &str = "src/b.txt";
const C: &str = "src/c.txt";

/// The child side: runs or resumes the job under `MTX_FAULTS_ROOT` and prints how the call
/// ended on one line. Without `MTX_FAULTS_ROLE` (the ordinary test run) it only checks that
/// the scripted job's inputs are well formed.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let cas: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("cassette.json")).unwrap()).unwrap();
        assert_eq!(cas["entries"].as_array().map(Vec::len), Some(script().len()));
        return;
    };
    let root = PathBuf::from(std::env::var(ROOT).expect("MTX_FAULTS_ROOT is set"));
    let s = child_setup(&root);
    let result = match role.as_str() {
        "run" => run_job(&s, &root.join("wp.json"), &NoObserver),
        "resume" => resume_job(&s, &std::env::var(JOB).expect("MTX_FAULTS_JOB is set"), &NoObserver),
        other => panic!("unknown child role {other}"),
    };
    let line = match result {
        Ok(out) => json!({"ok": true, "job_id": out.job_id, "status": out.status}),
        Err(e) => {
            let kind = match &e {
                ExecError::InvalidInput(_) => "invalid_input",
                ExecError::NotFound(_) => "not_found",
                ExecError::NotPaused(_) => "not_paused",
                ExecError::Internal(_) => "internal",
            };
            let store_io = matches!(&e, ExecError::Internal(inner)
                if matches!(inner.downcast_ref::<mtx_store::StoreError>(), Some(mtx_store::StoreError::Io { .. })));
            json!({"ok": false, "kind": kind, "store_io": store_io, "message": e.to_string()})
        }
    };
    // The harness prints the test name without a newline; start a line of our own.
    println!("\n{OUTCOME}{line}");
}

// ------------------------------------------------------------------ the scripted job

/// Three MTs; the second needs two iterations (the first one makes no claim), so the
/// job has steps before, between and after edits and validations.
fn script() -> Vec<(&'static str, u32, u32, String)> {
    vec![
        ("MT-001", 0, 1, write_and_claim("MT-001", A, "alpha\n", 1)),
        ("MT-002", 0, 1, no_claim()),
        ("MT-002", 0, 2, write_and_claim("MT-002", B, "beta\n", 1)),
        ("MT-003", 0, 1, write_and_claim("MT-003", C, "gamma\n", 1)),
    ]
}

/// Writes the workspace, packet and cassette of the scripted job under `root`.
fn prepare(root: &Path) {
    let ws = root.join("ws");
    for (p, c) in [(A, "a\n"), (B, "b\n"), (C, "c\n")] {
        let path = ws.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    let packet = json!({
        "wp_id": "WP-FAULTS-1",
        "title": "crash test packet",
        "description": "Three small edits for the crash tests.",
        "in_scope_paths": ["src/"],
        "test_plan": ["true"],
        "done_means": ["src/a.txt says alpha", "src/b.txt says beta", "src/c.txt says gamma"],
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(root.join("wp.json"), serde_json::to_vec_pretty(&packet).unwrap()).unwrap();
    let script = script();
    let entries: Vec<(&str, u32, u32, &str)> =
        script.iter().map(|(m, l, i, r)| (*m, *l, *i, r.as_str())).collect();
    std::fs::write(root.join("cassette.json"), cassette(&entries)).unwrap();
}

fn child_setup(root: &Path) -> ExecutorSetup {
    let mut plugins = mtx_executor::PluginSet::defaults();
    let cas = std::fs::read_to_string(root.join("cassette.json")).unwrap();
    plugins.model_backend.config.insert("cassette".into(), cas);
    ExecutorSetup {
        state_dir: root.join("ws").join(".mtx"),
        workspace: root.join("ws"),
        plugins,
        policy: ExecutionPolicy::default(),
        loras: Vec::new(),
        toolbus: mtx_executor::ToolBusSettings {
            proc_exec: vec!["true".into()],
            shell_program: None,
            env: Vec::new(),
        },
        capability_profile_id: "test-profile".into(),
        // Compiled components are shared by every child of every test (written by
        // temp file and rename, so concurrent children are safe).
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults-component-cache")),
        user_id: "tester".into(),
    }
}

// ------------------------------------------------------------------ the parent side

/// How a child run ended.
#[derive(Debug)]
enum Ended {
    Killed,
    Outcome(Value),
}

struct Limits {
    /// `ulimit -f` in KiB for the child (the shell ignores SIGXFSZ so writes fail with EFBIG).
    file_size_kib: Option<u64>,
    /// Kill the child after this long, if it is still running.
    kill_after: Option<Duration>,
}

const NO_LIMITS: Limits = Limits { file_size_kib: None, kill_after: None };

fn spawn_child(
    root: &Path,
    role: &str,
    job: Option<&str>,
    failpoints: Option<&str>,
    limits: &Limits,
) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match limits.file_size_kib {
        Some(kib) => {
            // bash counts `ulimit -f` in 1024-byte blocks; `trap '' XFSZ` makes the
            // over-limit write fail with EFBIG instead of killing the child.
            let mut c = Command::new("bash");
            c.arg("-c").arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\"")).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ROOT, root)
        .env_remove("MTX_FAILPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(job) = job {
        cmd.env(JOB, job);
    }
    if let Some(fp) = failpoints {
        cmd.env("MTX_FAILPOINTS", fp);
    }
    cmd.spawn().unwrap()
}

fn wait_child(mut child: Child, kill_after: Option<Duration>) -> (ExitStatus, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let status = match kill_after {
        Some(delay) => {
            let deadline = Instant::now() + delay;
            loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if Instant::now() >= deadline {
                    // The std kill is SIGKILL.
                    let _ = child.kill();
                    break child.wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        None => child.wait().unwrap(),
    };
    (status, out_reader.join().unwrap(), err_reader.join().unwrap())
}

fn run_child(root: &Path, role: &str, job: Option<&str>, failpoints: Option<&str>, limits: &Limits) -> Ended {
    let child = spawn_child(root, role, job, failpoints, limits);
    let (status, out, err) = wait_child(child, limits.kill_after);
    if status.signal() == Some(libc_sigkill()) {
        return Ended::Killed;
    }
    let line = out.lines().find_map(|l| l.split_once(OUTCOME).map(|(_, rest)| rest)).unwrap_or_else(|| {
        panic!("child ({role}) ended with {status} without an outcome\nstdout:\n{out}\nstderr:\n{err}")
    });
    Ended::Outcome(serde_json::from_str(line).unwrap())
}

/// SIGKILL is 9 on every Unix mtx runs on.
fn libc_sigkill() -> i32 {
    9
}

fn state(root: &Path) -> PathBuf {
    root.join("ws").join(".mtx")
}

/// The id of the job under `root`, once its directory exists.
fn job_id(root: &Path) -> Option<String> {
    let jobs = std::fs::read_dir(state(root).join("jobs")).ok()?;
    let ids: Vec<String> =
        jobs.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(ids.len() <= 1, "one job per state dir: {ids:?}");
    ids.into_iter().next()
}

fn job_dir(root: &Path) -> PathBuf {
    state(root).join("jobs").join(job_id(root).unwrap())
}

/// Lines of a JSON Lines file that parse (a torn tail left by a kill is skipped).
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What a kill left behind that the final state must still honour.
#[derive(Default, Debug)]
struct KillWitness {
    /// step_id -> model calls recorded so far, for every step whose response was stored.
    stored_steps: BTreeMap<String, usize>,
}

fn model_calls_per_step(dir: &Path) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for e in json_lines(&dir.join("events.jsonl")) {
        if e["event_type"] == "FR-EVT-PLUGIN-001" && e["payload"]["function"] == "complete" {
            let step = e["payload"]["step_id"].as_str().unwrap_or("").to_string();
            *calls.entry(step).or_insert(0) += 1;
        }
    }
    calls
}

fn witness(root: &Path) -> KillWitness {
    let Some(_) = job_id(root) else { return KillWitness::default() };
    let dir = job_dir(root);
    let calls = model_calls_per_step(&dir);
    let mut stored_steps = BTreeMap::new();
    for r in json_lines(&dir.join("run_ledger.jsonl")) {
        let (Some(step), Some(key)) = (r["step_id"].as_str(), r["idempotency_key"].as_str()) else {
            continue;
        };
        if dir.join("step_outputs").join(key).join("response.txt").exists() {
            stored_steps.insert(step.to_string(), calls.get(step).copied().unwrap_or(0));
        }
    }
    KillWitness { stored_steps }
}

/// Resumes (or, when the kill came before the job existed, starts) the job in an unarmed
/// child; returns that child's outcome.
fn resume_until_done(root: &Path) -> Value {
    let ended = match job_id(root) {
        Some(id) => run_child(root, "resume", Some(&id), None, &NO_LIMITS),
        None => run_child(root, "run", None, None, &NO_LIMITS),
    };
    match ended {
        Ended::Outcome(v) => v,
        Ended::Killed => panic!("an unarmed child was killed"),
    }
}

/// The uninterrupted run, once per test binary, with the wall time its child took.
fn baseline_run() -> &'static (tempfile::TempDir, u64) {
    static BASE: OnceLock<(tempfile::TempDir, u64)> = OnceLock::new();
    BASE.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        prepare(root.path());
        let started = Instant::now();
        let Ended::Outcome(out) = run_child(root.path(), "run", None, None, &NO_LIMITS) else {
            panic!("the uninterrupted run was killed");
        };
        let ms = started.elapsed().as_millis() as u64;
        assert_eq!(out["status"], "completed", "{out}");
        (root, ms)
    })
}

fn baseline() -> &'static Path {
    baseline_run().0.path()
}

fn baseline_ms() -> u64 {
    baseline_run().1
}

// ------------------------------------------------------------------ comparison

/// Keys whose values differ between two identical runs by construction: wall-clock
/// times, durations, and ids drawn at random (uuid v4/v7) or derived from them.
fn volatile_key(k: &str) -> bool {
    k.ends_with("_at")
        || k.ends_with("_ms")
        || k.ends_with("_us")
        || k == "timestamp"
        || k == "clock"
        || k == "duration"
        || k == "job_id"
        || k == "trace_id"
        || k == "ledger_id"
        || k == "artifact_id"
        || k == "event_id"
        || k == "context_snapshot_id"
        || k == "snapshot_id"
        || k == "op_id"
        || k == "decision_id"
        || k == "request_id"
        || k == "prev_hash"
        || k == "record_hash"
        || k == "content_sha256"
        // A position in events.jsonl, which holds the recovery records as well.
        || k == "events_checkpoint"
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Removes the volatile parts of a record. Besides the keys of `volatile_key`: strings
/// that are uuids or contain one (job directories, artifact paths named by id), the two
/// state roots, RFC 3339 times under any key, and the `sha256` of an artifact handle whose target is one of the job's
/// own state files (progress snapshots, ledger copies: they embed times and ids, so
/// their hash differs while their normalised content is compared elsewhere).
fn normalise(v: &Value, roots: &[&Path]) -> Value {
    match v {
        Value::Object(m) => {
            let is_handle =
                m.get("path").is_some_and(Value::is_string) && m.get("sha256").is_some_and(Value::is_string);
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                // The context snapshot embeds its random id and compile time, so its
                // content-addressed path differs run to run.
                if k == "context_snapshot_ref" && !x.is_null() {
                    out.insert(k.clone(), json!("<context snapshot>"));
                    continue;
                }
                if volatile_key(k) || (is_handle && (k == "sha256" || k == "size_bytes" || k == "bytes")) {
                    continue;
                }
                out.insert(k.clone(), normalise(x, roots));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, roots)).collect()),
        Value::String(s) => {
            let mut s = s.clone();
            for r in roots {
                s = s.replace(&r.to_string_lossy().into_owned(), "<root>");
            }
            if is_uuid(&s) {
                return json!("<uuid>");
            }
            // Wall-clock times under any key (e.g. `skill_bank_snapshot_at_start`).
            if chrono::DateTime::parse_from_rfc3339(&s).is_ok() {
                return json!("<time>");
            }
            Value::String(mask_uuids(&s))
        }
        other => other.clone(),
    }
}

fn mask_uuids(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len()
            && s.is_char_boundary(i)
            && s.is_char_boundary(i + 36)
            && is_uuid(&s[i..i + 36])
        {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The progress artifact as every reader sees it: loaded through the store, so the
/// iteration records kept in archive chunks are included.
fn progress(dir: &Path) -> Value {
    let store = mtx_store::ProgressStore::new(&dir.join("progress_artifact.json"));
    serde_json::to_value(store.load::<mtx_types::progress::ProgressArtifact>().unwrap()).unwrap()
}

/// Event types a resumed job records in addition to an uninterrupted one: the recovery
/// itself (8.5) and the MT resumption (FR-EVT-MT-008 `resumed_from: crash_recovery`).
const RECOVERY_EVENTS: &[&str] = &["FR-EVT-WF-RECOVERY", "FR-EVT-MT-008"];

/// Event types that record a state change of the job (an MT started, decided, escalated,
/// completed; a model answered; a cloud step). The others record calls and runtime
/// facts (plugin calls, Tool Bus calls and their gate outcomes, capability checks,
/// context compilation, model loads, host events) that a re-run step or a new process legitimately records
/// again; for those only the presence of each type is compared.
fn is_state_change(t: &str) -> bool {
    t.starts_with("FR-EVT-MT-") || t == "FR-EVT-LLM-INFERENCE" || t.starts_with("FR-EVT-CLOUD-")
}

/// The assertions shared by every crash scenario, on the job under `root` that completed.
fn assert_same_as_uninterrupted(root: &Path, witnesses: &[KillWitness]) {
    let base_root = baseline();
    let base = job_dir(base_root);
    let dir = job_dir(root);
    let roots = [base_root, root];

    // 1. The final progress artifact.
    let expected = normalise(&progress(&base), &roots);
    let actual = normalise(&progress(&dir), &roots);
    if expected != actual {
        panic!(
            "final progress differs from the uninterrupted run\nexpected:\n{}\nactual:\n{}",
            serde_json::to_string_pretty(&expected).unwrap(),
            serde_json::to_string_pretty(&actual).unwrap()
        );
    }

    // 2. No model call repeated for a step whose response was stored before a kill, and
    // one inference event per step, as in the uninterrupted run.
    let calls = model_calls_per_step(&dir);
    for w in witnesses {
        for (step, before) in &w.stored_steps {
            assert_eq!(
                calls.get(step).copied().unwrap_or(0),
                *before,
                "step {step} had its response stored before the kill and was asked again"
            );
        }
    }
    let inferences = |d: &Path| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in json_lines(&d.join("events.jsonl")) {
            if e["event_type"] == "FR-EVT-LLM-INFERENCE" {
                *m.entry(e["payload"]["step_id"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
            }
        }
        m
    };
    assert_eq!(inferences(&dir), inferences(&base), "FR-EVT-LLM-INFERENCE per step");

    // 3. Events: every state change of the uninterrupted run is recorded, none twice.
    let events = |d: &Path| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in json_lines(&d.join("events.jsonl")) {
            let t = e["event_type"].as_str().unwrap_or("").to_string();
            if !is_state_change(&t) || RECOVERY_EVENTS.contains(&t.as_str()) {
                continue;
            }
            let key = format!("{t} {}", normalise(&e["payload"], &roots));
            *m.entry(key).or_insert(0) += 1;
        }
        m
    };
    let (base_events, got_events) = (events(&base), events(&dir));
    for (key, n) in &base_events {
        let got = got_events.get(key).copied().unwrap_or(0);
        if got < *n {
            let t = key.split(' ').next().unwrap();
            let same_type: Vec<&String> =
                got_events.keys().filter(|k| k.split(' ').next() == Some(t)).collect();
            panic!(
                "event missing after recovery: {key} (expected {n}, found {got}); recorded {t}: {same_type:#?}"
            );
        }
    }
    for (key, n) in &got_events {
        let expected = base_events.get(key).copied().unwrap_or(0);
        // 5.3 step i: the announcement of an interrupted step is repeated when it re-runs.
        if key.starts_with("FR-EVT-MT-002 ") {
            continue;
        }
        assert!(*n <= expected.max(1), "event recorded {n} times (uninterrupted run: {expected}): {key}");
        assert!(expected > 0, "event not in the uninterrupted run: {key}");
    }
    let types = |d: &Path| -> BTreeSet<String> {
        json_lines(&d.join("events.jsonl"))
            .iter()
            .filter_map(|e| e["event_type"].as_str().map(String::from))
            .collect()
    };
    let missing: Vec<String> = types(&base).difference(&types(&dir)).cloned().collect();
    assert!(missing.is_empty(), "event types of the uninterrupted run missing: {missing:?}");

    // 4. `mtx verify`.
    let report = mtx_store::verify_job(&state(root), &job_id(root).unwrap()).unwrap();
    assert!(report.is_ok(), "verify failed: {:?}", report.problems);
    let files = |r: &Path| -> Vec<Option<String>> {
        [A, B, C].iter().map(|p| std::fs::read_to_string(r.join("ws").join(p)).ok()).collect()
    };
    assert_eq!(files(root), files(base_root), "workspace files");
}

// ------------------------------------------------------------------ scenarios

/// `MTX_FAULTS_KEEP=1` keeps a scenario's directory for inspection and prints its path.
fn keep_if_asked(root: &mut tempfile::TempDir) {
    if std::env::var_os("MTX_FAULTS_KEEP").is_some() {
        root.disable_cleanup(true);
        eprintln!("scenario directory kept: {}", root.path().display());
    }
}

/// Kills the first attempt at the `nth` hit of `point`, resumes, and compares.
fn crash_at(point: &str, nth: u32) {
    let mut root = tempfile::tempdir().unwrap();
    keep_if_asked(&mut root);
    prepare(root.path());
    let spec = format!("{point}:{nth}");
    let ended = run_child(root.path(), "run", None, Some(&spec), &NO_LIMITS);
    assert!(matches!(ended, Ended::Killed), "failpoint {spec} was not reached: {ended:?}");
    let w = witness(root.path());
    let out = resume_until_done(root.path());
    assert_eq!(out["status"], "completed", "{spec}: {out}");
    assert_same_as_uninterrupted(root.path(), &[w]);
}

fn crash_each(point: &str, hits: &[u32]) {
    for nth in hits {
        crash_at(point, *nth);
    }
}

/// The hits of the failpoint tests lie inside the MT loop (ledger records 1-5 and events
/// 1-5 of this job are the header and the planning); a kill during planning is its own
/// scenario.
#[test]
fn kill_during_planning_resumes_to_the_same_state() {
    crash_each("ledger.append.before", &[3]);
}

#[test]
fn kill_before_a_ledger_append() {
    crash_each("ledger.append.before", &[9, 20]);
}

#[test]
fn kill_with_a_torn_ledger_append() {
    crash_each("ledger.append.torn", &[9, 20]);
}

#[test]
fn kill_after_a_ledger_append() {
    crash_each("ledger.append.after", &[9, 20]);
}

#[test]
fn kill_before_an_event_append() {
    crash_each("events.append.before", &[14, 60]);
}

#[test]
fn kill_with_a_torn_event_append() {
    crash_each("events.append.torn", &[14, 60]);
}

#[test]
fn kill_after_an_event_append() {
    crash_each("events.append.after", &[14, 60]);
}

#[test]
fn kill_before_the_progress_rename() {
    crash_each("progress.rename.before", &[1, 2, 3, 4, 5]);
}

#[test]
fn kill_after_the_progress_rename() {
    crash_each("progress.rename.after", &[1, 2, 3, 4, 5]);
}

/// A write group (a prompt and its ContextSnapshot, a response, `output.json`) is durable in
/// the journal, none of its files written yet: the resume replays the journal first.
#[test]
fn kill_between_the_journal_and_the_files_of_a_group() {
    for nth in [3, 8, 13] {
        let root = tempfile::tempdir().unwrap();
        prepare(root.path());
        let spec = format!("journal.synced:{nth}");
        let ended = run_child(root.path(), "run", None, Some(&spec), &NO_LIMITS);
        assert!(matches!(ended, Ended::Killed), "failpoint {spec} was not reached: {ended:?}");
        let journal = job_dir(root.path()).join(mtx_store::JOURNAL_FILE);
        assert!(std::fs::metadata(&journal).unwrap().len() > 0, "{spec}: the killed run left its journal");
        let w = witness(root.path());
        let out = resume_until_done(root.path());
        assert_eq!(out["status"], "completed", "{spec}: {out}");
        assert_eq!(
            std::fs::metadata(&journal).unwrap().len(),
            0,
            "{spec}: a finished job's journal is empty"
        );
        assert_same_as_uninterrupted(root.path(), &[w]);
    }
}

#[test]
fn kill_between_stored_response_and_ledger() {
    crash_each("executor.response.stored", &[1, 3]);
}

#[test]
fn kill_while_applying_edits() {
    crash_each("executor.edits.applying", &[1, 2]);
}

#[test]
fn kill_during_validation() {
    crash_each("executor.validation.running", &[1, 4]);
}

/// The last event of the job (FR-EVT-MT-009, after the final progress save and before the
/// job record is marked completed).
#[test]
fn kill_before_the_final_event() {
    let last = json_lines(&job_dir(baseline()).join("events.jsonl")).len() as u32;
    crash_each("events.append.before", &[last]);
}

/// A tiny xorshift, seeded, so the kill moments are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Four jobs, each killed at up to three random moments (one per attempt) and then
/// resumed unarmed. The delays are drawn from 50 ms up to the duration of the
/// uninterrupted run (at most 2000 ms), so that most attempts die somewhere in the loop.
#[test]
fn kill_at_random_moments() {
    let mut rng = XorShift(0x6d74_785f_6661_756c);
    let span = baseline_ms().clamp(100, 2000) - 50;
    for _round in 0..4 {
        let mut root = tempfile::tempdir().unwrap();
        keep_if_asked(&mut root);
        prepare(root.path());
        let mut witnesses = Vec::new();
        let mut finished = None;
        for _attempt in 0..3 {
            let delay = Duration::from_millis(50 + rng.next() % span);
            let limits = Limits { file_size_kib: None, kill_after: Some(delay) };
            let ended = match job_id(root.path()) {
                Some(id) => run_child(root.path(), "resume", Some(&id), None, &limits),
                None => run_child(root.path(), "run", None, None, &limits),
            };
            match ended {
                Ended::Killed => witnesses.push(witness(root.path())),
                Ended::Outcome(v) => {
                    finished = Some(v);
                    break;
                }
            }
        }
        let out = finished.unwrap_or_else(|| resume_until_done(root.path()));
        assert_eq!(out["status"], "completed", "after {} kills: {out}", witnesses.len());
        assert_same_as_uninterrupted(root.path(), &witnesses);
    }
}

/// Kills at a mid-job point, then applies `damage` to the job directory before resuming.
fn damaged_then_resumed(damage: impl Fn(&Path)) {
    let mut root = tempfile::tempdir().unwrap();
    keep_if_asked(&mut root);
    prepare(root.path());
    let ended = run_child(root.path(), "run", None, Some("progress.rename.after:4"), &NO_LIMITS);
    assert!(matches!(ended, Ended::Killed));
    let w = witness(root.path());
    damage(&job_dir(root.path()));
    let out = resume_until_done(root.path());
    assert_eq!(out["status"], "completed", "{out}");
    assert_same_as_uninterrupted(root.path(), &[w]);
}

#[test]
fn truncated_ledger_tail_resumes_to_the_same_state() {
    damaged_then_resumed(|dir| {
        let path = dir.join("run_ledger.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.trim_end_matches('\n');
        let last_start = body.rfind('\n').map_or(0, |i| i + 1);
        let cut = last_start + (body.len() - last_start) / 2;
        std::fs::write(&path, &text.as_bytes()[..cut]).unwrap();
    });
}

#[test]
fn corrupted_progress_file_resumes_to_the_same_state() {
    damaged_then_resumed(|dir| {
        let path = dir.join("progress_artifact.json");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] = b'#';
        std::fs::write(&path, bytes).unwrap();
    });
}

/// Both the progress artifact and the copy its last save replaced are unreadable: the job
/// is rebuilt from its definitions, ledger and step outputs (8.6 item 1) and still ends
/// exactly as the uninterrupted run, with no model call repeated.
#[test]
fn corrupted_progress_and_previous_copy_resume_to_the_same_state() {
    damaged_then_resumed(|dir| {
        for name in ["progress_artifact.json", "progress_artifact.prev.json"] {
            let path = dir.join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() / 3;
            bytes[at] = b'#';
            std::fs::write(&path, bytes).unwrap();
        }
    });
}

#[test]
fn disk_full_gives_a_clear_error_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    prepare(root.path());
    let limits = Limits { file_size_kib: Some(48), kill_after: None };
    let Ended::Outcome(out) = run_child(root.path(), "run", None, None, &limits) else {
        panic!("the child was killed instead of failing the write");
    };
    assert_eq!(out["ok"], false, "the run cannot finish under the limit: {out}");
    assert_eq!(out["kind"], "internal", "{out}");
    assert_eq!(out["store_io"], true, "a storage error of the store: {out}");
    let message = out["message"].as_str().unwrap();
    assert!(message.contains("File too large") && message.contains(".mtx"), "{message}");
    let status = progress(&job_dir(root.path()))["status"].clone();
    assert!(status != "completed" && status != "failed", "the job is left resumable: {status}");
    let w = witness(root.path());
    let done = resume_until_done(root.path());
    assert_eq!(done["status"], "completed", "{done}");
    assert_same_as_uninterrupted(root.path(), &[w]);
}

#[test]
fn every_store_failpoint_is_covered() {
    let covered = [
        "ledger.append.before",
        "ledger.append.torn",
        "ledger.append.after",
        "events.append.before",
        "events.append.torn",
        "events.append.after",
        "progress.rename.before",
        "progress.rename.after",
        "journal.synced",
    ];
    assert_eq!(mtx_store::failpoint::FAILPOINTS, covered);
}
