//! End to end against a job run by mtx-executor (built-in plugins, a backend-replay
//! cassette, verify command `grep`): the run's recorded plugin calls replay identically,
//! its distillation candidate exports as a schema-valid pair, and its metrics follow the
//! iterations the run recorded.

mod schema;

use std::path::{Path, PathBuf};

use mtx_audit::{distill, metrics, replay};
use mtx_executor::{ExecutorSetup, NoObserver, PluginSet, ToolBusSettings, run_job};
use mtx_types::{ExecutionPolicy, JobStatus};
use serde_json::{Value, json};

const A: &str = "src/a.txt";
const MODELS: &[&str] = &["qwen2.5-coder:7b", "qwen2.5-coder:14b", "qwen2.5-coder:32b", "gpt-4o"];

fn cassette(entries: &[(&str, u32, u32, &str)]) -> String {
    let models: serde_json::Map<String, Value> = MODELS
        .iter()
        .map(|m| {
            ((*m).to_string(), json!({"context_window": 8192, "tokenizer_id": "qwen2", "max_vram_mb": 1000, "max_ram_mb": 1000}))
        })
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

fn write_and_claim(mt: &str, path: &str, content: &str, lines: u32) -> String {
    format!(
        "I updated the file.\n<file path=\"{path}\">\n{content}</file>\n\n<mt_complete>\nMT_ID: {mt}\nEVIDENCE:\n- \"{path} updated\" -> {path}:1-{lines}\n</mt_complete>\n"
    )
}

/// Runs a one-MT job that retries and escalates at level 0 (no completion claim) and
/// succeeds at level 1; returns the state dir and the job id.
fn escalating_run(ws: &Path, packet: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join(A), "old text\n").unwrap();
    let wp = packet.join("wp.json");
    let doc = json!({
        "wp_id": "WP-AUDIT-RUN",
        "title": "audit test packet",
        "description": "A tiny packet for the audit tests.",
        "in_scope_paths": ["src/"],
        "test_plan": ["grep -q hello src/a.txt"],
        "done_means": ["src/a.txt says hello"],
        "risk_tier": "LOW",
        "task_tags": ["text"],
    });
    std::fs::write(&wp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let still = "Still working on it; nothing to report yet.\n";
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let mut plugins = PluginSet::defaults();
    plugins.model_backend.config.insert(
        "cassette".into(),
        cassette(&[("MT-001", 0, 1, still), ("MT-001", 0, 2, still), ("MT-001", 1, 1, &right)]),
    );
    let state = ws.join(".mtx");
    let setup = ExecutorSetup {
        state_dir: state.clone(),
        workspace: ws.to_path_buf(),
        plugins,
        policy: ExecutionPolicy { max_iterations_per_mt: 2, ..ExecutionPolicy::default() },
        loras: Vec::new(),
        toolbus: ToolBusSettings {
            proc_exec: vec!["true".into(), "false".into(), "echo".into(), "grep".into()],
            shell_program: None,
            env: Vec::new(),
        },
        capability_profile_id: "test-profile".into(),
        cache_dir: None,
        user_id: "tester".into(),
    };
    let out = run_job(&setup, &wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let job_id = out.job_dir.file_name().unwrap().to_string_lossy().into_owned();
    (state, job_id)
}

#[test]
fn a_job_run_by_the_executor_replays_exports_and_measures() {
    let ws = tempfile::tempdir().unwrap();
    let packet = tempfile::tempdir().unwrap();
    let (state, job_id) = escalating_run(ws.path(), packet.path());

    // Replay: every recorded call of a pure plugin reproduces.
    let calls = replay::load_recorded_calls(&state, &job_id).unwrap();
    assert!(calls.iter().any(|c| c.function == "decide"), "the run recorded policy decisions");
    let report = replay::replay_job(&state, &job_id, &[]).unwrap();
    assert!(report.is_identical(), "{}", report.render_text());
    let compared: u64 = report.rows.iter().map(|r| r.identical).sum();
    assert!(compared >= 3, "{}", report.render_text());
    assert!(report.rows.iter().all(|r| r.different == 0 && r.missing == 0), "{}", report.render_text());

    // Distillation: the level-1 success after the escalation is one exported pair.
    let mut out = Vec::new();
    let summary = distill::export(&state, std::slice::from_ref(&job_id), 0.0, &mut out).unwrap();
    assert_eq!(summary.candidates, 1, "{}", summary.render_text());
    let schema: Value = serde_json::from_str(distill::RECORD_SCHEMA).unwrap();
    for line in String::from_utf8(out).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let errors = schema::validate(&schema, &record);
        assert!(errors.is_empty(), "{errors:?}\n{record:#}");
        assert!(record["chosen"]["content"].as_str().unwrap().contains("<mt_complete>"), "{record:#}");
        assert!(record["rejected"]["content"].as_str().unwrap().contains("Still working"), "{record:#}");
    }

    // Metrics: three iterations, one escalation, one completed MT.
    let m = metrics::collect(&state, Some(&job_id)).unwrap();
    assert_eq!((m.totals.iterations, m.totals.escalations, m.totals.micro_tasks_completed), (3, 1, 1));
    assert_eq!(m.success_rate_by_level.get(&1), Some(&1.0));
    assert_eq!(m.success_rate_by_level.get(&0), Some(&0.0));
}
