//! `mtx metrics`: the MTX-SPEC 9.8 metrics of one job or of every job in a state
//! directory, as JSON ([`MetricsExport`] serialises with the 9.8 field names) or in the
//! Prometheus text exposition format ([`to_prometheus`]).
//!
//! Everything is computed from the progress artifacts (`micro_tasks[].iterations[]`) and
//! the MT definitions, which are the authoritative state; nothing is estimated, and a
//! rate with no denominator is left out rather than reported as zero. This module only
//! reads.
//!
//! Definitions \[D\]:
//! - time buckets are [`BUCKET_SECONDS`] wide, keyed by an iteration's `completed_at`;
//! - an escalation is an iteration whose outcome is `ESCALATE`;
//! - success rate over time: MTs finished in the bucket (final status `completed`,
//!   `failed`, `blocked` or `skipped`, timed by their last iteration) that completed;
//! - success rate by level: of the (MT, level) pairs with at least one iteration, the
//!   share with a `SUCCESS` iteration at that level;
//! - false-completion rate: of the iterations that claimed completion, the share whose
//!   validation failed (`claimed_complete` and `validation_passed == false`);
//! - LoRA effectiveness: uses = iterations run with that LoRA, successes = `SUCCESS`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use mtx_store::{ProgressStore, StateDir};
use mtx_types::ProgressArtifact;
use mtx_types::progress::{IterationOutcome, MTStatus};
use serde::Serialize;
use serde_json::Value;

use crate::error::AuditError;

/// Width of a time-series bucket.
pub const BUCKET_SECONDS: i64 = 60;

/// `TimeSeriesPoint{timestamp, value}` (9.8); `timestamp` is the bucket start (RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeSeriesPoint {
    pub timestamp: String,
    pub value: f64,
}

/// `LoRAEffectiveness{uses, successes, success_rate, false_completion_rate}` (9.8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoRAEffectiveness {
    pub uses: u64,
    pub successes: u64,
    pub success_rate: f64,
    pub false_completion_rate: f64,
}

/// `ComplexityCorrelation{mt_id, risk_level, token_budget, files_touched, iterations,
/// final_level}` (9.8); `files_touched` counts the files the MT may modify or create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplexityCorrelation {
    pub job_id: String,
    pub mt_id: String,
    pub risk_level: Option<String>,
    pub token_budget: Option<u64>,
    pub files_touched: Option<u64>,
    pub iterations: u64,
    pub final_level: Option<u32>,
}

/// Totals of the export, for the first lines of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub jobs: u64,
    pub micro_tasks: u64,
    pub micro_tasks_completed: u64,
    pub iterations: u64,
    pub escalations: u64,
    pub claimed_completions: u64,
    pub false_completions: u64,
}

/// The 9.8 metrics, plus the per-level, per-LoRA and per-model breakdowns the audit asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsExport {
    pub jobs: Vec<String>,
    pub bucket_seconds: i64,
    pub totals: Totals,
    pub iterations_over_time: Vec<TimeSeriesPoint>,
    pub escalations_over_time: Vec<TimeSeriesPoint>,
    pub success_rate_over_time: Vec<TimeSeriesPoint>,
    /// Escalation level -> share of (MT, level) attempts that succeeded there.
    pub success_rate_by_level: BTreeMap<u32, f64>,
    pub model_usage_distribution: BTreeMap<String, u64>,
    pub lora_usage_distribution: BTreeMap<String, u64>,
    pub lora_effectiveness: BTreeMap<String, LoRAEffectiveness>,
    pub failure_category_distribution: BTreeMap<String, u64>,
    pub mt_complexity_vs_iterations: Vec<ComplexityCorrelation>,
    pub task_tag_success_rates: BTreeMap<String, f64>,
    pub false_completion_rate_by_model: BTreeMap<String, f64>,
    pub false_completion_rate_by_lora: BTreeMap<String, f64>,
}

#[derive(Default)]
struct Ratio {
    hits: u64,
    total: u64,
}

impl Ratio {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += u64::from(hit);
    }
    fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }
}

fn rates(map: BTreeMap<String, Ratio>) -> BTreeMap<String, f64> {
    map.into_iter().filter_map(|(k, r)| r.rate().map(|v| (k, v))).collect()
}

/// Bucket start of an RFC 3339 time, or `None` when it does not parse.
fn bucket(rfc3339: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?.timestamp();
    Some(t - t.rem_euclid(BUCKET_SECONDS))
}

fn series(map: BTreeMap<i64, f64>) -> Vec<TimeSeriesPoint> {
    map.into_iter()
        .map(|(t, value)| TimeSeriesPoint {
            timestamp: chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            value,
        })
        .collect()
}

/// Per-MT facts from `mt_definitions.json`, read leniently: a job without the file still
/// has its iteration metrics.
#[derive(Default)]
struct MtFacts {
    task_tags: Vec<String>,
    risk_level: Option<String>,
    token_budget: Option<u64>,
    files_touched: Option<u64>,
}

fn definitions(job_root: &Path) -> Result<BTreeMap<String, MtFacts>, AuditError> {
    let path = job_root.join("mt_definitions.json");
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| AuditError::BadRecord {
        file: path.display().to_string(),
        what: "MT definitions document",
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for mt in doc.get("micro_tasks").and_then(Value::as_array).into_iter().flatten() {
        let Some(id) = mt.get("mt_id").and_then(Value::as_str) else { continue };
        let count = |key: &str| {
            mt.get("files").and_then(|f| f.get(key)).and_then(Value::as_array).map(|a| a.len() as u64)
        };
        let files_touched = match (count("modify"), count("create")) {
            (None, None) => None,
            (m, c) => Some(m.unwrap_or(0) + c.unwrap_or(0)),
        };
        out.insert(
            id.to_owned(),
            MtFacts {
                task_tags: mt
                    .get("task_tags")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
                risk_level: mt.get("risk_level").and_then(Value::as_str).map(str::to_owned),
                token_budget: mt.get("token_budget").and_then(Value::as_u64),
                files_touched,
            },
        );
    }
    Ok(out)
}

fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// Collects the metrics of `job_id`, or of every job under `state_dir` when `None`.
/// Jobs without a progress artifact yet are skipped when collecting all jobs.
pub fn collect(state_dir: &Path, job_id: Option<&str>) -> Result<MetricsExport, AuditError> {
    let state = StateDir::new(state_dir);
    let jobs = match job_id {
        Some(id) => vec![id.to_owned()],
        None => crate::distill::all_jobs(&state)?,
    };
    let mut export = MetricsExport { bucket_seconds: BUCKET_SECONDS, ..MetricsExport::default() };
    let mut iterations_t: BTreeMap<i64, f64> = BTreeMap::new();
    let mut escalations_t: BTreeMap<i64, f64> = BTreeMap::new();
    let mut success_t: BTreeMap<i64, Ratio> = BTreeMap::new();
    let mut by_level: BTreeMap<u32, Ratio> = BTreeMap::new();
    let mut tags: BTreeMap<String, Ratio> = BTreeMap::new();
    let mut false_model: BTreeMap<String, Ratio> = BTreeMap::new();
    let mut false_lora: BTreeMap<String, Ratio> = BTreeMap::new();
    let mut lora_success: BTreeMap<String, Ratio> = BTreeMap::new();

    for id in &jobs {
        let job = state.job(id)?;
        let path = job.progress_artifact();
        if !path.is_file() {
            if job_id.is_some() {
                return Err(AuditError::NoJob { job_id: id.clone(), state_dir: state_dir.to_owned() });
            }
            continue;
        }
        // Loaded through the store, so a progress artifact whose content hash or schema
        // does not check out is refused rather than counted.
        let progress: ProgressArtifact = ProgressStore::new(&path).load()?;
        let defs = definitions(job.root())?;
        export.jobs.push(id.clone());
        export.totals.jobs += 1;

        for mt in &progress.micro_tasks {
            export.totals.micro_tasks += 1;
            let completed = mt.status == MTStatus::Completed;
            export.totals.micro_tasks_completed += u64::from(completed);
            let facts = defs.get(&mt.mt_id);
            let finished = matches!(
                mt.status,
                MTStatus::Completed | MTStatus::Failed | MTStatus::Blocked | MTStatus::Skipped
            );
            if finished {
                for tag in facts.map(|f| f.task_tags.as_slice()).unwrap_or_default() {
                    tags.entry(tag.clone()).or_default().add(completed);
                }
                if let Some(b) = mt.iterations.last().and_then(|it| bucket(&it.completed_at)) {
                    success_t.entry(b).or_default().add(completed);
                }
            }
            let mut levels: BTreeMap<u32, bool> = BTreeMap::new();
            for it in &mt.iterations {
                export.totals.iterations += 1;
                let success = it.outcome == IterationOutcome::Success;
                *levels.entry(it.escalation_level).or_default() |= success;
                if let Some(b) = bucket(&it.completed_at) {
                    *iterations_t.entry(b).or_default() += 1.0;
                    if it.outcome == IterationOutcome::Escalate {
                        *escalations_t.entry(b).or_default() += 1.0;
                    }
                }
                if it.outcome == IterationOutcome::Escalate {
                    export.totals.escalations += 1;
                }
                *export.model_usage_distribution.entry(it.model_id.clone()).or_default() += 1;
                if let Some(cat) = &it.failure_category {
                    *export.failure_category_distribution.entry(serde_name(cat)).or_default() += 1;
                }
                let false_completion = it.claimed_complete && it.validation_passed == Some(false);
                if it.claimed_complete {
                    export.totals.claimed_completions += 1;
                    export.totals.false_completions += u64::from(false_completion);
                    false_model.entry(it.model_id.clone()).or_default().add(false_completion);
                }
                if let Some(lora) = &it.lora_id {
                    *export.lora_usage_distribution.entry(lora.clone()).or_default() += 1;
                    lora_success.entry(lora.clone()).or_default().add(success);
                    if it.claimed_complete {
                        false_lora.entry(lora.clone()).or_default().add(false_completion);
                    }
                }
            }
            for (level, succeeded) in levels {
                by_level.entry(level).or_default().add(succeeded);
            }
            export.mt_complexity_vs_iterations.push(ComplexityCorrelation {
                job_id: id.clone(),
                mt_id: mt.mt_id.clone(),
                risk_level: facts.and_then(|f| f.risk_level.clone()),
                token_budget: facts.and_then(|f| f.token_budget),
                files_touched: facts.and_then(|f| f.files_touched),
                iterations: mt.iterations.len() as u64,
                final_level: mt
                    .final_model_level
                    .or_else(|| mt.iterations.last().map(|i| i.escalation_level)),
            });
        }
    }

    export.iterations_over_time = series(iterations_t);
    export.escalations_over_time = series(escalations_t);
    export.success_rate_over_time =
        series(success_t.into_iter().filter_map(|(t, r)| r.rate().map(|v| (t, v))).collect());
    export.success_rate_by_level =
        by_level.into_iter().filter_map(|(l, r)| r.rate().map(|v| (l, v))).collect();
    export.task_tag_success_rates = rates(tags);
    let false_lora_rates = rates(false_lora);
    export.lora_effectiveness = lora_success
        .into_iter()
        .map(|(lora, r)| {
            let eff = LoRAEffectiveness {
                uses: r.total,
                successes: r.hits,
                success_rate: r.rate().unwrap_or(0.0),
                // A LoRA that never claimed completion made no false claim.
                false_completion_rate: false_lora_rates.get(&lora).copied().unwrap_or(0.0),
            };
            (lora, eff)
        })
        .collect();
    export.false_completion_rate_by_model = rates(false_model);
    export.false_completion_rate_by_lora = false_lora_rates;
    Ok(export)
}

/// Escapes a label value for the text exposition format.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { "NaN".into() }
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = match timestamp_ms {
            Some(ts) => writeln!(self.out, "{name}{labels} {} {ts}", number(value)),
            None => writeln!(self.out, "{name}{labels} {}", number(value)),
        };
    }
}

fn timestamp_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.timestamp_millis())
}

/// The metrics in the Prometheus text exposition format (version 0.0.4): a `# HELP` and
/// `# TYPE` line per family, then `name{labels} value [timestamp_ms]` lines. Time series
/// carry their bucket start as the sample timestamp.
pub fn to_prometheus(m: &MetricsExport) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let t = &m.totals;
    for (name, help, value) in [
        ("mtx_jobs", "Jobs included in this export.", t.jobs),
        ("mtx_micro_tasks", "Micro-tasks in the exported jobs.", t.micro_tasks),
        ("mtx_micro_tasks_completed", "Micro-tasks that completed.", t.micro_tasks_completed),
        ("mtx_iterations_total", "Iterations run.", t.iterations),
        ("mtx_escalations_total", "Iterations that escalated.", t.escalations),
        ("mtx_claimed_completions_total", "Iterations that claimed completion.", t.claimed_completions),
        ("mtx_false_completions_total", "Completion claims whose validation failed.", t.false_completions),
    ] {
        f.header(name, if name.ends_with("_total") { "counter" } else { "gauge" }, help);
        f.sample(name, &[], value as f64, None);
    }
    let timed: [(&str, &str, &[TimeSeriesPoint]); 3] = [
        ("mtx_iterations_per_bucket", "Iterations per time bucket.", &m.iterations_over_time),
        ("mtx_escalations_per_bucket", "Escalations per time bucket.", &m.escalations_over_time),
        (
            "mtx_success_rate_per_bucket",
            "Share of MTs finished in the bucket that completed.",
            &m.success_rate_over_time,
        ),
    ];
    for (name, help, points) in timed {
        f.header(name, "gauge", help);
        for p in points {
            f.sample(name, &[], p.value, timestamp_ms(&p.timestamp));
        }
    }
    f.header(
        "mtx_level_success_rate",
        "gauge",
        "Share of MT attempts at an escalation level that succeeded there.",
    );
    for (level, rate) in &m.success_rate_by_level {
        f.sample("mtx_level_success_rate", &[("level", level.to_string().as_str())], *rate, None);
    }
    let counts: [(&str, &str, &str, &BTreeMap<String, u64>); 3] = [
        ("mtx_model_iterations_total", "Iterations per model.", "model_id", &m.model_usage_distribution),
        ("mtx_lora_iterations_total", "Iterations per LoRA.", "lora_id", &m.lora_usage_distribution),
        (
            "mtx_failure_category_total",
            "Iterations per failure category.",
            "failure_category",
            &m.failure_category_distribution,
        ),
    ];
    for (name, help, key, map) in counts {
        f.header(name, "counter", help);
        for (k, v) in map {
            f.sample(name, &[(key, k.as_str())], *v as f64, None);
        }
    }
    f.header("mtx_lora_success_rate", "gauge", "Share of a LoRA's iterations that succeeded.");
    for (lora, e) in &m.lora_effectiveness {
        f.sample("mtx_lora_success_rate", &[("lora_id", lora.as_str())], e.success_rate, None);
    }
    f.header("mtx_lora_successes_total", "counter", "Successful iterations per LoRA.");
    for (lora, e) in &m.lora_effectiveness {
        f.sample("mtx_lora_successes_total", &[("lora_id", lora.as_str())], e.successes as f64, None);
    }
    let rate_maps: [(&str, &str, &str, &BTreeMap<String, f64>); 3] = [
        (
            "mtx_task_tag_success_rate",
            "Share of finished MTs with the tag that completed.",
            "tag",
            &m.task_tag_success_rates,
        ),
        (
            "mtx_model_false_completion_rate",
            "Share of a model's completion claims that failed validation.",
            "model_id",
            &m.false_completion_rate_by_model,
        ),
        (
            "mtx_lora_false_completion_rate",
            "Share of a LoRA's completion claims that failed validation.",
            "lora_id",
            &m.false_completion_rate_by_lora,
        ),
    ];
    for (name, help, key, map) in rate_maps {
        f.header(name, "gauge", help);
        for (k, v) in map {
            f.sample(name, &[(key, k.as_str())], *v, None);
        }
    }
    f.header("mtx_mt_iterations", "gauge", "Iterations per MT, with its complexity signals as labels.");
    for c in &m.mt_complexity_vs_iterations {
        let budget = c.token_budget.map(|b| b.to_string()).unwrap_or_default();
        let files = c.files_touched.map(|b| b.to_string()).unwrap_or_default();
        let level = c.final_level.map(|b| b.to_string()).unwrap_or_default();
        f.sample(
            "mtx_mt_iterations",
            &[
                ("job_id", c.job_id.as_str()),
                ("mt_id", c.mt_id.as_str()),
                ("risk_level", c.risk_level.as_deref().unwrap_or("")),
                ("token_budget", budget.as_str()),
                ("files_touched", files.as_str()),
                ("final_level", level.as_str()),
            ],
            c.iterations as f64,
            None,
        );
    }
    out
}

/// A short human summary of the metrics.
pub fn render_text(m: &MetricsExport) -> String {
    let mut out = String::new();
    let t = &m.totals;
    let _ = writeln!(
        out,
        "{} jobs, {} MTs ({} completed), {} iterations, {} escalations, {} of {} completion claims false",
        t.jobs,
        t.micro_tasks,
        t.micro_tasks_completed,
        t.iterations,
        t.escalations,
        t.false_completions,
        t.claimed_completions
    );
    let models: BTreeSet<&String> = m.model_usage_distribution.keys().collect();
    for model in models {
        let uses = m.model_usage_distribution[model];
        match m.false_completion_rate_by_model.get(model) {
            Some(rate) => {
                let _ = writeln!(out, "  model {model}: {uses} iterations, false-completion rate {rate:.2}");
            }
            None => {
                let _ = writeln!(out, "  model {model}: {uses} iterations");
            }
        }
    }
    for (lora, e) in &m.lora_effectiveness {
        let _ = writeln!(
            out,
            "  lora {lora}: {} uses, success rate {:.2}, false-completion rate {:.2}",
            e.uses, e.success_rate, e.false_completion_rate
        );
    }
    for (level, rate) in &m.success_rate_by_level {
        let _ = writeln!(out, "  level {level}: success rate {rate:.2}");
    }
    out
}
