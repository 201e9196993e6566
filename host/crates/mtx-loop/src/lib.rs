//! The pure parts of the mtx micro-task loop: completion parsing and evidence checks
//! (MTX-SPEC 6), the edit protocol, context compilation (7), the host's checks on the
//! escalation policy's decisions (5.6-5.9, 11.3-11.4), and the previous-iteration summary.
//!
//! Inputs in, records out. Nothing here calls a model, runs a command, writes to the
//! workspace, reads a clock or draws a random number; the only I/O is reading workspace
//! files through [`WorkspaceReader`].

pub mod completion;
pub mod edits;
mod types;
pub mod workspace;

#[cfg(test)]
mod test_support;

pub use completion::{
    EvidenceCheck, EvidenceLocation, EvidenceProblem, EvidenceProblemKind, parse_completion,
    parse_evidence_line, parse_location, verify_evidence,
};
pub use edits::{
    EditKind, EditProblem, EditRules, FileWrite, ParsedEdits, ProposedEdit, ResolveError, ResolvedEdits,
    edit_block_spans, parse_edits, resolve_edits,
};
pub use workspace::{
    DirReader, MemReader, WorkspaceReader, normalize_path, path_in_entries, path_matches_entry,
};
