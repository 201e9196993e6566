//! Each gate as a unit, plus the envelope rules: order and recording of outcomes, the raw
//! JSON envelope check, the post-run provenance and evidence checks, determinism and
//! evidence-policy spellings, and the capability_action / gate_outcome payloads.

mod support;

use mtx_toolbus::gates::{self, GateOutcome, codes};
use mtx_toolbus::observer::{Observed, capability_action_payload, gate_outcome_payload};
use mtx_toolbus::op::{EngineResult, EvidencePolicy, OpStatus, Provenance};
use mtx_toolbus::{Determinism, GateDenied, PlannedOperation};
use serde_json::json;
use support::*;

#[test]
fn a_passing_operation_records_all_six_gates_in_spec_order() {
    let fx = fixture(&[]);
    fx.write("a.txt", "x");
    let op = read_op(&["a.txt"]);
    let id = op.op_id.clone();
    run_ok(&fx, op);
    let gates: Vec<(String, GateOutcome)> = fx.obs.gates_for(&id);
    let pre: Vec<&str> = gates.iter().take(6).map(|(g, _)| g.as_str()).collect();
    assert_eq!(pre, gates::GATE_ORDER);
    assert!(gates.iter().all(|(_, o)| *o == GateOutcome::Pass));
    // G-PROVENANCE and G-DET check the result again.
    let post: Vec<&str> = gates.iter().skip(6).map(|(g, _)| g.as_str()).collect();
    assert_eq!(post, ["G-PROVENANCE", "G-DET"]);
}

#[test]
fn the_first_denial_stops_the_later_gates() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.capabilities_requested = vec!["proc.exec:nope".into()];
    let id = op.op_id.clone();
    assert!(fx.bus.submit(op).is_err());
    let gates: Vec<String> = fx.obs.gates_for(&id).into_iter().map(|(g, _)| g).collect();
    assert_eq!(gates, ["G-SCHEMA", "G-CAP"]);
}

#[test]
fn every_capability_check_is_recorded_allowed_or_denied() {
    let fx = fixture(&["true"]);
    let op = exec_op("true", 5000);
    let id = op.op_id.clone();
    run_ok(&fx, op);
    let mut op = exec_op("true", 5000);
    op.capabilities_requested = vec!["proc.exec:true".into(), "proc.exec:ls".into()];
    let denied_id = op.op_id.clone();
    assert!(fx.bus.submit(op).is_err());
    let caps: Vec<(String, String, bool)> = fx
        .obs
        .observed()
        .into_iter()
        .filter_map(|o| match o {
            Observed::Capability { op_id, actor_id, capability, allowed } => {
                assert_eq!(actor_id, "host");
                Some((op_id, capability, allowed))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        caps,
        [
            (id, "proc.exec:true".to_owned(), true),
            (denied_id.clone(), "proc.exec:true".to_owned(), true),
            (denied_id, "proc.exec:ls".to_owned(), false),
        ]
    );
}

#[test]
fn envelope_check_names_the_missing_or_mistyped_field() {
    let op = exec_op("true", 5000);
    let good = serde_json::to_value(&op).unwrap();
    assert!(gates::schema::check_envelope(&good).is_ok());
    for (field, bad) in [
        ("op_id", json!("not-a-uuid")),
        ("params", json!("x")),
        ("inputs", json!({})),
        ("determinism", json!("D9")),
        ("engine_id", json!("")),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        let d = gates::schema::check_envelope(&v).unwrap_err();
        assert_eq!(d.gate, "G-SCHEMA");
        assert!(d.reason.contains(field) || d.code == codes::SCHEMA_INVALID, "{d}");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("budget");
    assert!(gates::schema::check_envelope(&v).unwrap_err().reason.contains("budget"));
}

#[test]
fn budget_without_any_cap_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.budget = Default::default();
    assert_denied(&fx, op, "G-BUDGET", codes::BUDGET_MISSING);
}

#[test]
fn output_spec_asking_more_than_the_budget_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.budget.max_output_bytes = Some(100);
    op.output_spec.max_bytes = Some(200);
    assert_denied(&fx, op, "G-BUDGET", codes::BUDGET_OUTPUT_SPEC);
}

#[test]
fn wall_cap_above_the_command_timeout_is_denied() {
    let fx = fixture(&["true"]);
    let mut op = exec_op("true", 5000);
    op.budget.max_duration_ms = Some(6000);
    assert_denied(&fx, op, "G-BUDGET", codes::BUDGET_TIMEOUT_RANGE);
}

fn complete_result() -> EngineResult {
    let mut environment = serde_json::Map::new();
    environment.insert("os".into(), "linux".into());
    EngineResult {
        op_id: "x".into(),
        status: OpStatus::Succeeded,
        started_at: "t".into(),
        ended_at: "t".into(),
        outputs: Vec::new(),
        evidence: Vec::new(),
        provenance: Provenance {
            engine_id: "engine.fs".into(),
            implementation_id: "mtx.host_fs".into(),
            engine_version: "1.0.0".into(),
            implementation_version: "0.1.0".into(),
            config_hash: "c".repeat(64),
            capabilities_granted: vec!["fs.read".into()],
            environment,
            ..Provenance::default()
        },
        errors: Vec::new(),
        logs_ref: None,
        terminal: None,
        report: None,
    }
}

#[test]
fn result_with_missing_provenance_fields_is_denied() {
    assert!(gates::provenance::check_result(&complete_result()).is_ok());
    let mut r = complete_result();
    r.provenance.config_hash.clear();
    let d: GateDenied = gates::provenance::check_result(&r).unwrap_err();
    assert_eq!((d.gate.as_str(), d.code.as_str()), ("G-PROVENANCE", codes::PROVENANCE_INCOMPLETE));
    let mut r = complete_result();
    r.provenance.capabilities_granted.clear();
    assert!(gates::provenance::check_result(&r).is_err());
    let mut r = complete_result();
    r.outputs.push(mtx_types::ArtifactHandle {
        artifact_id: "a".into(),
        path: "inline".into(),
        sha256: "not a hash".into(),
        size_bytes: None,
        media_type: None,
    });
    assert!(gates::provenance::check_result(&r).is_err(), "outputs must be hashed artifact references");
}

#[test]
fn d1_result_without_evidence_fails_g_det_and_d3_does_not() {
    let op = exec_op("true", 5000);
    let d = gates::det::check_result(&op, &complete_result()).unwrap_err();
    assert_eq!((d.gate.as_str(), d.code.as_str()), ("G-DET", codes::EVIDENCE_MISSING));
    let mut d3 = op.clone();
    d3.determinism = Determinism::D3;
    assert!(gates::det::check_result(&d3, &complete_result()).is_ok());
}

#[test]
fn determinism_reads_lower_case_and_writes_upper_case() {
    let mut v = serde_json::to_value(exec_op("true", 5000)).unwrap();
    v["determinism"] = "d1".into();
    v["evidence_policy"] = json!({"required": true, "notes": "capture_stdout_stderr"});
    let op: PlannedOperation = serde_json::from_value(v).unwrap();
    assert_eq!(op.determinism, Determinism::D1);
    assert_eq!(op.evidence_policy, Some(EvidencePolicy::capture_stdout_stderr()));
    let back = serde_json::to_value(&op).unwrap();
    assert_eq!(back["determinism"], "D1");
    assert_eq!(back["evidence_policy"], "capture_stdout_stderr");
    let mut v = back.clone();
    v["evidence_policy"] = json!({"required": false});
    let op: PlannedOperation = serde_json::from_value(v).unwrap();
    assert!(!op.evidence_policy.unwrap().captures());
}

#[test]
fn unknown_envelope_fields_survive_a_round_trip() {
    let mut v = serde_json::to_value(exec_op("true", 5000)).unwrap();
    v["x_planner_note"] = json!({"k": 1});
    let op: PlannedOperation = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&op).unwrap(), v);
}

#[test]
fn flight_recorder_payloads_use_the_spec_field_names() {
    let op = exec_op("true", 5000);
    let deny = GateOutcome::Deny(GateDenied::new("G-CAP", "CAP_NOT_GRANTED", "no"));
    assert_eq!(
        gate_outcome_payload(&op, "G-CAP", &deny),
        json!({"op_id": op.op_id, "gate": "G-CAP", "outcome": "deny", "reason": "no", "error_code": "CAP_NOT_GRANTED"})
    );
    assert_eq!(
        gate_outcome_payload(&op, "G-SCHEMA", &GateOutcome::Pass),
        json!({"op_id": op.op_id, "gate": "G-SCHEMA", "outcome": "pass"})
    );
    assert_eq!(
        capability_action_payload(&op, "host", "proc.exec:true", true),
        json!({"capability_id": "proc.exec:true", "actor_id": "host", "job_id": "job-1", "decision_outcome": "allow", "op_id": op.op_id})
    );
}

#[test]
fn a_denial_names_its_loop_category() {
    assert_eq!(
        GateDenied::new("G-CAP", codes::CAP_COMMAND_NOT_VERIFY, "").category(),
        "capability_violation"
    );
    assert_eq!(
        GateDenied::new("G-INTEGRITY", codes::SBOX_FS_ESCAPE_DETECTED, "").category(),
        "capability_violation"
    );
    assert_eq!(
        GateDenied::new("G-INTEGRITY", codes::INTEGRITY_OUT_OF_SCOPE, "").category(),
        "scope_violation"
    );
}

#[test]
fn a_profile_with_an_unknown_capability_id_is_refused_at_construction() {
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let profile = mtx_toolbus::CapabilityProfile::new("coder", &["proc.exec:true", "fs.wrtie"]);
    let cfg = mtx_toolbus::ToolBusConfig::new(ws.path(), profile);
    let err = mtx_toolbus::ToolBus::new(
        cfg,
        mtx_store::ArtifactStore::open(state.path()).unwrap(),
        std::sync::Arc::new(mtx_toolbus::RecordingObserver::new()),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(&err, mtx_toolbus::ToolBusError::Config(m) if m.contains("fs.wrtie") && m.contains("HSK-4001")),
        "{err}"
    );
}
