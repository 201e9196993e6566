//! `mtx replay`: re-runs the recorded calls into policy plugins and proves the decisions
//! come out the same.
//!
//! Every call the plugin host made is in the run ledger as a `plugin_call` record with
//! the component digest, the world and function, the canonical JSON input, the output
//! hash, and the clock and random seed the call observed (the only outside sources a pure
//! world can see; the host fixes both per call). Replay loads each component by digest
//! (from the built-ins, or from an override file), feeds the recorded input with the
//! recorded clock and seed in a fresh instance, and compares output hashes.
//!
//! What replay deliberately does not do:
//! - It never calls a model backend (not a pure world: its answers came from a model);
//!   those calls are counted in [`ReplayReport::backend_calls`] and left out.
//! - It never runs a command: a validator that asks the Tool Bus for a command is given a
//!   Tool Bus that refuses, and its call is counted as `skipped` (the command results are
//!   not part of the plugin-call record), never as identical.
//! - It never writes into the state directory: replayed calls go to an in-memory recorder.
//!
//! With an override (`--plugin NAME=<wasm>`) whose digest differs from the recorded one,
//! the calls of that plugin answer "what would this other plugin have decided": their
//! differences are listed in [`ReplayReport::changed_decisions`] and do not make the
//! replay fail. An override with the recorded digest simply locates the component.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mtx_plugin::bindings::{tool_bus, types};
use mtx_plugin::{
    CallContext, HostOptions, LoadedPlugin, MemoryRecorder, PluginCall, PluginHost, PluginSpec, World,
};
use mtx_store::{LedgerRecord, StateDir};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AuditError;

/// One recorded call into a plugin, as replay needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    pub plugin: String,
    pub role: String,
    pub world: String,
    /// sha256 of the component bytes that ran.
    pub digest: String,
    pub world_version: String,
    pub function: String,
    pub input_sha256: String,
    /// Canonical JSON of the input.
    pub input: String,
    /// sha256 of the canonical JSON of the output; absent when the call failed.
    pub output_sha256: Option<String>,
    /// Canonical JSON of the output; absent when the call failed.
    pub output: Option<String>,
    /// `ok` or the failure kind.
    pub outcome: String,
    pub clock: String,
    /// The random seed as 16 hex characters.
    pub seed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

impl From<&PluginCall> for RecordedCall {
    fn from(call: &PluginCall) -> Self {
        RecordedCall {
            plugin: call.plugin.clone(),
            role: call.role.clone(),
            world: call.world.clone(),
            digest: call.digest.clone(),
            world_version: call.world_version.clone(),
            function: call.function.clone(),
            input_sha256: call.input_sha256.clone(),
            input: call.input.clone(),
            output_sha256: call.output_sha256.clone(),
            output: call.output.clone(),
            outcome: call.outcome.clone(),
            clock: call.clock.clone(),
            seed: call.seed.clone(),
            mt_id: None,
            step_id: None,
        }
    }
}

/// Per-plugin counts of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayRow {
    pub plugin: String,
    /// The recorded digest (the first one seen, if the plugin changed within the run).
    pub digest: String,
    pub calls: u64,
    pub identical: u64,
    pub different: u64,
    /// Calls whose component could not be found by digest.
    pub missing: u64,
    /// Calls that used the Tool Bus, whose results are not in the record.
    pub skipped: u64,
    /// Whether an override with another digest replaced the recorded component.
    pub overridden: bool,
}

/// The first call that did not reproduce, in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub plugin: String,
    pub function: String,
    /// Position of the call in the job's recorded plugin calls, from 1.
    pub call_index: usize,
    pub mt_id: Option<String>,
    pub step_id: Option<String>,
    /// What differs: `output`, `outcome`, `input hash` or `missing component`.
    pub kind: String,
    pub input: String,
    pub recorded_output: String,
    pub replayed_output: String,
}

/// A decision an override plugin takes differently from the recorded one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedDecision {
    pub plugin: String,
    pub function: String,
    pub call_index: usize,
    pub mt_id: Option<String>,
    pub step_id: Option<String>,
    /// Short form of the recorded decision (for `decide`, the loop decision).
    pub recorded: String,
    pub replayed: String,
    pub recorded_output: String,
    pub replayed_output: String,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    pub job_id: String,
    pub rows: Vec<ReplayRow>,
    /// The first difference of a plugin that was not overridden.
    pub first_difference: Option<Difference>,
    /// Every call of an overridden plugin whose output changed.
    pub changed_decisions: Vec<ChangedDecision>,
    /// Model-backend calls in the record, which replay never re-runs.
    pub backend_calls: u64,
}

impl ReplayReport {
    /// True when every replayed call of a non-overridden plugin was identical and no
    /// component was missing; the CLI exits non-zero otherwise.
    pub fn is_identical(&self) -> bool {
        self.rows.iter().all(|r| r.missing == 0 && (r.overridden || r.different == 0))
    }

    /// The table, the first difference in full, and the changed decisions.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let width = self.rows.iter().map(|r| r.plugin.len()).max().unwrap_or(6).max(6);
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>9}  {:>9}  {:>7}  {:>7}",
            "plugin", "calls", "identical", "different", "missing", "skipped"
        );
        for r in &self.rows {
            let name = if r.overridden { format!("{} (override)", r.plugin) } else { r.plugin.clone() };
            let _ = writeln!(
                out,
                "{:<width$}  {:>6}  {:>9}  {:>9}  {:>7}  {:>7}",
                name, r.calls, r.identical, r.different, r.missing, r.skipped
            );
        }
        if self.backend_calls > 0 {
            let _ = writeln!(out, "({} model-backend calls are not replayed)", self.backend_calls);
        }
        if let Some(d) = &self.first_difference {
            let _ = writeln!(
                out,
                "\nfirst difference: call {} to {}::{} ({})",
                d.call_index, d.plugin, d.function, d.kind
            );
            if let Some(mt) = &d.mt_id {
                let _ = writeln!(out, "  mt: {mt}");
            }
            if let Some(step) = &d.step_id {
                let _ = writeln!(out, "  step: {step}");
            }
            let _ = writeln!(out, "  input:    {}", d.input);
            let _ = writeln!(out, "  recorded: {}", d.recorded_output);
            let _ = writeln!(out, "  replayed: {}", d.replayed_output);
        }
        if !self.changed_decisions.is_empty() {
            let _ = writeln!(out, "\ndecisions that change ({}):", self.changed_decisions.len());
            for c in &self.changed_decisions {
                let place = match (&c.mt_id, &c.step_id) {
                    (_, Some(step)) => format!(" {step}"),
                    (Some(mt), None) => format!(" {mt}"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  call {} {}::{}{}: {} -> {}",
                    c.call_index, c.plugin, c.function, place, c.recorded, c.replayed
                );
            }
        }
        let verdict = if self.is_identical() { "replay identical" } else { "replay DIFFERS" };
        let _ = writeln!(out, "\n{verdict}");
        out
    }
}

/// Reads every recorded plugin call of a job from its run ledger, in order. The ledger
/// chain is verified while reading: a tampered record fails here with the chain error.
pub fn load_recorded_calls(state_dir: &Path, job_id: &str) -> Result<Vec<RecordedCall>, AuditError> {
    let job = StateDir::new(state_dir).job(job_id)?;
    if !job.root().is_dir() {
        return Err(AuditError::NoJob { job_id: job_id.to_owned(), state_dir: state_dir.to_owned() });
    }
    let entries = mtx_store::ledger::read_records(&job.run_ledger())?;
    let mut calls = Vec::new();
    for entry in entries {
        let LedgerRecord::PluginCall(rec) = entry.record else { continue };
        let bad =
            |reason: String| AuditError::BadPluginCall { job_id: job_id.to_owned(), seq: entry.seq, reason };
        let field = |name: &str| -> Result<String, AuditError> {
            rec.output
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("it has no string `{name}`")))
        };
        let outcome = field("outcome")?;
        let output_sha256 = rec.output.get("output_sha256").and_then(Value::as_str).map(str::to_owned);
        let output = match (outcome.as_str(), rec.output.get("output")) {
            ("ok", Some(v)) => Some(String::from_utf8_lossy(&mtx_types::canonical_json(v)).into_owned()),
            _ => None,
        };
        calls.push(RecordedCall {
            plugin: rec.plugin.clone(),
            role: field("role")?,
            world: rec.world.clone().ok_or_else(|| bad("it has no `world`".into()))?,
            digest: rec.digest.clone(),
            world_version: field("world_version")?,
            function: field("function")?,
            input_sha256: rec.input_hash.clone(),
            input: match rec.output.get("input").and_then(Value::as_str) {
                Some(inline) => inline.to_owned(),
                // A large input lives in the job's input pack; the ledger names where.
                None => {
                    let at: mtx_store::InputRef = rec
                        .output
                        .get("input_ref")
                        .cloned()
                        .and_then(|v| serde_json::from_value(v).ok())
                        .ok_or_else(|| bad("it has neither a string `input` nor an `input_ref`".into()))?;
                    mtx_store::read_input(job.root(), &at).map_err(|e| bad(format!("its input: {e}")))?
                }
            },
            output_sha256,
            output,
            outcome,
            clock: field("clock")?,
            seed: field("seed")?,
            mt_id: rec.mt_id.clone(),
            step_id: rec.step_id.clone(),
        });
    }
    Ok(calls)
}

/// Replays the job `job_id` under `state_dir`; `overrides` maps a recorded plugin name to
/// a component file to use instead.
pub fn replay_job(
    state_dir: &Path,
    job_id: &str,
    overrides: &[(String, PathBuf)],
) -> Result<ReplayReport, AuditError> {
    let calls = load_recorded_calls(state_dir, job_id)?;
    let mut report = replay_calls(&calls, overrides)?;
    report.job_id = job_id.to_owned();
    Ok(report)
}

/// Where the bytes of one recorded plugin come from during a replay.
struct Resolved {
    loaded: Option<LoadedPlugin>,
    overridden: bool,
}

/// Replays a list of recorded calls (the core of [`replay_job`], usable on calls taken
/// from any recorder).
pub fn replay_calls(
    calls: &[RecordedCall],
    overrides: &[(String, PathBuf)],
) -> Result<ReplayReport, AuditError> {
    let recorder = Arc::new(MemoryRecorder::default());
    let host = PluginHost::new(HostOptions::default(), recorder.clone())
        .map_err(|e| AuditError::Host { reason: format!("{e:#}") })?;
    for (name, path) in overrides {
        if !calls.iter().any(|c| &c.plugin == name) {
            return Err(AuditError::Override {
                plugin: name.clone(),
                reason: format!(
                    "the run made no call to a plugin named {name} (override file {}); it called: {}",
                    path.display(),
                    called_names(calls).join(", ")
                ),
            });
        }
    }
    let builtins = builtin_digests();
    let mut resolved: BTreeMap<(String, String), Resolved> = BTreeMap::new();
    let mut rows: Vec<ReplayRow> = Vec::new();
    let mut report = ReplayReport::default();

    for (i, call) in calls.iter().enumerate() {
        let index = i + 1;
        let Some(world) = World::ALL.into_iter().find(|w| w.name() == call.world) else {
            return Err(AuditError::BadCall {
                call_index: index,
                reason: format!("unknown world {:?}", call.world),
            });
        };
        if !world.is_pure() {
            report.backend_calls += 1;
            continue;
        }
        let row_at = match rows.iter().position(|r| r.plugin == call.plugin) {
            Some(p) => p,
            None => {
                rows.push(ReplayRow {
                    plugin: call.plugin.clone(),
                    digest: call.digest.clone(),
                    ..ReplayRow::default()
                });
                rows.len() - 1
            }
        };
        rows[row_at].calls += 1;

        let key = (call.plugin.clone(), call.digest.clone());
        if !resolved.contains_key(&key) {
            let r = resolve(&host, call, world, overrides, &builtins)?;
            resolved.insert(key.clone(), r);
        }
        let res = &resolved[&key];
        rows[row_at].overridden |= res.overridden;

        if mtx_types::sha256_hex(call.input.as_bytes()) != call.input_sha256 {
            rows[row_at].different += 1;
            note_difference(
                &mut report,
                res.overridden,
                call,
                index,
                "input hash",
                call.input_sha256.clone(),
                mtx_types::sha256_hex(call.input.as_bytes()),
            );
            continue;
        }
        let Some(plugin) = &res.loaded else {
            rows[row_at].missing += 1;
            note_difference(
                &mut report,
                false,
                call,
                index,
                "missing component",
                recorded_text(call),
                format!(
                    "no component with digest {} (give one with --plugin {}=<wasm>)",
                    call.digest, call.plugin
                ),
            );
            continue;
        };
        let used_tool_bus = Arc::new(AtomicBool::new(false));
        let replayed = match run_call(&host, &recorder, plugin, call, index, &used_tool_bus)? {
            Some(r) => r,
            None => {
                return Err(AuditError::BadCall {
                    call_index: index,
                    reason: format!("the replay host made no record of the call to {}", call.plugin),
                });
            }
        };
        if used_tool_bus.load(Ordering::SeqCst) {
            rows[row_at].skipped += 1;
            continue;
        }
        let same = replayed.outcome == call.outcome && replayed.output_sha256 == call.output_sha256;
        if same {
            rows[row_at].identical += 1;
            continue;
        }
        rows[row_at].different += 1;
        let kind = if replayed.outcome != call.outcome { "outcome" } else { "output" };
        if res.overridden {
            report.changed_decisions.push(ChangedDecision {
                plugin: call.plugin.clone(),
                function: call.function.clone(),
                call_index: index,
                mt_id: call.mt_id.clone(),
                step_id: call.step_id.clone(),
                recorded: decision_summary(&call.function, call.output.as_deref(), &call.outcome),
                replayed: decision_summary(&replayed.function, replayed.output.as_deref(), &replayed.outcome),
                recorded_output: recorded_text(call),
                replayed_output: replayed_text(&replayed),
            });
        } else {
            note_difference(
                &mut report,
                false,
                call,
                index,
                kind,
                recorded_text(call),
                replayed_text(&replayed),
            );
        }
    }
    report.rows = rows;
    Ok(report)
}

/// Names of the plugins a run called, in first-call order.
fn called_names(calls: &[RecordedCall]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for c in calls {
        if !names.contains(&c.plugin.as_str()) {
            names.push(&c.plugin);
        }
    }
    names
}

fn note_difference(
    report: &mut ReplayReport,
    overridden: bool,
    call: &RecordedCall,
    index: usize,
    kind: &str,
    recorded_output: String,
    replayed_output: String,
) {
    if overridden && kind != "input hash" {
        return;
    }
    if report.first_difference.is_none() {
        report.first_difference = Some(Difference {
            plugin: call.plugin.clone(),
            function: call.function.clone(),
            call_index: index,
            mt_id: call.mt_id.clone(),
            step_id: call.step_id.clone(),
            kind: kind.to_owned(),
            input: call.input.clone(),
            recorded_output,
            replayed_output,
        });
    }
}

fn recorded_text(call: &RecordedCall) -> String {
    match &call.output {
        Some(o) => o.clone(),
        None => format!("<{}>", call.outcome),
    }
}

fn replayed_text(call: &PluginCall) -> String {
    match (&call.output, &call.error) {
        (Some(o), _) => o.clone(),
        (None, Some(e)) => format!("<{}: {e}>", call.outcome),
        (None, None) => format!("<{}>", call.outcome),
    }
}

/// The decision a call took, in a few words: what a reader compares first.
fn decision_summary(function: &str, output: Option<&str>, outcome: &str) -> String {
    let Some(value) = output.and_then(|o| serde_json::from_str::<Value>(o).ok()) else {
        return format!("<{outcome}>");
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "none".to_owned(),
        Some(other) => other.to_string(),
    };
    match function {
        "decide" => {
            let category = value.get("failure_category").filter(|v| !v.is_null());
            match category {
                Some(c) => format!("{} ({})", text(value.get("decision")), text(Some(c))),
                None => text(value.get("decision")),
            }
        }
        "drop-back" => match value.get("target_level").filter(|v| !v.is_null()) {
            Some(level) => format!("{} to level {level}", text(value.get("action"))),
            None => text(value.get("action")),
        },
        "select" => format!("lora {}", text(value.get("lora_id"))),
        "validate" => format!("passed {}", text(value.get("passed"))),
        "plan" => match value.as_array() {
            Some(mts) => format!(
                "{} MTs [{}]",
                mts.len(),
                mts.iter().map(|m| text(m.get("mt_id"))).collect::<Vec<_>>().join(", ")
            ),
            None => value.to_string(),
        },
        _ => value.to_string(),
    }
}

/// Digest of every built-in component, for lookup by recorded digest.
fn builtin_digests() -> BTreeMap<String, &'static str> {
    mtx_plugin::builtins::names()
        .into_iter()
        .filter_map(|name| mtx_plugin::builtins::get(name).map(|bytes| (mtx_types::sha256_hex(bytes), name)))
        .collect()
}

fn resolve(
    host: &PluginHost,
    call: &RecordedCall,
    world: World,
    overrides: &[(String, PathBuf)],
    builtins: &BTreeMap<String, &'static str>,
) -> Result<Resolved, AuditError> {
    if let Some((_, path)) = overrides.iter().find(|(name, _)| name == &call.plugin) {
        let mut spec = PluginSpec::file(path, &call.role, world);
        spec.name = call.plugin.clone();
        let bytes = PluginHost::component_bytes(&spec)
            .map_err(|e| AuditError::Override { plugin: call.plugin.clone(), reason: e.to_string() })?;
        let loaded = host
            .load_bytes(&spec, &bytes)
            .map_err(|e| AuditError::Override { plugin: call.plugin.clone(), reason: e.to_string() })?;
        let overridden = loaded.digest != call.digest;
        return Ok(Resolved { loaded: Some(loaded), overridden });
    }
    let Some(name) = builtins.get(&call.digest) else {
        return Ok(Resolved { loaded: None, overridden: false });
    };
    let mut spec = PluginSpec::builtin(name, &call.role, world);
    // Records and errors name the plugin as the run did.
    spec.name = call.plugin.clone();
    let bytes = PluginHost::component_bytes(&spec)
        .map_err(|e| AuditError::Host { reason: format!("built-in {name}: {e}") })?;
    match host.load_bytes(&spec, &bytes) {
        Ok(loaded) => Ok(Resolved { loaded: Some(loaded), overridden: false }),
        // A built-in with the digest but of another world cannot stand in for it.
        Err(_) => Ok(Resolved { loaded: None, overridden: false }),
    }
}

/// A Tool Bus that refuses everything and remembers that it was asked: a validator that
/// needs command results cannot be replayed from the plugin-call record.
struct RefusingToolBus(Arc<AtomicBool>);

impl mtx_plugin::ToolBusPort for RefusingToolBus {
    fn submit(
        &self,
        _plugin: &str,
        _op: tool_bus::PlannedOperation,
    ) -> Result<tool_bus::EngineResult, tool_bus::ToolError> {
        self.0.store(true, Ordering::SeqCst);
        Err(refused())
    }
    fn read_artifact(
        &self,
        _plugin: &str,
        _handle: &types::ArtifactHandle,
        _max_bytes: u64,
    ) -> Result<Vec<u8>, tool_bus::ToolError> {
        self.0.store(true, Ordering::SeqCst);
        Err(refused())
    }
}

fn refused() -> tool_bus::ToolError {
    tool_bus::ToolError::Denied(tool_bus::GateDenial {
        gate: "G-CAP".into(),
        code: "REPLAY".into(),
        reason: "replay runs no commands".into(),
    })
}

/// Runs one recorded call again and returns what the host recorded for it.
fn run_call(
    host: &PluginHost,
    recorder: &MemoryRecorder,
    plugin: &LoadedPlugin,
    call: &RecordedCall,
    index: usize,
    used_tool_bus: &Arc<AtomicBool>,
) -> Result<Option<PluginCall>, AuditError> {
    let bad = |reason: String| AuditError::BadCall { call_index: index, reason };
    let seed = u64::from_str_radix(&call.seed, 16)
        .map_err(|_| bad(format!("seed {:?} is not 16 hex characters", call.seed)))?;
    let ctx = CallContext {
        clock: call.clock.clone(),
        seed: Some(seed),
        toolbus: Some(Arc::new(RefusingToolBus(used_tool_bus.clone()))),
        extra_deadline: std::time::Duration::ZERO,
        cap: None,
    };
    fn parse<T: serde::de::DeserializeOwned>(call: &RecordedCall) -> Result<T, String> {
        serde_json::from_str(&call.input)
            .map_err(|e| format!("input of {} does not decode: {e}", call.function))
    }
    recorder.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    // The typed results are discarded: the host's own record carries the canonical output.
    let _ = match call.function.as_str() {
        "plan" => host.plan(plugin, &parse::<types::PlannerInput>(call).map_err(bad)?, &ctx).map(drop),
        "select" => {
            host.select_lora(plugin, &parse::<types::LoraSelectionInput>(call).map_err(bad)?, &ctx).map(drop)
        }
        "decide" => host.decide(plugin, &parse::<types::DecisionInput>(call).map_err(bad)?, &ctx).map(drop),
        "drop-back" => {
            host.drop_back(plugin, &parse::<types::DropBackInput>(call).map_err(bad)?, &ctx).map(drop)
        }
        "validate" => {
            host.validate(plugin, &parse::<types::ValidationInput>(call).map_err(bad)?, &ctx).map(drop)
        }
        "metadata" => host.metadata(plugin).map(drop),
        other => return Err(bad(format!("function {other:?} is not replayable"))),
    };
    Ok(recorder.calls.lock().unwrap_or_else(|p| p.into_inner()).pop())
}
