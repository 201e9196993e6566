//! Field-by-field conversions between the spec records of `mtx-types` / `mtx-wp` and the
//! WIT records the plugins see (`mtx_plugin::bindings::types`).
//!
//! Pure mapping only: no defaults are invented beyond what the WIT contract documents, and
//! nothing here decides anything about the loop.

use mtx_plugin::bindings::types as wit;
use mtx_types::{
    CompletionSignal, DoneCriterion, DoneVerification, EscalationTarget, ExecutionTier, ExpectedOutput,
    FailureCategory, FileAccessSpec, LoRAInfo, MicroTaskDefinition, RiskLevel, VerificationSpec,
    VerifyExpect,
};
use mtx_wp::WorkPacket;

/// The parsed packet as the planner's WIT `work-packet`.
pub fn work_packet(wp: &WorkPacket) -> wit::WorkPacket {
    wit::WorkPacket {
        wp_id: wp.wp_id.clone(),
        title: wp.title.clone(),
        description: wp.description.clone(),
        in_scope_paths: wp.in_scope_paths.clone(),
        out_of_scope: wp.out_of_scope.clone(),
        test_plan: wp.test_plan.clone(),
        done_means: wp.done_means.clone(),
        risk_tier: wp.risk_tier.clone(),
        touched_file_budget: wp.touched_file_budget,
        files_to_open: wp.bootstrap.files_to_open.clone(),
        search_terms: wp.bootstrap.search_terms.clone(),
        implementation_order: wp.implementation_order.clone(),
        clause_rows: wp
            .clause_rows
            .iter()
            .map(|r| wit::ClauseRow {
                clause: r.clause.clone(),
                code_surfaces: r.code_surfaces.clone(),
                tests: r.tests.clone(),
            })
            .collect(),
        mt_hints: wp
            .mt_hints
            .iter()
            .filter(|h| h.active)
            .map(|h| wit::MtHint {
                mt_id: h.mt_id.clone(),
                clause: h.clause.clone(),
                code_surfaces: h.code_surfaces.clone(),
                expected_tests: h.expected_tests.clone(),
                depends_on: h.depends_on.clone(),
            })
            .collect(),
    }
}

fn risk_from_wit(r: wit::RiskLevel) -> RiskLevel {
    match r {
        wit::RiskLevel::Low => RiskLevel::Low,
        wit::RiskLevel::Medium => RiskLevel::Medium,
        wit::RiskLevel::High => RiskLevel::High,
    }
}

pub fn risk_to_wit(r: RiskLevel) -> wit::RiskLevel {
    match r {
        RiskLevel::Low => wit::RiskLevel::Low,
        RiskLevel::Medium => wit::RiskLevel::Medium,
        RiskLevel::High => wit::RiskLevel::High,
    }
}

/// A planner's WIT `mt-definition` as the spec record (3.6).
pub fn mt_from_wit(d: &wit::MtDefinition) -> MicroTaskDefinition {
    MicroTaskDefinition {
        mt_id: d.mt_id.clone(),
        name: d.name.clone(),
        scope: d.scope.clone(),
        files: FileAccessSpec {
            read: d.files.read.clone(),
            modify: d.files.modify.clone(),
            create: d.files.create.clone(),
        },
        actions: d.actions.clone(),
        verify: d
            .verify
            .iter()
            .map(|v| VerificationSpec {
                command: v.command.clone(),
                expect: match v.expect {
                    wit::Expectation::ExitZero => VerifyExpect::Exit0,
                    wit::Expectation::ExitNonzero => VerifyExpect::ExitNonzero,
                    wit::Expectation::Contains => VerifyExpect::Contains,
                    wit::Expectation::NotContains => VerifyExpect::NotContains,
                },
                pattern: v.pattern.clone(),
                timeout_ms: u64::from(v.timeout_ms),
                blocking: v.blocking,
            })
            .collect(),
        done: d
            .done
            .iter()
            .map(|c| DoneCriterion {
                description: c.description.clone(),
                verification: match c.verification {
                    wit::DoneVerification::Automated => DoneVerification::Automated,
                    wit::DoneVerification::EvidenceRequired => DoneVerification::EvidenceRequired,
                },
                verify_ref: c.verify_ref.map(i64::from),
            })
            .collect(),
        depends_on: d.depends_on.clone(),
        token_budget: d.token_budget,
        execution_tier: Some(match d.execution_tier {
            wit::ExecutionTier::LocalSmall => ExecutionTier::LocalSmall,
            wit::ExecutionTier::LocalLarge => ExecutionTier::LocalLarge,
            wit::ExecutionTier::Cloud => ExecutionTier::Cloud,
            wit::ExecutionTier::HumanReview => ExecutionTier::HumanReview,
        }),
        allowed_tools: Some(d.allowed_tools.clone()),
        retry_budget: Some(i64::from(d.retry_budget)),
        escalation_target: d.escalation_target.map(|t| match t {
            wit::EscalationTarget::LocalLarge => EscalationTarget::LocalLarge,
            wit::EscalationTarget::Cloud => EscalationTarget::Cloud,
            wit::EscalationTarget::HumanReview => EscalationTarget::HumanReview,
            wit::EscalationTarget::RoleMailbox => EscalationTarget::RoleMailbox,
        }),
        expected_output: Some(match d.expected_output {
            wit::ExpectedOutput::Patch => ExpectedOutput::Patch,
            wit::ExpectedOutput::Artifact => ExpectedOutput::Artifact,
            wit::ExpectedOutput::StructuredAnswer => ExpectedOutput::StructuredAnswer,
            wit::ExpectedOutput::DecisionSupport => ExpectedOutput::DecisionSupport,
        }),
        task_tags: d.task_tags.clone(),
        risk_level: risk_from_wit(d.risk_level),
        notes: d.notes.clone(),
        extra: serde_json::Map::new(),
    }
}

/// The spec record as the WIT `mt-definition` a validator sees.
pub fn mt_to_wit(d: &MicroTaskDefinition) -> wit::MtDefinition {
    let clamp_u32 = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
    wit::MtDefinition {
        mt_id: d.mt_id.clone(),
        name: d.name.clone(),
        scope: d.scope.clone(),
        files: wit::FileAccess {
            read: d.files.read.clone(),
            modify: d.files.modify.clone(),
            create: d.files.create.clone(),
        },
        actions: d.actions.clone(),
        verify: d
            .verify
            .iter()
            .map(|v| wit::VerifySpec {
                command: v.command.clone(),
                expect: match v.expect {
                    VerifyExpect::Exit0 => wit::Expectation::ExitZero,
                    VerifyExpect::ExitNonzero => wit::Expectation::ExitNonzero,
                    VerifyExpect::Contains => wit::Expectation::Contains,
                    VerifyExpect::NotContains => wit::Expectation::NotContains,
                },
                pattern: v.pattern.clone(),
                timeout_ms: v.timeout_ms.min(u64::from(u32::MAX)) as u32,
                blocking: v.blocking,
            })
            .collect(),
        done: d
            .done
            .iter()
            .map(|c| wit::DoneCriterion {
                description: c.description.clone(),
                verification: match c.verification {
                    DoneVerification::Automated => wit::DoneVerification::Automated,
                    DoneVerification::EvidenceRequired => wit::DoneVerification::EvidenceRequired,
                },
                verify_ref: c.verify_ref.map(clamp_u32),
            })
            .collect(),
        depends_on: d.depends_on.clone(),
        token_budget: d.token_budget,
        execution_tier: match d.execution_tier.unwrap_or(ExecutionTier::LocalSmall) {
            ExecutionTier::LocalSmall => wit::ExecutionTier::LocalSmall,
            ExecutionTier::LocalLarge => wit::ExecutionTier::LocalLarge,
            ExecutionTier::Cloud => wit::ExecutionTier::Cloud,
            ExecutionTier::HumanReview => wit::ExecutionTier::HumanReview,
        },
        allowed_tools: d.allowed_tools.clone().unwrap_or_default(),
        retry_budget: d.retry_budget.map(clamp_u32).unwrap_or(0),
        escalation_target: d.escalation_target.map(|t| match t {
            EscalationTarget::LocalLarge => wit::EscalationTarget::LocalLarge,
            EscalationTarget::Cloud => wit::EscalationTarget::Cloud,
            EscalationTarget::HumanReview => wit::EscalationTarget::HumanReview,
            EscalationTarget::RoleMailbox => wit::EscalationTarget::RoleMailbox,
        }),
        expected_output: match d.expected_output.unwrap_or(ExpectedOutput::Patch) {
            ExpectedOutput::Patch => wit::ExpectedOutput::Patch,
            ExpectedOutput::Artifact => wit::ExpectedOutput::Artifact,
            ExpectedOutput::StructuredAnswer => wit::ExpectedOutput::StructuredAnswer,
            ExpectedOutput::DecisionSupport => wit::ExpectedOutput::DecisionSupport,
        },
        task_tags: d.task_tags.clone(),
        risk_level: risk_to_wit(d.risk_level),
        notes: d.notes.clone(),
    }
}

pub fn lora_to_wit(l: &LoRAInfo) -> wit::LoraInfo {
    wit::LoraInfo {
        lora_id: l.lora_id.clone(),
        lora_version: l.lora_version.clone(),
        base_model_id: l.base_model_id.clone(),
        trained_on_task_types: l.trained_on_task_types.clone(),
        specialization: l.specialization.clone(),
        weak_on_task_types: l.weak_on_task_types.clone(),
        last_trained_at: l.last_trained_at.clone(),
        pass_at_one: l.eval_metrics.as_ref().map(|m| m.pass_at_1),
        training_priority: l.training_priority,
    }
}

pub fn category_to_wit(c: FailureCategory) -> wit::FailureCategory {
    match c {
        FailureCategory::SyntaxErrorIsolated => wit::FailureCategory::SyntaxErrorIsolated,
        FailureCategory::SyntaxErrorSystemic => wit::FailureCategory::SyntaxErrorSystemic,
        FailureCategory::LogicErrorRegression => wit::FailureCategory::LogicErrorRegression,
        FailureCategory::ScopeViolation => wit::FailureCategory::ScopeViolation,
        FailureCategory::ValidationFlaky => wit::FailureCategory::ValidationFlaky,
        FailureCategory::TimeoutExceeded => wit::FailureCategory::TimeoutExceeded,
        FailureCategory::ContextOverflow => wit::FailureCategory::ContextOverflow,
        FailureCategory::HallucinationApi => wit::FailureCategory::HallucinationApi,
        FailureCategory::IncompleteImplementation => wit::FailureCategory::IncompleteImplementation,
        FailureCategory::Unknown => wit::FailureCategory::Unknown,
    }
}

pub fn category_from_wit(c: wit::FailureCategory) -> FailureCategory {
    match c {
        wit::FailureCategory::SyntaxErrorIsolated => FailureCategory::SyntaxErrorIsolated,
        wit::FailureCategory::SyntaxErrorSystemic => FailureCategory::SyntaxErrorSystemic,
        wit::FailureCategory::LogicErrorRegression => FailureCategory::LogicErrorRegression,
        wit::FailureCategory::ScopeViolation => FailureCategory::ScopeViolation,
        wit::FailureCategory::ValidationFlaky => FailureCategory::ValidationFlaky,
        wit::FailureCategory::TimeoutExceeded => FailureCategory::TimeoutExceeded,
        wit::FailureCategory::ContextOverflow => FailureCategory::ContextOverflow,
        wit::FailureCategory::HallucinationApi => FailureCategory::HallucinationApi,
        wit::FailureCategory::IncompleteImplementation => FailureCategory::IncompleteImplementation,
        wit::FailureCategory::Unknown => FailureCategory::Unknown,
    }
}

pub fn completion_to_wit(s: &CompletionSignal) -> wit::CompletionSignal {
    wit::CompletionSignal {
        claimed_complete: s.claimed_complete,
        evidence: s
            .evidence
            .iter()
            .flatten()
            .map(|e| wit::CompletionEvidence {
                criterion: e.criterion.clone(),
                evidence_location: e.evidence_location.clone(),
            })
            .collect(),
        blocked: s.blocked,
        blocked_reason: s.blocked_reason.clone(),
        blocked_need: s.blocked_need.clone(),
        malformed: s.malformed,
        claimed_mt_id: s.claimed_mt_id.clone(),
        evidence_verified: s.evidence_verified,
        parse_warnings: s.parse_warnings.clone(),
    }
}

pub fn handle_from_wit(h: &wit::ArtifactHandle) -> mtx_types::ArtifactHandle {
    mtx_types::ArtifactHandle {
        artifact_id: h.artifact_id.clone(),
        path: h.path.clone(),
        sha256: h.sha256.clone(),
        size_bytes: h.size_bytes,
        media_type: h.media_type.clone(),
    }
}

pub fn handle_to_wit(h: &mtx_types::ArtifactHandle) -> wit::ArtifactHandle {
    wit::ArtifactHandle {
        artifact_id: h.artifact_id.clone(),
        path: h.path.clone(),
        sha256: h.sha256.clone(),
        size_bytes: h.size_bytes,
        media_type: h.media_type.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition() -> MicroTaskDefinition {
        MicroTaskDefinition {
            mt_id: "MT-001".into(),
            name: "first".into(),
            scope: "src/a.rs".into(),
            files: FileAccessSpec {
                read: vec!["src/b.rs".into()],
                modify: vec!["src/a.rs".into()],
                create: vec![],
            },
            actions: vec!["edit".into()],
            verify: vec![VerificationSpec {
                command: "cargo test a".into(),
                expect: VerifyExpect::Contains,
                pattern: Some("ok".into()),
                timeout_ms: 60_000,
                blocking: false,
            }],
            done: vec![DoneCriterion {
                description: "tests pass".into(),
                verification: DoneVerification::Automated,
                verify_ref: Some(0),
            }],
            depends_on: vec!["MT-000".into()],
            token_budget: 2048,
            execution_tier: Some(ExecutionTier::LocalLarge),
            allowed_tools: Some(vec![]),
            retry_budget: Some(2),
            escalation_target: Some(EscalationTarget::Cloud),
            expected_output: Some(ExpectedOutput::Patch),
            task_tags: vec!["rust".into()],
            risk_level: RiskLevel::Medium,
            notes: Some("n".into()),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn mt_definition_survives_the_wit_round_trip() {
        let d = definition();
        assert_eq!(mt_from_wit(&mt_to_wit(&d)), d);
    }

    #[test]
    fn failure_categories_map_both_ways() {
        for c in FailureCategory::ALL {
            assert_eq!(category_from_wit(category_to_wit(c)), c);
        }
    }
}
