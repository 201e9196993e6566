//! `mtx distill export`: candidates become chat-format chosen/rejected records that
//! validate against the published schema; low-trust and ineligible candidates are
//! skipped and counted; a snapshot whose bytes changed fails the export.

mod common;
mod schema;

use std::path::Path;

use mtx_audit::AuditError;
use mtx_audit::distill::{RECORD_SCHEMA, export};
use mtx_store::{ArtifactMeta, ArtifactStore, StateDir};
use mtx_types::ArtifactHandle;
use mtx_types::distill::{
    DistillationCandidate, StudentAttempt, StudentOutcome, TeacherOutcome, TeacherSuccess, TokenizerInfo,
};
use serde_json::Value;

fn put(state: &Path, kind: &str, text: &str) -> ArtifactHandle {
    let store = ArtifactStore::open(&StateDir::new(state).artifacts_dir()).unwrap();
    store
        .put(
            text.as_bytes(),
            ArtifactMeta { kind: kind.into(), producer: "host".into(), ..ArtifactMeta::default() },
        )
        .unwrap()
}

fn candidate(state: &Path, id: &str, trust: f64, eligible: bool) -> DistillationCandidate {
    DistillationCandidate {
        skill_log_entry_id: id.into(),
        mt_id: "MT-001".into(),
        wp_id: common::WP.into(),
        student_attempt: StudentAttempt {
            model_id: "small-coder".into(),
            lora_id: Some("rust-lora".into()),
            lora_version: Some("3".into()),
            prompt_snapshot_ref: put(state, "prompt", &format!("{id}: fix count_words (student prompt)")),
            output_snapshot_ref: put(state, "model_response", &format!("{id}: student answer that fails")),
            outcome: StudentOutcome::ValidationFailed,
            iterations: 3,
        },
        teacher_success: TeacherSuccess {
            model_id: "large-coder".into(),
            lora_id: None,
            prompt_snapshot_ref: put(
                state,
                "prompt",
                &format!(
                    r#"[{{"role":"system","content":"you write Rust"}},{{"role":"user","content":"{id}: fix count_words"}}]"#
                ),
            ),
            output_snapshot_ref: put(state, "model_response", &format!("{id}: teacher answer that passes")),
            outcome: TeacherOutcome::ValidationPassed,
            iterations: 1,
        },
        task_type_tags: vec!["rust".into(), "bugfix".into()],
        contributing_factors: vec!["logic_error_regression".into()],
        data_trust_score: trust,
        distillation_eligible: eligible,
        tokenizer: TokenizerInfo {
            student_tokenizer_id: "tok-small".into(),
            teacher_tokenizer_id: "tok-large".into(),
        },
    }
}

fn store_candidate(state: &Path, job_id: &str, c: &DistillationCandidate) {
    let job = StateDir::new(state).job(job_id).unwrap();
    job.create().unwrap();
    let path = job.subdir("distillation_candidates").join(format!("{}.json", c.skill_log_entry_id));
    std::fs::write(path, serde_json::to_vec_pretty(c).unwrap()).unwrap();
}

#[test]
fn export_writes_the_expected_pairs_and_each_record_validates_against_the_schema() {
    let state = tempfile::tempdir().unwrap();
    let good = candidate(state.path(), "c1-good", 1.0, true);
    store_candidate(state.path(), common::JOB, &good);
    store_candidate(state.path(), common::JOB, &candidate(state.path(), "c2-low", 0.4, false));
    store_candidate(state.path(), common::JOB, &candidate(state.path(), "c3-unverified", 0.8, false));
    store_candidate(state.path(), "job-audit-2", &candidate(state.path(), "c4-other-job", 0.7, true));

    let mut out = Vec::new();
    let summary = export(state.path(), &[], 0.5, &mut out).unwrap();

    assert_eq!((summary.jobs, summary.candidates, summary.exported), (2, 4, 2));
    assert_eq!((summary.skipped_low_trust, summary.skipped_ineligible), (1, 1));
    assert_eq!(summary.exported_by_job.get(common::JOB), Some(&1));
    assert!(
        summary.render_text().contains("4 candidates in 2 jobs: 2 exported"),
        "{}",
        summary.render_text()
    );

    let text = String::from_utf8(out).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    let schema: Value = serde_json::from_str(RECORD_SCHEMA).unwrap();
    for r in &records {
        let errors = schema::validate(&schema, r);
        assert!(errors.is_empty(), "record does not validate: {errors:?}\n{r:#}");
    }
    let r = &records[0];
    assert_eq!(r["id"], "c1-good");
    assert_eq!(r["job_id"], common::JOB);
    assert_eq!(r["prompt"][0]["role"], "system");
    assert_eq!(r["prompt"][1]["content"], "c1-good: fix count_words");
    assert_eq!(r["chosen"]["content"], "c1-good: teacher answer that passes");
    assert_eq!(r["rejected"]["content"], "c1-good: student answer that fails");
    assert_eq!(r["rejected_prompt"][0]["role"], "user");
    assert_eq!(r["trust_score"], 1.0);
    assert_eq!(r["task_tags"], serde_json::json!(["rust", "bugfix"]));
    assert_eq!(r["provenance"]["student"]["outcome"], "VALIDATION_FAILED");
    assert_eq!(r["provenance"]["student"]["lora_id"], "rust-lora");
    assert_eq!(r["provenance"]["teacher"]["model_id"], "large-coder");
    assert_eq!(
        r["artifacts"]["teacher_output_sha256"],
        good.teacher_success.output_snapshot_ref.sha256.as_str()
    );
    assert_eq!(records[1]["id"], "c4-other-job");
}

#[test]
fn the_schema_refuses_a_record_without_its_rejected_sample() {
    // The test validator must be able to fail, or the test above proves nothing.
    let schema: Value = serde_json::from_str(RECORD_SCHEMA).unwrap();
    let state = tempfile::tempdir().unwrap();
    store_candidate(state.path(), common::JOB, &candidate(state.path(), "c1", 1.0, true));
    let mut out = Vec::new();
    export(state.path(), &[common::JOB.to_owned()], 0.0, &mut out).unwrap();
    let mut record: Value = serde_json::from_slice(&out).unwrap();
    record.as_object_mut().unwrap().remove("rejected");
    record["artifacts"]["student_output_sha256"] = "not-a-hash".into();
    let errors = schema::validate(&schema, &record);
    assert!(errors.iter().any(|e| e.contains("rejected")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("student_output_sha256")), "{errors:?}");
}

#[test]
fn a_snapshot_whose_bytes_changed_fails_the_export_by_name() {
    let state = tempfile::tempdir().unwrap();
    let c = candidate(state.path(), "c1", 1.0, true);
    store_candidate(state.path(), common::JOB, &c);
    let blob = StateDir::new(state.path()).artifacts_dir().join(&c.student_attempt.output_snapshot_ref.path);
    std::fs::write(&blob, "rewritten after the run").unwrap();

    let mut out = Vec::new();
    let err = export(state.path(), &[], 0.0, &mut out).unwrap_err();
    assert!(
        matches!(err, AuditError::BadRecord { ref file, .. } if *file == c.student_attempt.output_snapshot_ref.path),
        "{err}"
    );
}

#[test]
fn an_out_of_range_trust_threshold_and_an_unknown_job_are_typed_errors() {
    let state = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    assert!(matches!(export(state.path(), &[], 1.5, &mut out), Err(AuditError::BadTrust { .. })));
    let err = export(state.path(), &["job-nope".to_owned()], 0.5, &mut out).unwrap_err();
    assert!(matches!(err, AuditError::NoJob { ref job_id, .. } if job_id == "job-nope"), "{err}");
}
