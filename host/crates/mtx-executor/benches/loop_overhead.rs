//! Micro-task loop numbers (MTX-SPEC 13.5): host overhead per iteration with durable state,
//! its drift over one long job, and planning + MT-VAL of a packet of about 1,000 MTs.
//!
//! Plain `harness = false` bench printing markdown tables. Every ratio is against baselines
//! measured in the same run: one `write` + `fsync` of 256 bytes into an existing small file,
//! and one spawn of `true`. It never asserts a time; speed is read, not tested.
//!
//! `MTX_BENCH_DIR` moves the job and baseline files (default: the system temp dir).
//! `MTX_BENCH_PART=loop` runs only the loop job (for counting fsyncs under `strace -c`),
//! `MTX_BENCH_LOOP_ITERS` lowers its iteration budget (default 500, the spec's maximum),
//! `MTX_BENCH_DEBUG` prints the loop job's MT events other than MT-002 to stderr.

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
    let cache = tempfile::tempdir_in(&base).expect("cache dir");
    let budget: u32 =
        std::env::var("MTX_BENCH_LOOP_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(500).clamp(1, 500);
    if std::env::var("MTX_BENCH_PART").as_deref() == Ok("loop") {
        let n = loop_job(&base, cache.path(), budget).len();
        println!("loop job: {n} iterations");
        return;
    }

    let fsync = fsync_baseline(&base, 200);
    let spawn = spawn_baseline(200);
    let f50 = pct(&fsync, 50.0);
    let s50 = pct(&spawn, 50.0);
    println!("## Baselines\n");
    println!("| Baseline | p50 | p99 |\n|---|---|---|");
    println!("| write + fsync (256 B) | {} | {} |", ms(f50), ms(pct(&fsync, 99.0)));
    println!("| spawn `true` (std::process::Command, wait) | {} | {} |\n", ms(s50), ms(pct(&spawn, 99.0)));

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

    // 3: planning and MT-VAL.
    planning(&base, cache.path(), f50);
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
    let ws = tempfile::tempdir_in(base).expect("workspace");
    std::fs::create_dir_all(ws.path().join("src")).expect("src");
    std::fs::write(ws.path().join("src/a.txt"), "old text\n").expect("a.txt");
    let packet_dir = tempfile::tempdir_in(base).expect("packet dir");
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
    let levels = budget;
    let mut chain: Vec<EscalationLevel> = (0..levels)
        .map(|level| EscalationLevel {
            level,
            model_id: MODEL.into(),
            lora_id: None,
            lora_selector: None,
            is_cloud: false,
            is_hard_gate: false,
            context_window: 8192,
        })
        .collect();
    chain.push(EscalationLevel {
        level: levels,
        model_id: HARD_GATE_MODEL_ID.into(),
        lora_id: None,
        lora_selector: None,
        is_cloud: false,
        is_hard_gate: true,
        context_window: 8192,
    });
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
    for level in 0..levels {
        for iteration in 1..=CASSETTE_PER_LEVEL {
            entries.push(json!({
                "mt_id": "MT-001", "level": level, "iteration": iteration, "prompt_hash": null,
                "response": format!("Still working on it (level {level}, try {iteration}); nothing to report yet.\n"),
                "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                "finish_reason": "stop",
                "error": null
            }));
        }
    }
    let models = json!({MODEL: {"context_window": 8192, "tokenizer_id": "qwen2", "max_vram_mb": 1000, "max_ram_mb": 1000}});
    let cassette = json!({"schema_version": "mtx.cassette@1", "models": models, "entries": entries});
    let mut plugins = PluginSet::defaults();
    plugins.model_backend.config.insert("cassette".into(), cassette.to_string());
    let setup = ExecutorSetup {
        state_dir: ws.path().join(".mtx"),
        workspace: ws.path().to_path_buf(),
        plugins,
        policy,
        loras: Vec::new(),
        toolbus: ToolBusSettings { proc_exec: vec!["true".into()], shell_program: None, env: Vec::new() },
        capability_profile_id: "bench-profile".into(),
        cache_dir: Some(cache.to_path_buf()),
        user_id: "bench".into(),
    };
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
    let packet_dir = tempfile::tempdir_in(base).expect("packet dir");
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
    let input = wit::PlannerInput {
        packet: mtx_executor::convert::work_packet(&wp),
        workspace_files: files,
        context_window: 8192,
    };
    let host = PluginHost::new(
        HostOptions { cache_dir: Some(cache.to_path_buf()) },
        std::sync::Arc::new(NullRecorder),
    )
    .expect("plugin host");
    let spec = PluginSpec::builtin("planner-default", "planner", World::MtPlanner);
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

fn fsync_baseline(base: &Path, n: usize) -> Vec<f64> {
    let dir = tempfile::tempdir_in(base).expect("baseline dir");
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
