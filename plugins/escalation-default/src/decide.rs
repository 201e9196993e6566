//! The loop decision after one iteration: MTX-SPEC 5.6 in priority order, with the
//! forced escalation of 5.7 and a failure category from [`crate::classify`].
//!
//! The host re-checks rules 1, 3 and 5.7 whatever this returns; this module must never
//! propose `complete` without a passed validation, and never loosen a rule.

use crate::bindings::mtx::plugin::types::{
    DecisionInput, EscalationDecision, FailureCategory, LoopDecision, PluginError,
};
use crate::classify::categorize;

/// Gate reason when an escalation is due but the MT is already at the top level.
const EXHAUSTED: &str = "escalation_exhausted";

/// Decides what the loop does next; the first matching rule of 5.6 wins.
pub fn decide(input: &DecisionInput) -> Result<EscalationDecision, PluginError> {
    if input.effective_max_iterations == 0 {
        return Err(PluginError::InvalidInput(format!(
            "decision input for {} has effective-max-iterations 0; it must be at least 1",
            input.mt_id
        )));
    }
    if input.level > input.max_level {
        return Err(PluginError::InvalidInput(format!(
            "decision input for {} has level {} above max-level {}",
            input.mt_id, input.level, input.max_level
        )));
    }
    let claimed = input.claimed_complete && !input.malformed_claim;
    let evidence_ok = input.evidence_verified != Some(false);

    // Rule 1: a well-formed claim whose validation passed (evidence included).
    if claimed && input.validation_passed == Some(true) && evidence_ok {
        return Ok(outcome(LoopDecision::Complete, None, "validation_passed", None));
    }
    // Rule 2.
    if input.operator_skip {
        return Ok(outcome(LoopDecision::Skip, None, "user_skip", None));
    }
    let category = Some(categorize(input));
    // Rule 3.
    if input.iteration >= input.effective_max_iterations {
        return Ok(escalate(input, category, "max_iterations_per_mt", None));
    }
    // Rule 4, escalating half: checked before 5.7 because two false completions in a row
    // are also two failures in a row, and this reason says more.
    if claimed && input.false_completion_streak >= 1 {
        return Ok(escalate(input, category, "false_completion_streak", None));
    }
    // 5.7: a failure now after a failure before, at this level, forces escalation.
    if is_failure(input) && input.failure_streak >= 1 {
        return Ok(escalate(input, category, "consecutive_failures", None));
    }
    // Rule 4, retrying half.
    if claimed {
        let why = if evidence_ok { "validation_error" } else { "evidence_invalid" };
        return Ok(outcome(LoopDecision::Retry, category, why, None));
    }
    // Rule 5: no claim.
    if input.blocked {
        let said = input.blocked_reason.as_deref().unwrap_or("").trim();
        let reason = format!("blocked: {said}");
        return Ok(if recoverable_block(input) {
            outcome(LoopDecision::Retry, category, &reason, Some(true))
        } else {
            escalate(input, category, &reason, Some(false))
        });
    }
    if input.model_error.is_some() {
        return Ok(outcome(LoopDecision::Retry, category, "model_error", None));
    }
    // Rules 5 (still working) and 6.
    Ok(outcome(LoopDecision::Retry, category, "no_claim", None))
}

fn outcome(
    decision: LoopDecision,
    failure_category: Option<FailureCategory>,
    reason: &str,
    recoverable_block: Option<bool>,
) -> EscalationDecision {
    EscalationDecision { decision, failure_category, reason: reason.to_string(), recoverable_block }
}

/// `escalate`, or the `escalation_exhausted` hard gate when there is no level left.
fn escalate(
    input: &DecisionInput,
    category: Option<FailureCategory>,
    reason: &str,
    recoverable_block: Option<bool>,
) -> EscalationDecision {
    if input.level >= input.max_level {
        outcome(LoopDecision::HardGate, category, EXHAUSTED, recoverable_block)
    } else {
        outcome(LoopDecision::Escalate, category, reason, recoverable_block)
    }
}

/// A failure per 5.7 [D]: validation ran and did not pass (false completion, evidence
/// failure, validation error), or edits were refused for scope.
fn is_failure(input: &DecisionInput) -> bool {
    let validation_failed = input.validation_ran && input.validation_passed != Some(true);
    let evidence_failed = input.claimed_complete && input.evidence_verified == Some(false);
    validation_failed || evidence_failed || !input.scope_violations.is_empty()
}

/// 5.6 [D]: the first block of this MT at this level, with a reason no earlier block of
/// this MT gave. Reasons compare trimmed, case- and whitespace-insensitively, which is
/// stricter than byte equality (the spec allows stricter, never looser).
fn recoverable_block(input: &DecisionInput) -> bool {
    let reason = normalize(input.blocked_reason.as_deref().unwrap_or(""));
    let earlier_here = input.history.iter().any(|h| h.level == input.level && h.blocked_reason.is_some());
    let repeated =
        input.history.iter().filter_map(|h| h.blocked_reason.as_deref()).any(|r| normalize(r) == reason);
    !earlier_here && !repeated
}

fn normalize(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bindings::mtx::plugin::types::{IterationSummary, ModelErrorKind, SpecOutcome};

    pub(crate) fn input() -> DecisionInput {
        DecisionInput {
            mt_id: "MT-001".into(),
            task_tags: vec![],
            iteration: 1,
            effective_max_iterations: 4,
            level: 0,
            max_level: 4,
            claimed_complete: false,
            malformed_claim: false,
            blocked: false,
            blocked_reason: None,
            validation_ran: false,
            validation_passed: None,
            evidence_verified: None,
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

    pub(crate) fn failed_spec(index: u32, stderr: &str) -> SpecOutcome {
        SpecOutcome {
            spec_index: index,
            command: "cargo test".into(),
            blocking: true,
            passed: false,
            exit_code: 101,
            timed_out: false,
            error: None,
            stderr_tail: stderr.into(),
            stdout_tail: String::new(),
        }
    }

    fn false_completion() -> DecisionInput {
        let mut i = input();
        i.claimed_complete = true;
        i.validation_ran = true;
        i.validation_passed = Some(false);
        i.evidence_verified = Some(true);
        i.spec_outcomes = vec![failed_spec(0, "")];
        i
    }

    fn block(level: u32, reason: &str) -> IterationSummary {
        IterationSummary {
            iteration: 1,
            level,
            claimed_complete: false,
            validation_passed: None,
            failure_category: None,
            blocked_reason: Some(reason.into()),
            passed_specs: vec![],
        }
    }

    #[test]
    fn validated_claim_completes_without_category() {
        let mut i = false_completion();
        i.validation_passed = Some(true);
        i.spec_outcomes[0].passed = true;
        let d = decide(&i).unwrap();
        assert_eq!(d.decision, LoopDecision::Complete);
        assert_eq!(d.failure_category, None);
    }

    #[test]
    fn unverified_evidence_or_malformed_claim_never_completes() {
        let mut i = false_completion();
        i.validation_passed = Some(true);
        i.evidence_verified = Some(false);
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Retry, "evidence_invalid"));
        let mut m = false_completion();
        m.validation_passed = Some(true);
        m.malformed_claim = true;
        assert_eq!(decide(&m).unwrap().decision, LoopDecision::Retry);
    }

    #[test]
    fn success_outranks_skip_and_iteration_limit() {
        let mut i = false_completion();
        i.validation_passed = Some(true);
        i.operator_skip = true;
        i.iteration = 4;
        assert_eq!(decide(&i).unwrap().decision, LoopDecision::Complete);
    }

    #[test]
    fn operator_skip_skips() {
        let mut i = input();
        i.operator_skip = true;
        i.iteration = 9;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Skip, "user_skip"));
    }

    #[test]
    fn iteration_limit_escalates_below_the_top() {
        let mut i = input();
        i.iteration = 4;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Escalate, "max_iterations_per_mt"));
        assert_eq!(d.failure_category, Some(FailureCategory::IncompleteImplementation));
    }

    #[test]
    fn iteration_limit_at_the_top_is_a_hard_gate() {
        let mut i = input();
        i.iteration = 4;
        i.level = 4;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::HardGate, "escalation_exhausted"));
    }

    #[test]
    fn first_false_completion_retries() {
        let d = decide(&false_completion()).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Retry, "validation_error"));
        assert_eq!(d.failure_category, Some(FailureCategory::Unknown));
    }

    #[test]
    fn second_consecutive_false_completion_escalates() {
        let mut i = false_completion();
        i.false_completion_streak = 1;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Escalate, "false_completion_streak"));
    }

    #[test]
    fn two_consecutive_failures_force_escalation() {
        let mut i = input();
        i.validation_ran = true;
        i.validation_passed = Some(false);
        i.failure_streak = 1;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Escalate, "consecutive_failures"));
        let mut s = input();
        s.scope_violations = vec!["../outside".into()];
        s.failure_streak = 1;
        let d = decide(&s).unwrap();
        assert_eq!(d.decision, LoopDecision::Escalate);
        assert_eq!(d.failure_category, Some(FailureCategory::ScopeViolation));
    }

    #[test]
    fn forced_escalation_at_the_top_is_a_hard_gate() {
        let mut i = false_completion();
        i.failure_streak = 1;
        i.level = 4;
        assert_eq!(decide(&i).unwrap().decision, LoopDecision::HardGate);
    }

    #[test]
    fn a_no_claim_iteration_is_not_a_failure() {
        let mut i = input();
        i.failure_streak = 1;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Retry, "no_claim"));
    }

    #[test]
    fn first_block_with_new_reason_is_recoverable() {
        let mut i = input();
        i.blocked = true;
        i.blocked_reason = Some("need the schema file".into());
        i.history = vec![block(0, "other thing")];
        i.level = 1;
        let d = decide(&i).unwrap();
        assert_eq!(d.decision, LoopDecision::Retry);
        assert_eq!(d.recoverable_block, Some(true));
        assert_eq!(d.reason, "blocked: need the schema file");
        assert_eq!(d.failure_category, Some(FailureCategory::IncompleteImplementation));
    }

    #[test]
    fn second_block_at_the_same_level_escalates() {
        let mut i = input();
        i.blocked = true;
        i.blocked_reason = Some("new reason".into());
        i.history = vec![block(0, "old reason")];
        let d = decide(&i).unwrap();
        assert_eq!(d.decision, LoopDecision::Escalate);
        assert_eq!(d.recoverable_block, Some(false));
    }

    #[test]
    fn repeated_block_reason_from_a_lower_level_escalates() {
        let mut i = input();
        i.level = 1;
        i.blocked = true;
        i.blocked_reason = Some("Need  the schema".into());
        i.history = vec![block(0, "need the schema")];
        assert_eq!(decide(&i).unwrap().decision, LoopDecision::Escalate);
    }

    #[test]
    fn claim_outranks_block() {
        let mut i = false_completion();
        i.blocked = true;
        i.blocked_reason = Some("x".into());
        assert_eq!(decide(&i).unwrap().reason, "validation_error");
    }

    #[test]
    fn model_error_retries_with_its_category() {
        let mut i = input();
        i.model_error = Some(ModelErrorKind::Transient);
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Retry, "model_error"));
        i.model_error = Some(ModelErrorKind::ContextOverflow);
        assert_eq!(decide(&i).unwrap().failure_category, Some(FailureCategory::ContextOverflow));
    }

    #[test]
    fn unrecoverable_block_at_the_top_is_a_hard_gate() {
        let mut i = input();
        i.level = 4;
        i.blocked = true;
        i.blocked_reason = Some("same".into());
        i.history = vec![block(4, "same")];
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::HardGate, "escalation_exhausted"));
        assert_eq!(d.recoverable_block, Some(false));
    }

    #[test]
    fn second_false_completion_at_the_top_is_a_hard_gate() {
        let mut i = false_completion();
        i.level = 4;
        i.false_completion_streak = 1;
        assert_eq!(decide(&i).unwrap().decision, LoopDecision::HardGate);
    }

    #[test]
    fn evidence_failure_counts_as_a_failure_for_5_7() {
        let mut i = false_completion();
        i.validation_passed = Some(true);
        i.evidence_verified = Some(false);
        i.failure_streak = 1;
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Escalate, "consecutive_failures"));
    }

    #[test]
    fn iteration_limit_outranks_a_recoverable_block() {
        let mut i = input();
        i.iteration = 4;
        i.blocked = true;
        i.blocked_reason = Some("first".into());
        let d = decide(&i).unwrap();
        assert_eq!((d.decision, d.reason.as_str()), (LoopDecision::Escalate, "max_iterations_per_mt"));
    }

    #[test]
    fn impossible_inputs_are_refused() {
        let mut i = input();
        i.effective_max_iterations = 0;
        assert!(matches!(decide(&i), Err(PluginError::InvalidInput(_))));
        let mut j = input();
        j.level = 5;
        assert!(matches!(decide(&j), Err(PluginError::InvalidInput(_))));
    }
}
