//! Audit of finished mtx runs, from their durable state alone.
//!
//! - [`replay`]: re-runs every recorded call into a policy plugin (planner, LoRA selector,
//!   escalation policy, validators) with the recorded input, clock and seed, and compares
//!   the outputs call by call; with an override it reports the decisions another plugin
//!   would have taken on the same run.
//! - [`distill`]: exports the stored DistillationCandidates as training-ready JSON Lines
//!   records (no training is ever performed here).
//! - [`metrics`]: the MTX-SPEC 9.8 metrics of one or all jobs, as JSON or in the
//!   Prometheus text exposition format.
//!
//! This crate only reads a state directory: it never writes into it, never appends to a
//! job's ledger or Flight Recorder, and never spawns a process.

pub mod distill;
pub mod error;
pub mod metrics;
pub mod replay;

pub use error::AuditError;
