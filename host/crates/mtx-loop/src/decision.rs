//! The host's side of the loop decision (MTX-SPEC 5.6-5.9, 11.3-11.4): the reference
//! decision logic, the invariants every escalation-policy proposal is checked against,
//! and the counters and limits those checks need.
//!
//! The escalation-policy component proposes; [`enforce`] decides what the loop does.
//! `complete` without rule 1 holding is refused; the iteration limit, the forced
//! escalation of 5.7 and the MT token cap override a `retry`; a policy may be stricter
//! than the host's recoverable-block rule, never looser; escalation is always exactly one
//! level; `skip` and `abort` need an operator request. This module must never read state,
//! clocks or configuration itself: callers pass every fact in.

use serde::{Deserialize, Serialize};

use crate::types::{
    EscalationLevel, EscalationTarget, ExecutionTier, FailureCategory, LoopDecision, MicroTaskDefinition,
};

/// 5.7 / 11.3: this many consecutive failures at one level force escalation.
pub const CONSECUTIVE_FAILURE_LIMIT: u32 = 2;
/// 5.6 rule 4: the second consecutive false completion at a level escalates.
pub const FALSE_COMPLETION_LIMIT: u32 = 2;
/// 11.3: total tokens above this multiple of the estimated budget emit a warning.
pub const TOKEN_WARNING_MULTIPLE: u64 = 10;
/// 11.3: total tokens above this multiple of the estimated budget raise a hard gate.
pub const TOKEN_GATE_MULTIPLE: u64 = 20;
/// 11.3: a job running longer than this multiple of `max_duration_ms` is poisoned.
pub const POISON_DURATION_MULTIPLE: u64 = 2;
/// 11.4: per-iteration cap (prompt + completion) as a multiple of `token_budget`.
pub const ITERATION_TOKEN_MULTIPLE: u64 = 2;
/// 11.4: per-MT cap (all levels) as a multiple of `token_budget`.
pub const MT_TOKEN_MULTIPLE: u64 = 10;

/// What the escalation-policy component may propose. `escalate` carries no level: the
/// host always moves exactly one level up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposedDecision {
    Complete,
    Retry,
    Escalate,
    Skip,
    Abort,
    HardGate,
}

/// A decision proposal (from the policy component, or from [`reference_decision`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub decision: ProposedDecision,
    pub failure_category: Option<FailureCategory>,
    pub reason: String,
    /// The policy's view of whether a `<blocked>` is recoverable, if it gave one.
    pub recoverable_block: Option<bool>,
}

/// Hard-gate reasons this module can produce (5.5 table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HardGateReason {
    EscalationExhausted,
    CloudEscalationDisallowed,
    HumanReviewRequired,
    MaxTotalIterations,
    MaxDuration,
    TokenBudgetExceeded,
}

impl HardGateReason {
    /// The spec spelling, as written into FR-EVT-MT-006 and GateDecision.gate_reason.
    pub fn as_str(self) -> &'static str {
        match self {
            HardGateReason::EscalationExhausted => "escalation_exhausted",
            HardGateReason::CloudEscalationDisallowed => "cloud_escalation_disallowed",
            HardGateReason::HumanReviewRequired => "human_review_required",
            HardGateReason::MaxTotalIterations => "max_total_iterations",
            HardGateReason::MaxDuration => "max_duration",
            HardGateReason::TokenBudgetExceeded => "token_budget_exceeded",
        }
    }
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Complete,
    Retry,
    Escalate { next_level: u32 },
    HardGate { reason: HardGateReason },
    Skip,
    Abort,
}

impl Decision {
    /// The LoopDecision recorded for this decision; a hard gate has none (the loop
    /// realises it as a pause).
    pub fn loop_decision(self) -> Option<LoopDecision> {
        match self {
            Decision::Complete => Some(LoopDecision::Complete),
            Decision::Retry => Some(LoopDecision::Retry),
            Decision::Escalate { .. } => Some(LoopDecision::Escalate),
            Decision::Skip => Some(LoopDecision::Skip),
            Decision::Abort => Some(LoopDecision::Abort),
            Decision::HardGate { .. } => None,
        }
    }
}

/// Everything the decision depends on for one finished iteration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationFacts {
    pub claimed_complete: bool,
    /// All blocking verify specs passed.
    pub validation_passed: bool,
    pub evidence_verified: bool,
    pub blocked: bool,
    /// The host's answer of [`is_recoverable_block`] for this block.
    pub block_recoverable: bool,
    /// Edits were refused for scope, or evidence pointed outside scope.
    pub scope_violation: bool,
    /// Iteration number at this level, starting at 1.
    pub iteration: u32,
    pub effective_max_iterations: u32,
    pub level: u32,
    /// The highest level this MT may climb to ([`climb_ceiling`]).
    pub max_level: u32,
    /// Consecutive false completions at this level, this iteration included
    /// ([`failure_counts`] over the history with this iteration last). The WIT
    /// `decision-input` carries the streak before this iteration instead.
    pub false_completion_streak: u32,
    /// Consecutive failures (5.7) at this level, this iteration included.
    pub failure_streak: u32,
    pub operator_skip: bool,
    pub operator_abort: bool,
    /// The MT used at least 10 x token_budget (11.4).
    pub mt_token_cap_reached: bool,
}

impl IterationFacts {
    /// 5.6 rule 1.
    pub fn success(&self) -> bool {
        self.claimed_complete && self.validation_passed && self.evidence_verified
    }

    /// Which limit forces leaving this level, if any (rule 3, 5.7, 11.4).
    pub fn forcing_limit(&self) -> Option<OverrideReason> {
        if self.iteration >= self.effective_max_iterations {
            Some(OverrideReason::IterationLimit)
        } else if self.failure_streak >= CONSECUTIVE_FAILURE_LIMIT {
            Some(OverrideReason::ConsecutiveFailures)
        } else if self.mt_token_cap_reached {
            Some(OverrideReason::MtTokenCap)
        } else {
            None
        }
    }

    fn escalate_or_gate(&self) -> Decision {
        if self.level < self.max_level {
            Decision::Escalate { next_level: self.level + 1 }
        } else {
            Decision::HardGate { reason: HardGateReason::EscalationExhausted }
        }
    }
}

/// Why the host replaced the policy's proposal (an override, not a violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideReason {
    IterationLimit,
    ConsecutiveFailures,
    MtTokenCap,
    UnrecoverableBlock,
    OperatorSkip,
    OperatorAbort,
}

/// The decision the loop applies, with the policy's category and any host override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcedDecision {
    pub decision: Decision,
    pub failure_category: Option<FailureCategory>,
    pub overridden: Option<OverrideReason>,
}

/// A proposal that breaks a host invariant. The loop records it and falls back to
/// [`reference_decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum InvariantViolation {
    #[error(
        "policy proposed complete but rule 1 does not hold (claimed {claimed_complete}, validation passed {validation_passed}, evidence verified {evidence_verified})"
    )]
    CompleteWithoutSuccess { claimed_complete: bool, validation_passed: bool, evidence_verified: bool },
    #[error("policy proposed skip but no operator asked for it")]
    SkipWithoutOperator,
    #[error("policy proposed abort but no operator asked for it")]
    AbortWithoutOperator,
    #[error(
        "policy proposed a hard gate at level {level} below the top level {max_level} without a limit reason"
    )]
    HardGateBelowTop { level: u32, max_level: u32 },
}

/// Checks a policy proposal against the host invariants of 5.6-5.8 and returns what the
/// loop must do.
pub fn enforce(proposal: &Proposal, facts: &IterationFacts) -> Result<EnforcedDecision, InvariantViolation> {
    let success = facts.success();
    let limit = facts.forcing_limit();
    match proposal.decision {
        ProposedDecision::Complete if !success => {
            return Err(InvariantViolation::CompleteWithoutSuccess {
                claimed_complete: facts.claimed_complete,
                validation_passed: facts.validation_passed,
                evidence_verified: facts.evidence_verified,
            });
        }
        ProposedDecision::Skip if !facts.operator_skip => {
            return Err(InvariantViolation::SkipWithoutOperator);
        }
        ProposedDecision::Abort if !facts.operator_abort => {
            return Err(InvariantViolation::AbortWithoutOperator);
        }
        ProposedDecision::HardGate if facts.level < facts.max_level && limit.is_none() => {
            return Err(InvariantViolation::HardGateBelowTop {
                level: facts.level,
                max_level: facts.max_level,
            });
        }
        _ => {}
    }
    let category = proposal.failure_category;
    let done =
        |decision, overridden| Ok(EnforcedDecision { decision, failure_category: category, overridden });
    let proposed = proposal.decision;

    // Rule 1 wins over every other rule.
    if proposed == ProposedDecision::Complete {
        return done(Decision::Complete, None);
    }
    // An operator request beats the policy's own view; a policy that already agrees is
    // not an override.
    if facts.operator_abort && !success {
        return done(
            Decision::Abort,
            (proposed != ProposedDecision::Abort).then_some(OverrideReason::OperatorAbort),
        );
    }
    if facts.operator_skip && !success {
        return done(
            Decision::Skip,
            (proposed != ProposedDecision::Skip).then_some(OverrideReason::OperatorSkip),
        );
    }
    match proposed {
        ProposedDecision::Escalate | ProposedDecision::HardGate => {
            // A policy may leave a level earlier than the host would (stricter), but it
            // cannot choose the level, and a gate always carries the spec reason.
            let decision = if proposed == ProposedDecision::HardGate {
                Decision::HardGate { reason: HardGateReason::EscalationExhausted }
            } else {
                facts.escalate_or_gate()
            };
            done(decision, None)
        }
        _ => {
            if let Some(reason) = limit {
                return done(facts.escalate_or_gate(), Some(reason));
            }
            let unrecoverable_block = !facts.claimed_complete && facts.blocked && !facts.block_recoverable;
            if unrecoverable_block {
                return done(facts.escalate_or_gate(), Some(OverrideReason::UnrecoverableBlock));
            }
            done(Decision::Retry, None)
        }
    }
}

/// The default failure category for an iteration (3.9.3 table, as far as the facts
/// tell): scope first, then no claim / block / missing evidence, else unknown.
pub fn default_failure_category(facts: &IterationFacts) -> FailureCategory {
    if facts.scope_violation {
        FailureCategory::ScopeViolation
    } else if !facts.claimed_complete
        || facts.blocked
        || (facts.validation_passed && !facts.evidence_verified)
    {
        FailureCategory::IncompleteImplementation
    } else {
        FailureCategory::Unknown
    }
}

/// What the host observed about a failed iteration, for the 3.9.3 default classification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSignals {
    /// Edits refused for scope, or evidence outside the MT's files.
    pub scope_violation: bool,
    /// The model call or a validation command timed out.
    pub timed_out: bool,
    /// The prompt did not fit, or the model stopped at its length limit.
    pub context_overflow: bool,
    /// Paths or symbols the output referenced that do not exist.
    pub missing_references: Vec<String>,
    /// A verify command that passed in an earlier iteration of this MT now fails.
    pub regression: bool,
    /// The same command on the same workspace state both passed and failed.
    pub flaky: bool,
    /// Compiler error locations of the failing commands
    /// ([`crate::summary::extract_error_locations`]).
    pub error_locations: Vec<crate::summary::ErrorLocation>,
    pub claimed_complete: bool,
    pub blocked: bool,
    /// Validation passed but the evidence did not verify.
    pub evidence_failed: bool,
}

/// Compiler errors in more places than this (or in more than one file) are systemic.
pub const ISOLATED_ERROR_LOCATIONS: usize = 3;

/// The 3.9.3 default classification, used when the policy gives no category. The table's
/// rows are checked in a fixed order, most specific first: scope, timeout, context
/// overflow, hallucinated references, regression, flakiness, compiler errors (one file
/// and at most [`ISOLATED_ERROR_LOCATIONS`] locations = isolated, else systemic), then no
/// claim / block / missing evidence, else `unknown`.
pub fn classify_failure(s: &FailureSignals) -> FailureCategory {
    if s.scope_violation {
        return FailureCategory::ScopeViolation;
    }
    if s.timed_out {
        return FailureCategory::TimeoutExceeded;
    }
    if s.context_overflow {
        return FailureCategory::ContextOverflow;
    }
    if !s.missing_references.is_empty() {
        return FailureCategory::HallucinationApi;
    }
    if s.regression {
        return FailureCategory::LogicErrorRegression;
    }
    if s.flaky {
        return FailureCategory::ValidationFlaky;
    }
    if !s.error_locations.is_empty() {
        let mut files: Vec<&str> = s.error_locations.iter().map(|l| l.path.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        return if files.len() == 1 && s.error_locations.len() <= ISOLATED_ERROR_LOCATIONS {
            FailureCategory::SyntaxErrorIsolated
        } else {
            FailureCategory::SyntaxErrorSystemic
        };
    }
    if !s.claimed_complete || s.blocked || s.evidence_failed {
        return FailureCategory::IncompleteImplementation;
    }
    FailureCategory::Unknown
}

/// The spec's decision logic (5.6 rules 1-6 with the forced escalation of 5.7 and the
/// token cap of 11.4). Used when the policy component fails, and by tests.
pub fn reference_decision(facts: &IterationFacts) -> Proposal {
    let proposal = |decision, reason: &str, category| Proposal {
        decision,
        failure_category: category,
        reason: reason.to_string(),
        recoverable_block: facts.blocked.then_some(facts.block_recoverable),
    };
    let category = Some(default_failure_category(facts));
    let leave = |reason: &str| {
        let decision = if facts.level < facts.max_level {
            ProposedDecision::Escalate
        } else {
            ProposedDecision::HardGate
        };
        proposal(decision, reason, category)
    };
    if facts.success() {
        return proposal(ProposedDecision::Complete, "claimed, validated and evidence verified", None);
    }
    if facts.operator_abort {
        return proposal(ProposedDecision::Abort, "operator asked to abort", category);
    }
    if facts.operator_skip {
        return proposal(ProposedDecision::Skip, "operator asked to skip", category);
    }
    match facts.forcing_limit() {
        Some(OverrideReason::IterationLimit) => return leave("iteration limit reached at this level"),
        Some(OverrideReason::ConsecutiveFailures) => return leave("consecutive failures at this level"),
        Some(OverrideReason::MtTokenCap) => return leave("MT token cap reached"),
        _ => {}
    }
    if facts.claimed_complete {
        return if facts.false_completion_streak >= FALSE_COMPLETION_LIMIT {
            leave("second consecutive false completion")
        } else {
            proposal(ProposedDecision::Retry, "false completion", category)
        };
    }
    if facts.blocked {
        return if facts.block_recoverable {
            proposal(ProposedDecision::Retry, "recoverable block", category)
        } else {
            leave("repeated block")
        };
    }
    proposal(ProposedDecision::Retry, "no completion claimed yet", category)
}

/// Normalises a block reason for comparison: trimmed, lower-cased, whitespace collapsed.
fn normalize_reason(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// 5.6 recoverable block \[D\]: the first `<blocked>` of this MT at this level whose reason
/// differs from every earlier block reason of the MT.
pub fn is_recoverable_block(
    reason: &str,
    earlier_reasons_at_level: &[String],
    earlier_reasons_of_mt: &[String],
) -> bool {
    let r = normalize_reason(reason);
    earlier_reasons_at_level.is_empty() && !earlier_reasons_of_mt.iter().any(|e| normalize_reason(e) == r)
}

/// What one finished iteration looked like, for the streak counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationObservation {
    pub level: u32,
    pub claimed_complete: bool,
    pub validation_ran: bool,
    pub validation_passed: bool,
    pub evidence_verified: bool,
    /// Proposed edits were refused for scope.
    pub scope_refused: bool,
}

impl IterationObservation {
    /// A failure in the sense of 5.7 \[D\]: validation ran and did not pass (false
    /// completion, evidence failure, validation error), or edits were refused for scope.
    /// No-claim iterations and blocks are not failures.
    pub fn is_failure(&self) -> bool {
        self.scope_refused || (self.validation_ran && !(self.validation_passed && self.evidence_verified))
    }

    /// Claimed, but validation or evidence failed.
    pub fn is_false_completion(&self) -> bool {
        self.claimed_complete && !(self.validation_ran && self.validation_passed && self.evidence_verified)
    }
}

/// The two streaks at the current level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streaks {
    pub failure_streak: u32,
    pub false_completion_streak: u32,
}

/// Counts the trailing streaks at `level` over the MT's iterations in order (the current
/// one last). Both reset on escalation (only iterations at `level` count); the
/// false-completion streak also resets on any iteration without a claim (5.8), the
/// failure streak on any iteration that is not a failure.
pub fn failure_counts(history: &[IterationObservation], level: u32) -> Streaks {
    let at_level = || history.iter().rev().take_while(|o| o.level == level);
    Streaks {
        failure_streak: at_level().take_while(|o| o.is_failure()).count() as u32,
        false_completion_streak: at_level().take_while(|o| o.is_false_completion()).count() as u32,
    }
}

/// 5.9 rule 1: `min(policy.max_iterations_per_mt, mt.retry_budget + 1)`; a missing budget
/// leaves the policy value, an out-of-range one is clamped to [0, 5]; never below 1.
pub fn effective_max_iterations(policy_max: u32, retry_budget: Option<i64>) -> u32 {
    let max = match retry_budget {
        Some(b) => policy_max.min(b.clamp(0, 5) as u32 + 1),
        None => policy_max,
    };
    max.max(1)
}

/// 5.9 rule 2: the level an MT starts at, or the hard gate it starts with.
pub fn starting_level(
    tier: Option<ExecutionTier>,
    chain: &[EscalationLevel],
    cloud_allowed: bool,
) -> Result<u32, HardGateReason> {
    match tier {
        None | Some(ExecutionTier::LocalSmall) => Ok(0),
        Some(ExecutionTier::LocalLarge) => {
            let base = chain.first().map(|l| l.model_id.as_str());
            Ok(chain
                .iter()
                .find(|l| !l.is_hard_gate && !l.is_cloud && Some(l.model_id.as_str()) != base)
                .map_or(0, |l| l.level))
        }
        Some(ExecutionTier::Cloud) => {
            let first_cloud = chain.iter().find(|l| l.is_cloud).map(|l| l.level);
            match first_cloud {
                Some(level) if cloud_allowed => Ok(level),
                _ => Err(HardGateReason::CloudEscalationDisallowed),
            }
        }
        Some(ExecutionTier::HumanReview) => Err(HardGateReason::HumanReviewRequired),
    }
}

/// 5.9 rule 3: the highest level an MT may climb to from `start_level`. Reaching the
/// iteration limit there gives hard gate `escalation_exhausted`.
pub fn climb_ceiling(target: Option<EscalationTarget>, chain: &[EscalationLevel], start_level: u32) -> u32 {
    let top = chain.iter().map(|l| l.level).max().unwrap_or(0);
    match target {
        None | Some(EscalationTarget::Cloud) => top,
        Some(EscalationTarget::LocalLarge) => chain
            .iter()
            .take_while(|l| !l.is_cloud)
            .filter(|l| !l.is_hard_gate)
            .map(|l| l.level)
            .max()
            .unwrap_or(0)
            .max(start_level),
        Some(EscalationTarget::HumanReview | EscalationTarget::RoleMailbox) => start_level,
    }
}

/// The hard gate that entering `next_level` raises (5.5 table), if any: a level past the
/// end of the chain or a `HARD_GATE` level gives `escalation_exhausted`; a cloud level
/// when cloud is not allowed gives `cloud_escalation_disallowed`. An allowed cloud level
/// raises none here: its consent flow (5.14) is the caller's.
pub fn entering_level_gate(
    next_level: u32,
    chain: &[EscalationLevel],
    cloud_allowed: bool,
) -> Option<HardGateReason> {
    match chain.iter().find(|l| l.level == next_level) {
        None => Some(HardGateReason::EscalationExhausted),
        Some(l) if l.is_gate_only() => Some(HardGateReason::EscalationExhausted),
        Some(l) if l.is_cloud && !cloud_allowed => Some(HardGateReason::CloudEscalationDisallowed),
        Some(_) => None,
    }
}

/// 11.4: hard cap of one iteration (prompt + completion).
pub fn iteration_token_cap(token_budget: u32) -> u64 {
    ITERATION_TOKEN_MULTIPLE * u64::from(token_budget)
}

/// 11.4: the completion allowance passed to the backend: the iteration cap minus the
/// prompt tokens (0 when the prompt alone reaches the cap).
pub fn completion_allowance(token_budget: u32, prompt_tokens: u64) -> u64 {
    iteration_token_cap(token_budget).saturating_sub(prompt_tokens)
}

/// 11.4: hard cap of one MT across all levels; reaching it escalates.
pub fn mt_token_cap(token_budget: u32) -> u64 {
    MT_TOKEN_MULTIPLE * u64::from(token_budget)
}

/// 11.3 \[D\]: the job's estimated budget, the sum of all MT token budgets.
pub fn estimated_job_budget(mts: &[MicroTaskDefinition]) -> u64 {
    mts.iter().map(|m| u64::from(m.token_budget)).sum()
}

/// How a job's token use stands against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenUseLevel {
    Normal,
    /// Emit FR-EVT-MTX-001.
    Warning,
    /// Hard gate `token_budget_exceeded`.
    Gate,
}

/// Job token use against 11.3 / 11.4. With `policy.max_total_tokens` set, that cap rules
/// (warning at 80%, gate above it); otherwise warning above 10x and gate above 20x the
/// estimated budget. `gate_doublings` counts `continue` decisions on this gate (each
/// doubles the gate threshold, 5.5).
pub fn token_use_level(
    total_tokens: u64,
    estimated_budget: u64,
    max_total_tokens: Option<u64>,
    gate_doublings: u32,
) -> TokenUseLevel {
    let factor = 1u64.checked_shl(gate_doublings).unwrap_or(u64::MAX);
    let (warn_above, gate_above) = match max_total_tokens {
        Some(cap) => (cap.saturating_mul(4) / 5, cap.saturating_mul(factor)),
        None => (
            estimated_budget.saturating_mul(TOKEN_WARNING_MULTIPLE),
            estimated_budget.saturating_mul(TOKEN_GATE_MULTIPLE).saturating_mul(factor),
        ),
    };
    if total_tokens > gate_above {
        TokenUseLevel::Gate
    } else if total_tokens > warn_above {
        TokenUseLevel::Warning
    } else {
        TokenUseLevel::Normal
    }
}

/// The job-wide limits checked before each iteration (5.5), with the effective values in
/// force (a `continue` on the gate raises them, so the caller passes the current ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    pub total_iterations: u32,
    pub max_total_iterations: u32,
    /// Milliseconds since the progress artifact's `created_at` (3.2).
    pub elapsed_ms: u64,
    pub max_duration_ms: u64,
}

/// 5.5: the hard gate a job-wide limit raises before the next iteration, if any:
/// `max_total_iterations` once the iterations reached the limit, else `max_duration`
/// once the elapsed time reached it. (The poison rule of 11.3 is [`duration_poisoned`].)
pub fn job_limit_gate(limits: &JobLimits) -> Option<HardGateReason> {
    if limits.total_iterations >= limits.max_total_iterations {
        Some(HardGateReason::MaxTotalIterations)
    } else if limits.elapsed_ms >= limits.max_duration_ms {
        Some(HardGateReason::MaxDuration)
    } else {
        None
    }
}

/// 11.4: the hard ceiling of any single model call or verify command, in milliseconds.
pub const MAX_CALL_TIMEOUT_MS: u64 = 300_000;

/// 11.4: time allowed for one iteration's model call: `min(300 s, 2 x estimate)` with the
/// backend's latency estimate for the prompt size, 300 s without one.
pub fn iteration_time_limit_ms(estimated_ms: Option<u64>) -> u64 {
    estimated_ms.map_or(MAX_CALL_TIMEOUT_MS, |e| e.saturating_mul(2).min(MAX_CALL_TIMEOUT_MS))
}

/// 11.4: time allowed for one MT at one level: `max_iterations_per_mt x` the
/// per-iteration limit.
pub fn mt_time_limit_ms(max_iterations_per_mt: u32, per_iteration_ms: u64) -> u64 {
    u64::from(max_iterations_per_mt).saturating_mul(per_iteration_ms)
}

/// 11.2 rule 1: after a model timeout the timeout rises by 50%, never above 300 s.
pub fn raised_model_timeout_ms(current_ms: u64) -> u64 {
    current_ms.saturating_add(current_ms / 2).min(MAX_CALL_TIMEOUT_MS)
}

/// 11.2 rule 3: a validation timeout is retried once with double the timeout, capped at
/// 300000 ms.
pub fn retried_validation_timeout_ms(timeout_ms: u64) -> u64 {
    timeout_ms.saturating_mul(2).min(MAX_CALL_TIMEOUT_MS)
}

/// 11.2 rule 2 \[D\]: backoff before retry `attempt` (1-based) of a transient model error:
/// 1 s, 2 s, 4 s; `None` after the third retry (then escalate).
pub fn transient_backoff_ms(attempt: u32) -> Option<u64> {
    match attempt {
        1..=3 => Some(1000 << (attempt - 1)),
        _ => None,
    }
}

/// 11.3: the job ran longer than twice its `max_duration_ms` and is poisoned.
pub fn duration_poisoned(elapsed_ms: u64, max_duration_ms: u64) -> bool {
    elapsed_ms > max_duration_ms.saturating_mul(POISON_DURATION_MULTIPLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> IterationFacts {
        IterationFacts {
            iteration: 1,
            effective_max_iterations: 5,
            level: 0,
            max_level: 6,
            ..Default::default()
        }
    }

    fn propose(decision: ProposedDecision) -> Proposal {
        Proposal { decision, failure_category: None, reason: "test".into(), recoverable_block: None }
    }

    fn success() -> IterationFacts {
        IterationFacts { claimed_complete: true, validation_passed: true, evidence_verified: true, ..facts() }
    }

    fn false_completion(streak: u32) -> IterationFacts {
        IterationFacts {
            claimed_complete: true,
            false_completion_streak: streak,
            failure_streak: streak,
            ..facts()
        }
    }

    #[test]
    fn complete_is_accepted_only_when_rule_1_holds() {
        let ok = enforce(&propose(ProposedDecision::Complete), &success()).unwrap();
        assert_eq!(ok.decision, Decision::Complete);
        for f in [
            facts(),
            IterationFacts { claimed_complete: true, validation_passed: true, ..facts() },
            IterationFacts { claimed_complete: true, evidence_verified: true, ..facts() },
            IterationFacts { validation_passed: true, evidence_verified: true, ..facts() },
        ] {
            assert!(matches!(
                enforce(&propose(ProposedDecision::Complete), &f),
                Err(InvariantViolation::CompleteWithoutSuccess { .. })
            ));
        }
    }

    #[test]
    fn skip_and_abort_need_an_operator() {
        assert_eq!(
            enforce(&propose(ProposedDecision::Skip), &facts()),
            Err(InvariantViolation::SkipWithoutOperator)
        );
        assert_eq!(
            enforce(&propose(ProposedDecision::Abort), &facts()),
            Err(InvariantViolation::AbortWithoutOperator)
        );
        let f = IterationFacts { operator_skip: true, ..facts() };
        assert_eq!(enforce(&propose(ProposedDecision::Skip), &f).unwrap().decision, Decision::Skip);
        let over = enforce(&propose(ProposedDecision::Retry), &f).unwrap();
        assert_eq!((over.decision, over.overridden), (Decision::Skip, Some(OverrideReason::OperatorSkip)));
        let f = IterationFacts { operator_abort: true, ..facts() };
        assert_eq!(enforce(&propose(ProposedDecision::Abort), &f).unwrap().decision, Decision::Abort);
        let over = enforce(&propose(ProposedDecision::Retry), &f).unwrap();
        assert_eq!(over.overridden, Some(OverrideReason::OperatorAbort));
    }

    #[test]
    fn success_wins_over_an_operator_skip() {
        let f = IterationFacts { operator_skip: true, ..success() };
        assert_eq!(reference_decision(&f).decision, ProposedDecision::Complete);
    }

    #[test]
    fn iteration_limit_overrides_retry() {
        let f = IterationFacts { iteration: 5, ..facts() };
        let d = enforce(&propose(ProposedDecision::Retry), &f).unwrap();
        assert_eq!(d.decision, Decision::Escalate { next_level: 1 });
        assert_eq!(d.overridden, Some(OverrideReason::IterationLimit));
    }

    #[test]
    fn iteration_limit_at_the_top_is_a_hard_gate() {
        let f = IterationFacts { iteration: 5, level: 6, ..facts() };
        let d = enforce(&propose(ProposedDecision::Retry), &f).unwrap();
        assert_eq!(d.decision, Decision::HardGate { reason: HardGateReason::EscalationExhausted });
        assert_eq!(reference_decision(&f).decision, ProposedDecision::HardGate);
    }

    #[test]
    fn consecutive_failures_force_escalation() {
        let d = enforce(&propose(ProposedDecision::Retry), &false_completion(2)).unwrap();
        assert_eq!(d.decision, Decision::Escalate { next_level: 1 });
        assert_eq!(d.overridden, Some(OverrideReason::ConsecutiveFailures));
        let scope = IterationFacts { failure_streak: 2, scope_violation: true, ..facts() };
        assert_eq!(
            enforce(&propose(ProposedDecision::Retry), &scope).unwrap().overridden,
            Some(OverrideReason::ConsecutiveFailures)
        );
    }

    #[test]
    fn mt_token_cap_forces_escalation() {
        let f = IterationFacts { mt_token_cap_reached: true, ..facts() };
        let d = enforce(&propose(ProposedDecision::Retry), &f).unwrap();
        assert_eq!(
            (d.decision, d.overridden),
            (Decision::Escalate { next_level: 1 }, Some(OverrideReason::MtTokenCap))
        );
    }

    #[test]
    fn policy_escalate_is_always_exactly_one_level() {
        let f = IterationFacts { level: 2, ..facts() };
        assert_eq!(
            enforce(&propose(ProposedDecision::Escalate), &f).unwrap().decision,
            Decision::Escalate { next_level: 3 }
        );
        let top = IterationFacts { level: 6, ..facts() };
        assert_eq!(
            enforce(&propose(ProposedDecision::Escalate), &top).unwrap().decision,
            Decision::HardGate { reason: HardGateReason::EscalationExhausted }
        );
    }

    #[test]
    fn hard_gate_only_at_the_top_or_for_limits() {
        assert_eq!(
            enforce(&propose(ProposedDecision::HardGate), &facts()),
            Err(InvariantViolation::HardGateBelowTop { level: 0, max_level: 6 })
        );
        let at_limit = IterationFacts { iteration: 5, ..facts() };
        assert!(matches!(
            enforce(&propose(ProposedDecision::HardGate), &at_limit).unwrap().decision,
            Decision::HardGate { .. }
        ));
        let top = IterationFacts { level: 6, ..facts() };
        assert!(matches!(
            enforce(&propose(ProposedDecision::HardGate), &top).unwrap().decision,
            Decision::HardGate { .. }
        ));
    }

    #[test]
    fn policy_may_be_stricter_but_not_looser_on_blocks() {
        let recoverable = IterationFacts { blocked: true, block_recoverable: true, ..facts() };
        let d = enforce(&propose(ProposedDecision::Escalate), &recoverable).unwrap();
        assert_eq!(
            (d.decision, d.overridden),
            (Decision::Escalate { next_level: 1 }, None),
            "stricter is honoured"
        );
        let repeated = IterationFacts { blocked: true, block_recoverable: false, ..facts() };
        let mut p = propose(ProposedDecision::Retry);
        p.recoverable_block = Some(true);
        let d = enforce(&p, &repeated).unwrap();
        assert_eq!(
            (d.decision, d.overridden),
            (Decision::Escalate { next_level: 1 }, Some(OverrideReason::UnrecoverableBlock))
        );
        assert_eq!(
            enforce(&propose(ProposedDecision::Retry), &recoverable).unwrap().decision,
            Decision::Retry
        );
    }

    #[test]
    fn policy_category_is_carried_through() {
        let mut p = propose(ProposedDecision::Retry);
        p.failure_category = Some(FailureCategory::HallucinationApi);
        assert_eq!(enforce(&p, &facts()).unwrap().failure_category, Some(FailureCategory::HallucinationApi));
    }

    #[test]
    fn c_loop_2_never_claims_retry_then_escalate() {
        let max = effective_max_iterations(2, Some(3));
        let first = IterationFacts { iteration: 1, effective_max_iterations: max, ..facts() };
        assert_eq!(reference_decision(&first).decision, ProposedDecision::Retry);
        let second = IterationFacts { iteration: 2, ..first };
        let p = reference_decision(&second);
        assert_eq!(p.decision, ProposedDecision::Escalate);
        assert_eq!(p.failure_category, Some(FailureCategory::IncompleteImplementation));
        assert_eq!(enforce(&p, &second).unwrap().decision, Decision::Escalate { next_level: 1 });
    }

    #[test]
    fn c_loop_3_second_false_completion_escalates() {
        let history =
            vec![IterationObservation { claimed_complete: true, validation_ran: true, ..Default::default() }];
        let s1 = failure_counts(&history, 0);
        assert_eq!(s1, Streaks { failure_streak: 1, false_completion_streak: 1 });
        let f1 = IterationFacts { false_completion_streak: 1, failure_streak: 1, ..false_completion(1) };
        assert_eq!(reference_decision(&f1).decision, ProposedDecision::Retry);
        let history = [history.clone(), history].concat();
        let s2 = failure_counts(&history, 0);
        let f2 = IterationFacts {
            iteration: 2,
            false_completion_streak: s2.false_completion_streak,
            failure_streak: s2.failure_streak,
            ..false_completion(2)
        };
        assert_eq!(reference_decision(&f2).decision, ProposedDecision::Escalate);
        assert_eq!(
            enforce(&propose(ProposedDecision::Retry), &f2).unwrap().decision,
            Decision::Escalate { next_level: 1 }
        );
    }

    #[test]
    fn rule_4_alone_escalates_on_the_second_false_completion() {
        // Streak of false completions without the failure streak (e.g. a caller that
        // counts failures differently) still escalates through rule 4.
        let f = IterationFacts { claimed_complete: true, false_completion_streak: 2, ..facts() };
        assert_eq!(reference_decision(&f).decision, ProposedDecision::Escalate);
    }

    #[test]
    fn c_loop_5_first_block_retries_repeated_block_escalates() {
        let reason = "need the database schema".to_string();
        let earlier = vec![reason.clone()];
        assert!(is_recoverable_block(&reason, &[], &[]));
        let first = IterationFacts { blocked: true, block_recoverable: true, ..facts() };
        assert_eq!(reference_decision(&first).decision, ProposedDecision::Retry);
        assert!(!is_recoverable_block(&reason, &earlier, &earlier));
        assert!(
            !is_recoverable_block("  NEED the   database schema ", &[], &earlier),
            "same reason at another level"
        );
        assert!(!is_recoverable_block("other", &earlier, &earlier), "second block at this level");
        let second = IterationFacts { iteration: 2, blocked: true, block_recoverable: false, ..facts() };
        let p = reference_decision(&second);
        assert_eq!(p.decision, ProposedDecision::Escalate);
        assert_eq!(p.recoverable_block, Some(false));
    }

    #[test]
    fn claim_is_judged_before_a_block() {
        let f = IterationFacts {
            claimed_complete: true,
            blocked: true,
            block_recoverable: false,
            ..false_completion(1)
        };
        assert_eq!(reference_decision(&f).decision, ProposedDecision::Retry, "rule 4 applies, not rule 5");
        assert_eq!(enforce(&propose(ProposedDecision::Retry), &f).unwrap().decision, Decision::Retry);
    }

    #[test]
    fn still_working_retries() {
        let p = reference_decision(&facts());
        assert_eq!(p.decision, ProposedDecision::Retry);
        assert_eq!(enforce(&p, &facts()).unwrap().decision, Decision::Retry);
    }

    #[test]
    fn reference_decision_always_passes_enforce() {
        for iteration in 1..=3 {
            for bits in 0u32..256 {
                let b = |i: u32| bits & (1 << i) != 0;
                let f = IterationFacts {
                    claimed_complete: b(0),
                    validation_passed: b(1),
                    evidence_verified: b(2),
                    blocked: b(3),
                    block_recoverable: b(4),
                    operator_skip: b(5),
                    level: if b(6) { 6 } else { 1 },
                    failure_streak: if b(7) { 2 } else { 0 },
                    iteration,
                    effective_max_iterations: 3,
                    max_level: 6,
                    ..Default::default()
                };
                let p = reference_decision(&f);
                let d = enforce(&p, &f).unwrap_or_else(|e| panic!("{f:?} -> {p:?}: {e}"));
                assert_eq!(d.overridden, None, "{f:?}");
            }
        }
    }

    #[test]
    fn streaks_reset_on_escalation_and_on_no_claim() {
        let fc = |level| IterationObservation {
            level,
            claimed_complete: true,
            validation_ran: true,
            ..Default::default()
        };
        let no_claim = |level| IterationObservation { level, ..Default::default() };
        let scope = |level| IterationObservation { level, scope_refused: true, ..Default::default() };
        assert_eq!(
            failure_counts(&[fc(0), fc(0), fc(1)], 1),
            Streaks { failure_streak: 1, false_completion_streak: 1 }
        );
        assert_eq!(
            failure_counts(&[fc(0), no_claim(0), fc(0)], 0),
            Streaks { failure_streak: 1, false_completion_streak: 1 }
        );
        assert_eq!(
            failure_counts(&[fc(0), scope(0)], 0),
            Streaks { failure_streak: 2, false_completion_streak: 0 }
        );
        assert_eq!(failure_counts(&[], 0), Streaks::default());
        let passed_no_evidence = IterationObservation {
            claimed_complete: true,
            validation_ran: true,
            validation_passed: true,
            ..Default::default()
        };
        assert!(passed_no_evidence.is_failure() && passed_no_evidence.is_false_completion());
    }

    #[test]
    fn effective_max_iterations_follows_5_9_1() {
        assert_eq!(effective_max_iterations(5, Some(3)), 4);
        assert_eq!(effective_max_iterations(5, Some(5)), 5);
        assert_eq!(effective_max_iterations(2, Some(3)), 2);
        assert_eq!(effective_max_iterations(5, Some(0)), 1);
        assert_eq!(effective_max_iterations(5, None), 5);
        assert_eq!(effective_max_iterations(20, Some(99)), 6);
        assert_eq!(effective_max_iterations(5, Some(-4)), 1);
    }

    fn chain() -> Vec<EscalationLevel> {
        mtx_types::policy::default_escalation_chain()
    }

    #[test]
    fn starting_level_follows_5_9_2() {
        assert_eq!(starting_level(Some(ExecutionTier::LocalSmall), &chain(), false), Ok(0));
        assert_eq!(starting_level(None, &chain(), false), Ok(0));
        assert_eq!(starting_level(Some(ExecutionTier::LocalLarge), &chain(), false), Ok(2));
        assert_eq!(starting_level(Some(ExecutionTier::Cloud), &chain(), true), Ok(6));
        assert_eq!(
            starting_level(Some(ExecutionTier::Cloud), &chain(), false),
            Err(HardGateReason::CloudEscalationDisallowed)
        );
        assert_eq!(
            starting_level(Some(ExecutionTier::HumanReview), &chain(), true),
            Err(HardGateReason::HumanReviewRequired)
        );
    }

    #[test]
    fn climb_ceiling_follows_5_9_3() {
        assert_eq!(climb_ceiling(None, &chain(), 0), 6);
        assert_eq!(climb_ceiling(Some(EscalationTarget::Cloud), &chain(), 0), 6);
        assert_eq!(climb_ceiling(Some(EscalationTarget::LocalLarge), &chain(), 0), 4);
        assert_eq!(climb_ceiling(Some(EscalationTarget::HumanReview), &chain(), 2), 2);
        assert_eq!(climb_ceiling(Some(EscalationTarget::RoleMailbox), &chain(), 0), 0);
    }

    #[test]
    fn entering_a_gate_or_disallowed_cloud_level_is_a_hard_gate() {
        assert_eq!(entering_level_gate(1, &chain(), false), None);
        assert_eq!(entering_level_gate(5, &chain(), true), Some(HardGateReason::EscalationExhausted));
        assert_eq!(entering_level_gate(6, &chain(), false), Some(HardGateReason::CloudEscalationDisallowed));
        assert_eq!(entering_level_gate(6, &chain(), true), None);
        assert_eq!(entering_level_gate(7, &chain(), true), Some(HardGateReason::EscalationExhausted));
    }

    #[test]
    fn token_caps_follow_11_4() {
        assert_eq!(iteration_token_cap(2048), 4096);
        assert_eq!(completion_allowance(2048, 1500), 2596);
        assert_eq!(completion_allowance(2048, 5000), 0);
        assert_eq!(mt_token_cap(2048), 20480);
        let mts = [
            crate::test_support::mt_with_files(&[], &[], &[]),
            crate::test_support::mt_with_files(&[], &[], &[]),
        ];
        assert_eq!(estimated_job_budget(&mts), 4096);
    }

    #[test]
    fn token_thresholds_follow_11_3() {
        assert_eq!(token_use_level(10_000, 1_000, None, 0), TokenUseLevel::Normal);
        assert_eq!(token_use_level(10_001, 1_000, None, 0), TokenUseLevel::Warning);
        assert_eq!(token_use_level(20_001, 1_000, None, 0), TokenUseLevel::Gate);
        assert_eq!(
            token_use_level(20_001, 1_000, None, 1),
            TokenUseLevel::Warning,
            "continue doubles the gate"
        );
        assert_eq!(token_use_level(801, 1_000_000, Some(1_000), 0), TokenUseLevel::Warning);
        assert_eq!(token_use_level(1_001, 1_000_000, Some(1_000), 0), TokenUseLevel::Gate);
        assert!(!duration_poisoned(7_200_000, 3_600_000));
        assert!(duration_poisoned(7_200_001, 3_600_000));
    }

    #[test]
    fn failure_classification_follows_3_9_3() {
        use crate::summary::ErrorLocation;
        let loc = |path: &str, line| ErrorLocation { path: path.into(), line, column: None };
        let claimed = FailureSignals { claimed_complete: true, ..Default::default() };
        let c = |f: FailureSignals| classify_failure(&f);
        assert_eq!(
            c(FailureSignals { scope_violation: true, timed_out: true, ..claimed.clone() }),
            FailureCategory::ScopeViolation
        );
        assert_eq!(
            c(FailureSignals { timed_out: true, ..claimed.clone() }),
            FailureCategory::TimeoutExceeded
        );
        assert_eq!(
            c(FailureSignals { context_overflow: true, ..claimed.clone() }),
            FailureCategory::ContextOverflow
        );
        assert_eq!(
            c(FailureSignals { missing_references: vec!["src/ghost.rs".into()], ..claimed.clone() }),
            FailureCategory::HallucinationApi
        );
        assert_eq!(
            c(FailureSignals { regression: true, ..claimed.clone() }),
            FailureCategory::LogicErrorRegression
        );
        assert_eq!(c(FailureSignals { flaky: true, ..claimed.clone() }), FailureCategory::ValidationFlaky);
        assert_eq!(
            c(FailureSignals { error_locations: vec![loc("a.rs", 1), loc("a.rs", 9)], ..claimed.clone() }),
            FailureCategory::SyntaxErrorIsolated
        );
        assert_eq!(
            c(FailureSignals { error_locations: vec![loc("a.rs", 1), loc("b.rs", 9)], ..claimed.clone() }),
            FailureCategory::SyntaxErrorSystemic
        );
        assert_eq!(
            c(FailureSignals {
                error_locations: (1..=4).map(|l| loc("a.rs", l)).collect(),
                ..claimed.clone()
            }),
            FailureCategory::SyntaxErrorSystemic
        );
        assert_eq!(c(FailureSignals::default()), FailureCategory::IncompleteImplementation);
        assert_eq!(
            c(FailureSignals { evidence_failed: true, ..claimed.clone() }),
            FailureCategory::IncompleteImplementation
        );
        assert_eq!(c(claimed), FailureCategory::Unknown);
    }

    #[test]
    fn time_limits_follow_11_2_and_11_4() {
        assert_eq!(iteration_time_limit_ms(None), 300_000);
        assert_eq!(iteration_time_limit_ms(Some(20_000)), 40_000);
        assert_eq!(iteration_time_limit_ms(Some(200_000)), 300_000);
        assert_eq!(mt_time_limit_ms(5, 40_000), 200_000);
        assert_eq!(raised_model_timeout_ms(100_000), 150_000);
        assert_eq!(raised_model_timeout_ms(250_000), 300_000);
        assert_eq!(retried_validation_timeout_ms(30_000), 60_000);
        assert_eq!(retried_validation_timeout_ms(200_000), 300_000);
        assert_eq!(
            (1..=4).map(transient_backoff_ms).collect::<Vec<_>>(),
            vec![Some(1000), Some(2000), Some(4000), None]
        );
        assert_eq!(transient_backoff_ms(0), None);
    }

    #[test]
    fn job_limits_gate_follows_5_5() {
        let limits =
            JobLimits { total_iterations: 0, max_total_iterations: 1, elapsed_ms: 0, max_duration_ms: 1000 };
        assert_eq!(job_limit_gate(&limits), None);
        let c_loop_4 = JobLimits { total_iterations: 1, ..limits };
        assert_eq!(job_limit_gate(&c_loop_4), Some(HardGateReason::MaxTotalIterations));
        let c_loop_6 = JobLimits { elapsed_ms: 1000, ..limits };
        assert_eq!(job_limit_gate(&c_loop_6), Some(HardGateReason::MaxDuration));
        assert_eq!(HardGateReason::MaxTotalIterations.as_str(), "max_total_iterations");
        assert_eq!(
            serde_json::to_value(HardGateReason::TokenBudgetExceeded).unwrap(),
            HardGateReason::TokenBudgetExceeded.as_str()
        );
    }

    #[test]
    fn decision_maps_to_loop_decision() {
        assert_eq!(Decision::Escalate { next_level: 3 }.loop_decision(), Some(LoopDecision::Escalate));
        assert_eq!(Decision::HardGate { reason: HardGateReason::EscalationExhausted }.loop_decision(), None);
        assert_eq!(HardGateReason::EscalationExhausted.as_str(), "escalation_exhausted");
    }
}
