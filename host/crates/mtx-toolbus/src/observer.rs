//! What the Tool Bus tells the Flight Recorder: every gate outcome (FR-EVT-GATE-001
//! `gate_outcome`), every capability check (FR-EVT-CAP-001 `capability_action`) and every
//! tool call (`tool_call`, MTX-SPEC 9.5.5).
//!
//! The payloads are built here, with the spec's field names exactly, so the host only
//! forwards them. An observer must never influence the decision it is told about.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::gates::{GateDenied, GateOutcome};
use crate::op::PlannedOperation;

/// Receiver of Tool Bus records. The host wires it to the Flight Recorder.
pub trait ToolBusObserver: Send + Sync {
    fn gate_outcome(&self, op: &PlannedOperation, gate: &str, outcome: &GateOutcome);
    /// `actor_id` is who asked: `host`, or the plugin's name.
    fn capability_check(&self, op: &PlannedOperation, actor_id: &str, capability: &str, allowed: bool);
    fn tool_call(&self, record: &ToolCallRecord);
}

/// Payload of FR-EVT-GATE-001 `gate_outcome` (9.5.5).
pub fn gate_outcome_payload(op: &PlannedOperation, gate: &str, outcome: &GateOutcome) -> Value {
    let mut m = Map::new();
    m.insert("op_id".into(), op.op_id.clone().into());
    m.insert("gate".into(), gate.into());
    match outcome {
        GateOutcome::Pass => {
            m.insert("outcome".into(), "pass".into());
        }
        GateOutcome::Degraded { reason } => {
            m.insert("outcome".into(), "degraded".into());
            m.insert("reason".into(), reason.clone().into());
        }
        GateOutcome::Deny(GateDenied { code, reason, .. }) => {
            m.insert("outcome".into(), "deny".into());
            m.insert("reason".into(), reason.clone().into());
            m.insert("error_code".into(), code.clone().into());
        }
    }
    Value::Object(m)
}

/// Payload of FR-EVT-CAP-001 `capability_action` (9.5.5).
pub fn capability_action_payload(
    op: &PlannedOperation,
    actor_id: &str,
    capability: &str,
    allowed: bool,
) -> Value {
    json!({
        "capability_id": capability,
        "actor_id": actor_id,
        "job_id": op.job_id.clone().unwrap_or_default(),
        "decision_outcome": if allowed { "allow" } else { "deny" },
        "op_id": op.op_id,
    })
}

/// Who asked for a tool call (the `actor` of 9.5.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// `host` for the loop controller, `plugin` for a validator component.
    pub kind: String,
    pub agent_id: Option<String>,
    pub model_id: Option<String>,
}

impl Actor {
    pub fn host() -> Self {
        Actor { kind: "host".into(), agent_id: None, model_id: None }
    }

    pub fn plugin(name: &str) -> Self {
        Actor { kind: "plugin".into(), agent_id: Some(name.to_owned()), model_id: None }
    }

    pub fn id(&self) -> String {
        self.agent_id.clone().unwrap_or_else(|| self.kind.clone())
    }
}

/// The error block of a `tool_call` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallError {
    pub code: String,
    /// `denied` for a gate denial, `engine` for an engine error.
    pub kind: String,
    pub message: String,
    pub retryable: bool,
}

/// One `tool_call` event (9.5.5), built by the bus after every submission.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRecord {
    pub trace_id: String,
    pub tool_call_id: String,
    pub tool_id: String,
    pub tool_version: String,
    pub side_effect: String,
    pub idempotency: String,
    pub idempotency_key: Option<String>,
    pub actor: Actor,
    pub ok: bool,
    pub args_hash: String,
    pub result_ref: Option<String>,
    pub result_hash: Option<String>,
    pub error: Option<ToolCallError>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    pub workspace_ids: Vec<String>,
    pub artifacts: Vec<String>,
    pub files: Vec<String>,
    pub capability_ids: Vec<String>,
    pub parent_span_id: Option<String>,
}

impl ToolCallRecord {
    /// The `tool_call` payload with the 9.5.5 field names; `transport` is `local`.
    pub fn to_payload(&self) -> Value {
        let mut m = Map::new();
        m.insert("trace_id".into(), self.trace_id.clone().into());
        m.insert("tool_call_id".into(), self.tool_call_id.clone().into());
        m.insert("tool_id".into(), self.tool_id.clone().into());
        m.insert("tool_version".into(), self.tool_version.clone().into());
        m.insert("transport".into(), "local".into());
        m.insert("side_effect".into(), self.side_effect.clone().into());
        m.insert("idempotency".into(), self.idempotency.clone().into());
        if let Some(k) = &self.idempotency_key {
            m.insert("idempotency_key".into(), k.clone().into());
        }
        let mut actor = Map::new();
        actor.insert("kind".into(), self.actor.kind.clone().into());
        if let Some(a) = &self.actor.agent_id {
            actor.insert("agent_id".into(), a.clone().into());
        }
        if let Some(mdl) = &self.actor.model_id {
            actor.insert("model_id".into(), mdl.clone().into());
        }
        m.insert("actor".into(), Value::Object(actor));
        m.insert("ok".into(), self.ok.into());
        m.insert("args_hash".into(), self.args_hash.clone().into());
        if let Some(r) = &self.result_ref {
            m.insert("result_ref".into(), r.clone().into());
        }
        if let Some(h) = &self.result_hash {
            m.insert("result_hash".into(), h.clone().into());
        }
        if let Some(e) = &self.error {
            m.insert(
                "error".into(),
                json!({"code": e.code, "kind": e.kind, "message": e.message, "retryable": e.retryable}),
            );
        }
        m.insert(
            "timing".into(),
            json!({"started_at": self.started_at, "ended_at": self.ended_at, "duration_ms": self.duration_ms}),
        );
        m.insert(
            "resources_touched".into(),
            json!({"workspace_ids": self.workspace_ids, "artifacts": self.artifacts, "files": self.files, "urls": []}),
        );
        m.insert("capability_ids".into(), json!(self.capability_ids));
        if let Some(p) = &self.parent_span_id {
            m.insert("parent_span_id".into(), p.clone().into());
        }
        Value::Object(m)
    }
}

/// One recorded observation of a [`RecordingObserver`].
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Gate { op_id: String, gate: String, outcome: GateOutcome },
    Capability { op_id: String, actor_id: String, capability: String, allowed: bool },
    ToolCall(Value),
}

/// Keeps every observation in memory, in order: for tests, and for callers that want to
/// inspect what a batch of operations recorded before forwarding it.
#[derive(Debug, Default)]
pub struct RecordingObserver {
    seen: Mutex<Vec<Observed>>,
}

impl RecordingObserver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observed(&self) -> Vec<Observed> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Gate outcomes recorded for `op_id`, in order, as `(gate, outcome)`.
    pub fn gates_for(&self, op_id: &str) -> Vec<(String, GateOutcome)> {
        self.observed()
            .into_iter()
            .filter_map(|o| match o {
                Observed::Gate { op_id: id, gate, outcome } if id == op_id => Some((gate, outcome)),
                _ => None,
            })
            .collect()
    }

    /// The recorded denial of `op_id`, if any.
    pub fn denial_for(&self, op_id: &str) -> Option<GateDenied> {
        self.gates_for(op_id).into_iter().find_map(|(_, o)| match o {
            GateOutcome::Deny(d) => Some(d),
            _ => None,
        })
    }

    pub fn tool_calls(&self) -> Vec<Value> {
        self.observed()
            .into_iter()
            .filter_map(|o| match o {
                Observed::ToolCall(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    fn push(&self, o: Observed) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).push(o);
    }
}

impl ToolBusObserver for RecordingObserver {
    fn gate_outcome(&self, op: &PlannedOperation, gate: &str, outcome: &GateOutcome) {
        self.push(Observed::Gate {
            op_id: op.op_id.clone(),
            gate: gate.to_owned(),
            outcome: outcome.clone(),
        });
    }

    fn capability_check(&self, op: &PlannedOperation, actor_id: &str, capability: &str, allowed: bool) {
        self.push(Observed::Capability {
            op_id: op.op_id.clone(),
            actor_id: actor_id.to_owned(),
            capability: capability.to_owned(),
            allowed,
        });
    }

    fn tool_call(&self, record: &ToolCallRecord) {
        self.push(Observed::ToolCall(record.to_payload()));
    }
}
