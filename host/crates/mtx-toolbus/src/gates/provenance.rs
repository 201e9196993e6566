//! G-PROVENANCE: before execution, D0/D1 operations carry an evidence policy, the
//! capabilities are non-empty and the correlation ids (`job_id`, `trace_id`) are present;
//! after execution, the provenance block is complete and every output is an artifact
//! reference, never an inline payload (MTX-SPEC 10.5, 10.7).
//!
//! This gate only inspects records; it must never fill a missing field on the engine's behalf.

use super::{G_PROVENANCE, GateDenied, GatePass, GateResult, codes};
use crate::op::{EngineResult, PlannedOperation};

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_PROVENANCE, code, reason)
}

pub fn check_planned(op: &PlannedOperation) -> GateResult {
    if op.determinism.requires_evidence() && !op.evidence_policy.as_ref().is_some_and(|p| p.captures()) {
        return Err(deny(
            codes::PROVENANCE_EVIDENCE_POLICY,
            format!("a {} operation must carry an evidence policy", op.determinism),
        ));
    }
    if op.capabilities_requested.is_empty() {
        return Err(deny(codes::PROVENANCE_MISSING, "capabilities_requested is empty"));
    }
    for (name, v) in [("job_id", &op.job_id), ("trace_id", &op.trace_id)] {
        if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(deny(
                codes::PROVENANCE_MISSING,
                format!("{name} is missing, so the call cannot be traced"),
            ));
        }
    }
    Ok(GatePass)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn check_result(result: &EngineResult) -> GateResult {
    let p = &result.provenance;
    for (name, v) in [
        ("engine_id", &p.engine_id),
        ("implementation_id", &p.implementation_id),
        ("engine_version", &p.engine_version),
        ("implementation_version", &p.implementation_version),
        ("config_hash", &p.config_hash),
    ] {
        if v.trim().is_empty() {
            return Err(deny(codes::PROVENANCE_INCOMPLETE, format!("provenance.{name} is empty")));
        }
    }
    if p.capabilities_granted.is_empty() {
        return Err(deny(codes::PROVENANCE_INCOMPLETE, "provenance.capabilities_granted is empty"));
    }
    if p.environment.is_empty() {
        return Err(deny(codes::PROVENANCE_INCOMPLETE, "provenance.environment is empty"));
    }
    for h in result.outputs.iter().chain(result.evidence.iter()) {
        if !is_sha256(&h.sha256) || h.path.is_empty() {
            return Err(deny(
                codes::PROVENANCE_INCOMPLETE,
                format!("output {:?} is not a hashed artifact reference", h.path),
            ));
        }
    }
    if p.output_hashes.len() != result.outputs.len() {
        return Err(deny(
            codes::PROVENANCE_INCOMPLETE,
            "provenance.output_hashes does not list every output",
        ));
    }
    Ok(GatePass)
}
