//! The host side of the WIT `tool-bus` interface (`mtx:plugin@0.1.0`): what a validator
//! component's `submit` and `read-artifact` calls do, in plain Rust types that mirror the
//! WIT records one to one, so the bindings glue in the host only converts field by field.
//!
//! A plugin plans; the host fills `op_id`, the capability profile and the correlation ids,
//! narrows the job profile by the plugin's own grants, and sends the operation through the
//! same `ToolBus::submit_with` as the host's own calls. A plugin can therefore never run
//! anything the gates refuse, and can read back only artifacts its own calls produced.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mtx_types::ArtifactHandle;
use serde_json::{Map, Value};

use crate::bus::{SubmitContext, ToolBus, ToolBusError};
use crate::caps::CapabilityProfile;
use crate::observer::Actor;
use crate::op::{
    Budget, Determinism, EngineError, EngineResult, EvidencePolicy, OpStatus, OutputSpec, POE_SCHEMA_VERSION,
    PlannedOperation, TerminalOutput,
};

/// WIT `planned-operation`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPlannedOperation {
    pub engine_id: String,
    pub engine_version_req: Option<String>,
    pub operation: String,
    pub inputs: Vec<ArtifactHandle>,
    pub params_json: String,
    pub capabilities_requested: Vec<String>,
    pub max_duration_ms: u64,
    pub max_output_bytes: u64,
    pub determinism: Determinism,
    pub evidence_policy: Option<String>,
}

/// WIT `engine-result`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEngineResult {
    pub op_id: String,
    pub status: OpStatus,
    pub outputs: Vec<ArtifactHandle>,
    pub evidence: Vec<ArtifactHandle>,
    pub errors: Vec<EngineError>,
    pub terminal: Option<TerminalOutput>,
    pub result_ref: Option<ArtifactHandle>,
}

/// WIT `tool-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginToolError {
    #[error("{gate} denied the operation ({code}): {reason}")]
    Denied { gate: String, code: String, reason: String },
    #[error("invalid operation: {0}")]
    Invalid(String),
    #[error("no such artifact: {0}")]
    NoSuchArtifact(String),
}

/// Who the calling plugin is and what it may do.
#[derive(Debug, Clone)]
pub struct PluginCallContext {
    pub plugin_name: String,
    /// The plugin manifest's grants (registry ids); the effective set is their
    /// intersection with the job profile (10.10.1).
    pub grants: CapabilityProfile,
    pub job_id: String,
    pub mt_id: Option<String>,
    pub trace_id: String,
}

/// One plugin call's view of the Tool Bus. Lives for one `validate` call; it owns a
/// handle on the bus so it can sit behind the plugin host's `Arc<dyn ToolBusPort>`.
pub struct PluginToolBus {
    bus: Arc<ToolBus>,
    ctx: PluginCallContext,
    produced: Mutex<HashSet<String>>,
}

impl PluginToolBus {
    pub fn new(bus: Arc<ToolBus>, ctx: PluginCallContext) -> Self {
        PluginToolBus { bus, ctx, produced: Mutex::new(HashSet::new()) }
    }

    /// WIT `submit`.
    pub fn submit(&self, op: PluginPlannedOperation) -> Result<PluginEngineResult, PluginToolError> {
        let params: Value = serde_json::from_str(&op.params_json)
            .map_err(|e| PluginToolError::Invalid(format!("params-json is not json: {e}")))?;
        let planned = PlannedOperation {
            schema_version: POE_SCHEMA_VERSION.to_owned(),
            op_id: uuid::Uuid::now_v7().to_string(),
            engine_id: op.engine_id,
            engine_version_req: op.engine_version_req,
            operation: op.operation,
            inputs: op.inputs.into_iter().map(crate::op::InputRef::Artifact).collect(),
            params,
            capabilities_requested: op.capabilities_requested,
            capability_profile_id: self.bus.config().profile.id.clone(),
            budget: Budget {
                max_duration_ms: (op.max_duration_ms > 0).then_some(op.max_duration_ms),
                max_output_bytes: (op.max_output_bytes > 0).then_some(op.max_output_bytes),
                ..Budget::default()
            },
            determinism: op.determinism,
            evidence_policy: op.evidence_policy.map(EvidencePolicy),
            output_spec: OutputSpec { expected_types: Vec::new(), max_bytes: None },
            job_id: Some(self.ctx.job_id.clone()),
            mt_id: self.ctx.mt_id.clone(),
            trace_id: Some(self.ctx.trace_id.clone()),
            extra: Map::new(),
        };
        let submit = SubmitContext {
            actor: Actor::plugin(&self.ctx.plugin_name),
            plugin_grants: Some(self.ctx.grants.clone()),
            parent_span_id: None,
        };
        match self.bus.submit_recorded(planned, &submit) {
            Ok((r, result_ref)) => Ok(self.remember(r, result_ref)),
            Err(ToolBusError::Denied { denial, .. }) => {
                Err(PluginToolError::Denied { gate: denial.gate, code: denial.code, reason: denial.reason })
            }
            Err(other) => Err(PluginToolError::Invalid(other.to_string())),
        }
    }

    /// WIT `read-artifact`: only artifacts produced by this call's own operations.
    pub fn read_artifact(&self, handle: &ArtifactHandle, max_bytes: u64) -> Result<Vec<u8>, PluginToolError> {
        let known = self.produced.lock().unwrap_or_else(|p| p.into_inner()).contains(&handle.path);
        if !known {
            return Err(PluginToolError::NoSuchArtifact(handle.path.clone()));
        }
        let mut bytes = self
            .bus
            .artifacts()
            .get(handle)
            .map_err(|e| PluginToolError::NoSuchArtifact(format!("{}: {e}", handle.path)))?;
        bytes.truncate(max_bytes.min(usize::MAX as u64) as usize);
        Ok(bytes)
    }

    fn remember(&self, r: EngineResult, result_ref: Option<ArtifactHandle>) -> PluginEngineResult {
        let mut produced = self.produced.lock().unwrap_or_else(|p| p.into_inner());
        for h in r.outputs.iter().chain(r.evidence.iter()).chain(result_ref.iter()) {
            produced.insert(h.path.clone());
        }
        PluginEngineResult {
            op_id: r.op_id,
            status: r.status,
            outputs: r.outputs,
            evidence: r.evidence,
            errors: r.errors,
            terminal: r.terminal,
            result_ref,
        }
    }
}
