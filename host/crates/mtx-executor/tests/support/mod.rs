//! Shared helpers of the executor tests: a temp workspace with a native Work Packet, a
//! `backend-replay` cassette written from the test, and readers for the job's records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mtx_executor::{ExecutorSetup, JobOutcome, NoObserver, PluginSet, ToolBusSettings, run_job};
use mtx_types::ExecutionPolicy;
use serde_json::{Value, json};

pub struct Fixture {
    pub ws: tempfile::TempDir,
    pub packet_dir: tempfile::TempDir,
    pub wp: PathBuf,
}

impl Fixture {
    pub fn state(&self) -> PathBuf {
        self.ws.path().join(".mtx")
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.ws.path().join(rel)).ok()
    }
}

/// A workspace holding `files` and a native packet with the given test plan and done
/// criteria (in scope: `src/`).
pub fn fixture(files: &[(&str, &str)], test_plan: &[&str], done_means: &[&str]) -> Fixture {
    let ws = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = ws.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    let packet_dir = tempfile::tempdir().unwrap();
    let wp = packet_dir.path().join("wp.json");
    let packet = json!({
        "wp_id": "WP-TEST-1",
        "title": "executor test packet",
        "description": "A tiny packet for the loop tests.",
        "in_scope_paths": ["src/"],
        "test_plan": test_plan,
        "done_means": done_means,
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(&wp, serde_json::to_vec_pretty(&packet).unwrap()).unwrap();
    Fixture { ws, packet_dir, wp }
}

/// One component cache per test binary: compiling the built-in plugins once is enough.
pub fn cache_dir() -> PathBuf {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().unwrap()).path().to_path_buf()
}

pub const MODELS: &[&str] = &["qwen2.5-coder:7b", "qwen2.5-coder:14b", "qwen2.5-coder:32b", "gpt-4o"];

/// A cassette answering `(mt, level, iteration) -> response`.
pub fn cassette(entries: &[(&str, u32, u32, &str)]) -> String {
    let models: serde_json::Map<String, Value> = MODELS
        .iter()
        .map(|m| ((*m).to_string(), json!({"context_window": 8192, "tokenizer_id": "qwen2", "max_vram_mb": 1000, "max_ram_mb": 1000})))
        .collect();
    let entries: Vec<Value> = entries
        .iter()
        .map(|(mt, level, iteration, response)| {
            json!({
                "mt_id": mt, "level": level, "iteration": iteration, "prompt_hash": null,
                "response": response,
                "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                "finish_reason": "stop",
                "error": null
            })
        })
        .collect();
    json!({"schema_version": "mtx.cassette@1", "models": models, "entries": entries}).to_string()
}

pub fn setup(fx: &Fixture, cassette: String, policy: ExecutionPolicy) -> ExecutorSetup {
    let mut plugins = PluginSet::defaults();
    plugins.model_backend.config.insert("cassette".into(), cassette);
    ExecutorSetup {
        state_dir: fx.state(),
        workspace: fx.ws.path().to_path_buf(),
        plugins,
        policy,
        loras: Vec::new(),
        toolbus: ToolBusSettings {
            proc_exec: vec!["true".into(), "false".into(), "echo".into(), "grep".into()],
            shell_program: None,
            env: Vec::new(),
        },
        capability_profile_id: "test-profile".into(),
        cache_dir: Some(cache_dir()),
        user_id: "tester".into(),
    }
}

/// Runs `fx` under the default policy with a pause point at MT-001, so the job stops at
/// the pause point before its first step; returns the setup, to decide and resume with.
pub fn run_paused_at_mt_001(fx: &Fixture, cassette: String) -> (ExecutorSetup, JobOutcome) {
    let policy = ExecutionPolicy { pause_points: vec!["MT-001".into()], ..ExecutionPolicy::default() };
    let s = setup(fx, cassette, policy);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    (s, out)
}

/// A response writing `content` to `path` and claiming completion with evidence on
/// lines `1-lines` of it.
pub fn write_and_claim(mt: &str, path: &str, content: &str, lines: u32) -> String {
    format!(
        "I updated the file.\n<file path=\"{path}\">\n{content}</file>\n\n<mt_complete>\nMT_ID: {mt}\nEVIDENCE:\n- \"{path} updated\" -> {path}:1-{lines}\n</mt_complete>\n"
    )
}

pub fn no_claim() -> String {
    "Still working on it; nothing to report yet.\n".to_string()
}

pub fn blocked(reason: &str) -> String {
    format!("<blocked>\nREASON: {reason}\nNEED: more information\n</blocked>\n")
}

pub fn events(job_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(job_dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The loop's own events (FR-EVT-MT-*, LLM-INFERENCE), in order.
pub fn loop_events(job_dir: &Path) -> Vec<String> {
    events(job_dir)
        .into_iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .filter(|t| t.starts_with("FR-EVT-MT-") || t == "FR-EVT-LLM-INFERENCE")
        .map(|t| t.trim_start_matches("FR-EVT-").to_string())
        .collect()
}

pub fn events_of(job_dir: &Path, event_type: &str) -> Vec<Value> {
    events(job_dir).into_iter().filter(|e| e["event_type"] == event_type).collect()
}

/// The progress artifact as every reader sees it: loaded through the store, so the
/// iteration records kept in archive chunks are included.
pub fn progress(job_dir: &Path) -> Value {
    let store = mtx_store::ProgressStore::new(&job_dir.join("progress_artifact.json"));
    serde_json::to_value(store.load::<mtx_types::progress::ProgressArtifact>().unwrap()).unwrap()
}

pub fn ledger(job_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(job_dir.join("run_ledger.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn ledger_steps(job_dir: &Path) -> Vec<Value> {
    ledger(job_dir).into_iter().filter(|r| r["kind"] == "step").collect()
}

/// `(iteration, level, outcome)` of each iteration record of `mt`.
pub fn iterations(job_dir: &Path, mt: &str) -> Vec<(u64, u64, String)> {
    let p = progress(job_dir);
    let entry = p["micro_tasks"].as_array().unwrap().iter().find(|e| e["mt_id"] == mt).unwrap().clone();
    entry["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["iteration"].as_u64().unwrap(),
                i["escalation_level"].as_u64().unwrap(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn mt_status(job_dir: &Path, mt: &str) -> String {
    let p = progress(job_dir);
    p["micro_tasks"].as_array().unwrap().iter().find(|e| e["mt_id"] == mt).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A chain of three local levels, a HARD_GATE level and a cloud level (small, so the
/// escalation tests stay short).
pub fn short_chain_policy() -> ExecutionPolicy {
    let mut p = ExecutionPolicy::default();
    let keep = [0usize, 2, 5, 6];
    let mut chain: Vec<_> = keep.iter().map(|i| p.escalation_chain[*i].clone()).collect();
    for (i, l) in chain.iter_mut().enumerate() {
        l.level = i as u32;
    }
    p.escalation_chain = chain;
    p
}
