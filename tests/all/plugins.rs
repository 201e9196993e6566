//! The plugin host: worlds, limits, grants, and hostile components.

use std::sync::Arc;

use mtx::plugin::bindings::types;
use mtx::plugin::builtins::fixtures;
use mtx::plugin::{CallContext, HostOptions, MemoryRecorder, PluginError, PluginHost, PluginSpec, World};

fn host() -> (PluginHost, Arc<MemoryRecorder>) {
    let recorder = Arc::new(MemoryRecorder::default());
    let host = PluginHost::new(HostOptions::default(), recorder.clone()).unwrap();
    (host, recorder)
}

fn fixture(name: &str, world: World) -> PluginSpec {
    PluginSpec::file(
        fixtures::path(name).unwrap_or_else(|| panic!("fixture {name} was not built")),
        "test",
        world,
    )
}

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

#[test]
fn builtin_policy_decides_and_the_call_is_recorded() {
    let (host, recorder) = host();
    let plugin = host
        .load(&PluginSpec::builtin("escalation-default", "escalation_policy", World::EscalationPolicy))
        .unwrap();
    let decision = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap();
    assert_eq!(decision.decision, types::LoopDecision::Complete);
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function, "decide");
    assert_eq!(calls[0].digest, plugin.digest);
    assert_eq!(calls[0].outcome, "ok");
}

#[test]
fn spinning_policy_hits_its_deadline_and_the_host_still_serves() {
    let (host, recorder) = host();
    let mut spec = fixture("spin", World::EscalationPolicy);
    spec.limits.cpu_deadline = std::time::Duration::from_millis(100);
    let plugin = host.load(&spec).unwrap();
    let err = host.decide(&plugin, &decision_input(), &CallContext::default()).unwrap_err();
    assert!(matches!(err, PluginError::Deadline { .. }), "{err}");
    assert_eq!(recorder.calls()[0].outcome, "deadline");
    let good = host
        .load(&PluginSpec::builtin("escalation-default", "escalation_policy", World::EscalationPolicy))
        .unwrap();
    host.decide(&good, &decision_input(), &CallContext::default()).unwrap();
}
