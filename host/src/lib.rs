//! mtx: runs a Work Packet as a bounded, auditable loop of micro-tasks driven by small
//! local models, with every swappable decision a sandboxed WebAssembly component.
//!
//! This crate holds the run configuration and the command implementations behind the
//! `mtx` binary; the work is done by the `mtx-*` crates it re-exports.

pub mod commands;
pub mod config;

pub use mtx_executor as executor;
pub use mtx_plugin as plugin;
pub use mtx_store as store;
pub use mtx_toolbus as toolbus;
pub use mtx_types as types;
pub use mtx_wp as wp;
