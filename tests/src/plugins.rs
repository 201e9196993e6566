//! Support for the `plugins` suite: a plugin host wired to a [`MemoryRecorder`], fixture
//! specs, a typical input for every world, grant directories, and loopback HTTP targets.
//!
//! Everything here stays inside temp dirs and `127.0.0.1`; nothing reads the network,
//! `$HOME` or files outside the test's own temp dirs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use mtx::plugin::bindings::types;
use mtx::plugin::builtins::fixtures;
use mtx::plugin::{CallContext, HostOptions, MemoryRecorder, PluginHost, PluginSpec, World};

/// A fresh host without a compile cache, and the recorder it reports to.
pub fn host() -> (PluginHost, Arc<MemoryRecorder>) {
    host_with(HostOptions::default())
}

pub fn host_with(options: HostOptions) -> (PluginHost, Arc<MemoryRecorder>) {
    let recorder = Arc::new(MemoryRecorder::default());
    let host = PluginHost::new(options, recorder.clone()).expect("the plugin host starts");
    (host, recorder)
}

/// Path of a fixture component built by the host's build script.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(fixtures::path(name).unwrap_or_else(|| panic!("fixture {name} was not built")))
}

/// A spec for a fixture component with no grants and the world's default limits.
pub fn fixture(name: &str, world: World) -> PluginSpec {
    PluginSpec::file(fixture_path(name), role_of(world), world)
}

/// A spec for a built-in plugin.
pub fn builtin(name: &str, world: World) -> PluginSpec {
    PluginSpec::builtin(name, role_of(world), world)
}

/// The run-config role that holds plugins of `world`.
pub fn role_of(world: World) -> &'static str {
    match world {
        World::MtPlanner => "planner",
        World::ModelBackend => "model_backend",
        World::LoraSelector => "lora_selector",
        World::EscalationPolicy => "escalation_policy",
        World::Validator => "validators",
    }
}

/// The world of a built-in plugin, from its `<role>-<name>` directory name.
pub fn builtin_world(name: &str) -> World {
    let (role, _) = name.split_once('-').unwrap_or_else(|| panic!("built-in {name} has no role prefix"));
    match role {
        "planner" => World::MtPlanner,
        "backend" => World::ModelBackend,
        "lora" => World::LoraSelector,
        "escalation" => World::EscalationPolicy,
        "validator" => World::Validator,
        other => panic!("built-in {name} has an unknown role prefix `{other}`"),
    }
}

/// Checks that `host` still loads and runs a well-behaved plugin after something hostile:
/// the `good-policy` fixture and the built-in default policy both decide `complete`.
pub fn assert_still_serves(host: &PluginHost) {
    for spec in [
        fixture("good-policy", World::EscalationPolicy),
        builtin("escalation-default", World::EscalationPolicy),
    ] {
        let plugin = host.load(&spec).unwrap_or_else(|e| panic!("{} no longer loads: {e}", spec.name));
        let decision = host
            .decide(&plugin, &decision_input(), &CallContext::default())
            .unwrap_or_else(|e| panic!("{} no longer answers: {e}", spec.name));
        assert_eq!(decision.decision, types::LoopDecision::Complete, "{}", spec.name);
    }
}

/// A decision input after an iteration whose validation passed.
pub fn decision_input() -> types::DecisionInput {
    types::DecisionInput {
        mt_id: "MT-001".into(),
        task_tags: vec!["rust".into()],
        iteration: 1,
        effective_max_iterations: 3,
        level: 0,
        max_level: 4,
        claimed_complete: true,
        malformed_claim: false,
        blocked: false,
        blocked_reason: None,
        validation_ran: true,
        validation_passed: Some(true),
        evidence_verified: Some(true),
        spec_outcomes: vec![],
        scope_violations: vec![],
        missing_references: vec![],
        model_error: None,
        context_overflow: false,
        operator_skip: false,
        false_completion_streak: 0,
        failure_streak: 0,
        history: vec![],
    }
}

pub fn mt_shape() -> types::MtShape {
    types::MtShape {
        mt_id: "MT-001".into(),
        risk_level: types::RiskLevel::Low,
        token_budget: 2048,
        files_touched: 1,
    }
}

pub fn drop_back_input(strategy: types::DropBackStrategy, current_level: u32) -> types::DropBackInput {
    types::DropBackInput {
        strategy,
        current_level,
        failure_category: None,
        escalation_created_at: None,
        mt: mt_shape(),
        task_tags: vec!["rust".into()],
        remaining: vec![],
        registry: vec![],
    }
}

pub fn lora(id: &str, base_model: &str) -> types::LoraInfo {
    types::LoraInfo {
        lora_id: id.into(),
        lora_version: None,
        base_model_id: base_model.into(),
        trained_on_task_types: vec!["rust".into()],
        specialization: vec![],
        weak_on_task_types: vec![],
        last_trained_at: None,
        pass_at_one: None,
        training_priority: None,
    }
}

/// A selection for model `small` with two registry entries, the second for that model.
pub fn selection_input() -> types::LoraSelectionInput {
    types::LoraSelectionInput {
        mt_id: "MT-001".into(),
        task_tags: vec!["rust".into()],
        level: 0,
        model_id: "small".into(),
        mode: types::LoraSelectorMode::Auto,
        registry: vec![lora("other-lora", "large"), lora("rust-lora", "small")],
        previous_lora_id: None,
        now: "2026-01-01T00:00:00Z".into(),
    }
}

/// A packet with one in-scope file and one test command.
pub fn planner_input() -> types::PlannerInput {
    types::PlannerInput {
        packet: types::WorkPacket {
            wp_id: "WP-1".into(),
            title: "Add a greeting".into(),
            description: "Add a greeting function".into(),
            in_scope_paths: vec!["src/lib.rs".into()],
            out_of_scope: vec![],
            test_plan: vec!["cargo test".into()],
            done_means: vec!["tests pass".into()],
            risk_tier: None,
            touched_file_budget: None,
            files_to_open: vec![],
            search_terms: vec![],
            implementation_order: vec![],
            clause_rows: vec![],
            mt_hints: vec![],
        },
        workspace_files: vec![types::WorkspaceFile { path: "src/lib.rs".into(), size_bytes: 120 }],
        context_window: 8192,
    }
}

pub fn mt_definition() -> types::MtDefinition {
    types::MtDefinition {
        mt_id: "MT-001".into(),
        name: "Implement WP-1".into(),
        scope: "Add a greeting".into(),
        files: types::FileAccess { read: vec![], modify: vec!["src/lib.rs".into()], create: vec![] },
        actions: vec!["Change src/lib.rs".into()],
        verify: vec![types::VerifySpec {
            command: "cargo test".into(),
            expect: types::Expectation::ExitZero,
            pattern: None,
            timeout_ms: 30_000,
            blocking: true,
        }],
        done: vec![types::DoneCriterion {
            description: "the verify command exits 0".into(),
            verification: types::DoneVerification::Automated,
            verify_ref: Some(0),
        }],
        depends_on: vec![],
        token_budget: 2048,
        execution_tier: types::ExecutionTier::LocalSmall,
        allowed_tools: vec![],
        retry_budget: 3,
        escalation_target: Some(types::EscalationTarget::LocalLarge),
        expected_output: types::ExpectedOutput::Patch,
        task_tags: vec![],
        risk_level: types::RiskLevel::Low,
        notes: None,
    }
}

/// A validation input for an iteration that claimed completion (or not).
pub fn validation_input(claimed_complete: bool) -> types::ValidationInput {
    types::ValidationInput {
        job_id: "job-1".into(),
        wp_id: "WP-1".into(),
        step_id: "step-1".into(),
        iteration: 1,
        mt: mt_definition(),
        completion: types::CompletionSignal {
            claimed_complete,
            evidence: vec![],
            blocked: false,
            blocked_reason: None,
            blocked_need: None,
            malformed: false,
            claimed_mt_id: Some("MT-001".into()),
            evidence_verified: None,
            parse_warnings: vec![],
        },
        changed_files: vec![types::ChangedFile {
            path: "src/lib.rs".into(),
            kind: types::ChangeKind::Modified,
            changed_lines: vec![1, 2],
        }],
        protected_files: vec![],
        scope_violations: vec![],
    }
}

pub fn model_request(model_id: &str) -> types::ModelRequest {
    types::ModelRequest {
        model_id: model_id.into(),
        lora_id: None,
        prompt: "write the function".into(),
        prompt_hash: "0".repeat(64),
        max_tokens: 256,
        context_window: 4096,
        temperature: 0.0,
        seed: Some(7),
        timeout_ms: 10_000,
        mt_id: "MT-001".into(),
        level: 0,
        iteration: 1,
        attempt: 1,
    }
}

/// Writes `content` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A loopback HTTP server that answers exactly one request with `200 OK` and `body`,
/// and hands back the request head it received.
pub struct OneShotServer {
    pub addr: SocketAddr,
    handle: JoinHandle<String>,
}

impl OneShotServer {
    pub fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        OneShotServer { addr, handle }
    }

    /// The request head the server received.
    pub fn request(self) -> String {
        self.handle.join().expect("the loopback server thread finished")
    }
}

/// A loopback listener that never accepts on its own, to prove no connection reached it.
pub struct SilentTarget {
    listener: TcpListener,
}

impl SilentTarget {
    pub fn bind() -> Self {
        SilentTarget { listener: TcpListener::bind("127.0.0.1:0").unwrap() }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Whether any connection completed its handshake with the listener (the kernel
    /// queues it for `accept` even though nobody called `accept` yet).
    pub fn was_contacted(&self) -> bool {
        self.listener.set_nonblocking(true).unwrap();
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("checking the loopback listener: {e}"),
        }
    }
}
