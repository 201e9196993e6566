//! Test support for the console: state directories written with mtx-store's own writers,
//! a fake [`OperatorActions`] that records its calls and writes what the executor would,
//! a console started on a loopback port, and a minimal HTTP/1.1 client.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtx_console::{ConsoleConfig, OperatorActions};
use mtx_store::artifact::ArtifactMeta;
use mtx_store::history::JobRow;
use mtx_store::ledger::{ConsentRecord, GateDecisionRecord};
use mtx_store::{
    ArtifactStore, Correlation, Event, FlightRecorder, JobDir, JobHistory, LedgerHeader, LedgerRecord,
    ProgressStore, RunLedger, StateDir, StepOutput,
};
use mtx_types::progress::{PendingCloudEscalation, PendingGate};
use mtx_types::{
    ArtifactHandle, FailureCategory, IterationOutcome, IterationRecord, JobStatus, LedgerStep,
    LedgerStepStatus, MTProgressEntry, MTStatus, ProgressArtifact, ProgressStatus, sha256_hex, step_id,
};
use serde_json::{Value, json};

pub const WP: &str = "WP-1-Console-v1";
pub const GATED: &str = "job-gated";
pub const DONE: &str = "job-done";
pub const CONSENT: &str = "job-consent";

/// A state directory with three jobs: `job-gated` (paused at a hard gate after an
/// escalation and a distillation candidate), `job-done` (completed, another WP) and
/// `job-consent` (waiting for cloud consent).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The stdout evidence of MT-001's validation (artifact store).
    pub stdout: ArtifactHandle,
    /// MT-001's first prompt (job-relative step file).
    pub prompt: ArtifactHandle,
    /// The escalation record of MT-001 (artifact store).
    pub escalation_record: ArtifactHandle,
    /// A diff of MT-001's edit (artifact store).
    pub diff: ArtifactHandle,
}

impl Fixture {
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn job(&self, id: &str) -> JobDir {
        StateDir::new(self.dir.path()).job(id).unwrap()
    }
}

pub fn correlation(job_id: &str, wp: &str) -> Correlation {
    Correlation {
        trace_id: uuid::Uuid::now_v7().to_string(),
        job_id: job_id.into(),
        workflow_run_id: uuid::Uuid::now_v7().to_string(),
        wp_id: wp.into(),
    }
}

fn put(store: &ArtifactStore, bytes: &[u8], kind: &str, job_id: &str, media: &str) -> ArtifactHandle {
    store
        .put(
            bytes,
            ArtifactMeta {
                kind: kind.into(),
                producer: "host".into(),
                job_id: Some(job_id.into()),
                media_type: Some(media.into()),
                ..ArtifactMeta::default()
            },
        )
        .unwrap()
}

fn iteration(
    mt: &str,
    ordinal: u32,
    iteration: u32,
    level: u32,
    outcome: IterationOutcome,
) -> IterationRecord {
    IterationRecord {
        iteration,
        step_id: step_id(mt, ordinal),
        model_id: if level == 0 { "qwen2.5-coder:7b".into() } else { "qwen2.5-coder:14b".into() },
        lora_id: None,
        escalation_level: level,
        started_at: format!("2026-01-01T00:0{ordinal}:00.000Z"),
        completed_at: format!("2026-01-01T00:0{ordinal}:30.000Z"),
        duration_ms: 30_000,
        tokens_prompt: 900,
        tokens_completion: 120,
        claimed_complete: outcome == IterationOutcome::Success,
        validation_passed: Some(outcome == IterationOutcome::Success),
        validation_evidence_ref: None,
        outcome,
        failure_category: (outcome != IterationOutcome::Success)
            .then_some(FailureCategory::IncompleteImplementation),
        error_summary: None,
        context_snapshot_id: format!("snap-{mt}-{ordinal}"),
    }
}

fn progress(job_id: &str, wp: &str, micro_tasks: Vec<MTProgressEntry>) -> ProgressArtifact {
    ProgressArtifact {
        schema_version: mtx_types::progress::PROGRESS_SCHEMA_VERSION.into(),
        wp_id: wp.into(),
        job_id: job_id.into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        completed_at: None,
        status: ProgressStatus::InProgress,
        policy: mtx_types::ExecutionPolicy::default(),
        learning_context: mtx_types::LearningContext {
            skill_bank_snapshot_at_start: "2026-01-01T00:00:00.000Z".into(),
            loras_available: vec![],
            pending_distillation_jobs: 0,
        },
        current_state: mtx_types::CurrentState::default(),
        micro_tasks: micro_tasks.into(),
        aggregate_stats: mtx_types::AggregateStats::default(),
        extra: serde_json::Map::new(),
    }
}

fn job_record(job_id: &str, wp: &str, status: JobStatus, reason: &str, created: &str) -> JobRow {
    JobRow {
        job_id: job_id.into(),
        job_kind: mtx_types::JOB_KIND.into(),
        profile_id: mtx_types::PROFILE_ID.into(),
        protocol_id: mtx_types::PROTOCOL_ID.into(),
        wp_id: wp.into(),
        status,
        status_reason: reason.into(),
        created_at: created.into(),
        started_at: Some(created.into()),
        completed_at: None,
        updated_at: "2026-01-01T00:05:00.000Z".into(),
        current_mt: None,
        current_level: None,
        models_used: vec![],
        metrics: json!({}),
        job_dir: String::new(),
    }
}

/// Writes `job.json` and the history row of a job.
fn create_job(state: &StateDir, history: &JobHistory, row: &JobRow) -> JobDir {
    let job = state.job(&row.job_id).unwrap();
    job.create().unwrap();
    let mut row = row.clone();
    row.job_dir = job.root().display().to_string();
    std::fs::write(job.job_json(), serde_json::to_vec_pretty(&row).unwrap()).unwrap();
    history.create_job(&row).unwrap();
    job
}

fn emit(fr: &FlightRecorder, history: &JobHistory, job_id: &str, event: Event) {
    let stored = fr.emit_stored(event).unwrap();
    history.index_event(job_id, &stored).unwrap();
}

fn ledger(job: &JobDir, wp: &str) -> RunLedger {
    RunLedger::create(
        &job.run_ledger(),
        LedgerHeader {
            ledger_id: uuid::Uuid::now_v7().to_string(),
            wp_id: wp.into(),
            job_id: job.job_id().into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        },
    )
    .unwrap()
}

fn step(id: &str, status: LedgerStepStatus, level: u32, output: Option<ArtifactHandle>) -> LedgerStep {
    LedgerStep {
        step_id: id.into(),
        idempotency_key: sha256_hex(id.as_bytes()),
        status,
        started_at: Some("2026-01-01T00:01:00.000Z".into()),
        completed_at: None,
        output_artifact_ref: output,
        error: None,
        recoverable: true,
        escalation_level: level,
    }
}

fn iteration_complete(
    mt: &str,
    iteration: u32,
    ordinal: u32,
    level: u32,
    status: &str,
    snap: &ArtifactHandle,
) -> Value {
    json!({
        "wp_id": WP, "mt_id": mt, "iteration": iteration,
        "model": {"base": "qwen2.5-coder:7b", "context_window": 32768},
        "execution": {"tokens_prompt": 900, "tokens_completion": 120, "duration_ms": 30000, "escalation_level": level},
        "outcome": {"claimed_complete": status == "SUCCESS", "status": status},
        "context_snapshot_id": format!("snap-{mt}-{ordinal}"),
        "step_id": step_id(mt, ordinal),
        "decision": {"action": status},
        "context_snapshot_ref": snap,
        "prompt_envelope_hashes": {"stable_prefix": "a".repeat(64)},
    })
}

/// Builds the three-job state directory.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let history = JobHistory::open(&state.history_db()).unwrap();
    let store = ArtifactStore::open(&state.artifacts_dir()).unwrap();

    // ---------------------------------------------------------------- job-gated
    let row = job_record(GATED, WP, JobStatus::AwaitingUser, "paused_hard_gate", "2026-01-01T00:00:02.000Z");
    let job = create_job(&state, &history, &row);
    // The ledger names this step by the key `step()` gives it.
    let key = sha256_hex(b"MT-001_iter-001");
    let prompt = job
        .write_step_file(&key, "prompt.txt", b"## MICRO-TASK CONTEXT\nImplement parse_version.\n")
        .unwrap();
    let response =
        job.write_step_file(&key, "response.txt", b"<completed>parse_version done</completed>\n").unwrap();
    let snap = job.write_step_file(&key, "context_snapshot.json", b"{\"sections\":[]}").unwrap();
    let stdout =
        put(&store, b"running 3 tests\ntest parses_major ... FAILED\n", "stdout", GATED, "text/plain");
    let diff = put(
        &store,
        b"diff --git a/src/lib.rs b/src/lib.rs\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-todo!()\n+Ok(Version::default())\n",
        "diff",
        GATED,
        "text/x-diff",
    );
    let escalation_record = put(
        &store,
        serde_json::to_vec(&json!({
            "mt_id": "MT-001", "from_level": 0, "to_level": 1,
            "failure_category": "incomplete_implementation",
            "attempts": [{"iteration": 1, "outcome": "RETRY"}, {"iteration": 2, "outcome": "ESCALATE"}],
        }))
        .unwrap()
        .as_slice(),
        "escalation_record",
        GATED,
        "application/json",
    );
    let candidate = put(
        &store,
        // The DistillationCandidate of MTX-SPEC 3.12, as the executor writes it.
        serde_json::to_vec(&json!({
            "skill_log_entry_id": "skill-1", "mt_id": "MT-001", "wp_id": WP,
            "student_attempt": {"model_id": "qwen2.5-coder:7b", "lora_id": "rust-general-v3",
                                "prompt_snapshot_ref": prompt, "output_snapshot_ref": response,
                                "outcome": "VALIDATION_FAILED", "iterations": 2},
            "teacher_success": {"model_id": "qwen2.5-coder:14b", "prompt_snapshot_ref": prompt,
                                "output_snapshot_ref": response, "outcome": "VALIDATION_PASSED", "iterations": 1},
            "task_type_tags": ["rust", "parsing"], "contributing_factors": ["incomplete_implementation"],
            "data_trust_score": 0.8, "distillation_eligible": true,
            "tokenizer": {"student_tokenizer_id": "qwen2", "teacher_tokenizer_id": "qwen2"},
        }))
        .unwrap()
        .as_slice(),
        "distillation_candidate",
        GATED,
        "application/json",
    );

    let output = job
        .write_step_output(&StepOutput {
            step_id: "MT-001_iter-001".into(),
            idempotency_key: key.clone(),
            prompt_hash: prompt.sha256.clone(),
            context_snapshot_id: "snap-MT-001-1".into(),
            context_snapshot_hash: snap.sha256.clone(),
            context_snapshot_ref: Some(snap.clone()),
            prompt_envelope_hashes: None,
            prompt_snapshot_ref: Some(prompt.clone()),
            output_snapshot_ref: Some(response.clone()),
            validation_ref: Some(stdout.clone()),
            mt_id: "MT-001".into(),
            iteration_record: None,
            loop_commit: None,
        })
        .unwrap();

    let fr = FlightRecorder::create(&job.events(), correlation(GATED, WP)).unwrap();
    let e = |event: Event| emit(&fr, &history, GATED, event);
    e(Event::new(
        "FR-EVT-MT-001",
        json!({"wp_id": WP, "total_mts": 3, "execution_policy": {}, "mt_ids": ["MT-001", "MT-002", "MT-003"],
               "execution_waves": [["MT-001"], ["MT-002", "MT-003"]]}),
    ));
    e(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-001", "iteration": 1})));
    e(Event::new("FR-EVT-MT-003", iteration_complete("MT-001", 1, 1, 0, "RETRY", &snap)));
    e(Event::new(
        "FR-EVT-MT-012",
        json!({"wp_id": WP, "mt_id": "MT-001", "iteration": 1, "passed": false, "stdout_ref": stdout, "diff_ref": diff}),
    ));
    e(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-001", "iteration": 2})));
    e(Event::new("FR-EVT-MT-003", iteration_complete("MT-001", 2, 2, 0, "ESCALATE", &snap)));
    e(Event::new(
        "FR-EVT-MT-005",
        json!({"wp_id": WP, "mt_id": "MT-001", "from_model": "qwen2.5-coder:7b",
               "from_lora": "rust-general-v3", "from_level": 0,
               "to_model": "qwen2.5-coder:14b", "to_level": 1, "reason": "two consecutive failures",
               "failure_category": "incomplete_implementation", "iterations_at_previous_level": 2,
               "escalation_record_ref": escalation_record}),
    ));
    e(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-001", "iteration": 1})));
    e(Event::new("FR-EVT-MT-003", iteration_complete("MT-001", 1, 3, 1, "SUCCESS", &snap)));
    e(Event::new("FR-EVT-MT-015", json!({"wp_id": WP, "mt_id": "MT-001", "candidate_ref": candidate})));
    e(Event::new("FR-EVT-MT-004", json!({"wp_id": WP, "mt_id": "MT-001"})));
    e(Event::new("FR-EVT-MT-002", json!({"wp_id": WP, "mt_id": "MT-002", "iteration": 1})));
    e(Event::new("FR-EVT-MT-003", iteration_complete("MT-002", 1, 1, 0, "RETRY", &snap)));
    e(Event::new(
        "FR-EVT-GATE-001",
        json!({"op_id": "op-7", "gate": "G-SCOPE", "outcome": "deny", "reason": "src/main.rs is outside the MT scope"}),
    )
    .mt("MT-002"));
    e(Event::new("FR-EVT-MT-006", json!({"wp_id": WP, "mt_id": "MT-002", "reason": "iteration_limit"})));

    let mut l = ledger(&job, WP);
    l.append_step(&step("MT-001_iter-001", LedgerStepStatus::InProgress, 0, None)).unwrap();
    l.append_step(&step("MT-001_iter-001", LedgerStepStatus::Completed, 0, Some(output))).unwrap();
    l.append_step(&step("MT-001_iter-002", LedgerStepStatus::Completed, 0, Some(response.clone()))).unwrap();
    l.append_step(&step("MT-001_iter-003", LedgerStepStatus::Completed, 1, Some(response.clone()))).unwrap();
    l.append_step(&step("MT-002_iter-001", LedgerStepStatus::Completed, 0, Some(response.clone()))).unwrap();

    let mut mt1 = MTProgressEntry::pending("MT-001", "parse the version string");
    mt1.status = MTStatus::Completed;
    mt1.iterations = vec![
        iteration("MT-001", 1, 1, 0, IterationOutcome::Retry),
        iteration("MT-001", 2, 2, 0, IterationOutcome::Escalate),
        iteration("MT-001", 3, 1, 1, IterationOutcome::Success),
    ];
    mt1.iterations[0].validation_evidence_ref = Some(stdout.clone());
    mt1.final_iteration = Some(1);
    mt1.final_model_level = Some(1);
    mt1.escalation_record_ref = Some(escalation_record.clone());
    mt1.distillation_candidate = Some(mtx_types::progress::DistillationCandidateSummary {
        eligible: true,
        skill_log_entry_id: None,
        task_type_tags: vec!["rust".into()],
        candidate_ref: Some(candidate.clone()),
    });
    let mut mt2 = MTProgressEntry::pending("MT-002", "compare versions");
    mt2.status = MTStatus::Blocked;
    mt2.iterations = vec![iteration("MT-002", 1, 1, 0, IterationOutcome::Retry)];
    let mt3 = MTProgressEntry::pending("MT-003", "format versions");
    let mut p = progress(GATED, WP, vec![mt1, mt2, mt3]);
    p.status = ProgressStatus::Paused;
    p.current_state.active_mt = Some("MT-002".into());
    p.current_state.total_escalations = 1;
    p.current_state.pending_gate = Some(PendingGate {
        gate_reason: "iteration_limit".into(),
        mt_id: "MT-002".into(),
        level: 0,
        requested_at: "2026-01-01T00:05:00.000Z".into(),
        decision_ref: None,
    });
    ProgressStore::new(&job.progress_artifact()).save(&mut p).unwrap();

    // ----------------------------------------------------------------- job-done
    let other_wp = "WP-2-Other-v1";
    let mut row = job_record(DONE, other_wp, JobStatus::Completed, "", "2026-01-01T00:00:01.000Z");
    row.completed_at = Some("2026-01-01T00:03:00.000Z".into());
    let job = create_job(&state, &history, &row);
    let fr = FlightRecorder::create(&job.events(), correlation(DONE, other_wp)).unwrap();
    emit(&fr, &history, DONE, Event::new("FR-EVT-MT-009", json!({"wp_id": other_wp})));
    ledger(&job, other_wp);
    let mut done = MTProgressEntry::pending("MT-001", "only task");
    done.status = MTStatus::Completed;
    done.iterations = vec![iteration("MT-001", 1, 1, 0, IterationOutcome::Success)];
    done.final_iteration = Some(1);
    let mut p = progress(DONE, other_wp, vec![done]);
    p.status = ProgressStatus::Completed;
    ProgressStore::new(&job.progress_artifact()).save(&mut p).unwrap();

    // -------------------------------------------------------------- job-consent
    let row = job_record(
        CONSENT,
        WP,
        JobStatus::AwaitingUser,
        "awaiting_cloud_consent",
        "2026-01-01T00:00:03.000Z",
    );
    let job = create_job(&state, &history, &row);
    let fr = FlightRecorder::create(&job.events(), correlation(CONSENT, WP)).unwrap();
    emit(
        &fr,
        &history,
        CONSENT,
        Event::new(
            "FR-EVT-CLOUD-001",
            json!({"request_id": "req-1", "reason": "local levels exhausted", "requested_model_id": "gpt-4o"}),
        )
        .mt("MT-001"),
    );
    ledger(&job, WP);
    let plan = put(
        &store,
        serde_json::to_vec(&json!({"projection_plan_id": "plan-1", "include_artifact_refs": ["prompt.txt"],
                                     "payload_sha256": "b".repeat(64), "max_bytes": 4096}))
        .unwrap()
        .as_slice(),
        "projection_plan",
        CONSENT,
        "application/json",
    );
    let mut mt = MTProgressEntry::pending("MT-001", "needs the cloud");
    mt.status = MTStatus::Blocked;
    let mut p = progress(CONSENT, WP, vec![mt]);
    p.status = ProgressStatus::Paused;
    p.current_state.active_mt = Some("MT-001".into());
    p.current_state.pending_cloud_escalation = Some(PendingCloudEscalation {
        request_id: "req-1".into(),
        mt_id: "MT-001".into(),
        requested_model_id: "gpt-4o".into(),
        projection_plan_ref: plan,
        payload_sha256: "b".repeat(64),
        local_attempts: 6,
        last_error_summary: "tests still fail".into(),
    });
    ProgressStore::new(&job.progress_artifact()).save(&mut p).unwrap();

    Fixture { dir, stdout, prompt, escalation_record, diff }
}

// ------------------------------------------------------------------- fake actions

/// Records every call; `gate` and `consent` write the ledger row and the FR event the
/// executor writes, and `resume` clears the pause as a resumed job would.
pub struct FakeActions {
    state_dir: PathBuf,
    pub calls: Mutex<Vec<String>>,
    /// Makes `resume` fail, as a resume of a job whose workspace is gone would.
    pub fail_resume: std::sync::atomic::AtomicBool,
}

impl FakeActions {
    pub fn new(state_dir: &Path) -> Arc<Self> {
        Arc::new(FakeActions {
            state_dir: state_dir.to_owned(),
            calls: Mutex::new(Vec::new()),
            fail_resume: Default::default(),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn job(&self, job_id: &str) -> (JobDir, ProgressStore, ProgressArtifact) {
        let job = StateDir::new(&self.state_dir).job(job_id).unwrap();
        let store = ProgressStore::new(&job.progress_artifact());
        let p = store.load::<ProgressArtifact>().unwrap();
        (job, store, p)
    }
}

impl OperatorActions for FakeActions {
    fn gate(&self, job_id: &str, decision: &str, note: Option<&str>, user_id: &str) -> Result<Value, String> {
        self.calls.lock().unwrap().push(format!("gate {job_id} {decision} {}", note.unwrap_or("-")));
        let (job, store, mut p) = self.job(job_id);
        let Some(gate) = p.current_state.pending_gate.clone() else {
            return Err(format!("job is not paused: {job_id} waits at no gate"));
        };
        if gate.decision_ref.is_some() {
            return Err(format!("job is not paused: {job_id} already has a decision; resume it"));
        }
        let decided = json!({
            "decision_id": uuid::Uuid::now_v7().to_string(), "job_id": job_id, "wp_id": p.wp_id,
            "mt_id": gate.mt_id, "gate_reason": gate.gate_reason, "decision": decision,
            "actor": {"kind": "human", "user_id": user_id}, "decided_at": mtx_types::now_rfc3339(),
        });
        let mut ledger = RunLedger::open(&job.run_ledger()).unwrap();
        ledger
            .append(&LedgerRecord::GateDecision(GateDecisionRecord {
                decision_id: decided["decision_id"].as_str().unwrap().into(),
                mt_id: Some(gate.mt_id.clone()),
                gate_reason: gate.gate_reason.clone(),
                decision: decision.into(),
                decision_ref: None,
            }))
            .unwrap();
        let fr = FlightRecorder::open(&job.events(), correlation(job_id, &p.wp_id)).unwrap();
        fr.emit(Event::new("FR-EVT-MTX-002", decided.clone())).unwrap();
        let rel = format!("gate_decisions/{}.json", decided["decision_id"].as_str().unwrap());
        let handle = job.write_file(&rel, decided.to_string().as_bytes()).unwrap();
        p.current_state.pending_gate.as_mut().unwrap().decision_ref = Some(handle);
        store.save(&mut p).unwrap();
        Ok(decided)
    }

    fn consent(
        &self,
        job_id: &str,
        approve: bool,
        note: Option<&str>,
        user_id: &str,
    ) -> Result<Value, String> {
        self.calls.lock().unwrap().push(format!("consent {job_id} {approve} {}", note.unwrap_or("-")));
        let (job, _, p) = self.job(job_id);
        let Some(pending) = p.current_state.pending_cloud_escalation else {
            return Err(format!("job {job_id} is not waiting for cloud consent"));
        };
        let receipt = json!({
            "consent_receipt_id": uuid::Uuid::now_v7().to_string(), "projection_plan_id": "plan-1",
            "payload_sha256": pending.payload_sha256, "approved": approve, "user_id": user_id,
            "approved_at": mtx_types::now_rfc3339(), "ui_surface": "operator_console",
        });
        let mut ledger = RunLedger::open(&job.run_ledger()).unwrap();
        ledger
            .append(&LedgerRecord::Consent(ConsentRecord {
                request_id: pending.request_id.clone(),
                approved: approve,
                consent_receipt_id: receipt["consent_receipt_id"].as_str().map(str::to_owned),
                receipt_ref: None,
            }))
            .unwrap();
        let fr = FlightRecorder::open(&job.events(), correlation(job_id, &p.wp_id)).unwrap();
        let id = if approve { "FR-EVT-CLOUD-002" } else { "FR-EVT-CLOUD-003" };
        fr.emit(
            Event::new(
                id,
                json!({"request_id": pending.request_id, "reason": "operator decision",
                       "requested_model_id": pending.requested_model_id}),
            )
            .mt(&pending.mt_id),
        )
        .unwrap();
        Ok(receipt)
    }

    /// Refuses like the executor: only a job in progress takes a request.
    fn request(&self, job_id: &str, kind: &str, note: Option<&str>, user_id: &str) -> Result<Value, String> {
        self.calls.lock().unwrap().push(format!("request {job_id} {kind} {}", note.unwrap_or("-")));
        let (_, _, p) = self.job(job_id);
        if p.status != ProgressStatus::InProgress {
            return Err(format!("job {job_id} is paused; decide its gate instead"));
        }
        Ok(
            json!({"job_id": job_id, "kind": kind, "mt_id": p.current_state.active_mt, "requested_by": user_id}),
        )
    }

    fn resume(&self, job_id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("resume {job_id}"));
        if self.fail_resume.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("job {job_id} records no workspace root"));
        }
        let (job, store, mut p) = self.job(job_id);
        p.current_state.pending_gate = None;
        p.current_state.pending_cloud_escalation = None;
        p.status = ProgressStatus::InProgress;
        if let Some(active) = p.current_state.active_mt.clone()
            && let Some(mt) = p.micro_tasks.iter_mut().find(|m| m.mt_id == active)
        {
            mt.status = MTStatus::InProgress;
        }
        store.save(&mut p).map_err(|e| e.to_string())?;
        let fr = FlightRecorder::open(&job.events(), correlation(job_id, &p.wp_id)).unwrap();
        fr.emit(Event::new("FR-EVT-MT-008", json!({"wp_id": p.wp_id}))).unwrap();
        Ok(())
    }
}

// ---------------------------------------------------------------------- the server

/// A console serving on a loopback port until dropped.
pub struct Console {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// Starts the console through [`mtx_console::serve`] on `127.0.0.1:0`.
pub fn start(state_dir: &Path, token: Option<&str>, actions: Arc<dyn OperatorActions>) -> Console {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ConsoleConfig {
        state_dir: state_dir.to_owned(),
        addr: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    runtime.spawn(async move {
        if let Err(e) = mtx_console::serve(config, actions, Some(tx)).await {
            panic!("console stopped: {e:#}");
        }
    });
    let addr = runtime.block_on(rx).expect("the console reports its address");
    Console { addr, _runtime: runtime }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response. `Host` is the
/// console's address unless `headers` sets it.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Decodes a chunked body (as much of it as arrived).
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], None)
}

/// A POST as the console's page sends it: JSON, same origin.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Response {
    let origin = format!("http://{addr}");
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json"), ("Origin", origin.as_str()), ("X-Mtx-Console", "1")],
        Some(body),
    )
}
