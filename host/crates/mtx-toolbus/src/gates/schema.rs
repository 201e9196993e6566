//! G-SCHEMA: the envelope is a `poe-1.0` PlannedOperation with every minimum field present
//! and typed, and `params` validates against the operation's param schema (required keys,
//! types, no unknown keys). For `engine.shell` it also refuses shell syntax in a command
//! unless the run config grants a shell program.
//!
//! This gate reads only the operation; it must never look at the workspace.

use serde_json::Value;

use super::{G_SCHEMA, GateDenied, GateEnv, GatePass, GateResult, Prepared, codes};
use crate::op::{Determinism, POE_SCHEMA_VERSION};
use crate::registry::json_type_matches;
use crate::shell;

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_SCHEMA, code, reason)
}

/// The envelope rules of 10.2 on a raw JSON value.
pub fn check_envelope(v: &Value) -> GateResult {
    let obj = v.as_object().ok_or_else(|| deny(codes::SCHEMA_INVALID, "operation is not a json object"))?;
    let fields: [(&str, &str); 12] = [
        ("schema_version", "string"),
        ("op_id", "string"),
        ("engine_id", "string"),
        ("engine_version_req", "string|null"),
        ("operation", "string"),
        ("inputs", "array"),
        ("params", "object"),
        ("capabilities_requested", "array"),
        ("capability_profile_id", "string"),
        ("budget", "object"),
        ("determinism", "string"),
        ("output_spec", "object"),
    ];
    for (key, ty) in fields {
        let value =
            obj.get(key).ok_or_else(|| deny(codes::SCHEMA_INVALID, format!("field {key} is missing")))?;
        let ok = match ty {
            "string|null" => value.is_string() || value.is_null(),
            t => json_type_matches(value, t),
        };
        if !ok {
            return Err(deny(codes::SCHEMA_INVALID, format!("field {key} must be {ty}")));
        }
    }
    let version = obj["schema_version"].as_str().unwrap_or_default();
    if version != POE_SCHEMA_VERSION {
        return Err(deny(
            codes::SCHEMA_VERSION,
            format!("schema_version {version:?} is not {POE_SCHEMA_VERSION:?}"),
        ));
    }
    let op_id = obj["op_id"].as_str().unwrap_or_default();
    if uuid::Uuid::parse_str(op_id).is_err() {
        return Err(deny(codes::SCHEMA_INVALID, format!("op_id {op_id:?} is not a uuid")));
    }
    for key in ["engine_id", "operation"] {
        if obj[key].as_str().unwrap_or_default().trim().is_empty() {
            return Err(deny(codes::SCHEMA_INVALID, format!("field {key} is empty")));
        }
    }
    let det = obj["determinism"].as_str().unwrap_or_default();
    if Determinism::parse(det).is_none() {
        return Err(deny(codes::SCHEMA_INVALID, format!("determinism {det:?} is not one of D0..D3")));
    }
    if let Some(caps) = obj["capabilities_requested"].as_array()
        && caps.iter().any(|c| !c.is_string())
    {
        return Err(deny(codes::SCHEMA_INVALID, "capabilities_requested must hold strings"));
    }
    for key in [
        "max_duration_ms",
        "max_output_bytes",
        "max_memory_bytes",
        "max_cpu_ms",
        "max_processes",
        "max_file_bytes",
    ] {
        if let Some(b) = obj["budget"].get(key)
            && !b.is_u64()
        {
            return Err(deny(codes::SCHEMA_INVALID, format!("budget.{key} must be a non-negative integer")));
        }
    }
    if let Some(p) = obj.get("evidence_policy")
        && !(p.is_string() || p.is_object() || p.is_null())
    {
        return Err(deny(codes::SCHEMA_INVALID, "evidence_policy must be a string or an object"));
    }
    Ok(GatePass)
}

/// `params` against the registered operation's schema.
pub fn check_params(
    params: &Value,
    required: &serde_json::Map<String, Value>,
    optional: &serde_json::Map<String, Value>,
) -> GateResult {
    let obj = params.as_object().ok_or_else(|| deny(codes::PARAMS_INVALID, "params is not an object"))?;
    for (key, ty) in required {
        let v =
            obj.get(key).ok_or_else(|| deny(codes::PARAMS_INVALID, format!("params.{key} is missing")))?;
        let ty = ty.as_str().unwrap_or_default();
        if !json_type_matches(v, ty) {
            return Err(deny(codes::PARAMS_INVALID, format!("params.{key} must be {ty}")));
        }
    }
    for (key, v) in obj {
        if required.contains_key(key) {
            continue;
        }
        let Some(ty) = optional.get(key).and_then(Value::as_str) else {
            return Err(deny(
                codes::PARAMS_INVALID,
                format!("params.{key} is not a parameter of this operation"),
            ));
        };
        if !json_type_matches(v, ty) {
            return Err(deny(codes::PARAMS_INVALID, format!("params.{key} must be {ty}")));
        }
    }
    Ok(GatePass)
}

pub fn check(op_value: &Value, env: &GateEnv<'_>, prep: &mut Prepared) -> GateResult {
    check_envelope(op_value)?;
    let engine_id = op_value["engine_id"].as_str().unwrap_or_default();
    let operation = op_value["operation"].as_str().unwrap_or_default();
    // An unregistered engine or operation is G-CAP's denial (10.5); nothing to validate here.
    let Some(engine) = env.registry.engine(engine_id) else { return Ok(GatePass) };
    let Some(spec) = engine.operation(operation) else { return Ok(GatePass) };
    let params = &op_value["params"];
    check_params(params, &spec.params.required, &spec.params.optional)?;
    prep.engine = Some(engine.clone());
    prep.operation = Some(spec.clone());
    match (engine_id, operation) {
        ("engine.shell", "exec") => {
            let command = params["command"].as_str().unwrap_or_default();
            prep.exec = Some(
                shell::parse_command(command, env.shell_program)
                    .map_err(|e| deny(e.code(), e.to_string()))?,
            );
            if let Some(envs) = params.get("env").and_then(Value::as_object)
                && let Some((k, _)) = envs.iter().find(|(_, v)| !v.is_string())
            {
                return Err(deny(codes::PARAMS_INVALID, format!("params.env.{k} must be a string")));
            }
            Ok(GatePass)
        }
        ("engine.fs", _) => crate::fs_engine::check_params_shape(operation, params)
            .map(|()| GatePass)
            .map_err(|m| deny(codes::PARAMS_INVALID, m)),
        _ => Ok(GatePass),
    }
}
