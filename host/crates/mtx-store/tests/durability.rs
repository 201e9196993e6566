//! Crash and disk-full tests of the durable state (MTX-SPEC 8.5, 11.4, 11.5, 13.4).
//!
//! Each test that needs a dying process re-executes this test binary, running only
//! itself (`--exact <name>`), with `MTX_STORE_CHILD` set. The same test function then
//! takes the child role: it drives the store until a failpoint armed through
//! `MTX_FAILPOINTS` kills it with SIGKILL (or until it is done). The child prints one
//! line per acknowledged durable write, so the parent knows what must have survived.

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use mtx_store::ledger::{LedgerHeader, LedgerRecord, RunLedger};
use mtx_store::recorder::{Correlation, Event, FlightRecorder};
use mtx_store::{JobDir, ProgressStore, StateDir, StepOutput, StoreError, recovery, verify_job};
use mtx_types::{
    ArtifactHandle, ExecutionPolicy, IterationOutcome, IterationRecord, LearningContext, LedgerStep,
    LedgerStepStatus, MTProgressEntry, ProgressArtifact, ProgressStatus, idempotency_key, sha256_hex,
    step_id,
};
use proptest::prelude::*;
use serde_json::json;

const CHILD_ROLE: &str = "MTX_STORE_CHILD";
const CHILD_DIR: &str = "MTX_STORE_DIR";
const JOB: &str = "job-crash";
const WP: &str = "WP-1-Crash-v1";
const ITERATIONS: u32 = 12;

fn correlation() -> Correlation {
    Correlation {
        trace_id: "0190f5c2-7d3a-7b4e-9a61-3c2d1e0f4a5b".into(),
        job_id: JOB.into(),
        workflow_run_id: uuid::Uuid::now_v7().to_string(),
        wp_id: WP.into(),
    }
}

fn progress() -> ProgressArtifact {
    ProgressArtifact {
        schema_version: "1.0".into(),
        wp_id: WP.into(),
        job_id: JOB.into(),
        created_at: mtx_types::now_rfc3339(),
        updated_at: mtx_types::now_rfc3339(),
        completed_at: None,
        status: ProgressStatus::InProgress,
        policy: ExecutionPolicy::default(),
        learning_context: LearningContext::default(),
        current_state: Default::default(),
        micro_tasks: vec![MTProgressEntry::pending("MT-001", "only")].into(),
        aggregate_stats: Default::default(),
        extra: Default::default(),
    }
}

/// The job directory as the loop leaves it before its first iteration.
fn set_up_job(state: &Path) -> JobDir {
    let job = StateDir::new(state).job(JOB).unwrap();
    job.create().unwrap();
    let header = LedgerHeader {
        ledger_id: uuid::Uuid::now_v7().to_string(),
        wp_id: WP.into(),
        job_id: JOB.into(),
        created_at: mtx_types::now_rfc3339(),
    };
    RunLedger::create(&job.run_ledger(), header).unwrap();
    FlightRecorder::create(&job.events(), correlation()).unwrap();
    ProgressStore::new(&job.progress_artifact()).save(&mut progress()).unwrap();
    job
}

fn key(n: u32) -> String {
    idempotency_key("MT-001", n, "m", None, &sha256_hex(format!("prompt {n}").as_bytes()))
}

fn ledger_step(n: u32, status: LedgerStepStatus, output: Option<ArtifactHandle>) -> LedgerStep {
    LedgerStep {
        step_id: step_id("MT-001", n),
        idempotency_key: key(n),
        status,
        started_at: Some(mtx_types::now_rfc3339()),
        completed_at: output.as_ref().map(|_| mtx_types::now_rfc3339()),
        output_artifact_ref: output,
        error: None,
        recoverable: true,
        escalation_level: 0,
    }
}

fn iteration_record(n: u32) -> IterationRecord {
    IterationRecord {
        iteration: n,
        step_id: step_id("MT-001", n),
        model_id: "m".into(),
        lora_id: None,
        escalation_level: 0,
        started_at: mtx_types::now_rfc3339(),
        completed_at: mtx_types::now_rfc3339(),
        duration_ms: 5,
        tokens_prompt: 10,
        tokens_completion: 3,
        claimed_complete: false,
        validation_passed: None,
        validation_evidence_ref: None,
        outcome: IterationOutcome::Retry,
        failure_category: None,
        error_summary: None,
        context_snapshot_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// The child role: the write order of one iteration (MTX-SPEC 8.4), `ITERATIONS` times,
/// resuming after whatever the previous attempts completed.
fn run_iterations(state: &Path) {
    let job = StateDir::new(state).job(JOB).unwrap();
    let mut ledger = RunLedger::open(&job.run_ledger()).unwrap();
    let fr = FlightRecorder::open(&job.events(), correlation()).unwrap();
    let store = ProgressStore::new(&job.progress_artifact());
    let mut doc: ProgressArtifact = store.load().unwrap();
    // 8.5: a completed step whose IterationRecord the progress lacks is rebuilt from its
    // output.json before continuing; completed steps are never re-run.
    loop {
        let n = doc.micro_tasks[0].iterations.len() as u32 + 1;
        match ledger.step(&step_id("MT-001", n)) {
            Some(s) if s.status == LedgerStepStatus::Completed => {
                let (output, _) =
                    job.read_step_output(&key(n)).unwrap().expect("completed step has its output");
                doc.micro_tasks[0].iterations.push(output.iteration_record.unwrap());
                store.save(&mut doc).unwrap();
                println!("progress {n}");
            }
            _ => break,
        }
    }
    let done = doc.micro_tasks[0].iterations.len() as u32;
    for n in done + 1..=ITERATIONS {
        let e = fr
            .emit(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-001", "iteration": n})))
            .unwrap();
        println!("event {}", e.seq);
        let seq = ledger.append_step(&ledger_step(n, LedgerStepStatus::InProgress, None)).unwrap();
        println!("ledger {seq}");
        job.write_step_file(&key(n), "response.txt", format!("response {n}").as_bytes()).unwrap();
        let output = StepOutput {
            step_id: step_id("MT-001", n),
            idempotency_key: key(n),
            prompt_hash: sha256_hex(format!("prompt {n}").as_bytes()),
            context_snapshot_id: uuid::Uuid::now_v7().to_string(),
            context_snapshot_hash: sha256_hex(b"snapshot"),
            context_snapshot_ref: None,
            prompt_envelope_hashes: None,
            prompt_snapshot_ref: None,
            output_snapshot_ref: None,
            validation_ref: None,
            mt_id: "MT-001".into(),
            iteration_record: Some(iteration_record(n)),
            loop_commit: None,
        };
        let handle = job.write_step_output(&output).unwrap();
        let seq = ledger.append_step(&ledger_step(n, LedgerStepStatus::Completed, Some(handle))).unwrap();
        println!("ledger {seq}");
        doc.micro_tasks[0].status = mtx_types::MTStatus::InProgress;
        doc.micro_tasks[0].iterations.push(iteration_record(n));
        store.save(&mut doc).unwrap();
        println!("progress {n}");
        let e = fr
            .emit(Event::new(
                "FR-EVT-MT-012",
                json!({"wp_id": WP, "mt_id": "MT-001", "iteration": n, "passed": false}),
            ))
            .unwrap();
        println!("event {}", e.seq);
    }
}

/// What the child acknowledged before it died.
#[derive(Debug, Default)]
struct Acked {
    ledger: u64,
    events: u64,
    progress: u32,
}

/// Re-executes this binary running only `test`, as the child; returns whether it was
/// killed by SIGKILL and what it acknowledged.
fn spawn_child(test: &str, role: &str, state: &Path, failpoints: &str) -> (bool, Acked) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, state)
        .env("MTX_FAILPOINTS", failpoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Acked::default();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next().and_then(|n| n.parse::<u64>().ok())) {
            (Some("ledger"), Some(n)) => acked.ledger = n,
            (Some("event"), Some(n)) => acked.events = n,
            (Some("progress"), Some(n)) => acked.progress = n as u32,
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(libc::SIGKILL);
    assert!(killed || status.success(), "child failed: {status:?}");
    (killed, acked)
}

/// If this process is a spawned child, plays the role and exits; otherwise returns false.
fn child_role() -> bool {
    let (Ok(role), Ok(dir)) = (std::env::var(CHILD_ROLE), std::env::var(CHILD_DIR)) else { return false };
    match role.as_str() {
        "iterations" => run_iterations(Path::new(&dir)),
        "disk_full" => fill_disk(Path::new(&dir)),
        other => panic!("unknown child role {other}"),
    }
    // Never return into the test harness: a proptest body would run the role again.
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::exit(0)
}

/// The checks after a crash: both chains open (a torn tail is cut and recorded), every
/// acknowledged write survived, recovery leaves no step in progress, and the whole job
/// verifies. Returns whether opening the logs repaired a torn line.
fn check_after_crash(state: &Path, acked: &Acked) -> bool {
    let job = StateDir::new(state).job(JOB).unwrap();
    let ledger = RunLedger::open(&job.run_ledger()).expect("ledger chain is valid after the crash");
    let records = ledger.records().unwrap();
    assert!(records.len() as u64 >= acked.ledger, "an acknowledged ledger record was lost");
    let ledger_repaired = ledger.repaired().is_some();
    if ledger_repaired {
        assert!(matches!(records.last().unwrap().record, LedgerRecord::Repair(_)), "the repair is recorded");
    }
    drop(ledger);
    let events_before = mtx_store::recorder::read_events(&job.events()).map(|e| e.len()).unwrap_or(0);
    let fr =
        FlightRecorder::open(&job.events(), correlation()).expect("event chain is valid after the crash");
    let next = fr.next_seq();
    drop(fr);
    assert!(next > acked.events, "an acknowledged event was lost");
    let events_repaired = next as usize - 1 > events_before;
    if events_repaired {
        let events = mtx_store::recorder::read_events(&job.events()).unwrap();
        assert_eq!(events.last().unwrap().envelope.event_type, "FR-EVT-MTX-004", "the repair is recorded");
    }
    let doc: ProgressArtifact =
        ProgressStore::new(&job.progress_artifact()).load().expect("progress is whole");
    assert!(
        doc.micro_tasks[0].iterations.len() as u32 >= acked.progress,
        "an acknowledged progress write was lost"
    );

    let report = recovery::reconcile(&job).unwrap();
    let folded = RunLedger::open(&job.run_ledger()).unwrap().fold();
    assert!(folded.steps.iter().all(|s| s.status != LedgerStepStatus::InProgress));
    for s in &folded.steps {
        if s.status == LedgerStepStatus::Completed {
            assert!(job.step_output_exists(&s.idempotency_key), "{} completed without output", s.step_id);
        }
    }
    assert_eq!(folded.resume_reason.as_deref(), Some("crash_recovery"));
    assert!(report.steps_recovered + report.steps_to_retry <= 1, "one iteration runs at a time");
    let verified = verify_job(state, JOB).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    ledger_repaired || events_repaired
}

#[test]
fn a_kill_mid_ledger_line_is_repaired_and_recorded() {
    if child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_up_job(dir.path());
    // Third ledger append = the in_progress record of iteration 2.
    let (killed, acked) = spawn_child(
        "a_kill_mid_ledger_line_is_repaired_and_recorded",
        "iterations",
        dir.path(),
        "ledger.append.torn:3",
    );
    assert!(killed);
    assert_eq!((acked.ledger, acked.progress), (3, 1), "header + two step records were acknowledged");
    let job = StateDir::new(dir.path()).job(JOB).unwrap();
    let before = std::fs::read(job.run_ledger()).unwrap();
    assert_ne!(before.last(), Some(&b'\n'), "the kill left a torn line");
    let ledger = RunLedger::open(&job.run_ledger()).unwrap();
    let repair = ledger.repaired().expect("torn tail reported").clone();
    assert!(repair.discarded_bytes > 0);
    let records = ledger.records().unwrap();
    assert_eq!(records.len(), 4, "header, two steps, repair");
    assert!(matches!(&records[3].record, LedgerRecord::Repair(r) if *r == repair));
    drop(ledger);
    check_after_crash(dir.path(), &acked);
}

#[test]
fn a_kill_mid_event_line_is_repaired_and_recorded() {
    if child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_up_job(dir.path());
    let (killed, acked) = spawn_child(
        "a_kill_mid_event_line_is_repaired_and_recorded",
        "iterations",
        dir.path(),
        "events.append.torn:4",
    );
    assert!(killed);
    assert_eq!(acked.events, 3);
    let job = StateDir::new(dir.path()).job(JOB).unwrap();
    let fr = FlightRecorder::open(&job.events(), correlation()).unwrap();
    assert_eq!(fr.next_seq(), 5, "three events and the repair record");
    drop(fr);
    let events = mtx_store::recorder::read_events(&job.events()).unwrap();
    assert_eq!(events[3].envelope.event_type, "FR-EVT-MTX-004");
    check_after_crash(dir.path(), &acked);
}

#[test]
fn a_kill_after_the_step_output_recovers_the_step_as_completed() {
    if child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_up_job(dir.path());
    // Iteration 1 writes ledger records 2 and 3; killing before record 3 leaves the
    // step in progress with its output.json already written.
    let (killed, _) = spawn_child(
        "a_kill_after_the_step_output_recovers_the_step_as_completed",
        "iterations",
        dir.path(),
        "ledger.append.before:2",
    );
    assert!(killed);
    let job = StateDir::new(dir.path()).job(JOB).unwrap();
    let report = recovery::reconcile(&job).unwrap();
    assert_eq!((report.steps_recovered, report.steps_to_retry), (1, 0));
    assert_eq!(report.resume_point, None);
    assert_eq!(report.last_completed_step.as_deref(), Some("MT-001_iter-001"));
    // The resumed run skips nothing and repeats nothing: it continues and finishes.
    let (killed, acked) = spawn_child(
        "a_kill_after_the_step_output_recovers_the_step_as_completed",
        "iterations",
        dir.path(),
        "",
    );
    assert!(!killed);
    assert_eq!(acked.progress, ITERATIONS);
    check_after_crash(dir.path(), &acked);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Kill at a random failpoint on a random hit, then again on the resumed run; the
    /// invariants hold after every crash and the job completes in the end.
    #[test]
    fn random_kill_points_never_lose_acknowledged_state(
        first in 0usize..mtx_store::failpoint::FAILPOINTS.len(),
        first_hit in 1u32..30,
        second in 0usize..mtx_store::failpoint::FAILPOINTS.len(),
        second_hit in 1u32..30,
    ) {
        if child_role() {
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        set_up_job(dir.path());
        let name = "random_kill_points_never_lose_acknowledged_state";
        for (point, hit) in [(first, first_hit), (second, second_hit)] {
            let spec = format!("{}:{hit}", mtx_store::failpoint::FAILPOINTS[point]);
            let (killed, acked) = spawn_child(name, "iterations", dir.path(), &spec);
            let repaired = check_after_crash(dir.path(), &acked);
            if killed && spec.contains(".torn") {
                prop_assert!(repaired, "a kill mid-line under {} left no recorded repair", spec);
            }
        }
        let (killed, acked) = spawn_child(name, "iterations", dir.path(), "");
        prop_assert!(!killed);
        let job = StateDir::new(dir.path()).job(JOB).unwrap();
        let doc: ProgressArtifact = ProgressStore::new(&job.progress_artifact()).load().unwrap();
        prop_assert_eq!(doc.micro_tasks[0].iterations.len() as u32, ITERATIONS);
        check_after_crash(dir.path(), &acked);
    }
}

/// Child role of the disk-full test: a 64 KiB file-size limit, SIGXFSZ ignored so the
/// write fails with EFBIG instead of killing the process.
fn fill_disk(state: &Path) {
    // SAFETY: plain libc calls on the own process with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit { rlim_cur: 64 * 1024, rlim_max: 64 * 1024 };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let job = StateDir::new(state).job(JOB).unwrap();
    let mut ledger = RunLedger::open(&job.run_ledger()).unwrap();
    let mut n = 0;
    let err = loop {
        n += 1;
        match ledger.append_step(&ledger_step(n, LedgerStepStatus::InProgress, None)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match &err {
        StoreError::Io { path, .. } if path == &job.run_ledger() => println!("ledger-io-error-with-path"),
        other => println!("unexpected {other:?}"),
    }
    // The file holds only whole records.
    drop(ledger);
    let reopened = RunLedger::open(&job.run_ledger()).unwrap();
    assert!(reopened.repaired().is_none(), "the failed append left no torn line");
    // The Flight Recorder: the main log refuses with a typed error naming it, and the
    // hard gate that stops the job still reaches the fallback log (11.5).
    let fr = FlightRecorder::open(&job.events(), correlation()).unwrap();
    let mut n = 0;
    let err = loop {
        n += 1;
        match fr.emit(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-001", "iteration": n}))) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match &err {
        StoreError::Io { path, .. } if path == &job.events() => println!("events-io-error-with-path"),
        other => println!("unexpected {other:?}"),
    }
    let gate =
        Event::new("FR-EVT-MT-006", json!({"wp_id": WP, "reason": "resource_exhausted", "mt_id": "MT-001"}));
    match fr.emit_fallback(gate) {
        Ok(e) if e.seq == 1 => println!("fallback-gate-recorded"),
        other => println!("unexpected {other:?}"),
    }
    let mut doc = progress();
    doc.extra.insert("padding".into(), json!("x".repeat(128 * 1024)));
    match ProgressStore::new(&job.progress_artifact()).save(&mut doc) {
        Err(StoreError::Io { path, .. }) if path == job.progress_artifact() => {
            println!("progress-io-error-with-path")
        }
        other => println!("unexpected {other:?}"),
    }
}

#[test]
fn a_full_disk_is_a_typed_error_naming_the_file() {
    if child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_up_job(dir.path());
    let before = std::fs::read(StateDir::new(dir.path()).job(JOB).unwrap().progress_artifact()).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_full_disk_is_a_typed_error_naming_the_file",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ROLE, "disk_full")
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ledger-io-error-with-path"), "{stdout}");
    assert!(stdout.contains("progress-io-error-with-path"), "{stdout}");
    assert!(stdout.contains("events-io-error-with-path"), "{stdout}");
    assert!(stdout.contains("fallback-gate-recorded"), "{stdout}");
    let job = StateDir::new(dir.path()).job(JOB).unwrap();
    assert_eq!(std::fs::read(job.progress_artifact()).unwrap(), before, "the old progress file is intact");
    RunLedger::open(&job.run_ledger()).expect("the ledger chain is intact");
    let fallback =
        mtx_store::recorder::read_events(&job.root().join(mtx_store::recorder::FALLBACK_FILE)).unwrap();
    assert_eq!(fallback[0].envelope.event_type, "FR-EVT-MT-006");
    assert_eq!(fallback[0].envelope.payload["reason"], "resource_exhausted");
    let verified = verify_job(dir.path(), JOB).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
}
