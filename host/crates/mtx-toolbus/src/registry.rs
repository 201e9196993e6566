//! The engine registry (MTX-SPEC 10.8): which engines exist, their operations, param
//! schemas, determinism ceilings, required gates, capabilities and default budgets.
//!
//! The built-in registry is `engines.json`, embedded in the binary; a run config may replace
//! it with `Registry::from_json`. The registry only describes engines: it must never decide
//! whether an operation runs (that is the gates' job).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::op::{Budget, Determinism};

const BUILTIN: &str = include_str!("engines.json");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("engine registry is not valid json: {0}")]
    Json(String),
    #[error("engine registry names engine {0} twice")]
    DuplicateEngine(String),
    #[error("engine {engine} declares param {param} with unknown type {ty:?}")]
    BadParamType { engine: String, param: String, ty: String },
    #[error("engine {engine} operation {operation} allows {op} above the engine ceiling {engine_ceiling}")]
    CeilingAboveEngine { engine: String, operation: String, op: Determinism, engine_ceiling: Determinism },
}

/// Required and optional keys of an operation's params, with their JSON types
/// (`string`, `integer`, `boolean`, `object`, `array`). Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSchema {
    #[serde(default)]
    pub required: Map<String, Value>,
    #[serde(default)]
    pub optional: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationSpec {
    pub operation: String,
    pub determinism_ceiling: Determinism,
    /// `READ` | `WRITE` | `EXECUTE` of the `tool_call` event (9.5.5).
    pub side_effect: String,
    /// `IDEMPOTENT` | `IDEMPOTENT_WITH_KEY` | `NON_IDEMPOTENT` of the `tool_call` event.
    pub idempotency: String,
    /// Axes an operation of this kind must request (a scoped form satisfies the axis).
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    pub params: ParamSchema,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSpec {
    pub engine_id: String,
    pub implementation_id: String,
    pub version: String,
    pub implementation_version: String,
    pub determinism_ceiling: Determinism,
    /// Capabilities the engine declares; an axis entry covers its scoped forms.
    pub capabilities: Vec<String>,
    pub required_gates: Vec<String>,
    pub default_budget: Budget,
    #[serde(default)]
    pub adapter: String,
    pub operations: Vec<OperationSpec>,
    /// The conformance vectors (MTX-SPEC 10.9) this engine passes, as `suite::test` names of
    /// this crate's test suites; `tests/conformance.rs` checks each one exists.
    #[serde(default)]
    pub conformance_vectors: Vec<String>,
}

impl EngineSpec {
    pub fn operation(&self, name: &str) -> Option<&OperationSpec> {
        self.operations.iter().find(|o| o.operation == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub schema: String,
    pub engines: Vec<EngineSpec>,
}

impl Registry {
    /// The registry compiled into the binary.
    pub fn builtin() -> Self {
        Registry::from_json(BUILTIN).expect("the embedded engines.json is checked by the crate's tests")
    }

    /// Parses and checks a registry (for a run config's override).
    pub fn from_json(text: &str) -> Result<Self, RegistryError> {
        let reg: Registry = serde_json::from_str(text).map_err(|e| RegistryError::Json(e.to_string()))?;
        for (i, e) in reg.engines.iter().enumerate() {
            if reg.engines[..i].iter().any(|o| o.engine_id == e.engine_id) {
                return Err(RegistryError::DuplicateEngine(e.engine_id.clone()));
            }
            for op in &e.operations {
                if op.determinism_ceiling > e.determinism_ceiling {
                    return Err(RegistryError::CeilingAboveEngine {
                        engine: e.engine_id.clone(),
                        operation: op.operation.clone(),
                        op: op.determinism_ceiling,
                        engine_ceiling: e.determinism_ceiling,
                    });
                }
                for (param, ty) in op.params.required.iter().chain(op.params.optional.iter()) {
                    let known = ty
                        .as_str()
                        .is_some_and(|t| matches!(t, "string" | "integer" | "boolean" | "object" | "array"));
                    if !known {
                        return Err(RegistryError::BadParamType {
                            engine: e.engine_id.clone(),
                            param: param.clone(),
                            ty: ty.to_string(),
                        });
                    }
                }
            }
        }
        Ok(reg)
    }

    pub fn engine(&self, engine_id: &str) -> Option<&EngineSpec> {
        self.engines.iter().find(|e| e.engine_id == engine_id)
    }
}

/// Whether `value` has the registry type `ty`.
pub fn json_type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => false,
    }
}

/// A minimal SemVer requirement check for `engine_version_req`: `*`, `1`, `1.2`, `1.2.3`
/// with an optional comparator (`=`, `^`, `~`, `>=`, `>`, `<=`, `<`); comma-separated
/// comparators must all hold. Returns `None` when the requirement does not parse.
pub fn version_satisfies(version: &str, req: &str) -> Option<bool> {
    let v = parse_version(version)?;
    let mut all = true;
    for part in req.split(',') {
        let part = part.trim();
        if part == "*" || part.is_empty() {
            continue;
        }
        let (cmp, rest) = ["^", "~", ">=", "<=", ">", "<", "="]
            .iter()
            .find_map(|c| part.strip_prefix(c).map(|r| (*c, r.trim())))
            .unwrap_or(("^", part));
        let fields: Vec<&str> = rest.split('.').collect();
        if fields.is_empty() || fields.len() > 3 {
            return None;
        }
        let mut r = [0u64; 3];
        for (i, f) in fields.iter().enumerate() {
            r[i] = f.parse().ok()?;
        }
        let n = fields.len();
        let ok = match cmp {
            "=" => v[..n] == r[..n],
            ">=" => v >= r,
            ">" => v > r,
            "<=" => v <= r,
            "<" => v < r,
            "~" => v >= r && v[0] == r[0] && (n < 2 || v[1] == r[1]),
            _ => {
                // Caret: same left-most non-zero field.
                v >= r
                    && if r[0] > 0 || n == 1 {
                        v[0] == r[0]
                    } else if r[1] > 0 || n == 2 {
                        v[0] == 0 && v[1] == r[1]
                    } else {
                        v == r
                    }
            }
        };
        all &= ok;
    }
    Some(all)
}

fn parse_version(v: &str) -> Option<[u64; 3]> {
    let mut out = [0u64; 3];
    let core = v.split(['-', '+']).next()?;
    let fields: Vec<&str> = core.split('.').collect();
    if fields.len() != 3 {
        return None;
    }
    for (i, f) in fields.iter().enumerate() {
        out[i] = f.parse().ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_declares_the_required_engines() {
        let r = Registry::builtin();
        let shell = r.engine("engine.shell").unwrap();
        assert_eq!(shell.determinism_ceiling, Determinism::D1);
        assert_eq!(shell.default_budget.max_duration_ms, Some(30000));
        assert_eq!(shell.default_budget.max_output_bytes, Some(10_485_760));
        assert!(shell.required_gates.iter().any(|g| g == "G-SAFETY.SANDBOX"));
        let fs = r.engine("engine.fs").unwrap();
        for op in ["write_files", "read_files", "diff"] {
            assert_eq!(fs.operation(op).unwrap().determinism_ceiling, Determinism::D3, "{op}");
        }
    }

    #[test]
    fn overrides_with_bad_types_or_duplicates_are_refused() {
        let mut v: Value = serde_json::from_str(BUILTIN).unwrap();
        v["engines"][0]["operations"][0]["params"]["required"]["command"] = "str".into();
        assert!(matches!(Registry::from_json(&v.to_string()), Err(RegistryError::BadParamType { .. })));
        let mut v: Value = serde_json::from_str(BUILTIN).unwrap();
        let first = v["engines"][0].clone();
        v["engines"].as_array_mut().unwrap().push(first);
        assert!(matches!(Registry::from_json(&v.to_string()), Err(RegistryError::DuplicateEngine(_))));
    }

    #[test]
    fn version_requirements() {
        assert_eq!(version_satisfies("1.0.0", "^1.0"), Some(true));
        assert_eq!(version_satisfies("1.0.0", ">=2"), Some(false));
        assert_eq!(version_satisfies("1.4.2", ">=1.2, <2"), Some(true));
        assert_eq!(version_satisfies("1.0.0", "=1.0.0"), Some(true));
        assert_eq!(version_satisfies("0.2.5", "^0.3"), Some(false));
        assert_eq!(version_satisfies("1.0.0", "abc"), None);
    }
}
