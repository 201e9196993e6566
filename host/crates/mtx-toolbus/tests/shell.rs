//! `engine.shell` / `exec` behaviour a validator relies on: golden run with evidence,
//! non-zero exits, captured bytes, the child's environment, cwd and stdin, rlimits,
//! the granted-shell mode, the sandbox record and the `tool_call` event.

mod support;

use mtx_toolbus::OpStatus;
use mtx_toolbus::gates::GateOutcome;
use mtx_toolbus::shell::{ENGINE_SHELL_NONZERO_EXIT, find_metacharacter, parse_command};
use support::*;

#[test]
fn golden_exit_0_succeeds_with_stdout_stderr_and_terminal_output_as_evidence() {
    let fx = fixture(&["true"]);
    let op = exec_op("true", 5000);
    let op_id = op.op_id.clone();
    let r = run_ok(&fx, op);
    assert_eq!(r.status, OpStatus::Succeeded);
    let t = r.terminal.as_ref().unwrap();
    assert_eq!((t.exit_code, t.timed_out, t.truncated_bytes), (0, false, 0));
    assert_eq!(t.cwd, fx.root().display().to_string());
    assert_eq!(r.evidence.len(), 3);
    // Evidence order is stdout, stderr, terminal output. (Empty stdout and stderr are the same
    // content-addressed blob, so their sidecar kinds cannot tell them apart.)
    assert_eq!(r.evidence[0], t.stdout_ref);
    assert_eq!(r.evidence[1], t.stderr_ref);
    assert_eq!(fx.store().meta(&r.evidence[2]).unwrap().kind, "terminal_output");
    assert_eq!(r.outputs, vec![r.evidence[2].clone()]);
    let stored: serde_json::Value = serde_json::from_slice(&fx.store().get(&r.outputs[0]).unwrap()).unwrap();
    for key in [
        "command",
        "cwd",
        "exit_code",
        "timed_out",
        "cancelled",
        "truncated_bytes",
        "duration_ms",
        "stdout_ref",
        "stderr_ref",
    ] {
        assert!(stored.get(key).is_some(), "terminal_output.json has {key}");
    }
    let meta = fx.store().meta(&r.evidence[0]).unwrap();
    assert_eq!(meta.op_id.as_deref(), Some(op_id.as_str()));
    assert_eq!(meta.determinism.as_deref(), Some("D1"));
    assert_eq!(meta.config_hash.as_deref(), Some(fx.bus.config_hash()));
    assert_eq!(meta.producer, "engine.shell");
    assert_eq!(r.provenance.output_hashes, vec![r.outputs[0].sha256.clone()]);
    assert_eq!(r.provenance.capabilities_granted, vec!["proc.exec:true".to_owned()]);
}

#[test]
fn nonzero_exit_fails_with_engine_shell_nonzero_exit_and_still_has_evidence() {
    let fx = fixture(&["false"]);
    let r = run_ok(&fx, exec_op("false", 5000));
    assert_eq!(r.status, OpStatus::Failed);
    assert_eq!(r.terminal.as_ref().unwrap().exit_code, 1);
    assert_eq!(r.errors[0].code, ENGINE_SHELL_NONZERO_EXIT);
    assert_eq!(r.evidence.len(), 3);
}

#[test]
fn stdout_is_captured_verbatim_with_quoted_arguments() {
    let fx = fixture(&["echo 'a  b' \"c|d\""]);
    let r = run_ok(&fx, exec_op("echo 'a  b' \"c|d\"", 5000));
    assert_eq!(stdout_of(&fx, &r), b"a  b c|d\n");
}

#[test]
fn child_environment_is_scrubbed_to_path_and_granted_variables() {
    let fx =
        fixture_with(&["printenv CARGO_MANIFEST_DIR", "printenv MTX_GRANTED", "printenv PATH"], |c, _| {
            c.granted_env = vec![("MTX_GRANTED".into(), "yes".into())];
        });
    // The test process has CARGO_MANIFEST_DIR; the child must not inherit it.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    let r = run_ok(&fx, exec_op("printenv CARGO_MANIFEST_DIR", 5000));
    assert_eq!(r.terminal.as_ref().unwrap().exit_code, 1);
    assert!(stdout_of(&fx, &r).is_empty());
    let r = run_ok(&fx, exec_op("printenv MTX_GRANTED", 5000));
    assert_eq!(stdout_of(&fx, &r), b"yes\n");
    let r = run_ok(&fx, exec_op("printenv PATH", 5000));
    assert_eq!(stdout_of(&fx, &r), format!("{TRUSTED_PATH}\n").as_bytes());
}

#[test]
fn granted_env_may_be_overridden_by_params_env() {
    let fx = fixture_with(&["printenv MTX_GRANTED"], |c, _| {
        c.granted_env = vec![("MTX_GRANTED".into(), "yes".into())]
    });
    let mut op = exec_op("printenv MTX_GRANTED", 5000);
    op.params["env"] = serde_json::json!({"MTX_GRANTED": "override"});
    let r = run_ok(&fx, op);
    assert_eq!(stdout_of(&fx, &r), b"override\n");
}

#[test]
fn cwd_is_the_canonical_workspace_and_stdin_is_null() {
    let fx = fixture(&["pwd", "cat"]);
    let r = run_ok(&fx, exec_op("pwd", 5000));
    assert_eq!(stdout_of(&fx, &r), format!("{}\n", fx.root().display()).as_bytes());
    // `cat` with a null stdin reads EOF at once instead of waiting for input.
    let r = run_ok(&fx, exec_op("cat", 5000));
    assert_eq!(r.status, OpStatus::Succeeded);
    assert!(stdout_of(&fx, &r).is_empty());
}

#[test]
fn a_subdirectory_cwd_inside_the_workspace_is_allowed() {
    let fx = fixture(&["pwd"]);
    fx.write("sub/keep", "");
    let mut op = exec_op("pwd", 5000);
    op.params["cwd"] = "sub".into();
    let r = run_ok(&fx, op);
    assert_eq!(stdout_of(&fx, &r), format!("{}/sub\n", fx.root().display()).as_bytes());
}

#[test]
fn budget_rlimits_are_applied_to_the_child() {
    let fx = fixture(&["cat /proc/self/limits"]);
    let mut op = exec_op("cat /proc/self/limits", 5000);
    op.budget.max_memory_bytes = Some(256 * 1024 * 1024);
    op.budget.max_cpu_ms = Some(4500);
    op.budget.max_processes = Some(64);
    op.budget.max_file_bytes = Some(1024 * 1024);
    let r = run_ok(&fx, op);
    let limits = String::from_utf8(stdout_of(&fx, &r)).unwrap();
    let soft_and_hard = |name: &str| -> (String, String) {
        let line =
            limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
        let mut f = line[name.len()..].split_whitespace();
        (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
    };
    assert_eq!(soft_and_hard("Max address space"), ("268435456".into(), "268435456".into()));
    assert_eq!(soft_and_hard("Max cpu time"), ("5".into(), "5".into()), "cpu ms round up to seconds");
    assert_eq!(soft_and_hard("Max processes"), ("64".into(), "64".into()));
    assert_eq!(soft_and_hard("Max file size"), ("1048576".into(), "1048576".into()));
    let sb = r.provenance.sandbox.as_ref().unwrap();
    assert_eq!(sb.rlimits["RLIMIT_AS"], 268_435_456);
    assert_eq!(sb.rlimits["RLIMIT_CPU"], 5);
    assert_eq!(sb.rlimits["RLIMIT_NPROC"], 64);
    assert_eq!(sb.rlimits["RLIMIT_FSIZE"], 1_048_576);
}

#[test]
fn a_child_over_its_cpu_budget_is_killed_by_the_kernel() {
    let fx = fixture(&["yes"]);
    let mut op = exec_op("yes", 20_000);
    op.budget.max_cpu_ms = Some(1000);
    op.budget.max_output_bytes = Some(1024);
    op.output_spec.max_bytes = Some(1024);
    let r = run_ok(&fx, op);
    let t = r.terminal.as_ref().unwrap();
    assert!(!t.timed_out, "the cpu limit, not the wall timeout, ended it");
    // SIGXCPU (24) or SIGKILL (9) at the hard limit, reported as 128 + signal.
    assert!(t.exit_code == 128 + 24 || t.exit_code == 128 + 9, "exit code {}", t.exit_code);
    assert_eq!(r.status, OpStatus::Failed);
}

#[test]
fn a_granted_shell_runs_commands_with_shell_syntax() {
    let fx = fixture_with(&["echo a && echo b"], |c, _| c.shell_program = Some("sh".into()));
    let mut op = exec_op("echo a && echo b", 5000);
    op.capabilities_requested = vec!["proc.exec:echo".into()];
    let r = run_ok(&fx, op);
    assert_eq!(stdout_of(&fx, &r), b"a\nb\n");
    assert_eq!(r.provenance.sandbox.as_ref().unwrap().exec_mode, "shell:sh");
}

#[test]
fn sandbox_record_is_in_provenance_and_the_sandbox_gate_outcome_is_recorded() {
    let fx = fixture(&["true"]);
    let op = exec_op("true", 5000);
    let op_id = op.op_id.clone();
    let r = run_ok(&fx, op);
    let sb = r.provenance.sandbox.clone().unwrap();
    assert!(sb.process_group && sb.env_scrubbed && sb.stdin_null);
    assert_eq!(sb.exec_mode, "argv");
    let gates = fx.obs.gates_for(&op_id);
    let names: Vec<&str> = gates.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(
        names,
        [
            "G-SCHEMA",
            "G-CAP",
            "G-INTEGRITY",
            "G-BUDGET",
            "G-PROVENANCE",
            "G-DET",
            "G-SAFETY.SANDBOX",
            "G-PROVENANCE",
            "G-DET"
        ]
    );
    let sandbox_outcome = &gates[6].1;
    if sb.landlock {
        assert_eq!(sandbox_outcome, &GateOutcome::Pass);
    } else {
        assert!(
            matches!(sandbox_outcome, GateOutcome::Degraded { reason } if reason.contains(&sb.landlock_status))
        );
    }
}

/// A fresh directory beneath none of the paths a child may write (workspace, /tmp, the temp
/// dir), wherever this checkout lives.
fn dir_outside_the_sandbox() -> tempfile::TempDir {
    let writable =
        mtx_toolbus::sandbox::writable_paths(std::path::Path::new("/nonexistent"), &Default::default());
    let candidates = [env!("CARGO_TARGET_TMPDIR"), "/var/tmp", "/dev/shm", env!("CARGO_MANIFEST_DIR")];
    for c in candidates {
        let Ok(dir) = std::path::Path::new(c).canonicalize() else { continue };
        if writable.iter().any(|w| w.canonicalize().is_ok_and(|w| dir.starts_with(w))) {
            continue;
        }
        if let Ok(t) = tempfile::tempdir_in(&dir) {
            return t;
        }
    }
    panic!("no writable directory outside {writable:?} among {candidates:?}");
}

#[test]
fn landlock_when_active_confines_writes_to_the_workspace() {
    let outside = dir_outside_the_sandbox();
    let victim = outside.path().join("victim");
    let cmd_out = format!("sh -c 'echo x > {}'", victim.display());
    let cmd_in = "sh -c 'echo x > inside.txt'".to_owned();
    let fx = fixture(&[cmd_out.as_str(), cmd_in.as_str()]);
    let mut op = exec_op(&cmd_in, 5000);
    op.capabilities_requested = vec!["proc.exec:sh".into()];
    let r = run_ok(&fx, op);
    assert_eq!(r.status, OpStatus::Succeeded, "writing inside the workspace works");
    assert_eq!(fx.read("inside.txt").as_deref(), Some("x\n"));
    let landlock = r.provenance.sandbox.as_ref().unwrap().landlock;
    let mut op = exec_op(&cmd_out, 5000);
    op.capabilities_requested = vec!["proc.exec:sh".into()];
    let r = run_ok(&fx, op);
    assert_eq!(r.provenance.sandbox.as_ref().unwrap().landlock, landlock);
    // Where the kernel enforces Landlock the write outside fails; where it does not, the
    // provenance says so and the write is not prevented by this layer.
    assert_eq!(victim.exists(), !landlock);
    assert_eq!(r.status == OpStatus::Failed, landlock);
}

#[test]
fn require_landlock_refuses_to_run_when_it_is_disabled() {
    let fx = fixture_with(&["true"], |c, _| {
        c.sandbox.landlock = false;
        c.sandbox.require_landlock = true;
    });
    let r = run_ok(&fx, exec_op("true", 5000));
    assert_eq!(r.status, OpStatus::Denied);
    assert!(r.errors.iter().any(|e| e.code == "SBOX_POLICY_DENIED"));
    assert!(r.errors.iter().any(|e| e.code == "ENGINE_SHELL_TERMINAL_ERROR"));
}

#[test]
fn tool_call_event_carries_the_9_5_5_fields() {
    let fx = fixture(&["true"]);
    let op = exec_op("true", 5000);
    let op_id = op.op_id.clone();
    let trace = op.trace_id.clone().unwrap();
    run_ok(&fx, op);
    let call = fx.obs.tool_calls().into_iter().find(|c| c["tool_call_id"] == op_id).unwrap();
    assert_eq!(call["trace_id"], trace);
    assert_eq!(call["tool_id"], "engine.shell.exec");
    assert_eq!(call["tool_version"], "1.0.0");
    assert_eq!(call["transport"], "local");
    assert_eq!(call["side_effect"], "EXECUTE");
    assert_eq!(call["idempotency"], "NON_IDEMPOTENT");
    assert_eq!(call["actor"]["kind"], "host");
    assert_eq!(call["ok"], true);
    assert_eq!(call["args_hash"].as_str().unwrap().len(), 64);
    assert!(call["result_ref"].as_str().unwrap().starts_with("artifact:"));
    for k in ["started_at", "ended_at", "duration_ms"] {
        assert!(call["timing"].get(k).is_some());
    }
    assert_eq!(call["capability_ids"], serde_json::json!(["proc.exec:true"]));
}

#[test]
fn metacharacters_are_found_only_outside_quotes() {
    assert_eq!(find_metacharacter("grep 'a|b' file"), None);
    assert_eq!(find_metacharacter("cargo test -- --exact a::b"), None);
    assert_eq!(find_metacharacter("echo \"a;b\""), None);
    assert_eq!(find_metacharacter("echo \"$HOME\"").as_deref(), Some("$"));
    assert_eq!(find_metacharacter("echo a\\;b"), None);
    assert_eq!(find_metacharacter("ls *.rs").as_deref(), Some("*"));
    assert_eq!(find_metacharacter("echo ~/x").as_deref(), Some("~"));
    assert_eq!(find_metacharacter("echo a~b"), None);
    assert_eq!(find_metacharacter("echo 'a\nb'").as_deref(), Some("\\n"));
    let plan = parse_command("cargo test 'x y'", None).unwrap();
    assert_eq!(plan.words, ["cargo", "test", "x y"]);
    assert_eq!(plan.tool, "cargo");
}

#[test]
fn a_validator_plugin_runs_a_verify_command_and_reads_back_only_its_own_evidence() {
    use mtx_toolbus::plugin::{PluginCallContext, PluginPlannedOperation, PluginToolBus};
    let fx = fixture(&["echo from-plugin"]);
    let bus = std::sync::Arc::new(fx.bus);
    let ctx = PluginCallContext {
        plugin_name: "validator-shell".into(),
        grants: mtx_toolbus::CapabilityProfile::new("validator-shell", &["proc.exec"]),
        job_id: "job-1".into(),
        mt_id: Some("MT-001".into()),
        trace_id: "trace-1".into(),
    };
    let pbus = PluginToolBus::new(bus, ctx);
    let r = pbus
        .submit(PluginPlannedOperation {
            engine_id: "engine.shell".into(),
            engine_version_req: None,
            operation: "exec".into(),
            inputs: Vec::new(),
            params_json: serde_json::json!({"command": "echo from-plugin", "cwd": ".", "timeout_ms": 5000})
                .to_string(),
            capabilities_requested: vec!["proc.exec:echo".into()],
            max_duration_ms: 5000,
            max_output_bytes: 0,
            determinism: mtx_toolbus::Determinism::D1,
            evidence_policy: Some("capture_stdout_stderr".into()),
        })
        .unwrap();
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(r.terminal.as_ref().unwrap().exit_code, 0);
    assert!(r.result_ref.is_some());
    let stdout = &r.terminal.as_ref().unwrap().stdout_ref;
    assert_eq!(pbus.read_artifact(stdout, 1024).unwrap(), b"from-plugin\n");
    assert_eq!(pbus.read_artifact(stdout, 4).unwrap(), b"from", "bounded by max-bytes");
    let call = fx.obs.tool_calls().pop().unwrap();
    assert_eq!(call["actor"]["agent_id"], "validator-shell");
    assert_eq!(call["trace_id"], "trace-1");
}

#[test]
fn one_bus_serves_concurrent_submissions_from_several_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let fx = fixture(&["echo one", "echo two", "echo three", "echo four"]);
    assert_send_sync(&fx.bus);
    let outputs: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = ["one", "two", "three", "four"]
            .into_iter()
            .map(|w| {
                let fx = &fx;
                s.spawn(move || stdout_of(fx, &run_ok(fx, exec_op(&format!("echo {w}"), 5000))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outputs, [b"one\n".to_vec(), b"two\n".to_vec(), b"three\n".to_vec(), b"four\n".to_vec()]);
    assert_eq!(fx.obs.tool_calls().len(), 4);
}
