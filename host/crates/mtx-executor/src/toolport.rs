//! The WIT `tool-bus` a validator component calls, backed by the job's Tool Bus.
//!
//! Converts the bindings' records to the Tool Bus's plain mirror types and back; every
//! operation goes through `PluginToolBus`, so the six gates apply exactly as to the host's
//! own operations. It must never run or read anything on its own.

use std::sync::{Arc, Mutex};

use mtx_plugin::bindings::{tool_bus as wtb, types as wit};
use mtx_toolbus::plugin::{PluginPlannedOperation, PluginToolBus, PluginToolError};
use mtx_toolbus::{Determinism, OpStatus};

use crate::convert::{handle_from_wit, handle_to_wit};

/// One validator call's port onto the Tool Bus.
pub struct ValidatorPort {
    pub bus: Arc<PluginToolBus>,
    /// Evidence of every operation the validator ran (stdout, stderr, terminal output),
    /// for the iteration's evidence list: what the commands printed is evidence whether
    /// or not the validator cites it.
    pub evidence: Arc<Mutex<Vec<mtx_types::ArtifactHandle>>>,
}

fn tool_error(e: PluginToolError) -> wtb::ToolError {
    match e {
        PluginToolError::Denied { gate, code, reason } => {
            wtb::ToolError::Denied(wtb::GateDenial { gate, code, reason })
        }
        PluginToolError::Invalid(m) => wtb::ToolError::Invalid(m),
        PluginToolError::NoSuchArtifact(m) => wtb::ToolError::NoSuchArtifact(m),
    }
}

impl mtx_plugin::ToolBusPort for ValidatorPort {
    fn submit(&self, _plugin: &str, op: wtb::PlannedOperation) -> Result<wtb::EngineResult, wtb::ToolError> {
        let planned = PluginPlannedOperation {
            engine_id: op.engine_id,
            engine_version_req: op.engine_version_req,
            operation: op.operation,
            inputs: op.inputs.iter().map(handle_from_wit).collect(),
            params_json: op.params_json,
            capabilities_requested: op.capabilities_requested,
            max_duration_ms: op.max_duration_ms,
            max_output_bytes: op.max_output_bytes,
            determinism: match op.determinism {
                wtb::Determinism::D0 => Determinism::D0,
                wtb::Determinism::D1 => Determinism::D1,
                wtb::Determinism::D2 => Determinism::D2,
                wtb::Determinism::D3 => Determinism::D3,
            },
            evidence_policy: op.evidence_policy,
        };
        let r = self.bus.submit(planned).map_err(tool_error)?;
        self.evidence.lock().unwrap_or_else(|p| p.into_inner()).extend(r.evidence.iter().cloned());
        Ok(wtb::EngineResult {
            op_id: r.op_id,
            status: match r.status {
                OpStatus::Succeeded => wtb::OpStatus::Succeeded,
                OpStatus::Failed => wtb::OpStatus::Failed,
                OpStatus::Denied => wtb::OpStatus::Denied,
            },
            outputs: r.outputs.iter().map(handle_to_wit).collect(),
            evidence: r.evidence.iter().map(handle_to_wit).collect(),
            errors: r
                .errors
                .into_iter()
                .map(|e| wtb::EngineError { code: e.code, message: e.message })
                .collect(),
            terminal: r.terminal.map(|t| wtb::TerminalOutput {
                exit_code: t.exit_code,
                timed_out: t.timed_out,
                truncated_bytes: t.truncated_bytes,
                duration_ms: t.duration_ms,
            }),
            result_ref: r.result_ref.as_ref().map(handle_to_wit),
        })
    }

    fn read_artifact(
        &self,
        _plugin: &str,
        handle: &wit::ArtifactHandle,
        max_bytes: u64,
    ) -> Result<Vec<u8>, wtb::ToolError> {
        self.bus.read_artifact(&handle_from_wit(handle), max_bytes).map_err(tool_error)
    }
}
