//! The pure parts of the mtx micro-task loop: completion parsing and evidence checks
//! (MTX-SPEC 6), the edit protocol, context compilation (7), the host's checks on the
//! escalation policy's decisions (5.6-5.9, 11.3-11.4), and the previous-iteration summary.
//!
//! Inputs in, records out. Nothing here calls a model, runs a command, writes to the
//! workspace, reads a clock or draws a random number; the only I/O is reading workspace
//! files through [`WorkspaceReader`].
//!
//! One iteration, as the executor composes it:
//!
//! 1. [`compile_context`] with the MT, the [`LoopStatus`] and the previous
//!    [`IterationSummary`] -> prompt envelope and snapshot draft (or `ContextOverflow`:
//!    no model call). The model's completion allowance is [`completion_allowance`].
//! 2. [`parse_edits`] + [`resolve_edits`] on the response -> [`FileWrite`]s for the Tool
//!    Bus, scope violations, problems.
//! 3. [`parse_completion`] -> CompletionSignal; after the writes and alongside validation,
//!    [`verify_evidence`] for a claim.
//! 4. [`failure_counts`] over the MT's iterations, [`is_recoverable_block`] for a block ->
//!    [`IterationFacts`]; the policy's proposal goes through [`enforce`] (on a violation
//!    or a failed plugin, [`reference_decision`]); [`classify_failure`] when no category
//!    was given.
//! 5. [`IterationReport::from_parts`] + [`summarize_iteration`] -> the next prompt's
//!    PREVIOUS ITERATION section.

pub mod completion;
pub mod context;
pub mod decision;
pub mod edits;
pub mod summary;
mod types;
pub mod workspace;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod test_support;

pub use completion::{
    EvidenceCheck, EvidenceLocation, EvidenceProblem, EvidenceProblemKind, parse_completion,
    parse_evidence_line, parse_location, verify_evidence,
};
pub use context::{
    BudgetPlan, CompileInput, CompiledContext, ContextError, LoopStatus, SnapshotDraft, SnapshotIds,
    allocate_budgets, compile_context, estimate_tokens, per_file_allowance, scope_inputs_hash,
};
pub use decision::{
    Decision, EnforcedDecision, FailureSignals, HardGateReason, InvariantViolation, IterationFacts,
    IterationObservation, JobLimits, OverrideReason, Proposal, ProposedDecision, Streaks, TokenUseLevel,
    classify_failure, climb_ceiling, completion_allowance, default_failure_category, duration_poisoned,
    effective_max_iterations, enforce, entering_level_gate, estimated_job_budget, failure_counts,
    is_recoverable_block, iteration_time_limit_ms, iteration_token_cap, job_limit_gate, mt_time_limit_ms,
    mt_token_cap, raised_model_timeout_ms, reference_decision, retried_validation_timeout_ms, starting_level,
    token_use_level, transient_backoff_ms,
};
pub use edits::{
    EditKind, EditProblem, EditRules, FileWrite, ParsedEdits, ProposedEdit, ResolveError, ResolvedEdits,
    edit_block_spans, parse_edits, resolve_edits,
};
/// The retrieval settings [`CompileInput`] takes (MTX-SPEC 3.16.1), re-exported so callers
/// need not name the mtx-types module.
pub use mtx_types::context::RetrievalConfig;
pub use summary::{
    ErrorLocation, FailedCommand, IterationReport, IterationSummary, PreviousOutcome,
    extract_error_locations, first_error_lines, summarize_iteration,
};
pub use workspace::{
    DirReader, MemReader, WorkspaceReader, normalize_path, path_in_entries, path_matches_entry,
};
