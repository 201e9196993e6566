//! Conformance scenarios of MTX-SPEC 13.3 that need more than the default plugins can
//! script: smart drop-back that keeps the level (C-LOOP-9), `contains` and non-blocking
//! verify specs (C-TOOL-2/3, planned by the `verify-planner` fixture) and a model swap
//! that outlives its timeout (C-SWAP-4, the `slow-swap` fixture backend).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtx_executor::{ExecutorSetup, NoObserver, run_job};
use mtx_plugin::{PluginSpec, World};
use mtx_types::{
    ExecutionPolicy, ExecutionPolicyExtension, JobStatus, ModelSwapPolicy, SwapFallbackStrategy,
};
use serde_json::Value;
use support::*;

const A: &str = "src/a.txt";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// A fixture component as a plugin of `role`, with `config`.
fn fixture_plugin(name: &str, role: &str, world: World, config: &[(&str, &str)]) -> PluginSpec {
    let path =
        mtx_plugin::builtins::fixtures::path(name).unwrap_or_else(|| panic!("fixture {name} is built"));
    let mut spec = PluginSpec::file(path, role, world);
    for (k, v) in config {
        spec.config.insert((*k).to_string(), (*v).to_string());
    }
    spec
}

/// Plans MT-001 on `src/a.txt` with one verify spec per test-plan command, shaped by
/// `config` (`expect-<i>`, `blocking-<i>`; see the fixture's doc).
fn with_verify_planner(s: &mut ExecutorSetup, config: &[(&str, &str)]) {
    s.plugins.planner = fixture_plugin("verify-planner", "planner", World::MtPlanner, config);
}

/// The entry of `mt` in the progress artifact.
fn progress_entry(job_dir: &Path, mt: &str) -> Value {
    progress(job_dir)["micro_tasks"].as_array().unwrap().iter().find(|e| e["mt_id"] == mt).unwrap().clone()
}

/// The validation result of an iteration, from its FR-EVT-MT-012 `validation_ref`.
fn validation_of(job_dir: &Path, event: &Value) -> Value {
    read_json(&job_dir.join(event["payload"]["validation_ref"]["path"].as_str().unwrap()))
}

/// Where an artifact handle of the Tool Bus lives: its path is relative to the state
/// directory's artifact store.
fn artifact_path(state: &Path, handle: &Value) -> PathBuf {
    state.join("artifacts").join(handle["path"].as_str().unwrap())
}

/// `artifact:<id>:<path>` of a handle.
fn canonical(handle: &Value) -> String {
    format!("artifact:{}:{}", handle["artifact_id"].as_str().unwrap(), handle["path"].as_str().unwrap())
}

/// The `terminal_output.json` of the `engine.shell` run that produced `stdout` (its
/// canonical handle and its content): the third evidence item of that run's engine
/// result, found through its FR-EVT-007.
fn terminal_output_of(state: &Path, job_dir: &Path, stdout: &Value) -> (String, Value) {
    let stdout = canonical(stdout);
    let call = events_of(job_dir, "FR-EVT-007").into_iter().find(|e| {
        e["payload"]["tool_id"] == "engine.shell.exec"
            && e["payload"]["resources_touched"]["artifacts"].as_array().unwrap().iter().any(|a| *a == stdout)
    });
    let call = call.unwrap_or_else(|| panic!("no engine.shell.exec call produced {stdout}"));
    let result_ref = call["payload"]["result_ref"].as_str().unwrap();
    let (_, path) = result_ref.strip_prefix("artifact:").unwrap().split_once(':').unwrap();
    let result = read_json(&state.join("artifacts").join(path));
    let evidence = result["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 3, "stdout, stderr, terminal output: {result}");
    assert_eq!(canonical(&evidence[0]), stdout);
    (canonical(&evidence[2]), read_json(&artifact_path(state, &evidence[2])))
}

/// A claim whose file change is right but whose evidence points past the end of the file:
/// the verify spec passes, the iteration still fails (evidence not verified).
fn right_change_bad_evidence(mt: &str, path: &str, content: &str) -> String {
    format!(
        "<file path=\"{path}\">\n{content}</file>\n<mt_complete>\nMT_ID: {mt}\nEVIDENCE:\n- \"{path} updated\" -> {path}:40-60\n</mt_complete>\n"
    )
}

/// C-LOOP-9: an MT that needed level 2 because a verify spec it had passed started failing
/// again (`logic_error_regression`, a real capability gap) keeps the level under the
/// `smart` drop-back strategy: no FR-EVT-MT-014, and the next MT starts at level 2.
#[test]
fn c_loop_9_smart_drop_back_keeps_the_level_after_a_regression() {
    let b = "src/b.txt";
    let fx = fixture(
        &[(A, "a\n"), (b, "b\n")],
        // Both MTs are verified by this one command (the planner gives each MT the test
        // plan), so MT-002 cannot fail on what MT-001 left undone.
        &["grep -q hello src/a.txt"],
        &["src/a.txt says hello", "src/b.txt says bye"],
    );
    let broken = write_and_claim("MT-001", A, "nope\n", 1);
    let cas = cassette(&[
        // Level 0: the verify spec passes once (the claim's evidence is bad), then regresses.
        ("MT-001", 0, 1, &right_change_bad_evidence("MT-001", A, "hello\n")),
        ("MT-001", 0, 2, &broken),
        // Level 1: the regression persists.
        ("MT-001", 1, 1, &broken),
        ("MT-001", 1, 2, &broken),
        ("MT-001", 2, 1, &write_and_claim("MT-001", A, "hello\n", 1)),
        ("MT-002", 2, 1, &write_and_claim("MT-002", b, "bye\n", 1)),
    ]);
    let policy = ExecutionPolicy::default();
    assert_eq!(policy.drop_back_strategy, mtx_types::DropBackStrategy::Smart);
    let out = run_job(&setup(&fx, cas, policy), &fx.wp, &NoObserver).unwrap();
    let dir = &out.job_dir;
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    assert_eq!(
        iterations(dir, "MT-001"),
        [
            (1, 0, "RETRY".into()),
            (2, 0, "ESCALATE".into()),
            (1, 1, "RETRY".into()),
            (2, 1, "ESCALATE".into()),
            (1, 2, "SUCCESS".into())
        ]
    );
    let escalations = events_of(dir, "FR-EVT-MT-005");
    let steps: Vec<(u64, u64, &str)> = escalations
        .iter()
        .map(|e| {
            let p = &e["payload"];
            (
                p["from_level"].as_u64().unwrap(),
                p["to_level"].as_u64().unwrap(),
                p["failure_category"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [(0, 1, "logic_error_regression"), (1, 2, "logic_error_regression")]);
    // The success at level 2 kept the level.
    assert!(events_of(dir, "FR-EVT-MT-014").is_empty(), "no drop-back event");
    assert_eq!(out.summary.drop_backs, 0);
    assert_eq!(progress(dir)["current_state"]["total_drop_backs"], 0);
    let mt1 = progress_entry(dir, "MT-001");
    let record = read_json(&dir.join(mt1["escalation_record_ref"]["path"].as_str().unwrap()));
    let remediation = &record["remediation"];
    assert_eq!(remediation["success_level"], 2);
    assert_eq!(remediation["failure_category"], "logic_error_regression");
    assert_eq!(remediation["drop_back_decision"]["action"], "STAY_ESCALATED", "{remediation}");
    // The next MT starts at level 2, on level 2's model, and succeeds there.
    assert_eq!(iterations(dir, "MT-002"), [(1, 2, "SUCCESS".to_string())]);
    let mt2_start = events_of(dir, "FR-EVT-MT-002").into_iter().find(|e| e["payload"]["mt_id"] == "MT-002");
    let mt2_start = mt2_start.expect("MT-002 started an iteration");
    assert_eq!(mt2_start["payload"]["escalation_level"], 2, "{mt2_start}");
    assert_eq!(fx.read(A).as_deref(), Some("hello\n"));
    assert_eq!(fx.read(b).as_deref(), Some("bye\n"));
}

/// C-TOOL-2: a `contains` verify spec judges the command's stdout, not its exit code: it
/// fails while stdout lacks `foo` and passes once it has it; the stdout and stderr of each
/// run are kept as evidence artifacts holding exactly what the command printed, next to
/// the run's terminal output.
#[test]
fn c_tool_2_contains_verify_passes_only_when_stdout_has_the_pattern() {
    // grep prints the matching lines of a.txt on stdout, complains about the missing file
    // on stderr and exits 2 either way.
    const COMMAND: &str = "grep -h -e foo -e bar src/a.txt src/missing.txt";
    let fx = fixture(&[(A, "old text\n")], &[COMMAND], &["src/a.txt mentions foo"]);
    let cas = cassette(&[
        ("MT-001", 0, 1, &write_and_claim("MT-001", A, "bar\n", 1)),
        ("MT-001", 0, 2, &write_and_claim("MT-001", A, "foo\n", 1)),
    ]);
    let mut s = setup(&fx, cas, ExecutionPolicy::default());
    with_verify_planner(&mut s, &[("expect-0", "contains:foo")]);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;
    let defs = read_json(&dir.join("mt_definitions.json"));
    let verify = &defs["micro_tasks"][0]["verify"][0];
    assert_eq!(verify["expect"], "contains", "{verify}");
    assert_eq!(verify["pattern"], "foo");
    assert_eq!(iterations(dir, "MT-001"), [(1, 0, "RETRY".into()), (2, 0, "SUCCESS".into())]);

    let validations = events_of(dir, "FR-EVT-MT-012");
    assert_eq!(validations.len(), 2);
    // (passed, stdout) of each iteration: the validation and its one spec agree.
    let expected = [(false, "bar\n"), (true, "foo\n")];
    for (event, (passed, stdout)) in validations.iter().zip(expected) {
        assert_eq!(event["payload"]["passed"], passed, "{event}");
        assert_eq!(event["payload"]["spec_results"][0]["passed"], passed, "{event}");
        let result = validation_of(dir, event);
        assert_eq!(result["passed"], passed);
        let spec = &result["spec_results"][0];
        assert_eq!(spec["expected"], "contains:foo");
        assert_eq!(spec["actual_exit_code"], 2, "the exit code does not decide: {spec}");
        let out_path = artifact_path(&fx.state(), &spec["stdout_ref"]);
        assert_eq!(std::fs::read_to_string(&out_path).unwrap(), stdout, "{}", out_path.display());
        let err_path = artifact_path(&fx.state(), &spec["stderr_ref"]);
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert!(stderr.contains("src/missing.txt"), "{stderr:?}");
        // Both outputs are listed in the iteration's evidence.
        let evidence = read_json(&dir.join(result["evidence_artifact_ref"]["path"].as_str().unwrap()));
        let listed: Vec<&str> = evidence["evidence"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        for handle in [&spec["stdout_ref"], &spec["stderr_ref"]] {
            let canonical = canonical(handle);
            assert!(listed.contains(&canonical.as_str()), "{canonical} not in {listed:?}");
        }
        // The run's terminal output (10.12) is stored next to them, names them, and is
        // listed in the iteration's evidence as well (13.3 C-TOOL-2).
        let (terminal_handle, terminal) = terminal_output_of(&fx.state(), dir, &spec["stdout_ref"]);
        assert!(listed.contains(&terminal_handle.as_str()), "{terminal_handle} not in {listed:?}");
        assert_eq!(terminal["command"], COMMAND);
        assert_eq!(terminal["exit_code"], 2);
        assert_eq!(terminal["stdout_ref"]["path"], spec["stdout_ref"]["path"]);
        assert_eq!(terminal["stderr_ref"]["path"], spec["stderr_ref"]["path"]);
    }
    assert_eq!(fx.read(A).as_deref(), Some("foo\n"));
}

/// C-TOOL-3: a failing non-blocking verify spec is recorded as failed but does not change
/// the overall result: the MT succeeds on its first iteration and the job completes. The
/// same spec made blocking fails the validation (the control).
#[test]
fn c_tool_3_failing_non_blocking_verify_does_not_block_completion() {
    let plan = ["grep -q hello src/a.txt", "false"];
    let claim = write_and_claim("MT-001", A, "hello\n", 1);

    let fx = fixture(&[(A, "old text\n")], &plan, &["src/a.txt says hello"]);
    let mut s = setup(&fx, cassette(&[("MT-001", 0, 1, &claim)]), ExecutionPolicy::default());
    with_verify_planner(&mut s, &[("blocking-1", "false")]);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;
    let defs = read_json(&dir.join("mt_definitions.json"));
    let verify = &defs["micro_tasks"][0]["verify"];
    assert_eq!(verify[0]["blocking"], true, "{verify}");
    assert_eq!(verify[1]["blocking"], false, "{verify}");
    assert_eq!(
        loop_events(dir),
        ["MT-001", "MT-013", "MT-002", "LLM-INFERENCE", "MT-012", "MT-003", "MT-004", "MT-009"]
    );
    let validated = &events_of(dir, "FR-EVT-MT-012")[0];
    assert_eq!(validated["payload"]["passed"], true);
    let specs: Vec<(u64, bool, i64)> = validated["payload"]["spec_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["spec_index"].as_u64().unwrap(),
                r["passed"].as_bool().unwrap(),
                r["actual_exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(specs, [(0, true, 0), (1, false, 1)]);
    let result = validation_of(dir, validated);
    assert_eq!(result["passed"], true);
    assert_eq!(result["spec_results"][1]["passed"], false);
    assert_eq!(events_of(dir, "FR-EVT-MT-003")[0]["payload"]["decision"], "complete");
    assert_eq!(iterations(dir, "MT-001"), [(1, 0, "SUCCESS".to_string())]);
    assert_eq!(progress(dir)["status"], "completed");
    let completed: Vec<Value> =
        ledger_steps(dir).into_iter().filter(|r| r["status"] == "completed").collect();
    assert_eq!(completed.len(), 1, "{completed:?}");

    // Control: the same failure on a blocking spec fails the validation.
    let fx = fixture(&[(A, "old text\n")], &plan, &["src/a.txt says hello"]);
    let policy =
        ExecutionPolicy { max_iterations_per_mt: 1, max_total_iterations: 1, ..ExecutionPolicy::default() };
    let mut s = setup(&fx, cassette(&[("MT-001", 0, 1, &claim)]), policy);
    with_verify_planner(&mut s, &[]);
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_ne!(out.status, JobStatus::Completed, "{out:?}");
    let validated = &events_of(&out.job_dir, "FR-EVT-MT-012")[0];
    assert_eq!(validated["payload"]["passed"], false);
    assert_eq!(validated["payload"]["spec_results"][1]["passed"], false);
}

/// C-SWAP-4: a model swap that does not finish within `swap_timeout_ms` is reported as
/// timed out (FR-EVT-MODEL-004 `swap_timeout`, not the generic failure 003); with the
/// `continue_with_current` fallback it is rolled back (FR-EVT-MODEL-005) and the MT goes
/// on at its old level, where it can still complete.
#[test]
fn c_swap_4_swap_slower_than_its_timeout_rolls_back_and_continues() {
    let fx = fixture(&[(A, "old text\n")], &["grep -q hello src/a.txt"], &["src/a.txt says hello"]);
    let wrong = write_and_claim("MT-001", A, "nope\n", 1);
    let right = write_and_claim("MT-001", A, "hello\n", 1);
    let mut policy = short_chain_policy();
    let swap_timeout_ms = 100;
    policy.extensions.push(ExecutionPolicyExtension::model_swap(ModelSwapPolicy {
        swap_timeout_ms,
        fallback_strategy: SwapFallbackStrategy::ContinueWithCurrent,
        ..ModelSwapPolicy::default()
    }));
    let mut s = setup(&fx, cassette(&[]), policy);
    // Two false completions at level 0 escalate to level 1 (another model); the backend
    // never finishes that swap, and the host stops it at `swap_timeout_ms` (the backend's
    // own deadline stays at a minute, far above it: the error below names the limit).
    let mut backend = fixture_plugin(
        "slow-swap",
        "model_backend",
        World::ModelBackend,
        &[("response-0-1", &wrong), ("response-0-2", &wrong), ("response-0-3", &right)],
    );
    backend.limits.cpu_deadline = Duration::from_secs(60);
    s.plugins.model_backend = backend;
    let out = run_job(&s, &fx.wp, &NoObserver).unwrap();
    assert_eq!(out.status, JobStatus::Completed, "{out:?}");
    let dir = &out.job_dir;

    let model_events: Vec<String> = events(dir)
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .filter(|t| t.starts_with("FR-EVT-MODEL-"))
        .collect();
    assert_eq!(model_events, ["FR-EVT-MODEL-001", "FR-EVT-MODEL-004", "FR-EVT-MODEL-005"]);
    let requested = &events_of(dir, "FR-EVT-MODEL-001")[0]["payload"];
    assert_eq!(requested["current_model_id"], "qwen2.5-coder:7b");
    assert_eq!(requested["target_model_id"], "qwen2.5-coder:14b");
    assert_eq!(requested["timeout_ms"], swap_timeout_ms);
    let request_file = format!("{}.json", requested["request_id"].as_str().unwrap());
    let request = read_json(&dir.join("model_swap").join(request_file));
    assert_eq!(request["timeout_ms"], swap_timeout_ms);
    assert_eq!(request["state_hash"], requested["state_hash"]);
    let timed_out = &events_of(dir, "FR-EVT-MODEL-004")[0]["payload"];
    assert_eq!(timed_out["error_summary"], "swap_timeout");
    assert_eq!(timed_out["outcome"], "timeout");
    assert_eq!(timed_out["request_id"], requested["request_id"]);
    let rolled_back = &events_of(dir, "FR-EVT-MODEL-005")[0]["payload"];
    assert_eq!(rolled_back["outcome"], "rolled_back");
    assert_eq!(rolled_back["request_id"], requested["request_id"]);
    // The host stopped the backend's prepare-model call at its deadline.
    let stopped = ledger(dir).into_iter().find(|r| {
        r["kind"] == "plugin_call"
            && r["output"]["function"] == "prepare-model"
            && r["output"]["error"].is_string()
    });
    let stopped = stopped.expect("a failed prepare-model call in the ledger");
    assert_eq!(stopped["output"]["outcome"], "deadline", "{stopped}");
    assert!(
        stopped["output"]["error"].as_str().unwrap().contains("exceeded its 100ms deadline"),
        "the swap is stopped at swap_timeout_ms, not at the backend's deadline: {stopped}"
    );

    // The MT went on at level 0 on the model it had, and completed there.
    assert_eq!(
        iterations(dir, "MT-001"),
        [(1, 0, "RETRY".into()), (2, 0, "ESCALATE".into()), (3, 0, "SUCCESS".into())]
    );
    assert_eq!(progress(dir)["current_state"]["total_model_swaps"], 0);
    assert_eq!(fx.read(A).as_deref(), Some("hello\n"));
}
