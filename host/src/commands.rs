//! The commands behind the `mtx` binary. Each takes validated arguments and a writer and
//! returns an [`ExitCode`]; `main.rs` only parses flags and maps errors to exit codes.
//!
//! Read commands read authoritative state (progress artifact, ledger, Flight Recorder,
//! Job History), never a cache of their own (MTX-SPEC 9.9).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use mtx_executor::{ExecError, ExecutorSetup, JobOutcome, RunObserver};
use mtx_plugin::{HostOptions, NullRecorder, PluginHost, PluginSpec};
use mtx_store::history::JobFilter;
use mtx_store::{EventEnvelope, JobDir, JobHistory, StateDir};
use mtx_types::JobStatus;
use serde_json::{Value, json};

use crate::config::RunConfig;

/// Exit codes of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The job completed (or the read command succeeded).
    Ok = 0,
    /// An internal error.
    Internal = 1,
    /// Bad usage or invalid input; nothing was started.
    Usage = 2,
    /// The job is paused, waiting for an operator (hard gate, pause point, consent).
    Paused = 3,
    /// The job failed (or a verification found a broken record).
    Failed = 4,
}

/// An error with the exit code it maps to and a hint on how to fix it.
#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    pub error: anyhow::Error,
    pub hint: Option<String>,
}

impl CliError {
    pub fn usage(error: impl Into<anyhow::Error>, hint: impl Into<Option<String>>) -> Self {
        CliError { code: ExitCode::Usage, error: error.into(), hint: hint.into() }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        CliError { code: ExitCode::Internal, error, hint: None }
    }
}

impl From<ExecError> for CliError {
    fn from(e: ExecError) -> Self {
        let code = match &e {
            ExecError::InvalidInput(_) | ExecError::NotFound(_) | ExecError::NotPaused(_) => ExitCode::Usage,
            ExecError::Internal(_) => ExitCode::Internal,
        };
        let hint = match &e {
            ExecError::NotFound(_) => Some("list jobs with `mtx jobs`".to_owned()),
            ExecError::NotPaused(_) => {
                Some("only a job waiting at a gate accepts a decision; see `mtx show <JOB_ID>`".into())
            }
            _ => None,
        };
        CliError { code, error: anyhow::Error::new(e), hint }
    }
}

pub type CliResult = Result<ExitCode, CliError>;

/// Output options shared by every command.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub color: bool,
}

impl Output {
    pub fn detect(json: bool) -> Self {
        let color = !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output { json, color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

/// Where state lives: `--state-dir`, else `MTX_STATE_DIR`, else `./.mtx`.
pub fn resolve_state_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("MTX_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".mtx"))
}

/// Loads the run config: `--config`, else `mtx.toml` next to the Work Packet, else defaults.
pub fn load_config(flag: Option<&Path>, wp: Option<&Path>) -> Result<RunConfig, CliError> {
    let implicit = wp.map(|wp| if wp.is_dir() { wp.join("mtx.toml") } else { wp.with_file_name("mtx.toml") });
    let path = match (flag, implicit) {
        (Some(path), _) => Some(path.to_path_buf()),
        (None, Some(path)) if path.is_file() => Some(path),
        _ => None,
    };
    match path {
        None => Ok(RunConfig::default()),
        Some(path) => RunConfig::load(&path).map_err(|e| {
            CliError::usage(e, Some("the keys are documented in host/docs/run-config.md".to_owned()))
        }),
    }
}

// ------------------------------------------------------------------------ run

pub struct RunArgs {
    pub wp: PathBuf,
    pub workspace: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub user_id: String,
}

/// `mtx run`: plan and execute a Work Packet. A directory holding `crate/` (an example)
/// is copied to a scratch workspace under the state dir first, so the source is never
/// changed.
pub fn run(args: RunArgs, out: Output) -> CliResult {
    if !args.wp.exists() {
        return Err(CliError::usage(
            anyhow!("work packet {} does not exist", args.wp.display()),
            Some("pass a packet file (.md, .json, .toml) or a directory holding one".to_owned()),
        ));
    }
    let config = load_config(args.config.as_deref(), Some(&args.wp))?;
    let example_crate = args.wp.join("crate");
    let (workspace, state_dir) = if args.wp.is_dir() && example_crate.is_dir() {
        let state_dir = resolve_state_dir(args.state_dir.as_deref());
        let name =
            args.wp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "example".into());
        let store = StateDir::new(&state_dir);
        let workspace = match args.workspace {
            Some(ws) => ws,
            None => store
                .scratch_workspace(&format!("{name}-{}", uuid::Uuid::now_v7().simple()), &example_crate)
                .context("copying the example crate to a scratch workspace")?,
        };
        (workspace, state_dir)
    } else {
        let workspace = match args.workspace {
            Some(ws) => ws,
            None => std::env::current_dir().context("reading the current directory")?,
        };
        let state_dir = args.state_dir.clone().unwrap_or_else(|| workspace.join(".mtx"));
        (workspace, state_dir)
    };
    let workspace = workspace.canonicalize().with_context(|| format!("workspace {}", workspace.display()))?;
    StateDir::new(&state_dir)
        .create()
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let config_path = config.path.clone();
    let setup = setup_from(config, &state_dir, &workspace, &args.user_id);
    if !out.json {
        println!("mtx: running {} in {}", args.wp.display(), workspace.display());
    }
    let view = LiveView::new(out).remembering(&state_dir, config_path.as_deref());
    let outcome = mtx_executor::run_job(&setup, &args.wp, &view)?;
    view.finish();
    report_outcome(&outcome, &state_dir, out)
}

pub fn setup_from(config: RunConfig, state_dir: &Path, workspace: &Path, user_id: &str) -> ExecutorSetup {
    ExecutorSetup {
        state_dir: state_dir.to_path_buf(),
        workspace: workspace.to_path_buf(),
        plugins: config.plugins,
        policy: config.policy,
        loras: config.loras,
        toolbus: config.toolbus,
        capability_profile_id: config.capability_profile_id,
        cache_dir: Some(state_dir.join("cache").join("components")),
        user_id: user_id.to_owned(),
    }
}

/// Prints the live view of a run: one line per meaningful event (plain when not a
/// terminal), or every event as a JSON line with `--json`.
pub struct LiveView {
    out: Output,
    tty: bool,
    last: Mutex<Option<String>>,
    /// (MTs finished, MTs planned), for the progress bar of the status line.
    mts: Mutex<(u64, u64)>,
    /// Written next to the job on its first event, so `mtx resume` after a pause or a
    /// crash runs with the same config without being told: (state dir, config path).
    remember_config: Mutex<Option<(PathBuf, PathBuf)>>,
}

/// The file in a job directory naming the run config the job started with.
const RUN_CONFIG_PATH_FILE: &str = "run_config.path";

impl LiveView {
    pub fn new(out: Output) -> Self {
        LiveView {
            out,
            tty: !out.json && std::io::stderr().is_terminal(),
            last: Mutex::new(None),
            remember_config: Mutex::new(None),
            mts: Mutex::new((0, 0)),
        }
    }

    fn remembering(self, state_dir: &Path, config: Option<&Path>) -> Self {
        let config = config.and_then(|c| c.canonicalize().ok());
        *self.remember_config.lock().unwrap() = config.map(|c| (state_dir.to_path_buf(), c));
        self
    }

    fn finish(&self) {
        if self.tty && self.last.lock().unwrap().is_some() {
            eprintln!();
        }
    }
}

impl RunObserver for LiveView {
    fn event(&self, e: &EventEnvelope) {
        if let Some((state_dir, config)) = self.remember_config.lock().unwrap().take()
            && let Ok(job) = StateDir::new(&state_dir).job(&e.job_id)
            && let Err(err) = job.write_file(RUN_CONFIG_PATH_FILE, config.to_string_lossy().as_bytes())
        {
            tracing::warn!("could not record the run config path of job {}: {err}", e.job_id);
        }
        if self.out.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        let payload = Value::Object(e.payload.clone());
        let p = &payload;
        {
            let mut mts = self.mts.lock().unwrap();
            match e.event_type.as_str() {
                "FR-EVT-MT-001" => mts.1 = p.get("total_mts").and_then(Value::as_u64).unwrap_or(0),
                "FR-EVT-MT-004" | "FR-EVT-MT-016" => mts.0 += 1,
                _ => {}
            }
        }
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mt = e.mt_id.clone().unwrap_or_default();
        let (status, line) = match e.event_type.as_str() {
            "FR-EVT-MT-001" => {
                (None, Some(format!("planned {} MTs in waves {}", n("total_mts"), p["execution_waves"])))
            }
            "FR-EVT-MT-002" => {
                let lora =
                    p.get("lora_id").and_then(Value::as_str).map(|l| format!(" + {l}")).unwrap_or_default();
                let (done, total) = *self.mts.lock().unwrap();
                (
                    Some(format!(
                        "{} {mt} iteration {} level {} {}{lora}: waiting for the model",
                        progress_bar(done, total),
                        e.iteration.unwrap_or(0),
                        n("escalation_level"),
                        s("model_id")
                    )),
                    None,
                )
            }
            "FR-EVT-MT-012" => {
                let passed = p.get("passed").and_then(Value::as_bool).unwrap_or(false);
                (
                    Some(format!(
                        "{mt} iteration {}: validation {}",
                        e.iteration.unwrap_or(0),
                        if passed { "passed" } else { "failed" }
                    )),
                    None,
                )
            }
            "FR-EVT-MT-003" => {
                let outcome = p.pointer("/outcome/status").and_then(Value::as_str).unwrap_or("?");
                let why = p
                    .pointer("/outcome/error_summary")
                    .and_then(Value::as_str)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                let colored = match outcome {
                    "SUCCESS" => self.out.paint("32", outcome),
                    "ESCALATE" | "BLOCKED" => self.out.paint("33", outcome),
                    _ => self.out.paint("90", outcome),
                };
                (
                    None,
                    Some(format!(
                        "{mt} iteration {} level {} {}: {colored}{why}",
                        e.iteration.unwrap_or(0),
                        p.pointer("/execution/escalation_level").and_then(Value::as_u64).unwrap_or(0),
                        p.pointer("/model/base").and_then(Value::as_str).unwrap_or("")
                    )),
                )
            }
            "FR-EVT-MT-004" => (None, Some(format!("{mt} {}", self.out.paint("32", "completed")))),
            "FR-EVT-MT-005" => (
                None,
                Some(format!(
                    "{mt} {} level {} -> {} ({} -> {}): {}",
                    self.out.paint("33", "escalated"),
                    n("from_level"),
                    n("to_level"),
                    s("from_model"),
                    s("to_model"),
                    s("reason")
                )),
            ),
            "FR-EVT-MT-006" => {
                (None, Some(format!("{} {mt}: {}", self.out.paint("31", "hard gate"), s("reason"))))
            }
            "FR-EVT-MT-007" => (None, Some(format!("pause point before {mt}"))),
            "FR-EVT-MT-014" => {
                (None, Some(format!("drop-back level {} -> {}", n("from_level"), n("to_level"))))
            }
            "FR-EVT-MT-015" => (None, Some(format!("{mt} distillation candidate recorded"))),
            "FR-EVT-MT-016" => (None, Some(format!("{mt} skipped ({})", s("reason")))),
            "FR-EVT-MT-017" => (None, Some(format!("{mt} model reported blocked: {}", s("reason")))),
            "FR-EVT-WF-RECOVERY" => (None, Some(format!("recovered a crashed run: {}", s("reason")))),
            "FR-EVT-MTX-003" => (None, Some(format!("plugin failure: {} ({})", s("plugin"), s("message")))),
            _ => (None, None),
        };
        let mut last = self.last.lock().unwrap();
        if let Some(status) = status
            && self.tty
        {
            eprint!("\r\x1b[2K{status}");
            let _ = std::io::stderr().flush();
            *last = Some(status);
        }
        if let Some(line) = line {
            if self.tty && last.is_some() {
                eprint!("\r\x1b[2K");
            }
            eprintln!("{line}");
            if let (true, Some(status)) = (self.tty, last.as_ref()) {
                eprint!("{status}");
                let _ = std::io::stderr().flush();
            }
        }
    }
}

/// `[####------] 2/5 MTs`: MTs finished out of those planned.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 10;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    format!("[{}{}] {done}/{total} MTs", "#".repeat(filled as usize), "-".repeat((WIDTH - filled) as usize))
}

fn report_outcome(outcome: &JobOutcome, state_dir: &Path, out: Output) -> CliResult {
    let code = exit_code_for(outcome.status);
    let state = state_dir.display();
    let id = &outcome.job_id;
    if out.json {
        println!(
            "{}",
            json!({"job_id": id, "status": outcome.status, "status_reason": outcome.status_reason,
                   "job_dir": outcome.job_dir, "summary": outcome.summary, "exit_code": code as i32})
        );
        return Ok(code);
    }
    let s = &outcome.summary;
    let levels: Vec<String> = s.iterations_per_level.iter().map(|(l, n)| format!("L{l}: {n}")).collect();
    println!();
    println!("job {id}: {} ({})", paint_status(out, outcome.status), outcome.status_reason);
    println!(
        "  MTs            {} total, {} completed, {} skipped, {} failed",
        s.mts_total, s.mts_completed, s.mts_skipped, s.mts_failed
    );
    println!("  iterations     {}", if levels.is_empty() { "none".into() } else { levels.join(", ") });
    println!("  escalations    {} (drop-backs {})", s.escalations, s.drop_backs);
    println!("  hard gates     {}", s.hard_gates);
    println!("  distillation   {} candidates", s.distillation_candidates);
    println!("  evidence       {}", outcome.job_dir.display());
    if let Some(text) = job_summary_text(&outcome.job_dir) {
        println!();
        println!("summary (end-of-job model call, summaries/job_summary.json):");
        println!("  {text}");
    }
    println!();
    println!("next:");
    println!("  mtx show {id} --state-dir {state}");
    println!("  mtx events {id} --state-dir {state}");
    println!("  mtx ledger {id} --state-dir {state}");
    println!("  mtx verify {id} --state-dir {state}");
    if let Some(reason) = &s.pending_gate {
        println!("  the job waits at a gate ({reason}):");
        println!("  mtx gate {id} --decision continue|skip|abort --note \"...\" --state-dir {state}");
        println!("  mtx resume {id} --state-dir {state}");
    }
    Ok(code)
}

/// The end-of-job summary the level-0 model wrote (MTX-SPEC 5.4), when there is one.
fn job_summary_text(job_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(job_dir.join("summaries").join("job_summary.json")).ok()?;
    let doc: Value = serde_json::from_slice(&bytes).ok()?;
    doc.get("summary").and_then(Value::as_str).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn exit_code_for(status: JobStatus) -> ExitCode {
    match status {
        JobStatus::Completed | JobStatus::CompletedWithIssues => ExitCode::Ok,
        JobStatus::AwaitingUser => ExitCode::Paused,
        JobStatus::Failed | JobStatus::Poisoned | JobStatus::Cancelled => ExitCode::Failed,
        _ => ExitCode::Internal,
    }
}

fn paint_status(out: Output, status: JobStatus) -> String {
    let text =
        serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let code = match status {
        JobStatus::Completed => "32",
        JobStatus::CompletedWithIssues | JobStatus::AwaitingUser => "33",
        _ => "31",
    };
    out.paint(code, &text)
}

// --------------------------------------------------------- resume, gate, consent

/// `continue`, `skip` or `abort`, spelled as the GateDecision record spells them.
fn parse_gate_choice(decision: &str) -> Option<mtx_types::GateChoice> {
    serde_json::from_value(Value::String(decision.to_owned())).ok()
}

pub fn resume(
    job_id: &str,
    config: Option<&Path>,
    state_dir: Option<&Path>,
    user_id: &str,
    out: Output,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let setup = resume_setup(&state_dir, job_id, config, user_id)?;
    let view = LiveView::new(out);
    let outcome = mtx_executor::resume_job(&setup, job_id, &view)?;
    view.finish();
    report_outcome(&outcome, &state_dir, out)
}

/// The setup a job continues with: its recorded workspace, and `--config`, else the config
/// it started with, else the defaults.
fn resume_setup(
    state_dir: &Path,
    job_id: &str,
    config: Option<&Path>,
    user_id: &str,
) -> Result<ExecutorSetup, CliError> {
    let job = load_job_json(state_dir, job_id)?;
    let workspace = job
        .pointer("/workspace_scope/root")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("job {job_id} records no workspace root"))?;
    let config = load_config(config, None)?;
    let config = match config.path {
        Some(_) => config,
        None => recorded_config(state_dir, job_id)?.unwrap_or(config),
    };
    Ok(setup_from(config, state_dir, &workspace, user_id))
}

/// The run config a job started with, when the executor kept a copy of its path.
fn recorded_config(state_dir: &Path, job_id: &str) -> Result<Option<RunConfig>, CliError> {
    let path = StateDir::new(state_dir)
        .job(job_id)
        .map_err(|e| CliError::usage(e, None))?
        .root()
        .join(RUN_CONFIG_PATH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(p) => Ok(Some(RunConfig::load(Path::new(p.trim())).map_err(|e| CliError::usage(e, None))?)),
        Err(_) => Ok(None),
    }
}

pub fn gate(
    job_id: &str,
    decision: &str,
    note: Option<&str>,
    state_dir: Option<&Path>,
    user_id: &str,
    out: Output,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let choice = parse_gate_choice(decision).ok_or_else(|| {
        CliError::usage(
            anyhow!("unknown decision `{decision}`"),
            Some("use --decision continue, skip or abort".to_owned()),
        )
    })?;
    let recorded = mtx_executor::decide_gate(&state_dir, job_id, choice, note, user_id)?;
    if out.json {
        println!("{}", serde_json::to_string(&recorded).context("serialising the decision")?);
    } else {
        println!("recorded decision {} for job {job_id}", decision);
        println!("continue the job with: mtx resume {job_id} --state-dir {}", state_dir.display());
    }
    Ok(ExitCode::Ok)
}

/// A request to a running job.
#[derive(Debug, Clone, Copy)]
pub enum Request {
    Skip,
    Cancel,
}

pub fn request(
    kind: Request,
    job_id: &str,
    note: Option<&str>,
    state_dir: Option<&Path>,
    user_id: &str,
    out: Output,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let recorded = match kind {
        Request::Skip => mtx_executor::request_skip(&state_dir, job_id, note, user_id)?,
        Request::Cancel => mtx_executor::request_cancel(&state_dir, job_id, note, user_id)?,
    };
    if out.json {
        println!("{}", serde_json::to_string(&recorded).context("serialising the request")?);
    } else {
        match kind {
            Request::Skip => println!(
                "asked job {job_id} to skip {}; it is honoured at the MT's next decision (FR-EVT-MT-016)",
                recorded.mt_id.as_deref().unwrap_or("its active MT")
            ),
            Request::Cancel => {
                println!("asked job {job_id} to stop; it ends `cancelled` at its next check (FR-EVT-MT-011)")
            }
        }
    }
    Ok(ExitCode::Ok)
}

pub fn consent(
    job_id: &str,
    approve: bool,
    note: Option<&str>,
    state_dir: Option<&Path>,
    user_id: &str,
    out: Output,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let plan = mtx_executor::projection_plan(&state_dir, job_id)?
        .ok_or_else(|| CliError::usage(anyhow!("job {job_id} is not waiting for cloud consent"), None))?;
    if !out.json {
        println!("projection plan (what would leave the machine):");
        println!("{}", serde_json::to_string_pretty(&plan).context("serialising the plan")?);
    }
    let receipt = mtx_executor::decide_consent(&state_dir, job_id, approve, note, user_id)?;
    if out.json {
        println!("{}", serde_json::to_string(&receipt).context("serialising the receipt")?);
    } else {
        println!("consent {} for job {job_id}", if approve { "approved" } else { "denied" });
        println!("continue the job with: mtx resume {job_id} --state-dir {}", state_dir.display());
    }
    Ok(ExitCode::Ok)
}

// ----------------------------------------------------------------- read commands

/// `mtx jobs --reindex`: rebuilds every job's rows from its directory (job.json, the
/// progress artifact, events.jsonl). A job that cannot be read is reported and skipped;
/// its old rows stay.
fn reindex_history(state_dir: &Path) -> Result<JobHistory, CliError> {
    let state = StateDir::new(state_dir);
    let jobs_dir = state.jobs_dir();
    let entries = std::fs::read_dir(&jobs_dir).map_err(|e| {
        CliError::usage(
            anyhow!("no mtx jobs at {}: {e}", jobs_dir.display()),
            Some("pass --state-dir (or set MTX_STATE_DIR) to where jobs ran".to_owned()),
        )
    })?;
    let history = JobHistory::open(&state.history_db()).map_err(|e| CliError::from(anyhow::Error::new(e)))?;
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    dirs.sort();
    let (mut jobs, mut events, mut skipped) = (0, 0, 0);
    for (job_id, path) in dirs {
        match history.reindex(&JobDir::at(&path, &job_id)) {
            Ok(n) => {
                jobs += 1;
                events += n;
            }
            Err(e) => {
                skipped += 1;
                eprintln!("mtx: job {job_id} not reindexed: {e}");
            }
        }
    }
    eprintln!(
        "reindexed {jobs} jobs ({events} events){}",
        if skipped > 0 { format!(", {skipped} skipped") } else { String::new() }
    );
    Ok(history)
}

fn open_history(state_dir: &Path) -> Result<JobHistory, CliError> {
    let db = StateDir::new(state_dir).history_db();
    if !db.exists() {
        return Err(CliError::usage(
            anyhow!("no mtx state at {}", state_dir.display()),
            Some("run a job first, or pass --state-dir (or set MTX_STATE_DIR) to where one ran".to_owned()),
        ));
    }
    JobHistory::open(&db).map_err(|e| CliError::from(anyhow::Error::new(e)))
}

fn load_job_json(state_dir: &Path, job_id: &str) -> Result<Value, CliError> {
    let dir = StateDir::new(state_dir).job(job_id).map_err(|e| CliError::usage(e, None))?;
    let path = dir.job_json();
    let bytes = std::fs::read(&path).map_err(|_| {
        CliError::usage(
            anyhow!("no job {job_id} in {}", state_dir.display()),
            Some("list jobs with `mtx jobs`".to_owned()),
        )
    })?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing {}", path.display()))
        .map_err(CliError::from)
}

pub fn jobs(state_dir: Option<&Path>, status: Option<&str>, reindex: bool, out: Output) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let history = if reindex { reindex_history(&state_dir)? } else { open_history(&state_dir)? };
    let status = match status {
        Some(s) => Some(
            serde_json::from_value::<JobStatus>(Value::String(s.to_owned()))
                .map_err(|_| CliError::usage(anyhow!("unknown status `{s}`"), None))?,
        ),
        None => None,
    };
    let rows = history
        .list_jobs(&JobFilter { status, ..Default::default() })
        .map_err(|e| CliError::from(anyhow::Error::new(e)))?;
    if out.json {
        println!("{}", serde_json::to_string(&rows).context("serialising jobs")?);
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        println!("no jobs in {}", state_dir.display());
        return Ok(ExitCode::Ok);
    }
    println!("{:<36}  {:<24}  {:<22}  {:<20}  {:<8}  CREATED", "JOB", "PROFILE", "WP", "STATUS", "MT");
    for row in rows {
        let status = serde_json::to_value(row.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<36}  {:<24}  {:<22}  {:<20}  {:<8}  {}",
            row.job_id,
            row.profile_id,
            row.wp_id,
            status,
            row.current_mt.unwrap_or_default(),
            row.created_at
        );
    }
    Ok(ExitCode::Ok)
}

pub fn show(job_id: &str, state_dir: Option<&Path>, out: Output) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let job = load_job_json(&state_dir, job_id)?;
    let dir = StateDir::new(&state_dir).job(job_id).map_err(|e| CliError::usage(e, None))?;
    let progress: Value = std::fs::read(dir.progress_artifact())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if out.json {
        println!("{}", json!({"job": job, "progress": progress}));
        return Ok(ExitCode::Ok);
    }
    let g = |v: &Value, p: &str| {
        v.pointer(p)
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .unwrap_or_default()
    };
    println!("job        {job_id}");
    println!("profile    {} / {}", g(&job, "/profile_id"), g(&job, "/job_kind"));
    println!("wp         {}", g(&job, "/wp_id"));
    println!("status     {} ({})", g(&progress, "/status"), g(&job, "/status_reason"));
    println!("workspace  {}", g(&job, "/workspace_scope/root"));
    println!("job dir    {}", dir.root().display());
    if let Some(gate) = progress.pointer("/current_state/pending_gate").filter(|v| !v.is_null()) {
        println!(
            "gate       {} at {} (decide with `mtx gate {job_id} --decision ...`)",
            g(gate, "/gate_reason"),
            g(gate, "/mt_id")
        );
    }
    let stats = progress.get("aggregate_stats").cloned().unwrap_or(Value::Null);
    println!(
        "totals     {} iterations, {} escalations, {} drop-backs, {} distillation candidates, {} prompt + {} completion tokens",
        g(&stats, "/total_iterations"),
        g(&stats, "/escalation_count"),
        g(&stats, "/drop_back_count"),
        g(&stats, "/distillation_candidates_generated"),
        g(&stats, "/total_tokens_prompt"),
        g(&stats, "/total_tokens_completion")
    );
    println!();
    let empty = Vec::new();
    for mt in progress.get("micro_tasks").and_then(Value::as_array).unwrap_or(&empty) {
        println!("{} {:<40} {}", g(mt, "/mt_id"), g(mt, "/name"), g(mt, "/status"));
        for it in mt.get("iterations").and_then(Value::as_array).unwrap_or(&empty) {
            let lora =
                it.get("lora_id").and_then(Value::as_str).map(|l| format!(" + {l}")).unwrap_or_default();
            let category = it
                .get("failure_category")
                .and_then(Value::as_str)
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            println!(
                "    {:<14} L{} {}{lora}: {}{category} {}",
                g(it, "/step_id"),
                g(it, "/escalation_level"),
                g(it, "/model_id"),
                g(it, "/outcome"),
                g(it, "/error_summary")
            );
        }
    }
    if let Some(text) = job_summary_text(dir.root()) {
        println!();
        println!("summary (end-of-job model call):");
        println!("  {text}");
    }
    Ok(ExitCode::Ok)
}

pub fn events(
    job_id: &str,
    state_dir: Option<&Path>,
    event_type: Option<&str>,
    mt: Option<&str>,
    out: Output,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let dir = StateDir::new(&state_dir).job(job_id).map_err(|e| CliError::usage(e, None))?;
    if !dir.events().exists() {
        return Err(CliError::usage(
            anyhow!("no job {job_id} in {}", state_dir.display()),
            Some("list jobs with `mtx jobs`".into()),
        ));
    }
    let all =
        mtx_store::recorder::read_events(&dir.events()).map_err(|e| CliError::from(anyhow::Error::new(e)))?;
    let selected: Vec<&EventEnvelope> = all
        .iter()
        .map(|s| &s.envelope)
        .filter(|e| event_type.is_none_or(|t| e.event_type == t))
        .filter(|e| mt.is_none_or(|m| e.mt_id.as_deref() == Some(m)))
        .collect();
    if out.json {
        println!("{}", serde_json::to_string(&selected).context("serialising events")?);
        return Ok(ExitCode::Ok);
    }
    for e in selected {
        println!(
            "{:>5}  {}  {:<20} {:<36} {:<7} {}",
            e.seq,
            e.timestamp,
            e.event_type,
            e.event_name,
            e.mt_id.clone().unwrap_or_default(),
            e.iteration.map(|i| format!("iter {i}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::Ok)
}

pub fn ledger(job_id: &str, state_dir: Option<&Path>, out: Output) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let dir = StateDir::new(&state_dir).job(job_id).map_err(|e| CliError::usage(e, None))?;
    if !dir.run_ledger().exists() {
        return Err(CliError::usage(
            anyhow!("no job {job_id} in {}", state_dir.display()),
            Some("list jobs with `mtx jobs`".into()),
        ));
    }
    let records = mtx_store::ledger::read_records(&dir.run_ledger())
        .map_err(|e| CliError::from(anyhow::Error::new(e)))?;
    if out.json {
        let rows: Vec<Value> = records.iter().map(|r| json!({"seq": r.seq, "record": r.record})).collect();
        println!("{}", Value::Array(rows));
        return Ok(ExitCode::Ok);
    }
    for entry in &records {
        let v = serde_json::to_value(&entry.record).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        println!(
            "{:>5}  {:<13} {:<16} {:<12} {}",
            entry.seq,
            entry.record.kind(),
            field("step_id"),
            field("status"),
            field("error")
        );
    }
    Ok(ExitCode::Ok)
}

pub fn verify(job_id: &str, state_dir: Option<&Path>, out: Output) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    load_job_json(&state_dir, job_id)?;
    let report =
        mtx_store::verify_job(&state_dir, job_id).map_err(|e| CliError::from(anyhow::Error::new(e)))?;
    if out.json {
        println!("{}", serde_json::to_string(&report).context("serialising the report")?);
    } else if report.is_ok() {
        println!(
            "job {job_id}: ok ({} ledger records, {} events, {} packed plugin inputs and {} artifacts re-hashed, progress artifact {})",
            report.ledger_records,
            report.events,
            report.inputs_checked,
            report.artifacts_checked,
            if report.progress_checked { "valid" } else { "absent" }
        );
    } else {
        println!(
            "job {job_id}: {} problem(s); first: {}",
            report.problems.len(),
            report.first_problem().map(|p| p.to_string()).unwrap_or_default()
        );
    }
    Ok(if report.is_ok() { ExitCode::Ok } else { ExitCode::Failed })
}

/// `mtx plugins`: every configured plugin, loaded and asked for its metadata.
pub fn plugins(config: Option<&Path>, state_dir: Option<&Path>, out: Output) -> CliResult {
    let config = load_config(config, None)?;
    let state_dir = resolve_state_dir(state_dir);
    let cache_dir = state_dir.join("cache").join("components");
    let host = PluginHost::new(HostOptions { cache_dir: Some(cache_dir) }, Arc::new(NullRecorder))?;
    let mut specs: Vec<PluginSpec> = vec![
        config.plugins.planner.clone(),
        config.plugins.model_backend.clone(),
        config.plugins.lora_selector.clone(),
        config.plugins.escalation_policy.clone(),
    ];
    specs.extend(config.plugins.validators.iter().cloned());
    let mut rows = Vec::new();
    let mut failed = false;
    for spec in specs {
        let mut row: BTreeMap<&str, Value> = BTreeMap::new();
        row.insert("role", json!(spec.role));
        row.insert("world", json!(spec.world.name()));
        row.insert("source", json!(spec.source.to_string()));
        row.insert("grants", json!(spec.grants.iter().map(ToString::to_string).collect::<Vec<_>>()));
        row.insert("limits", json!({"memory_bytes": spec.limits.memory_bytes, "cpu_deadline_ms": spec.limits.cpu_deadline.as_millis() as u64}));
        match host.load(&spec) {
            Ok(loaded) => {
                row.insert("sha256", json!(loaded.digest));
                match host.metadata(&loaded) {
                    Ok(meta) => {
                        row.insert("name", json!(meta.name));
                        row.insert("version", json!(meta.version));
                        row.insert("description", json!(meta.description));
                    }
                    Err(e) => {
                        failed = true;
                        row.insert("error", json!(e.to_string()));
                    }
                }
            }
            Err(e) => {
                failed = true;
                row.insert("name", json!(spec.name));
                row.insert("error", json!(e.to_string()));
            }
        }
        row.insert("wit", json!(format!("mtx:plugin@{}", mtx_plugin::WIT_VERSION)));
        rows.push(row);
    }
    if out.json {
        println!("{}", serde_json::to_string(&rows).context("serialising plugins")?);
    } else {
        for row in &rows {
            let g = |k: &str| {
                row.get(k)
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .unwrap_or_default()
            };
            println!("{:<18} {:<20} {} {}", g("role"), g("name"), g("version"), g("source"));
            println!("    world {} ({}), sha256 {}", g("world"), g("wit"), g("sha256"));
            println!("    grants {}, limits {}", g("grants"), g("limits"));
            if row.contains_key("error") {
                println!("    {}", out.paint("31", &format!("error: {}", g("error"))));
            }
        }
    }
    Ok(if failed { ExitCode::Failed } else { ExitCode::Ok })
}

// ----------------------------------------------------------------------- console

/// `mtx console`: the operator console over the state dir. Loopback needs no token; any
/// other address gets a random token, printed once, that every request must carry.
pub fn console(addr: std::net::SocketAddr, state_dir: Option<&Path>, user_id: &str) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let token = if addr.ip().is_loopback() { None } else { Some(uuid::Uuid::new_v4().simple().to_string()) };
    let actions = Arc::new(ConsoleActions { state_dir: state_dir.clone(), user_id: user_id.to_owned() });
    let config = mtx_console::ConsoleConfig { state_dir: state_dir.clone(), addr, token: token.clone() };
    let runtime = tokio::runtime::Runtime::new().context("starting the console runtime")?;
    runtime.block_on(async move {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(mtx_console::serve(config, actions, Some(ready_tx)));
        if let Ok(bound) = ready_rx.await {
            match &token {
                Some(token) => {
                    println!("mtx console on http://{bound}/?token={token} (state {})", state_dir.display())
                }
                None => println!("mtx console on http://{bound}/ (state {})", state_dir.display()),
            }
        }
        server.await.map_err(|e| anyhow!("console task failed: {e}"))?
    })?;
    Ok(ExitCode::Ok)
}

/// Gate, consent and resume from the console, recorded exactly as the CLI records them.
struct ConsoleActions {
    state_dir: PathBuf,
    user_id: String,
}

impl mtx_console::OperatorActions for ConsoleActions {
    fn gate(&self, job_id: &str, decision: &str, note: Option<&str>, user_id: &str) -> Result<Value, String> {
        let choice = parse_gate_choice(decision).ok_or_else(|| format!("unknown decision `{decision}`"))?;
        let user = if user_id.is_empty() { self.user_id.as_str() } else { user_id };
        let recorded = mtx_executor::decide_gate(&self.state_dir, job_id, choice, note, user)
            .map_err(|e| e.to_string())?;
        serde_json::to_value(recorded).map_err(|e| e.to_string())
    }

    fn consent(
        &self,
        job_id: &str,
        approve: bool,
        note: Option<&str>,
        user_id: &str,
    ) -> Result<Value, String> {
        let user = if user_id.is_empty() { self.user_id.as_str() } else { user_id };
        let receipt = mtx_executor::decide_consent(&self.state_dir, job_id, approve, note, user)
            .map_err(|e| e.to_string())?;
        serde_json::to_value(receipt).map_err(|e| e.to_string())
    }

    fn request(&self, job_id: &str, kind: &str, note: Option<&str>, user_id: &str) -> Result<Value, String> {
        let user = if user_id.is_empty() { self.user_id.as_str() } else { user_id };
        let requested = match kind {
            "skip" => mtx_executor::request_skip(&self.state_dir, job_id, note, user),
            "cancel" => mtx_executor::request_cancel(&self.state_dir, job_id, note, user),
            other => return Err(format!("unknown request `{other}`")),
        }
        .map_err(|e| e.to_string())?;
        serde_json::to_value(requested).map_err(|e| e.to_string())
    }

    fn resume(&self, job_id: &str) -> Result<(), String> {
        let setup = resume_setup(&self.state_dir, job_id, None, &self.user_id)
            .map_err(|e| format!("{:#}", e.error))?;
        let job_id = job_id.to_owned();
        std::thread::Builder::new()
            .name(format!("mtx-resume-{job_id}"))
            .spawn(move || {
                if let Err(e) = mtx_executor::resume_job(&setup, &job_id, &mtx_executor::NoObserver) {
                    tracing::error!("resuming job {job_id} from the console failed: {e}");
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

// ------------------------------------------------------------------------ audit

fn audit_error(e: mtx_audit::AuditError) -> CliError {
    let code = match e {
        mtx_audit::AuditError::NoJob { .. }
        | mtx_audit::AuditError::Override { .. }
        | mtx_audit::AuditError::BadTrust { .. } => ExitCode::Usage,
        _ => ExitCode::Failed,
    };
    CliError { code, error: anyhow::Error::new(e), hint: None }
}

/// `mtx replay`: re-runs every recorded plugin decision of a job and compares outputs.
/// Overrides (`NAME=path.wasm`) answer "what would this plugin have decided?".
pub fn replay(job_id: &str, overrides: &[String], state_dir: Option<&Path>, out: Output) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let overrides = overrides
        .iter()
        .map(|o| {
            o.split_once('=').map(|(name, path)| (name.to_owned(), PathBuf::from(path))).ok_or_else(|| {
                CliError::usage(
                    anyhow!("--plugin {o:?} is not NAME=PATH"),
                    Some("e.g. --plugin escalation-default=strict.wasm".to_owned()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let report = mtx_audit::replay::replay_job(&state_dir, job_id, &overrides).map_err(audit_error)?;
    if out.json {
        println!("{}", serde_json::to_string(&report).context("serialising the replay report")?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.is_identical() { ExitCode::Ok } else { ExitCode::Failed })
}

/// `mtx distill export`: the stored distillation candidates as training-ready JSON Lines.
pub fn distill_export(
    jobs: &[String],
    out_file: Option<&Path>,
    min_trust: f64,
    state_dir: Option<&Path>,
) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let mut buffer = Vec::new();
    let summary =
        mtx_audit::distill::export(&state_dir, jobs, min_trust, &mut buffer).map_err(audit_error)?;
    match out_file {
        Some(path) => {
            mtx_store::fsutil::atomic_write(path, &buffer)
                .with_context(|| format!("writing {}", path.display()))?;
            eprint!("{}", summary.render_text());
            eprintln!("wrote {}", path.display());
        }
        None => {
            std::io::stdout().write_all(&buffer).context("writing the export")?;
            eprint!("{}", summary.render_text());
        }
    }
    Ok(ExitCode::Ok)
}

/// `mtx metrics`: the spec's metrics export, as JSON, Prometheus text, or a readable table.
pub fn metrics(job_id: Option<&str>, format: &str, state_dir: Option<&Path>) -> CliResult {
    let state_dir = resolve_state_dir(state_dir);
    let export = mtx_audit::metrics::collect(&state_dir, job_id).map_err(audit_error)?;
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&export).context("serialising metrics")?),
        "prometheus" => print!("{}", mtx_audit::metrics::to_prometheus(&export)),
        "text" => print!("{}", mtx_audit::metrics::render_text(&export)),
        other => {
            return Err(CliError::usage(
                anyhow!("unknown format `{other}`"),
                Some("use --format json, prometheus or text".to_owned()),
            ));
        }
    }
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_with_finished_mts() {
        assert_eq!(progress_bar(0, 0), "[----------] 0/0 MTs");
        assert_eq!(progress_bar(1, 2), "[#####-----] 1/2 MTs");
        assert_eq!(progress_bar(3, 3), "[##########] 3/3 MTs");
    }

    #[test]
    fn job_statuses_map_to_the_cli_exit_codes() {
        assert_eq!(exit_code_for(JobStatus::Completed), ExitCode::Ok);
        assert_eq!(exit_code_for(JobStatus::CompletedWithIssues), ExitCode::Ok);
        assert_eq!(exit_code_for(JobStatus::AwaitingUser), ExitCode::Paused);
        assert_eq!(exit_code_for(JobStatus::Failed), ExitCode::Failed);
        assert_eq!(exit_code_for(JobStatus::Poisoned), ExitCode::Failed);
    }
}
