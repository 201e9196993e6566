//! The published JSON Schemas (`schemas/*.schema.json`) accept what the Tool Bus writes:
//! a real PlannedOperation and real EngineResults (succeeded shell run, denied run, fs
//! write), and reject records missing a required field. The validator below covers the
//! subset the schemas use: type, required, properties, items, enum, minItems, minLength,
//! minimum, pattern for lowercase hex, anyOf and local `$ref`.

mod support;

use serde_json::{Value, json};
use support::*;

fn schema(name: &str) -> Value {
    let path = format!("{}/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn type_ok(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn validate(root: &Value, s: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r.trim_start_matches("#/").split('/').fold(root, |acc, k| &acc[k]);
        return validate(root, target, v, at, errs);
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let ok = any.iter().any(|alt| {
            let mut e = Vec::new();
            validate(root, alt, v, at, &mut e);
            e.is_empty()
        });
        if !ok {
            errs.push(format!("{at}: matches no alternative"));
        }
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(v, t) => errs.push(format!("{at}: not {t}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(v, t.as_str().unwrap())) => {
            errs.push(format!("{at}: none of {ts:?}"))
        }
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} not in enum"));
    }
    if let (Some(min), Some(a)) = (s.get("minItems").and_then(Value::as_u64), v.as_array())
        && (a.len() as u64) < min
    {
        errs.push(format!("{at}: fewer than {min} items"));
    }
    if let (Some(min), Some(st)) = (s.get("minLength").and_then(Value::as_u64), v.as_str())
        && (st.chars().count() as u64) < min
    {
        errs.push(format!("{at}: shorter than {min}"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_i64), v.as_i64())
        && n < min
    {
        errs.push(format!("{at}: below {min}"));
    }
    if let (Some(p), Some(st)) = (s.get("pattern").and_then(Value::as_str), v.as_str()) {
        assert_eq!(p, "^[0-9a-f]{64}$", "the test validator knows only the sha256 pattern");
        if !(st.len() == 64 && st.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))) {
            errs.push(format!("{at}: not a sha256"));
        }
    }
    if let (Some(req), Some(o)) = (s.get("required").and_then(Value::as_array), v.as_object()) {
        for k in req {
            if !o.contains_key(k.as_str().unwrap()) {
                errs.push(format!("{at}: missing {k}"));
            }
        }
    }
    if let (Some(props), Some(o)) = (s.get("properties").and_then(Value::as_object), v.as_object()) {
        for (k, ps) in props {
            if let Some(child) = o.get(k) {
                validate(root, ps, child, &format!("{at}.{k}"), errs);
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, item) in a.iter().enumerate() {
            validate(root, items, item, &format!("{at}[{i}]"), errs);
        }
    }
}

fn errors(schema: &Value, v: &Value) -> Vec<String> {
    let mut e = Vec::new();
    validate(schema, schema, v, "$", &mut e);
    e
}

#[test]
fn planned_operation_schema_accepts_what_the_bus_writes() {
    let s = schema("planned_operation");
    let ops = [
        exec_op("cargo test config::merger", 120_000),
        write_op(json!([{"path": "a", "content": "x"}]), &[], &["a"]),
        read_op(&["a"]),
    ];
    for op in ops {
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(errors(&s, &v), Vec::<String>::new());
    }
}

#[test]
fn planned_operation_schema_rejects_a_missing_field_and_a_bad_level() {
    let s = schema("planned_operation");
    let mut v = serde_json::to_value(exec_op("true", 5000)).unwrap();
    v.as_object_mut().unwrap().remove("capabilities_requested");
    v["determinism"] = "d1".into();
    let e = errors(&s, &v);
    assert!(e.iter().any(|m| m.contains("capabilities_requested")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("determinism")), "{e:?}");
}

#[test]
fn engine_result_schema_accepts_succeeded_denied_and_fs_results() {
    let s = schema("engine_result");
    let fx = fixture(&["echo hi"]);
    let ok = run_ok(&fx, exec_op("echo hi", 5000));
    let denied = match fx.bus.submit(exec_op("echo no", 5000)) {
        Err(mtx_toolbus::ToolBusError::Denied { result, .. }) => *result,
        other => panic!("expected a denial, got {other:?}"),
    };
    let wrote = run_ok(&fx, write_op(json!([{"path": "a", "content": "x"}]), &[], &["a"]));
    for r in [ok, denied, wrote] {
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(errors(&s, &v), Vec::<String>::new(), "{v:#}");
        let back: mtx_toolbus::EngineResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r, "serde round trip");
    }
}

#[test]
fn engine_result_schema_rejects_a_bad_status_and_a_non_hash() {
    let s = schema("engine_result");
    let fx = fixture(&["true"]);
    let mut v = serde_json::to_value(run_ok(&fx, exec_op("true", 5000))).unwrap();
    v["status"] = "ok".into();
    v["outputs"][0]["sha256"] = "XYZ".into();
    let e = errors(&s, &v);
    assert!(e.iter().any(|m| m.contains("status")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("outputs[0].sha256")), "{e:?}");
}
