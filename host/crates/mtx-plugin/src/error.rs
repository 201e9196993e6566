//! Typed errors of the plugin host. Callers match on the kind; messages name the plugin.

use std::time::Duration;

use crate::bindings::types;

/// Why a component could not be loaded. Nothing about a refused component reaches a store.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown built-in plugin `{name}` (available: {available})")]
    UnknownBuiltin { name: String, available: String },
    #[error("cannot read plugin component {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("plugin {plugin} has sha256 {actual} but the run config pins {expected}; refusing to load it")]
    PinMismatch { plugin: String, expected: String, actual: String },
    #[error("plugin {plugin} is not a WebAssembly binary")]
    NotWasm { plugin: String },
    #[error("plugin {plugin} is a core WebAssembly module, not a component; build it for wasm32-wasip2")]
    NotAComponent { plugin: String },
    #[error("plugin {plugin} is not a valid component: {reason}")]
    Invalid { plugin: String, reason: String },
    #[error("plugin {plugin} does not implement world `{world}`: {reason}")]
    WrongWorld { plugin: String, world: String, reason: String },
    #[error(
        "plugin {plugin} was built against mtx:plugin@{found}, which this host (mtx:plugin@{supported}) cannot load"
    )]
    IncompatibleVersion { plugin: String, found: String, supported: String },
    #[error("plugin {plugin} imports something this host does not provide to world `{world}`: {reason}")]
    UnsatisfiedImport { plugin: String, world: String, reason: String },
    #[error("plugin {plugin}: {reason}")]
    BadSpec { plugin: String, reason: String },
}

/// How a call into a plugin failed. A failure never crashes the host.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin} exceeded its {limit:?} deadline")]
    Deadline { plugin: String, limit: Duration },
    #[error("plugin {plugin} tried to grow its memory to {desired} bytes (limit {limit})")]
    MemoryLimit { plugin: String, desired: usize, limit: usize },
    #[error("plugin {plugin} trapped: {trap}")]
    Trap { plugin: String, trap: String, detail: String },
    #[error("plugin {plugin} was denied {capability}: {reason}")]
    Denied { plugin: String, capability: String, reason: String },
    #[error("plugin {plugin} returned invalid output: {reason}")]
    BadOutput { plugin: String, reason: String },
    #[error("plugin {plugin} reported an error: {error}")]
    Reported { plugin: String, error: ReportedError },
    #[error("plugin {plugin} could not run: {reason}")]
    Host { plugin: String, reason: String },
}

impl PluginError {
    /// The `kind` value of FR-EVT-MTX-003 `plugin_failure`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Deadline { .. } => "deadline",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::Trap { .. } | PluginError::Host { .. } => "trap",
            PluginError::Denied { .. }
            | PluginError::Reported { error: ReportedError::ModelDenied(_), .. } => "denied",
            PluginError::BadOutput { .. } | PluginError::Reported { .. } => "bad_output",
        }
    }

    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Deadline { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Denied { plugin, .. }
            | PluginError::BadOutput { plugin, .. }
            | PluginError::Reported { plugin, .. }
            | PluginError::Host { plugin, .. } => plugin,
        }
    }
}

/// An error value a plugin returned through its WIT `result`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportedError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("bad config: {0}")]
    BadConfig(String),
    #[error("internal: {0}")]
    Internal(String),
    #[error("model timeout: {0}")]
    ModelTimeout(String),
    #[error("transient model error: {0}")]
    ModelTransient(String),
    #[error("context overflow: {0}")]
    ContextOverflow(String),
    #[error("fatal model error: {0}")]
    ModelFatal(String),
    #[error("denied: {0}")]
    ModelDenied(String),
}

impl From<types::PluginError> for ReportedError {
    fn from(e: types::PluginError) -> Self {
        match e {
            types::PluginError::InvalidInput(m) => ReportedError::InvalidInput(m),
            types::PluginError::Unsupported(m) => ReportedError::Unsupported(m),
            types::PluginError::BadConfig(m) => ReportedError::BadConfig(m),
            types::PluginError::Internal(m) => ReportedError::Internal(m),
        }
    }
}

impl From<types::ModelError> for ReportedError {
    fn from(e: types::ModelError) -> Self {
        match e {
            types::ModelError::Timeout(m) => ReportedError::ModelTimeout(m),
            types::ModelError::Transient(m) => ReportedError::ModelTransient(m),
            types::ModelError::ContextOverflow(m) => ReportedError::ContextOverflow(m),
            types::ModelError::Fatal(m) => ReportedError::ModelFatal(m),
            types::ModelError::Denied(m) => ReportedError::ModelDenied(m),
        }
    }
}
