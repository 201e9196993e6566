//! The default plugins, built as components and loaded through the plugin host: the planner
//! on every real packet, the policy on every decision branch, the selector's scores, the
//! validators on prepared workspaces over a real Tool Bus, and the OpenAI backend against a
//! loopback chat-completions server. The last test runs the plugins' own unit tests natively.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mtx::plugin::bindings::types;
use mtx::plugin::{CallContext, PluginError, ReportedError, World};
use mtx::toolbus::observer::Observed;
use mtx_tests::default_plugins::{
    BusFixture, ChatServer, Reply, completion_body, planner_input_for, real_packets,
};
use mtx_tests::plugins::{
    SilentTarget, builtin, decision_input, drop_back_input, host, lora, model_request, mt_definition,
    selection_input, validation_input,
};

// ------------------------------------------------------------------ planner

/// Tool Bus operation families an MT's `allowed_tools` may name, as the executor registers them.
const REGISTERED_TOOLS: &[&str] =
    &["engine.shell", "engine.shell.exec", "engine.fs", "engine.fs.write_files"];

#[test]
fn planner_turns_every_real_packet_into_valid_mts_in_correct_waves() {
    let packets = real_packets();
    assert!(packets.len() >= 4, "{packets:?}");
    let (host, _) = host();
    let planner = host.load(&builtin("planner-default", World::MtPlanner)).unwrap();
    for path in packets {
        let wp = mtx::wp::load_work_packet(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let input = planner_input_for(&wp, 32_768);
        let mts = host
            .plan(&planner, &input, &CallContext::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!mts.is_empty(), "{}: no MT", path.display());
        let defs: Vec<_> = mts.iter().map(mtx::executor::convert::mt_from_wit).collect();

        let scope = mtx::wp::wp_scope(&wp);
        let report = mtx::wp::validate_definitions(
            &defs,
            &scope,
            &mtx::types::ExecutionPolicy::default(),
            REGISTERED_TOOLS,
        );
        assert!(!report.has_errors(), "{}: MT-VAL errors {:?}", path.display(), report.errors);

        let waves = mtx::wp::compute_waves(&defs).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        // The expected layering: an MT sits one wave after the latest of its dependencies.
        let mut expected_wave: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &defs {
            let wave = d
                .depends_on
                .iter()
                .map(|dep| {
                    expected_wave.get(dep.as_str()).map(|w| w + 1).unwrap_or_else(|| {
                        panic!("{}: {} depends on {dep}, not an earlier MT", path.display(), d.mt_id)
                    })
                })
                .max()
                .unwrap_or(0);
            expected_wave.insert(&d.mt_id, wave);
        }
        let mut seen = BTreeMap::new();
        for (i, wave) in waves.iter().enumerate() {
            for id in wave {
                assert!(seen.insert(id.as_str(), i).is_none(), "{}: {id} in two waves", path.display());
            }
        }
        assert_eq!(seen, expected_wave, "{}: waves {waves:?}", path.display());
        if defs.iter().any(|d| !d.depends_on.is_empty()) {
            assert!(waves.len() > 1, "{}: dependent MTs in one wave", path.display());
        }
    }
}

// ------------------------------------------------------------------- policy

fn decide(input: &types::DecisionInput) -> types::EscalationDecision {
    let (host, _) = host();
    let policy = host.load(&builtin("escalation-default", World::EscalationPolicy)).unwrap();
    host.decide(&policy, input, &CallContext::default()).unwrap()
}

/// An iteration that ran validation and failed it, without a completion claim.
fn failed_iteration() -> types::DecisionInput {
    types::DecisionInput {
        claimed_complete: false,
        validation_passed: Some(false),
        evidence_verified: None,
        ..decision_input()
    }
}

/// An iteration with no claim and no validation.
fn silent_iteration() -> types::DecisionInput {
    types::DecisionInput {
        claimed_complete: false,
        validation_ran: false,
        validation_passed: None,
        evidence_verified: None,
        ..decision_input()
    }
}

fn blocked(reason: &str) -> types::DecisionInput {
    types::DecisionInput { blocked: true, blocked_reason: Some(reason.into()), ..silent_iteration() }
}

fn summary(iteration: u32, blocked_reason: Option<&str>) -> types::IterationSummary {
    types::IterationSummary {
        iteration,
        level: 0,
        claimed_complete: false,
        validation_passed: None,
        failure_category: None,
        blocked_reason: blocked_reason.map(Into::into),
        passed_specs: vec![],
    }
}

#[test]
fn policy_completes_a_validated_claim() {
    let d = decide(&decision_input());
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Complete, "validation_passed"));
    assert_eq!(d.failure_category, None);
}

#[test]
fn policy_skips_on_operator_skip() {
    let d = decide(&types::DecisionInput { operator_skip: true, ..failed_iteration() });
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Skip, "user_skip"));
}

#[test]
fn policy_escalates_at_the_iteration_limit_and_hard_gates_at_the_top_level() {
    let at_limit = types::DecisionInput { iteration: 3, effective_max_iterations: 3, ..failed_iteration() };
    let d = decide(&at_limit);
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Escalate, "max_iterations_per_mt"));
    assert!(d.failure_category.is_some(), "{d:?}");

    let top = types::DecisionInput { level: 4, max_level: 4, ..at_limit };
    let d = decide(&top);
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::HardGate, "escalation_exhausted"));
}

#[test]
fn policy_retries_a_first_false_completion_and_escalates_the_second() {
    let false_claim = types::DecisionInput { validation_passed: Some(false), ..decision_input() };
    let d = decide(&false_claim);
    assert_eq!(d.decision, types::LoopDecision::Retry, "{d:?}");
    assert_eq!(d.reason, "validation_error");

    let second = types::DecisionInput { false_completion_streak: 1, ..false_claim };
    let d = decide(&second);
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Escalate, "false_completion_streak"));
}

#[test]
fn policy_retries_a_recoverable_block_and_escalates_a_repeated_one() {
    let d = decide(&blocked("need the schema file"));
    assert_eq!(d.decision, types::LoopDecision::Retry, "{d:?}");
    assert_eq!(d.recoverable_block, Some(true));
    assert_eq!(d.reason, "blocked: need the schema file");

    let repeated = types::DecisionInput {
        iteration: 2,
        history: vec![summary(1, Some("Need the  schema file"))],
        ..blocked("need the schema file")
    };
    let d = decide(&repeated);
    assert_eq!(d.decision, types::LoopDecision::Escalate, "{d:?}");
    assert_eq!(d.recoverable_block, Some(false));
    assert_eq!(d.failure_category, Some(types::FailureCategory::IncompleteImplementation));
}

#[test]
fn policy_retries_when_there_is_no_claim() {
    let d = decide(&silent_iteration());
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Retry, "no_claim"));
    assert_eq!(d.failure_category, Some(types::FailureCategory::IncompleteImplementation));
}

#[test]
fn policy_escalates_after_two_consecutive_failures() {
    let first = decide(&failed_iteration());
    assert_eq!(first.decision, types::LoopDecision::Retry, "{first:?}");
    let d = decide(&types::DecisionInput { iteration: 2, failure_streak: 1, ..failed_iteration() });
    assert_eq!((d.decision, d.reason.as_str()), (types::LoopDecision::Escalate, "consecutive_failures"));
}

#[test]
fn policy_smart_drop_back_follows_the_failure_category() {
    let (host, _) = host();
    let policy = host.load(&builtin("escalation-default", World::EscalationPolicy)).unwrap();
    let ctx = CallContext::default();

    let mut isolated = drop_back_input(types::DropBackStrategy::Smart, 2);
    isolated.failure_category = Some(types::FailureCategory::SyntaxErrorIsolated);
    let d = host.drop_back(&policy, &isolated, &ctx).unwrap();
    assert_eq!((d.action, d.target_level), (types::DropBackAction::DropBack, Some(0)));
    assert_eq!(d.confidence, types::Confidence::High);

    let mut regression = drop_back_input(types::DropBackStrategy::Smart, 2);
    regression.failure_category = Some(types::FailureCategory::LogicErrorRegression);
    let d = host.drop_back(&policy, &regression, &ctx).unwrap();
    assert_eq!(d.action, types::DropBackAction::StayEscalated);
    assert_eq!(d.confidence, types::Confidence::High);
}

// ----------------------------------------------------------------- selector

fn tagged(
    id: &str,
    trained: &[&str],
    specialization: &[&str],
    weak: &[&str],
    trained_at: &str,
    pass: f64,
) -> types::LoraInfo {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    types::LoraInfo {
        trained_on_task_types: strings(trained),
        specialization: strings(specialization),
        weak_on_task_types: strings(weak),
        last_trained_at: Some(trained_at.into()),
        pass_at_one: Some(pass),
        ..lora(id, "small")
    }
}

/// Three LoRAs for model `small` with known scores for the tags `rust` + `parser` at
/// 2026-01-10, and one for another base model that would outscore them all.
fn c_lora_1_registry() -> Vec<types::LoraInfo> {
    vec![
        // +1.0 rust, -0.5 weak parser, old, +0.3 pass@1 0.9 = 0.8
        tagged("lora-a", &["rust"], &[], &["parser"], "2025-12-01T00:00:00Z", 0.9),
        // +1.0 rust, +1.0 parser, +0.2 two days old, pass@1 0.5 = 2.2
        tagged("lora-b", &["rust", "parser"], &[], &[], "2026-01-08T00:00:00Z", 0.5),
        // +1.0 parser, +0.5 rust specialization, +0.2 one day old, +0.3 pass@1 0.75 = 2.0
        tagged("lora-c", &["parser"], &["rust"], &[], "2026-01-09T00:00:00Z", 0.75),
        types::LoraInfo {
            base_model_id: "large".into(),
            ..tagged("lora-x", &["rust", "parser"], &["rust"], &[], "2026-01-09T00:00:00Z", 0.99)
        },
    ]
}

fn select(input: &types::LoraSelectionInput) -> types::LoraSelection {
    let (host, _) = host();
    let selector = host.load(&builtin("lora-by-tags", World::LoraSelector)).unwrap();
    host.select_lora(&selector, input, &CallContext::default()).unwrap()
}

fn scores(selection: &types::LoraSelection) -> Vec<(String, i64)> {
    selection.scores.iter().map(|s| (s.lora_id.clone(), (s.score * 10.0).round() as i64)).collect()
}

fn c_lora_1_input(mode: types::LoraSelectorMode) -> types::LoraSelectionInput {
    types::LoraSelectionInput {
        task_tags: vec!["rust".into(), "parser".into()],
        mode,
        registry: c_lora_1_registry(),
        now: "2026-01-10T00:00:00Z".into(),
        ..selection_input()
    }
}

#[test]
fn selector_auto_scores_every_available_lora_and_picks_the_best() {
    let s = select(&c_lora_1_input(types::LoraSelectorMode::Auto));
    assert_eq!(s.lora_id.as_deref(), Some("lora-b"), "{}", s.rationale);
    assert_eq!(scores(&s), [("lora-b".into(), 22), ("lora-c".into(), 20), ("lora-a".into(), 8)]);
    assert!(!s.rationale.is_empty());
}

#[test]
fn selector_alternate_excludes_the_previous_lora() {
    let input = types::LoraSelectionInput {
        previous_lora_id: Some("lora-b".into()),
        ..c_lora_1_input(types::LoraSelectorMode::Alternate)
    };
    let s = select(&input);
    assert_eq!(s.lora_id.as_deref(), Some("lora-c"), "{}", s.rationale);
    assert_eq!(scores(&s), [("lora-c".into(), 20), ("lora-a".into(), 8)]);
}

#[test]
fn selector_breaks_ties_by_lora_id() {
    let twin = |id: &str| tagged(id, &["rust"], &[], &[], "2025-01-01T00:00:00Z", 0.5);
    let input = types::LoraSelectionInput {
        registry: vec![twin("lora-z"), twin("lora-m"), twin("lora-q")],
        ..c_lora_1_input(types::LoraSelectorMode::Auto)
    };
    let s = select(&input);
    assert_eq!(s.lora_id.as_deref(), Some("lora-m"));
    assert_eq!(scores(&s), [("lora-m".into(), 10), ("lora-q".into(), 10), ("lora-z".into(), 10)]);
}

#[test]
fn selector_keeps_only_loras_of_the_level_model() {
    let large = types::LoraSelectionInput {
        model_id: "large".into(),
        ..c_lora_1_input(types::LoraSelectorMode::Auto)
    };
    let s = select(&large);
    assert_eq!(s.lora_id.as_deref(), Some("lora-x"));
    assert_eq!(scores(&s).len(), 1);

    let none = types::LoraSelectionInput {
        model_id: "tiny".into(),
        ..c_lora_1_input(types::LoraSelectorMode::Auto)
    };
    let s = select(&none);
    assert_eq!(s.lora_id, None);
    assert!(s.scores.is_empty());
}

// --------------------------------------------------------------- validators

fn validate(
    fx: &BusFixture,
    name: &str,
    config: &[(&str, &str)],
    input: &types::ValidationInput,
) -> types::ValidatorReport {
    let (host, _) = host();
    let mut spec = builtin(name, World::Validator);
    spec.config = config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let plugin = host.load(&spec).unwrap();
    let ctx = CallContext { toolbus: Some(fx.port(name)), ..CallContext::default() };
    host.validate(&plugin, input, &ctx).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn changed(path: &str, lines: &[u32]) -> types::ChangedFile {
    types::ChangedFile { path: path.into(), kind: types::ChangeKind::Modified, changed_lines: lines.to_vec() }
}

fn findings<'a>(report: &'a types::ValidatorReport, rule: &str) -> Vec<&'a types::Finding> {
    report.findings.iter().filter(|f| f.rule == rule).collect()
}

#[test]
fn integrity_reports_placeholders_on_changed_lines_with_file_and_line() {
    let fx = BusFixture::new(&[]);
    fx.write(
        "src/lib.rs",
        "// TODO: an old note outside the change\npub fn a() -> u32 {\n    todo!()\n}\n// TODO finish b\npub fn b() {}\n",
    );
    let input = types::ValidationInput {
        changed_files: vec![changed("src/lib.rs", &[2, 3, 4, 5, 6])],
        ..validation_input(false)
    };
    let report = validate(&fx, "validator-integrity", &[], &input);
    assert!(!report.passed, "{report:?}");
    let placeholders = findings(&report, "placeholder");
    let at: Vec<(Option<&str>, Option<u32>)> =
        placeholders.iter().map(|f| (f.file.as_deref(), f.line)).collect();
    assert_eq!(at, [(Some("src/lib.rs"), Some(3)), (Some("src/lib.rs"), Some(5))], "{report:?}");
    assert!(placeholders.iter().all(|f| f.blocking));
}

#[test]
fn integrity_passes_a_clean_change() {
    let fx = BusFixture::new(&[]);
    fx.write("src/lib.rs", "pub fn a() -> u32 {\n    1\n}\n");
    let input = types::ValidationInput {
        changed_files: vec![changed("src/lib.rs", &[1, 2, 3])],
        ..validation_input(false)
    };
    let report = validate(&fx, "validator-integrity", &[], &input);
    assert!(report.passed, "{report:?}");
    assert!(report.findings.iter().all(|f| !f.blocking), "{report:?}");
}

#[test]
fn integrity_reports_an_edited_protected_test_file() {
    let fx = BusFixture::new(&[]);
    fx.write("src/lib.rs", "pub fn a() -> u32 {\n    1\n}\n");
    fx.write("tests/api.rs", "#[test]\nfn a() {}\n");
    let mut mt = mt_definition();
    mt.files.modify = vec!["src/lib.rs".into(), "tests/api.rs".into()];
    let input = types::ValidationInput {
        mt,
        changed_files: vec![changed("src/lib.rs", &[2]), changed("tests/api.rs", &[2])],
        protected_files: vec!["tests/api.rs".into()],
        ..validation_input(false)
    };
    let report = validate(&fx, "validator-integrity", &[], &input);
    assert!(!report.passed, "{report:?}");
    let protected = findings(&report, "protected-file-modified");
    assert_eq!(protected.len(), 1, "{report:?}");
    assert_eq!(protected[0].file.as_deref(), Some("tests/api.rs"));
    assert!(protected[0].blocking);
}

/// A validation input whose MT verifies with `command` expecting `expect`.
fn verify_input(command: &str, expect: types::Expectation, pattern: Option<&str>) -> types::ValidationInput {
    let mut input = validation_input(true);
    input.mt.verify = vec![types::VerifySpec {
        command: command.into(),
        expect,
        pattern: pattern.map(Into::into),
        timeout_ms: 30_000,
        blocking: true,
    }];
    input
}

#[test]
fn command_validator_flags_a_test_run_that_ran_zero_tests() {
    let command = "echo running 0 tests";
    let fx = BusFixture::new(&[command]);
    let report =
        validate(&fx, "validator-command", &[], &verify_input(command, types::Expectation::ExitZero, None));
    assert_eq!(report.spec_results.len(), 1, "{report:?}");
    assert!(report.spec_results[0].passed, "the command itself exits 0: {report:?}");
    let zero = findings(&report, "zero-tests");
    assert_eq!(zero.len(), 1, "{report:?}");
    assert!(zero[0].blocking);
    assert!(!report.passed, "{report:?}");
}

#[test]
fn command_validator_passes_exit_zero() {
    let fx = BusFixture::new(&["true"]);
    let report =
        validate(&fx, "validator-command", &[], &verify_input("true", types::Expectation::ExitZero, None));
    assert!(report.passed, "{report:?}");
    let r = &report.spec_results[0];
    assert_eq!((r.passed, r.actual_exit_code, r.expected.as_str()), (true, 0, "exit_0"));
    let ran_through_the_bus = fx.observer.observed().into_iter().any(|o| {
        matches!(o, Observed::Capability { capability, allowed: true, .. } if capability == "proc.exec:true")
    });
    assert!(ran_through_the_bus, "{:?}", fx.observer.observed());
}

#[test]
fn command_validator_fails_a_nonzero_exit() {
    let fx = BusFixture::new(&["false"]);
    let report =
        validate(&fx, "validator-command", &[], &verify_input("false", types::Expectation::ExitZero, None));
    assert!(!report.passed, "{report:?}");
    assert_eq!(report.spec_results[0].actual_exit_code, 1);
}

#[test]
fn command_validator_judges_contains_and_not_contains_on_stdout() {
    let command = "echo foo";
    let fx = BusFixture::new(&[command]);
    let judge = |expect, pattern| {
        let report = validate(&fx, "validator-command", &[], &verify_input(command, expect, Some(pattern)));
        (report.passed, report.spec_results[0].expected.clone())
    };
    assert_eq!(judge(types::Expectation::Contains, "foo"), (true, "contains:foo".into()));
    assert_eq!(judge(types::Expectation::Contains, "bar"), (false, "contains:bar".into()));
    assert_eq!(judge(types::Expectation::NotContains, "bar"), (true, "not_contains:bar".into()));
    assert_eq!(judge(types::Expectation::NotContains, "foo"), (false, "not_contains:foo".into()));
}

#[test]
fn command_validator_reports_a_command_the_tool_bus_refuses() {
    // `printf` is not in the job's proc.exec allowlist.
    let command = "printf hi";
    let fx = BusFixture::new(&[command]);
    let report =
        validate(&fx, "validator-command", &[], &verify_input(command, types::Expectation::ExitZero, None));
    assert!(!report.passed, "{report:?}");
    let r = &report.spec_results[0];
    assert_eq!(r.actual_exit_code, -1, "{r:?}");
    assert!(r.error.as_deref().is_some_and(|e| e.starts_with("denied by ")), "{r:?}");
}

// ------------------------------------------------------------------ backend

fn openai(base_url: &str, grants: &[String]) -> mtx::plugin::PluginSpec {
    let mut spec = builtin("backend-openai", World::ModelBackend);
    spec.config.insert("base_url".into(), base_url.into());
    spec.config.insert("model_names".into(), r#"{"small":"qwen2.5-coder-7b"}"#.into());
    spec.grants = grants.iter().map(|g| g.parse().unwrap_or_else(|e| panic!("grant {g}: {e}"))).collect();
    spec
}

fn loopback_grant(server: &ChatServer) -> Vec<String> {
    vec![format!("net.http:127.0.0.1:{}", server.addr.port())]
}

/// Sends one request for model `small` to a server answering `reply`; the error if any.
fn complete_against(
    reply: Reply,
    timeout_ms: u32,
) -> (Result<types::ModelResponse, PluginError>, ChatServer) {
    let server = ChatServer::start(reply);
    let (host, _) = host();
    let plugin = host.load(&openai(&server.base_url(), &loopback_grant(&server))).unwrap();
    let request = types::ModelRequest { timeout_ms, ..model_request("small") };
    let ctx = CallContext { extra_deadline: Duration::from_secs(30), ..CallContext::default() };
    (host.complete(&plugin, &request, &ctx), server)
}

fn reported(result: Result<types::ModelResponse, PluginError>) -> ReportedError {
    match result {
        Err(PluginError::Reported { error, .. }) => error,
        other => panic!("expected a reported model error, got {other:?}"),
    }
}

#[test]
fn openai_backend_completes_against_a_loopback_server() {
    let server = ChatServer::start(Reply::ok(completion_body("fn greet() {}", 42, 7)));
    let port = server.addr.port();
    let (host, recorder) = host();
    let plugin = host.load(&openai(&server.base_url(), &loopback_grant(&server))).unwrap();
    let response = host.complete(&plugin, &model_request("small"), &CallContext::default()).unwrap();
    assert_eq!(response.text, "fn greet() {}");
    assert_eq!(response.finish_reason, types::FinishReason::Stop);
    assert_eq!((response.usage.prompt_tokens, response.usage.completion_tokens), (42, 7));

    let received = server.received();
    assert!(received.head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{}", received.head);
    let body: serde_json::Value = serde_json::from_str(&received.body).unwrap();
    assert_eq!(body["model"], "qwen2.5-coder-7b");
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], "write the function");

    let grants = recorder.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(grants[0].allowed);
    assert_eq!(grants[0].capability, format!("net.http:127.0.0.1:{port}"));
}

#[test]
fn openai_backend_times_out_on_a_slow_server() {
    let reply = Reply { delay: Duration::from_secs(3), ..Reply::ok(completion_body("late", 1, 1)) };
    let (result, server) = complete_against(reply, 300);
    assert!(matches!(reported(result), ReportedError::ModelTimeout(_)));
    server.received();
}

#[test]
fn openai_backend_maps_429_and_500_to_transient() {
    for status in ["429 Too Many Requests", "500 Internal Server Error"] {
        let (result, server) =
            complete_against(Reply::status(status, r#"{"error":{"message":"busy"}}"#), 10_000);
        match reported(result) {
            ReportedError::ModelTransient(_) => {}
            other => panic!("{status}: expected transient, got {other:?}"),
        }
        server.received();
    }
}

#[test]
fn openai_backend_refuses_a_malformed_reply_as_fatal() {
    let (result, server) = complete_against(Reply::ok("{\"choices\": [".into()), 10_000);
    assert!(matches!(reported(result), ReportedError::ModelFatal(_)));
    server.received();
}

// --------------------------------------------------------- plugin unit tests

/// Names of the fixture crates under `plugins/fixtures`, which are hostile on purpose and
/// only build as components.
fn fixture_crates(plugins: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(plugins.join("fixtures")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let name = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name")
                    .map(|v| v.trim().trim_start_matches('=').trim().trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        names.push(name);
    }
    names.sort();
    names
}

fn host_triple() -> String {
    let out = std::process::Command::new("rustc").arg("-vV").output().expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host triple")
}

#[test]
fn default_plugins_unit_tests_pass_natively() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let plugins = repo.join("plugins");
    let fixtures = fixture_crates(&plugins);
    assert!(fixtures.len() > 10, "{fixtures:?}");
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("test")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--workspace")
        .args(fixtures.iter().flat_map(|f| ["--exclude", f.as_str()]))
        .arg("--target")
        .arg(host_triple())
        .env("CARGO_TARGET_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-unit-tests"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "the default plugins' unit tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Cargo names each test binary it runs on stderr (`Running unittests src/lib.rs (...)`).
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in default_plugin_crates(&plugins) {
        let binary = format!("{}-", name.replace('-', "_"));
        assert!(stderr.contains(&binary), "no test binary of {name} ran:\n{stderr}");
    }
}

/// The default plugins: every `<role>-<name>` crate directly under `plugins`.
fn default_plugin_crates(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(plugins)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.contains('-'))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    names
}
#[test]
fn openai_backend_is_denied_a_host_its_grant_does_not_name() {
    let target = SilentTarget::bind();
    let base_url = format!("http://127.0.0.1:{}/v1", target.port());
    let (host, recorder) = host();
    let plugin = host.load(&openai(&base_url, &["net.http:10.1.2.3:80".into()])).unwrap();
    let err = host.complete(&plugin, &model_request("small"), &CallContext::default()).unwrap_err();
    assert_eq!(err.kind(), "denied", "{err:?}");
    assert!(matches!(err, PluginError::Reported { error: ReportedError::ModelDenied(_), .. }), "{err:?}");
    assert!(!target.was_contacted(), "a denied request must not connect");
    let grants = recorder.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(!grants[0].allowed);
    assert!(grants[0].detail.contains(&format!("127.0.0.1:{}", target.port())), "{grants:?}");
}
