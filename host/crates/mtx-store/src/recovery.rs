//! Crash recovery (MTX-SPEC 8.5, 8.7): the startup scan and the ledger reconciliation.
//!
//! `scan` finds jobs whose progress artifact says `in_progress` (they were running when
//! the process stopped); paused and terminal jobs are left alone. `plan` works out, from
//! the ledger and the step outputs, which `in_progress` steps finished (their
//! `output.json` exists) and which must be retried, without writing anything, so the
//! loop can emit FR-EVT-WF-RECOVERY first (write-ahead); `apply` / `reconcile` then
//! append the `completed` / `pending` step records and the resume record. Recovery never
//! re-runs or rewrites a completed step and never edits a ledger record.

use std::path::Path;

use mtx_types::{LedgerStep, LedgerStepStatus, now_rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::StoreError;
use crate::jobdir::{JobDir, StateDir};
use crate::ledger::{LedgerRecord, ResumeRecord, RunLedger};
use crate::progress::ProgressHeader;
use crate::recorder::Event;

/// The error text of a step reset by recovery (8.5 step 2.4).
pub const RESET_ERROR: &str = "crash_recovery: reset in_progress -> pending";

/// `resume_reason` set by recovery.
pub const RESUME_REASON: &str = "crash_recovery";

/// A job the startup scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobToRecover {
    pub job_id: String,
    pub job_dir: JobDir,
    pub wp_id: Option<String>,
    /// `progress.updated_at`: the last known activity (8.7 `last_heartbeat_ts`).
    pub last_heartbeat_ts: Option<String>,
    /// Set when the progress artifact could not be read: the job needs the 8.6 rebuild
    /// before it can be judged (its status is unknown).
    pub progress_error: Option<String>,
}

/// Jobs under `state_dir/jobs` that were running when the process stopped, by job id.
pub fn scan(state_dir: &Path) -> Result<Vec<JobToRecover>, StoreError> {
    let state = StateDir::new(state_dir);
    let jobs_dir = state.jobs_dir();
    let entries = match std::fs::read_dir(&jobs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&jobs_dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&jobs_dir, e))?;
        let Some(job_id) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !entry.path().is_dir() {
            continue;
        }
        let job_dir = JobDir::at(&entry.path(), &job_id);
        let progress = job_dir.progress_artifact();
        if !progress.exists() {
            continue;
        }
        let header = std::fs::read(&progress)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ProgressHeader>(&b).map_err(|e| e.to_string()));
        match header {
            Ok(h) if h.status == "in_progress" => found.push(JobToRecover {
                job_id,
                job_dir,
                wp_id: Some(h.wp_id),
                last_heartbeat_ts: Some(h.updated_at),
                progress_error: None,
            }),
            Ok(_) => {}
            Err(message) => found.push(JobToRecover {
                job_id,
                job_dir,
                wp_id: None,
                last_heartbeat_ts: None,
                progress_error: Some(message),
            }),
        }
    }
    found.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    Ok(found)
}

/// What recovery did (or will do) to one job's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub job_id: String,
    pub wp_id: String,
    pub resume_point: Option<String>,
    pub resume_reason: String,
    pub steps_recovered: u32,
    pub steps_to_retry: u32,
    pub last_completed_step: Option<String>,
    /// The step snapshots recovery appends, in order.
    pub appended_steps: Vec<LedgerStep>,
}

/// Works out the reconciliation of 8.5 step 2 without writing anything.
pub fn plan(job: &JobDir, ledger: &RunLedger) -> Result<RecoveryReport, StoreError> {
    let header = ledger.header();
    let mut report = RecoveryReport {
        job_id: header.job_id.clone(),
        wp_id: header.wp_id.clone(),
        resume_point: None,
        resume_reason: RESUME_REASON.to_owned(),
        steps_recovered: 0,
        steps_to_retry: 0,
        last_completed_step: None,
        appended_steps: Vec::new(),
    };
    let now = now_rfc3339();
    // Statuses after the reconciliation, to find the last completed and the resume step.
    let mut after: Vec<(&str, LedgerStepStatus)> = Vec::with_capacity(ledger.steps().len());
    for step in ledger.steps() {
        if step.status == LedgerStepStatus::InProgress {
            let mut next = step.clone();
            match job.read_step_output(&step.idempotency_key)? {
                Some((_, handle)) => {
                    next.status = LedgerStepStatus::Completed;
                    next.completed_at = Some(now.clone());
                    next.output_artifact_ref = Some(handle);
                    next.error = None;
                    report.steps_recovered += 1;
                }
                None => {
                    next.status = LedgerStepStatus::Pending;
                    next.error = Some(RESET_ERROR.to_owned());
                    next.recoverable = true;
                    report.steps_to_retry += 1;
                }
            }
            after.push((&step.step_id, next.status));
            report.appended_steps.push(next);
        } else {
            after.push((&step.step_id, step.status));
        }
    }
    report.last_completed_step =
        after.iter().rev().find(|(_, s)| *s == LedgerStepStatus::Completed).map(|(id, _)| (*id).to_owned());
    report.resume_point = after
        .iter()
        .find(|(_, s)| matches!(s, LedgerStepStatus::Pending | LedgerStepStatus::Failed))
        .map(|(id, _)| (*id).to_owned());
    Ok(report)
}

/// Appends the records of a plan, the step snapshots then the resume record, with one fsync.
pub fn apply(ledger: &mut RunLedger, report: &RecoveryReport) -> Result<(), StoreError> {
    let mut records: Vec<LedgerRecord> =
        report.appended_steps.iter().cloned().map(LedgerRecord::Step).collect();
    records.push(LedgerRecord::Resume(ResumeRecord {
        resume_point: report.resume_point.clone(),
        resume_reason: report.resume_reason.clone(),
    }));
    ledger.append_all(&records)?;
    Ok(())
}

/// Opens the job's ledger (repairing a torn tail), plans and applies the reconciliation.
pub fn reconcile(job: &JobDir) -> Result<RecoveryReport, StoreError> {
    let mut ledger = RunLedger::open(&job.run_ledger())?;
    reconcile_ledger(job, &mut ledger)
}

/// `reconcile` for a ledger the caller already holds open.
pub fn reconcile_ledger(job: &JobDir, ledger: &mut RunLedger) -> Result<RecoveryReport, StoreError> {
    let report = plan(job, ledger)?;
    apply(ledger, &report)?;
    Ok(report)
}

/// The FR-EVT-WF-RECOVERY event of 8.7 for `report` (actor `system`, `running -> stalled`,
/// threshold 0 because the scan runs at startup).
pub fn recovery_event(report: &RecoveryReport, workflow_run_id: &str, last_heartbeat_ts: &str) -> Event {
    let reason = format!(
        "micro_task_executor crash recovery: wp_id={} resume_point={} steps_recovered={} steps_to_retry={}",
        report.wp_id,
        report.resume_point.as_deref().unwrap_or("none"),
        report.steps_recovered,
        report.steps_to_retry
    );
    Event::new(
        "FR-EVT-WF-RECOVERY",
        json!({
            "workflow_run_id": workflow_run_id,
            "job_id": report.job_id,
            "from_state": "running",
            "to_state": "stalled",
            "reason": reason,
            "last_heartbeat_ts": last_heartbeat_ts,
            "threshold_secs": 0,
            "resume_point": report.resume_point,
            "steps_recovered": report.steps_recovered,
            "steps_to_retry": report.steps_to_retry,
        }),
    )
    .actor(crate::events::Actor::System)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobdir::tests::output;
    use crate::ledger::tests::{header, step};

    fn job_with_ledger() -> (tempfile::TempDir, JobDir, RunLedger) {
        let dir = tempfile::tempdir().unwrap();
        let job = StateDir::new(dir.path()).job("job-1").unwrap();
        job.create().unwrap();
        let ledger = RunLedger::create(&job.run_ledger(), header()).unwrap();
        (dir, job, ledger)
    }

    #[test]
    fn finished_steps_complete_and_unfinished_ones_reset() {
        let (_d, job, mut ledger) = job_with_ledger();
        ledger.append_step(&step("MT-001", 1, LedgerStepStatus::InProgress)).unwrap();
        ledger.append_step(&step("MT-001", 1, LedgerStepStatus::Completed)).unwrap();
        let finished = step("MT-001", 2, LedgerStepStatus::InProgress);
        ledger.append_step(&finished).unwrap();
        job.write_step_output(&output(&finished.idempotency_key, &finished.step_id)).unwrap();
        let mut unfinished = step("MT-002", 1, LedgerStepStatus::InProgress);
        unfinished.idempotency_key = "b".repeat(64);
        ledger.append_step(&unfinished).unwrap();
        drop(ledger);

        let report = reconcile(&job).unwrap();
        assert_eq!((report.steps_recovered, report.steps_to_retry), (1, 1));
        assert_eq!(report.resume_point.as_deref(), Some("MT-002_iter-001"));
        assert_eq!(report.last_completed_step.as_deref(), Some("MT-001_iter-002"));

        let folded = RunLedger::open(&job.run_ledger()).unwrap().fold();
        assert_eq!(folded.resume_reason.as_deref(), Some("crash_recovery"));
        assert_eq!(folded.resume_point.as_deref(), Some("MT-002_iter-001"));
        let s2 = &folded.steps[1];
        assert_eq!(s2.status, LedgerStepStatus::Completed);
        assert_eq!(
            s2.output_artifact_ref.as_ref().unwrap().path,
            format!("step_outputs/{}/output.json", finished.idempotency_key)
        );
        let s3 = &folded.steps[2];
        assert_eq!(s3.status, LedgerStepStatus::Pending);
        assert_eq!(s3.error.as_deref(), Some(RESET_ERROR));
    }

    #[test]
    fn the_scan_finds_running_jobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for (id, status) in [("a", "in_progress"), ("b", "paused"), ("c", "completed")] {
            let job = state.job(id).unwrap();
            job.create().unwrap();
            std::fs::write(
                job.progress_artifact(),
                json!({"job_id": id, "wp_id": "WP-1", "status": status, "updated_at": "2026-01-01T00:00:00.000Z"})
                    .to_string(),
            )
            .unwrap();
        }
        let broken = state.job("d").unwrap();
        broken.create().unwrap();
        std::fs::write(broken.progress_artifact(), "{not json").unwrap();
        let found = scan(dir.path()).unwrap();
        let ids: Vec<&str> = found.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(found[0].last_heartbeat_ts.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert!(found[1].progress_error.is_some());
        assert!(scan(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn the_recovery_event_has_the_8_7_fields_and_validates() {
        let (_d, job, mut ledger) = job_with_ledger();
        ledger.append_step(&step("MT-001", 1, LedgerStepStatus::InProgress)).unwrap();
        let report = reconcile_ledger(&job, &mut ledger).unwrap();
        let event = recovery_event(&report, "run-2", "2026-01-01T00:00:00.000Z");
        assert_eq!(
            event.payload["reason"],
            "micro_task_executor crash recovery: wp_id=WP-1-Test-v1 resume_point=MT-001_iter-001 steps_recovered=0 steps_to_retry=1"
        );
        assert_eq!(event.payload["from_state"], "running");
        assert_eq!(event.payload["to_state"], "stalled");
        let mut c = crate::recorder::tests::correlation();
        c.wp_id = "WP-1-Test-v1".into();
        let fr = crate::recorder::FlightRecorder::create(&job.events(), c).unwrap();
        let stored = fr.emit(event).unwrap();
        assert_eq!(stored.actor, crate::events::Actor::System);
    }
}
