//! The loop of MTX-SPEC 5: job creation and planning (5.2), the per-MT procedure with its
//! iteration steps a-p (5.3), hard gates and pauses (5.5, 5.15), escalation, drop-back and
//! distillation capture (5.8-5.10, 5.16), model swaps (5.13), cloud consent (5.14),
//! finalisation (5.4) and the re-entry paths (8.5, 8.8).
//!
//! Every state change is preceded by the event that announces it and followed by the
//! records of 8.4; nothing here writes into the workspace or runs a command except through
//! the Tool Bus, and no model or policy is consulted except through its plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtx_loop::{
    CompileInput, Decision, DirReader, EditRules, FailedCommand, HardGateReason, IterationFacts,
    IterationObservation, IterationReport, LoopStatus, Proposal, ProposedDecision, RetrievalConfig,
    SnapshotIds, WorkspaceReader,
};
use mtx_plugin::bindings::types as wit;
use mtx_plugin::{CallContext, HostOptions, LoadedPlugin, PluginError, PluginHost, ReportedError};
use mtx_store::fsutil::{Content, WriteGroup};
use mtx_store::history::StatusUpdate;
use mtx_store::ledger::{LedgerHeader, ResumeRecord};
use mtx_store::{
    ArtifactMeta, ArtifactStore, Correlation, Event, FlightRecorder, JobDir, JobHistory, LedgerRecord,
    ProgressStore, RunLedger, StateDir, StepOutput, recovery,
};
use mtx_store::{InputPack, Journal};
use mtx_toolbus::plugin::{PluginCallContext, PluginToolBus};
use mtx_toolbus::{CapabilityProfile, PlannedOperation, ToolBus, ToolBusConfig, ToolBusError};
use mtx_types::{
    ArtifactHandle, AttemptOutcome, CompletionSignal, DistillationCandidate, DropBackAction,
    DropBackDecision, EscalationAttempt, EscalationLevel, EscalationRecord, FailureCategory, GateChoice,
    GateDecision, IterationOutcome, IterationRecord, JobStatus, LedgerStep, LedgerStepStatus, MTStatus,
    MicroTaskDefinition, MicroTaskExecutorJob, ProgressArtifact, ProgressStatus, Remediation, StudentAttempt,
    StudentOutcome, TeacherSuccess, TrustSignals, ValidationResult, VerifySpecResult, canonical_json,
    now_rfc3339, sha256_hex, status_reason,
};
use serde_json::{Value, json};

use crate::convert;
use crate::job::{
    DefinitionsDoc, EXT_KEY, Job, LoopExt, MT_DEFINITIONS_FILE, StudentRef, file_handle, history_row,
    internal, job_inputs, new_progress, read_definitions, read_record,
};
use crate::recording::{JobLog, StepScope};
use crate::toolport::ValidatorPort;
use crate::{ExecError, ExecutorSetup, JobOutcome, RunObserver};

/// Tool Bus operation families an MT's `allowed_tools` may name (MT-VAL-011).
const REGISTERED_TOOLS: &[&str] =
    &["engine.shell", "engine.shell.exec", "engine.fs", "engine.fs.write_files"];

/// Name of the file whose presence in the job directory requests cancellation.
pub const CANCEL_FILE: &str = "cancel_requested";

/// Status reason of a job an operator aborted at a gate (an mtx extension of 3.1.7).
pub const GATE_ABORT: &str = "gate_abort";

/// Whether the loop goes on or stops for this call.
enum Flow {
    Continue,
    Stop,
}

/// Ledger room kept free for the records of one more iteration and of a gate (an
/// iteration writes a few kilobytes).
const LEDGER_HEADROOM_BYTES: u64 = 1024 * 1024;

/// The protected-file rule (documented in the README): test oracles are every file under
/// a `tests/` directory and every file named `*_test.*` or `test_*.*`; those the MT does
/// not list in `files.modify` / `files.create` are protected.
pub fn is_test_oracle(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or(name);
    path.starts_with("tests/")
        || path.contains("/tests/")
        || (name.contains('.') && (stem.ends_with("_test") || stem.starts_with("test_")))
}

/// Workspace files (relative paths and sizes), skipping `.git`, the state directory and
/// build output.
fn list_files(root: &Path, skip: &[String]) -> Vec<(String, u64)> {
    walk_files(root, skip, |e| e.metadata().map(|m| m.len()).unwrap_or(0))
}

/// The workspace's files, relative to `root` and sorted, without their sizes: no `stat`
/// per file (the walk's directory entries already tell files from directories).
fn list_paths(root: &Path, skip: &[String]) -> Vec<String> {
    walk_files(root, skip, |_| ()).into_iter().map(|(p, ())| p).collect()
}

/// Every file under `root` (not `.git`, `target` or `skip`), with what `of` tells of it.
fn walk_files<T: Ord>(
    root: &Path,
    skip: &[String],
    of: impl Fn(&std::fs::DirEntry) -> T,
) -> Vec<(String, T)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(rel) = path.strip_prefix(root) else { continue };
            let rel = rel.display().to_string();
            if rel == ".git" || rel == "target" || skip.iter().any(|s| &rel == s) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                out.push((rel, of(&e)));
            }
        }
    }
    out.sort();
    out
}

fn elapsed_ms_since(ts: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds().max(0) as u64)
        .unwrap_or(0)
}

fn load_plugin(host: &PluginHost, spec: &mtx_plugin::PluginSpec) -> Result<LoadedPlugin, ExecError> {
    host.load(spec)
        .map_err(|e| ExecError::InvalidInput(format!("plugin {} cannot be loaded: {e}", spec.name)))
}

fn call_ctx() -> CallContext {
    CallContext { clock: now_rfc3339(), ..CallContext::default() }
}

/// Everything one `run_job` / `resume_job` call holds.
struct Run<'a> {
    setup: &'a ExecutorSetup,
    observer: &'a dyn RunObserver,
    job: Job,
    host: PluginHost,
    backend: LoadedPlugin,
    selector: LoadedPlugin,
    policy_plugin: LoadedPlugin,
    validators: Vec<LoadedPlugin>,
    bus: Arc<ToolBus>,
    profile: CapabilityProfile,
    artifacts: ArtifactStore,
    workspace: PathBuf,
    /// Model profiles from `describe-model`, by model id.
    profiles: BTreeMap<String, Option<wit::ModelProfile>>,
    /// The workspace reader, opened at its first use (the root's handle is kept).
    reader: std::sync::OnceLock<DirReader>,
}

fn capability_profile(setup: &ExecutorSetup) -> CapabilityProfile {
    let mut grants: Vec<String> = setup.toolbus.proc_exec.iter().map(|t| format!("proc.exec:{t}")).collect();
    grants.push("fs.read".into());
    grants.push("fs.write".into());
    CapabilityProfile { id: setup.capability_profile_id.clone(), grants, consents: Vec::new() }
}

fn validate_setup(setup: &ExecutorSetup) -> Result<(), ExecError> {
    setup
        .policy
        .validate()
        .map_err(|p| ExecError::InvalidInput(format!("execution policy: {}", p.join("; "))))?;
    if !setup.workspace.is_dir() {
        return Err(ExecError::InvalidInput(format!(
            "workspace {} is not a directory",
            setup.workspace.display()
        )));
    }
    if setup.capability_profile_id.is_empty() {
        return Err(ExecError::InvalidInput("capability_profile_id is empty".into()));
    }
    Ok(())
}

/// 8.5 startup scan: every job left `in_progress` is marked `stalled`, its ledger
/// reconciled, and FR-EVT-WF-RECOVERY recorded. It continues only on `resume_job`.
fn startup_scan(state: &StateDir) -> Result<(), ExecError> {
    for found in recovery::scan(state.root())? {
        let dir = found.job_dir;
        match Journal::recover(dir.root(), state.root()) {
            // Another process runs it: not a crashed job.
            Err(mtx_store::StoreError::Busy { .. }) => continue,
            replayed => replayed?,
        };
        let Ok(mut record) = read_record(&dir) else { continue };
        if record.status == JobStatus::Stalled || record.status.is_terminal() {
            continue;
        }
        recover_job(&dir, &mut record, found.last_heartbeat_ts.as_deref())?;
    }
    Ok(())
}

/// The correlation ids of one run attempt of a recorded job.
fn correlation_of(record: &MicroTaskExecutorJob, workflow_run_id: &str) -> Correlation {
    Correlation {
        trace_id: record.trace_id.clone(),
        job_id: record.job_id.clone(),
        workflow_run_id: workflow_run_id.to_owned(),
        wp_id: record.wp_id.clone(),
    }
}

/// Reconciles a crashed job's ledger, records WF-RECOVERY and marks the job stalled.
fn recover_job(
    dir: &JobDir,
    record: &mut MicroTaskExecutorJob,
    heartbeat: Option<&str>,
) -> Result<(), ExecError> {
    let workflow_run_id = uuid::Uuid::now_v7().to_string();
    let correlation = correlation_of(record, &workflow_run_id);
    let recorder = FlightRecorder::open(&dir.events(), correlation)?;
    let mut ledger = RunLedger::open(&dir.run_ledger())?;
    let report = recovery::reconcile_ledger(dir, &mut ledger)?;
    let heartbeat = heartbeat.map(str::to_owned).unwrap_or_else(|| record.updated_at.clone());
    recorder.emit(recovery::recovery_event(&report, &workflow_run_id, &heartbeat))?;
    record.status = JobStatus::Stalled;
    record.updated_at = now_rfc3339();
    let bytes = serde_json::to_vec_pretty(record).map_err(internal)?;
    dir.write_file("job.json", &bytes)?;
    if let Some(state_root) = dir.root().parent().and_then(Path::parent)
        && let Ok(h) = JobHistory::open(&StateDir::new(state_root).history_db())
    {
        let update = StatusUpdate { status: Some(JobStatus::Stalled), ..StatusUpdate::default() };
        let _ = h.update_status(&record.job_id, &update);
    }
    Ok(())
}

pub fn run_job(
    setup: &ExecutorSetup,
    wp_path: &Path,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    validate_setup(setup)?;
    let state = StateDir::new(&setup.state_dir);
    mtx_store::fsutil::create_dir_durable(&state.jobs_dir()).map_err(internal)?;
    startup_scan(&state)?;
    let wp = mtx_wp::load_work_packet(wp_path).map_err(|e| ExecError::InvalidInput(e.to_string()))?;
    let scope = mtx_wp::wp_scope(&wp);

    // The job exists (record, logs, history row) before anything is planned, so a refusal
    // of the generated MTs is recorded against it (section 4).
    let job_id = uuid::Uuid::now_v7().to_string();
    let dir = state.job(&job_id)?;
    dir.create()?;
    let (journal, _) = Journal::open(&dir.journal_path(), state.root())?;
    let dir = dir.with_journal(Arc::new(journal.with_spares(&state.spare_dir(&job_id))));
    // The parsed packet is kept with the job: a crash during planning re-plans from it.
    dir.write_file(WORK_PACKET_FILE, &serde_json::to_vec_pretty(&wp).map_err(internal)?)?;
    let trace_id = uuid::Uuid::now_v7().to_string();
    let workflow_run_id = uuid::Uuid::now_v7().to_string();
    let correlation = Correlation {
        trace_id: trace_id.clone(),
        job_id: job_id.clone(),
        workflow_run_id,
        wp_id: wp.wp_id.clone(),
    };
    let recorder = FlightRecorder::create(&dir.events(), correlation)?;
    let now = now_rfc3339();
    let ledger = RunLedger::create(
        &dir.run_ledger(),
        LedgerHeader {
            ledger_id: uuid::Uuid::now_v7().to_string(),
            wp_id: wp.wp_id.clone(),
            job_id: job_id.clone(),
            created_at: now.clone(),
        },
    )?;
    let history = match JobHistory::open(&state.history_db()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "job history unavailable; reindex will rebuild it");
            None
        }
    };
    let inputs = InputPack::open(dir.root())?;
    let log = Arc::new(JobLog::new(&job_id, recorder, ledger, history, inputs, dir.shared_journal())?);
    let policy = setup.policy.clone();
    let placeholder = ArtifactHandle {
        artifact_id: uuid::Uuid::now_v7().to_string(),
        path: MT_DEFINITIONS_FILE.into(),
        sha256: sha256_hex(b""),
        size_bytes: None,
        media_type: None,
    };
    let record = MicroTaskExecutorJob {
        job_id: job_id.clone(),
        job_kind: mtx_types::JOB_KIND.into(),
        protocol_id: mtx_types::PROTOCOL_ID.into(),
        task_schema_version: "1.0.0".into(),
        parent_job_id: None,
        profile_id: mtx_types::PROFILE_ID.into(),
        capability_profile_id: setup.capability_profile_id.clone(),
        access_mode: mtx_types::AccessMode::ApplyScoped,
        safety_mode: mtx_types::SafetyMode::Normal,
        workspace_scope: mtx_types::WorkspaceScope {
            root: setup.workspace.display().to_string(),
            in_scope_paths: scope.in_scope_paths.clone(),
            out_of_scope: scope.out_of_scope.clone(),
        },
        entity_refs: vec![mtx_types::EntityRef { kind: "work_packet".into(), id: wp.wp_id.clone() }],
        context_snapshot: None,
        layer_scope: mtx_types::LayerScope::default(),
        status: JobStatus::Queued,
        created_at: now.clone(),
        started_at: None,
        completed_at: None,
        error: None,
        wp_id: wp.wp_id.clone(),
        mt_definitions_ref: placeholder.clone(),
        progress_artifact_ref: placeholder.clone(),
        run_ledger_ref: placeholder,
        execution_policy: policy.clone(),
        execution_state: mtx_types::ExecutionState {
            current_mt_index: 0,
            current_iteration: 0,
            current_escalation_level: 0,
            current_model_id: policy.escalation_chain.first().map(|l| l.model_id.clone()).unwrap_or_default(),
            current_lora_id: None,
            total_iterations: 0,
            total_escalations: 0,
            total_drop_backs: 0,
            started_at: now.clone(),
            last_activity_at: now.clone(),
            phase: mtx_types::ExecutionPhase::Initializing,
        },
        metrics: mtx_types::MicroTaskMetrics::default(),
        trace_id,
        workflow_run_id: log.recorder().correlation().workflow_run_id.clone(),
        status_reason: "queued".into(),
        updated_at: now,
        job_inputs: job_inputs(&wp.wp_id, &scope, &policy),
        job_outputs: None,
        job_metrics: mtx_types::JobMetrics::default(),
        extra: serde_json::Map::new(),
    };
    record.check_contract().map_err(|e| internal(anyhow::anyhow!(e)))?;
    if let Some(h) = log.history()
        && let Err(e) = h.create_job(&history_row(&record, &dir))
    {
        tracing::warn!(error = %e, "job history row not created");
    }
    let mut job = Job {
        state: state.clone(),
        dir: dir.clone(),
        record,
        defs: Vec::new(),
        waves: Vec::new(),
        progress: new_progress(&wp.wp_id, &job_id, &policy, &setup.loras, &[], &[]),
        progress_store: ProgressStore::new(&dir.progress_artifact()),
        ext: LoopExt::default(),
        log: log.clone(),
    };
    job.set_status(JobStatus::Running, "running")?;

    let host =
        PluginHost::new(HostOptions { cache_dir: setup.cache_dir.clone() }, log.clone()).map_err(internal)?;
    let run = match Run::new(setup, observer, job, host) {
        Ok(r) => r,
        Err((mut job, e)) => {
            fail_before_start(&mut job, status_reason::PLUGIN_FAILURE, &e.to_string(), observer)?;
            return Err(e);
        }
    };

    plan_and_drive(run, &wp)
}

/// Planning (5.2): the planner plugin, then MT-VAL, the capability checks, the waves;
/// then the loop. Also the resumption of a job a crash stopped before its plan was saved.
fn plan_and_drive(mut run: Run<'_>, wp: &mtx_wp::WorkPacket) -> Result<JobOutcome, ExecError> {
    let scope = mtx_wp::wp_scope(wp);
    let policy = run.job.record.execution_policy.clone();
    let job_id = run.job.job_id().to_string();
    let defs = match run.plan(wp, &scope) {
        Ok(d) => d,
        Err(e) => return run.refuse_plan(e),
    };
    let registered: Vec<&str> = REGISTERED_TOOLS.to_vec();
    let report = mtx_wp::validate_definitions(&defs, &scope, &policy, &registered);
    let validation_doc = serde_json::to_value(&report).unwrap_or(Value::Null);
    if report.has_errors() {
        let listed: Vec<String> = report
            .errors
            .iter()
            .map(|i| format!("{} {}: {}", i.rule_id, i.mt_id.as_deref().unwrap_or("-"), i.message))
            .collect();
        run.write_definitions(&defs, &[], validation_doc)?;
        let message = format!("MT definitions invalid: {}", listed.join("; "));
        run.fail_job(status_reason::MT_DEFINITIONS_INVALID, &message, None)?;
        return Err(ExecError::InvalidInput(message));
    }
    let waves = mtx_wp::compute_waves(&defs).map_err(|e| ExecError::InvalidInput(e.to_string()))?;
    run.write_definitions(&defs, &waves, validation_doc)?;
    run.job.defs = defs;
    run.job.waves = waves;

    // 10.10.4: every verify command's tool must be in the job's proc.exec allowlist.
    if let Some(message) = run.capability_check()? {
        run.fail_job(status_reason::CAPABILITY_VIOLATION, &message, None)?;
        return Ok(run.finish());
    }

    let order = run.job.order();
    run.job.progress = new_progress(&wp.wp_id, &job_id, &policy, &run.setup.loras, &run.job.defs, &order);
    // Write-ahead: the loop's start is announced before the first progress save, which
    // makes it durable first. (Announced after it, a kill between the two left a job whose
    // resumed run never recorded FR-EVT-MT-001.)
    run.emit(Event::new(
        "FR-EVT-MT-001",
        json!({
            "wp_id": wp.wp_id,
            "total_mts": run.job.defs.len(),
            "execution_policy": policy,
            "mt_ids": order,
            "execution_waves": run.job.waves,
        }),
    ))?;
    run.job.save_progress()?;
    run.job.set_status(JobStatus::Running, "running")?;
    run.drive()?;
    Ok(run.finish())
}

/// Records a job that failed before its loop could start (no plugins to call).
fn fail_before_start(
    job: &mut Job,
    reason: &str,
    message: &str,
    observer: &dyn RunObserver,
) -> Result<(), ExecError> {
    job.log.emit(Event::new(
        "FR-EVT-MT-010",
        json!({"wp_id": job.wp_id(), "status_reason": reason, "error_message": message}),
    ))?;
    for e in job.log.take_unseen() {
        observer.event(&e);
    }
    job.set_status(JobStatus::Failed, reason)
}

/// 8.6 item 2: the job's state cannot be trusted; it fails with `state_corruption`.
fn fail_corrupt(
    state: &StateDir,
    dir: &JobDir,
    record: &mut MicroTaskExecutorJob,
    message: &str,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    let correlation = correlation_of(record, &uuid::Uuid::now_v7().to_string());
    // The event log may be the broken part; the job record below is the durable verdict.
    if let Ok(recorder) = FlightRecorder::open(&dir.events(), correlation) {
        let event = Event::new(
            "FR-EVT-MT-010",
            json!({"wp_id": record.wp_id, "status_reason": status_reason::STATE_CORRUPTION, "error_message": message}),
        );
        if let Ok(env) = recorder.emit(event) {
            observer.event(&env);
        }
    }
    record.status = JobStatus::Failed;
    record.status_reason = status_reason::STATE_CORRUPTION.into();
    record.updated_at = now_rfc3339();
    record.completed_at = Some(record.updated_at.clone());
    record.error = Some(mtx_types::JobError {
        category: mtx_types::ErrorCategory::StateCorruption,
        code: status_reason::STATE_CORRUPTION.into(),
        message: message.to_string(),
        details_ref: None,
    });
    let bytes = serde_json::to_vec_pretty(record).map_err(internal)?;
    dir.write_file("job.json", &bytes)?;
    if let Ok(h) = JobHistory::open(&state.history_db()) {
        let update = StatusUpdate {
            status: Some(JobStatus::Failed),
            status_reason: Some(status_reason::STATE_CORRUPTION.into()),
            completed_at: record.completed_at.clone(),
            ..StatusUpdate::default()
        };
        let _ = h.update_status(&record.job_id, &update);
    }
    Ok(JobOutcome {
        job_id: record.job_id.clone(),
        status: JobStatus::Failed,
        status_reason: status_reason::STATE_CORRUPTION.into(),
        job_dir: dir.root().to_path_buf(),
        summary: crate::JobSummary::default(),
    })
}

pub fn resume_job(
    setup: &ExecutorSetup,
    job_id: &str,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    validate_setup(setup)?;
    let state = StateDir::new(&setup.state_dir);
    let dir = state.job(job_id).map_err(|_| ExecError::NotFound(format!("job {job_id}")))?;
    if !dir.root().is_dir() {
        return Err(ExecError::NotFound(format!("job {job_id} in {}", state.root().display())));
    }
    // Before anything is read: a crash may have left files only the journal holds.
    let (journal, replayed) = Journal::open(&dir.journal_path(), state.root())?;
    if let Some(r) = replayed.filter(mtx_store::JournalReplay::changed_files) {
        tracing::warn!(job_id, restored = r.files_restored.len(), "journal replayed before the resume");
    }
    let dir = dir.with_journal(Arc::new(journal.with_spares(&state.spare_dir(job_id))));
    let mut record = read_record(&dir)?;
    let progress_store = ProgressStore::new(&dir.progress_artifact());
    if !progress_store.exists() && !record.status.is_terminal() && dir.root().join(WORK_PACKET_FILE).is_file()
    {
        return resume_planning(setup, state, dir, record, observer);
    }
    let loaded: Result<ProgressArtifact, _> = progress_store.load();
    let progress = match loaded {
        Ok(p) => p,
        // A job that never got past planning has no progress artifact: it already failed.
        Err(_) if record.status.is_terminal() && !progress_store.exists() => {
            return Ok(JobOutcome {
                job_id: job_id.into(),
                status: record.status,
                status_reason: record.status_reason.clone(),
                job_dir: dir.root().to_path_buf(),
                summary: crate::JobSummary::default(),
            });
        }
        // 8.6 item 1: a progress artifact that fails to parse or validate is rebuilt. The
        // previous copy is the first choice: the document the last save replaced, or the
        // one a save was putting in place when the process died (its barrier done unless
        // the machine lost power during it; a failed barrier empties the copy). The loop
        // re-executes from there as after a crash, finishing committed steps from their
        // step outputs and replaying the recorded events, so nothing of the loop's own
        // state is lost.
        Err(e) if progress_store.load_previous::<ProgressArtifact>().is_ok() => {
            tracing::warn!(job_id, error = %e, "progress artifact unreadable; continuing from the previous one");
            progress_store.load_previous()?
        }
        // Without it, the progress artifact is rebuilt from the MT definitions, the ledger
        // and the step outputs by re-executing the job from its start: every committed step
        // is finished from its commit record (no model call, no validation), every recorded
        // state change is replayed rather than written again, and the loop's own
        // bookkeeping comes back with them.
        Err(e) => {
            tracing::warn!(job_id, error = %e, "progress artifact and its previous copy unreadable; rebuilding from the recorded steps");
            match read_definitions(&dir).and_then(|defs| {
                let order: Vec<String> = defs.execution_waves.iter().flatten().cloned().collect();
                let mut p = new_progress(
                    &record.wp_id,
                    job_id,
                    &record.execution_policy,
                    &setup.loras,
                    &defs.micro_tasks,
                    &order,
                );
                let ext = LoopExt { events_checkpoint: Some(0), ..LoopExt::default() };
                p.extra.insert(EXT_KEY.into(), serde_json::to_value(&ext).map_err(internal)?);
                Ok(p)
            }) {
                Ok(p) => p,
                Err(e) => return fail_corrupt(&state, &dir, &mut record, &e.to_string(), observer),
            }
        }
    };
    // 8.6 item 2: a broken ledger chain fails the job.
    if let Err(e) = RunLedger::open(&dir.run_ledger()) {
        return fail_corrupt(&state, &dir, &mut record, &e.to_string(), observer);
    }
    let crashed = progress.status == ProgressStatus::InProgress;
    if crashed && record.status != JobStatus::Stalled {
        recover_job(&dir, &mut record, Some(progress.updated_at.as_str()))?;
    }
    let workflow_run_id = uuid::Uuid::now_v7().to_string();
    let correlation = correlation_of(&record, &workflow_run_id);
    let recorder = FlightRecorder::open(&dir.events(), correlation)?;
    let ledger = RunLedger::open(&dir.run_ledger())?;
    let history = JobHistory::open(&state.history_db()).ok();
    let inputs = InputPack::open(dir.root())?;
    let log = Arc::new(JobLog::new(job_id, recorder, ledger, history, inputs, dir.shared_journal())?);
    let defs_doc = read_definitions(&dir)?;
    // A crash after the plan was written but before `job.json` took its reference leaves
    // the placeholder there; the reference is derived from the file as it is.
    if let Some(handle) = dir.handle_of(MT_DEFINITIONS_FILE)? {
        record.mt_definitions_ref = handle;
    }
    let ext: LoopExt =
        progress.extra.get(EXT_KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    record.workflow_run_id = workflow_run_id;
    let job = Job {
        state,
        dir,
        record,
        defs: defs_doc.micro_tasks,
        waves: defs_doc.execution_waves,
        progress,
        progress_store,
        ext,
        log: log.clone(),
    };
    // C-REC-3: a finished job returns as it is, without any plugin or model call.
    let finished = matches!(
        job.progress.status,
        ProgressStatus::Completed
            | ProgressStatus::CompletedWithIssues
            | ProgressStatus::Failed
            | ProgressStatus::Cancelled
    );
    let interrupted_finalisation = finished
        && !job.record.status.is_terminal()
        && matches!(job.progress.status, ProgressStatus::Completed | ProgressStatus::CompletedWithIssues);
    if (finished || job.record.status.is_terminal()) && !interrupted_finalisation {
        return Ok(job.outcome());
    }
    if crashed || interrupted_finalisation {
        arm_crash_replay(&job)?;
    }
    let host = PluginHost::new(HostOptions { cache_dir: setup.cache_dir.clone() }, log).map_err(internal)?;
    let mut run = Run::new(setup, observer, job, host).map_err(|(_, e)| e)?;
    if interrupted_finalisation {
        // A crash between the final progress save and FR-EVT-MT-009 or the job record
        // (5.4 steps 2-3): the work is done; finish recording it, with no model call.
        run.complete_finalisation()?;
        return Ok(run.finish());
    }
    if crashed {
        run.job.set_status(JobStatus::Running, "running")?;
        run.emit(Event::new(
            "FR-EVT-MT-008",
            json!({"wp_id": run.job.wp_id(), "resumed_from": "crash_recovery"}),
        ))?;
    } else {
        match run.apply_pending_decision()? {
            Flow::Stop => return Ok(run.finish()),
            Flow::Continue => {}
        }
    }
    run.drive()?;
    Ok(run.finish())
}

/// The step id, and the cassette `mt_id`, of the end-of-job summary call (5.4).
pub const JOB_SUMMARY_ID: &str = "JOB-SUMMARY";
/// The summary's completion allowance: a few paragraphs.
const JOB_SUMMARY_MAX_TOKENS: u32 = 512;
/// What the level-0 model is asked at the end of a job; one JSON line per MT follows.
const JOB_SUMMARY_INSTRUCTIONS: &str = "Summarise this micro-task job for the operator in at most \
five sentences: what was done, which micro-tasks needed escalation or were skipped, and \
what remains to check. Do not propose code. One JSON line per micro-task follows.\n";

/// The parsed Work Packet of a job, `jobs/<id>/work_packet.json`.
const WORK_PACKET_FILE: &str = "work_packet.json";

/// Name of a step's journaled context, `step_outputs/<key>/intent.json`.
const INTENT_FILE: &str = "intent.json";

/// What one iteration asks the model: the compiled prompt and its ContextSnapshot. It is
/// written to the step directory before the step is journaled `in_progress`, so that a
/// re-run after a crash asks with the same prompt under the same idempotency key, whatever
/// the interrupted attempt changed in the workspace.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Prepared {
    model_id: String,
    lora_id: Option<String>,
    iteration: u32,
    prompt: String,
    prompt_hash: String,
    envelope_hashes: mtx_types::PromptEnvelopeHashes,
    prompt_tokens: u32,
    prompt_ref: ArtifactHandle,
    snapshot_id: String,
    snapshot_ref: ArtifactHandle,
    snapshot_hash: String,
    /// The context did not fit the budget: no model call.
    overflow: bool,
}

/// Resumes a job a crash stopped before its plan was saved: the ledger is reconciled and
/// the recovery recorded as for any crash (8.5), then the job is planned again from its
/// stored Work Packet (planning is deterministic: the planner is a pure plugin).
fn resume_planning(
    setup: &ExecutorSetup,
    state: StateDir,
    dir: JobDir,
    mut record: MicroTaskExecutorJob,
    observer: &dyn RunObserver,
) -> Result<JobOutcome, ExecError> {
    let packet_path = dir.root().join(WORK_PACKET_FILE);
    let wp: mtx_wp::WorkPacket = std::fs::read(&packet_path)
        .map_err(internal)
        .and_then(|b| serde_json::from_slice(&b).map_err(internal))
        .map_err(|e| internal(anyhow::anyhow!("{}: {e}", packet_path.display())))?;
    if record.status != JobStatus::Stalled {
        recover_job(&dir, &mut record, None)?;
    }
    let workflow_run_id = uuid::Uuid::now_v7().to_string();
    let correlation = correlation_of(&record, &workflow_run_id);
    let recorder = FlightRecorder::open(&dir.events(), correlation)?;
    let ledger = RunLedger::open(&dir.run_ledger())?;
    let history = JobHistory::open(&state.history_db()).ok();
    let inputs = InputPack::open(dir.root())?;
    let log = Arc::new(JobLog::new(&record.job_id, recorder, ledger, history, inputs, dir.shared_journal())?);
    record.workflow_run_id = workflow_run_id;
    let policy = record.execution_policy.clone();
    let job = Job {
        state,
        dir: dir.clone(),
        progress: new_progress(&wp.wp_id, &record.job_id, &policy, &setup.loras, &[], &[]),
        progress_store: ProgressStore::new(&dir.progress_artifact()),
        record,
        defs: Vec::new(),
        waves: Vec::new(),
        // Nothing was saved yet: every recorded state change may come again.
        ext: LoopExt { events_checkpoint: Some(0), ..LoopExt::default() },
        log: log.clone(),
    };
    arm_crash_replay(&job)?;
    let host = PluginHost::new(HostOptions { cache_dir: setup.cache_dir.clone() }, log).map_err(internal)?;
    let mut run = match Run::new(setup, observer, job, host) {
        Ok(r) => r,
        Err((mut job, e)) => {
            fail_before_start(&mut job, status_reason::PLUGIN_FAILURE, &e.to_string(), observer)?;
            return Err(e);
        }
    };
    run.job.set_status(JobStatus::Running, "running")?;
    plan_and_drive(run, &wp)
}

/// Hands the job log the state changes the crashed process recorded after its last
/// progress save, so that re-executing from that save records none of them twice.
fn arm_crash_replay(job: &Job) -> Result<(), ExecError> {
    let Some(checkpoint) = job.ext.events_checkpoint else { return Ok(()) };
    let recorded = mtx_store::recorder::read_events(&job.dir.events())?;
    job.log.arm_replay(recorded.into_iter().map(|e| e.envelope).filter(|e| e.seq >= checkpoint).collect());
    Ok(())
}

/// Everything that follows a step's commit marker (`output.json`, then the ledger's
/// `completed`): the progress bookkeeping, FR-EVT-MT-003/017 and the decision. It is kept
/// in `output.json` itself (`loop_commit`), so a crash between the commit marker and the
/// progress save is finished from it without running the step again (8.5: completed steps
/// are never re-run; their IterationRecord is rebuilt from `output.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StepCommit {
    record: IterationRecord,
    evidence_ref: Option<ArtifactHandle>,
    passed_specs: Option<Vec<u32>>,
    /// `Some` for a completion claim: whether it was false.
    false_claim: Option<bool>,
    summary: mtx_loop::IterationSummary,
    mt003: Value,
    mt017: Option<Value>,
    /// `(kind, message)` when the escalation policy failed instead of deciding.
    plugin_problem: Option<(String, String)>,
    decision: Option<Decision>,
    decision_reason: String,
    category: Option<FailureCategory>,
    key: String,
    prompt_ref: ArtifactHandle,
    output_ref: Option<ArtifactHandle>,
    nonblocking_failed: bool,
    evidence_verified: Option<bool>,
    rel_iteration: u32,
    claimed: bool,
    model_error: bool,
}

/// What one model call produced (or why it produced nothing).
struct ModelOutcome {
    text: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    error: Option<(wit::ModelErrorKind, String)>,
    /// The call timed out twice (11.2 rule 1): escalate.
    force_escalation: bool,
    output_ref: Option<ArtifactHandle>,
}

/// Validation of one claimed completion.
struct Validated {
    passed: bool,
    spec_results: Vec<wit::VerifySpecResult>,
    findings: Vec<wit::Finding>,
    capability_denial: Option<String>,
    started_at: String,
    duration_ms: u64,
    /// The evidence of every Tool Bus operation the validators ran.
    tool_evidence: Vec<ArtifactHandle>,
}

impl<'a> Run<'a> {
    #[allow(clippy::result_large_err)]
    fn new(
        setup: &'a ExecutorSetup,
        observer: &'a dyn RunObserver,
        job: Job,
        host: PluginHost,
    ) -> Result<Self, (Job, ExecError)> {
        macro_rules! tryload {
            ($spec:expr) => {
                match load_plugin(&host, $spec) {
                    Ok(p) => p,
                    Err(e) => return Err((job, e)),
                }
            };
        }
        let backend = tryload!(&setup.plugins.model_backend);
        let selector = tryload!(&setup.plugins.lora_selector);
        let policy_plugin = tryload!(&setup.plugins.escalation_policy);
        let mut validators = Vec::new();
        for v in &setup.plugins.validators {
            validators.push(tryload!(v));
        }
        let profile = capability_profile(setup);
        let artifacts = match ArtifactStore::open(&job.state.artifacts_dir()) {
            Ok(a) => a.with_journal(job.dir.shared_journal()),
            Err(e) => return Err((job, e.into())),
        };
        let mut cfg = ToolBusConfig::new(&setup.workspace, profile.clone());
        let mut verify: Vec<String> =
            job.defs.iter().flat_map(|d| d.verify.iter().map(|v| v.command.clone())).collect();
        verify.sort();
        verify.dedup();
        cfg.verify_commands = verify;
        cfg.shell_program = setup.toolbus.shell_program.clone();
        cfg.granted_env =
            setup.toolbus.env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect();
        if let Some(rel) = crate::job::relative_inside(&setup.workspace, &setup.state_dir)
            && !cfg.protected_paths.contains(&rel)
        {
            cfg.protected_paths.push(rel);
        }
        let bus = match ToolBus::new(cfg, artifacts.clone(), job.log.clone()) {
            Ok(b) => b,
            Err(e) => return Err((job, ExecError::InvalidInput(e.to_string()))),
        };
        Ok(Run {
            setup,
            observer,
            job,
            host,
            backend,
            selector,
            policy_plugin,
            validators,
            bus: Arc::new(bus),
            profile,
            artifacts,
            workspace: setup.workspace.clone(),
            profiles: BTreeMap::new(),
            reader: std::sync::OnceLock::new(),
        })
    }

    /// Rebuilds the bus once the MT definitions (and so the verify commands) are known.
    fn rebuild_bus(&mut self) -> Result<(), ExecError> {
        let mut cfg = self.bus.config().clone();
        let mut verify: Vec<String> =
            self.job.defs.iter().flat_map(|d| d.verify.iter().map(|v| v.command.clone())).collect();
        verify.sort();
        verify.dedup();
        cfg.verify_commands = verify;
        let bus = ToolBus::new(cfg, self.artifacts.clone(), self.job.log.clone())
            .map_err(|e| ExecError::InvalidInput(e.to_string()))?;
        self.bus = Arc::new(bus);
        Ok(())
    }

    fn emit(&self, event: Event) -> Result<mtx_store::EventEnvelope, ExecError> {
        let env = self.job.log.emit(event)?;
        self.flush();
        Ok(env)
    }

    fn flush(&self) {
        for e in self.job.log.take_unseen() {
            self.observer.event(&e);
        }
    }

    fn finish(self) -> JobOutcome {
        self.flush();
        self.job.outcome()
    }

    fn wp_id(&self) -> String {
        self.job.wp_id().to_string()
    }

    fn policy(&self) -> &mtx_types::ExecutionPolicy {
        &self.job.progress.policy
    }

    fn chain(&self) -> &[EscalationLevel] {
        &self.job.progress.policy.escalation_chain
    }

    fn reader(&self) -> Result<DirReader, ExecError> {
        if let Some(reader) = self.reader.get() {
            return Ok(reader.clone());
        }
        let reader = DirReader::new(&self.workspace).map_err(internal)?;
        Ok(self.reader.get_or_init(|| reader).clone())
    }

    fn state_skip(&self) -> Vec<String> {
        crate::job::relative_inside(&self.workspace, &self.setup.state_dir).into_iter().collect()
    }

    fn put_artifact(&self, bytes: &[u8], kind: &str, media: &str) -> Result<ArtifactHandle, ExecError> {
        Ok(self.artifacts.put(bytes, self.host_meta(kind, media))?)
    }

    /// [`Run::put_artifact`] into `group`, written when the caller commits it.
    fn stage_artifact(
        &self,
        group: &mut WriteGroup,
        bytes: &[u8],
        kind: &str,
        media: &str,
    ) -> Result<ArtifactHandle, ExecError> {
        Ok(self.artifacts.stage(group, bytes, self.host_meta(kind, media))?)
    }

    fn host_meta(&self, kind: &str, media: &str) -> ArtifactMeta {
        ArtifactMeta {
            kind: kind.into(),
            producer: "host".into(),
            job_id: Some(self.job.job_id().to_string()),
            media_type: Some(media.into()),
            ..ArtifactMeta::default()
        }
    }

    /// The last bytes of a stored command output, for the policy's failure classification.
    fn tail_of(&self, handle: Option<&wit::ArtifactHandle>) -> String {
        const TAIL: usize = 4096;
        let Some(bytes) = handle.and_then(|h| self.artifacts.get(&convert::handle_from_wit(h)).ok()) else {
            return String::new();
        };
        let start = bytes.len().saturating_sub(TAIL);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn profile_of(&mut self, model_id: &str) -> Option<wit::ModelProfile> {
        if let Some(p) = self.profiles.get(model_id) {
            return p.clone();
        }
        let p = self.host.describe_model(&self.backend, model_id, &call_ctx()).ok();
        self.flush();
        self.profiles.insert(model_id.to_string(), p.clone());
        p
    }

    // ---------------------------------------------------------------- planning

    fn plan(
        &mut self,
        wp: &mtx_wp::WorkPacket,
        scope: &mtx_types::WorkPacketScope,
    ) -> Result<Vec<MicroTaskDefinition>, ExecError> {
        let planner = load_plugin(&self.host, &self.setup.plugins.planner)?;
        let files: Vec<wit::WorkspaceFile> = list_files(&self.workspace, &self.state_skip())
            .into_iter()
            .filter(|(p, _)| mtx_wp::path_in_scope(p, &scope.in_scope_paths))
            .map(|(path, size_bytes)| wit::WorkspaceFile { path, size_bytes })
            .collect();
        let locals: Vec<EscalationLevel> =
            self.chain().iter().filter(|l| !l.is_cloud && !l.is_gate_only()).cloned().collect();
        let mut window: Option<u32> = None;
        for l in &locals {
            let w = self.profile_of(&l.model_id).map(|p| p.context_window).unwrap_or(l.context_window);
            window = Some(window.map_or(w, |c| c.min(w)));
        }
        let input = wit::PlannerInput {
            packet: convert::work_packet(wp),
            workspace_files: files,
            context_window: window.unwrap_or(8192),
        };
        let result = self.host.plan(&planner, &input, &call_ctx());
        self.flush();
        match result {
            Ok(defs) => Ok(defs.iter().map(convert::mt_from_wit).collect()),
            Err(PluginError::Reported { error, .. }) => Err(ExecError::InvalidInput(format!(
                "planner {} refused the packet: {error}",
                planner.spec.name
            ))),
            Err(e) => {
                self.emit(Event::new(
                    "FR-EVT-MTX-003",
                    json!({"plugin": e.plugin(), "world": "mt-planner", "kind": e.kind(), "message": e.to_string()}),
                ))?;
                Err(internal(anyhow::anyhow!("{e}")))
            }
        }
    }

    fn refuse_plan(mut self, e: ExecError) -> Result<JobOutcome, ExecError> {
        match e {
            ExecError::InvalidInput(m) => {
                self.fail_job(status_reason::MT_DEFINITIONS_INVALID, &m, None)?;
                Err(ExecError::InvalidInput(m))
            }
            other => {
                self.fail_job(status_reason::PLUGIN_FAILURE, &other.to_string(), None)?;
                Ok(self.finish())
            }
        }
    }

    fn write_definitions(
        &mut self,
        defs: &[MicroTaskDefinition],
        waves: &[Vec<String>],
        validation: Value,
    ) -> Result<(), ExecError> {
        let doc = DefinitionsDoc {
            schema_version: "1.0".into(),
            wp_id: self.wp_id(),
            job_id: self.job.job_id().to_string(),
            micro_tasks: defs.to_vec(),
            execution_waves: waves.to_vec(),
            validation,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(internal)?;
        self.job.record.mt_definitions_ref = self.job.dir.write_file(MT_DEFINITIONS_FILE, &bytes)?;
        self.job.defs = defs.to_vec();
        self.rebuild_bus()?;
        Ok(())
    }

    /// 10.10.4: the tool of every verify command must be allowlisted. Each refused one is
    /// recorded as a denied capability (FR-EVT-CAP-001).
    fn capability_check(&mut self) -> Result<Option<String>, ExecError> {
        let mut problems = Vec::new();
        for d in &self.job.defs {
            for v in &d.verify {
                let cap = match mtx_toolbus::derive_proc_exec(&v.command) {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(format!("{}: verify command {:?}: {e}", d.mt_id, v.command));
                        continue;
                    }
                };
                let tool = cap.trim_start_matches("proc.exec:").to_string();
                if !self.setup.toolbus.proc_exec.contains(&tool) {
                    problems.push(format!(
                        "{}: verify command {:?} needs {cap}, which the job's proc.exec allowlist does not grant",
                        d.mt_id, v.command
                    ));
                    self.emit(
                        Event::new(
                            "FR-EVT-CAP-001",
                            json!({
                                "capability_id": cap,
                                "actor_id": "host",
                                "job_id": self.job.job_id(),
                                "decision_outcome": "deny",
                                "gate": "G-CAP",
                                "mt_id": d.mt_id,
                            }),
                        )
                        .mt(&d.mt_id)
                        .capability(&cap),
                    )?;
                }
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }

    /// Fails the job: FR-EVT-MT-010, progress and job `failed`.
    fn fail_job(&mut self, reason: &str, message: &str, mt_id: Option<&str>) -> Result<(), ExecError> {
        let mut ev = Event::new(
            "FR-EVT-MT-010",
            json!({"wp_id": self.wp_id(), "status_reason": reason, "error_message": message, "mt_id": mt_id}),
        );
        if let Some(mt) = mt_id {
            ev = ev.mt(mt);
        }
        self.emit(ev)?;
        if let Some(mt) = mt_id
            && let Some(i) = self.job.entry_index(mt)
        {
            self.job.progress.micro_tasks[i].status = MTStatus::Failed;
        }
        if self.job.progress_store.exists() || !self.job.progress.micro_tasks.is_empty() {
            self.job.progress.status = ProgressStatus::Failed;
            self.job.progress.completed_at = Some(now_rfc3339());
            self.job.save_progress()?;
        }
        self.job.record.error = Some(mtx_types::JobError {
            category: if reason == status_reason::CAPABILITY_VIOLATION {
                mtx_types::ErrorCategory::CapabilityViolation
            } else if reason == status_reason::PLUGIN_FAILURE {
                mtx_types::ErrorCategory::PluginFailure
            } else {
                mtx_types::ErrorCategory::ValidationError
            },
            code: reason.to_string(),
            message: message.to_string(),
            details_ref: None,
        });
        let status =
            if reason == status_reason::POISONED_DURATION { JobStatus::Poisoned } else { JobStatus::Failed };
        self.job.set_status(status, reason)
    }

    // ---------------------------------------------------------------- re-entry

    /// 8.8: applies the recorded decision the paused job waits for.
    fn apply_pending_decision(&mut self) -> Result<Flow, ExecError> {
        if let Some(pending) = self.job.progress.current_state.pending_cloud_escalation.clone() {
            let rel = format!("cloud_escalation/consent_{}.json", pending.request_id);
            let bytes = std::fs::read(self.job.dir.root().join(&rel)).map_err(|_| {
                ExecError::InvalidInput(format!(
                    "job {} waits for cloud consent (request {}); record it with `mtx consent` first",
                    self.job.job_id(),
                    pending.request_id
                ))
            })?;
            let receipt: mtx_types::ConsentReceipt = serde_json::from_slice(&bytes).map_err(internal)?;
            self.job.progress.current_state.pending_cloud_escalation = None;
            self.job.ext.waiting_for = None;
            self.job.progress.status = ProgressStatus::InProgress;
            if receipt.approved {
                self.job.ext.approved_payload = Some(receipt.payload_sha256.clone());
                self.emit(
                    Event::new(
                        "FR-EVT-MT-008",
                        json!({"wp_id": self.wp_id(), "mt_id": pending.mt_id, "resumed_from": "cloud_consent"}),
                    )
                    .mt(&pending.mt_id),
                )?;
                self.job.save_progress()?;
                self.job.set_status(JobStatus::Running, "running")?;
                return Ok(Flow::Continue);
            }
            let level = self.job.ext.mt_level.unwrap_or(0);
            return self.hard_gate("cloud_escalation_denied", &pending.mt_id, Some(level), None);
        }
        let Some(gate) = self.job.progress.current_state.pending_gate.clone() else {
            // Paused without a pending record (e.g. rebuilt progress): continue.
            self.job.progress.status = ProgressStatus::InProgress;
            self.job.set_status(JobStatus::Running, "running")?;
            return Ok(Flow::Continue);
        };
        let Some(decision_ref) = gate.decision_ref.clone() else {
            return Err(ExecError::InvalidInput(format!(
                "job {} is paused at {} ({}); record a decision with `mtx gate` first",
                self.job.job_id(),
                gate.gate_reason,
                gate.mt_id
            )));
        };
        let bytes = std::fs::read(self.job.dir.resolve(&decision_ref.path)?).map_err(internal)?;
        let decision: GateDecision = serde_json::from_slice(&bytes).map_err(internal)?;
        self.job.ext.consumed_decisions.push(decision.decision_id.clone());
        self.job.progress.current_state.pending_gate = None;
        self.job.ext.waiting_for = None;
        self.job.progress.status = ProgressStatus::InProgress;
        let mt = gate.mt_id.clone();
        let resumed_from =
            if gate.gate_reason == mtx_types::gate::PAUSE_POINT_REASON { "pause_point" } else { "hard_gate" };
        match decision.decision {
            GateChoice::Abort => {
                self.job.save_progress()?;
                self.fail_job(
                    GATE_ABORT,
                    &format!("operator aborted at {} ({mt})", gate.gate_reason),
                    Some(&mt),
                )?;
                return Ok(Flow::Stop);
            }
            GateChoice::Skip => {
                self.skip_mt(&mt, "gate_decision")?;
                self.job.set_status(JobStatus::Running, "running")?;
                return Ok(Flow::Continue);
            }
            GateChoice::Continue => {}
        }
        let policy = self.policy().clone();
        let reason = gate.gate_reason.as_str();
        match reason {
            "pause_point" => self.job.ext.released_pauses.push(mt.clone()),
            "max_total_iterations" => {
                let limits = self.effective_limits();
                self.job.progress.current_state.effective_limits =
                    Some(mtx_types::progress::EffectiveLimits {
                        max_total_iterations: limits.0 + policy.max_total_iterations,
                        max_duration_ms: limits.1,
                    });
            }
            "max_duration" => {
                let limits = self.effective_limits();
                self.job.progress.current_state.effective_limits =
                    Some(mtx_types::progress::EffectiveLimits {
                        max_total_iterations: limits.0,
                        max_duration_ms: limits.1 + policy.max_duration_ms,
                    });
            }
            "token_budget_exceeded" => self.job.ext.token_gate_doublings += 1,
            "escalation_exhausted" => {
                let level = self.job.ext.mt_level.unwrap_or(gate.level);
                let gate_level =
                    self.chain().iter().find(|l| l.level == level).is_some_and(|l| l.is_hard_gate);
                let next = level + 1;
                let target = if gate_level && self.chain().iter().any(|l| l.level == next) {
                    next
                } else {
                    self.highest_local_level()
                };
                self.move_to_level(&mt, target);
            }
            "cloud_escalation_disallowed" | "cloud_escalation_denied" => {
                let target = self.highest_local_level();
                self.move_to_level(&mt, target);
            }
            "human_review_required" => self.move_to_level(&mt, 0),
            // plugin_failure / resource_exhausted: the same iteration runs again.
            _ => {}
        }
        if let Some(i) = self.job.entry_index(&mt)
            && self.job.progress.micro_tasks[i].status == MTStatus::Blocked
        {
            self.job.progress.micro_tasks[i].status = MTStatus::InProgress;
        }
        self.emit(
            Event::new(
                "FR-EVT-MT-008",
                json!({"wp_id": self.wp_id(), "mt_id": mt, "decision_id": decision.decision_id, "resumed_from": resumed_from}),
            )
            .mt(&mt),
        )?;
        self.job.save_progress()?;
        self.job.set_status(JobStatus::Running, "running")?;
        Ok(Flow::Continue)
    }

    fn highest_local_level(&self) -> u32 {
        self.chain().iter().filter(|l| !l.is_cloud && !l.is_hard_gate).map(|l| l.level).max().unwrap_or(0)
    }

    /// Continues the MT at `level` with the iteration limit counted afresh.
    fn move_to_level(&mut self, mt_id: &str, level: u32) {
        self.job.ext.mt_level = Some(level);
        self.job.ext.level_iteration_base = self.recorded_at_level_tail(mt_id, level);
        self.job.ext.released_level = Some(level);
        self.job.progress.current_state.active_model_level = level;
    }

    /// The iteration number of the last record when it is at `level`, else 0.
    fn recorded_at_level_tail(&self, mt_id: &str, level: u32) -> u32 {
        self.job
            .entry_index(mt_id)
            .and_then(|i| self.job.progress.micro_tasks[i].iterations.last().cloned())
            .filter(|r| r.escalation_level == level)
            .map_or(0, |r| r.iteration)
    }

    fn effective_limits(&self) -> (u32, u64) {
        let p = self.policy();
        self.job
            .progress
            .current_state
            .effective_limits
            .as_ref()
            .map_or((p.max_total_iterations, p.max_duration_ms), |l| {
                (l.max_total_iterations, l.max_duration_ms)
            })
    }

    // ---------------------------------------------------------------- the loop

    fn drive(&mut self) -> Result<(), ExecError> {
        for mt_id in self.job.order() {
            let Some(i) = self.job.entry_index(&mt_id) else { continue };
            let status = self.job.progress.micro_tasks[i].status;
            if matches!(status, MTStatus::Completed | MTStatus::Skipped) {
                continue;
            }
            if status == MTStatus::Failed {
                return Ok(());
            }
            let mt = self
                .job
                .def(&mt_id)
                .cloned()
                .ok_or_else(|| internal(anyhow::anyhow!("no definition for {mt_id}")))?;
            let deps_done = mt.depends_on.iter().all(|d| {
                self.job
                    .entry_index(d)
                    .is_some_and(|j| self.job.progress.micro_tasks[j].status == MTStatus::Completed)
            });
            if !deps_done {
                self.skip_mt(&mt_id, "dependency_not_completed")?;
                continue;
            }
            if status == MTStatus::Pending
                && self.policy().pause_points.contains(&mt_id)
                && !self.job.ext.released_pauses.contains(&mt_id)
            {
                self.pause_point(&mt_id)?;
                return Ok(());
            }
            match self.run_mt(&mt)? {
                Flow::Continue => {}
                Flow::Stop => return Ok(()),
            }
        }
        self.finalize()
    }

    fn skip_mt(&mut self, mt_id: &str, reason: &str) -> Result<(), ExecError> {
        let mut payload = json!({"wp_id": self.wp_id(), "mt_id": mt_id, "reason": reason});
        let request = self.operator_request(crate::operator::SKIP_FILE);
        if reason == "user_skip"
            && let Some(r) = request.as_ref().filter(|r| r.mt_id.as_deref() == Some(mt_id))
        {
            payload["request_id"] = json!(r.request_id);
            payload["requested_by"] = json!(r.requested_by);
            payload["notes"] = json!(r.notes);
        }
        self.emit(Event::new("FR-EVT-MT-016", payload).mt(mt_id))?;
        if let Some(i) = self.job.entry_index(mt_id) {
            self.job.progress.micro_tasks[i].status = MTStatus::Skipped;
            self.forget_finished(i);
        }
        if self.job.progress.current_state.active_mt.as_deref() == Some(mt_id) {
            self.job.progress.current_state.active_mt = None;
            self.job.ext.mt_level = None;
        }
        self.job.save_progress()?;
        if request.is_some_and(|r| r.mt_id.as_deref() == Some(mt_id)) {
            self.clear_request(crate::operator::SKIP_FILE);
        }
        Ok(())
    }

    /// An operator's request file in the job directory, if one is pending and readable.
    fn operator_request(&self, file: &str) -> Option<crate::operator::OperatorRequest> {
        let path = self.job.dir.root().join(file);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable operator request");
                None
            }
        }
    }

    fn clear_request(&self, file: &str) {
        if let Err(e) = self.job.dir.discard(file) {
            tracing::warn!(file, error = %e, "operator request not cleared");
        }
    }

    /// 5.15: whether an operator asked to skip `mt_id`. A request left for an MT that is
    /// no longer active (it completed first) no longer applies and is cleared.
    fn skip_requested(&self, mt_id: &str) -> bool {
        let Some(request) = self.operator_request(crate::operator::SKIP_FILE) else { return false };
        if request.mt_id.as_deref() == Some(mt_id) {
            return true;
        }
        let active = self.job.progress.current_state.active_mt.as_deref();
        if request.mt_id.as_deref() != active {
            tracing::info!(mt_id = ?request.mt_id, "skip request for an MT that is no longer active: cleared");
            self.clear_request(crate::operator::SKIP_FILE);
        }
        false
    }

    fn pause_point(&mut self, mt_id: &str) -> Result<(), ExecError> {
        self.emit(Event::new("FR-EVT-MT-007", json!({"wp_id": self.wp_id(), "mt_id": mt_id})).mt(mt_id))?;
        if self.policy().effective_automation_level() == mtx_types::AutomationLevel::Locked {
            return self.fail_job(
                status_reason::LOCKED_FAIL_CLOSED,
                "pause point under LOCKED automation",
                Some(mt_id),
            );
        }
        self.job.progress.status = ProgressStatus::Paused;
        self.job.progress.current_state.pending_gate = Some(mtx_types::progress::PendingGate {
            gate_reason: mtx_types::gate::PAUSE_POINT_REASON.into(),
            mt_id: mt_id.to_string(),
            level: self.job.ext.job_level,
            requested_at: now_rfc3339(),
            decision_ref: None,
        });
        self.job.ext.waiting_for = Some("pause_point".into());
        self.job.log.append(&LedgerRecord::Resume(ResumeRecord {
            resume_point: None,
            resume_reason: format!("pause_point:{mt_id}"),
        }))?;
        self.job.save_progress()?;
        self.job.set_status(JobStatus::AwaitingUser, status_reason::PAUSED_USER_GATE)
    }

    /// 5.5 common procedure: FR-EVT-MT-006 first, then the paused state.
    fn hard_gate(
        &mut self,
        reason: &str,
        mt_id: &str,
        from_level: Option<u32>,
        to_level: Option<u32>,
    ) -> Result<Flow, ExecError> {
        if self.policy().effective_automation_level() == mtx_types::AutomationLevel::Locked {
            self.fail_job(
                status_reason::LOCKED_FAIL_CLOSED,
                &format!("hard gate {reason} cannot be granted under LOCKED automation"),
                Some(mt_id),
            )?;
            return Ok(Flow::Stop);
        }
        self.emit(
            Event::new(
                "FR-EVT-MT-006",
                json!({
                    "wp_id": self.wp_id(),
                    "reason": reason,
                    "mt_id": mt_id,
                    "from_level": from_level,
                    "to_level": to_level,
                    "decision_required": ["continue", "abort", "skip"],
                }),
            )
            .mt(mt_id),
        )?;
        let level = self.job.ext.mt_level.unwrap_or(self.job.ext.job_level);
        if let Some(i) = self.job.entry_index(mt_id) {
            self.job.progress.micro_tasks[i].status = MTStatus::Blocked;
        }
        self.job.progress.status = ProgressStatus::Paused;
        self.job.progress.current_state.pending_gate = Some(mtx_types::progress::PendingGate {
            gate_reason: reason.to_string(),
            mt_id: mt_id.to_string(),
            level: level.min(self.policy().max_escalation_level()),
            requested_at: now_rfc3339(),
            decision_ref: None,
        });
        self.job.ext.waiting_for = Some("hard_gate".into());
        self.job.ext.hard_gates += 1;
        self.job.log.append(&LedgerRecord::Resume(ResumeRecord {
            resume_point: None,
            resume_reason: format!("hard_gate:{reason}"),
        }))?;
        self.job.save_progress()?;
        self.job.set_status(JobStatus::AwaitingUser, status_reason::PAUSED_HARD_GATE)?;
        Ok(Flow::Stop)
    }

    fn plugin_failure(&mut self, e: &PluginError, world: &str, mt_id: &str) -> Result<Flow, ExecError> {
        self.plugin_failure_msg(e.plugin(), world, e.kind(), &e.to_string(), mt_id)
    }

    fn plugin_failure_msg(
        &mut self,
        plugin: &str,
        world: &str,
        kind: &str,
        message: &str,
        mt_id: &str,
    ) -> Result<Flow, ExecError> {
        self.emit(
            Event::new(
                "FR-EVT-MTX-003",
                json!({"plugin": plugin, "world": world, "kind": kind, "message": message}),
            )
            .mt(mt_id),
        )?;
        let level = self.job.ext.mt_level;
        self.hard_gate(status_reason::PLUGIN_FAILURE, mt_id, level, None)
    }

    fn finalize(&mut self) -> Result<(), ExecError> {
        let entries = &self.job.progress.micro_tasks;
        let all_completed = entries.iter().all(|e| e.status == MTStatus::Completed);
        let any_failed = entries.iter().any(|e| matches!(e.status, MTStatus::Failed | MTStatus::Blocked));
        let (status, job_status, reason) = if all_completed {
            (ProgressStatus::Completed, JobStatus::Completed, status_reason::COMPLETED)
        } else if !any_failed {
            (
                ProgressStatus::CompletedWithIssues,
                JobStatus::CompletedWithIssues,
                status_reason::COMPLETED_WITH_ISSUES,
            )
        } else {
            (ProgressStatus::Failed, JobStatus::Failed, "failed")
        };
        // 5.4 step 1, before the final save so that a crash after it never asks again.
        self.summarise_job()?;
        self.job.progress.status = status;
        self.job.progress.completed_at = Some(now_rfc3339());
        self.job.progress.current_state.active_mt = None;
        self.job.save_progress()?;
        self.record_completion(job_status, reason)
    }

    /// 5.4 step 1: the job's aggregate summary, an `ai_operation` call to the level-0
    /// model over every MT's outcome. The call goes through the idempotency key like any
    /// step (a stored answer is reused), and its result is `summaries/job_summary.json`.
    /// A failure is a warning in that file and the log; it never changes the outcome.
    fn summarise_job(&mut self) -> Result<(), ExecError> {
        let Some(level) = self.chain().iter().find(|l| !l.is_cloud && !l.is_gate_only()).cloned() else {
            return Ok(());
        };
        let outcomes: Vec<Value> = self
            .job
            .progress
            .micro_tasks
            .iter()
            .map(|e| {
                json!({
                    "mt_id": e.mt_id,
                    "status": e.status,
                    "iterations": e.iterations.len(),
                    "final_model_level": e.final_model_level,
                    "last_error": e.iterations.last().and_then(|r| r.error_summary.clone()),
                })
            })
            .collect();
        let mut prompt = String::from(JOB_SUMMARY_INSTRUCTIONS);
        for o in &outcomes {
            prompt.push_str(&o.to_string());
            prompt.push('\n');
        }
        let prompt_hash = sha256_hex(prompt.as_bytes());
        let key = mtx_types::idempotency_key(JOB_SUMMARY_ID, 0, &level.model_id, None, &prompt_hash);
        let context_window =
            self.profile_of(&level.model_id).map(|p| p.context_window).unwrap_or(level.context_window);
        let request = wit::ModelRequest {
            model_id: level.model_id.clone(),
            lora_id: None,
            prompt: prompt.clone(),
            prompt_hash: prompt_hash.clone(),
            max_tokens: JOB_SUMMARY_MAX_TOKENS,
            context_window,
            temperature: 0.0,
            seed: Some(0),
            timeout_ms: mtx_loop::iteration_time_limit_ms(None) as u32,
            mt_id: JOB_SUMMARY_ID.into(),
            level: level.level,
            iteration: 0,
            attempt: 1,
        };
        self.job.log.set_scope(StepScope {
            mt_id: None,
            step_id: Some(JOB_SUMMARY_ID.into()),
            iteration: None,
        });
        self.job.dir.write_step_file(&key, "prompt.txt", prompt.as_bytes())?;
        self.job.log.sync()?;
        let outcome = self.call_model(&request, &key)?;
        if let Some(text) = &outcome.text {
            let mut payload = self.inference_payload(&level.model_id, None, JOB_SUMMARY_ID, &key, &outcome);
            payload["operation"] = json!("job_summary");
            self.emit(Event::new("FR-EVT-LLM-INFERENCE", payload).model(&level.model_id))?;
            self.job.ext.total_tokens += outcome.prompt_tokens + outcome.completion_tokens;
            tracing::debug!(chars = text.len(), "job summary generated");
        }
        let error = outcome.error.as_ref().map(|(kind, message)| format!("{kind:?}: {message}"));
        if let Some(e) = &error {
            tracing::warn!(job_id = %self.job.job_id(), error = %e, "job summary failed; the outcome stands");
        }
        let doc = json!({
            "job_id": self.job.job_id(),
            "wp_id": self.wp_id(),
            "model_id": level.model_id,
            "idempotency_key": key,
            "prompt_sha256": prompt_hash,
            "mt_outcomes": outcomes,
            "summary": outcome.text,
            "response_ref": outcome.output_ref,
            "error": error,
        });
        let handle = self
            .job
            .dir
            .write_file("summaries/job_summary.json", &serde_json::to_vec_pretty(&doc).map_err(internal)?)?;
        self.job.ext.job_summary_ref = Some(handle);
        Ok(())
    }

    /// Finishes a finalisation a crash interrupted after the final progress save: emits
    /// FR-EVT-MT-009 unless it is already in the log, and marks the job record.
    fn complete_finalisation(&mut self) -> Result<(), ExecError> {
        let (job_status, reason) = match self.job.progress.status {
            ProgressStatus::Completed => (JobStatus::Completed, status_reason::COMPLETED),
            _ => (JobStatus::CompletedWithIssues, status_reason::COMPLETED_WITH_ISSUES),
        };
        let events = mtx_store::recorder::read_events(&self.job.dir.events())?;
        if events.iter().any(|e| e.envelope.event_type == "FR-EVT-MT-009") {
            self.job.record.job_outputs = Some(json!({
                "outcome": reason,
                "summary": self.job.summary(),
                "job_summary_ref": self.job.ext.job_summary_ref,
            }));
            return self.job.set_status(job_status, reason);
        }
        self.record_completion(job_status, reason)
    }

    fn record_completion(&mut self, job_status: JobStatus, reason: &str) -> Result<(), ExecError> {
        let progress_ref = self.job.progress_handle()?;
        let ledger_ref = file_handle(&self.job.dir, "run_ledger.jsonl")?;
        self.emit(Event::new(
            "FR-EVT-MT-009",
            json!({
                "wp_id": self.wp_id(),
                "outcome": reason,
                "mt_definitions_ref": self.job.record.mt_definitions_ref,
                "progress_artifact_ref": progress_ref,
                "run_ledger_ref": ledger_ref,
            }),
        ))?;
        self.job.record.job_outputs = Some(json!({
            "outcome": reason,
            "summary": self.job.summary(),
            "job_summary_ref": self.job.ext.job_summary_ref,
        }));
        self.job.set_status(job_status, reason)
    }

    fn run_mt(&mut self, mt: &MicroTaskDefinition) -> Result<Flow, ExecError> {
        let i = self
            .job
            .entry_index(&mt.mt_id)
            .ok_or_else(|| internal(anyhow::anyhow!("no entry for {}", mt.mt_id)))?;
        if self.job.progress.micro_tasks[i].status == MTStatus::Pending || self.job.ext.mt_level.is_none() {
            let cloud_allowed = self.policy().cloud_allowed();
            let start = match mtx_loop::starting_level(mt.execution_tier, self.chain(), cloud_allowed) {
                Ok(l) => l.max(self.job.ext.job_level),
                Err(reason) => {
                    self.job.progress.micro_tasks[i].status = MTStatus::InProgress;
                    self.job.progress.current_state.active_mt = Some(mt.mt_id.clone());
                    self.job.ext.mt_level = Some(self.job.ext.job_level);
                    self.job.ext.mt_start_level = self.job.ext.job_level;
                    return self.hard_gate(reason.as_str(), &mt.mt_id, None, None);
                }
            };
            self.job.ext.mt_level = Some(start);
            self.job.ext.mt_start_level = start;
            self.job.ext.level_iteration_base = self.recorded_at_level_tail(&mt.mt_id, start);
            self.job.ext.students.clear();
            self.job.ext.last_summary = None;
            self.job.ext.after_escalation = false;
            self.capture_baseline(mt)?;
            self.job.progress.micro_tasks[i].status = MTStatus::InProgress;
            self.job.progress.current_state.active_mt = Some(mt.mt_id.clone());
            self.job.progress.current_state.active_model_level =
                start.min(self.policy().max_escalation_level());
            self.job.save_progress()?;
        }
        loop {
            match self.iteration(mt)? {
                Some(flow) => return Ok(flow),
                None => continue,
            }
        }
    }

    /// Stores the MT's files as they are before its first iteration; validators diff
    /// against this baseline.
    fn capture_baseline(&mut self, mt: &MicroTaskDefinition) -> Result<(), ExecError> {
        let reader = self.reader()?;
        let mut baseline = BTreeMap::new();
        for p in mt.files.modify.iter().chain(mt.files.create.iter()) {
            let content = reader.read(p).ok().flatten();
            let handle = match content {
                Some(bytes) => Some(self.put_artifact(&bytes, "baseline", "text/plain")?),
                None => None,
            };
            baseline.insert(p.clone(), handle);
        }
        self.job.ext.baseline = baseline;
        Ok(())
    }

    /// FR-EVT-MT-011 and the `cancelled` state when `<job_dir>/cancel_requested` exists.
    fn cancel_requested(&mut self, mt_id: &str) -> Result<bool, ExecError> {
        if !self.job.dir.root().join(CANCEL_FILE).exists() {
            return Ok(false);
        }
        let mut payload = json!({"wp_id": self.wp_id(), "reason": "operator_cancel", "mt_id": mt_id});
        if let Some(r) = self.operator_request(CANCEL_FILE) {
            payload["request_id"] = json!(r.request_id);
            payload["requested_by"] = json!(r.requested_by);
            payload["notes"] = json!(r.notes);
        }
        self.emit(Event::new("FR-EVT-MT-011", payload).mt(mt_id))?;
        self.job.progress.status = ProgressStatus::Cancelled;
        self.job.progress.completed_at = Some(now_rfc3339());
        self.job.save_progress()?;
        self.job.set_status(JobStatus::Cancelled, status_reason::CANCELLED)?;
        Ok(true)
    }

    /// Drops what only a running MT uses once it finished: the passed verify specs of its
    /// steps (the escalation policy's input) and its last LoRA (the `alternate` selector's).
    /// Every progress save carries the job's extension, so it must not grow with the job.
    fn forget_finished(&mut self, entry_index: usize) {
        let ext = &mut self.job.ext;
        let entry = &self.job.progress.micro_tasks[entry_index];
        for record in &entry.iterations {
            ext.passed_specs.remove(&record.step_id);
        }
        ext.previous_lora.remove(&entry.mt_id);
    }

    fn protected_files(&self, mt: &MicroTaskDefinition) -> Vec<String> {
        list_paths(&self.workspace, &self.state_skip())
            .into_iter()
            .filter(|p| is_test_oracle(p) && !mt.files.modify.contains(p) && !mt.files.create.contains(p))
            .collect()
    }

    /// One pass of 5.3 step 6 (a-p). `None` = run another pass for this MT.
    fn iteration(&mut self, mt: &MicroTaskDefinition) -> Result<Option<Flow>, ExecError> {
        let mt_id = mt.mt_id.clone();
        let idx = self.job.entry_index(&mt_id).unwrap_or(0);
        let level = self.job.ext.mt_level.unwrap_or(0);

        // a. cancellation
        if self.cancel_requested(&mt_id)? {
            return Ok(Some(Flow::Stop));
        }
        // b, c. job-wide limits and the poison rule
        let (max_total, max_duration) = self.effective_limits();
        let elapsed = elapsed_ms_since(&self.job.progress.created_at);
        if mtx_loop::duration_poisoned(elapsed, self.policy().max_duration_ms) {
            self.fail_job(
                status_reason::POISONED_DURATION,
                "job ran longer than twice max_duration_ms",
                Some(&mt_id),
            )?;
            return Ok(Some(Flow::Stop));
        }
        let limits = mtx_loop::JobLimits {
            total_iterations: self.job.progress.current_state.total_iterations,
            max_total_iterations: max_total,
            elapsed_ms: elapsed,
            max_duration_ms: max_duration,
        };
        if let Some(reason) = mtx_loop::job_limit_gate(&limits) {
            return self.hard_gate(reason.as_str(), &mt_id, Some(level), None).map(Some);
        }
        // d. token guard
        let estimated = mtx_loop::estimated_job_budget(&self.job.defs);
        match mtx_loop::token_use_level(
            self.job.ext.total_tokens,
            estimated,
            self.policy().max_total_tokens,
            self.job.ext.token_gate_doublings,
        ) {
            mtx_loop::TokenUseLevel::Gate => {
                return self
                    .hard_gate(HardGateReason::TokenBudgetExceeded.as_str(), &mt_id, Some(level), None)
                    .map(Some);
            }
            mtx_loop::TokenUseLevel::Warning if !self.job.ext.token_warning_emitted => {
                self.job.ext.token_warning_emitted = true;
                let threshold = self.policy().max_total_tokens.map_or(estimated * 10, |c| c * 4 / 5);
                self.emit(Event::new(
                    "FR-EVT-MTX-001",
                    json!({"kind": "token_budget", "value": self.job.ext.total_tokens, "threshold": threshold}),
                ))?;
            }
            _ => {}
        }
        // d'. storage cap of the run ledger (11.4): a warning at 80 %, and a
        // `resource_exhausted` gate while an iteration's records still fit, rather than
        // a failed append in the middle of a step.
        let (ledger_size, ledger_near_cap) = {
            let ledger = self.job.log.ledger();
            (ledger.size_bytes(), ledger.near_cap())
        };
        if ledger_near_cap && !self.job.ext.ledger_warning_emitted {
            self.job.ext.ledger_warning_emitted = true;
            self.emit(Event::new(
                "FR-EVT-MTX-001",
                json!({
                    "kind": "storage_near_cap",
                    "resource": "run_ledger.jsonl",
                    "value": ledger_size,
                    "threshold": mtx_store::ledger::LEDGER_CAP_BYTES / 5 * 4,
                }),
            ))?;
        }
        if ledger_size + LEDGER_HEADROOM_BYTES > mtx_store::ledger::LEDGER_CAP_BYTES {
            return self.hard_gate("resource_exhausted", &mt_id, Some(level), None).map(Some);
        }
        // e. level checks
        let Some(chain_level) = self.chain().iter().find(|l| l.level == level).cloned() else {
            return self.hard_gate("escalation_exhausted", &mt_id, Some(level), None).map(Some);
        };
        let released = self.job.ext.released_level == Some(level);
        if chain_level.is_gate_only() || (chain_level.is_hard_gate && !chain_level.is_cloud && !released) {
            return self.hard_gate("escalation_exhausted", &mt_id, Some(level), None).map(Some);
        }
        if chain_level.is_cloud && !self.policy().cloud_allowed() {
            let locked = self.policy().effective_automation_level() == mtx_types::AutomationLevel::Locked;
            self.emit(
                Event::new(
                    "FR-EVT-CLOUD-003",
                    json!({
                        "request_id": uuid::Uuid::now_v7().to_string(),
                        "reason": if locked { "governance_locked" } else { "cloud_escalation_disallowed" },
                        "requested_model_id": chain_level.model_id,
                        "job_id": self.job.job_id(),
                        "wp_id": self.wp_id(),
                        "mt_id": mt_id,
                    }),
                )
                .mt(&mt_id),
            )?;
            return self.hard_gate("cloud_escalation_disallowed", &mt_id, Some(level), None).map(Some);
        }

        let tail = self.recorded_at_level_tail(&mt_id, level);
        let iteration = tail + 1;
        let rel_iteration = iteration.saturating_sub(self.job.ext.level_iteration_base).max(1);
        let ordinal = self.job.progress.micro_tasks[idx].iterations.len() as u32 + 1;
        let step_id = mtx_types::step_id(&mt_id, ordinal);
        self.job.log.set_scope(StepScope {
            mt_id: Some(mt_id.clone()),
            step_id: Some(step_id.clone()),
            iteration: Some(iteration),
        });

        // f. model and LoRA
        let model_id = chain_level.model_id.clone();
        let lora = match self.select_lora(mt, &chain_level, iteration) {
            Ok(l) => l,
            Err(e) => return self.plugin_failure(&e, "lora-selector", &mt_id).map(Some),
        };
        let (lora_id, scores, mode) = lora;
        self.emit(
            Event::new(
                "FR-EVT-MT-013",
                json!({
                    "wp_id": self.wp_id(),
                    "mt_id": mt_id,
                    "iteration": iteration,
                    "model_id": model_id,
                    "lora_id": lora_id,
                    "lora_selector": mode,
                    "scores": scores,
                }),
            )
            .mt(&mt_id)
            .iteration(iteration)
            .model(&model_id),
        )?;
        if let Some(l) = &lora_id {
            self.job.ext.previous_lora.insert(mt_id.clone(), l.clone());
        }

        // A step a crash interrupted runs again with the prompt it was journaled with
        // (8.5): edits it applied before the crash must not change its idempotency key,
        // so its stored response is reused rather than asked for again.
        let journaled = self.journaled_step(&step_id, &model_id, lora_id.as_deref(), iteration)?;
        let snapshot_id =
            journaled.as_ref().map_or_else(|| uuid::Uuid::now_v7().to_string(), |p| p.snapshot_id.clone());

        // g. model swap
        let mut swap_done: Option<Value> = None;
        match self.job.ext.loaded_model.clone() {
            None => {
                // First load of the job: nothing to swap out, no swap records.
                let _ = self.host.prepare_model(&self.backend, None, &model_id, "unload_reload", &call_ctx());
                self.flush();
                self.job.ext.loaded_model = Some(model_id.clone());
            }
            Some(current) if current != model_id => {
                match self.swap(&mt_id, &current, &model_id, &snapshot_id)? {
                    SwapResult::Done(payload) => swap_done = Some(payload),
                    SwapResult::Flow(flow) => return Ok(flow),
                }
            }
            Some(_) => {}
        }

        // A step committed before a crash is finished from its commit record, not re-run.
        if let Some(commit) = self.committed_step(&step_id)? {
            return self.commit_step(mt, commit);
        }

        // h. context compilation
        let max_level =
            mtx_loop::climb_ceiling(mt.escalation_target, self.chain(), self.job.ext.mt_start_level);
        let effective_max =
            mtx_loop::effective_max_iterations(self.policy().max_iterations_per_mt, mt.retry_budget);
        let context_window =
            self.profile_of(&model_id).map(|p| p.context_window).unwrap_or(chain_level.context_window);
        let reader = self.reader()?;
        let prepared = match journaled {
            Some(p) => p,
            None => {
                let status = LoopStatus {
                    iteration,
                    max_iterations: effective_max,
                    level,
                    max_level,
                    model_id: model_id.clone(),
                    lora_id: lora_id.clone(),
                    after_escalation: self.job.ext.after_escalation,
                    completed_mts: self
                        .job
                        .progress
                        .micro_tasks
                        .iter()
                        .filter(|e| e.status == MTStatus::Completed)
                        .map(|e| e.mt_id.clone())
                        .collect(),
                    total_mts: self.job.defs.len() as u32,
                };
                let ids = SnapshotIds {
                    context_snapshot_id: snapshot_id.clone(),
                    job_id: self.job.job_id().to_string(),
                    workflow_run_id: self.job.log.recorder().correlation().workflow_run_id.clone(),
                    wp_id: self.wp_id(),
                    step_id: step_id.clone(),
                    created_at: now_rfc3339(),
                    model_id: model_id.clone(),
                    lora_id: lora_id.clone(),
                    model_context_window: context_window,
                    policy_profile_id: self.setup.capability_profile_id.clone(),
                    prompt_ref: ArtifactHandle {
                        artifact_id: String::new(),
                        path: String::new(),
                        sha256: String::new(),
                        size_bytes: None,
                        media_type: None,
                    },
                };
                self.prepare_context(mt, &status, &reader, ids)?
            }
        };
        let Prepared {
            prompt,
            prompt_hash,
            envelope_hashes,
            prompt_tokens,
            prompt_ref,
            snapshot_ref,
            snapshot_hash,
            overflow,
            ..
        } = prepared.clone();
        let key = mtx_types::idempotency_key(&mt_id, iteration, &model_id, lora_id.as_deref(), &prompt_hash);
        if let Some(mut payload) = swap_done {
            payload["context_compile_ref"] = json!(snapshot_ref.canonical());
            payload["outcome"] = json!("completed");
            self.emit(Event::new("FR-EVT-MODEL-002", payload).mt(&mt_id))?;
        }

        // Cloud levels: consent bound to the exact request bytes (5.14).
        let max_tokens = mtx_loop::completion_allowance(mt.token_budget, u64::from(prompt_tokens))
            .min(u64::from(u32::MAX)) as u32;
        let timeout_ms = mtx_loop::iteration_time_limit_ms(None);
        let request = wit::ModelRequest {
            model_id: model_id.clone(),
            lora_id: lora_id.clone(),
            prompt: prompt.clone(),
            prompt_hash: prompt_hash.clone(),
            max_tokens,
            context_window,
            temperature: 0.0,
            seed: Some(0),
            timeout_ms: timeout_ms as u32,
            mt_id: mt_id.clone(),
            level,
            iteration,
            attempt: 1,
        };
        let mut cloud_request_id = None;
        if chain_level.is_cloud && !overflow {
            let payload = canonical_json(&request);
            let payload_sha256 = sha256_hex(&payload);
            if self.job.ext.approved_payload.as_deref() != Some(payload_sha256.as_str()) {
                return self
                    .request_cloud_consent(
                        mt,
                        &chain_level,
                        &payload,
                        &payload_sha256,
                        &prompt_ref,
                        &snapshot_ref,
                    )
                    .map(Some);
            }
            cloud_request_id = Some(self.cloud_request_id().unwrap_or_default());
        }

        // i. announce and journal the step
        self.emit(
            Event::new(
                "FR-EVT-MT-002",
                json!({
                    "wp_id": self.wp_id(),
                    "mt_id": mt_id,
                    "iteration": iteration,
                    "step_id": step_id,
                    "escalation_level": level,
                    "model_id": model_id,
                    "lora_id": lora_id,
                    "context_snapshot_id": snapshot_id,
                }),
            )
            .mt(&mt_id)
            .iteration(iteration)
            .model(&model_id),
        )?;
        let started_at = now_rfc3339();
        let started = Instant::now();
        // The announcement is durable before the step is journaled and the model called.
        self.job.log.sync_events()?;
        self.job.log.append_deferred(&LedgerRecord::Step(LedgerStep {
            step_id: step_id.clone(),
            idempotency_key: key.clone(),
            status: LedgerStepStatus::InProgress,
            started_at: Some(started_at.clone()),
            completed_at: None,
            output_artifact_ref: None,
            error: None,
            recoverable: true,
            escalation_level: level,
        }))?;
        let intent = serde_json::to_vec_pretty(&prepared).map_err(internal)?;
        let prompt_blob = self.artifacts.blob_path(&prompt_ref)?;
        let mut group = WriteGroup::default();
        self.job.dir.stage_step_entries(
            &mut group,
            &key,
            &[("prompt.txt", Content::SameAs(&prompt_blob)), (INTENT_FILE, Content::Bytes(&intent))],
        )?;
        group.stage_in(self.job.dir.journal())?;
        // 8.3 item 3: the `in_progress` record durable before the model call. With a journal
        // this one fdatasync also covers the prompt, the ContextSnapshot, their events and
        // the step's files, which the journal's thread writes under their names during the
        // call; `call_model` settles the journal as soon as the call returns.
        self.job.log.sync_apply_behind()?;
        // The last progress save is in place (its store's thread exchanged the names while
        // this iteration was prepared): a save that failed stops the job before the call.
        self.job.progress_store.settle()?;
        if cloud_request_id.is_some() {
            // A consented request leaves the machine once: its step's files are in place
            // first, so a failed write stops the job before the call, not after it.
            self.job.dir.settled()?;
        }

        // j. the model call (never repeated for a stored response)
        let outcome = if !overflow {
            self.call_model(&request, &key)?
        } else {
            ModelOutcome {
                text: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                error: Some((
                    wit::ModelErrorKind::ContextOverflow,
                    "prompt does not fit the token budget".into(),
                )),
                force_escalation: false,
                output_ref: None,
            }
        };
        if let Some(request_id) = cloud_request_id {
            self.job.ext.approved_payload = None;
            self.emit(
                Event::new(
                    "FR-EVT-CLOUD-004",
                    json!({
                        "request_id": request_id,
                        "reason": "cloud_escalation_executed",
                        "requested_model_id": model_id,
                        "job_id": self.job.job_id(),
                        "wp_id": self.wp_id(),
                        "mt_id": mt_id,
                    }),
                )
                .mt(&mt_id),
            )?;
        }
        if outcome.text.is_some() || outcome.prompt_tokens > 0 {
            let mut payload = self.inference_payload(&model_id, lora_id.as_deref(), &step_id, &key, &outcome);
            payload["mt_id"] = json!(mt_id);
            self.emit(
                Event::new("FR-EVT-LLM-INFERENCE", payload).mt(&mt_id).iteration(iteration).model(&model_id),
            )?;
        }
        // 5.15: a cancel request is honoured right after the model call as well; the
        // interrupted step stays `in_progress` and records no completion.
        if self.cancel_requested(&mt_id)? {
            return Ok(Some(Flow::Stop));
        }
        // Every file of the step in place (`call_model` settled already when it called).
        self.job.dir.settled()?;
        let response = outcome.text.clone().unwrap_or_default();

        // k. completion signal
        let mut signal = if outcome.text.is_some() {
            mtx_loop::parse_completion(&response, &mt_id)
        } else {
            CompletionSignal::default()
        };
        let claimed = signal.claimed_complete && !signal.malformed;

        // l. edits, through the Tool Bus only
        let parsed = mtx_loop::parse_edits(&response);
        // The protected files (a walk of the workspace) matter only to edits and to the
        // validators of a claim; an iteration with neither skips the walk.
        let protected =
            if claimed || !parsed.edits.is_empty() { self.protected_files(mt) } else { Vec::new() };
        let created_before: Vec<String> = mt
            .files
            .create
            .iter()
            .filter(|p| {
                self.job.ext.baseline.get(*p).is_some_and(Option::is_none)
                    && reader.read(p).ok().flatten().is_some()
            })
            .cloned()
            .collect();
        let rules = EditRules { protected_files: &protected, created_by_this_mt: &created_before };
        let mut resolved = mtx_loop::resolve_edits(&parsed, mt, &reader, &rules).map_err(internal)?;
        if !resolved.writes.is_empty() {
            self.apply_writes(mt, &mut resolved)?;
        }
        let scope_refused = !resolved.scope_violations.is_empty();

        // m. validation, only for a claim
        let mut evidence = None;
        let mut validated = None;
        if claimed {
            let check = mtx_loop::verify_evidence(&signal, mt, &reader);
            signal.evidence_verified = Some(check.verified);
            let changed = self.changed_files(mt, &reader)?;
            self.job.log.sync()?;
            let v = match self.run_validators(
                mt,
                &step_id,
                iteration,
                &signal,
                changed,
                &protected,
                &resolved.scope_violations,
            ) {
                Ok(v) => v,
                Err(e) => {
                    self.job.log.ledger().append_step(&LedgerStep {
                        step_id: step_id.clone(),
                        idempotency_key: key.clone(),
                        status: LedgerStepStatus::Failed,
                        started_at: Some(started_at.clone()),
                        completed_at: Some(now_rfc3339()),
                        output_artifact_ref: None,
                        error: Some(format!("plugin_failure: {e}")),
                        recoverable: true,
                        escalation_level: level,
                    })?;
                    return self.plugin_failure(&e, "validator", &mt_id).map(Some);
                }
            };
            if let Some(denial) = v.capability_denial.clone() {
                self.fail_job(status_reason::CAPABILITY_VIOLATION, &denial, Some(&mt_id))?;
                return Ok(Some(Flow::Stop));
            }
            evidence = Some(check);
            validated = Some(v);
        }
        let validation_passed = validated.as_ref().map(|v| v.passed);
        let evidence_verified = evidence.as_ref().map(|c| c.verified);
        let scope_violation = scope_refused || evidence.as_ref().is_some_and(|c| c.scope_violation);

        // Validation records (8.4 item 3) and FR-EVT-MT-012.
        let mut validation_ref = None;
        let mut evidence_ref = None;
        let mut passed_specs: Option<Vec<u32>> = None;
        if let Some(v) = &validated {
            let spec_results: Vec<VerifySpecResult> = v
                .spec_results
                .iter()
                .map(|r| VerifySpecResult {
                    spec_index: r.spec_index,
                    command: r.command.clone(),
                    expected: r.expected.clone(),
                    actual_exit_code: r.actual_exit_code,
                    passed: r.passed,
                    stdout_ref: r.stdout_ref.as_ref().map(convert::handle_from_wit),
                    stderr_ref: r.stderr_ref.as_ref().map(convert::handle_from_wit),
                    duration_ms: r.duration_ms,
                    error: r.error.clone(),
                })
                .collect();
            let mut handles: Vec<String> = spec_results
                .iter()
                .flat_map(|r| r.stdout_ref.iter().chain(r.stderr_ref.iter()).map(ArtifactHandle::canonical))
                .collect();
            // Everything the commands left (terminal output too, 13.3 C-TOOL-2), once each.
            for h in &v.tool_evidence {
                let canonical = h.canonical();
                if !handles.contains(&canonical) {
                    handles.push(canonical);
                }
            }
            handles.push(prompt_ref.canonical());
            let evidence_doc = json!({
                "evidence": mtx_types::validation::EvidenceList::new(handles),
                "findings": v.findings,
                "evidence_check": evidence,
            });
            let ev_ref = self.job.dir.write_step_file_once(
                &key,
                "validation_evidence.json",
                &serde_json::to_vec_pretty(&evidence_doc).map_err(internal)?,
            )?;
            let result = ValidationResult {
                passed: v.passed && evidence_verified.unwrap_or(false),
                spec_results: spec_results.clone(),
                evidence_artifact_ref: ev_ref.clone(),
                started_at: v.started_at.clone(),
                completed_at: now_rfc3339(),
                total_duration_ms: v.duration_ms,
            };
            let vref = self.job.dir.write_step_file_once(
                &key,
                "validation.json",
                &serde_json::to_vec_pretty(&result).map_err(internal)?,
            )?;
            self.emit(
                Event::new(
                    "FR-EVT-MT-012",
                    json!({
                        "wp_id": self.wp_id(),
                        "mt_id": mt_id,
                        "iteration": iteration,
                        "passed": result.passed,
                        "validation_ref": vref,
                        "evidence_verified": evidence_verified,
                        "spec_results": spec_results.iter().map(|r| json!({"spec_index": r.spec_index, "passed": r.passed, "actual_exit_code": r.actual_exit_code})).collect::<Vec<_>>(),
                        "findings": v.findings.iter().map(|f| json!({"rule": f.rule, "blocking": f.blocking, "file": f.file, "line": f.line})).collect::<Vec<_>>(),
                    }),
                )
                .mt(&mt_id)
                .iteration(iteration),
            )?;
            passed_specs = Some(spec_results.iter().filter(|r| r.passed).map(|r| r.spec_index).collect());
            validation_ref = Some(vref);
            evidence_ref = Some(ev_ref);
        }

        // o. the decision (policy plugin, enforced by the host)
        let entry = &self.job.progress.micro_tasks[idx];
        let mut observations: Vec<IterationObservation> = entry.iterations.iter().map(observation).collect();
        let current_obs = IterationObservation {
            level,
            claimed_complete: claimed,
            validation_ran: validated.is_some(),
            validation_passed: validation_passed.unwrap_or(false) && evidence_verified.unwrap_or(false),
            evidence_verified: evidence_verified.unwrap_or(false),
            scope_refused: scope_violation,
        };
        observations.push(current_obs.clone());
        let streaks = mtx_loop::failure_counts(&observations, level);
        let earlier_at_level: Vec<String> = entry
            .iterations
            .iter()
            .filter(|r| r.escalation_level == level)
            .filter_map(blocked_reason_of)
            .collect();
        let earlier_of_mt: Vec<String> = entry.iterations.iter().filter_map(blocked_reason_of).collect();
        let block_recoverable = signal.blocked
            && mtx_loop::is_recoverable_block(
                signal.blocked_reason.as_deref().unwrap_or(""),
                &earlier_at_level,
                &earlier_of_mt,
            );
        let mt_tokens: u64 =
            entry.iterations.iter().map(|r| r.tokens_prompt + r.tokens_completion).sum::<u64>()
                + outcome.prompt_tokens
                + outcome.completion_tokens;
        let operator_skip = self.skip_requested(&mt_id);
        let facts = IterationFacts {
            claimed_complete: claimed,
            validation_passed: validation_passed.unwrap_or(false),
            evidence_verified: evidence_verified.unwrap_or(false),
            blocked: signal.blocked,
            block_recoverable,
            scope_violation,
            iteration: rel_iteration,
            effective_max_iterations: effective_max,
            level,
            max_level,
            false_completion_streak: streaks.false_completion_streak,
            failure_streak: streaks.failure_streak,
            operator_skip,
            operator_abort: false,
            mt_token_cap_reached: mt_tokens >= mtx_loop::mt_token_cap(mt.token_budget),
        };
        let failed_specs: Vec<wit::SpecOutcome> = validated
            .as_ref()
            .map(|v| {
                v.spec_results
                    .iter()
                    .map(|r| wit::SpecOutcome {
                        spec_index: r.spec_index,
                        command: r.command.clone(),
                        blocking: mt.verify.get(r.spec_index as usize).is_none_or(|s| s.blocking),
                        passed: r.passed,
                        exit_code: r.actual_exit_code,
                        timed_out: r.timed_out,
                        error: r.error.clone(),
                        stderr_tail: self.tail_of(r.stderr_ref.as_ref()),
                        stdout_tail: self.tail_of(r.stdout_ref.as_ref()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let history: Vec<wit::IterationSummary> = entry
            .iterations
            .iter()
            .map(|r| wit::IterationSummary {
                iteration: r.iteration,
                level: r.escalation_level,
                claimed_complete: r.claimed_complete,
                validation_passed: r.validation_passed,
                failure_category: r.failure_category.map(convert::category_to_wit),
                blocked_reason: blocked_reason_of(r),
                passed_specs: self.job.ext.passed_specs.get(&r.step_id).cloned().unwrap_or_default(),
            })
            .collect();
        let missing_refs = evidence.as_ref().map(|c| c.missing_references.clone()).unwrap_or_default();
        let input = wit::DecisionInput {
            mt_id: mt_id.clone(),
            task_tags: mt.task_tags.clone(),
            iteration: rel_iteration,
            effective_max_iterations: effective_max,
            level,
            max_level,
            claimed_complete: claimed,
            malformed_claim: signal.malformed,
            blocked: signal.blocked,
            blocked_reason: signal.blocked_reason.clone(),
            validation_ran: validated.is_some(),
            validation_passed,
            evidence_verified,
            spec_outcomes: failed_specs,
            scope_violations: resolved.scope_violations.clone(),
            missing_references: missing_refs.clone(),
            model_error: outcome.error.as_ref().map(|(k, _)| *k),
            context_overflow: overflow,
            operator_skip,
            // The WIT streaks count the iterations before this one (mtx-loop's include it).
            false_completion_streak: streaks.false_completion_streak
                - u32::from(current_obs.is_false_completion()),
            failure_streak: streaks.failure_streak - u32::from(current_obs.is_failure()),
            history,
        };
        let decided = self.host.decide(&self.policy_plugin, &input, &call_ctx());
        self.flush();
        let mut plugin_problem: Option<(String, String)> = None;
        let mut enforced = match decided {
            Ok(d) => {
                let proposal = Proposal {
                    decision: match d.decision {
                        wit::LoopDecision::Complete => ProposedDecision::Complete,
                        wit::LoopDecision::Retry => ProposedDecision::Retry,
                        wit::LoopDecision::Escalate => ProposedDecision::Escalate,
                        wit::LoopDecision::Skip => ProposedDecision::Skip,
                        wit::LoopDecision::Abort => ProposedDecision::Abort,
                        wit::LoopDecision::HardGate => ProposedDecision::HardGate,
                    },
                    failure_category: d.failure_category.map(convert::category_from_wit),
                    reason: d.reason.clone(),
                    recoverable_block: d.recoverable_block,
                };
                match mtx_loop::enforce(&proposal, &facts) {
                    Ok(e) => Some((e, d.reason)),
                    Err(v) => {
                        plugin_problem =
                            Some(("bad_output".into(), format!("decision breaks a loop invariant: {v}")));
                        None
                    }
                }
            }
            Err(e) => {
                plugin_problem = Some((e.kind().to_string(), e.to_string()));
                None
            }
        };
        if outcome.force_escalation
            && let Some((e, reason)) = enforced.as_mut()
            && !matches!(e.decision, Decision::Complete)
        {
            e.decision = if level < max_level {
                Decision::Escalate { next_level: level + 1 }
            } else {
                Decision::HardGate { reason: HardGateReason::EscalationExhausted }
            };
            e.failure_category = Some(FailureCategory::TimeoutExceeded);
            *reason = "model_timeout".into();
        }
        let (decision, decision_reason, category) = match &enforced {
            Some((e, reason)) => {
                let category = if e.decision == Decision::Complete {
                    None
                } else {
                    Some(e.failure_category.unwrap_or_else(|| {
                        mtx_loop::classify_failure(&mtx_loop::FailureSignals {
                            scope_violation,
                            timed_out: matches!(outcome.error, Some((wit::ModelErrorKind::Timeout, _))),
                            context_overflow: overflow,
                            missing_references: missing_refs.clone(),
                            claimed_complete: claimed,
                            blocked: signal.blocked,
                            evidence_failed: validation_passed == Some(true)
                                && evidence_verified == Some(false),
                            ..Default::default()
                        })
                    }))
                };
                (Some(e.decision), reason.clone(), category)
            }
            None => (None, "plugin_failure".to_string(), Some(FailureCategory::Unknown)),
        };
        let outcome_status = match decision {
            Some(Decision::Complete) => IterationOutcome::Success,
            Some(Decision::Retry) | None => {
                if signal.blocked {
                    IterationOutcome::Blocked
                } else {
                    IterationOutcome::Retry
                }
            }
            Some(Decision::Escalate { .. }) => {
                if signal.blocked {
                    IterationOutcome::Blocked
                } else {
                    IterationOutcome::Escalate
                }
            }
            Some(Decision::Skip) => IterationOutcome::Skipped,
            Some(Decision::HardGate { .. }) | Some(Decision::Abort) => IterationOutcome::Escalate,
        };
        let decision_name = match decision {
            Some(d) => d.loop_decision().map_or("hard_gate", |l| match l {
                mtx_types::LoopDecision::Complete => "complete",
                mtx_types::LoopDecision::Retry => "retry",
                mtx_types::LoopDecision::Escalate => "escalate",
                mtx_types::LoopDecision::Skip => "skip",
                mtx_types::LoopDecision::Abort => "abort",
            }),
            None => "hard_gate",
        };
        let error_summary = if let Some((_, m)) = &plugin_problem {
            Some(format!("plugin_failure: {m}"))
        } else if signal.blocked {
            Some(format!("blocked: {}", signal.blocked_reason.clone().unwrap_or_default()))
        } else if let Some((_, m)) = &outcome.error {
            Some(format!("model_error: {m}"))
        } else if scope_refused {
            Some(format!("scope_violation: {}", resolved.scope_violations.join(", ")))
        } else {
            None
        };

        // n. records (8.4 items 4-6)
        let duration_ms = started.elapsed().as_millis() as u64;
        let record = IterationRecord {
            iteration,
            step_id: step_id.clone(),
            model_id: model_id.clone(),
            lora_id: lora_id.clone(),
            escalation_level: level,
            started_at: started_at.clone(),
            completed_at: now_rfc3339(),
            duration_ms,
            tokens_prompt: outcome.prompt_tokens,
            tokens_completion: outcome.completion_tokens,
            claimed_complete: claimed,
            validation_passed: validation_passed.map(|p| p && evidence_verified.unwrap_or(false)),
            validation_evidence_ref: evidence_ref.clone(),
            outcome: outcome_status,
            failure_category: category,
            error_summary: error_summary.clone(),
            context_snapshot_id: snapshot_id.clone(),
        };
        let nonblocking_failed = validated.as_ref().is_some_and(|v| {
            v.spec_results
                .iter()
                .any(|r| !r.passed && mt.verify.get(r.spec_index as usize).is_some_and(|s| !s.blocking))
        });
        let failed_commands: Vec<FailedCommand> = validated
            .as_ref()
            .map(|v| {
                v.spec_results
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| FailedCommand {
                        command: r.command.clone(),
                        exit_code: Some(r.actual_exit_code),
                        timed_out: r.timed_out,
                        output: r.error.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut report =
            IterationReport::from_parts(&signal, evidence.as_ref(), Some(&resolved), failed_commands);
        report.error = outcome.error.as_ref().map(|(_, m)| m.clone());

        // FR-EVT-MT-003, then the blocked report (rule 7).
        let mut outcome_obj = json!({
            "claimed_complete": claimed,
            "status": serde_json::to_value(outcome_status).unwrap_or(Value::Null),
        });
        if let Some(p) = validation_passed {
            outcome_obj["validation_passed"] = json!(p && evidence_verified.unwrap_or(false));
        }
        if let Some(c) = category {
            outcome_obj["failure_category"] = serde_json::to_value(c).unwrap_or(Value::Null);
        }
        if let Some(s) = &error_summary {
            outcome_obj["error_summary"] = json!(s);
        }
        let mt003 = json!({
            "wp_id": self.wp_id(),
            "mt_id": mt_id,
            "iteration": iteration,
            "model": {"base": model_id, "lora": lora_id, "context_window": context_window},
            "execution": {
                "tokens_prompt": outcome.prompt_tokens,
                "tokens_completion": outcome.completion_tokens,
                "duration_ms": duration_ms,
                "escalation_level": level,
            },
            "outcome": outcome_obj,
            "context_snapshot_id": snapshot_id,
            "evidence_artifact_ref": evidence_ref,
            "step_id": step_id,
            "decision": decision_name,
            "decision_reason": decision_reason,
            "context_snapshot_ref": snapshot_ref,
            "prompt_envelope_hashes": envelope_hashes,
        });
        let mt017 = signal.blocked.then(|| {
            json!({
                "wp_id": self.wp_id(),
                "mt_id": mt_id,
                "reason": signal.blocked_reason.clone().unwrap_or_default(),
                "need": signal.blocked_need,
                "iteration": iteration,
                "recoverable": block_recoverable,
            })
        });
        let commit = StepCommit {
            record: record.clone(),
            evidence_ref: evidence_ref.clone(),
            passed_specs,
            false_claim: claimed
                .then(|| !(validation_passed == Some(true) && evidence_verified == Some(true))),
            summary: mtx_loop::summarize_iteration(&report),
            mt003,
            mt017,
            plugin_problem,
            decision: enforced.map(|(e, _)| e.decision),
            decision_reason,
            category,
            key: key.clone(),
            prompt_ref: prompt_ref.clone(),
            output_ref: outcome.output_ref.clone(),
            nonblocking_failed,
            evidence_verified,
            rel_iteration,
            claimed,
            model_error: outcome.error.is_some(),
        };
        let output = StepOutput {
            step_id: step_id.clone(),
            idempotency_key: key.clone(),
            prompt_hash: prompt_hash.clone(),
            context_snapshot_id: snapshot_id.clone(),
            context_snapshot_hash: snapshot_hash.clone(),
            context_snapshot_ref: Some(snapshot_ref.clone()),
            prompt_envelope_hashes: Some(envelope_hashes.clone()),
            prompt_snapshot_ref: Some(prompt_ref.clone()),
            output_snapshot_ref: outcome.output_ref.clone(),
            validation_ref: validation_ref.clone(),
            mt_id: mt_id.clone(),
            iteration_record: Some(record),
            loop_commit: Some(serde_json::to_value(&commit).map_err(internal)?),
        };
        // Both durable with the next barrier, which comes before the progress save: a power
        // loss between the two leaves the step `in_progress` with its `output.json`, which
        // recovery completes (8.5 item 2.4).
        let output_ref = self.job.dir.stage_step_output(&output)?;
        self.job.log.ledger().append_deferred(&LedgerRecord::Step(LedgerStep {
            step_id: step_id.clone(),
            idempotency_key: key.clone(),
            status: LedgerStepStatus::Completed,
            started_at: Some(started_at),
            completed_at: Some(now_rfc3339()),
            output_artifact_ref: Some(output_ref),
            error: None,
            recoverable: true,
            escalation_level: level,
        }))?;
        self.commit_step(mt, commit)
    }

    /// The committed outcome of `step_id` when its commit marker (`output.json`, ledger
    /// `completed`) is durable but the progress artifact does not have it yet: a crash came
    /// in between (8.5).
    fn committed_step(&self, step_id: &str) -> Result<Option<StepCommit>, ExecError> {
        let key = match self.job.log.ledger().step(step_id) {
            Some(s) if s.status == LedgerStepStatus::Completed => s.idempotency_key.clone(),
            _ => return Ok(None),
        };
        let Some((output, _)) = self.job.dir.read_step_output(&key)? else {
            return Ok(None);
        };
        let Some(commit) = output.loop_commit else {
            return Ok(None);
        };
        serde_json::from_value(commit).map(Some).map_err(|e| {
            internal(anyhow::anyhow!(
                "step {step_id}: unreadable loop commit in step_outputs/{key}/output.json: {e}"
            ))
        })
    }

    /// Applies a committed step (8.4 items 5-6): the IterationRecord and counters in the
    /// progress artifact, FR-EVT-MT-003 (and FR-EVT-MT-017 for a block), then the decision.
    /// The same code finishes a step whose commit a crash interrupted.
    fn commit_step(
        &mut self,
        mt: &MicroTaskDefinition,
        commit: StepCommit,
    ) -> Result<Option<Flow>, ExecError> {
        let mt_id = mt.mt_id.clone();
        let idx = self.job.entry_index(&mt_id).unwrap_or(0);
        let record = commit.record;
        let (level, iteration) = (record.escalation_level, record.iteration);
        let model_id = record.model_id.clone();
        let lora_id = record.lora_id.clone();
        let tokens = record.tokens_prompt + record.tokens_completion;
        {
            let entry = &mut self.job.progress.micro_tasks[idx];
            if let Some(h) = &commit.evidence_ref {
                entry.evidence_refs.push(h.clone());
            }
            entry.iterations.push(record.clone());
        }
        if let Some(passed) = commit.passed_specs {
            self.job.ext.passed_specs.insert(record.step_id.clone(), passed);
        }
        self.job.progress.current_state.total_iterations += 1;
        self.job.progress.current_state.active_model_level = level.min(self.policy().max_escalation_level());
        *self.job.ext.iterations_per_level.entry(level).or_insert(0) += 1;
        self.job.ext.total_tokens += tokens;
        self.job.ext.after_escalation = false;
        if let Some(false_claim) = commit.false_claim {
            let mut keys = vec![model_id.clone()];
            if let Some(l) = &lora_id {
                keys.push(format!("{model_id}+{l}"));
            }
            for k in keys {
                let c = self.job.ext.claims.entry(k).or_insert([0, 0]);
                c[0] += 1;
                c[1] += u32::from(false_claim);
            }
        }
        self.job.ext.last_summary = Some(commit.summary);
        // No save here: the progress artifact takes the record together with the decision's
        // effect (every branch of `act` ends with a save), so a crash can never leave a
        // recorded step whose decision was not applied.

        self.emit(
            Event::new("FR-EVT-MT-003", commit.mt003).mt(&mt_id).iteration(iteration).model(&model_id),
        )?;
        if let Some(payload) = commit.mt017 {
            self.emit(Event::new("FR-EVT-MT-017", payload).mt(&mt_id).iteration(iteration))?;
        }

        // p. act
        if let Some((kind, message)) = commit.plugin_problem {
            let plugin = self.policy_plugin.spec.name.clone();
            return self.plugin_failure_msg(&plugin, "escalation-policy", &kind, &message, &mt_id).map(Some);
        }
        let Some(decision) = commit.decision else {
            self.job.save_progress()?;
            return Ok(Some(Flow::Stop));
        };
        self.act(
            mt,
            decision,
            &commit.decision_reason,
            commit.category,
            &record.step_id,
            &commit.key,
            &commit.prompt_ref,
            commit.output_ref,
            commit.nonblocking_failed,
            commit.evidence_verified,
            &lora_id,
            commit.rel_iteration,
            commit.claimed,
            commit.model_error,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn act(
        &mut self,
        mt: &MicroTaskDefinition,
        decision: Decision,
        reason: &str,
        category: Option<FailureCategory>,
        step_id: &str,
        key: &str,
        prompt_ref: &ArtifactHandle,
        output_ref: Option<ArtifactHandle>,
        nonblocking_failed: bool,
        evidence_verified: Option<bool>,
        lora_id: &Option<String>,
        rel_iteration: u32,
        claimed: bool,
        model_error: bool,
    ) -> Result<Option<Flow>, ExecError> {
        let mt_id = mt.mt_id.clone();
        let level = self.job.ext.mt_level.unwrap_or(0);
        let model_id =
            self.chain().iter().find(|l| l.level == level).map(|l| l.model_id.clone()).unwrap_or_default();
        let output_ref = match output_ref {
            Some(h) => h,
            None => self.put_artifact(b"", "model_response", "text/plain")?,
        };
        match decision {
            Decision::Retry => {
                self.job.save_progress()?;
                Ok(None)
            }
            Decision::Complete => {
                self.complete_mt(
                    mt,
                    level,
                    &model_id,
                    lora_id,
                    step_id,
                    prompt_ref,
                    &output_ref,
                    nonblocking_failed,
                    evidence_verified,
                    rel_iteration,
                )?;
                Ok(Some(Flow::Continue))
            }
            Decision::Escalate { next_level } => {
                let category = category.unwrap_or(FailureCategory::Unknown);
                let tokens: u64 = self
                    .job
                    .entry_index(&mt_id)
                    .map(|i| {
                        self.job.progress.micro_tasks[i]
                            .iterations
                            .iter()
                            .filter(|r| r.escalation_level == level)
                            .map(|r| r.tokens_prompt + r.tokens_completion)
                            .sum()
                    })
                    .unwrap_or(0);
                let attempt = EscalationAttempt {
                    level,
                    model_id: model_id.clone(),
                    lora_id: lora_id.clone(),
                    lora_version: None,
                    iterations: rel_iteration,
                    failure_pattern: Some(reason.to_string()),
                    last_error: None,
                    tokens_used: tokens,
                    outcome: AttemptOutcome::Escalate,
                };
                let record_ref = self.write_escalation_record(&mt_id, attempt, None, Some(category))?;
                let to_level_entry = self.chain().iter().find(|l| l.level == next_level).cloned();
                let to_model = to_level_entry
                    .as_ref()
                    .filter(|l| !l.is_gate_only())
                    .map_or(mtx_types::HARD_GATE_MODEL_ID.to_string(), |l| l.model_id.clone());
                self.emit(
                    Event::new(
                        "FR-EVT-MT-005",
                        json!({
                            "wp_id": self.wp_id(),
                            "mt_id": mt_id,
                            "from_model": model_id,
                            "from_lora": lora_id,
                            "from_level": level,
                            "to_model": to_model,
                            "to_level": next_level,
                            "reason": reason,
                            "failure_category": serde_json::to_value(category).unwrap_or(Value::Null),
                            "iterations_at_previous_level": rel_iteration,
                            "escalation_record_ref": record_ref,
                        }),
                    )
                    .mt(&mt_id),
                )?;
                if self.policy().enable_distillation {
                    let outcome = if model_error {
                        StudentOutcome::Error
                    } else if claimed {
                        StudentOutcome::ValidationFailed
                    } else {
                        StudentOutcome::Incomplete
                    };
                    self.job.ext.students.push(StudentRef {
                        step_id: step_id.to_string(),
                        idempotency_key: key.to_string(),
                        model_id: model_id.clone(),
                        lora_id: lora_id.clone(),
                        level,
                        iterations: rel_iteration,
                        outcome,
                        prompt_ref: Some(prompt_ref.clone()),
                        output_ref: Some(output_ref),
                        category: Some(category),
                    });
                }
                self.job.ext.mt_level = Some(next_level);
                self.job.ext.level_iteration_base = 0;
                self.job.ext.after_escalation = true;
                self.job.progress.current_state.total_escalations += 1;
                self.job.progress.current_state.active_model_level =
                    next_level.min(self.policy().max_escalation_level());
                self.job.save_progress()?;
                let gate = to_level_entry.as_ref().is_none_or(EscalationLevel::is_gate_only);
                if gate {
                    return self
                        .hard_gate("escalation_exhausted", &mt_id, Some(level), Some(next_level))
                        .map(Some);
                }
                Ok(None)
            }
            Decision::HardGate { reason } => {
                // The escalation episode ends at a gate (3.9.1 `HARD_GATE` attempt).
                let attempt = EscalationAttempt {
                    level,
                    model_id: model_id.clone(),
                    lora_id: lora_id.clone(),
                    lora_version: None,
                    iterations: rel_iteration,
                    failure_pattern: Some(reason.as_str().to_string()),
                    last_error: None,
                    tokens_used: 0,
                    outcome: AttemptOutcome::HardGate,
                };
                self.write_escalation_record(&mt_id, attempt, None, category)?;
                self.hard_gate(reason.as_str(), &mt_id, Some(level), None).map(Some)
            }
            Decision::Skip => {
                self.skip_mt(&mt_id, "user_skip")?;
                Ok(Some(Flow::Continue))
            }
            Decision::Abort => {
                self.fail_job(GATE_ABORT, "operator aborted the MT", Some(&mt_id))?;
                Ok(Some(Flow::Stop))
            }
        }
    }

    /// Writes a new version of the MT's escalation record with `attempt` appended.
    fn write_escalation_record(
        &mut self,
        mt_id: &str,
        attempt: EscalationAttempt,
        remediation: Option<Remediation>,
        category: Option<FailureCategory>,
    ) -> Result<ArtifactHandle, ExecError> {
        let idx = self.job.entry_index(mt_id).unwrap_or(0);
        let mut record = self.read_escalation_record(mt_id).unwrap_or_else(|| EscalationRecord {
            mt_id: mt_id.to_string(),
            wp_id: self.wp_id(),
            created_at: now_rfc3339(),
            escalation_chain: Vec::new(),
            remediation: None,
            extra: serde_json::Map::new(),
        });
        record.escalation_chain.push(attempt);
        if remediation.is_some() {
            record.remediation = remediation;
        }
        if let Some(c) = category {
            record.extra.insert("failure_category".into(), serde_json::to_value(c).unwrap_or(Value::Null));
        }
        let version = record.escalation_chain.len();
        record.extra.insert("version".into(), json!(version));
        let rel = format!("escalations/{mt_id}_v{version:03}.json");
        // Write-once: a step finished again after a crash must not replace the version its
        // recorded FR-EVT-MT-005 already names.
        let handle =
            self.job.dir.write_file_once(&rel, &serde_json::to_vec_pretty(&record).map_err(internal)?)?;
        self.job.progress.micro_tasks[idx].escalation_record_ref = Some(handle.clone());
        Ok(handle)
    }

    fn read_escalation_record(&self, mt_id: &str) -> Option<EscalationRecord> {
        let idx = self.job.entry_index(mt_id)?;
        let h = self.job.progress.micro_tasks[idx].escalation_record_ref.as_ref()?;
        self.job.dir.settled().ok()?;
        let bytes = std::fs::read(self.job.dir.resolve(&h.path).ok()?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_mt(
        &mut self,
        mt: &MicroTaskDefinition,
        level: u32,
        model_id: &str,
        lora_id: &Option<String>,
        step_id: &str,
        prompt_ref: &ArtifactHandle,
        output_ref: &ArtifactHandle,
        nonblocking_failed: bool,
        evidence_verified: Option<bool>,
        rel_iteration: u32,
    ) -> Result<(), ExecError> {
        let mt_id = mt.mt_id.clone();
        let idx = self.job.entry_index(&mt_id).unwrap_or(0);
        let escalation = self.read_escalation_record(&mt_id);
        let last_category = escalation
            .as_ref()
            .and_then(|r| r.extra.get("failure_category"))
            .map(|v| FailureCategory::from_str_lossy(v.as_str().unwrap_or("unknown")));
        // 5.10 drop-back, decided by the policy plugin when the MT succeeded above level 0.
        let mut drop_back: Option<DropBackDecision> = None;
        if level > 0 {
            let shape = |d: &MicroTaskDefinition| wit::MtShape {
                mt_id: d.mt_id.clone(),
                risk_level: convert::risk_to_wit(d.risk_level),
                token_budget: d.token_budget,
                files_touched: (d.files.modify.len() + d.files.create.len()) as u32,
            };
            let remaining: Vec<wit::MtShape> = self
                .job
                .progress
                .micro_tasks
                .iter()
                .filter(|e| e.mt_id != mt_id && matches!(e.status, MTStatus::Pending | MTStatus::InProgress))
                .filter_map(|e| self.job.def(&e.mt_id))
                .map(shape)
                .collect();
            let input = wit::DropBackInput {
                strategy: match self.policy().drop_back_strategy {
                    mtx_types::DropBackStrategy::Always => wit::DropBackStrategy::Always,
                    mtx_types::DropBackStrategy::Never => wit::DropBackStrategy::Never,
                    mtx_types::DropBackStrategy::Smart => wit::DropBackStrategy::Smart,
                },
                current_level: level,
                failure_category: last_category.map(convert::category_to_wit),
                escalation_created_at: escalation.as_ref().map(|r| r.created_at.clone()),
                mt: shape(mt),
                task_tags: mt.task_tags.clone(),
                remaining,
                registry: self.setup.loras.iter().map(convert::lora_to_wit).collect(),
            };
            let answer = self.host.drop_back(&self.policy_plugin, &input, &call_ctx());
            self.flush();
            let d = match answer {
                Ok(d) => DropBackDecision {
                    action: match d.action {
                        wit::DropBackAction::DropBack => DropBackAction::DropBack,
                        wit::DropBackAction::StayEscalated => DropBackAction::StayEscalated,
                    },
                    target_level: d.target_level,
                    reason: d.reason,
                    confidence: match d.confidence {
                        wit::Confidence::High => mtx_types::Confidence::High,
                        wit::Confidence::Medium => mtx_types::Confidence::Medium,
                        wit::Confidence::Low => mtx_types::Confidence::Low,
                    },
                },
                Err(e) => {
                    // The MT did succeed; a failing drop-back answer only keeps the level.
                    self.emit(
                        Event::new(
                            "FR-EVT-MTX-003",
                            json!({"plugin": e.plugin(), "world": "escalation-policy", "kind": e.kind(), "message": e.to_string()}),
                        )
                        .mt(&mt_id),
                    )?;
                    DropBackDecision {
                        action: DropBackAction::StayEscalated,
                        target_level: None,
                        reason: "drop_back_plugin_failed".into(),
                        confidence: mtx_types::Confidence::Low,
                    }
                }
            };
            if d.action == DropBackAction::DropBack {
                let target = d.target_level.unwrap_or(0).min(level);
                self.emit(
                    Event::new(
                        "FR-EVT-MT-014",
                        json!({"wp_id": self.wp_id(), "from_level": level, "to_level": target, "mt_id": mt_id, "drop_back_decision": d}),
                    )
                    .mt(&mt_id),
                )?;
                self.job.ext.job_level = target;
                self.job.progress.current_state.total_drop_backs += 1;
            } else {
                self.job.ext.job_level = level;
            }
            drop_back = Some(d);
        }

        // Distillation candidates: every queued student against this teacher success.
        if self.policy().enable_distillation && !self.job.ext.students.is_empty() {
            let students = std::mem::take(&mut self.job.ext.students);
            let teacher_tokenizer = self
                .profile_of(model_id)
                .and_then(|p| p.tokenizer_id)
                .unwrap_or_else(|| model_id.to_string());
            for s in students {
                let student_tokenizer = self
                    .profile_of(&s.model_id)
                    .and_then(|p| p.tokenizer_id)
                    .unwrap_or_else(|| s.model_id.clone());
                let failure_category = s.category.unwrap_or(FailureCategory::Unknown);
                let score = mtx_types::data_trust_score(&TrustSignals {
                    teacher_nonblocking_failed: nonblocking_failed,
                    failure_category,
                    teacher_verify_count: mt.verify.len(),
                    student_outcome: s.outcome,
                });
                let eligible = mtx_types::distillation_eligible(score, evidence_verified.unwrap_or(false));
                let empty = self.put_artifact(b"", "model_response", "text/plain")?;
                let candidate = DistillationCandidate {
                    skill_log_entry_id: uuid::Uuid::now_v7().to_string(),
                    mt_id: mt_id.clone(),
                    wp_id: self.wp_id(),
                    student_attempt: StudentAttempt {
                        model_id: s.model_id.clone(),
                        lora_id: s.lora_id.clone(),
                        lora_version: None,
                        prompt_snapshot_ref: s.prompt_ref.clone().unwrap_or_else(|| empty.clone()),
                        output_snapshot_ref: s.output_ref.clone().unwrap_or_else(|| empty.clone()),
                        outcome: s.outcome,
                        iterations: s.iterations,
                    },
                    teacher_success: TeacherSuccess {
                        model_id: model_id.to_string(),
                        lora_id: lora_id.clone(),
                        prompt_snapshot_ref: prompt_ref.clone(),
                        output_snapshot_ref: output_ref.clone(),
                        outcome: mtx_types::distill::TeacherOutcome::ValidationPassed,
                        iterations: rel_iteration,
                    },
                    task_type_tags: mt.task_tags.clone(),
                    contributing_factors: vec![
                        serde_json::to_value(failure_category)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        format!("escalated_from_level_{}", s.level),
                    ],
                    data_trust_score: score,
                    distillation_eligible: eligible,
                    tokenizer: mtx_types::distill::TokenizerInfo {
                        student_tokenizer_id: student_tokenizer,
                        teacher_tokenizer_id: teacher_tokenizer.clone(),
                    },
                };
                let rel = format!("distillation_candidates/{}.json", candidate.skill_log_entry_id);
                let candidate_ref = self
                    .job
                    .dir
                    .write_file(&rel, &serde_json::to_vec_pretty(&candidate).map_err(internal)?)?;
                self.job.progress.micro_tasks[idx].distillation_candidate =
                    Some(mtx_types::progress::DistillationCandidateSummary {
                        eligible,
                        skill_log_entry_id: Some(candidate.skill_log_entry_id.clone()),
                        task_type_tags: mt.task_tags.clone(),
                        candidate_ref: Some(candidate_ref.clone()),
                    });
                self.emit(
                    Event::new(
                        "FR-EVT-MT-015",
                        json!({
                            "wp_id": self.wp_id(),
                            "mt_id": mt_id,
                            "candidate_ref": candidate_ref,
                            "skill_log_entry_id": candidate.skill_log_entry_id,
                            "data_trust_score": score,
                            "distillation_eligible": eligible,
                        }),
                    )
                    .mt(&mt_id),
                )?;
            }
        }

        // Final escalation record version (SUCCESS attempt and remediation).
        if escalation.is_some() {
            let remediation = Remediation {
                success_level: level,
                success_model_id: model_id.to_string(),
                success_lora_id: lora_id.clone(),
                failure_category: last_category.unwrap_or(FailureCategory::Unknown),
                contributing_factors: Vec::new(),
                drop_back_decision: drop_back.clone().unwrap_or(DropBackDecision {
                    action: DropBackAction::StayEscalated,
                    target_level: None,
                    reason: "success_at_level_0".into(),
                    confidence: mtx_types::Confidence::High,
                }),
            };
            let attempt = EscalationAttempt {
                level,
                model_id: model_id.to_string(),
                lora_id: lora_id.clone(),
                lora_version: None,
                iterations: rel_iteration,
                failure_pattern: None,
                last_error: None,
                tokens_used: 0,
                outcome: AttemptOutcome::Success,
            };
            self.write_escalation_record(&mt_id, attempt, Some(remediation), None)?;
        }

        let entry = &self.job.progress.micro_tasks[idx];
        let final_iteration = entry.iterations.last().map(|r| r.iteration);
        let summary = json!({
            "mt_id": mt_id,
            "status": "completed",
            "iterations": entry.iterations.len(),
            "final_level": level,
            "final_model_id": model_id,
            "step_id": step_id,
        });
        let summary_ref = self.job.dir.write_file(
            &format!("summaries/{mt_id}.json"),
            &serde_json::to_vec_pretty(&summary).map_err(internal)?,
        )?;
        self.emit(
            Event::new(
                "FR-EVT-MT-004",
                json!({
                    "wp_id": self.wp_id(),
                    "mt_id": mt_id,
                    "final_iteration": final_iteration,
                    "final_model_level": level,
                    "summary_ref": summary_ref,
                }),
            )
            .mt(&mt_id),
        )?;
        let entry = &mut self.job.progress.micro_tasks[idx];
        entry.status = MTStatus::Completed;
        entry.final_iteration = final_iteration;
        entry.final_model_level = Some(level);
        entry.summary_ref = Some(summary_ref);
        self.forget_finished(idx);
        self.job.progress.current_state.active_mt = None;
        if level == 0 {
            self.job.ext.job_level = 0;
        }
        self.job.progress.current_state.active_model_level =
            self.job.ext.job_level.min(self.policy().max_escalation_level());
        self.job.ext.mt_level = None;
        self.job.ext.released_level = None;
        self.job.ext.baseline.clear();
        self.job.save_progress()
    }

    // ---------------------------------------------------------------- plugins

    /// 5.11: the policy-level switch, then the level's selector through the plugin.
    #[allow(clippy::type_complexity)]
    fn select_lora(
        &mut self,
        mt: &MicroTaskDefinition,
        level: &EscalationLevel,
        _iteration: u32,
    ) -> Result<(Option<String>, Vec<Value>, String), PluginError> {
        use mtx_types::{LoRASelectionStrategy, LoraSelectorMode};
        let policy = self.policy().clone();
        match policy.lora_selection {
            LoRASelectionStrategy::None => return Ok((None, Vec::new(), "none".into())),
            LoRASelectionStrategy::Explicit => {
                let id = level.lora_id.clone().or(policy.explicit_lora_id.clone());
                return Ok((id, Vec::new(), "explicit".into()));
            }
            LoRASelectionStrategy::AutoByTaskTags => {}
        }
        if let Some(pinned) = &level.lora_id {
            return Ok((Some(pinned.clone()), Vec::new(), "pinned".into()));
        }
        let mode = level.lora_selector.unwrap_or(LoraSelectorMode::None);
        let (wit_mode, name) = match mode {
            LoraSelectorMode::Auto => (wit::LoraSelectorMode::Auto, "auto"),
            LoraSelectorMode::Alternate => (wit::LoraSelectorMode::Alternate, "alternate"),
            LoraSelectorMode::None => (wit::LoraSelectorMode::None, "none"),
        };
        if mode == LoraSelectorMode::None {
            return Ok((None, Vec::new(), name.into()));
        }
        let input = wit::LoraSelectionInput {
            mt_id: mt.mt_id.clone(),
            task_tags: mt.task_tags.clone(),
            level: level.level,
            model_id: level.model_id.clone(),
            mode: wit_mode,
            registry: self.setup.loras.iter().map(convert::lora_to_wit).collect(),
            previous_lora_id: self.job.ext.previous_lora.get(&mt.mt_id).cloned(),
            now: now_rfc3339(),
        };
        let r = self.host.select_lora(&self.selector, &input, &call_ctx());
        self.flush();
        let s = r?;
        // The chosen id must be an available LoRA of this level's model.
        if let Some(id) = &s.lora_id
            && !self.setup.loras.iter().any(|l| &l.lora_id == id && l.base_model_id == level.model_id)
        {
            return Err(PluginError::BadOutput {
                plugin: self.selector.spec.name.clone(),
                reason: format!("selected LoRA {id} is not available for {}", level.model_id),
            });
        }
        let scores = s.scores.iter().map(|x| json!({"lora_id": x.lora_id, "score": x.score})).collect();
        Ok((s.lora_id, scores, name.into()))
    }

    /// 5.3 h: compiles the context of one iteration, stores the prompt and the
    /// ContextSnapshot, and records FR-EVT-CTX-001/002. A context that does not fit is an
    /// overflow: the step is recorded without a model call.
    fn prepare_context(
        &mut self,
        mt: &MicroTaskDefinition,
        status: &LoopStatus,
        reader: &DirReader,
        mut ids: SnapshotIds,
    ) -> Result<Prepared, ExecError> {
        let mt_id = mt.mt_id.clone();
        let previous = self.job.ext.last_summary.clone();
        let compiled = mtx_loop::compile_context(
            &CompileInput {
                mt,
                status,
                previous: previous.as_ref(),
                retrieval: RetrievalConfig::default(),
                determinism: mtx_types::DeterminismMode::Replay,
            },
            reader,
        );
        let compiled = match compiled {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(mt_id = %mt_id, error = %e, "context overflow: no model call");
                None
            }
        };
        let (prompt, prompt_hash, envelope_hashes, prompt_tokens) = match &compiled {
            Some(c) => (
                c.envelope.rendered_prompt.clone(),
                c.envelope.full_prompt_hash.clone(),
                c.envelope.hashes(),
                c.prompt_tokens,
            ),
            None => {
                let text = format!("context overflow for {mt_id}");
                let env = mtx_types::PromptEnvelope::new(String::new(), text.clone(), text.clone());
                (text, env.full_prompt_hash.clone(), env.hashes(), 0)
            }
        };
        // The prompt and its snapshot (which names the prompt) are written together.
        let mut group = WriteGroup::default();
        let prompt_ref = self.stage_artifact(&mut group, prompt.as_bytes(), "prompt", "text/plain")?;
        let snapshot = match &compiled {
            Some(c) => c.snapshot.clone(),
            None => mtx_loop::SnapshotDraft {
                mt_id: mt_id.clone(),
                iteration: status.iteration,
                escalation_level: status.level,
                determinism_mode: mtx_types::DeterminismMode::Replay,
                token_estimator: "bytes_div_4".into(),
                token_budget: mt.token_budget,
                sections: Vec::new(),
                scope_inputs_hash: sha256_hex(mt_id.as_bytes()),
                sources: Vec::new(),
                retrieval_candidates_count: 0,
                selected_count: 0,
                prompt_envelope_hashes: envelope_hashes.clone(),
                warnings: vec!["context_overflow".into()],
            },
        };
        let snapshot_id = ids.context_snapshot_id.clone();
        ids.prompt_ref = prompt_ref.clone();
        let snapshot = snapshot.into_snapshot(ids);
        let snapshot_bytes = serde_json::to_vec_pretty(&snapshot).map_err(internal)?;
        let snapshot_ref =
            self.stage_artifact(&mut group, &snapshot_bytes, "context_snapshot", "application/json")?;
        // Durable, and on disk, with the sync before the model call; the events naming them
        // come after them in the journal and reach the disk after them.
        group.stage_in(self.job.dir.journal())?;
        self.emit(
            Event::new(
                "FR-EVT-CTX-001",
                json!({
                    "request_id": snapshot_id,
                    "query_hash": snapshot.scope_inputs_hash,
                    "candidates_count": snapshot.retrieval_candidates_count,
                    "selected_count": snapshot.selected_count,
                }),
            )
            .mt(&mt_id)
            .iteration(status.iteration),
        )?;
        self.emit(
            Event::new(
                "FR-EVT-CTX-002",
                json!({
                    "request_id": snapshot_id,
                    "context_snapshot_id": snapshot_id,
                    "context_snapshot_ref": snapshot_ref,
                    "total_tokens": prompt_tokens,
                    "snapshot_hash": snapshot.snapshot_hash,
                }),
            )
            .mt(&mt_id)
            .iteration(status.iteration),
        )?;
        Ok(Prepared {
            model_id: status.model_id.clone(),
            lora_id: status.lora_id.clone(),
            iteration: status.iteration,
            prompt,
            prompt_hash,
            envelope_hashes,
            prompt_tokens,
            prompt_ref,
            snapshot_id,
            snapshot_ref,
            snapshot_hash: snapshot.snapshot_hash.clone(),
            overflow: compiled.is_none(),
        })
    }

    /// The journaled context of `step_id` when a crash interrupted it: the run ledger
    /// names its idempotency key and `intent.json` holds what its prompt was. Only a
    /// journal of the same model, LoRA and iteration counts (anything else is a new step).
    fn journaled_step(
        &self,
        step_id: &str,
        model_id: &str,
        lora_id: Option<&str>,
        iteration: u32,
    ) -> Result<Option<Prepared>, ExecError> {
        let Some(key) = self.job.log.ledger().step(step_id).map(|s| s.idempotency_key.clone()) else {
            return Ok(None);
        };
        let path = self.job.dir.step_dir(&key)?.join(INTENT_FILE);
        self.job.dir.settled()?;
        let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
        let Ok(intent) = serde_json::from_slice::<Prepared>(&bytes) else {
            tracing::warn!(step_id, path = %path.display(), "unreadable step intent; compiling afresh");
            return Ok(None);
        };
        let same = intent.model_id == model_id
            && intent.lora_id.as_deref() == lora_id
            && intent.iteration == iteration;
        Ok(same.then_some(intent))
    }

    /// The FR-EVT-LLM-INFERENCE payload of one answered model call.
    fn inference_payload(
        &self,
        model_id: &str,
        lora_id: Option<&str>,
        step_id: &str,
        key: &str,
        outcome: &ModelOutcome,
    ) -> Value {
        json!({
            "trace_id": self.job.record.trace_id,
            "model_id": model_id,
            "lora_id": lora_id,
            "step_id": step_id,
            "idempotency_key": key,
            "token_usage": {
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
            },
            "response_ref": outcome.output_ref,
        })
    }

    /// 5.3 j with 11.2: the model call, or the stored response for this idempotency key.
    fn call_model(&mut self, request: &wit::ModelRequest, key: &str) -> Result<ModelOutcome, ExecError> {
        let step_dir = self.job.dir.step_dir(key)?;
        // Read before the journal settles (the files of the sync before this call may still
        // be on their way): only this function writes a step's response, so what is there
        // now is what an earlier run of the step stored.
        if let Ok(text) = std::fs::read_to_string(step_dir.join("response.txt")) {
            let meta: Value = std::fs::read(step_dir.join("response.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let output_ref = self.put_artifact(text.as_bytes(), "model_response", "text/plain")?;
            return Ok(ModelOutcome {
                prompt_tokens: meta["prompt_tokens"].as_u64().unwrap_or(0),
                completion_tokens: meta["completion_tokens"].as_u64().unwrap_or(0),
                text: Some(text),
                error: None,
                force_escalation: false,
                output_ref: Some(output_ref),
            });
        }
        let mut request = request.clone();
        let mut timeouts = 0;
        let mut transient = 0;
        loop {
            let ctx = CallContext {
                clock: now_rfc3339(),
                seed: request.seed,
                toolbus: None,
                extra_deadline: Duration::from_millis(u64::from(request.timeout_ms)),
                cap: None,
            };
            let r = self.host.complete(&self.backend, &request, &ctx);
            self.job.dir.settled()?;
            self.flush();
            match r {
                Ok(resp) => {
                    let meta = json!({
                        "prompt_tokens": resp.usage.prompt_tokens,
                        "completion_tokens": resp.usage.completion_tokens,
                        "finish_reason": format!("{:?}", resp.finish_reason).to_lowercase(),
                        "model_id": request.model_id,
                        "lora_id": request.lora_id,
                    });
                    // One group: the artifact first, so `response.txt` can share its
                    // bytes; the text last: `response.txt` is what marks the response stored.
                    let mut group = WriteGroup::default();
                    let output_ref = self.stage_artifact(
                        &mut group,
                        resp.text.as_bytes(),
                        "model_response",
                        "text/plain",
                    )?;
                    let meta = serde_json::to_vec_pretty(&meta).map_err(internal)?;
                    let blob = self.artifacts.blob_path(&output_ref)?;
                    self.job.dir.stage_step_entries(
                        &mut group,
                        key,
                        &[("response.json", Content::Bytes(&meta)), ("response.txt", Content::SameAs(&blob))],
                    )?;
                    // Synced on the journal's thread while the response is parsed and
                    // decided on, which touches nothing outside the state: the next
                    // barrier, before any edit or command, waits for it.
                    group.commit_behind(self.job.dir.journal())?;
                    mtx_store::failpoint("executor.response.stored");
                    return Ok(ModelOutcome {
                        text: Some(resp.text),
                        prompt_tokens: u64::from(resp.usage.prompt_tokens),
                        completion_tokens: u64::from(resp.usage.completion_tokens),
                        error: None,
                        force_escalation: false,
                        output_ref: Some(output_ref),
                    });
                }
                Err(PluginError::Reported { error, .. }) => {
                    let (kind, message) = match error {
                        ReportedError::ModelTimeout(m) => (wit::ModelErrorKind::Timeout, m),
                        ReportedError::ModelTransient(m) => (wit::ModelErrorKind::Transient, m),
                        ReportedError::ContextOverflow(m) => (wit::ModelErrorKind::ContextOverflow, m),
                        ReportedError::ModelDenied(m) => (wit::ModelErrorKind::Denied, m),
                        other => (wit::ModelErrorKind::Fatal, other.to_string()),
                    };
                    match kind {
                        wit::ModelErrorKind::Timeout if timeouts == 0 => {
                            timeouts += 1;
                            let raised = mtx_loop::raised_model_timeout_ms(u64::from(request.timeout_ms));
                            request.timeout_ms = raised as u32;
                            request.attempt += 1;
                            continue;
                        }
                        wit::ModelErrorKind::Transient => {
                            transient += 1;
                            if let Some(backoff) = mtx_loop::transient_backoff_ms(transient) {
                                std::thread::sleep(Duration::from_millis(backoff));
                                request.attempt += 1;
                                continue;
                            }
                        }
                        _ => {}
                    }
                    let force = matches!(kind, wit::ModelErrorKind::Timeout)
                        || matches!(kind, wit::ModelErrorKind::Transient);
                    return Ok(ModelOutcome {
                        text: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        error: Some((kind, message)),
                        force_escalation: force,
                        output_ref: None,
                    });
                }
                Err(e) => {
                    // A backend that traps is a plugin failure, reported like a fatal model
                    // error so the iteration is still recorded.
                    self.emit(Event::new(
                        "FR-EVT-MTX-003",
                        json!({"plugin": e.plugin(), "world": "model-backend", "kind": e.kind(), "message": e.to_string()}),
                    ))?;
                    return Ok(ModelOutcome {
                        text: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        error: Some((wit::ModelErrorKind::Fatal, e.to_string())),
                        force_escalation: false,
                        output_ref: None,
                    });
                }
            }
        }
    }

    /// Applies the resolved writes through `engine.fs` / `write_files`, scoped to the MT's
    /// modify and create lists. A refusal turns every path of the write into a scope
    /// violation.
    fn apply_writes(
        &mut self,
        mt: &MicroTaskDefinition,
        resolved: &mut mtx_loop::ResolvedEdits,
    ) -> Result<(), ExecError> {
        self.job.log.sync()?;
        let files: Vec<Value> = resolved
            .writes
            .iter()
            .map(|w| json!({"path": w.path, "content": w.content, "expected_pre_sha256": w.expected_pre_sha256}))
            .collect();
        let op = PlannedOperation {
            schema_version: mtx_toolbus::op::POE_SCHEMA_VERSION.to_owned(),
            op_id: uuid::Uuid::now_v7().to_string(),
            engine_id: "engine.fs".into(),
            engine_version_req: None,
            operation: "write_files".into(),
            inputs: Vec::new(),
            params: json!({"files": files, "scope": {"modify": mt.files.modify, "create": mt.files.create}}),
            capabilities_requested: vec!["fs.write".into()],
            capability_profile_id: self.profile.id.clone(),
            budget: mtx_toolbus::Budget {
                max_duration_ms: Some(30_000),
                max_output_bytes: Some(10_485_760),
                ..mtx_toolbus::Budget::default()
            },
            determinism: mtx_toolbus::Determinism::D3,
            evidence_policy: None,
            output_spec: mtx_toolbus::OutputSpec::default(),
            job_id: Some(self.job.job_id().to_string()),
            mt_id: Some(mt.mt_id.clone()),
            trace_id: Some(self.job.record.trace_id.clone()),
            extra: serde_json::Map::new(),
        };
        let r = self.bus.submit(op);
        self.flush();
        mtx_store::failpoint("executor.edits.applying");
        match r {
            Ok(result) if result.status == mtx_toolbus::OpStatus::Succeeded => {}
            Ok(result) => {
                let path = resolved.writes.first().map(|w| w.path.clone()).unwrap_or_default();
                for e in result.errors {
                    resolved.problems.push(mtx_loop::EditProblem::MalformedEditBlock {
                        path: path.clone(),
                        detail: format!("write refused by engine.fs: {}: {}", e.code, e.message),
                    });
                }
                resolved.writes.clear();
            }
            Err(ToolBusError::Denied { denial, .. }) => {
                for w in resolved.writes.drain(..) {
                    resolved.scope_violations.push(w.path);
                }
                tracing::info!(gate = %denial.gate, reason = %denial.reason, "edit refused by the tool bus");
            }
            Err(e) => return Err(internal(e)),
        }
        Ok(())
    }

    /// The MT's files that differ from its baseline, with the changed line numbers.
    fn changed_files(
        &mut self,
        mt: &MicroTaskDefinition,
        reader: &DirReader,
    ) -> Result<Vec<wit::ChangedFile>, ExecError> {
        let mut out = Vec::new();
        for p in mt.files.modify.iter().chain(mt.files.create.iter()) {
            let now = reader.read(p).ok().flatten();
            let before = match self.job.ext.baseline.get(p) {
                Some(Some(h)) => self.artifacts.get(h).ok(),
                Some(None) => None,
                None => now.clone(),
            };
            if before == now {
                continue;
            }
            let kind = match (&before, &now) {
                (None, Some(_)) => wit::ChangeKind::Added,
                (Some(_), None) => wit::ChangeKind::Deleted,
                _ => wit::ChangeKind::Modified,
            };
            let old_text = before.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let new_text = now.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let old: Vec<&str> = old_text.lines().collect();
            let new: Vec<&str> = new_text.lines().collect();
            let ch = mtx_toolbus::linediff::changed_lines(&old, &new);
            out.push(wit::ChangedFile {
                path: p.clone(),
                kind,
                changed_lines: ch.added.iter().map(|l| *l as u32).collect(),
            });
        }
        Ok(out)
    }

    /// 5.3 m: every validator plugin with a Tool Bus port of this job.
    #[allow(clippy::too_many_arguments)]
    fn run_validators(
        &mut self,
        mt: &MicroTaskDefinition,
        step_id: &str,
        iteration: u32,
        signal: &CompletionSignal,
        changed: Vec<wit::ChangedFile>,
        protected: &[String],
        scope_violations: &[String],
    ) -> Result<Validated, PluginError> {
        let started_at = now_rfc3339();
        let started = Instant::now();
        let input = wit::ValidationInput {
            job_id: self.job.job_id().to_string(),
            wp_id: self.wp_id(),
            step_id: step_id.to_string(),
            iteration,
            mt: convert::mt_to_wit(mt),
            completion: convert::completion_to_wit(signal),
            changed_files: changed,
            protected_files: protected.to_vec(),
            scope_violations: scope_violations.to_vec(),
        };
        let verify_time: u64 = mt.verify.iter().map(|v| v.timeout_ms.saturating_mul(2)).sum();
        let mut passed = true;
        let mut spec_results = Vec::new();
        let mut findings = Vec::new();
        let mut denial = None;
        let tool_evidence = Arc::new(std::sync::Mutex::new(Vec::new()));
        for v in &self.validators {
            let port = ValidatorPort {
                evidence: tool_evidence.clone(),
                bus: Arc::new(PluginToolBus::new(
                    self.bus.clone(),
                    PluginCallContext {
                        plugin_name: v.spec.name.clone(),
                        // Plugin grants in the run config are WASI grants; on the Tool Bus
                        // a validator acts within the job's own profile.
                        grants: self.profile.clone(),
                        job_id: self.job.job_id().to_string(),
                        mt_id: Some(mt.mt_id.clone()),
                        trace_id: self.job.record.trace_id.clone(),
                    },
                )),
            };
            let ctx = CallContext {
                clock: now_rfc3339(),
                seed: None,
                toolbus: Some(Arc::new(port)),
                extra_deadline: Duration::from_millis(verify_time),
                cap: None,
            };
            let r = self.host.validate(v, &input, &ctx);
            self.flush();
            mtx_store::failpoint("executor.validation.running");
            let report = r?;
            passed &= report.passed;
            for s in &report.spec_results {
                if let Some(e) = &s.error
                    && e.starts_with("denied by G-CAP")
                {
                    denial = Some(format!("verify command {:?} was denied: {e}", s.command));
                }
            }
            if report.findings.iter().any(|f| f.blocking) {
                passed = false;
            }
            spec_results.extend(report.spec_results);
            findings.extend(report.findings);
        }
        self.job.record.job_metrics.validators_run_count += self.validators.len() as u64;
        let tool_evidence = std::mem::take(&mut *tool_evidence.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Validated {
            passed,
            spec_results,
            findings,
            capability_denial: denial,
            started_at,
            duration_ms: started.elapsed().as_millis() as u64,
            tool_evidence,
        })
    }

    // ---------------------------------------------------------------- swap and cloud

    fn swap(
        &mut self,
        mt_id: &str,
        current: &str,
        target: &str,
        snapshot_id: &str,
    ) -> Result<SwapResult, ExecError> {
        let swap_policy = self.policy().model_swap_policy();
        let request_id = uuid::Uuid::now_v7().to_string();
        let profile = self.profile_of(target);
        let refusal = if !swap_policy.allow_swaps {
            Some("swap_disallowed_by_policy".to_string())
        } else if swap_policy.max_swaps_per_job == 0
            || self.job.ext.model_swaps >= swap_policy.max_swaps_per_job
        {
            Some("swap_limit_exceeded".to_string())
        } else if profile.is_none() {
            Some("budget_exceeded".to_string())
        } else if swap_policy.swap_timeout_ms == 0 {
            Some("swap_timeout".to_string())
        } else {
            None
        };
        // 5.13.2 steps 2-3: persist, then hash exactly what was persisted.
        self.job.save_progress()?;
        let refs = ["progress_artifact.json".to_string(), "run_ledger.jsonl".to_string()];
        self.job.dir.settled()?;
        self.job.progress_store.settle()?;
        let contents: Vec<(String, Vec<u8>)> = refs
            .iter()
            .map(|r| (r.clone(), std::fs::read(self.job.dir.root().join(r)).unwrap_or_default()))
            .collect();
        let pairs: Vec<(&str, &[u8])> = contents.iter().map(|(r, b)| (r.as_str(), b.as_slice())).collect();
        let state_hash = mtx_types::state_hash(&pairs);
        let (vram, ram) =
            profile.as_ref().map_or((0, 0), |p| (u64::from(p.max_vram_mb), u64::from(p.max_ram_mb)));
        let request = mtx_types::ModelSwapRequest {
            schema_version: mtx_types::swap::MODEL_SWAP_SCHEMA_VERSION.into(),
            request_id: request_id.clone(),
            current_model_id: current.into(),
            target_model_id: target.into(),
            role: mtx_types::swap::SwapRole::Worker,
            priority: mtx_types::swap::SwapPriority::Normal,
            reason: "escalation".into(),
            swap_strategy: mtx_types::swap::SwapStrategy::UnloadReload,
            state_persist_refs: refs.to_vec(),
            state_hash: state_hash.clone(),
            context_compile_ref: format!("context_snapshot:{snapshot_id}"),
            max_vram_mb: vram,
            max_ram_mb: ram,
            timeout_ms: swap_policy.swap_timeout_ms,
            requester: mtx_types::swap::SwapRequester {
                subsystem: mtx_types::swap::SwapSubsystem::MtExecutor,
                job_id: Some(self.job.job_id().to_string()),
                wp_id: Some(self.wp_id()),
                mt_id: Some(mt_id.to_string()),
            },
            metadata: None,
        };
        self.job.dir.write_file(
            &format!("model_swap/{request_id}.json"),
            &serde_json::to_vec_pretty(&request).map_err(internal)?,
        )?;
        let payload = json!({
            "request_id": request_id,
            "current_model_id": current,
            "target_model_id": target,
            "role": "worker",
            "reason": "escalation",
            "swap_strategy": "unload_reload",
            "max_vram_mb": vram,
            "max_ram_mb": ram,
            "timeout_ms": swap_policy.swap_timeout_ms,
            "state_persist_refs": refs,
            "state_hash": state_hash,
            "context_compile_ref": request.context_compile_ref,
            "wp_id": self.wp_id(),
            "mt_id": mt_id,
        });
        self.emit(Event::new("FR-EVT-MODEL-001", payload.clone()).mt(mt_id))?;
        let failure = match refusal {
            Some(r) => Some((r, false)),
            None => {
                // 5.13: the swap gets `swap_timeout_ms`, not the backend's own deadline.
                let ctx = CallContext {
                    clock: now_rfc3339(),
                    seed: None,
                    toolbus: None,
                    extra_deadline: Duration::from_millis(swap_policy.swap_timeout_ms),
                    cap: Some(Duration::from_millis(swap_policy.swap_timeout_ms)),
                };
                let t0 = Instant::now();
                let r = self.host.prepare_model(&self.backend, Some(current), target, "unload_reload", &ctx);
                self.flush();
                let slow = t0.elapsed().as_millis() as u64 > swap_policy.swap_timeout_ms;
                match r {
                    Ok(()) if !slow => None,
                    Ok(()) => Some(("swap_timeout".to_string(), true)),
                    Err(PluginError::Deadline { .. }) => Some(("swap_timeout".to_string(), true)),
                    Err(PluginError::Reported { error: ReportedError::ModelTimeout(_), .. }) => {
                        Some(("swap_timeout".to_string(), true))
                    }
                    Err(e) => Some((format!("runtime_failure: {e}"), false)),
                }
            }
        };
        let Some((summary, timed_out)) = failure else {
            self.job.ext.loaded_model = Some(target.to_string());
            self.job.ext.model_swaps += 1;
            self.job.progress.current_state.total_model_swaps += 1;
            return Ok(SwapResult::Done(payload));
        };
        let mut failed = payload.clone();
        failed["outcome"] = json!(if timed_out { "timeout" } else { "failed" });
        failed["error_summary"] = json!(summary);
        let id = if timed_out { "FR-EVT-MODEL-004" } else { "FR-EVT-MODEL-003" };
        self.emit(Event::new(id, failed.clone()).mt(mt_id))?;
        match swap_policy.fallback_strategy {
            mtx_types::SwapFallbackStrategy::Abort => {
                let reason = if timed_out {
                    status_reason::MODEL_SWAP_TIMEOUT
                } else {
                    status_reason::MODEL_SWAP_FAILED
                };
                self.fail_job(reason, &summary, Some(mt_id))?;
                Ok(SwapResult::Flow(Some(Flow::Stop)))
            }
            mtx_types::SwapFallbackStrategy::ContinueWithCurrent => {
                let mut rollback = failed;
                rollback["outcome"] = json!("rolled_back");
                self.emit(Event::new("FR-EVT-MODEL-005", rollback).mt(mt_id))?;
                let previous = self
                    .job
                    .entry_index(mt_id)
                    .and_then(|i| {
                        self.job.progress.micro_tasks[i].iterations.last().map(|r| r.escalation_level)
                    })
                    .unwrap_or(0);
                self.move_to_level(mt_id, previous);
                self.job.save_progress()?;
                Ok(SwapResult::Flow(None))
            }
            mtx_types::SwapFallbackStrategy::EscalateToCloud => {
                let cloud = self.chain().iter().find(|l| l.is_cloud).map(|l| l.level);
                match cloud {
                    Some(l) => {
                        self.move_to_level(mt_id, l);
                        self.job.save_progress()?;
                        Ok(SwapResult::Flow(None))
                    }
                    None => {
                        let level = self.job.ext.mt_level;
                        self.hard_gate("cloud_escalation_disallowed", mt_id, level, None)
                            .map(|f| SwapResult::Flow(Some(f)))
                    }
                }
            }
        }
    }

    fn cloud_request_id(&self) -> Option<String> {
        self.job.ext.cloud_request_id.clone()
    }

    /// 5.14 flow: projection plan of the exact request bytes, CLOUD-001, pause.
    fn request_cloud_consent(
        &mut self,
        mt: &MicroTaskDefinition,
        level: &EscalationLevel,
        payload: &[u8],
        payload_sha256: &str,
        prompt_ref: &ArtifactHandle,
        snapshot_ref: &ArtifactHandle,
    ) -> Result<Flow, ExecError> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let plan = mtx_types::ProjectionPlan {
            schema_version: mtx_types::cloud::PROJECTION_PLAN_SCHEMA_VERSION.into(),
            projection_plan_id: uuid::Uuid::now_v7().to_string(),
            include_artifact_refs: vec![prompt_ref.canonical(), snapshot_ref.canonical()],
            include_fields: Some(
                [
                    "model_id",
                    "lora_id",
                    "prompt",
                    "prompt_hash",
                    "max_tokens",
                    "context_window",
                    "temperature",
                    "seed",
                    "timeout_ms",
                    "mt_id",
                    "level",
                    "iteration",
                    "attempt",
                ]
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            ),
            redactions_applied: Vec::new(),
            max_bytes: payload.len() as u64,
            payload_sha256: payload_sha256.to_string(),
            created_at: now_rfc3339(),
            job_id: Some(self.job.job_id().to_string()),
            wp_id: Some(self.wp_id()),
            mt_id: Some(mt.mt_id.clone()),
        };
        let plan_ref = self.job.dir.write_file(
            &format!("cloud_escalation/projection_{request_id}.json"),
            &serde_json::to_vec_pretty(&plan).map_err(internal)?,
        )?;
        self.job.dir.write_file(&format!("cloud_escalation/payload_{request_id}.json"), payload)?;
        let idx = self.job.entry_index(&mt.mt_id).unwrap_or(0);
        let entry = &self.job.progress.micro_tasks[idx];
        let last_error = entry.iterations.last().and_then(|r| r.error_summary.clone()).unwrap_or_default();
        self.emit(
            Event::new(
                "FR-EVT-CLOUD-001",
                json!({
                    "request_id": request_id,
                    "reason": "local_levels_exhausted",
                    "requested_model_id": level.model_id,
                    "projection_plan_id": plan.projection_plan_id,
                    "payload_sha256": payload_sha256,
                    "job_id": self.job.job_id(),
                    "wp_id": self.wp_id(),
                    "mt_id": mt.mt_id,
                }),
            )
            .mt(&mt.mt_id),
        )?;
        self.job.progress.current_state.pending_cloud_escalation =
            Some(mtx_types::progress::PendingCloudEscalation {
                request_id: request_id.clone(),
                mt_id: mt.mt_id.clone(),
                requested_model_id: level.model_id.clone(),
                projection_plan_ref: plan_ref,
                payload_sha256: payload_sha256.to_string(),
                local_attempts: entry.iterations.len() as u32,
                last_error_summary: last_error,
            });
        self.job.ext.cloud_request_id = Some(request_id);
        self.job.ext.waiting_for = Some("cloud_consent".into());
        self.job.progress.status = ProgressStatus::Paused;
        self.job.log.append(&LedgerRecord::Resume(ResumeRecord {
            resume_point: None,
            resume_reason: format!("cloud_consent:{}", mt.mt_id),
        }))?;
        self.job.save_progress()?;
        self.job.set_status(JobStatus::AwaitingUser, status_reason::PAUSED_CLOUD_CONSENT)?;
        Ok(Flow::Stop)
    }
}

enum SwapResult {
    /// The swap succeeded; FR-EVT-MODEL-002 follows the context recompile.
    Done(Value),
    /// The swap failed; `Some` stops or continues per the fallback, `None` reruns the pass.
    Flow(Option<Flow>),
}

fn observation(r: &IterationRecord) -> IterationObservation {
    IterationObservation {
        level: r.escalation_level,
        claimed_complete: r.claimed_complete,
        validation_ran: r.validation_passed.is_some(),
        validation_passed: r.validation_passed.unwrap_or(false),
        evidence_verified: r.validation_passed.unwrap_or(false),
        scope_refused: r.failure_category == Some(FailureCategory::ScopeViolation),
    }
}

fn blocked_reason_of(r: &IterationRecord) -> Option<String> {
    r.error_summary.as_deref().and_then(|s| s.strip_prefix("blocked: ")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{is_test_oracle, list_files, list_paths};

    /// The walk without sizes names the same files, in the same order, and skips the same
    /// directories as the one with them.
    #[test]
    fn the_workspace_walk_without_sizes_names_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, bytes) in [
            ("src/lib.rs", "fn a() {}"),
            ("src/deep/b.rs", "b"),
            ("tests/t.rs", ""),
            ("target/debug/x", "x"),
            (".git/HEAD", "ref"),
            (".mtx/jobs/j", "state"),
            ("README.md", "readme"),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, bytes).unwrap();
        }
        let skip = vec![".mtx".to_string()];
        let sized = list_files(root, &skip);
        assert_eq!(
            sized,
            vec![
                ("README.md".to_string(), 6),
                ("src/deep/b.rs".to_string(), 1),
                ("src/lib.rs".to_string(), 9),
                ("tests/t.rs".to_string(), 0),
            ]
        );
        assert_eq!(list_paths(root, &skip), sized.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
    }

    #[test]
    fn test_oracles_are_test_dirs_and_test_named_files() {
        for p in ["tests/it.rs", "crates/x/tests/a.rs", "src/parser_test.go", "pkg/test_util.py"] {
            assert!(is_test_oracle(p), "{p}");
        }
        for p in ["src/lib.rs", "src/testing.rs", "attest/x.rs", "src/latest_test"] {
            assert!(!is_test_oracle(p), "{p}");
        }
    }
}
