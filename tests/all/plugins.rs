//! The plugin host: worlds, limits, grants, and hostile components.
//!
//! Every hostile fixture gets its own test: the host must contain it with a typed error
//! (or, for sandbox probes, the exact denial the fixture reports), record what happened,
//! and then serve a well-behaved plugin from the same `PluginHost`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtx::plugin::bindings::{tool_bus, types};
use mtx::plugin::{
    CallContext, Grant, HostOptions, LoadError, PluginError, PluginHost, PluginSpec, ReportedError,
    ToolBusPort, World, builtins,
};
use mtx_tests::plugins::{
    OneShotServer, SilentTarget, assert_still_serves, builtin, builtin_world, decision_input,
    drop_back_input, fixture, fixture_path, host, host_with, model_request, names_in, planner_input,
    selection_input, validation_input, write,
};

fn grant(text: &str) -> Grant {
    text.parse().unwrap_or_else(|e| panic!("grant {text}: {e}"))
}

fn fs_read(dir: &Path) -> Grant {
    grant(&format!("fs.read:{}", dir.display()))
}

/// The report a sandbox-probe fixture returns in `EscalationDecision.reason`.
fn report(host: &PluginHost, spec: &PluginSpec) -> String {
    let plugin = host.load(spec).unwrap();
    let decision = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    assert_eq!(decision.decision, types::LoopDecision::Retry);
    decision.reason
}

// ------------------------------------------------------------------ happy path

#[test]
fn builtin_policy_decides_and_the_call_is_recorded() {
    let (host, recorder) = host();
    let plugin = host.load(&builtin("escalation-default", World::EscalationPolicy)).unwrap();
    let decision = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    assert_eq!(decision.decision, types::LoopDecision::Complete);
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function, "decide");
    assert_eq!(calls[0].digest, plugin.digest);
    assert_eq!(calls[0].outcome, "ok");
}

#[test]
fn every_builtin_loads_in_its_world_and_answers_metadata() {
    let (host, recorder) = host();
    let names = builtins::names();
    assert!(names.contains(&"escalation-default"), "{names:?}");
    for name in &names {
        let plugin =
            host.load(&builtin(name, builtin_world(name))).unwrap_or_else(|e| panic!("built-in {name}: {e}"));
        let meta = host.metadata(&plugin).unwrap_or_else(|e| panic!("built-in {name}: {e}"));
        assert_eq!(meta.name, *name);
        assert!(!meta.version.is_empty() && !meta.description.is_empty(), "{name}: {meta:?}");
    }
    let calls = recorder.calls();
    assert_eq!(calls.len(), names.len());
    assert!(calls.iter().all(|c| c.function == "metadata" && c.outcome == "ok"), "{calls:?}");
}

#[test]
fn every_good_fixture_loads_in_its_world_and_answers_metadata() {
    let (host, _) = host();
    for (name, world) in [
        ("good-planner", World::MtPlanner),
        ("good-backend", World::ModelBackend),
        ("good-selector", World::LoraSelector),
        ("good-policy", World::EscalationPolicy),
        ("good-validator", World::Validator),
    ] {
        let plugin = host.load(&fixture(name, world)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let meta = host.metadata(&plugin).unwrap();
        assert_eq!((meta.name.as_str(), meta.version.as_str()), (name, "0.1.0"));
    }
}

#[test]
fn good_fixtures_answer_their_world_functions() {
    let (host, recorder) = host();
    let ctx = CallContext::default();

    let planner = host.load(&fixture("good-planner", World::MtPlanner)).unwrap();
    let mts = host.plan(&planner, &planner_input(), &ctx).unwrap();
    assert_eq!(mts.len(), 1);
    assert_eq!(mts[0].mt_id, "MT-001");
    assert_eq!(mts[0].files.modify, vec!["src/lib.rs".to_owned()]);
    assert_eq!(mts[0].verify[0].command, "cargo test");

    let backend = host.load(&fixture("good-backend", World::ModelBackend)).unwrap();
    let response = host.complete(&backend, &model_request("small"), &ctx).unwrap();
    assert_eq!(response.text, "good-backend: model=small lora=none");
    assert_eq!(host.describe_model(&backend, "small", &ctx).unwrap().context_window, 8192);
    host.prepare_model(&backend, None, "small", "swap", &ctx).unwrap();

    let selector = host.load(&fixture("good-selector", World::LoraSelector)).unwrap();
    let selection = host.select_lora(&selector, &selection_input(), &ctx).unwrap();
    assert_eq!(selection.lora_id.as_deref(), Some("rust-lora"));

    let policy = host.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    let mut failed = decision_input();
    failed.validation_passed = Some(false);
    let decision = host.decide(&policy, &failed, &ctx).unwrap();
    assert_eq!(decision.decision, types::LoopDecision::Retry);
    let back = host.drop_back(&policy, &drop_back_input(types::DropBackStrategy::Always, 2), &ctx).unwrap();
    assert_eq!((back.action, back.target_level), (types::DropBackAction::DropBack, Some(0)));

    let validator = host.load(&fixture("good-validator", World::Validator)).unwrap();
    assert!(host.validate(&validator, &validation_input(true), &ctx).unwrap().passed);
    assert!(!host.validate(&validator, &validation_input(false), &ctx).unwrap().passed);

    let functions: Vec<String> = recorder.calls().into_iter().map(|c| c.function).collect();
    assert_eq!(
        functions,
        [
            "plan",
            "complete",
            "describe-model",
            "prepare-model",
            "select",
            "decide",
            "drop-back",
            "validate",
            "validate"
        ]
    );
    assert!(recorder.calls().iter().all(|c| c.outcome == "ok" && c.output.is_some()));
}

#[test]
fn calling_a_plugin_through_another_worlds_function_is_a_typed_error() {
    let (host, recorder) = host();
    let validator = host.load(&fixture("good-validator", World::Validator)).unwrap();
    let err = host.decide(&validator, &decision_input(), &CallContext::default()).unwrap_err();
    assert!(matches!(err, PluginError::Host { .. }), "{err}");
    assert!(recorder.calls().is_empty(), "nothing ran");
    assert_still_serves(&host);
}

// ------------------------------------------------------- resources and traps

#[test]
fn spinning_policy_hits_its_deadline_and_the_host_still_serves() {
    let (host, recorder) = host();
    let mut spec = fixture("spin", World::EscalationPolicy);
    spec.limits.cpu_deadline = Duration::from_millis(100);
    let plugin = host.load(&spec).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    assert!(
        matches!(err, PluginError::Deadline { limit, .. } if limit == Duration::from_millis(100)),
        "{err}"
    );
    let err = host
        .drop_back(&plugin, &drop_back_input(types::DropBackStrategy::Smart, 1), &CallContext::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::Deadline { .. }), "{err}");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.outcome == "deadline" && c.output.is_none()), "{calls:?}");
    assert_still_serves(&host);
}

#[test]
fn alloc_bomb_hits_the_memory_limit_and_the_host_still_serves() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("alloc-bomb", World::EscalationPolicy)).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    match &err {
        PluginError::MemoryLimit { limit, desired, .. } => {
            assert_eq!(*limit, 64 << 20);
            assert!(*desired > *limit);
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    assert_eq!(recorder.calls()[0].outcome, "memory_limit");
    assert_still_serves(&host);
}

#[test]
fn alloc_bomb_is_stopped_at_a_lower_configured_limit() {
    let (host, recorder) = host();
    let mut spec = fixture("alloc-bomb", World::EscalationPolicy);
    spec.limits.memory_bytes = 16 << 20;
    let plugin = host.load(&spec).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { limit, .. } if limit == 16 << 20), "{err:?}");
    assert_eq!(recorder.calls()[0].outcome, "memory_limit");
    assert_still_serves(&host);
}

#[test]
fn deep_recursion_traps_and_the_host_still_serves() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("stack-overflow", World::EscalationPolicy)).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    match &err {
        // The README allows either: the wasm stack runs out, or the shadow stack in
        // linear memory does first.
        PluginError::Trap { trap, .. } => assert!(
            trap.contains("call stack exhausted") || trap.contains("out of bounds memory access"),
            "{trap}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(recorder.calls()[0].outcome, "trap");
    assert_still_serves(&host);
}

#[test]
fn panicking_plugin_traps_every_time_and_the_host_still_serves() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("panic", World::EscalationPolicy)).unwrap();
    // A second call gets a fresh instance and traps the same way: nothing of the first,
    // poisoned instance is reused.
    for _ in 0..2 {
        let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
        assert!(matches!(&err, PluginError::Trap { trap, .. } if trap.contains("unreachable")), "{err:?}");
    }
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.outcome == "trap" && c.error.is_some()), "{calls:?}");
    assert_still_serves(&host);
}

#[test]
fn giant_return_hits_the_memory_limit_at_the_default_cap() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("giant-return", World::EscalationPolicy)).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err:?}");
    let call = &recorder.calls()[0];
    assert_eq!(call.outcome, "memory_limit");
    assert!(call.output.is_none());
    assert_still_serves(&host);
}

#[test]
fn giant_return_with_a_raised_cap_is_refused_as_bad_output_and_never_recorded() {
    let (host, recorder) = host();
    let mut spec = fixture("giant-return", World::EscalationPolicy);
    spec.limits.memory_bytes = 512 << 20;
    spec.limits.cpu_deadline = Duration::from_secs(30);
    let plugin = host.load(&spec).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    // The 300 MiB string was built; the host refuses to lift it into a decision. That is
    // output the plugin should not have returned (FR-EVT-MTX-003 kind `bad_output`).
    assert!(matches!(err, PluginError::BadOutput { .. }), "{err:?}");
    let call = &recorder.calls()[0];
    assert_eq!(call.outcome, "bad_output");
    assert!(call.output.is_none());
    assert!(call.error.as_ref().is_some_and(|e| e.len() < 64 << 10), "the error text stays small");
    assert!(recorder.logs().iter().all(|l| l.message.len() <= 4096));
    assert_still_serves(&host);
}

#[test]
fn log_flood_is_capped_at_256_lines_and_the_rest_counted() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("log-flood", World::EscalationPolicy)).unwrap();
    match host.decide(&plugin, &decision_input(), &CallContext::default()) {
        Ok(decision) => assert_eq!(decision.reason, "logged 1000000 messages of 1024 bytes"),
        Err(PluginError::Deadline { .. }) => {}
        Err(other) => panic!("expected an answer or a deadline, got {other:?}"),
    }
    let logs = recorder.logs();
    assert_eq!(logs.len(), 257, "256 kept lines and one drop marker");
    for (i, log) in logs[..256].iter().enumerate() {
        assert!(log.message.starts_with(&format!("log-flood {i:07} ")), "{}", &log.message[..20]);
        assert_eq!((log.level.as_str(), log.message.len()), ("info", 1024));
    }
    let marker = &logs[256];
    assert_eq!(marker.level, "warn");
    let dropped: u64 = marker
        .message
        .strip_suffix(" further log lines were dropped")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("drop marker: {}", marker.message));
    assert!(dropped > 0);
    assert_still_serves(&host);
}

#[test]
fn log_flood_call_record_counts_the_dropped_lines() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("log-flood", World::EscalationPolicy)).unwrap();
    let outcome = host.decide(&plugin, &decision_input(), &CallContext::default());
    assert!(outcome.is_ok() || matches!(outcome, Err(PluginError::Deadline { .. })), "{outcome:?}");
    let marker = recorder.logs().pop().expect("a drop marker");
    let call = &recorder.calls()[0];
    // `PluginCall.logs_dropped` is the durable count of what the plugin wrote beyond the cap.
    assert!(
        call.logs_dropped > 0,
        "logs_dropped is {} but the marker says: {}",
        call.logs_dropped,
        marker.message
    );
    assert_eq!(marker.message, format!("{} further log lines were dropped", call.logs_dropped));
}

#[test]
fn stdout_flood_is_discarded_and_the_host_still_serves() {
    let (host, recorder) = host();
    let mut spec = fixture("stdout-flood", World::EscalationPolicy);
    spec.limits.cpu_deadline = Duration::from_secs(20);
    let plugin = host.load(&spec).unwrap();
    match host.decide(&plugin, &decision_input(), &CallContext::default()) {
        // Output goes to a sink: every write succeeds and nothing is kept.
        Ok(decision) => {
            assert_eq!(decision.reason, "stdout: wrote 209715200 bytes; stderr: wrote 209715200 bytes")
        }
        Err(PluginError::Deadline { .. }) => assert_eq!(recorder.calls()[0].outcome, "deadline"),
        Err(other) => panic!("expected an answer or a deadline, got {other:?}"),
    }
    assert!(recorder.logs().is_empty(), "stdout and stderr are never recorded as logs");
    assert_eq!(recorder.calls().len(), 1);
    assert_still_serves(&host);
}

// -------------------------------------------------------------- filesystem

/// A grant dir with `inside.txt` (7 bytes), `victim.txt` (6 bytes), `sub/`, and `link-out`
/// pointing at `outside.txt` next to the grant; returns (root, grant dir).
fn grant_dir(root: &Path) -> std::path::PathBuf {
    let granted = root.join("g0");
    write(&granted, "inside.txt", "inside\n");
    write(&granted, "victim.txt", "victim");
    write(&granted, "sub/nested.txt", "nested");
    write(root, "outside.txt", "secret\n");
    std::os::unix::fs::symlink(root.join("outside.txt"), granted.join("link-out")).unwrap();
    granted
}

#[test]
fn read_outside_sees_only_its_grants() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = grant_dir(tmp.path());
    let second = tmp.path().join("g1");
    write(&second, "a.txt", "abc");
    let (host, recorder) = host();
    let mut spec = fixture("read-outside", World::EscalationPolicy);
    spec.grants = vec![fs_read(&granted), fs_read(&second)];
    let lines = report(&host, &spec);
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "read /etc/passwd: denied (NotFound)",
            "read /grant/0/../outside.txt: denied (PermissionDenied)",
            "list /: denied (NotFound)",
            "preopen /grant/0",
            "list /grant/0: ALLOWED 4 entries: inside.txt, link-out, sub, victim.txt",
            "read /grant/0/inside.txt: ALLOWED 7 bytes",
            "read /grant/0/link-out: denied (PermissionDenied)",
            "read /grant/0/sub: denied (IsADirectory)",
            "read /grant/0/victim.txt: ALLOWED 6 bytes",
            "preopen /grant/1",
            "list /grant/1: ALLOWED 1 entries: a.txt",
            "read /grant/1/a.txt: ALLOWED 3 bytes",
        ]
    );
    let grants = recorder.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[0].capability, format!("fs.read:{}", granted.display()));
    assert_eq!(grants[0].detail, "preopened at /grant/0 (read-only)");
    assert_eq!(grants[1].detail, "preopened at /grant/1 (read-only)");
    assert!(grants.iter().all(|g| g.allowed && g.plugin == "read_outside"), "{grants:?}");
    assert_eq!(recorder.calls()[0].outcome, "ok");
    assert_still_serves(&host);
}

#[test]
fn read_outside_without_grants_sees_no_filesystem() {
    let (host, recorder) = host();
    let lines = report(&host, &fixture("read-outside", World::EscalationPolicy));
    assert_eq!(
        lines,
        "read /etc/passwd: denied (NotFound)\n\
         read /grant/0/../outside.txt: denied (NotFound)\n\
         list /: denied (NotFound)"
    );
    assert!(recorder.grants().is_empty());
}

#[test]
fn write_readonly_changes_nothing_under_a_read_only_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = tmp.path().join("g0");
    write(&granted, "victim.txt", "victim");
    let (host, recorder) = host();
    let mut spec = fixture("write-readonly", World::EscalationPolicy);
    spec.grants = vec![fs_read(&granted)];
    assert_eq!(
        report(&host, &spec),
        "create /grant/0/created.txt: denied (PermissionDenied)\n\
         append /grant/0/victim.txt: denied (PermissionDenied)\n\
         truncate /grant/0/victim.txt: denied (PermissionDenied)\n\
         mkdir /grant/0/newdir: denied (PermissionDenied)\n\
         rename /grant/0/victim.txt: denied (PermissionDenied)\n\
         remove /grant/0/victim.txt: denied (PermissionDenied)\n\
         read /grant/0/victim.txt: ALLOWED 6 bytes"
    );
    assert_eq!(names_in(&granted), ["victim.txt"]);
    assert_eq!(std::fs::read_to_string(granted.join("victim.txt")).unwrap(), "victim");
    assert_eq!(recorder.grants()[0].detail, "preopened at /grant/0 (read-only)");
    assert_still_serves(&host);
}

#[test]
fn write_readonly_control_a_write_grant_is_what_allows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = tmp.path().join("g0");
    write(&granted, "victim.txt", "victim");
    let (host, recorder) = host();
    let mut spec = fixture("write-readonly", World::EscalationPolicy);
    spec.grants = vec![grant(&format!("fs.write:{}", granted.display()))];
    let lines = report(&host, &spec);
    for op in ["create /grant/0/created.txt", "append", "truncate", "mkdir /grant/0/newdir", "rename"] {
        assert!(lines.lines().any(|l| l.starts_with(op) && l.ends_with(": ALLOWED")), "{op}: {lines}");
    }
    assert!(names_in(&granted).contains(&"newdir".to_owned()), "{:?}", names_in(&granted));
    assert_eq!(recorder.grants()[0].detail, "preopened at /grant/0 (read-write)");
}

#[test]
fn dotdot_escape_is_denied_and_inner_dotdot_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = tmp.path().join("g0");
    write(&granted, "inside.txt", "inside\n");
    write(&granted, "sub/nested.txt", "nested");
    write(tmp.path(), "x", "outside");
    let (host, recorder) = host();
    let mut spec = fixture("dotdot-escape", World::EscalationPolicy);
    spec.grants = vec![fs_read(&granted)];
    assert_eq!(
        report(&host, &spec),
        "read /grant/0/../../etc/passwd: denied (PermissionDenied)\n\
         read /grant/0/sub/../../x: denied (PermissionDenied)\n\
         list /grant/0/..: denied (PermissionDenied)\n\
         read /grant/0/sub/../inside.txt: ALLOWED 7 bytes"
    );
    assert!(recorder.grants().iter().all(|g| g.allowed));
    assert_eq!(recorder.calls()[0].outcome, "ok");
    assert_still_serves(&host);
}

#[test]
fn symlink_escape_is_denied_and_no_link_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = grant_dir(tmp.path());
    let (host, recorder) = host();
    let mut spec = fixture("symlink-escape", World::EscalationPolicy);
    spec.grants = vec![fs_read(&granted)];
    assert_eq!(
        report(&host, &spec),
        "read /grant/0/link-out: denied (PermissionDenied)\n\
         symlink /grant/0/evil -> /etc: denied (not-permitted)\n\
         symlink /grant/0/evil-rel -> ../..: denied (not-permitted)\n\
         read /grant/0/evil/passwd: denied (NotFound)"
    );
    assert_eq!(names_in(&granted), ["inside.txt", "link-out", "sub", "victim.txt"]);
    assert_eq!(recorder.calls()[0].outcome, "ok");
    assert_still_serves(&host);
}

// ------------------------------------------------------ environment and time

#[test]
fn env_reader_sees_no_environment_and_no_host_argv() {
    let (host, recorder) = host();
    assert_eq!(report(&host, &fixture("env-reader", World::EscalationPolicy)), "env 0:\nargs 0:\ncwd: /");
    assert!(recorder.grants().is_empty());
    assert_still_serves(&host);
}

#[test]
fn env_reader_sees_exactly_the_granted_variables() {
    // SAFETY: the variable name is used by this test alone, and it is set before the
    // host reads it; no other thread reads or writes it.
    unsafe { std::env::set_var("MTX_TEST_VISIBLE_ENV_READER", "shown") };
    let (host, recorder) = host();
    let mut spec = fixture("env-reader", World::EscalationPolicy);
    spec.grants = vec![grant("env:MTX_TEST_VISIBLE_ENV_READER"), grant("env:MTX_TEST_UNSET_ENV_READER")];
    assert_eq!(report(&host, &spec), "env 1: MTX_TEST_VISIBLE_ENV_READER=shown\nargs 0:\ncwd: /");
    let grants = recorder.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[0].capability, "env:MTX_TEST_VISIBLE_ENV_READER");
    assert_eq!(grants[0].detail, "provided MTX_TEST_VISIBLE_ENV_READER");
    assert!(grants[1].detail.contains("not set"), "{grants:?}");
    assert_still_serves(&host);
}

/// Splits the `clock-random` line into its `key=value` pairs.
fn clock_fields(line: &str) -> BTreeMap<String, String> {
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("field {kv} in {line}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn clock_random_sees_the_fixed_clock_and_seeded_randomness() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("clock-random", World::EscalationPolicy)).unwrap();
    let ctx =
        |seed| CallContext { clock: "2026-11-23T12:34:56Z".into(), seed: Some(seed), ..Default::default() };
    let run = |seed| host.decide(&plugin, &decision_input(), &ctx(seed)).unwrap().reason;
    let first = clock_fields(&run(42));
    assert_eq!(first["wall_secs"], "1795437296");
    assert_eq!(first["wall"], "1795437296.000000000");
    assert_eq!(first["mono_ns"], "0");
    assert_eq!(first["instant_delta_ns"], "0");
    assert_eq!(first["random"].len(), 32);
    assert_ne!(first["random"], first["insecure"]);

    let again = clock_fields(&run(42));
    assert_eq!(again, first, "the same seed gives the same values");
    let other = clock_fields(&run(43));
    assert_ne!(other["random"], first["random"]);
    assert_ne!(other["insecure"], first["insecure"]);
    assert_ne!(other["seed"], first["seed"]);
    assert_eq!(other["wall"], first["wall"]);

    let calls = recorder.calls();
    assert_eq!(calls[0].clock, "2026-11-23T12:34:56Z");
    assert_eq!(calls[0].seed, format!("{:016x}", 42));
    assert_eq!(calls[2].seed, format!("{:016x}", 43));
}

#[test]
fn clock_random_without_a_seed_derives_it_from_the_input() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("clock-random", World::EscalationPolicy)).unwrap();
    let run =
        |input: &types::DecisionInput| host.decide(&plugin, input, &CallContext::default()).unwrap().reason;
    let a = run(&decision_input());
    assert_eq!(run(&decision_input()), a, "the same input replays to the same values");
    let mut other = decision_input();
    other.iteration = 2;
    assert_ne!(clock_fields(&run(&other))["random"], clock_fields(&a)["random"]);
    let calls = recorder.calls();
    assert_eq!(calls[0].seed, calls[1].seed);
    assert_eq!(calls[0].seed, calls[0].input_sha256[..16]);
}

// --------------------------------------------------------------------- HTTP

fn http_backend(url: &str, grants: &[&str]) -> PluginSpec {
    let mut spec = fixture("http-denied", World::ModelBackend);
    spec.config.insert("url".into(), url.into());
    spec.grants = grants.iter().map(|g| grant(g)).collect();
    spec
}

#[test]
fn http_to_a_granted_loopback_host_gets_through() {
    let server = OneShotServer::start("secret\n");
    let port = server.addr.port();
    let url = format!("http://127.0.0.1:{port}/models");
    let (host, recorder) = host();
    let plugin = host.load(&http_backend(&url, &[&format!("net.http:127.0.0.1:{port}")])).unwrap();
    let response = host.complete(&plugin, &model_request("small"), &CallContext::default()).unwrap();
    assert_eq!(response.text, "200 secret\n");
    assert!(server.request().starts_with("GET /models HTTP/1.1\r\n"));
    let grants = recorder.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].capability, format!("net.http:127.0.0.1:{port}"));
    assert_eq!(grants[0].detail, format!("GET {url}"));
    assert!(grants[0].allowed);
    assert_eq!(recorder.calls()[0].outcome, "ok");
}

/// Runs `http-denied` against a silent loopback target with the grants `grants(port)`
/// and checks the call is denied before any connection, with the denial recorded.
fn assert_http_denied(grants: impl Fn(u16) -> Vec<String>, reason: impl Fn(u16) -> String) {
    let target = SilentTarget::bind();
    let port = target.port();
    let url = format!("http://127.0.0.1:{port}/");
    let (host, recorder) = host();
    let grants = grants(port);
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    let plugin = host.load(&http_backend(&url, &grants)).unwrap();
    let err = host.complete(&plugin, &model_request("small"), &CallContext::default()).unwrap_err();
    match &err {
        PluginError::Reported { error: ReportedError::ModelDenied(message), .. } => {
            assert_eq!(*message, format!("GET {url}: denied"))
        }
        other => panic!("expected the plugin to report a denial, got {other:?}"),
    }
    assert!(!target.was_contacted(), "a denied request must not connect");
    let records = recorder.grants();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(!records[0].allowed);
    assert_eq!(records[0].capability, "net.http");
    assert_eq!(records[0].plugin, "http_denied");
    assert_eq!(records[0].detail, format!("GET {url}: {}", reason(port)));
    let call = &recorder.calls()[0];
    assert_ne!(call.outcome, "ok");
    assert!(call.error.as_ref().is_some_and(|e| e.contains("denied")), "{call:?}");
    assert_still_serves(&host);
}

#[test]
fn http_without_any_grant_is_denied_before_connecting() {
    assert_http_denied(|_| vec![], |_| "the plugin has no net.http grant".into());
}

#[test]
fn http_to_a_host_that_is_not_granted_is_denied_before_connecting() {
    assert_http_denied(
        |_| vec!["net.http:localhost".into(), "net.http:example.invalid".into()],
        |port| format!("no net.http grant covers 127.0.0.1:{port}"),
    );
}

#[test]
fn http_to_a_granted_host_on_another_port_is_denied_before_connecting() {
    assert_http_denied(
        |port| vec![format!("net.http:127.0.0.1:{}", port.wrapping_add(1).max(1))],
        |port| format!("no net.http grant covers 127.0.0.1:{port}"),
    );
}

// ----------------------------------------------------------- output and tools

#[test]
fn bad_output_is_returned_as_is_and_recorded() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("bad-output", World::LoraSelector)).unwrap();
    let selection = host.select_lora(&plugin, &selection_input(), &CallContext::default()).unwrap();
    assert_eq!(selection.lora_id.as_deref(), Some("lora-that-does-not-exist"));
    let ids: Vec<&str> = selection.scores.iter().map(|s| s.lora_id.as_str()).collect();
    assert_eq!(ids, ["lora-that-does-not-exist", "other-lora", "rust-lora"]);
    assert!(selection.scores.iter().all(|s| s.score.is_nan()));
    let call = &recorder.calls()[0];
    assert_eq!((call.function.as_str(), call.outcome.as_str()), ("select", "ok"));
    let output = call.output.as_deref().unwrap();
    assert!(output.contains("lora-that-does-not-exist"), "{output}");
    // JSON has no NaN: the record holds null and still parses.
    let parsed: serde_json::Value = serde_json::from_str(output).unwrap();
    assert!(parsed["scores"][0]["score"].is_null(), "{parsed}");
    let good = host.load(&fixture("good-selector", World::LoraSelector)).unwrap();
    let selection = host.select_lora(&good, &selection_input(), &CallContext::default()).unwrap();
    assert_eq!(selection.lora_id.as_deref(), Some("rust-lora"));
}

fn tool_bus_findings(report: &types::ValidatorReport) -> Vec<(String, String)> {
    report.findings.iter().map(|f| (f.rule.clone(), f.message.clone())).collect()
}

#[test]
fn tool_bus_abuser_is_denied_by_the_default_no_tool_bus() {
    let (host, recorder) = host();
    let plugin = host.load(&fixture("tool-bus-abuser", World::Validator)).unwrap();
    let report = host.validate(&plugin, &validation_input(true), &CallContext::default()).unwrap();
    assert!(!report.passed);
    let denied = "denied gate=G-CAP code=NO_TOOL_BUS: this call was given no Tool Bus".to_owned();
    assert_eq!(
        tool_bus_findings(&report),
        [
            ("attempt-a".to_owned(), denied.clone()),
            ("attempt-b".to_owned(), denied.clone()),
            ("attempt-c".to_owned(), denied)
        ]
    );
    assert!(report.findings.iter().all(|f| f.blocking));
    let call = &recorder.calls()[0];
    assert_eq!(call.outcome, "ok");
    assert!(call.output.as_deref().unwrap().contains("NO_TOOL_BUS"));
    assert_still_serves(&host);
}

/// One operation as it reached the Tool Bus port.
#[derive(Debug, Clone)]
struct Submitted {
    plugin: String,
    engine_id: String,
    operation: String,
    capabilities: Vec<String>,
}

/// A Tool Bus port that records what reaches it and refuses everything.
#[derive(Default)]
struct RefusingBus {
    seen: Mutex<Vec<Submitted>>,
}

impl ToolBusPort for RefusingBus {
    fn submit(
        &self,
        plugin: &str,
        op: tool_bus::PlannedOperation,
    ) -> Result<tool_bus::EngineResult, tool_bus::ToolError> {
        self.seen.lock().unwrap().push(Submitted {
            plugin: plugin.to_owned(),
            engine_id: op.engine_id,
            operation: op.operation,
            capabilities: op.capabilities_requested,
        });
        Err(tool_bus::ToolError::Denied(tool_bus::GateDenial {
            gate: "G-CAP".into(),
            code: "CAPABILITY_NOT_GRANTED".into(),
            reason: "not in the MT's allowed tools".into(),
        }))
    }
    fn read_artifact(
        &self,
        _plugin: &str,
        handle: &types::ArtifactHandle,
        _max_bytes: u64,
    ) -> Result<Vec<u8>, tool_bus::ToolError> {
        Err(tool_bus::ToolError::NoSuchArtifact(handle.path.clone()))
    }
}

#[test]
fn tool_bus_abuser_operations_reach_the_given_tool_bus_and_its_denials_come_back() {
    let (host, _) = host();
    let plugin = host.load(&fixture("tool-bus-abuser", World::Validator)).unwrap();
    let bus = Arc::new(RefusingBus::default());
    let ctx = CallContext { toolbus: Some(bus.clone()), ..Default::default() };
    let report = host.validate(&plugin, &validation_input(true), &ctx).unwrap();
    let seen = bus.seen.lock().unwrap().clone();
    let ops: Vec<(&str, &str, &str)> =
        seen.iter().map(|s| (s.plugin.as_str(), s.engine_id.as_str(), s.operation.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("tool_bus_abuser", "engine.shell", "exec"),
            ("tool_bus_abuser", "engine.shell", "exec"),
            ("tool_bus_abuser", "engine.fs", "write_files")
        ]
    );
    assert_eq!(seen[2].capabilities, ["fs.write:../outside.txt".to_owned()]);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.message
                == "denied gate=G-CAP code=CAPABILITY_NOT_GRANTED: not in the MT's allowed tools")
    );
}

// ------------------------------------------------------------ load refusals

/// Loads `spec` and returns its error, checking nothing ran and the host still serves.
fn refused(host: &PluginHost, spec: &PluginSpec, recorder: &mtx::plugin::MemoryRecorder) -> LoadError {
    let calls_before = recorder.calls().len();
    let err = match host.load(spec) {
        Ok(_) => panic!("{} loaded but must be refused", spec.name),
        Err(e) => e,
    };
    assert_eq!(recorder.calls().len(), calls_before, "no guest code runs for a refused component");
    assert_still_serves(host);
    err
}

#[test]
fn a_fixture_loaded_as_another_world_is_wrong_world() {
    let (host, recorder) = host();
    let err = refused(&host, &fixture("good-policy", World::Validator), &recorder);
    assert!(
        matches!(&err, LoadError::WrongWorld { world, reason, .. } if world == "validator" && reason.contains("validate")),
        "{err}"
    );
}

#[test]
fn a_builtin_loaded_as_another_world_is_wrong_world() {
    let (host, recorder) = host();
    let err = refused(&host, &builtin("escalation-default", World::MtPlanner), &recorder);
    assert!(matches!(&err, LoadError::WrongWorld { world, .. } if world == "mt-planner"), "{err}");
}

#[test]
fn a_component_of_another_package_version_is_incompatible() {
    let (host, recorder) = host();
    let err = refused(&host, &fixture("wrong-version", World::EscalationPolicy), &recorder);
    assert!(
        matches!(&err, LoadError::IncompatibleVersion { found, supported, .. } if found == "0.2.0" && supported == "0.1.0"),
        "{err}"
    );
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused_by_name() {
    let (host, recorder) = host();
    let err = refused(&host, &fixture("import-unknown", World::EscalationPolicy), &recorder);
    assert!(
        matches!(&err, LoadError::UnsatisfiedImport { reason, .. } if reason.contains("mtx:fixture/secret-door")),
        "{err}"
    );
}

#[test]
fn a_component_whose_sha256_differs_from_the_pin_is_refused() {
    let (host, recorder) = host();
    let actual = host.load(&fixture("good-policy", World::EscalationPolicy)).unwrap().digest;
    let mut spec = fixture("good-policy", World::EscalationPolicy);
    spec.sha256 = Some("0".repeat(64));
    let err = refused(&host, &spec, &recorder);
    assert!(
        matches!(&err, LoadError::PinMismatch { expected, actual: a, .. } if *expected == "0".repeat(64) && *a == actual),
        "{err}"
    );
}

#[test]
fn a_component_matching_its_pin_loads_in_either_case() {
    let (host, _) = host();
    let digest = host.load(&fixture("good-policy", World::EscalationPolicy)).unwrap().digest;
    assert_eq!(digest.len(), 64);
    for pin in [digest.clone(), digest.to_ascii_uppercase()] {
        let mut spec = fixture("good-policy", World::EscalationPolicy);
        spec.sha256 = Some(pin);
        let plugin = host.load(&spec).unwrap();
        assert_eq!(plugin.digest, digest);
        host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    }
}

/// A spec for `bytes` written to a temp file.
fn file_with(tmp: &Path, bytes: &[u8]) -> PluginSpec {
    let path = tmp.join("plugin.wasm");
    std::fs::write(&path, bytes).unwrap();
    PluginSpec::file(path, "escalation_policy", World::EscalationPolicy)
}

#[test]
fn a_core_module_is_not_a_component() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    // The smallest valid core module: magic and version 1.
    let err = refused(&host, &file_with(tmp.path(), b"\0asm\x01\0\0\0"), &recorder);
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");
}

#[test]
fn garbage_bytes_are_not_wasm() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    // Text, nothing, a bare magic number, and a header with an unknown layer.
    for bytes in [&b"this is not a webassembly binary"[..], b"", b"\0asm", b"\0asm\x0d\0\x02\0"] {
        let err = refused(&host, &file_with(tmp.path(), bytes), &recorder);
        assert!(matches!(err, LoadError::NotWasm { .. }), "{bytes:?}: {err}");
    }
}

#[test]
fn an_empty_component_is_wrong_world() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    // A valid component header (version 0x0d, layer 1) and nothing else: well-formed, but
    // it exports no mtx:plugin interface.
    let err = refused(&host, &file_with(tmp.path(), b"\0asm\x0d\0\x01\0"), &recorder);
    assert!(
        matches!(&err, LoadError::WrongWorld { reason, .. } if reason.contains("no mtx:plugin interface")),
        "{err}"
    );
}

#[test]
fn a_truncated_component_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    let good = std::fs::read(fixture_path("good-policy")).unwrap();
    let err = refused(&host, &file_with(tmp.path(), &good[..good.len() / 2]), &recorder);
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

#[test]
fn missing_files_and_unknown_builtins_are_typed_load_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, recorder) = host();
    let missing =
        PluginSpec::file(tmp.path().join("absent.wasm"), "escalation_policy", World::EscalationPolicy);
    assert!(matches!(refused(&host, &missing, &recorder), LoadError::Read { .. }));
    let err = refused(&host, &builtin("escalation-nonexistent", World::EscalationPolicy), &recorder);
    assert!(
        matches!(&err, LoadError::UnknownBuiltin { available, .. } if available.contains("escalation-default")),
        "{err}"
    );
}

// ------------------------------------------------------------ compile cache

fn cached_artifacts(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compile_cache_is_written_once_and_reused_by_another_host() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let options = HostOptions { cache_dir: Some(cache.clone()) };

    let (first, _) = host_with(options.clone());
    let plugin = first.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    let artifacts = cached_artifacts(&cache);
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].file_name().unwrap().to_string_lossy().starts_with(&plugin.digest));
    let inode = std::fs::metadata(&artifacts[0]).unwrap().ino();

    let (second, recorder) = host_with(options);
    let plugin = second.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    second.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    assert_eq!(recorder.calls()[0].outcome, "ok");
    // A recompile would have replaced the file (write to temp, rename).
    assert_eq!(cached_artifacts(&cache), artifacts);
    assert_eq!(std::fs::metadata(&artifacts[0]).unwrap().ino(), inode);
}

#[test]
fn a_corrupt_cached_artifact_is_recompiled_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let options = HostOptions { cache_dir: Some(cache.clone()) };
    let (first, _) = host_with(options.clone());
    first.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    let artifact = cached_artifacts(&cache).pop().unwrap();
    std::fs::write(&artifact, b"corrupted artifact").unwrap();

    let (second, _) = host_with(options);
    let plugin = second.load(&fixture("good-policy", World::EscalationPolicy)).unwrap();
    let decision = second.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    assert_eq!(decision.decision, types::LoopDecision::Complete);
    assert_ne!(std::fs::read(&artifact).unwrap(), b"corrupted artifact", "the artifact was rewritten");
}
