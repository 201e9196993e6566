//! Work Packet input for mtx (MTX-SPEC sections 14 and 4): parsing markdown packets,
//! `packet.json` contracts and native hand-written packets into one `WorkPacket`,
//! refusing stubs, drafts and supplied MT definitions, validating generated MT
//! definitions (MT-VAL-001..014, MT-SCHEMA) and computing execution waves.
//!
//! This crate reads files and computes; it must never write files, spawn processes or
//! create jobs.

pub mod error;
pub mod hints;
pub mod json;
pub mod load;
pub mod markdown;
pub mod native;
pub mod packet;
pub mod paths;
pub mod validate;
pub mod waves;

pub use error::WpError;
pub use hints::{load_mt_hints, mt_hint_from_contract, mt_hint_from_markdown};
pub use json::lossy_reasons;
pub use load::{load_work_packet, wp_scope};
pub use markdown::parse_markdown;
pub use mtx_types::WorkPacketScope;
pub use packet::{Bootstrap, ClauseRow, MtHint, RiskMapEntry, SourceKind, WorkPacket};
pub use paths::{normalise_path, path_in_scope};
pub use validate::{Severity, ValidationItem, ValidationReport, parse_definitions, validate_definitions};
pub use waves::{CycleError, compute_waves, find_cycles};
