//! The plugin host: loads components, grants them exactly what the run config says,
//! and calls them inside CPU and memory limits.

pub mod bindings;
pub mod builtins;
pub mod engine;
pub mod error;
pub mod grants;
pub mod host;
pub mod recorder;
pub mod spec;
pub mod state;

pub use error::{LoadError, PluginError, ReportedError};
pub use grants::{Grant, GrantError};
pub use host::{CallContext, HostOptions, LoadedPlugin, PluginHost, WIT_VERSION};
pub use recorder::{GrantUse, MemoryRecorder, NullRecorder, PluginCall, PluginLog, PluginRecorder};
pub use spec::{Limits, PluginSource, PluginSpec, World};
pub use state::{NoToolBus, ToolBusPort};
