//! The Tool Bus of mtx (MTX-SPEC section 10): every command that validates a model's work
//! and every file write that applies a model's edit is a PlannedOperation that passes the
//! six global gates here before an engine runs it, and leaves an EngineResult with
//! evidence in the artifact store.
//!
//! Invariant: this crate is the only code in mtx that spawns a process (`shell`) or writes
//! into the workspace under execution (`fs_engine`); `tests/no_bypass.rs` enforces it. Nothing
//! here may run or write anything a gate refused.
//!
//! Map: `op` (envelopes), `caps` (capability ids and profiles), `registry` (+ `engines.json`),
//! `gates` (one module per gate), `shell` + `sandbox` (engine.shell), `fs_engine` +
//! `linediff` (engine.fs), `bus` (the runtime), `observer` (Flight Recorder payloads),
//! `plugin` (host side of the WIT `tool-bus` interface).

pub mod bus;
pub mod caps;
pub mod fs_engine;
pub mod gates;
pub mod linediff;
pub mod observer;
pub mod op;
pub mod plugin;
pub mod registry;
pub mod sandbox;
pub mod shell;

pub use bus::{SubmitContext, ToolBus, ToolBusConfig, ToolBusError};
pub use caps::{Capability, CapabilityError, CapabilityProfile, derive_proc_exec};
pub use gates::{GateDenied, GateOutcome, GatePass};
pub use observer::{Actor, RecordingObserver, ToolBusObserver, ToolCallRecord};
pub use op::{
    Budget, Determinism, EngineError, EngineResult, EvidencePolicy, InputRef, OpStatus, OutputSpec,
    PlannedOperation, Provenance, SandboxInfo, TerminalOutput,
};
pub use registry::Registry;
pub use sandbox::SandboxConfig;
