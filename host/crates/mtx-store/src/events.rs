//! The Flight Recorder event registry (MTX-SPEC 9.2, 9.3, 9.5): every event id `mtx`
//! emits, its catalogue name, its default actor, and a payload validator that requires
//! the "Req" fields of 9.3 / 9.5. Unknown ids are rejected (9.6 item 2).
//!
//! Id choices this registry makes where the spec leaves a gap:
//! - Tool call: the spec names only the origin id `FR-EVT-007` (`tool_call`), so that
//!   is the id used here.
//! - Plugin calls and grant uses: `FR-EVT-PLUGIN-001` `plugin_call` and
//!   `FR-EVT-PLUGIN-002` `plugin_grant`.
//! - A torn final line cut off from `events.jsonl`: `FR-EVT-MTX-004` `log_tail_repaired`.
//!
//! This module is pure: it validates and redacts values, it never writes anything.

use serde_json::{Map, Value};

use crate::error::StoreError;

/// `actor` of the envelope (9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Human,
    Agent,
    System,
}

/// The JSON shape a required field must have.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Num,
    Bool,
    Obj,
    Arr,
    /// An ArtifactHandle: an object with string `artifact_id`, `path`, `sha256`.
    Handle,
    /// 64 lowercase hex characters.
    Hex64,
    /// A string from a closed set.
    OneOf(&'static [&'static str]),
    /// Any value, `null` included; only presence is required.
    Present,
}

/// How a payload is checked beyond its required fields.
#[derive(Debug, Clone, Copy)]
enum Extra {
    None,
    /// MT-010: `status_reason` + `error_message`, or `error`.
    LoopFailed,
    /// 9.5.1: trace_id and model_id on the envelope as well.
    Inference,
    /// 9.5.3: envelope `mt_id` is mandatory.
    Cloud,
    /// 9.5.4: the payload key set is closed.
    ModelSwap,
}

/// One registry entry.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub default_actor: Actor,
    required: &'static [(&'static str, Kind)],
    extra: Extra,
}

const OUTCOME_STATUS: &[&str] = &["SUCCESS", "RETRY", "ESCALATE", "BLOCKED", "SKIPPED"];

const MODEL_SWAP_KEYS: &[&str] = &[
    "request_id",
    "current_model_id",
    "target_model_id",
    "role",
    "reason",
    "swap_strategy",
    "max_vram_mb",
    "max_ram_mb",
    "timeout_ms",
    "state_persist_refs",
    "state_hash",
    "context_compile_ref",
    "wp_id",
    "mt_id",
    "outcome",
    "error_summary",
];

const MODEL_SWAP_REQ: &[(&str, Kind)] = &[
    ("request_id", Kind::Str),
    ("current_model_id", Kind::Str),
    ("target_model_id", Kind::Str),
    ("role", Kind::OneOf(&["frontend", "orchestrator", "worker", "validator"])),
    ("reason", Kind::Str),
];

const CLOUD_REQ: &[(&str, Kind)] =
    &[("request_id", Kind::Str), ("reason", Kind::Str), ("requested_model_id", Kind::Str)];

use Actor::{Agent, Human, System};
use Kind::*;

macro_rules! ev {
    ($id:literal, $name:literal, $actor:expr, [$(($f:literal, $k:expr)),* $(,)?]) => {
        EventSpec { id: $id, name: $name, default_actor: $actor, required: &[$(($f, $k)),*], extra: Extra::None }
    };
    ($id:literal, $name:literal, $actor:expr, [$(($f:literal, $k:expr)),* $(,)?], $extra:expr) => {
        EventSpec { id: $id, name: $name, default_actor: $actor, required: &[$(($f, $k)),*], extra: $extra }
    };
}

/// Every event id of MTX-SPEC 9.2 and 9.5, plus the ids chosen in the module doc.
pub static REGISTRY: &[EventSpec] = &[
    ev!(
        "FR-EVT-MT-001",
        "micro_task_loop_started",
        Agent,
        [
            ("wp_id", Str),
            ("total_mts", Int),
            ("execution_policy", Obj),
            ("mt_ids", Arr),
            ("execution_waves", Arr)
        ]
    ),
    ev!(
        "FR-EVT-MT-002",
        "micro_task_iteration_started",
        Agent,
        [("wp_id", Str), ("mt_id", Str), ("iteration", Int)]
    ),
    ev!(
        "FR-EVT-MT-003",
        "micro_task_iteration_complete",
        Agent,
        [
            ("wp_id", Str),
            ("mt_id", Str),
            ("iteration", Int),
            ("model.base", Str),
            ("model.context_window", Int),
            ("execution.tokens_prompt", Int),
            ("execution.tokens_completion", Int),
            ("execution.duration_ms", Int),
            ("execution.escalation_level", Int),
            ("outcome.claimed_complete", Bool),
            ("outcome.status", OneOf(OUTCOME_STATUS)),
            ("context_snapshot_id", Str),
            ("step_id", Str),
            ("decision", Present),
            ("context_snapshot_ref", Handle),
            ("prompt_envelope_hashes", Obj),
        ]
    ),
    ev!("FR-EVT-MT-004", "micro_task_complete", Agent, [("wp_id", Str), ("mt_id", Str)]),
    ev!(
        "FR-EVT-MT-005",
        "micro_task_escalated",
        Agent,
        [
            ("wp_id", Str),
            ("mt_id", Str),
            ("from_model", Str),
            ("from_level", Int),
            ("to_model", Str),
            ("to_level", Int),
            ("reason", Str),
            ("failure_category", Str),
            ("iterations_at_previous_level", Int),
            ("escalation_record_ref", Handle),
        ]
    ),
    ev!("FR-EVT-MT-006", "micro_task_hard_gate", Agent, [("wp_id", Str), ("reason", Str)]),
    ev!("FR-EVT-MT-007", "micro_task_pause_requested", Agent, [("wp_id", Str), ("mt_id", Str)]),
    ev!("FR-EVT-MT-008", "micro_task_resumed", Agent, [("wp_id", Str)]),
    ev!("FR-EVT-MT-009", "micro_task_loop_completed", Agent, [("wp_id", Str)]),
    ev!("FR-EVT-MT-010", "micro_task_loop_failed", Agent, [("wp_id", Str)], Extra::LoopFailed),
    ev!("FR-EVT-MT-011", "micro_task_loop_cancelled", Agent, [("wp_id", Str)]),
    ev!(
        "FR-EVT-MT-012",
        "micro_task_validation",
        Agent,
        [("wp_id", Str), ("mt_id", Str), ("iteration", Int), ("passed", Bool)]
    ),
    ev!(
        "FR-EVT-MT-013",
        "micro_task_lora_selection",
        Agent,
        [("wp_id", Str), ("mt_id", Str), ("iteration", Int), ("model_id", Str)]
    ),
    ev!(
        "FR-EVT-MT-014",
        "micro_task_drop_back",
        Agent,
        [("wp_id", Str), ("from_level", Int), ("to_level", Int)]
    ),
    ev!(
        "FR-EVT-MT-015",
        "micro_task_distillation_candidate",
        Agent,
        [("wp_id", Str), ("mt_id", Str), ("candidate_ref", Handle)]
    ),
    ev!("FR-EVT-MT-016", "micro_task_skipped", Agent, [("wp_id", Str), ("mt_id", Str)]),
    ev!("FR-EVT-MT-017", "micro_task_blocked", Agent, [("wp_id", Str), ("mt_id", Str), ("reason", Str)]),
    ev!(
        "FR-EVT-LLM-INFERENCE",
        "llm_inference",
        Agent,
        [
            ("trace_id", Str),
            ("model_id", Str),
            ("token_usage.prompt_tokens", Int),
            ("token_usage.completion_tokens", Int),
            ("token_usage.total_tokens", Int),
        ],
        Extra::Inference
    ),
    ev!(
        "FR-EVT-WF-RECOVERY",
        "workflow_recovery",
        System,
        [
            ("workflow_run_id", Str),
            ("job_id", Str),
            ("from_state", Str),
            ("to_state", Str),
            ("reason", Str),
            ("last_heartbeat_ts", Str),
            ("threshold_secs", Num),
            ("resume_point", Present),
            ("steps_recovered", Int),
            ("steps_to_retry", Int),
        ]
    ),
    EventSpec {
        id: "FR-EVT-CLOUD-001",
        name: "cloud_escalation_requested",
        default_actor: System,
        required: CLOUD_REQ,
        extra: Extra::Cloud,
    },
    EventSpec {
        id: "FR-EVT-CLOUD-002",
        name: "cloud_escalation_approved",
        default_actor: Human,
        required: CLOUD_REQ,
        extra: Extra::Cloud,
    },
    EventSpec {
        id: "FR-EVT-CLOUD-003",
        name: "cloud_escalation_denied",
        default_actor: Human,
        required: CLOUD_REQ,
        extra: Extra::Cloud,
    },
    EventSpec {
        id: "FR-EVT-CLOUD-004",
        name: "cloud_escalation_executed",
        default_actor: System,
        required: CLOUD_REQ,
        extra: Extra::Cloud,
    },
    EventSpec {
        id: "FR-EVT-MODEL-001",
        name: "model_swap_requested",
        default_actor: System,
        required: MODEL_SWAP_REQ,
        extra: Extra::ModelSwap,
    },
    EventSpec {
        id: "FR-EVT-MODEL-002",
        name: "model_swap_completed",
        default_actor: System,
        required: MODEL_SWAP_REQ,
        extra: Extra::ModelSwap,
    },
    EventSpec {
        id: "FR-EVT-MODEL-003",
        name: "model_swap_failed",
        default_actor: System,
        required: MODEL_SWAP_REQ,
        extra: Extra::ModelSwap,
    },
    EventSpec {
        id: "FR-EVT-MODEL-004",
        name: "model_swap_timeout",
        default_actor: System,
        required: MODEL_SWAP_REQ,
        extra: Extra::ModelSwap,
    },
    EventSpec {
        id: "FR-EVT-MODEL-005",
        name: "model_swap_rollback",
        default_actor: System,
        required: MODEL_SWAP_REQ,
        extra: Extra::ModelSwap,
    },
    ev!(
        "FR-EVT-007",
        "tool_call",
        System,
        [("trace_id", Str), ("tool_call_id", Str), ("tool_id", Str), ("tool_version", Str)]
    ),
    ev!(
        "FR-EVT-CAP-001",
        "capability_action",
        System,
        [
            ("capability_id", Str),
            ("actor_id", Str),
            ("job_id", Str),
            ("decision_outcome", OneOf(&["allow", "deny"])),
        ]
    ),
    ev!(
        "FR-EVT-GATE-001",
        "gate_outcome",
        System,
        [("op_id", Str), ("gate", Str), ("outcome", OneOf(&["pass", "deny", "degraded"]))]
    ),
    ev!(
        "FR-EVT-CTX-001",
        "data_retrieval_executed",
        System,
        [("request_id", Str), ("query_hash", Hex64), ("candidates_count", Int), ("selected_count", Int)]
    ),
    ev!(
        "FR-EVT-CTX-002",
        "data_context_assembled",
        System,
        [
            ("request_id", Str),
            ("context_snapshot_id", Str),
            ("context_snapshot_ref", Handle),
            ("total_tokens", Int),
        ]
    ),
    ev!("FR-EVT-MTX-001", "resource_warning", System, [("kind", Str), ("value", Num), ("threshold", Num)]),
    ev!(
        "FR-EVT-MTX-002",
        "gate_decision_recorded",
        Human,
        [
            ("decision_id", Str),
            ("job_id", Str),
            ("wp_id", Str),
            ("gate_reason", Str),
            ("decision", OneOf(&["continue", "abort", "skip"])),
            ("actor", Obj),
            ("decided_at", Str),
        ]
    ),
    ev!(
        "FR-EVT-MTX-003",
        "plugin_failure",
        System,
        [
            ("plugin", Str),
            ("world", Str),
            ("kind", OneOf(&["trap", "deadline", "memory_limit", "bad_output", "denied"])),
            ("message", Str),
        ]
    ),
    ev!(
        "FR-EVT-MTX-004",
        "log_tail_repaired",
        System,
        [("file", Str), ("truncated_at_offset", Int), ("discarded_bytes", Int), ("discarded_sha256", Hex64)]
    ),
    ev!(
        "FR-EVT-PLUGIN-001",
        "plugin_call",
        System,
        [("plugin", Str), ("digest", Hex64), ("input_hash", Hex64), ("output", Present)]
    ),
    ev!(
        "FR-EVT-PLUGIN-002",
        "plugin_grant",
        System,
        [("plugin", Str), ("grant", Str), ("decision_outcome", OneOf(&["allow", "deny"]))]
    ),
];

/// The registry entry of `event_type`, or `UnknownEvent`.
pub fn lookup(event_type: &str) -> Result<&'static EventSpec, StoreError> {
    REGISTRY
        .iter()
        .find(|s| s.id == event_type)
        .ok_or_else(|| StoreError::UnknownEvent(event_type.to_owned()))
}

/// The parts of the envelope a payload is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvelopeView<'a> {
    pub trace_id: &'a str,
    pub wp_id: &'a str,
    pub mt_id: Option<&'a str>,
    pub iteration: Option<u32>,
    pub model_id: Option<&'a str>,
}

fn get_path<'a>(payload: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = payload.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn shape_ok(value: &Value, kind: Kind) -> bool {
    match kind {
        Str => value.is_string(),
        Int => value.is_u64(),
        Num => value.is_number(),
        Bool => value.is_boolean(),
        Obj => value.is_object(),
        Arr => value.is_array(),
        Handle => value.as_object().is_some_and(|o| {
            ["artifact_id", "path", "sha256"].iter().all(|k| o.get(*k).is_some_and(Value::is_string))
        }),
        Hex64 => value.as_str().is_some_and(is_hex64),
        OneOf(allowed) => value.as_str().is_some_and(|s| allowed.contains(&s)),
        Present => true,
    }
}

fn kind_name(kind: Kind) -> String {
    match kind {
        Str => "a string".into(),
        Int => "a non-negative integer".into(),
        Num => "a number".into(),
        Bool => "a bool".into(),
        Obj => "an object".into(),
        Arr => "an array".into(),
        Handle => "an ArtifactHandle".into(),
        Hex64 => "64 lowercase hex characters".into(),
        OneOf(allowed) => format!("one of {}", allowed.join(" | ")),
        Present => "present".into(),
    }
}

/// Checks `payload` against the registry entry of `spec` and the envelope.
pub fn validate(
    spec: &EventSpec,
    env: &EnvelopeView<'_>,
    payload: &Map<String, Value>,
) -> Result<(), StoreError> {
    let bad = |message: String| StoreError::InvalidEvent { event_type: spec.id.to_owned(), message };
    for (path, kind) in spec.required {
        match get_path(payload, path) {
            None => return Err(bad(format!("payload field {path} is required"))),
            Some(v) if !shape_ok(v, *kind) => {
                return Err(bad(format!("payload field {path} must be {}", kind_name(*kind))));
            }
            Some(_) => {}
        }
    }
    // 9.1 [D]: wp_id, mt_id and iteration live in the envelope and the payload, equal.
    if let Some(p) = payload.get("wp_id").and_then(Value::as_str)
        && p != env.wp_id
    {
        return Err(bad(format!("payload wp_id {p} differs from the envelope's {}", env.wp_id)));
    }
    if let (Some(p), Some(e)) = (payload.get("mt_id").and_then(Value::as_str), env.mt_id)
        && p != e
    {
        return Err(bad(format!("payload mt_id {p} differs from the envelope's {e}")));
    }
    if let (Some(p), Some(e)) = (payload.get("iteration").and_then(Value::as_u64), env.iteration)
        && p != u64::from(e)
    {
        return Err(bad(format!("payload iteration {p} differs from the envelope's {e}")));
    }
    match spec.extra {
        Extra::None => {}
        Extra::LoopFailed => {
            let has = |k: &str| payload.get(k).is_some_and(|v| !v.is_null());
            if !(has("error") || (has("status_reason") && has("error_message"))) {
                return Err(bad("payload needs status_reason and error_message, or error".into()));
            }
        }
        Extra::Inference => {
            if uuid::Uuid::parse_str(env.trace_id).map_or(true, |u| u.is_nil()) {
                return Err(bad(format!("trace_id {:?} is not a non-nil UUID", env.trace_id)));
            }
            let model = env.model_id.filter(|m| !m.is_empty());
            let Some(model) = model else {
                return Err(bad("the envelope has no model_id".into()));
            };
            if payload.get("model_id").and_then(Value::as_str) != Some(model) {
                return Err(bad("payload model_id differs from the envelope's".into()));
            }
            if payload.get("trace_id").and_then(Value::as_str) != Some(env.trace_id) {
                return Err(bad("payload trace_id differs from the envelope's".into()));
            }
        }
        Extra::Cloud => {
            if env.mt_id.is_none() {
                return Err(bad("cloud events need mt_id on the envelope".into()));
            }
        }
        Extra::ModelSwap => {
            if let Some(k) = payload.keys().find(|k| !MODEL_SWAP_KEYS.contains(&k.as_str())) {
                return Err(bad(format!(
                    "payload key {k} is not allowed (the model swap key set is closed)"
                )));
            }
            if let Some(h) = payload.get("state_hash")
                && !shape_ok(h, Hex64)
            {
                return Err(bad("payload field state_hash must be 64 lowercase hex characters".into()));
            }
        }
    }
    Ok(())
}

/// What `redact` puts in place of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Whether a key names a secret: one of its `_`/`-` separated words is `token`,
/// `secret`, `password`, `passwd`, `authorization`, `apikey`, `credential(s)` or the pair
/// `api_key`. Word matching keeps counters such as `total_tokens` and `token_usage`
/// (whose values are numbers or objects) readable.
fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    if lower.contains("api_key") || lower.contains("api-key") {
        return true;
    }
    lower.split(['_', '-', '.']).any(|w| {
        matches!(
            w,
            "token"
                | "secret"
                | "password"
                | "passwd"
                | "authorization"
                | "apikey"
                | "credential"
                | "credentials"
        )
    })
}

/// Replaces the string values of secret-named keys, at any depth; returns how many.
pub fn redact(value: &mut Value) -> usize {
    match value {
        Value::Object(map) => {
            let mut n = 0;
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && (v.is_string() || v.is_number()) {
                    *v = Value::from(REDACTED);
                    n += 1;
                } else {
                    n += redact(v);
                }
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(redact).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env<'a>() -> EnvelopeView<'a> {
        EnvelopeView {
            trace_id: "0190f5c2-7d3a-7b4e-9a61-3c2d1e0f4a5b",
            wp_id: "WP-1",
            mt_id: Some("MT-001"),
            iteration: Some(1),
            model_id: Some("m"),
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_registry_has_every_catalogue_id_once() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|s| s.id).collect();
        for n in 1..=17 {
            assert!(ids.contains(&format!("FR-EVT-MT-{n:03}").as_str()), "MT-{n:03}");
        }
        for id in [
            "FR-EVT-CLOUD-004",
            "FR-EVT-MODEL-005",
            "FR-EVT-LLM-INFERENCE",
            "FR-EVT-WF-RECOVERY",
            "FR-EVT-007",
        ] {
            assert!(ids.contains(&id), "{id}");
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate id");
        assert!(matches!(lookup("FR-EVT-CLOUD-005"), Err(StoreError::UnknownEvent(_))));
    }

    #[test]
    fn a_missing_required_field_is_a_shape_error() {
        let spec = lookup("FR-EVT-MT-002").unwrap();
        let ok = obj(json!({"wp_id": "WP-1", "mt_id": "MT-001", "iteration": 1}));
        validate(spec, &env(), &ok).unwrap();
        let missing = obj(json!({"wp_id": "WP-1", "mt_id": "MT-001"}));
        let err = validate(spec, &env(), &missing).unwrap_err();
        assert!(err.to_string().contains("iteration is required"), "{err}");
        let wrong = obj(json!({"wp_id": "WP-1", "mt_id": "MT-001", "iteration": "1"}));
        assert!(matches!(validate(spec, &env(), &wrong), Err(StoreError::InvalidEvent { .. })));
    }

    #[test]
    fn envelope_and_payload_ids_must_agree() {
        let spec = lookup("FR-EVT-MT-002").unwrap();
        let other_mt = obj(json!({"wp_id": "WP-1", "mt_id": "MT-002", "iteration": 1}));
        assert!(validate(spec, &env(), &other_mt).unwrap_err().to_string().contains("mt_id"));
        let other_iter = obj(json!({"wp_id": "WP-1", "mt_id": "MT-001", "iteration": 2}));
        assert!(validate(spec, &env(), &other_iter).is_err());
        let other_wp = obj(json!({"wp_id": "WP-2", "mt_id": "MT-001", "iteration": 1}));
        assert!(validate(spec, &env(), &other_wp).is_err());
    }

    #[test]
    fn inference_without_trace_or_model_is_rejected() {
        let spec = lookup("FR-EVT-LLM-INFERENCE").unwrap();
        let e = env();
        let payload = obj(json!({"trace_id": e.trace_id, "model_id": "m",
            "token_usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}));
        validate(spec, &e, &payload).unwrap();
        let no_model = EnvelopeView { model_id: None, ..e };
        assert!(validate(spec, &no_model, &payload).is_err());
        let nil_trace = EnvelopeView { trace_id: "00000000-0000-0000-0000-000000000000", ..e };
        assert!(validate(spec, &nil_trace, &payload).is_err());
        let mut no_trace = payload.clone();
        no_trace.remove("trace_id");
        assert!(validate(spec, &e, &no_trace).is_err());
    }

    #[test]
    fn model_swap_keys_are_closed_and_loop_failed_needs_a_reason() {
        let spec = lookup("FR-EVT-MODEL-001").unwrap();
        let mut p = obj(json!({"request_id": "r", "current_model_id": "a", "target_model_id": "b",
            "role": "worker", "reason": "escalation", "wp_id": "WP-1"}));
        validate(spec, &env(), &p).unwrap();
        p.insert("surprise".into(), json!(1));
        assert!(validate(spec, &env(), &p).unwrap_err().to_string().contains("surprise"));
        let failed = lookup("FR-EVT-MT-010").unwrap();
        assert!(validate(failed, &env(), &obj(json!({"wp_id": "WP-1"}))).is_err());
        validate(failed, &env(), &obj(json!({"wp_id": "WP-1", "error": "x"}))).unwrap();
        validate(failed, &env(), &obj(json!({"wp_id": "WP-1", "status_reason": "s", "error_message": "m"})))
            .unwrap();
    }

    #[test]
    fn redaction_hides_secrets_and_keeps_token_counters() {
        let mut v = json!({
            "token_usage": {"prompt_tokens": 5, "total_tokens": 9},
            "headers": {"Authorization": "Bearer abc", "x": "y"},
            "access_token": "t0k",
            "list": [{"db_password": "hunter2"}],
            "OPENAI_API_KEY": "sk-1",
        });
        assert_eq!(redact(&mut v), 4);
        assert_eq!(v["token_usage"]["prompt_tokens"], 5);
        assert_eq!(v["headers"]["Authorization"], REDACTED);
        assert_eq!(v["headers"]["x"], "y");
        assert_eq!(v["access_token"], REDACTED);
        assert_eq!(v["list"][0]["db_password"], REDACTED);
        assert_eq!(v["OPENAI_API_KEY"], REDACTED);
    }
}
