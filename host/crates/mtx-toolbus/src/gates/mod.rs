//! The six global gates of MTX-SPEC 10.5, one module each, run in the spec's order before
//! an engine is invoked (G-PROVENANCE and G-DET check the result again afterwards).
//!
//! A gate is a function from the operation and the bus's policy to `GatePass` or a typed
//! `GateDenied { gate, code, reason }`; every outcome is reported to the observer. Gates
//! must never run anything or write anything: they only read the workspace to resolve paths
//! and the artifact store to verify input hashes.

pub mod budget;
pub mod cap;
pub mod det;
pub mod integrity;
pub mod provenance;
pub mod schema;

use std::path::{Path, PathBuf};

use mtx_store::ArtifactStore;

use crate::caps::CapabilityProfile;
use crate::fs_engine::{DiffPlan, ReadPlan, WritePlan};
use crate::observer::ToolBusObserver;
use crate::op::{Budget, PlannedOperation};
use crate::registry::{EngineSpec, OperationSpec, Registry};
use crate::shell::ExecPlan;

pub const G_SCHEMA: &str = "G-SCHEMA";
pub const G_CAP: &str = "G-CAP";
pub const G_INTEGRITY: &str = "G-INTEGRITY";
pub const G_BUDGET: &str = "G-BUDGET";
pub const G_PROVENANCE: &str = "G-PROVENANCE";
pub const G_DET: &str = "G-DET";
pub const G_SAFETY_SANDBOX: &str = "G-SAFETY.SANDBOX";

/// The order of MTX-SPEC 10.5.
pub const GATE_ORDER: [&str; 6] = [G_SCHEMA, G_CAP, G_INTEGRITY, G_BUDGET, G_PROVENANCE, G_DET];

/// Denial codes. `HSK-4001`, `MEX_EVIDENCE_MISSING` and `SBOX_*` are the spec's; the rest
/// are `mtx`'s, one per distinct reason so callers and tests match on the kind.
pub mod codes {
    pub const SCHEMA_INVALID: &str = "POE_SCHEMA_INVALID";
    pub const SCHEMA_VERSION: &str = "POE_SCHEMA_VERSION";
    pub const PARAMS_INVALID: &str = "POE_PARAMS_INVALID";
    pub const SHELL_METACHARACTER: &str = "POE_SHELL_METACHARACTER";
    pub const UNKNOWN_CAPABILITY: &str = crate::caps::UNKNOWN_CAPABILITY_CODE;
    pub const CAP_NONE_REQUESTED: &str = "CAP_NONE_REQUESTED";
    pub const CAP_PROFILE_MISMATCH: &str = "CAP_PROFILE_MISMATCH";
    pub const CAP_ENGINE_UNKNOWN: &str = "CAP_ENGINE_UNKNOWN";
    pub const CAP_ENGINE_VERSION: &str = "CAP_ENGINE_VERSION_UNSATISFIED";
    pub const CAP_NOT_DECLARED: &str = "CAP_NOT_DECLARED";
    pub const CAP_NOT_GRANTED: &str = "CAP_NOT_GRANTED";
    pub const CAP_CONSENT_REQUIRED: &str = "CAP_CONSENT_REQUIRED";
    pub const CAP_REQUIRED_MISSING: &str = "CAP_REQUIRED_MISSING";
    pub const CAP_COMMAND_NOT_VERIFY: &str = "CAP_COMMAND_NOT_VERIFY";
    pub const CAP_NO_TOOL_NAME: &str = "CAP_NO_TOOL_NAME";
    pub const CAP_PROGRAM_NOT_FOUND: &str = "CAP_PROGRAM_NOT_FOUND";
    pub const CAP_PROGRAM_MISMATCH: &str = "CAP_PROGRAM_MISMATCH";
    pub const CAP_PROGRAM_IN_WORKSPACE: &str = "CAP_PROGRAM_IN_WORKSPACE";
    pub const CAP_ENV_NOT_GRANTED: &str = "CAP_ENV_NOT_GRANTED";
    pub const INTEGRITY_PARAMS_TOO_LARGE: &str = "INTEGRITY_PARAMS_TOO_LARGE";
    pub const INTEGRITY_INPUT_HASH: &str = "INTEGRITY_INPUT_HASH_MISMATCH";
    pub const INTEGRITY_INPUT_MISSING: &str = "INTEGRITY_INPUT_MISSING";
    pub const INTEGRITY_PATH_INVALID: &str = "INTEGRITY_PATH_INVALID";
    pub const INTEGRITY_OUTSIDE_WORKSPACE: &str = "INTEGRITY_OUTSIDE_WORKSPACE";
    pub const INTEGRITY_OUT_OF_SCOPE: &str = "INTEGRITY_OUT_OF_SCOPE";
    pub const INTEGRITY_SYMLINK_WRITE: &str = "INTEGRITY_SYMLINK_WRITE";
    pub const INTEGRITY_NOT_A_FILE: &str = "INTEGRITY_NOT_A_FILE";
    pub const INTEGRITY_MODIFY_MISSING: &str = "INTEGRITY_MODIFY_MISSING";
    pub const INTEGRITY_CREATE_EXISTS: &str = "INTEGRITY_CREATE_EXISTS";
    pub const INTEGRITY_PRE_IMAGE_CONFLICT: &str = "INTEGRITY_PRE_IMAGE_CONFLICT";
    pub const INTEGRITY_PROTECTED_PATH: &str = "INTEGRITY_PROTECTED_PATH";
    pub const SBOX_FS_ESCAPE_DETECTED: &str = "SBOX_FS_ESCAPE_DETECTED";
    pub const SBOX_POLICY_DENIED: &str = "SBOX_POLICY_DENIED";
    pub const SBOX_RUNTIME_ERROR: &str = "SBOX_RUNTIME_ERROR";
    pub const SBOX_TIMEOUT: &str = "SBOX_TIMEOUT";
    pub const BUDGET_MISSING: &str = "BUDGET_MISSING";
    pub const BUDGET_TIMEOUT_RANGE: &str = "BUDGET_TIMEOUT_OUT_OF_RANGE";
    pub const BUDGET_OUTPUT_SPEC: &str = "BUDGET_OUTPUT_SPEC_EXCEEDS_BUDGET";
    pub const BUDGET_ABOVE_LIMIT: &str = "BUDGET_ABOVE_ENGINE_LIMIT";
    pub const PROVENANCE_MISSING: &str = "PROVENANCE_MISSING";
    pub const PROVENANCE_EVIDENCE_POLICY: &str = "PROVENANCE_EVIDENCE_POLICY_MISSING";
    pub const PROVENANCE_INCOMPLETE: &str = "PROVENANCE_INCOMPLETE";
    pub const DET_ABOVE_CEILING: &str = "DET_ABOVE_CEILING";
    pub const EVIDENCE_MISSING: &str = "MEX_EVIDENCE_MISSING";
}

/// A refusal: which gate, a stable code, and a reason naming the thing refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{gate} denied the operation ({code}): {reason}")]
pub struct GateDenied {
    pub gate: String,
    pub code: String,
    pub reason: String,
}

impl GateDenied {
    pub fn new(gate: &str, code: &str, reason: impl Into<String>) -> Self {
        GateDenied { gate: gate.to_owned(), code: code.to_owned(), reason: reason.into() }
    }

    /// The 11.1 category a loop should assign: a sandbox escape or a G-CAP denial of a
    /// command is a `capability_violation`; a refused edit is a `scope_violation` (10.14).
    pub fn category(&self) -> &'static str {
        if self.code == codes::SBOX_FS_ESCAPE_DETECTED || self.gate == G_CAP {
            "capability_violation"
        } else if self.gate == G_INTEGRITY {
            "scope_violation"
        } else {
            "validation_error"
        }
    }
}

/// A gate that let the operation through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePass;

/// What the observer is told for each gate (FR-EVT-GATE-001 `outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    Pass,
    Degraded { reason: String },
    Deny(GateDenied),
}

pub type GateResult = Result<GatePass, GateDenied>;

/// The bus's policy as the gates see it.
pub struct GateEnv<'a> {
    /// Canonical workspace root.
    pub workspace_root: &'a Path,
    pub profile: &'a CapabilityProfile,
    /// The calling plugin's manifest grants; the effective set is the intersection (10.10.1).
    pub plugin_grants: Option<&'a CapabilityProfile>,
    pub verify_commands: &'a [String],
    pub shell_program: Option<&'a str>,
    /// Workspace-relative prefixes no `write_files` may touch, whatever its scope says.
    pub protected_paths: &'a [String],
    pub granted_env: &'a [(String, String)],
    /// The configured PATH entries in order, as given (workspace entries included, so the
    /// gate can refuse a name they would shadow).
    pub configured_path: &'a [PathBuf],
    pub registry: &'a Registry,
    pub artifacts: &'a ArtifactStore,
    pub observer: &'a dyn ToolBusObserver,
    /// Who submitted the operation (`host` or a plugin name), for capability records.
    pub actor_id: &'a str,
}

/// What the gates resolved for the engine, so the engine never re-parses the params.
#[derive(Debug, Default)]
pub struct Prepared {
    pub engine: Option<EngineSpec>,
    pub operation: Option<OperationSpec>,
    pub exec: Option<ExecPlan>,
    pub writes: Option<WritePlan>,
    pub reads: Option<ReadPlan>,
    pub diff: Option<DiffPlan>,
    pub budget: Budget,
    pub capabilities_granted: Vec<String>,
    pub input_hashes: Vec<String>,
}

/// Runs the six gates in order, reporting each outcome; stops at the first denial.
pub fn run_gates(op: &PlannedOperation, env: &GateEnv<'_>) -> Result<Prepared, GateDenied> {
    let mut prep = Prepared::default();
    let op_value = serde_json::to_value(op).map_err(|e| {
        GateDenied::new(G_SCHEMA, codes::SCHEMA_INVALID, format!("operation does not serialise: {e}"))
    })?;
    for gate in GATE_ORDER {
        let outcome = match gate {
            G_SCHEMA => schema::check(&op_value, env, &mut prep),
            G_CAP => cap::check(op, env, &mut prep),
            G_INTEGRITY => integrity::check(op, env, &mut prep),
            G_BUDGET => budget::check(op, env, &mut prep),
            G_PROVENANCE => provenance::check_planned(op),
            _ => det::check_planned(op, &prep),
        };
        report(env.observer, op, gate, &outcome);
        outcome?;
    }
    Ok(prep)
}

/// Reports one outcome to the observer.
pub fn report(observer: &dyn ToolBusObserver, op: &PlannedOperation, gate: &str, outcome: &GateResult) {
    let o = match outcome {
        Ok(GatePass) => GateOutcome::Pass,
        Err(d) => GateOutcome::Deny(d.clone()),
    };
    observer.gate_outcome(op, gate, &o);
}

/// Whether `path` lies inside `root` (both canonical).
pub(crate) fn inside(root: &Path, path: &Path) -> bool {
    path.starts_with(root)
}
