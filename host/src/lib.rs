//! mtx: runs a Work Packet as a bounded, auditable loop of micro-tasks driven by small
//! local models, with every swappable decision a sandboxed WebAssembly component.

pub mod plugin;
