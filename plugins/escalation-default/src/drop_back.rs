//! Smart drop-back after a success above level 0 (MTX-SPEC 5.10), with the [D]
//! definitions of "relevant retraining" and "simpler" and the confidence of rule 4.
//!
//! Pure: it must never consult a clock; recency is judged only against the escalation
//! record's `created_at` the host passes in.

use crate::bindings::mtx::plugin::types::{
    Confidence, DropBackAction, DropBackDecision, DropBackInput, DropBackStrategy, FailureCategory, MtShape,
    PluginError, RiskLevel,
};
use crate::rfc3339;

/// Drop-back always returns to level 0 [D].
const TARGET_LEVEL: u32 = 0;

pub fn drop_back(input: &DropBackInput) -> Result<DropBackDecision, PluginError> {
    match input.strategy {
        // Rule 1.
        DropBackStrategy::Never => Ok(stay("strategy never", Confidence::High)),
        // Rule 2.
        DropBackStrategy::Always if input.current_level > 0 => {
            Ok(drop("strategy always and the MT succeeded above level 0", Confidence::High))
        }
        DropBackStrategy::Always => Ok(stay("already at level 0", Confidence::High)),
        DropBackStrategy::Smart if input.current_level == 0 => {
            Ok(stay("already at level 0", Confidence::High))
        }
        DropBackStrategy::Smart => smart(input),
    }
}

fn smart(input: &DropBackInput) -> Result<DropBackDecision, PluginError> {
    // Rules 3.1-3.3.
    if let Some(category) = input.failure_category {
        let name = category_name(category);
        match category {
            FailureCategory::LogicErrorRegression
            | FailureCategory::HallucinationApi
            | FailureCategory::ContextOverflow => {
                return Ok(stay(&format!("failure category {name} is a capability gap"), Confidence::High));
            }
            FailureCategory::SyntaxErrorIsolated
            | FailureCategory::ValidationFlaky
            | FailureCategory::ScopeViolation => {
                return Ok(drop(
                    &format!("failure category {name} is transient or isolated"),
                    Confidence::High,
                ));
            }
            _ => {}
        }
    }
    // Rule 3.4.
    if let Some(lora) = retrained_since_escalation(input)? {
        return Ok(drop(
            &format!("LoRA {lora} was retrained on this MT's tags since the escalation"),
            Confidence::Medium,
        ));
    }
    // Rule 3.5.
    if !input.remaining.is_empty() && input.remaining.iter().all(|r| simpler(r, &input.mt)) {
        return Ok(drop("every remaining MT is simpler than the escalated one", Confidence::Low));
    }
    // Rule 3.6.
    Ok(stay("no smart drop-back rule applies", Confidence::Low))
}

/// Rule 3.4 [D]: a LoRA whose `last_trained_at` is after the escalation record's
/// `created_at` and whose `trained_on_task_types` share a tag with the MT. Returns the
/// first such LoRA id in id order, so the reason is deterministic.
fn retrained_since_escalation(input: &DropBackInput) -> Result<Option<String>, PluginError> {
    let Some(created) = input.escalation_created_at.as_deref() else {
        return Ok(None);
    };
    let created = rfc3339::parse(created)
        .map_err(|e| PluginError::InvalidInput(format!("escalation-created-at: {e}")))?;
    let mut found: Vec<&str> = Vec::new();
    for lora in &input.registry {
        let Some(trained) = lora.last_trained_at.as_deref() else { continue };
        let trained = rfc3339::parse(trained).map_err(|e| {
            PluginError::InvalidInput(format!("last-trained-at of LoRA {}: {e}", lora.lora_id))
        })?;
        let shares_tag = lora.trained_on_task_types.iter().any(|t| input.task_tags.contains(t));
        if trained > created && shares_tag {
            found.push(&lora.lora_id);
        }
    }
    found.sort_unstable();
    Ok(found.first().map(|s| s.to_string()))
}

fn rank(risk: RiskLevel) -> u8 {
    match risk {
        RiskLevel::Low => 0,
        RiskLevel::Medium => 1,
        RiskLevel::High => 2,
    }
}

/// [D] "simpler": a lower risk rank, or the same rank with a smaller token budget and no
/// more files touched.
fn simpler(other: &MtShape, escalated: &MtShape) -> bool {
    let (a, b) = (rank(other.risk_level), rank(escalated.risk_level));
    a < b
        || (a == b
            && other.token_budget < escalated.token_budget
            && other.files_touched <= escalated.files_touched)
}

fn category_name(category: FailureCategory) -> &'static str {
    match category {
        FailureCategory::SyntaxErrorIsolated => "syntax_error_isolated",
        FailureCategory::SyntaxErrorSystemic => "syntax_error_systemic",
        FailureCategory::LogicErrorRegression => "logic_error_regression",
        FailureCategory::ScopeViolation => "scope_violation",
        FailureCategory::ValidationFlaky => "validation_flaky",
        FailureCategory::TimeoutExceeded => "timeout_exceeded",
        FailureCategory::ContextOverflow => "context_overflow",
        FailureCategory::HallucinationApi => "hallucination_api",
        FailureCategory::IncompleteImplementation => "incomplete_implementation",
        FailureCategory::Unknown => "unknown",
    }
}

fn stay(reason: &str, confidence: Confidence) -> DropBackDecision {
    DropBackDecision {
        action: DropBackAction::StayEscalated,
        target_level: None,
        reason: reason.into(),
        confidence,
    }
}

fn drop(reason: &str, confidence: Confidence) -> DropBackDecision {
    DropBackDecision {
        action: DropBackAction::DropBack,
        target_level: Some(TARGET_LEVEL),
        reason: reason.into(),
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::mtx::plugin::types::LoraInfo;

    fn shape(id: &str, risk: RiskLevel, budget: u32, files: u32) -> MtShape {
        MtShape { mt_id: id.into(), risk_level: risk, token_budget: budget, files_touched: files }
    }

    fn input(strategy: DropBackStrategy, category: Option<FailureCategory>) -> DropBackInput {
        DropBackInput {
            strategy,
            current_level: 2,
            failure_category: category,
            escalation_created_at: Some("2026-11-20T10:00:00Z".into()),
            mt: shape("MT-001", RiskLevel::Medium, 4000, 2),
            task_tags: vec!["rust".into(), "parser".into()],
            remaining: vec![shape("MT-002", RiskLevel::High, 1000, 1)],
            registry: vec![],
        }
    }

    fn lora(id: &str, trained_at: &str, tags: &[&str]) -> LoraInfo {
        LoraInfo {
            lora_id: id.into(),
            lora_version: None,
            base_model_id: "m".into(),
            trained_on_task_types: tags.iter().map(|t| t.to_string()).collect(),
            specialization: vec![],
            weak_on_task_types: vec![],
            last_trained_at: Some(trained_at.into()),
            pass_at_one: None,
            training_priority: None,
        }
    }

    fn action(d: &DropBackDecision) -> (DropBackAction, Confidence) {
        (d.action, d.confidence)
    }

    #[test]
    fn never_stays_and_always_drops_above_zero() {
        let d =
            drop_back(&input(DropBackStrategy::Never, Some(FailureCategory::SyntaxErrorIsolated))).unwrap();
        assert_eq!(action(&d), (DropBackAction::StayEscalated, Confidence::High));
        let d = drop_back(&input(DropBackStrategy::Always, Some(FailureCategory::HallucinationApi))).unwrap();
        assert_eq!(action(&d), (DropBackAction::DropBack, Confidence::High));
        assert_eq!(d.target_level, Some(0));
        let mut at_zero = input(DropBackStrategy::Always, None);
        at_zero.current_level = 0;
        assert_eq!(drop_back(&at_zero).unwrap().action, DropBackAction::StayEscalated);
    }

    #[test]
    fn capability_gaps_stay_escalated() {
        for c in [
            FailureCategory::LogicErrorRegression,
            FailureCategory::HallucinationApi,
            FailureCategory::ContextOverflow,
        ] {
            let d = drop_back(&input(DropBackStrategy::Smart, Some(c))).unwrap();
            assert_eq!(action(&d), (DropBackAction::StayEscalated, Confidence::High), "{c:?}");
        }
    }

    #[test]
    fn transient_categories_drop_back() {
        for c in [
            FailureCategory::SyntaxErrorIsolated,
            FailureCategory::ValidationFlaky,
            FailureCategory::ScopeViolation,
        ] {
            let d = drop_back(&input(DropBackStrategy::Smart, Some(c))).unwrap();
            assert_eq!(action(&d), (DropBackAction::DropBack, Confidence::High), "{c:?}");
        }
    }

    #[test]
    fn relevant_retraining_drops_back_with_medium_confidence() {
        let mut i = input(DropBackStrategy::Smart, Some(FailureCategory::SyntaxErrorSystemic));
        i.registry = vec![
            lora("b", "2026-11-21T00:00:00Z", &["parser"]),
            lora("a", "2026-11-22T00:00:00+01:00", &["rust"]),
        ];
        let d = drop_back(&i).unwrap();
        assert_eq!(action(&d), (DropBackAction::DropBack, Confidence::Medium));
        assert!(d.reason.contains("LoRA a "), "{}", d.reason);
    }

    #[test]
    fn retraining_before_the_escalation_or_on_other_tags_does_not_count() {
        let mut i = input(DropBackStrategy::Smart, Some(FailureCategory::Unknown));
        i.registry = vec![
            lora("old", "2026-11-19T00:00:00Z", &["rust"]),
            lora("other", "2026-11-22T00:00:00Z", &["go"]),
        ];
        let d = drop_back(&i).unwrap();
        assert_eq!(action(&d), (DropBackAction::StayEscalated, Confidence::Low));
    }

    #[test]
    fn simpler_remaining_mts_drop_back_with_low_confidence() {
        let mut i = input(DropBackStrategy::Smart, None);
        i.remaining =
            vec![shape("MT-002", RiskLevel::Low, 8000, 5), shape("MT-003", RiskLevel::Medium, 3000, 2)];
        let d = drop_back(&i).unwrap();
        assert_eq!(action(&d), (DropBackAction::DropBack, Confidence::Low));
    }

    #[test]
    fn one_harder_remaining_mt_keeps_the_level() {
        let mut i = input(DropBackStrategy::Smart, Some(FailureCategory::TimeoutExceeded));
        i.remaining =
            vec![shape("MT-002", RiskLevel::Low, 100, 1), shape("MT-003", RiskLevel::Medium, 3000, 3)];
        let d = drop_back(&i).unwrap();
        assert_eq!(action(&d), (DropBackAction::StayEscalated, Confidence::Low));
        i.remaining.clear();
        assert_eq!(drop_back(&i).unwrap().action, DropBackAction::StayEscalated);
    }

    #[test]
    fn bad_timestamps_are_refused() {
        let mut i = input(DropBackStrategy::Smart, None);
        i.registry = vec![lora("a", "yesterday", &["rust"])];
        assert!(matches!(drop_back(&i), Err(PluginError::InvalidInput(_))));
    }
}
