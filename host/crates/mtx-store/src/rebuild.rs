//! Rebuilding a corrupt progress artifact (MTX-SPEC 8.6 item 1) from the MT definitions,
//! the run ledger and the step outputs.
//!
//! Each finished step's `output.json` carries the IterationRecord the loop wrote (see
//! `StepOutput::iteration_record`), so the rebuilt iterations are the recorded ones, in
//! step order. MT status follows the last recorded outcome (`SUCCESS` -> completed,
//! `SKIPPED` -> skipped), an MT with ledger steps but no final outcome is `in_progress`,
//! and the rest are `pending`. What the files cannot tell is left at its neutral value
//! and named here: `total_drop_backs` and `total_model_swaps` restart at 0, the learning
//! context is empty, and gate / cloud-consent state is not restored (a job paused at a
//! gate keeps its gate decision artifacts, and the operator decides again).
//! The rebuilt document is validated like any load; this module never writes it (the
//! loop saves it through the progress store).

use std::collections::HashMap;

use mtx_types::{
    ExecutionPolicy, IterationOutcome, LearningContext, MTProgressEntry, MTStatus, MicroTaskDefinition,
    ProgressArtifact, ProgressStatus, RunLedger as RunLedgerDoc,
};

use crate::error::StoreError;
use crate::jobdir::JobDir;

/// The attempt ordinal of a step id `{mt_id}_iter-{NNN}`.
fn split_step_id(step_id: &str) -> Option<(&str, u32)> {
    let (mt, n) = step_id.split_once("_iter-")?;
    Some((mt, n.parse().ok()?))
}

/// Rebuilds the progress artifact of `job` (status `in_progress`).
pub fn rebuild_progress(
    job: &JobDir,
    definitions: &[MicroTaskDefinition],
    policy: &ExecutionPolicy,
    ledger: &RunLedgerDoc,
) -> Result<ProgressArtifact, StoreError> {
    let mut entries: Vec<MTProgressEntry> =
        definitions.iter().map(|d| MTProgressEntry::pending(d.mt_id.clone(), d.name.clone())).collect();
    let index: HashMap<String, usize> =
        entries.iter().enumerate().map(|(i, e)| (e.mt_id.clone(), i)).collect();
    let mut recorded: Vec<Vec<(u32, mtx_types::IterationRecord)>> = vec![Vec::new(); entries.len()];
    let mut touched = vec![false; entries.len()];
    for step in &ledger.steps {
        let Some((mt, ordinal)) = split_step_id(&step.step_id) else { continue };
        let Some(&i) = index.get(mt) else {
            return Err(StoreError::corrupt(
                &job.run_ledger(),
                format!("step {} names an MT that is not in the definitions", step.step_id),
            ));
        };
        touched[i] = true;
        if let Some((output, _)) = job.read_step_output(&step.idempotency_key)?
            && let Some(record) = output.iteration_record
        {
            recorded[i].push((ordinal, record));
        }
    }
    let mut current = mtx_types::CurrentState::default();
    for (i, entry) in entries.iter_mut().enumerate() {
        recorded[i].sort_by_key(|(ordinal, _)| *ordinal);
        entry.iterations = recorded[i].drain(..).map(|(_, r)| r).collect();
        current.total_iterations += entry.iterations.len() as u32;
        current.total_escalations +=
            entry.iterations.iter().filter(|r| r.outcome == IterationOutcome::Escalate).count() as u32;
        let last = entry.iterations.last();
        entry.status = match last.map(|r| r.outcome) {
            Some(IterationOutcome::Success) => MTStatus::Completed,
            Some(IterationOutcome::Skipped) => MTStatus::Skipped,
            _ if touched[i] => MTStatus::InProgress,
            _ => MTStatus::Pending,
        };
        if matches!(entry.status, MTStatus::Completed)
            && let Some(r) = last
        {
            entry.final_iteration = Some(r.iteration);
            entry.final_model_level = Some(r.escalation_level);
        }
        if entry.status == MTStatus::InProgress && current.active_mt.is_none() {
            current.active_mt = Some(entry.mt_id.clone());
            current.active_model_level = last.map_or(0, |r| r.escalation_level);
        }
    }
    let now = mtx_types::now_rfc3339();
    let mut doc = ProgressArtifact {
        schema_version: mtx_types::progress::PROGRESS_SCHEMA_VERSION.to_owned(),
        wp_id: ledger.wp_id.clone(),
        job_id: ledger.job_id.clone(),
        created_at: ledger.created_at.clone(),
        updated_at: now,
        completed_at: None,
        status: ProgressStatus::InProgress,
        policy: policy.clone(),
        learning_context: LearningContext {
            skill_bank_snapshot_at_start: ledger.created_at.clone(),
            ..LearningContext::default()
        },
        current_state: current,
        micro_tasks: entries.into(),
        aggregate_stats: Default::default(),
        extra: Default::default(),
    };
    doc.recompute_aggregate_stats();
    doc.validate()
        .map_err(|p| StoreError::corrupt(&job.progress_artifact(), format!("rebuild: {}", p.join("; "))))?;
    Ok(doc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jobdir::StateDir;
    use crate::ledger::RunLedger;
    use mtx_types::{IterationRecord, LedgerStepStatus};

    pub(crate) fn sample_progress() -> ProgressArtifact {
        ProgressArtifact {
            schema_version: "1.0".into(),
            wp_id: "WP-1-Test-v1".into(),
            job_id: "job-1".into(),
            created_at: mtx_types::now_rfc3339(),
            updated_at: mtx_types::now_rfc3339(),
            completed_at: None,
            status: ProgressStatus::InProgress,
            policy: ExecutionPolicy::default(),
            learning_context: LearningContext::default(),
            current_state: Default::default(),
            micro_tasks: vec![
                MTProgressEntry::pending("MT-001", "one"),
                MTProgressEntry::pending("MT-002", "two"),
            ]
            .into(),
            aggregate_stats: Default::default(),
            extra: Default::default(),
        }
    }

    pub(crate) fn definitions() -> Vec<MicroTaskDefinition> {
        let raw = include_str!("../tests/fixtures/mt_definitions.json");
        serde_json::from_str(raw).unwrap()
    }

    pub(crate) fn record(step_id: &str, iteration: u32, outcome: IterationOutcome) -> IterationRecord {
        IterationRecord {
            iteration,
            step_id: step_id.into(),
            model_id: "m".into(),
            lora_id: None,
            escalation_level: 0,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            completed_at: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: 1000,
            tokens_prompt: 10,
            tokens_completion: 5,
            claimed_complete: outcome == IterationOutcome::Success,
            validation_passed: None,
            validation_evidence_ref: None,
            outcome,
            failure_category: None,
            error_summary: None,
            context_snapshot_id: uuid::Uuid::now_v7().to_string(),
        }
    }

    #[test]
    fn progress_is_rebuilt_from_ledger_and_step_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("job-1").unwrap();
        job.create().unwrap();
        let mut ledger = RunLedger::create(&job.run_ledger(), crate::ledger::tests::header()).unwrap();
        for (mt, n, outcome) in
            [("MT-001", 1, IterationOutcome::Retry), ("MT-001", 2, IterationOutcome::Success)]
        {
            let mut s = crate::ledger::tests::step(mt, n, LedgerStepStatus::Completed);
            s.idempotency_key = mtx_types::sha256_hex(format!("{mt}{n}").as_bytes());
            let mut out = crate::jobdir::tests::output(&s.idempotency_key, &s.step_id);
            out.iteration_record = Some(record(&s.step_id, n, outcome));
            s.output_artifact_ref = Some(job.write_step_output(&out).unwrap());
            ledger.append_step(&s).unwrap();
        }
        let mut open = crate::ledger::tests::step("MT-002", 1, LedgerStepStatus::InProgress);
        open.idempotency_key = "c".repeat(64);
        ledger.append_step(&open).unwrap();

        let doc =
            rebuild_progress(&job, &definitions(), &ExecutionPolicy::default(), &ledger.fold()).unwrap();
        assert_eq!(doc.micro_tasks[0].status, MTStatus::Completed);
        assert_eq!(doc.micro_tasks[0].iterations.len(), 2);
        assert_eq!(doc.micro_tasks[0].final_iteration, Some(2));
        assert_eq!(doc.micro_tasks[1].status, MTStatus::InProgress);
        assert_eq!(doc.current_state.active_mt.as_deref(), Some("MT-002"));
        assert_eq!(doc.aggregate_stats.total_iterations, 2);
        assert_eq!(doc.aggregate_stats.completed_mts, 1);
        assert_eq!(doc.aggregate_stats.total_tokens_prompt, 20);
    }
}
