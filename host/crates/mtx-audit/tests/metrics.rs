//! `mtx metrics`: the 9.8 metrics follow a job's iterations exactly, and the Prometheus
//! output parses as the text exposition format with every sample typed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use mtx_audit::AuditError;
use mtx_audit::metrics::{collect, to_prometheus};
use mtx_store::{ProgressStore, StateDir};
use mtx_types::escalation::FailureCategory;
use mtx_types::progress::{IterationOutcome, IterationRecord, MTProgressEntry, MTStatus, ProgressArtifact};

const QUOTED_TAG: &str = "q\"x\\y";

struct It {
    level: u32,
    model: &'static str,
    lora: Option<&'static str>,
    claimed: bool,
    passed: Option<bool>,
    outcome: IterationOutcome,
    category: Option<FailureCategory>,
    at: &'static str,
}

fn entry(mt_id: &str, status: MTStatus, its: &[It]) -> MTProgressEntry {
    let mut e = MTProgressEntry::pending(mt_id, mt_id);
    e.status = status;
    let mut per_level: BTreeMap<u32, u32> = BTreeMap::new();
    for (n, it) in its.iter().enumerate() {
        let iteration = per_level.entry(it.level).or_default();
        *iteration += 1;
        e.iterations.push(IterationRecord {
            iteration: *iteration,
            step_id: format!("{mt_id}_iter-{:03}", n + 1),
            model_id: it.model.into(),
            lora_id: it.lora.map(str::to_owned),
            escalation_level: it.level,
            started_at: it.at.into(),
            completed_at: it.at.into(),
            duration_ms: 10,
            tokens_prompt: 100,
            tokens_completion: 20,
            claimed_complete: it.claimed,
            validation_passed: it.passed,
            validation_evidence_ref: None,
            outcome: it.outcome,
            failure_category: it.category,
            error_summary: None,
            context_snapshot_id: format!("ctx-{mt_id}-{n}"),
        });
    }
    e.final_model_level = its.last().map(|i| i.level);
    e
}

fn write_progress(state: &Path, job_id: &str) {
    use IterationOutcome::*;
    let job = StateDir::new(state).job(job_id).unwrap();
    job.create().unwrap();
    let mt1 = entry(
        "MT-001",
        MTStatus::Completed,
        &[
            It {
                level: 0,
                model: "small",
                lora: Some("rust-lora"),
                claimed: true,
                passed: Some(false),
                outcome: Retry,
                category: Some(FailureCategory::LogicErrorRegression),
                at: "2026-01-01T00:00:10Z",
            },
            It {
                level: 0,
                model: "small",
                lora: Some("rust-lora"),
                claimed: false,
                passed: None,
                outcome: Escalate,
                category: Some(FailureCategory::IncompleteImplementation),
                at: "2026-01-01T00:00:50Z",
            },
            It {
                level: 1,
                model: "large",
                lora: None,
                claimed: true,
                passed: Some(true),
                outcome: Success,
                category: None,
                at: "2026-01-01T00:01:30Z",
            },
        ],
    );
    let mt2 = entry(
        "MT-002",
        MTStatus::Completed,
        &[It {
            level: 0,
            model: "small",
            lora: Some("rust-lora"),
            claimed: true,
            passed: Some(true),
            outcome: Success,
            category: None,
            at: "2026-01-01T00:02:05Z",
        }],
    );
    let mt3 = entry(
        "MT-003",
        MTStatus::Failed,
        &[It {
            level: 0,
            model: "small",
            lora: None,
            claimed: true,
            passed: Some(false),
            outcome: Escalate,
            category: Some(FailureCategory::LogicErrorRegression),
            at: "2026-01-01T00:02:10Z",
        }],
    );
    let mut progress = ProgressArtifact {
        schema_version: mtx_types::progress::PROGRESS_SCHEMA_VERSION.into(),
        wp_id: common::WP.into(),
        job_id: job_id.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:03:00Z".into(),
        completed_at: None,
        status: mtx_types::progress::ProgressStatus::InProgress,
        policy: Default::default(),
        learning_context: Default::default(),
        current_state: Default::default(),
        micro_tasks: vec![mt1, mt2, mt3].into(),
        aggregate_stats: Default::default(),
        extra: Default::default(),
    };
    ProgressStore::new(&job.progress_artifact()).save(&mut progress).unwrap();
    let defs = serde_json::json!({
        "schema_version": "1.0", "wp_id": common::WP, "job_id": job_id,
        "micro_tasks": [
            {"mt_id": "MT-001", "task_tags": ["rust", "bugfix"], "risk_level": "medium", "token_budget": 4096,
             "files": {"read": [], "modify": ["src/lib.rs"], "create": ["tests/extra.rs"]}},
            {"mt_id": "MT-002", "task_tags": ["docs", QUOTED_TAG], "risk_level": "low", "token_budget": 1024,
             "files": {"read": [], "modify": ["README.md"], "create": []}},
            {"mt_id": "MT-003", "task_tags": ["rust"], "risk_level": "high", "token_budget": 8192,
             "files": {"read": [], "modify": ["src/a.rs", "src/b.rs"], "create": []}}
        ],
        "execution_waves": [["MT-001", "MT-002", "MT-003"]]
    });
    std::fs::write(job.mt_definitions(), serde_json::to_vec(&defs).unwrap()).unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn metrics_of_a_job_follow_its_iterations() {
    let state = tempfile::tempdir().unwrap();
    write_progress(state.path(), common::JOB);

    let m = collect(state.path(), Some(common::JOB)).unwrap();

    let t = &m.totals;
    assert_eq!(
        (
            t.jobs,
            t.micro_tasks,
            t.micro_tasks_completed,
            t.iterations,
            t.escalations,
            t.claimed_completions,
            t.false_completions
        ),
        (1, 3, 2, 5, 2, 4, 2)
    );
    let points = |s: &[mtx_audit::metrics::TimeSeriesPoint]| -> Vec<(String, f64)> {
        s.iter().map(|p| (p.timestamp.clone(), p.value)).collect()
    };
    assert_eq!(
        points(&m.iterations_over_time),
        vec![
            ("2026-01-01T00:00:00Z".into(), 2.0),
            ("2026-01-01T00:01:00Z".into(), 1.0),
            ("2026-01-01T00:02:00Z".into(), 2.0)
        ]
    );
    assert_eq!(
        points(&m.escalations_over_time),
        vec![("2026-01-01T00:00:00Z".into(), 1.0), ("2026-01-01T00:02:00Z".into(), 1.0)]
    );
    assert_eq!(
        points(&m.success_rate_over_time),
        vec![("2026-01-01T00:01:00Z".into(), 1.0), ("2026-01-01T00:02:00Z".into(), 0.5)]
    );
    assert!(close(m.success_rate_by_level[&0], 1.0 / 3.0) && close(m.success_rate_by_level[&1], 1.0));
    assert_eq!(m.model_usage_distribution, BTreeMap::from([("large".into(), 1), ("small".into(), 4)]));
    assert_eq!(m.lora_usage_distribution, BTreeMap::from([("rust-lora".into(), 3)]));
    let lora = &m.lora_effectiveness["rust-lora"];
    assert_eq!((lora.uses, lora.successes), (3, 1));
    assert!(close(lora.success_rate, 1.0 / 3.0) && close(lora.false_completion_rate, 0.5));
    assert_eq!(
        m.failure_category_distribution,
        BTreeMap::from([("incomplete_implementation".into(), 1), ("logic_error_regression".into(), 2)])
    );
    assert!(close(m.task_tag_success_rates["rust"], 0.5));
    assert!(
        close(m.task_tag_success_rates["bugfix"], 1.0) && close(m.task_tag_success_rates[QUOTED_TAG], 1.0)
    );
    assert!(close(m.false_completion_rate_by_model["small"], 2.0 / 3.0));
    assert!(close(m.false_completion_rate_by_model["large"], 0.0));
    let c = &m.mt_complexity_vs_iterations[0];
    assert_eq!(
        (
            c.mt_id.as_str(),
            c.risk_level.as_deref(),
            c.token_budget,
            c.files_touched,
            c.iterations,
            c.final_level
        ),
        ("MT-001", Some("medium"), Some(4096), Some(2), 3, Some(1))
    );
    // The JSON export uses the 9.8 field names.
    let json = serde_json::to_value(&m).unwrap();
    for field in [
        "iterations_over_time",
        "escalations_over_time",
        "success_rate_over_time",
        "model_usage_distribution",
        "lora_effectiveness",
        "failure_category_distribution",
        "mt_complexity_vs_iterations",
        "task_tag_success_rates",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
}

#[test]
fn metrics_of_a_job_without_progress_is_a_typed_error() {
    let state = tempfile::tempdir().unwrap();
    let err = collect(state.path(), Some("job-nope")).unwrap_err();
    assert!(matches!(err, AuditError::NoJob { ref job_id, .. } if job_id == "job-nope"), "{err}");
}

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format: `# HELP`/`# TYPE` comments and `name{labels} value
/// [timestamp]` samples, labels with `\\`, `\"` and `\n` escapes. Every sample must have
/// a TYPE declared before it.
fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if name_ok(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if name_ok(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at("unknown type"));
                    }
                    typed.insert(name.into(), kind.into());
                }
                _ => return Err(at("bad comment")),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !name_ok(name) {
            return Err(at("bad metric name"));
        }
        if !typed.contains_key(name) {
            return Err(at("sample without a TYPE"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let (start, c) = chars.next().ok_or_else(|| at("unterminated labels"))?;
                if c == '}' {
                    rest = &body[start + 1..];
                    break;
                }
                let eq = body[start..].find("=\"").ok_or_else(|| at("label without value"))? + start;
                let key = body[start..eq].trim_start_matches(',');
                if !name_ok(key) {
                    return Err(at("bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars.next().ok_or_else(|| at("unterminated label value"))?.1 {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(|| at("dangling escape"))?.1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            _ => return Err(at("bad escape")),
                        },
                        '\n' => return Err(at("raw newline in label")),
                        other => value.push(other),
                    }
                }
                labels.insert(key.to_owned(), value);
                if chars.peek().is_some_and(|(_, c)| *c == ',') {
                    chars.next();
                }
            }
        }
        let fields: Vec<&str> = rest.trim_start_matches(' ').split(' ').collect();
        if rest.starts_with("  ") || !rest.starts_with(' ') || fields.is_empty() || fields.len() > 2 {
            return Err(at("expected ` value [timestamp]`"));
        }
        let value: f64 = match fields[0] {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        if let Some(ts) = fields.get(1) {
            ts.parse::<i64>().map_err(|_| at("bad timestamp"))?;
        }
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    Ok(samples)
}

#[test]
fn the_prometheus_output_parses_and_carries_the_metrics() {
    let state = tempfile::tempdir().unwrap();
    write_progress(state.path(), common::JOB);
    write_progress(state.path(), "job-audit-2");
    let m = collect(state.path(), None).unwrap();
    assert_eq!(m.jobs, vec![common::JOB.to_owned(), "job-audit-2".to_owned()]);

    let text = to_prometheus(&m);
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let find = |name: &str, label: Option<(&str, &str)>| -> f64 {
        samples
            .iter()
            .find(|s| {
                s.name == name && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?}\n{text}"))
            .value
    };
    assert_eq!(find("mtx_iterations_total", None), 10.0);
    assert_eq!(find("mtx_escalations_total", None), 4.0);
    assert_eq!(find("mtx_model_iterations_total", Some(("model_id", "small"))), 8.0);
    assert!(close(find("mtx_model_false_completion_rate", Some(("model_id", "small"))), 2.0 / 3.0));
    assert!(close(find("mtx_lora_success_rate", Some(("lora_id", "rust-lora"))), 1.0 / 3.0));
    assert!(close(find("mtx_lora_false_completion_rate", Some(("lora_id", "rust-lora"))), 0.5));
    assert!(close(find("mtx_level_success_rate", Some(("level", "0"))), 1.0 / 3.0));
    assert_eq!(find("mtx_failure_category_total", Some(("failure_category", "logic_error_regression"))), 4.0);
    // A label value with a quote and a backslash survives the escaping.
    assert_eq!(find("mtx_task_tag_success_rate", Some(("tag", QUOTED_TAG))), 1.0);
    assert_eq!(samples.iter().filter(|s| s.name == "mtx_iterations_per_bucket").count(), 3);
    assert_eq!(samples.iter().filter(|s| s.name == "mtx_mt_iterations").count(), 6);
}

#[test]
fn the_prometheus_parser_refuses_an_untyped_or_malformed_sample() {
    assert!(parse_prometheus("mtx_x 1\n").is_err());
    assert!(parse_prometheus("# TYPE mtx_x gauge\nmtx_x{a=\"b} 1\n").is_err());
    assert!(parse_prometheus("# TYPE mtx_x gauge\nmtx_x one\n").is_err());
    assert!(parse_prometheus("# TYPE mtx_x gauge\nmtx_x{a=\"b\"} 1 1700000000000\n").is_ok());
}
