//! Micro-task loop numbers (MTX-SPEC 13.5): host overhead per iteration with durable state,
//! its drift over one long job, and planning + MT-VAL of a packet of about 1,000 MTs.
//!
//! Plain `harness = false` bench printing markdown tables. Every ratio is against baselines
//! measured in the same run: one `write` + `fsync` of 256 bytes into an existing small file,
//! and one spawn of `true`. It never asserts a time; speed is read, not tested.
//!
//! `MTX_BENCH_DIR` moves the job and baseline files (default: the system temp dir); they
//! are removed when the bench ends (see [`SCRATCH`]), or left with `MTX_BENCH_KEEP`.
//! `MTX_BENCH_PART=loop` runs only the loop job (for counting fsyncs under `strace -c`),
//! `MTX_BENCH_LOOP_ITERS` lowers its iteration budget (default 500, the spec's maximum),
//! `MTX_BENCH_DEBUG` prints the loop job's MT events other than MT-002 to stderr, and the
//! long job's MT events other than MT-002/003/013 plus its validator calls.
//!
//! The long job (`MTX_BENCH_PART=long` runs only it) is a packet of one-file deliverables
//! whose MTs each climb a five-level chain of one model and complete at the top with an
//! edit and a verified claim (20 iterations per MT). The bench continues the job at every
//! `max_total_iterations` gate, as an operator would, until `MTX_BENCH_LONG_ITERS`
//! iterations ran (default 10,000, at least 100) or the job cannot go on. Host overhead is
//! the wall time from one FR-EVT-MT-002 to the next minus the model-backend calls and the
//! verify commands' own run time; intervals that span a gate and its resume are dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::DateTime;
use mtx_executor::{ExecutorSetup, NoObserver, PluginSet, ToolBusSettings, run_job};
use mtx_plugin::bindings::types as wit;
use mtx_plugin::{CallContext, HostOptions, NullRecorder, PluginHost, PluginSpec, World};
use mtx_types::{EscalationLevel, ExecutionPolicy, HARD_GATE_MODEL_ID, MicroTaskDefinition};
use serde_json::{Value, json};

const MODEL: &str = "qwen2.5-coder:7b";
/// `max_iterations_per_mt` of the policy (the spec's maximum).
const PER_MT: u32 = 20;
/// Cassette entries per level (a `retry_budget` is capped at 5, so 6 iterations at most).
const CASSETTE_PER_LEVEL: u32 = 6;

fn main() {
    let base = std::env::var_os("MTX_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("bench dir");
    let _cleanup = RemoveScratch;
    let cache = scratch(&base);
    let budget: u32 =
        std::env::var("MTX_BENCH_LOOP_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(500).clamp(1, 500);
    let long_target: u32 = std::env::var("MTX_BENCH_LONG_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .clamp(100, LONG_MAX_ITERS);
    match std::env::var("MTX_BENCH_PART").as_deref() {
        Ok("loop") => {
            let n = loop_job(&base, cache.path(), budget).len();
            println!("loop job: {n} iterations");
            return;
        }
        Ok("long") => {
            let (f50, s50) = baselines(&base);
            long_job(&base, cache.path(), long_target, f50, s50);
            return;
        }
        _ => {}
    }

    let (f50, s50) = baselines(&base);

    // 1 and 2: one job, no claim ever, so no validation command runs.
    let iters = loop_job(&base, cache.path(), budget);
    let overhead: Vec<f64> = iters.iter().map(|i| i.overhead_ms).collect();
    let model: Vec<f64> = iters.iter().map(|i| i.model_ms).collect();
    let wall: Vec<f64> = iters.iter().map(|i| i.wall_ms).collect();
    println!("## Loop iteration (one MT, no claim, {} iterations measured)\n", iters.len());
    println!("| Quantity | p50 | p99 | p50 / fsync | p50 / spawn |\n|---|---|---|---|---|");
    for (name, v) in [
        ("wall per iteration (MT-002 to next MT-002)", &wall),
        ("model call (backend-replay `generate`, recorded)", &model),
        ("host overhead (wall - model call)", &overhead),
    ] {
        let (p50, p99) = (pct(v, 50.0), pct(v, 99.0));
        println!("| {name} | {} | {} | {:.1}x | {:.1}x |", ms(p50), ms(p99), p50 / f50, p50 / s50);
    }
    if iters.len() >= 100 {
        let first = pct(&overhead[..50], 50.0);
        let last = pct(&overhead[overhead.len() - 50..], 50.0);
        let first_wall = pct(&wall[..50], 50.0);
        let last_wall = pct(&wall[wall.len() - 50..], 50.0);
        println!("\n| Drift over the job | first 50 p50 | last 50 p50 | last / first |\n|---|---|---|---|");
        println!(
            "| host overhead, iterations 1-50 vs {}-{} | {} | {} | {:.2} |",
            iters.len() - 49,
            iters.len(),
            ms(first),
            ms(last),
            last / first
        );
        println!("| wall | {} | {} | {:.2} |", ms(first_wall), ms(last_wall), last_wall / first_wall);
    }

    // The long job: drift of the same overhead over thousands of iterations of many MTs.
    println!();
    long_job(&base, cache.path(), long_target, f50, s50);

    // 3: planning and MT-VAL.
    planning(&base, cache.path(), f50);
}

/// Directories of this run, removed when it ends ([`RemoveScratch`]), not when the job that
/// used them does. ext4 without a journal (the disk of this project's machines) does not
/// hand out an inode freed in the last one to five minutes, and checks every such inode of
/// the block group, one inode-table lookup each, on every later create
/// (`recently_deleted` in `find_inode_bit`): a job's directory removed before the next job
/// starts makes each file the next job creates cost up to a millisecond of kernel time, and
/// that is the bench's own cleanup, not anything mtx does (a running job removes nothing).
static SCRATCH: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn scratch(base: &Path) -> Scratch {
    let dir = tempfile::Builder::new().prefix("mtx-bench-").tempdir_in(base).expect("scratch dir").keep();
    SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).push(dir.clone());
    Scratch(dir)
}

struct RemoveScratch;

impl Drop for RemoveScratch {
    /// `MTX_BENCH_KEEP` leaves the directories (for runs back to back, removed together
    /// after the last).
    fn drop(&mut self) {
        if std::env::var_os("MTX_BENCH_KEEP").is_some() {
            return;
        }
        for dir in SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One iteration as read back from the Flight Recorder.
struct Iteration {
    wall_ms: f64,
    model_ms: f64,
    overhead_ms: f64,
}

/// Runs one job of a single MT whose model never claims completion, on a chain of
/// `budget` local levels of the same model (then a HARD_GATE level), with
/// `max_iterations_per_mt = 20` and `max_total_iterations = budget`. Returns every iteration followed by another one.
fn loop_job(base: &Path, cache: &Path, budget: u32) -> Vec<Iteration> {
    let ws = scratch(base);
    std::fs::create_dir_all(ws.path().join("src")).expect("src");
    std::fs::write(ws.path().join("src/a.txt"), "old text\n").expect("a.txt");
    let packet_dir = scratch(base);
    let wp = packet_dir.path().join("wp.json");
    let packet = json!({
        "wp_id": "WP-BENCH-LOOP",
        "title": "loop overhead bench",
        "description": "One MT whose model never claims completion.",
        "in_scope_paths": ["src/"],
        "test_plan": ["true"],
        "done_means": ["src/a.txt says hello"],
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(&wp, serde_json::to_vec_pretty(&packet).expect("packet json")).expect("packet");

    // planner-default gives the MT `retry_budget` 3, so 5.9.1 allows min(20, 3 + 1) = 4
    // iterations per level, and the escalation policy may leave a level sooner: the chain
    // gets one level per budgeted iteration so that `max_total_iterations` is what binds.
    let chain = one_model_chain(budget, |_| None);
    let policy = ExecutionPolicy {
        max_iterations_per_mt: PER_MT,
        max_total_iterations: budget,
        escalation_chain: chain,
        enable_distillation: false,
        // Without a cap the 11.3 guard gates at twenty times the estimated budget (about 170
        // iterations here); the bench wants the iteration limit to bind.
        max_total_tokens: Some(1_000_000_000),
        ..ExecutionPolicy::default()
    };
    let mut entries = Vec::new();
    for level in 0..budget {
        for iteration in 1..=CASSETTE_PER_LEVEL {
            let response =
                format!("Still working on it (level {level}, try {iteration}); nothing to report yet.\n");
            entries.push(cassette_entry("MT-001", level, iteration, &response));
        }
    }
    let setup = bench_setup(ws.path(), cache, entries, policy, Vec::new());
    let started = Instant::now();
    let out = run_job(&setup, &wp, &NoObserver).expect("loop job");
    eprintln!(
        "loop job: {:?} ({}) in {:.1} s",
        out.status,
        out.status_reason,
        started.elapsed().as_secs_f64()
    );
    if std::env::var_os("MTX_BENCH_DEBUG").is_some() {
        let text = std::fs::read_to_string(out.job_dir.join("events.jsonl")).unwrap_or_default();
        for l in text.lines().filter(|l| l.contains("FR-EVT-MT-00") && !l.contains("FR-EVT-MT-002")) {
            eprintln!("{}", &l[..l.len().min(600)]);
        }
    }
    iterations(&out.job_dir)
}

/// A plugin host with `cache` as its compile cache, the built-in planner's spec, and the
/// planner's input for `wp` over `files` (the executor's context window).
fn planner_setup(
    cache: &Path,
    wp: &mtx_wp::WorkPacket,
    files: Vec<wit::WorkspaceFile>,
) -> (PluginHost, PluginSpec, wit::PlannerInput) {
    let input = wit::PlannerInput {
        packet: mtx_executor::convert::work_packet(wp),
        workspace_files: files,
        context_window: 8192,
    };
    let host = PluginHost::new(
        HostOptions { cache_dir: Some(cache.to_path_buf()) },
        std::sync::Arc::new(NullRecorder),
    )
    .expect("plugin host");
    (host, PluginSpec::builtin("planner-default", "planner", World::MtPlanner), input)
}

/// `levels` local levels of [`MODEL`] (with the LoRA `lora` gives each), then a HARD_GATE
/// level: no level change ever swaps the model.
fn one_model_chain(levels: u32, lora: impl Fn(u32) -> Option<String>) -> Vec<EscalationLevel> {
    let level = |level: u32, model_id: &str, lora_id: Option<String>, is_hard_gate: bool| EscalationLevel {
        level,
        model_id: model_id.into(),
        lora_id,
        lora_selector: None,
        is_cloud: false,
        is_hard_gate,
        context_window: 8192,
    };
    let mut chain: Vec<EscalationLevel> = (0..levels).map(|l| level(l, MODEL, lora(l), false)).collect();
    chain.push(level(levels, HARD_GATE_MODEL_ID, None, true));
    chain
}

/// One `backend-replay` cassette entry answering `(mt, level, iteration)`.
fn cassette_entry(mt_id: &str, level: u32, iteration: u32, response: &str) -> Value {
    json!({
        "mt_id": mt_id, "level": level, "iteration": iteration, "prompt_hash": null,
        "response": response,
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
        "finish_reason": "stop",
        "error": null
    })
}

/// The built-in plugins with a cassette of `entries`, `true` as the one allowed command.
fn bench_setup(
    workspace: &Path,
    cache: &Path,
    entries: Vec<Value>,
    policy: ExecutionPolicy,
    loras: Vec<mtx_types::LoRAInfo>,
) -> ExecutorSetup {
    let models = json!({MODEL: {"context_window": 8192, "tokenizer_id": "qwen2", "max_vram_mb": 1000, "max_ram_mb": 1000}});
    let cassette = json!({"schema_version": "mtx.cassette@1", "models": models, "entries": entries});
    let mut plugins = PluginSet::defaults();
    plugins.model_backend.config.insert("cassette".into(), cassette.to_string());
    ExecutorSetup {
        state_dir: workspace.join(".mtx"),
        workspace: workspace.to_path_buf(),
        plugins,
        policy,
        loras,
        toolbus: ToolBusSettings { proc_exec: vec!["true".into()], shell_program: None, env: Vec::new() },
        capability_profile_id: "bench-profile".into(),
        cache_dir: Some(cache.to_path_buf()),
        user_id: "bench".into(),
    }
}

/// Splits the job's events at each FR-EVT-MT-002 and charges every backend call of the
/// iteration (FR-EVT-PLUGIN-001 `duration_us`) to the model.
fn iterations(job_dir: &Path) -> Vec<Iteration> {
    let text = std::fs::read_to_string(job_dir.join("events.jsonl")).expect("events");
    let mut starts: Vec<(DateTime<chrono::FixedOffset>, f64)> = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).expect("event json");
        let ty = e["event_type"].as_str().unwrap_or("");
        if ty == "FR-EVT-MT-002" {
            let t =
                DateTime::parse_from_rfc3339(e["timestamp"].as_str().expect("timestamp")).expect("rfc3339");
            starts.push((t, 0.0));
        } else if ty == "FR-EVT-PLUGIN-001"
            && e["payload"]["role"] == "model_backend"
            && let Some(last) = starts.last_mut()
        {
            last.1 += e["payload"]["duration_us"].as_f64().unwrap_or(0.0) / 1000.0;
        }
    }
    starts
        .windows(2)
        .map(|w| {
            let wall_ms = (w[1].0 - w[0].0).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            Iteration { wall_ms, model_ms: w[0].1, overhead_ms: wall_ms - w[0].1 }
        })
        .collect()
}

/// The planner call on a packet with 999 DONE_MEANS items over 1,000 files, then MT-VAL
/// and waves of 1,000 definitions with a dependency DAG.
fn planning(base: &Path, cache: &Path, fsync_p50: f64) {
    const ITEMS: usize = 999;
    let packet_dir = scratch(base);
    let wp_path = packet_dir.path().join("wp.json");
    let done: Vec<String> = (0..ITEMS).map(|i| format!("src/f{i:04}.txt says hello {i}")).collect();
    let packet = json!({
        "wp_id": "WP-BENCH-PLAN",
        "title": "planner bench",
        "description": "999 deliverables, one file each.",
        "in_scope_paths": ["src/"],
        "test_plan": ["true"],
        "done_means": done,
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(&wp_path, serde_json::to_vec(&packet).expect("packet json")).expect("packet");
    let wp = mtx_wp::load_work_packet(&wp_path).expect("packet loads");
    let files: Vec<wit::WorkspaceFile> = (0..1000)
        .map(|i| wit::WorkspaceFile { path: format!("src/f{i:04}.txt"), size_bytes: 2_000 })
        .collect();
    let (host, spec, input) = planner_setup(cache, &wp, files);
    let ctx = || CallContext { clock: mtx_types::now_rfc3339(), ..CallContext::default() };
    let t = Instant::now();
    let planner = host.load(&spec).expect("planner loads");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut plan_times = Vec::new();
    let mut planned = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        planned = host.plan(&planner, &input, &ctx()).expect("plan");
        plan_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let defs_planned: Vec<MicroTaskDefinition> =
        planned.iter().map(mtx_executor::convert::mt_from_wit).collect();

    // 1,000 definitions MT-000..MT-999 (all match ^MT-[0-9]{3}$), each on its own file,
    // depending on the one before and on the one at half its index.
    let mut defs: Vec<MicroTaskDefinition> = Vec::with_capacity(1000);
    for i in 0..1000usize {
        let mut d = defs_planned[i % defs_planned.len()].clone();
        d.mt_id = format!("MT-{i:03}");
        d.files.modify = vec![format!("src/f{i:04}.txt")];
        d.files.create.clear();
        d.depends_on = match i {
            0 => Vec::new(),
            1 => vec!["MT-000".into()],
            _ => vec![format!("MT-{:03}", i - 1), format!("MT-{:03}", i / 2)],
        };
        defs.push(d);
    }
    let scope = mtx_types::WorkPacketScope {
        in_scope_paths: vec!["src/".into()],
        out_of_scope: Vec::new(),
        done_means: done.clone(),
        test_plan: vec!["true".into()],
        description: "999 deliverables, one file each.".into(),
    };
    let policy = ExecutionPolicy::default();
    let tools = ["engine.shell", "engine.shell.exec", "engine.fs", "engine.fs.write_files"];
    let mut val_times = Vec::new();
    let mut wave_times = Vec::new();
    let mut report = None;
    let mut waves = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        report = Some(mtx_wp::validate_definitions(&defs, &scope, &policy, &tools));
        val_times.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        waves = mtx_wp::compute_waves(&defs).expect("no cycle");
        wave_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let report = report.expect("report");
    println!("\n## Planning and MT-VAL\n");
    println!("| Step | p50 | max | p50 / fsync |\n|---|---|---|---|");
    println!(
        "| load planner-default (compile cache warm from the loop job) | {} | - | {:.1}x |",
        ms(load_ms),
        load_ms / fsync_p50
    );
    println!(
        "| `PluginHost::plan`, planner-default, 999 DONE_MEANS over 1,000 files -> {} MTs (5 calls) | {} | {} | {:.1}x |",
        planned.len(),
        ms(pct(&plan_times, 50.0)),
        ms(max(&plan_times)),
        pct(&plan_times, 50.0) / fsync_p50
    );
    println!(
        "| `validate_definitions`, 1,000 MTs, 1,998 dependency edges ({} errors, {} warnings, {} infos; 10 calls) | {} | {} | {:.1}x |",
        report.errors.len(),
        report.warnings.len(),
        report.infos.len(),
        ms(pct(&val_times, 50.0)),
        ms(max(&val_times)),
        pct(&val_times, 50.0) / fsync_p50
    );
    println!(
        "| `compute_waves`, same 1,000 MTs -> {} waves (10 calls) | {} | {} | {:.1}x |",
        waves.len(),
        ms(pct(&wave_times, 50.0)),
        ms(max(&wave_times)),
        pct(&wave_times, 50.0) / fsync_p50
    );
    let total = pct(&plan_times, 50.0) + pct(&val_times, 50.0) + pct(&wave_times, 50.0);
    println!("| plan + validate + waves (sum of p50) | {} | - | {:.1}x |", ms(total), total / fsync_p50);
    if !report.errors.is_empty() {
        eprintln!("first MT-VAL error: {:?}", report.errors[0]);
    }
}

// ---------------------------------------------------------------- the long job

/// Local levels of the long job's chain, all of one model, so no swap ever happens.
const LONG_LEVELS: u32 = 5;
/// Iterations per level: planner-default gives each MT `retry_budget` 3, so 5.9.1 allows
/// min(`max_iterations_per_mt`, 3 + 1) = 4 before escalation-default escalates (rule 3).
const LONG_PER_LEVEL: u32 = 4;
/// Each MT runs every level to its limit and completes on the last iteration of the last
/// local level: 19 responses without a claim, then one correct claim.
const LONG_PER_MT: u32 = LONG_LEVELS * LONG_PER_LEVEL;
/// MT ids are `MT-001`..`MT-999`, so a packet holds at most 999 MTs of 20 iterations.
const LONG_MAX_ITERS: u32 = 19_000;
/// The spec's maximum `max_total_iterations`: the job pauses at a hard gate this often.
const LONG_GATE_EVERY: u32 = 500;

/// What the long job's observer keeps of one Flight Recorder event.
enum Seen {
    /// FR-EVT-MT-002, with the instant the observer saw it.
    IterationStarted(Instant),
    /// A model-backend plugin call (FR-EVT-PLUGIN-001), its `duration_us` in ms.
    ModelCall(f64),
    /// A verify command's own run time, in ms (see [`command_ms`]).
    Command(f64),
    /// Operator time or re-execution lies in the interval: a hard gate, a pause, a resume,
    /// a recovery, or the return of a `run_job` / `resume_job` call.
    Break,
    Completed,
    Escalated,
    Other,
}

/// Keeps, in log order, what the per-iteration split needs. The executor hands the
/// observer each event right after writing it, in sequence order, so a model call or a
/// command falls between the FR-EVT-MT-002 of its iteration and the next one. Only the
/// MT-002 instants are taken here (the recorder's timestamps have millisecond resolution).
#[derive(Default)]
struct LongObserver {
    seen: std::sync::Mutex<Vec<Seen>>,
    debug: bool,
}

impl LongObserver {
    fn push(&self, s: Seen) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    fn iterations(&self) -> u32 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().filter(|s| matches!(s, Seen::IterationStarted(_))).count() as u32
    }
}

impl mtx_executor::RunObserver for LongObserver {
    fn event(&self, e: &mtx_store::EventEnvelope) {
        let at = Instant::now();
        let p = &e.payload;
        let seen = match e.event_type.as_str() {
            "FR-EVT-MT-002" => Seen::IterationStarted(at),
            "FR-EVT-PLUGIN-001" if p.get("role").and_then(Value::as_str) == Some("model_backend") => {
                Seen::ModelCall(p.get("duration_us").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0)
            }
            "FR-EVT-MT-004" => Seen::Completed,
            "FR-EVT-MT-005" => Seen::Escalated,
            "FR-EVT-MT-006" | "FR-EVT-MT-007" | "FR-EVT-MT-008" | "FR-EVT-MT-011" | "FR-EVT-WF-RECOVERY" => {
                Seen::Break
            }
            _ => command_ms(e).map_or(Seen::Other, Seen::Command),
        };
        let loop_event = e.event_type.starts_with("FR-EVT-MT-")
            && !matches!(e.event_type.as_str(), "FR-EVT-MT-002" | "FR-EVT-MT-003" | "FR-EVT-MT-013");
        if self.debug && (loop_event || matches!(seen, Seen::Break | Seen::Command(_))) {
            let text = serde_json::to_string(&e.payload).unwrap_or_default();
            eprintln!("{} {}", e.event_type, &text[..text.len().min(300)]);
        }
        self.push(seen);
    }
}

/// The own run time of the verify commands a validator ran, if `e` is its plugin call.
///
/// The shell engine times each command from its spawn to its exit and the drain of its
/// pipes (`duration_ms` of the terminal output, whole milliseconds, truncated), and the
/// validator returns it per spec in `spec_results[].duration_ms`. That is the number
/// subtracted: the Tool Bus's gates, the evidence it stores and the validator's own work
/// stay in the host overhead. (The FR-EVT-007 `timing.duration_ms` of the same call would
/// include them.)
fn command_ms(e: &mtx_store::EventEnvelope) -> Option<f64> {
    if e.event_type != "FR-EVT-PLUGIN-001"
        || e.payload.get("role").and_then(Value::as_str) != Some("validators")
    {
        return None;
    }
    let specs = e.payload.get("output")?.get("spec_results")?.as_array()?;
    Some(specs.iter().filter_map(|r| r.get("duration_ms").and_then(Value::as_f64)).sum())
}

/// Builds a Work Packet of `target / 20 + 5` one-file deliverables and runs it for `target`
/// iterations in one job: every `max_total_iterations` (500) the job pauses at a hard gate,
/// the bench records an operator `continue` and resumes it, as an operator would.
fn long_job(base: &Path, cache: &Path, target: u32, fsync_p50: f64, spawn_p50: f64) {
    let debug = std::env::var_os("MTX_BENCH_DEBUG").is_some();
    let items = (target / LONG_PER_MT + 5).min(999) as usize;
    let ws = scratch(base);
    std::fs::create_dir_all(ws.path().join("src")).expect("src");
    for i in 1..=items {
        std::fs::write(ws.path().join(format!("src/f{i:03}.txt")), format!("old text {i}\n")).expect("file");
    }
    let packet_dir = scratch(base);
    let wp = packet_dir.path().join("wp.json");
    let done: Vec<String> = (1..=items).map(|i| format!("src/f{i:03}.txt says hello {i}")).collect();
    let packet = json!({
        "wp_id": "WP-BENCH-LONG",
        "title": "long job bench",
        "description": "One greeting per file, each its own deliverable.",
        "in_scope_paths": ["src/"],
        "test_plan": ["true"],
        "done_means": done,
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(&wp, serde_json::to_vec_pretty(&packet).expect("packet json")).expect("packet");

    // Levels 1 and 3 pin a LoRA of the same base model: the adapter changes, the loaded
    // model does not, so the chain stays free of swaps.
    let lora = |level: u32| (level % 2 == 1).then(|| "text-greetings-v1".to_string());
    let chain = one_model_chain(LONG_LEVELS, lora);
    let loras = vec![mtx_types::LoRAInfo {
        lora_id: "text-greetings-v1".into(),
        lora_version: None,
        base_model_id: MODEL.into(),
        trained_on_task_types: vec!["text".into()],
        specialization: Vec::new(),
        weak_on_task_types: Vec::new(),
        last_trained_at: None,
        eval_metrics: None,
        training_priority: None,
    }];
    let policy = ExecutionPolicy {
        max_iterations_per_mt: PER_MT,
        max_total_iterations: LONG_GATE_EVERY,
        // A day: the job must stop at the iteration gates, not at the duration limit.
        max_duration_ms: 86_400_000,
        escalation_chain: chain,
        // Every MT completes at the top local level; `always` starts the next one at level
        // 0 again, so each MT climbs the whole chain.
        drop_back_strategy: mtx_types::DropBackStrategy::Always,
        enable_distillation: false,
        // See `loop_job`: the 11.3 guard would gate long before the iteration limit.
        max_total_tokens: Some(1_000_000_000),
        ..ExecutionPolicy::default()
    };

    let defs = long_plan(&wp, ws.path(), cache);
    let mut entries = Vec::with_capacity(defs.len() * LONG_PER_MT as usize);
    for d in &defs {
        let file = d.files.modify.first().or(d.files.create.first()).expect("the MT has a file");
        for level in 0..LONG_LEVELS {
            for iteration in 1..=LONG_PER_LEVEL {
                let last = level + 1 == LONG_LEVELS && iteration == LONG_PER_LEVEL;
                let response = if last {
                    let evidence: String =
                        d.done.iter().map(|c| format!("- \"{}\" -> {file}:1-1\n", c.description)).collect();
                    format!(
                        "The file now holds the greeting.\n\n<file path=\"{file}\">\nhello from {}\n</file>\n\n\
                         <mt_complete>\nMT_ID: {}\nEVIDENCE:\n{evidence}</mt_complete>\n",
                        d.mt_id, d.mt_id
                    )
                } else {
                    format!("Still reading {file} (level {level}, try {iteration}); nothing to report yet.\n")
                };
                entries.push(cassette_entry(&d.mt_id, level, iteration, &response));
            }
        }
    }
    let setup = bench_setup(ws.path(), cache, entries, policy, loras);

    let observer = LongObserver { debug, ..LongObserver::default() };
    let started = Instant::now();
    let mut out = run_job(&setup, &wp, &observer).expect("long job");
    observer.push(Seen::Break);
    let mut resumes = 0u32;
    // Why the job ran fewer iterations than asked, if it did: the tables then cover what ran.
    let mut stopped: Option<String> = None;
    while observer.iterations() < target {
        if !matches!(out.summary.pending_gate.as_deref(), Some("max_total_iterations" | "max_duration")) {
            stopped = Some(format!(
                "job {:?} ({}), pending gate {:?}",
                out.status, out.status_reason, out.summary.pending_gate
            ));
            break;
        }
        mtx_executor::decide_gate(
            &setup.state_dir,
            &out.job_id,
            mtx_executor::GateChoice::Continue,
            Some("bench: keep going"),
            "bench",
        )
        .expect("gate decision");
        let resumed = mtx_executor::resume_job(&setup, &out.job_id, &observer);
        observer.push(Seen::Break);
        match resumed {
            Ok(o) => out = o,
            Err(e) => {
                stopped = Some(format!("resume {} failed: {e}", resumes + 1));
                break;
            }
        }
        resumes += 1;
    }
    eprintln!(
        "long job: {} iterations, {resumes} resumes, last outcome {:?} ({}), in {:.1} s",
        observer.iterations(),
        out.status,
        out.status_reason,
        started.elapsed().as_secs_f64()
    );
    // The job's files that grow with its length, as they are at the end.
    let sizes: Vec<(&str, u64)> = ["progress_artifact.json", "run_ledger.jsonl", "events.jsonl", "job.json"]
        .into_iter()
        .map(|f| (f, std::fs::metadata(out.job_dir.join(f)).map_or(0, |m| m.len())))
        .collect();
    let seen = std::mem::take(&mut *observer.seen.lock().unwrap_or_else(|p| p.into_inner()));
    let run = LongRun { target, mts: defs.len(), resumes, stopped, sizes, baselines: (fsync_p50, spawn_p50) };
    long_report(&seen, &run);
}

/// What `long_report` needs besides the events.
struct LongRun {
    target: u32,
    mts: usize,
    resumes: u32,
    stopped: Option<String>,
    /// Bytes of the job's growing files at the end.
    sizes: Vec<(&'static str, u64)>,
    /// p50 of one fsync and of one spawn of `true`, in ms.
    baselines: (f64, f64),
}

/// The planner-default definitions the job will get, planned here with the same input
/// (the in-scope workspace files and the chain's context window) so that the cassette can
/// answer each MT on its own file with its own done criteria.
fn long_plan(wp_path: &Path, workspace: &Path, cache: &Path) -> Vec<MicroTaskDefinition> {
    let wp = mtx_wp::load_work_packet(wp_path).expect("packet loads");
    let mut files: Vec<wit::WorkspaceFile> = std::fs::read_dir(workspace.join("src"))
        .expect("src")
        .map(|e| {
            let e = e.expect("entry");
            let path = format!("src/{}", e.file_name().to_string_lossy());
            wit::WorkspaceFile { path, size_bytes: e.metadata().expect("metadata").len() }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (host, spec, input) = planner_setup(cache, &wp, files);
    let planner = host.load(&spec).expect("planner loads");
    let ctx = CallContext { clock: mtx_types::now_rfc3339(), ..CallContext::default() };
    let planned = host.plan(&planner, &input, &ctx).expect("plan");
    planned.iter().map(mtx_executor::convert::mt_from_wit).collect()
}

/// One iteration of the long job: its ordinal in the job (1-based) and its times.
struct LongIteration {
    ordinal: u32,
    start: Instant,
    wall_ms: f64,
    model_ms: f64,
    command_ms: f64,
    /// A validator ran verify commands in it (the MT's last iteration).
    validated: bool,
    /// It spans a hard gate or a resume, so it holds operator time: not measured.
    broken: bool,
}

impl LongIteration {
    fn overhead_ms(&self) -> f64 {
        self.wall_ms - self.model_ms - self.command_ms
    }
}

/// Splits the observed events at each FR-EVT-MT-002 and prints the tables.
fn long_report(seen: &[Seen], run: &LongRun) {
    let mut iters: Vec<LongIteration> = Vec::new();
    let (mut completed, mut escalated, mut dropped) = (0u32, 0u32, 0u32);
    let mut open: Option<LongIteration> = None;
    let mut ordinal = 0u32;
    for s in seen {
        match s {
            Seen::IterationStarted(at) => {
                if let Some(mut i) = open.take() {
                    if i.broken {
                        dropped += 1;
                    } else {
                        i.wall_ms = at.duration_since(i.start).as_secs_f64() * 1000.0;
                        iters.push(i);
                    }
                }
                ordinal += 1;
                open = Some(LongIteration {
                    ordinal,
                    start: *at,
                    wall_ms: 0.0,
                    model_ms: 0.0,
                    command_ms: 0.0,
                    validated: false,
                    broken: false,
                });
            }
            Seen::ModelCall(ms) => open.iter_mut().for_each(|i| i.model_ms += ms),
            Seen::Command(ms) => open.iter_mut().for_each(|i| {
                i.command_ms += ms;
                i.validated = true;
            }),
            Seen::Break => open.iter_mut().for_each(|i| i.broken = true),
            Seen::Completed => completed += 1,
            Seen::Escalated => escalated += 1,
            Seen::Other => {}
        }
    }
    let overhead: Vec<f64> = iters.iter().map(LongIteration::overhead_ms).collect();
    let col = |f: fn(&LongIteration) -> f64| iters.iter().map(f).collect::<Vec<f64>>();
    let (wall, model, command) = (col(|i| i.wall_ms), col(|i| i.model_ms), col(|i| i.command_ms));
    let (mts, resumes) = (run.mts, run.resumes);
    println!(
        "## Long job ({ordinal} iterations of {mts} planned MTs, {LONG_PER_MT} per MT; {resumes} gate resumes)\n"
    );
    if let Some(why) = &run.stopped {
        println!("**Stopped before the {} iterations asked for:** {why}\n", run.target);
    }
    let sizes: Vec<String> = run.sizes.iter().map(|(f, b)| format!("{f} {b}")).collect();
    println!(
        "{} intervals measured; {dropped} dropped because they span a hard gate and its resume. \
         {completed} MTs completed, {escalated} escalations. Bytes at the end: {}.\n",
        iters.len(),
        sizes.join(", ")
    );
    let (f50, s50) = run.baselines;
    let validated: Vec<f64> = iters.iter().filter(|i| i.validated).map(LongIteration::overhead_ms).collect();
    let plain: Vec<f64> = iters.iter().filter(|i| !i.validated).map(LongIteration::overhead_ms).collect();
    let plain_name = format!("host overhead, {} iterations without a claim", plain.len());
    let validated_name = format!("host overhead, {} iterations that edit and validate", validated.len());
    println!("| Quantity | p50 | p99 | p50 / fsync | p50 / spawn |\n|---|---|---|---|---|");
    for (name, v) in [
        ("wall per iteration (MT-002 to next MT-002)", &wall),
        ("model calls (backend-replay, PLUGIN-001 `duration_us`)", &model),
        ("verify command own run time (`spec_results[].duration_ms`)", &command),
        ("host overhead (wall - model - command)", &overhead),
        (plain_name.as_str(), &plain),
        (validated_name.as_str(), &validated),
    ] {
        let (p50, p99) = (pct(v, 50.0), pct(v, 99.0));
        println!("| {name} | {} | {} | {:.1}x | {:.1}x |", ms(p50), ms(p99), p50 / f50, p50 / s50);
    }
    let window = |lo: u32, hi: u32| -> Vec<f64> {
        iters.iter().filter(|i| (lo..=hi).contains(&i.ordinal)).map(LongIteration::overhead_ms).collect()
    };
    let last = ordinal;
    let early = window(10, 109);
    let late = window(last.saturating_sub(99), last);
    println!("\n| Drift of host overhead | iterations | measured | p50 |\n|---|---|---|---|");
    println!("| early | 10-109 | {} | {} |", early.len(), ms(pct(&early, 50.0)));
    println!("| late | {}-{last} | {} | {} |", last.saturating_sub(99), late.len(), ms(pct(&late, 50.0)));
    println!("| late / early | | | {:.2} |", pct(&late, 50.0) / pct(&early, 50.0));
    let block = if last >= 3_000 { 1_000 } else { (last / 1_000).max(1) * 100 };
    println!("\n| Iterations | measured | host overhead p50 | p99 | wall p50 |\n|---|---|---|---|---|");
    let mut lo = 1;
    while lo <= last {
        let hi = (lo + block - 1).min(last);
        let b: Vec<&LongIteration> = iters.iter().filter(|i| (lo..=hi).contains(&i.ordinal)).collect();
        let o: Vec<f64> = b.iter().map(|i| i.overhead_ms()).collect();
        let w: Vec<f64> = b.iter().map(|i| i.wall_ms).collect();
        println!(
            "| {lo}-{hi} | {} | {} | {} | {} |",
            b.len(),
            ms(pct(&o, 50.0)),
            ms(pct(&o, 99.0)),
            ms(pct(&w, 50.0))
        );
        lo = hi + 1;
    }
}

/// Measures and prints both baselines; returns their p50 (fsync, spawn) in ms.
fn baselines(base: &Path) -> (f64, f64) {
    let fsync = fsync_baseline(base, 200);
    let spawn = spawn_baseline(200);
    let create = create_baseline(base, 200);
    let f50 = pct(&fsync, 50.0);
    let s50 = pct(&spawn, 50.0);
    println!("## Baselines\n");
    println!("| Baseline | p50 | p99 |\n|---|---|---|");
    println!("| write + fsync (256 B) | {} | {} |", ms(f50), ms(pct(&fsync, 99.0)));
    println!("| spawn `true` (std::process::Command, wait) | {} | {} |", ms(s50), ms(pct(&spawn, 99.0)));
    println!(
        "| create an empty file (a new inode; unsynced) | {} | {} |\n",
        ms(pct(&create, 50.0)),
        ms(pct(&create, 99.0))
    );
    (f50, s50)
}

/// What a new inode costs on this filesystem: the reason a running job takes its temp files
/// from a pool of spares (`mtx_store::spare`).
fn create_baseline(base: &Path, n: usize) -> Vec<f64> {
    let dir = scratch(base);
    (0..n)
        .map(|i| {
            let t = Instant::now();
            std::fs::File::create_new(dir.path().join(format!("f{i}"))).expect("create");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn fsync_baseline(base: &Path, n: usize) -> Vec<f64> {
    let dir = scratch(base);
    let path = dir.path().join("baseline.bin");
    std::fs::write(&path, [0u8; 256]).expect("baseline file");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("open baseline");
    let buf = [7u8; 256];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&buf).expect("write");
            f.sync_all().expect("fsync");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn spawn_baseline(n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let status = std::process::Command::new("true")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .output()
                .expect("spawn true");
            assert!(status.status.success());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[idx.min(s.len() - 1)]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn ms(v: f64) -> String {
    if v < 1.0 { format!("{:.0} us", v * 1000.0) } else { format!("{v:.2} ms") }
}
