//! What the plugin host reports: every call into a plugin, every use or denial of a grant,
//! and every log line a plugin writes.
//!
//! The host reports through [`PluginRecorder`]; the executor forwards to the durable
//! Flight Recorder, tests use [`MemoryRecorder`]. Recording must never fail a call.

use std::sync::Mutex;

use serde::Serialize;

/// One finished call into a plugin, with what `mtx replay` needs to re-run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginCall {
    pub plugin: String,
    pub role: String,
    pub world: String,
    /// sha256 of the component bytes.
    pub digest: String,
    pub world_version: String,
    pub function: String,
    /// sha256 of the canonical JSON of the input.
    pub input_sha256: String,
    /// Canonical JSON of the input.
    pub input: String,
    /// sha256 of the canonical JSON of the output (absent when the call failed).
    pub output_sha256: Option<String>,
    pub output: Option<String>,
    /// `ok`, or the failure kind (`deadline`, `memory_limit`, `trap`, `denied`, `bad_output`).
    pub outcome: String,
    pub error: Option<String>,
    pub duration_us: u64,
    /// The fixed clock (RFC 3339) and random seed the call observed.
    pub clock: String,
    pub seed: String,
    /// Log lines the plugin wrote that were dropped because it wrote too many.
    pub logs_dropped: u64,
}

/// One use or denial of a granted capability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantUse {
    pub plugin: String,
    pub digest: String,
    pub capability: String,
    pub detail: String,
    pub allowed: bool,
}

/// One log line written by a plugin through the `log` interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginLog {
    pub plugin: String,
    pub level: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

pub trait PluginRecorder: Send + Sync {
    fn plugin_call(&self, call: &PluginCall);
    fn grant_use(&self, grant: &GrantUse);
    fn plugin_log(&self, log: &PluginLog);
}

/// An in-memory recorder, for tests and for commands that only inspect plugins.
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    pub calls: Mutex<Vec<PluginCall>>,
    pub grants: Mutex<Vec<GrantUse>>,
    pub logs: Mutex<Vec<PluginLog>>,
}

impl MemoryRecorder {
    pub fn calls(&self) -> Vec<PluginCall> {
        self.calls.lock().unwrap().clone()
    }
    pub fn grants(&self) -> Vec<GrantUse> {
        self.grants.lock().unwrap().clone()
    }
    pub fn logs(&self) -> Vec<PluginLog> {
        self.logs.lock().unwrap().clone()
    }
}

impl PluginRecorder for MemoryRecorder {
    fn plugin_call(&self, call: &PluginCall) {
        self.calls.lock().unwrap().push(call.clone());
    }
    fn grant_use(&self, grant: &GrantUse) {
        self.grants.lock().unwrap().push(grant.clone());
    }
    fn plugin_log(&self, log: &PluginLog) {
        self.logs.lock().unwrap().push(log.clone());
    }
}

/// Discards everything; for `mtx plugins`, which only lists.
#[derive(Debug, Default)]
pub struct NullRecorder;

impl PluginRecorder for NullRecorder {
    fn plugin_call(&self, _call: &PluginCall) {}
    fn grant_use(&self, _grant: &GrantUse) {}
    fn plugin_log(&self, _log: &PluginLog) {}
}
