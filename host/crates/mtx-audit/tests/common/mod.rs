//! Support for the audit tests: recorded runs built by calling the plugin host directly
//! and writing its calls into a run ledger in the shape mtx-executor's `JobLog` writes
//! (`plugin_call` records whose `output` member holds the function, canonical input,
//! output, clock and seed), typical WIT inputs, and a job directory in a temp state dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtx_plugin::bindings::types;
use mtx_plugin::{CallContext, HostOptions, MemoryRecorder, PluginCall, PluginHost, PluginSpec, World};
use mtx_store::ledger::PluginCallRecord;
use mtx_store::{LedgerHeader, LedgerRecord, RunLedger, StateDir};
use serde_json::{Value, json};

pub const JOB: &str = "job-audit-1";
pub const WP: &str = "WP-AUDIT";

pub fn host() -> (PluginHost, Arc<MemoryRecorder>) {
    let recorder = Arc::new(MemoryRecorder::default());
    let host = PluginHost::new(HostOptions::default(), recorder.clone()).expect("the plugin host starts");
    (host, recorder)
}

/// Path of a fixture component built by mtx-plugin's build script.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(
        mtx_plugin::builtins::fixtures::path(name).unwrap_or_else(|| panic!("fixture {name} was not built")),
    )
}

pub fn role_of(world: World) -> &'static str {
    match world {
        World::MtPlanner => "planner",
        World::ModelBackend => "model_backend",
        World::LoraSelector => "lora_selector",
        World::EscalationPolicy => "escalation_policy",
        World::Validator => "validators",
    }
}

pub fn fixture(name: &str, world: World) -> PluginSpec {
    PluginSpec::file(fixture_path(name), role_of(world), world)
}

pub fn builtin(name: &str, world: World) -> PluginSpec {
    PluginSpec::builtin(name, role_of(world), world)
}

/// The recorded clock of the calls in these tests.
pub fn ctx(clock: &str) -> CallContext {
    CallContext { clock: clock.into(), ..CallContext::default() }
}

/// Writes a job whose ledger holds `calls`, each tagged with an MT and step id, exactly
/// as mtx-executor's `JobLog::plugin_call` records them.
pub fn write_job(state: &Path, job_id: &str, calls: &[PluginCall]) -> PathBuf {
    let job = StateDir::new(state).job(job_id).unwrap();
    job.create().unwrap();
    let header = LedgerHeader {
        ledger_id: format!("ledger-{job_id}"),
        wp_id: WP.into(),
        job_id: job_id.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    let mut ledger = RunLedger::create(&job.run_ledger(), header).unwrap();
    for (i, call) in calls.iter().enumerate() {
        let output: Value = match &call.output {
            Some(text) => serde_json::from_str(text).unwrap(),
            None => json!({"error": call.error, "outcome": call.outcome}),
        };
        let record = LedgerRecord::PluginCall(PluginCallRecord {
            plugin: call.plugin.clone(),
            digest: call.digest.clone(),
            world: Some(call.world.clone()),
            input_hash: call.input_sha256.clone(),
            output: json!({
                "function": call.function,
                "world_version": call.world_version,
                "role": call.role,
                "input": call.input,
                "output": output,
                "output_sha256": call.output_sha256,
                "outcome": call.outcome,
                "error": call.error,
                "clock": call.clock,
                "seed": call.seed,
            }),
            mt_id: Some("MT-001".into()),
            step_id: Some(format!("MT-001_iter-{:03}", i + 1)),
        });
        ledger.append(&record).unwrap();
    }
    job.root().to_owned()
}

/// A decision input after an iteration whose validation gave `passed`.
pub fn decision_input(iteration: u32, passed: Option<bool>) -> types::DecisionInput {
    types::DecisionInput {
        mt_id: "MT-001".into(),
        task_tags: vec!["rust".into()],
        iteration,
        effective_max_iterations: 3,
        level: 0,
        max_level: 4,
        claimed_complete: true,
        malformed_claim: false,
        blocked: false,
        blocked_reason: None,
        validation_ran: passed.is_some(),
        validation_passed: passed,
        evidence_verified: passed,
        spec_outcomes: vec![],
        scope_violations: vec![],
        missing_references: vec![],
        model_error: None,
        context_overflow: false,
        operator_skip: false,
        false_completion_streak: 0,
        failure_streak: u32::from(passed == Some(false)),
        history: vec![],
    }
}

pub fn drop_back_input(strategy: types::DropBackStrategy, current_level: u32) -> types::DropBackInput {
    types::DropBackInput {
        strategy,
        current_level,
        failure_category: None,
        escalation_created_at: None,
        mt: types::MtShape {
            mt_id: "MT-001".into(),
            risk_level: types::RiskLevel::Low,
            token_budget: 2048,
            files_touched: 1,
        },
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

pub fn planner_input() -> types::PlannerInput {
    types::PlannerInput {
        packet: types::WorkPacket {
            wp_id: WP.into(),
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
        name: "Implement WP-AUDIT".into(),
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
        job_id: JOB.into(),
        wp_id: WP.into(),
        step_id: "MT-001_iter-001".into(),
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
