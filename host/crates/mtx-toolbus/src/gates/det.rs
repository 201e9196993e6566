//! G-DET: the requested determinism is at most the operation's ceiling, and a D0/D1 result
//! carries evidence (MTX-SPEC 10.4, 10.5; the missing-evidence code is `MEX_EVIDENCE_MISSING`).
//!
//! This gate must never upgrade a level: a result is as replayable as its evidence.

use super::{G_DET, GateDenied, GatePass, GateResult, Prepared, codes};
use crate::op::{EngineResult, OpStatus, PlannedOperation};

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_DET, code, reason)
}

pub fn check_planned(op: &PlannedOperation, prep: &Prepared) -> GateResult {
    let ceiling = match (&prep.operation, &prep.engine) {
        (Some(o), _) => o.determinism_ceiling,
        (None, Some(e)) => e.determinism_ceiling,
        (None, None) => return Err(deny(codes::DET_ABOVE_CEILING, "operation has no registered ceiling")),
    };
    if op.determinism > ceiling {
        return Err(deny(
            codes::DET_ABOVE_CEILING,
            format!(
                "{} {} is at most {ceiling}, {} was requested",
                op.engine_id, op.operation, op.determinism
            ),
        ));
    }
    Ok(GatePass)
}

pub fn check_result(op: &PlannedOperation, result: &EngineResult) -> GateResult {
    if op.determinism.requires_evidence() && result.status != OpStatus::Denied && result.evidence.is_empty() {
        return Err(deny(
            codes::EVIDENCE_MISSING,
            format!("a {} result of {} {} carries no evidence", op.determinism, op.engine_id, op.operation),
        ));
    }
    Ok(GatePass)
}
