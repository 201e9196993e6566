//! The data contract of mtx: the records of MTX-SPEC section 3, as serde types.
//!
//! Field names, enum spellings and ids are the spec's, exactly. This crate holds
//! data and pure helpers only; it must never do I/O.

pub mod common;

pub use common::{ArtifactHandle, Sha256Hex, TokenUsage, canonical_json, now_rfc3339, sha256_hex};
