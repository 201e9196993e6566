//! The adversarial suite: every way a planner (model output, a hostile validator plugin,
//! a tampered workspace) might try to get the Tool Bus to run or write something it must
//! not. Each denial asserts the typed `GateDenied` (gate and code), the observer's record,
//! that no evidence was produced and that the workspace is unchanged (`assert_denied`).
//! The cases that are not denials (timeouts, floods, forks, binary output) assert the
//! bounded, recorded outcome instead.

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use mtx_store::ArtifactMeta;
use mtx_toolbus::gates::codes;
use mtx_toolbus::op::{Determinism, EntityRef, InputRef};
use mtx_toolbus::plugin::{PluginCallContext, PluginPlannedOperation, PluginToolBus, PluginToolError};
use mtx_toolbus::{CapabilityProfile, OpStatus, ToolBusError};
use serde_json::json;
use support::*;

fn with_cap(mut op: mtx_toolbus::PlannedOperation, cap: &str) -> mtx_toolbus::PlannedOperation {
    op.capabilities_requested = vec![cap.to_owned()];
    op
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---- G-CAP: programs, commands, capabilities ----

#[test]
fn program_not_in_the_allowlist_is_denied() {
    let fx = fixture(&["ls"]);
    assert_denied(&fx, exec_op("ls", 5000), "G-CAP", codes::CAP_NOT_GRANTED);
}

#[test]
fn command_that_is_not_a_verify_command_is_denied() {
    let fx = fixture(&["echo ok"]);
    assert_denied(&fx, exec_op("echo pwned", 5000), "G-CAP", codes::CAP_COMMAND_NOT_VERIFY);
}

#[test]
fn command_differing_from_a_verify_command_by_whitespace_is_denied() {
    let fx = fixture(&["echo ok"]);
    assert_denied(&fx, exec_op("echo  ok", 5000), "G-CAP", codes::CAP_COMMAND_NOT_VERIFY);
}

#[test]
fn requesting_another_tool_than_the_command_runs_is_denied() {
    let fx = fixture(&["head -c 1 /dev/zero"]);
    let op = with_cap(exec_op("head -c 1 /dev/zero", 5000), "proc.exec:true");
    assert_denied(&fx, op, "G-CAP", codes::CAP_REQUIRED_MISSING);
}

#[test]
fn bare_proc_exec_axis_is_not_granted_by_scoped_grants() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, with_cap(exec_op("true", 5000), "proc.exec"), "G-CAP", codes::CAP_NOT_GRANTED);
}

#[test]
fn unknown_capability_id_is_rejected_with_hsk_4001() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, with_cap(exec_op("true", 5000), "proc.spawn:true"), "G-CAP", "HSK-4001");
}

#[test]
fn capability_the_engine_does_not_declare_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.capabilities_requested.push("net.http".into());
    assert_denied(&fx, op, "G-CAP", codes::CAP_NOT_DECLARED);
}

#[test]
fn foreign_capability_profile_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.capability_profile_id = "admin".into();
    assert_denied(&fx, op, "G-CAP", codes::CAP_PROFILE_MISMATCH);
}

#[test]
fn unregistered_engine_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.engine_id = "engine.docker".into();
    assert_denied(&fx, op, "G-CAP", codes::CAP_ENGINE_UNKNOWN);
}

#[test]
fn unsatisfiable_engine_version_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.engine_version_req = Some(">=2".into());
    assert_denied(&fx, op, "G-CAP", codes::CAP_ENGINE_VERSION);
}

#[test]
fn dot_slash_program_inside_the_workspace_is_denied() {
    let fx = fixture(&["./true"]);
    script(&fx.ws.path().join("true"), "touch pwned");
    assert_denied(&fx, exec_op("./true", 5000), "G-CAP", codes::CAP_PROGRAM_MISMATCH);
    assert!(fx.read("pwned").is_none());
}

#[test]
fn absolute_path_to_another_binary_with_an_allowlisted_name_is_denied() {
    let elsewhere = tempfile::tempdir().unwrap();
    let fake = elsewhere.path().join("true");
    script(&fake, "exit 0");
    let cmd = format!("{} --x", fake.display());
    let fx = fixture(&[cmd.as_str()]);
    assert_denied(&fx, exec_op(&cmd, 5000), "G-CAP", codes::CAP_PROGRAM_MISMATCH);
}

#[test]
fn path_entry_inside_the_workspace_shadowing_a_tool_is_denied() {
    let fx = fixture_with(&["true"], |c, ws| {
        script(&ws.join("bin/true"), "touch pwned");
        c.path = Some(format!("{}:{TRUSTED_PATH}", ws.join("bin").display()));
    });
    assert_denied(&fx, exec_op("true", 5000), "G-CAP", codes::CAP_PROGRAM_IN_WORKSPACE);
    assert!(fx.read("pwned").is_none());
}

#[test]
fn path_entry_outside_whose_tool_is_a_symlink_into_the_workspace_is_denied() {
    let outside = tempfile::tempdir().unwrap();
    let fx = fixture_with(&["true"], |c, ws| {
        script(&ws.join("evil"), "touch pwned");
        symlink(ws.join("evil"), outside.path().join("true")).unwrap();
        c.path = Some(format!("{}:{TRUSTED_PATH}", outside.path().display()));
    });
    assert_denied(&fx, exec_op("true", 5000), "G-CAP", codes::CAP_PROGRAM_IN_WORKSPACE);
}

#[test]
fn program_missing_from_the_trusted_path_is_denied() {
    let fx = fixture_with(&["true"], |c, _| c.path = Some("/nonexistent-mtx-dir".into()));
    assert_denied(&fx, exec_op("true", 5000), "G-CAP", codes::CAP_PROGRAM_NOT_FOUND);
}

// ---- G-SCHEMA: shell syntax without a granted shell ----

fn assert_metachar_denied(command: &str) {
    let fx = fixture(&[command]);
    assert_denied(&fx, exec_op(command, 5000), "G-SCHEMA", codes::SHELL_METACHARACTER);
    assert!(fx.read("pwned").is_none());
}

#[test]
fn semicolon_is_denied() {
    assert_metachar_denied("true; touch pwned");
}

#[test]
fn and_and_is_denied() {
    assert_metachar_denied("true && touch pwned");
}

#[test]
fn pipe_is_denied() {
    assert_metachar_denied("echo x | tee pwned");
}

#[test]
fn backticks_are_denied() {
    assert_metachar_denied("echo `touch pwned`");
}

#[test]
fn dollar_paren_substitution_is_denied() {
    assert_metachar_denied("echo $(touch pwned)");
}

#[test]
fn substitution_inside_double_quotes_is_denied() {
    assert_metachar_denied("echo \"$(touch pwned)\"");
}

#[test]
fn output_redirection_is_denied() {
    assert_metachar_denied("echo x > pwned");
}

#[test]
fn input_redirection_is_denied() {
    assert_metachar_denied("cat < /etc/passwd");
}

#[test]
fn newline_is_denied() {
    assert_metachar_denied("true\ntouch pwned");
}

#[test]
fn background_ampersand_is_denied() {
    assert_metachar_denied("sleep 5 &");
}

#[test]
fn newline_is_denied_even_with_a_granted_shell() {
    let fx = fixture_with(&["true\ntouch pwned"], |c, _| c.shell_program = Some("sh".into()));
    assert_denied(&fx, exec_op("true\ntouch pwned", 5000), "G-SCHEMA", codes::SHELL_METACHARACTER);
}

#[test]
fn unknown_params_key_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.params["shell"] = true.into();
    assert_denied(&fx, op, "G-SCHEMA", codes::PARAMS_INVALID);
}

#[test]
fn wrong_schema_version_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.schema_version = "poe-2.0".into();
    assert_denied(&fx, op, "G-SCHEMA", codes::SCHEMA_VERSION);
}

// ---- G-CAP: environment exfiltration ----

#[test]
fn overriding_an_ungranted_environment_variable_is_denied() {
    let fx = fixture(&["printenv SECRET"]);
    let mut op = exec_op("printenv SECRET", 5000);
    op.params["env"] = json!({"SECRET": "x"});
    assert_denied(&fx, op, "G-CAP", codes::CAP_ENV_NOT_GRANTED);
}

#[test]
fn overriding_path_is_denied_even_when_granted() {
    let fx = fixture_with(&["true"], |c, _| c.granted_env = vec![("PATH".into(), "/usr/bin".into())]);
    let mut op = exec_op("true", 5000);
    op.params["env"] = json!({"PATH": "."});
    assert_denied(&fx, op, "G-CAP", codes::CAP_ENV_NOT_GRANTED);
}

#[test]
fn ld_preload_injection_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.params["env"] = json!({"LD_PRELOAD": "/tmp/evil.so"});
    assert_denied(&fx, op, "G-CAP", codes::CAP_ENV_NOT_GRANTED);
}

#[test]
fn host_secrets_in_the_environment_do_not_reach_the_child() {
    // The test process's environment (CARGO_*, HOME, ...) stands in for host secrets.
    let fx = fixture(&["printenv"]);
    let r = run_ok(&fx, exec_op("printenv", 5000));
    let out = String::from_utf8(stdout_of(&fx, &r)).unwrap();
    assert_eq!(out, format!("PATH={TRUSTED_PATH}\n"));
}

// ---- G-INTEGRITY: cwd and writes escaping the workspace ----

fn exec_in(command: &str, cwd: &str) -> mtx_toolbus::PlannedOperation {
    let mut op = exec_op(command, 5000);
    op.params["cwd"] = cwd.into();
    op
}

#[test]
fn cwd_with_dotdot_is_denied() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, exec_in("true", ".."), "G-INTEGRITY", codes::INTEGRITY_OUTSIDE_WORKSPACE);
}

#[test]
fn absolute_cwd_outside_is_denied() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, exec_in("true", "/"), "G-INTEGRITY", codes::INTEGRITY_OUTSIDE_WORKSPACE);
}

#[test]
fn cwd_through_a_symlink_escaping_the_workspace_is_denied() {
    let outside = tempfile::tempdir().unwrap();
    let fx = fixture(&["true"]);
    symlink(outside.path(), fx.ws.path().join("link")).unwrap();
    assert_denied(&fx, exec_in("true", "link"), "G-INTEGRITY", codes::SBOX_FS_ESCAPE_DETECTED);
}

#[test]
fn write_with_dotdot_is_denied() {
    let fx = fixture(&[]);
    let op = write_op(json!([{"path": "../escape.txt", "content": "x"}]), &[], &["src/a.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_OUTSIDE_WORKSPACE);
}

#[test]
fn write_to_an_absolute_path_is_denied() {
    let fx = fixture(&[]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x").display().to_string();
    let op = write_op(json!([{"path": target, "content": "x"}]), &[], &["src/a.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_OUTSIDE_WORKSPACE);
    assert!(!outside.path().join("x").exists());
}

#[test]
fn write_outside_the_mt_scope_is_denied() {
    let fx = fixture(&[]);
    fx.write("src/other.rs", "keep");
    let op = write_op(json!([{"path": "src/other.rs", "content": "x"}]), &["src/a.rs"], &[]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_OUT_OF_SCOPE);
}

#[test]
fn one_out_of_scope_file_refuses_the_whole_set() {
    let fx = fixture(&[]);
    let op = write_op(
        json!([{"path": "src/a.rs", "content": "a"}, {"path": "Cargo.toml", "content": "x"}]),
        &[],
        &["src/a.rs"],
    );
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_OUT_OF_SCOPE);
    assert!(fx.read("src/a.rs").is_none(), "all or nothing");
}

#[test]
fn write_through_an_in_scope_symlink_to_an_outside_file_is_denied() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "original").unwrap();
    let fx = fixture(&[]);
    std::fs::create_dir_all(fx.ws.path().join("src")).unwrap();
    symlink(&victim, fx.ws.path().join("src/a.rs")).unwrap();
    let op = write_op(json!([{"path": "src/a.rs", "content": "pwned"}]), &["src/a.rs"], &[]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::SBOX_FS_ESCAPE_DETECTED);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
}

#[test]
fn write_through_a_symlink_inside_the_workspace_is_denied() {
    let fx = fixture(&[]);
    fx.write("src/real.rs", "real");
    symlink(fx.ws.path().join("src/real.rs"), fx.ws.path().join("src/a.rs")).unwrap();
    let op = write_op(json!([{"path": "src/a.rs", "content": "x"}]), &["src/a.rs"], &[]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_SYMLINK_WRITE);
}

#[test]
fn write_through_a_symlinked_directory_is_denied() {
    let outside = tempfile::tempdir().unwrap();
    let fx = fixture(&[]);
    symlink(outside.path(), fx.ws.path().join("lib")).unwrap();
    let op = write_op(json!([{"path": "lib/new.rs", "content": "x"}]), &[], &["lib/new.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::SBOX_FS_ESCAPE_DETECTED);
    assert!(!outside.path().join("new.rs").exists());
}

#[test]
fn write_into_the_state_dir_is_denied_even_when_in_scope() {
    let fx = fixture(&[]);
    let op = write_op(
        json!([{"path": ".mtx/jobs/j/progress.json", "content": "{}"}]),
        &[],
        &[".mtx/jobs/j/progress.json"],
    );
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_PROTECTED_PATH);
}

#[test]
fn write_of_a_git_hook_is_denied_even_when_in_scope() {
    let fx = fixture(&[]);
    let op = write_op(
        json!([{"path": "./.git/hooks/pre-commit", "content": "rm -rf ~"}]),
        &[],
        &[".git/hooks/pre-commit"],
    );
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_PROTECTED_PATH);
}

#[test]
fn write_to_a_hard_link_replaces_the_name_and_never_the_outside_inode() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "original").unwrap();
    let fx = fixture(&[]);
    std::fs::hard_link(&victim, fx.ws.path().join("a.txt")).unwrap();
    let r = run_ok(&fx, write_op(json!([{"path": "a.txt", "content": "edited"}]), &["a.txt"], &[]));
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(fx.read("a.txt").as_deref(), Some("edited"));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "original",
        "temp + rename never writes through a link"
    );
}

#[test]
fn a_fifo_in_scope_is_refused_instead_of_blocking_the_bus() {
    let fx = fixture(&[]);
    let fifo = std::ffi::CString::new(fx.ws.path().join("pipe").display().to_string()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let op = write_op(json!([{"path": "pipe", "content": "x"}]), &["pipe"], &[]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_NOT_A_FILE);
    assert_denied(&fx, read_op(&["pipe"]), "G-INTEGRITY", codes::INTEGRITY_NOT_A_FILE);
}

#[test]
fn reading_a_device_through_an_in_workspace_symlink_is_denied() {
    let fx = fixture(&[]);
    symlink("/dev/zero", fx.ws.path().join("zero")).unwrap();
    assert_denied(&fx, read_op(&["zero"]), "G-INTEGRITY", codes::SBOX_FS_ESCAPE_DETECTED);
}

#[test]
fn create_over_an_existing_file_is_denied() {
    let fx = fixture(&[]);
    fx.write("src/new.rs", "already here");
    let op = write_op(json!([{"path": "src/new.rs", "content": "x"}]), &[], &["src/new.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_CREATE_EXISTS);
}

#[test]
fn modify_of_a_missing_file_is_denied() {
    let fx = fixture(&[]);
    let op = write_op(json!([{"path": "src/gone.rs", "content": "x"}]), &["src/gone.rs"], &[]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_MODIFY_MISSING);
}

#[test]
fn write_whose_pre_image_changed_underneath_is_denied() {
    let fx = fixture(&[]);
    fx.write("src/a.rs", "v1");
    let pre = mtx_types::sha256_hex(b"v1");
    fx.write("src/a.rs", "changed by someone else");
    let op = write_op(
        json!([{"path": "src/a.rs", "content": "v2", "expected_pre_sha256": pre}]),
        &["src/a.rs"],
        &[],
    );
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_PRE_IMAGE_CONFLICT);
    assert_eq!(fx.read("src/a.rs").as_deref(), Some("changed by someone else"));
}

#[test]
fn oversized_inline_params_are_denied() {
    let fx = fixture(&[]);
    let big = "x".repeat(40 * 1024);
    let op = write_op(json!([{"path": "src/a.rs", "content": big}]), &[], &["src/a.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_PARAMS_TOO_LARGE);
}

#[test]
fn oversized_exec_params_are_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    let paths: Vec<String> = (0..3000).map(|i| format!("src/module_{i:05}")).collect();
    op.params["in_scope_paths"] = json!(paths);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_PARAMS_TOO_LARGE);
}

#[test]
fn tampered_input_artifact_is_denied() {
    let fx = fixture(&["true"]);
    let h =
        fx.store().put(b"genuine", ArtifactMeta { kind: "input".into(), ..ArtifactMeta::default() }).unwrap();
    std::fs::write(fx.state.path().join(&h.path), b"tampered").unwrap();
    let mut op = exec_op("true", 5000);
    op.inputs =
        vec![InputRef::Artifact(h), InputRef::Entity(EntityRef { kind: "wp".into(), id: "WP-1".into() })];
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_INPUT_HASH);
}

#[test]
fn input_handle_with_a_forged_hash_is_denied() {
    let fx = fixture(&["true"]);
    let mut h =
        fx.store().put(b"genuine", ArtifactMeta { kind: "input".into(), ..ArtifactMeta::default() }).unwrap();
    h.sha256 = mtx_types::sha256_hex(b"something else");
    let mut op = exec_op("true", 5000);
    op.inputs = vec![InputRef::Artifact(h)];
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_INPUT_HASH);
}

#[test]
fn tampered_content_ref_of_a_write_is_denied() {
    let fx = fixture(&[]);
    let h = fx
        .store()
        .put(b"fn main() {}", ArtifactMeta { kind: "edit".into(), ..ArtifactMeta::default() })
        .unwrap();
    std::fs::write(fx.state.path().join(&h.path), b"evil").unwrap();
    let op = write_op(json!([{"path": "src/a.rs", "content_ref": h}]), &[], &["src/a.rs"]);
    assert_denied(&fx, op, "G-INTEGRITY", codes::INTEGRITY_INPUT_HASH);
}

// ---- G-BUDGET ----

#[test]
fn timeout_below_the_minimum_is_denied() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, exec_op("true", 500), "G-BUDGET", codes::BUDGET_TIMEOUT_RANGE);
}

#[test]
fn timeout_above_the_maximum_is_denied() {
    let fx = fixture(&["true"]);
    assert_denied(&fx, exec_op("true", 300_001), "G-BUDGET", codes::BUDGET_TIMEOUT_RANGE);
}

#[test]
fn output_cap_above_the_engine_limit_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.budget.max_output_bytes = Some(1 << 40);
    assert_denied(&fx, op, "G-BUDGET", codes::BUDGET_ABOVE_LIMIT);
}

// ---- G-PROVENANCE and G-DET ----

#[test]
fn missing_trace_id_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.trace_id = None;
    assert_denied(&fx, op, "G-PROVENANCE", codes::PROVENANCE_MISSING);
}

#[test]
fn d1_without_an_evidence_policy_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.evidence_policy = None;
    assert_denied(&fx, op, "G-PROVENANCE", codes::PROVENANCE_EVIDENCE_POLICY);
}

#[test]
fn d2_for_the_shell_engine_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.determinism = Determinism::D2;
    assert_denied(&fx, op, "G-DET", codes::DET_ABOVE_CEILING);
}

#[test]
fn d1_result_without_evidence_is_denied_with_mex_evidence_missing() {
    // engine.fs / read_files exports its reads as outputs, not evidence: asked for at D1,
    // its result has no evidence and G-DET refuses it after the run.
    let fx = fixture(&[]);
    fx.write("src/a.rs", "x");
    let op = with_d1(read_op(&["src/a.rs"]));
    let op_id = op.op_id.clone();
    let err = fx.bus.submit(op).unwrap_err();
    let ToolBusError::Denied { denial, result } = err else { panic!("expected a denial") };
    assert_eq!((denial.gate.as_str(), denial.code.as_str()), ("G-DET", codes::EVIDENCE_MISSING));
    assert_eq!(result.status, OpStatus::Denied);
    assert_eq!(fx.obs.denial_for(&op_id), Some(denial));
}

// ---- Plugins ----

#[test]
fn a_plugin_cannot_run_what_its_own_grants_do_not_cover() {
    let fx = fixture(&["true"]);
    let (bus, obs) = (std::sync::Arc::new(fx.bus), fx.obs);
    let ctx = PluginCallContext {
        plugin_name: "validator-x".into(),
        grants: CapabilityProfile::new("validator-x", &["proc.exec:false"]),
        job_id: "job-1".into(),
        mt_id: Some("MT-001".into()),
        trace_id: "trace".into(),
    };
    let pbus = PluginToolBus::new(bus, ctx);
    let op = PluginPlannedOperation {
        engine_id: "engine.shell".into(),
        engine_version_req: None,
        operation: "exec".into(),
        inputs: Vec::new(),
        params_json: json!({"command": "true", "cwd": ".", "timeout_ms": 5000}).to_string(),
        capabilities_requested: vec!["proc.exec:true".into()],
        max_duration_ms: 5000,
        max_output_bytes: 0,
        determinism: Determinism::D1,
        evidence_policy: Some("capture_stdout_stderr".into()),
    };
    let err = pbus.submit(op).unwrap_err();
    assert!(
        matches!(&err, PluginToolError::Denied { gate, code, .. } if gate == "G-CAP" && code == codes::CAP_NOT_GRANTED)
    );
    let call = obs.tool_calls().pop().unwrap();
    assert_eq!(call["actor"], json!({"kind": "plugin", "agent_id": "validator-x"}));
    let checks: Vec<_> = obs
        .observed()
        .into_iter()
        .filter_map(|o| match o {
            mtx_toolbus::observer::Observed::Capability { actor_id, capability, allowed, .. } => {
                Some((actor_id, capability, allowed))
            }
            _ => None,
        })
        .collect();
    assert_eq!(checks, [("validator-x".to_owned(), "proc.exec:true".to_owned(), false)]);
}

#[test]
fn a_plugin_cannot_read_artifacts_it_did_not_produce() {
    let fx = fixture(&[]);
    let foreign = fx
        .store()
        .put(b"host secret", ArtifactMeta { kind: "prompt".into(), ..ArtifactMeta::default() })
        .unwrap();
    let bus = std::sync::Arc::new(fx.bus);
    let ctx = PluginCallContext {
        plugin_name: "validator-x".into(),
        grants: CapabilityProfile::new("validator-x", &["proc.exec"]),
        job_id: "job-1".into(),
        mt_id: None,
        trace_id: "trace".into(),
    };
    let pbus = PluginToolBus::new(bus, ctx);
    assert!(matches!(pbus.read_artifact(&foreign, 1024), Err(PluginToolError::NoSuchArtifact(_))));
}

// ---- Bounded outcomes that are not denials ----

#[test]
fn a_command_that_never_exits_is_killed_at_its_timeout() {
    let fx = fixture(&["sleep 1000"]);
    let r = run_ok(&fx, exec_op("sleep 1000", 1000));
    let t = r.terminal.as_ref().unwrap();
    assert!(t.timed_out);
    assert_eq!(t.exit_code, -1);
    assert_eq!(r.status, OpStatus::Failed);
    assert!(r.errors.iter().any(|e| e.code == codes::SBOX_TIMEOUT));
    assert_eq!(r.evidence.len(), 3, "a timeout still leaves evidence");
}

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie is dead; it only waits for its new parent to reap it.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn children_forked_by_a_command_that_exits_are_killed() {
    let cmd = "sh -c 'sleep 60 & echo $!'";
    let fx = fixture(&[cmd]);
    let r = run_ok(&fx, exec_op(cmd, 5000));
    assert_eq!(r.status, OpStatus::Succeeded);
    let pid: i32 = String::from_utf8(stdout_of(&fx, &r)).unwrap().trim().parse().unwrap();
    assert!(process_gone(pid), "background child {pid} must be dead");
}

#[test]
fn children_of_a_command_that_times_out_are_killed() {
    let cmd = "sh -c 'sleep 60 & echo $!; sleep 60'";
    let fx = fixture(&[cmd]);
    let r = run_ok(&fx, exec_op(cmd, 1000));
    assert!(r.terminal.as_ref().unwrap().timed_out);
    let pid: i32 = String::from_utf8(stdout_of(&fx, &r)).unwrap().trim().parse().unwrap();
    assert!(process_gone(pid), "background child {pid} must be dead");
}

#[test]
fn a_gigabyte_output_flood_is_capped_and_drained() {
    let fx = fixture(&["head -c 2147483648 /dev/zero"]);
    let mut op = exec_op("head -c 2147483648 /dev/zero", 60_000);
    op.budget.max_output_bytes = Some(1024 * 1024);
    op.output_spec.max_bytes = Some(1024 * 1024);
    let r = run_ok(&fx, op);
    let t = r.terminal.as_ref().unwrap();
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(t.truncated_bytes, 2_147_483_648 - 1024 * 1024);
    assert_eq!(stdout_of(&fx, &r).len(), 1024 * 1024);
}

#[test]
fn an_endless_output_flood_is_capped_and_killed_at_the_timeout() {
    let fx = fixture(&["yes"]);
    let mut op = exec_op("yes", 1000);
    op.budget.max_output_bytes = Some(4096);
    op.output_spec.max_bytes = Some(4096);
    let r = run_ok(&fx, op);
    let t = r.terminal.as_ref().unwrap();
    assert!(t.timed_out);
    assert!(t.truncated_bytes > 0);
    assert_eq!(stdout_of(&fx, &r), b"y\n".repeat(2048));
}

#[test]
fn binary_and_invalid_utf8_output_is_kept_byte_for_byte() {
    let cmd = r"printf '\000\377\376abc\303'";
    let fx = fixture(&[cmd]);
    let r = run_ok(&fx, exec_op(cmd, 5000));
    assert_eq!(stdout_of(&fx, &r), b"\x00\xff\xfeabc\xc3");
}
