//! Requests to a running job (MTX-SPEC 5.15): an operator skips the active MT, or cancels
//! the job, while the loop runs. The requests come in through the observer, that is from
//! inside an iteration, as they would from another terminal at that moment.

mod support;

use std::path::PathBuf;
use std::sync::Mutex;

use mtx_executor::{ExecError, RunObserver, run_job};
use mtx_types::{ExecutionPolicy, JobStatus};
use support::*;

const A: &str = "src/a.txt";
const B: &str = "src/b.txt";

/// Calls `act(state_dir, job_id)` once, when the first FR-EVT-MT-002 of `mt` is recorded.
struct RequestAt<F: Fn(&std::path::Path, &str) + Send + Sync> {
    state_dir: PathBuf,
    mt: &'static str,
    act: F,
    done: Mutex<bool>,
}

impl<F: Fn(&std::path::Path, &str) + Send + Sync> RunObserver for RequestAt<F> {
    fn event(&self, event: &mtx_store::EventEnvelope) {
        if event.event_type != "FR-EVT-MT-002" || event.mt_id.as_deref() != Some(self.mt) {
            return;
        }
        let mut done = self.done.lock().unwrap();
        if !*done {
            *done = true;
            (self.act)(&self.state_dir, &event.job_id);
        }
    }
}

fn two_mts() -> Fixture {
    fixture(
        &[(A, "old a\n"), (B, "old b\n")],
        // One verify command for both MTs: the second MT passes whether or not the first
        // was done.
        &["grep -q hello src/b.txt"],
        &["src/a.txt says hello", "src/b.txt says hello"],
    )
}

#[test]
fn a_skip_request_skips_the_active_mt_at_its_next_decision_and_the_job_goes_on() {
    let fx = two_mts();
    let cas = cassette(&[
        ("MT-001", 0, 1, &no_claim()),
        ("MT-002", 0, 1, &write_and_claim("MT-002", B, "hello\n", 1)),
    ]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let observer = RequestAt {
        state_dir: s.state_dir.clone(),
        mt: "MT-001",
        act: |state: &std::path::Path, job: &str| {
            let r = mtx_executor::request_skip(state, job, Some("covered elsewhere"), "olga").unwrap();
            assert_eq!(r.mt_id.as_deref(), Some("MT-001"));
        },
        done: Mutex::new(false),
    };
    let out = run_job(&s, &fx.wp, &observer).unwrap();
    assert_eq!(out.status, JobStatus::CompletedWithIssues, "{out:?}");
    assert_eq!(mt_status(&out.job_dir, "MT-001"), "skipped");
    assert_eq!(mt_status(&out.job_dir, "MT-002"), "completed");
    let skipped = events_of(&out.job_dir, "FR-EVT-MT-016");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let p = &skipped[0]["payload"];
    assert_eq!((p["mt_id"].as_str(), p["reason"].as_str()), (Some("MT-001"), Some("user_skip")));
    assert_eq!(p["requested_by"], "olga");
    assert_eq!(p["notes"], "covered elsewhere");
    // The iteration that saw the request is recorded as skipped, after one model call.
    let iterations = &progress(&out.job_dir)["micro_tasks"][0]["iterations"];
    assert_eq!(iterations.as_array().map(Vec::len), Some(1));
    assert_eq!(iterations[0]["outcome"], "SKIPPED");
    assert!(!out.job_dir.join("skip_requested.json").exists(), "an honoured request is cleared");
    assert_eq!(fx.read(A).as_deref(), Some("old a\n"));
    assert_eq!(fx.read(B).as_deref(), Some("hello\n"));
}

#[test]
fn a_cancel_request_stops_the_job_after_the_model_call_and_records_who_asked() {
    let fx = two_mts();
    let cas = cassette(&[("MT-001", 0, 1, &write_and_claim("MT-001", A, "hello\n", 1))]);
    let s = setup(&fx, cas, ExecutionPolicy::default());
    let observer = RequestAt {
        state_dir: s.state_dir.clone(),
        mt: "MT-001",
        act: |state: &std::path::Path, job: &str| {
            mtx_executor::request_cancel(state, job, Some("wrong packet"), "olga").unwrap();
        },
        done: Mutex::new(false),
    };
    let out = run_job(&s, &fx.wp, &observer).unwrap();
    assert_eq!(out.status, JobStatus::Cancelled, "{out:?}");
    let cancelled = events_of(&out.job_dir, "FR-EVT-MT-011");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["payload"]["requested_by"], "olga");
    assert_eq!(cancelled[0]["payload"]["notes"], "wrong packet");
    // 5.15: the interrupted iteration records no completion and applies no edit.
    assert!(events_of(&out.job_dir, "FR-EVT-MT-003").is_empty());
    assert_eq!(fx.read(A).as_deref(), Some("old a\n"));
    assert_eq!(progress(&out.job_dir)["status"], "cancelled");
}

#[test]
fn requests_to_a_job_that_is_not_running_are_refused_with_the_way_forward() {
    let fx = two_mts();
    let (s, out) = run_paused_at_mt_001(&fx, cassette(&[]));
    assert_eq!(out.status, JobStatus::AwaitingUser);
    let err = mtx_executor::request_skip(&s.state_dir, &out.job_id, None, "olga").unwrap_err();
    assert!(
        matches!(&err, ExecError::InvalidInput(m) if m.contains("paused") && m.contains("mtx gate")),
        "{err}"
    );
    let err = mtx_executor::request_cancel(&s.state_dir, "no-such-job", None, "olga").unwrap_err();
    assert!(matches!(err, ExecError::NotFound(_)), "{err}");
    assert!(!out.job_dir.join("skip_requested.json").exists());
}
