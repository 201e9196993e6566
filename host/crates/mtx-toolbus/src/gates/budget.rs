//! G-BUDGET: time, memory and output caps (MTX-SPEC 10.5). At least one cap must be set;
//! the output spec may not ask for more than the budget; a verify command's timeout lies in
//! [1000, 300000] ms (3.6.3) and the wall cap never exceeds it. Missing caps are filled
//! from the engine's default budget, and no cap may exceed the engine's default ceiling.
//!
//! This gate only computes the effective budget; enforcement (kill on expiry, byte caps,
//! rlimits) is the engine's, and it must never relax what is computed here.

use super::{G_BUDGET, GateDenied, GateEnv, GatePass, GateResult, Prepared, codes};
use crate::op::PlannedOperation;

/// MTX-SPEC 3.6.3 and 11.4: a verify command's timeout range.
pub const MIN_TIMEOUT_MS: u64 = 1000;
pub const MAX_TIMEOUT_MS: u64 = 300_000;

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_BUDGET, code, reason)
}

pub fn check(op: &PlannedOperation, _env: &GateEnv<'_>, prep: &mut Prepared) -> GateResult {
    if !op.budget.any_set() {
        return Err(deny(codes::BUDGET_MISSING, "budget sets no cap"));
    }
    let defaults = prep.engine.as_ref().map(|e| e.default_budget.clone()).unwrap_or_default();
    let mut b = op.budget.clone();
    let output_ceiling = defaults.max_output_bytes.unwrap_or(u64::MAX);
    let out = b.max_output_bytes.unwrap_or(output_ceiling);
    if out > output_ceiling {
        return Err(deny(
            codes::BUDGET_ABOVE_LIMIT,
            format!("max_output_bytes {out} exceeds the engine's cap of {output_ceiling}"),
        ));
    }
    b.max_output_bytes = Some(out);
    if let Some(want) = op.output_spec.max_bytes
        && want > out
    {
        return Err(deny(
            codes::BUDGET_OUTPUT_SPEC,
            format!("output_spec.max_bytes {want} exceeds the budget's max_output_bytes {out}"),
        ));
    }
    if op.engine_id == "engine.shell" {
        let timeout = op.params["timeout_ms"].as_u64().unwrap_or(0);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout) {
            return Err(deny(
                codes::BUDGET_TIMEOUT_RANGE,
                format!("timeout_ms {timeout} is outside [{MIN_TIMEOUT_MS}, {MAX_TIMEOUT_MS}]"),
            ));
        }
        let wall = b.max_duration_ms.unwrap_or(timeout);
        if wall > timeout || wall == 0 {
            return Err(deny(
                codes::BUDGET_TIMEOUT_RANGE,
                format!(
                    "max_duration_ms {wall} must be positive and at most the command's timeout_ms {timeout}"
                ),
            ));
        }
        b.max_duration_ms = Some(wall);
        if let Some(plan) = prep.exec.as_mut() {
            plan.timeout_ms = wall;
        }
    } else if b.max_duration_ms.is_none() {
        b.max_duration_ms = defaults.max_duration_ms;
    }
    if let Some(d) = b.max_duration_ms
        && d > MAX_TIMEOUT_MS
    {
        return Err(deny(
            codes::BUDGET_TIMEOUT_RANGE,
            format!("max_duration_ms {d} exceeds {MAX_TIMEOUT_MS}"),
        ));
    }
    prep.budget = b;
    Ok(GatePass)
}
