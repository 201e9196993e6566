//! The progress artifact (MTX-SPEC 3.7) and the metrics records (3.5).
//!
//! The progress artifact is the single source of truth for loop state. This module
//! describes it, recomputes its aggregate and checks the rules serde cannot; it must
//! never read or write files (the state store does).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::common::{ArtifactHandle, Sha256Hex};
use crate::escalation::FailureCategory;
use crate::ledger::step_id;
use crate::policy::ExecutionPolicy;

/// `schema_version` of the progress artifact (const).
pub const PROGRESS_SCHEMA_VERSION: &str = "1.0";

/// Whether `id` matches `^MT-[0-9]{3}$`.
pub fn is_valid_mt_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 6 && id.starts_with("MT-") && b[3..].iter().all(u8::is_ascii_digit)
}

/// MTX-SPEC 3.7.1 ProgressArtifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressArtifact {
    pub schema_version: String,
    pub wp_id: String,
    pub job_id: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub status: ProgressStatus,
    pub policy: ExecutionPolicy,
    pub learning_context: LearningContext,
    pub current_state: CurrentState,
    pub micro_tasks: MicroTasks,
    pub aggregate_stats: AggregateStats,
    /// Unknown fields, kept on read (section 3).
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `micro_tasks`: the entries in order, reading as a slice, with a record of the entries
/// reached for change since a saver last asked ([`MicroTasks::take_changes`]).
///
/// A long job saves its progress at every iteration and changes one or two entries in
/// each, while the document holds every MT it ran. The record lets a save encode and hash
/// only what changed instead of comparing every entry with its last saved form. The record
/// belongs to one instance and one taker: a clone or a deserialised document starts a new
/// lineage with every entry counted as changed, and a taker other than the last one is told
/// that every entry may have changed, so a saver never trusts a record it did not follow.
#[derive(Debug)]
pub struct MicroTasks {
    entries: Vec<MTProgressEntry>,
    changes: Changes,
}

#[derive(Debug)]
struct Changes {
    lineage: u64,
    /// Who took the record last (0: nobody).
    taker: u64,
    /// Every entry counted as changed (a fresh lineage, `iter_mut`, a removal).
    all: bool,
    /// Indexes reached through `&mut` since the record was last taken (unsorted, repeats).
    touched: Vec<usize>,
}

impl Changes {
    fn fresh() -> Changes {
        Changes { lineage: next_id(), taker: 0, all: true, touched: Vec::new() }
    }

    /// Records that entry `index` of `len` was reached. A record nobody takes for long
    /// collapses to "every entry" rather than grow past a few times the entries.
    fn touch(&mut self, index: usize, len: usize) {
        if self.all {
            return;
        }
        if self.touched.len() >= 4 * len + 64 {
            self.all = true;
            self.touched.clear();
        } else {
            self.touched.push(index);
        }
    }
}

/// A process-unique number, never 0: a [`MicroTasks`] lineage or a taker of its record.
pub fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What changed in a [`MicroTasks`] since its record was last taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChanges {
    /// The instance the record belongs to (process-unique, never 0).
    pub lineage: u64,
    /// The changed indexes, sorted and distinct; `None` when any entry may have changed.
    pub indexes: Option<Vec<usize>>,
}

impl MicroTasks {
    /// Hands the record of changed entries to `taker` (an id from [`next_id`]) and starts
    /// a new one. The indexes count from the record's last take, by the same taker only.
    pub fn take_changes(&mut self, taker: u64) -> EntryChanges {
        let other = std::mem::replace(&mut self.changes.taker, taker) != taker;
        let indexes = if std::mem::take(&mut self.changes.all) || other {
            self.changes.touched.clear();
            None
        } else {
            let mut touched = std::mem::take(&mut self.changes.touched);
            touched.sort_unstable();
            touched.dedup();
            touched.retain(|&i| i < self.entries.len());
            Some(touched)
        };
        EntryChanges { lineage: self.changes.lineage, indexes }
    }

    /// The entry at `index`, counted as changed.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut MTProgressEntry> {
        if index < self.entries.len() {
            self.changes.touch(index, self.entries.len());
        }
        self.entries.get_mut(index)
    }

    /// Every entry, all counted as changed.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, MTProgressEntry> {
        self.changes.all = true;
        self.entries.iter_mut()
    }

    /// Appends an entry, counted as changed.
    pub fn push(&mut self, entry: MTProgressEntry) {
        self.entries.push(entry);
        self.changes.touch(self.entries.len() - 1, self.entries.len());
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.changes.all = true;
        self.entries.clear();
    }

    /// Keeps the first `len` entries.
    pub fn truncate(&mut self, len: usize) {
        self.changes.all = true;
        self.entries.truncate(len);
    }

    /// The entries without counting a change: only for edits undone before anyone reads
    /// the record (the saved form's detach and restore).
    fn untracked(&mut self) -> &mut [MTProgressEntry] {
        &mut self.entries
    }
}

impl Default for MicroTasks {
    fn default() -> Self {
        MicroTasks { entries: Vec::new(), changes: Changes::fresh() }
    }
}

impl Clone for MicroTasks {
    fn clone(&self) -> Self {
        MicroTasks { entries: self.entries.clone(), changes: Changes::fresh() }
    }
}

impl PartialEq for MicroTasks {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl From<Vec<MTProgressEntry>> for MicroTasks {
    fn from(entries: Vec<MTProgressEntry>) -> Self {
        MicroTasks { entries, changes: Changes::fresh() }
    }
}

impl FromIterator<MTProgressEntry> for MicroTasks {
    fn from_iter<I: IntoIterator<Item = MTProgressEntry>>(iter: I) -> Self {
        MicroTasks::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl std::ops::Deref for MicroTasks {
    type Target = [MTProgressEntry];
    fn deref(&self) -> &[MTProgressEntry] {
        &self.entries
    }
}

impl std::ops::Index<usize> for MicroTasks {
    type Output = MTProgressEntry;
    fn index(&self, index: usize) -> &MTProgressEntry {
        &self.entries[index]
    }
}

impl std::ops::IndexMut<usize> for MicroTasks {
    fn index_mut(&mut self, index: usize) -> &mut MTProgressEntry {
        self.changes.touch(index, self.entries.len());
        &mut self.entries[index]
    }
}

impl<'a> IntoIterator for &'a MicroTasks {
    type Item = &'a MTProgressEntry;
    type IntoIter = std::slice::Iter<'a, MTProgressEntry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<'a> IntoIterator for &'a mut MicroTasks {
    type Item = &'a mut MTProgressEntry;
    type IntoIter = std::slice::IterMut<'a, MTProgressEntry>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl Serialize for MicroTasks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MicroTasks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(MicroTasks::from)
    }
}

/// `status` of the progress artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    InProgress,
    Completed,
    CompletedWithIssues,
    Failed,
    Cancelled,
    Paused,
}

/// MTX-SPEC 3.7.2 learning_context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearningContext {
    pub skill_bank_snapshot_at_start: String,
    pub loras_available: Vec<LoRAInfo>,
    pub pending_distillation_jobs: u32,
}

/// MTX-SPEC 3.7.3 current_state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_mt: Option<String>,
    pub active_model_level: u32,
    pub total_iterations: u32,
    pub total_escalations: u32,
    pub total_drop_backs: u32,
    #[serde(default)]
    pub total_model_swaps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_gate: Option<PendingGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_cloud_escalation: Option<PendingCloudEscalation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_limits: Option<EffectiveLimits>,
}

/// `current_state.pending_gate`: present while paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGate {
    pub gate_reason: String,
    pub mt_id: String,
    pub level: u32,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_ref: Option<ArtifactHandle>,
}

/// `current_state.pending_cloud_escalation`: present while awaiting consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCloudEscalation {
    pub request_id: String,
    pub mt_id: String,
    pub requested_model_id: String,
    pub projection_plan_ref: ArtifactHandle,
    pub payload_sha256: Sha256Hex,
    pub local_attempts: u32,
    pub last_error_summary: String,
}

/// `current_state.effective_limits`: limits raised by gate decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    pub max_total_iterations: u32,
    pub max_duration_ms: u64,
}

/// Records per archive chunk: an MT keeps between `ARCHIVE_CHUNK` and
/// `2 * ARCHIVE_CHUNK - 1` records inline once it has any archived.
pub const ARCHIVE_CHUNK: usize = 32;

/// Job-relative directory of the archive chunks.
pub const ARCHIVE_DIR: &str = "progress_archive";

/// \[D\] One archive chunk of an MT's iteration records (11.4: iteration details move
/// out of the progress artifact, keeping refs). The chunk file is a JSON array of
/// IterationRecords; the totals let the artifact's aggregate and numbering checks work
/// without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationArchiveRef {
    /// Path relative to the job directory, under `progress_archive/`.
    pub path: String,
    /// SHA-256 of the chunk file's bytes.
    pub sha256: Sha256Hex,
    pub count: u32,
    pub last_escalation_level: u32,
    pub last_iteration: u32,
    pub tokens_prompt: u64,
    pub tokens_completion: u64,
    pub duration_ms: u64,
}

impl IterationArchiveRef {
    /// The reference of a chunk at `path` holding `records` as `bytes`; `None` for no records.
    fn describe(path: String, bytes: &[u8], records: &[IterationRecord]) -> Option<Self> {
        let last = records.last()?;
        Some(IterationArchiveRef {
            path,
            sha256: crate::common::sha256_hex(bytes),
            count: records.len() as u32,
            last_escalation_level: last.escalation_level,
            last_iteration: last.iteration,
            tokens_prompt: records.iter().map(|r| r.tokens_prompt).sum(),
            tokens_completion: records.iter().map(|r| r.tokens_completion).sum(),
            duration_ms: records.iter().map(|r| r.duration_ms).sum(),
        })
    }

    /// Refuses a path that is not a plain file name under `progress_archive/`, so an
    /// edited reference cannot make a reader open anything else.
    pub fn check_path(&self) -> Result<(), String> {
        let path = &self.path;
        let safe = path
            .strip_prefix(&format!("{ARCHIVE_DIR}/"))
            .is_some_and(|name| !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.'));
        if safe {
            Ok(())
        } else {
            Err(format!("archive chunk path {path:?} is not a file under {ARCHIVE_DIR}/"))
        }
    }

    /// Parses chunk bytes and checks them against this reference.
    pub fn check(&self, bytes: &[u8]) -> Result<Vec<IterationRecord>, String> {
        self.check_path()?;
        let path = &self.path;
        let computed = crate::common::sha256_hex(bytes);
        if computed != self.sha256 {
            return Err(format!("archive chunk {path} has sha256 {computed}, recorded {}", self.sha256));
        }
        let records: Vec<IterationRecord> =
            serde_json::from_slice(bytes).map_err(|e| format!("archive chunk {path}: {e}"))?;
        if Self::describe(path.clone(), bytes, &records).as_ref() != Some(self) {
            return Err(format!("archive chunk {path} does not match its recorded count and totals"));
        }
        Ok(records)
    }
}

/// A chunk to write before the progress artifact that names it.
#[derive(Debug, Clone)]
pub struct ArchiveChunk {
    /// Index of the entry in `micro_tasks`.
    pub entry: usize,
    pub reference: IterationArchiveRef,
    pub bytes: Vec<u8>,
}

/// Archived records taken out for a write of the saved form.
#[derive(Debug, Default)]
pub struct DetachedHistory(Vec<(usize, Vec<IterationRecord>)>);

/// MTX-SPEC 3.7.5 MTStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MTStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
    Skipped,
    Blocked,
}

/// `outcome` of an IterationRecord.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IterationOutcome {
    Success,
    Retry,
    Escalate,
    Blocked,
    Skipped,
}

/// MTX-SPEC 3.7.4 MTProgressEntry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MTProgressEntry {
    pub mt_id: String,
    pub name: String,
    pub status: MTStatus,
    #[serde(default)]
    pub iterations: Vec<IterationRecord>,
    /// \[D\] Chunk files holding the MT's oldest iteration records (11.4). In memory
    /// `iterations` holds every record and these chunks cover its prefix; the saved form
    /// leaves the covered records out. See [`ProgressArtifact::cut_archive_chunks`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived_iterations: Vec<IterationArchiveRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_iteration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_model_level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_record_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_ref: Option<ArtifactHandle>,
    #[serde(default)]
    pub evidence_refs: Vec<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation_candidate: Option<DistillationCandidateSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_distillation_candidates: Option<Vec<serde_json::Value>>,
}

impl MTProgressEntry {
    /// How many of the oldest records the archive chunks hold.
    pub fn archived_count(&self) -> usize {
        self.archived_iterations.iter().map(|c| c.count as usize).sum()
    }

    /// A fresh `pending` entry with no history.
    pub fn pending(mt_id: impl Into<String>, name: impl Into<String>) -> Self {
        MTProgressEntry {
            mt_id: mt_id.into(),
            name: name.into(),
            status: MTStatus::Pending,
            iterations: Vec::new(),
            archived_iterations: Vec::new(),
            final_iteration: None,
            final_model_level: None,
            escalation_record_ref: None,
            summary_ref: None,
            evidence_refs: Vec::new(),
            distillation_candidate: None,
            pending_distillation_candidates: None,
        }
    }
}

/// `MTProgressEntry.distillation_candidate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistillationCandidateSummary {
    pub eligible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_log_entry_id: Option<String>,
    #[serde(default)]
    pub task_type_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_ref: Option<ArtifactHandle>,
}

/// MTX-SPEC 3.7.5 IterationRecord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub iteration: u32,
    pub step_id: String,
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_id: Option<String>,
    pub escalation_level: u32,
    pub started_at: String,
    pub completed_at: String,
    pub duration_ms: u64,
    pub tokens_prompt: u64,
    pub tokens_completion: u64,
    pub claimed_complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_evidence_ref: Option<ArtifactHandle>,
    pub outcome: IterationOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_category: Option<FailureCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<String>,
    pub context_snapshot_id: String,
}

/// MTX-SPEC 3.7.6 LoRAInfo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoRAInfo {
    pub lora_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_version: Option<String>,
    pub base_model_id: String,
    #[serde(default)]
    pub trained_on_task_types: Vec<String>,
    #[serde(default)]
    pub specialization: Vec<String>,
    #[serde(default)]
    pub weak_on_task_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trained_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_metrics: Option<LoRAEvalMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_priority: Option<f64>,
}

/// `LoRAInfo.eval_metrics`: `pass_at_1` plus whatever else the registry records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoRAEvalMetrics {
    pub pass_at_1: f64,
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// MTX-SPEC 3.5.3 AggregateStats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateStats {
    pub total_mts: u32,
    pub completed_mts: u32,
    pub failed_mts: u32,
    pub skipped_mts: u32,
    pub total_iterations: u32,
    pub total_tokens_prompt: u64,
    pub total_tokens_completion: u64,
    pub total_duration_ms: u64,
    pub escalation_count: u32,
    pub drop_back_count: u32,
    pub distillation_candidates_generated: u32,
}

/// MTX-SPEC 3.5.2 MTMetrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MTMetrics {
    pub mt_id: String,
    pub status: MTStatus,
    pub iterations: u32,
    pub final_escalation_level: u32,
    pub tokens_prompt: u64,
    pub tokens_completion: u64,
    pub duration_ms: u64,
    pub validation_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_record_ref: Option<ArtifactHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation_candidate_ref: Option<ArtifactHandle>,
}

/// MTX-SPEC 3.5.1 MicroTaskMetrics (job aggregate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MicroTaskMetrics {
    pub mt_metrics: BTreeMap<String, MTMetrics>,
    pub total_mts: u32,
    pub completed_mts: u32,
    pub failed_mts: u32,
    pub skipped_mts: u32,
    pub total_iterations: u32,
    /// JSON keys are the decimal level.
    pub iterations_at_level: BTreeMap<String, u32>,
    pub total_tokens_prompt: u64,
    pub total_tokens_completion: u64,
    pub total_duration_ms: u64,
    pub escalation_count: u32,
    pub drop_back_count: u32,
    pub distillation_candidates_generated: u32,
    /// Percentage 0-100 of MTs completed at level 0.
    pub success_rate_level_0: f64,
}

/// MTX-SPEC 3.5.4 JobMetrics: never null, zero at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMetrics {
    pub duration_ms: u64,
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens_planner: u64,
    pub tokens_executor: u64,
    pub entities_read: u64,
    pub entities_written: u64,
    pub validators_run_count: u64,
}

impl ProgressArtifact {
    /// Recomputes `aggregate_stats` from the entries and `current_state` (3.5.3): failed
    /// counts failed plus blocked MTs; escalation and drop-back counts come from the
    /// current state's totals; a distillation candidate counts once it has been written
    /// (it carries a `candidate_ref` or a `skill_log_entry_id`).
    pub fn recompute_aggregate_stats(&mut self) {
        self.aggregate_stats = self.aggregate(false);
    }

    /// The models of every recorded iteration, sorted, each once.
    pub fn models_used(&self) -> Vec<String> {
        let mut models: Vec<String> =
            self.micro_tasks.iter().flat_map(|e| e.iterations.iter().map(|i| i.model_id.clone())).collect();
        models.sort();
        models.dedup();
        models
    }

    /// [`ProgressArtifact::recompute_aggregate_stats`] for the saved form (archived records
    /// left out of `iterations`).
    pub fn recompute_aggregate_stats_saved(&mut self) {
        self.aggregate_stats = self.aggregate(true);
    }

    /// Archived records count through their chunks' totals in both forms, so the work
    /// does not grow with the job's history.
    fn aggregate(&self, saved: bool) -> AggregateStats {
        let mut s = AggregateStats {
            total_mts: self.micro_tasks.len() as u32,
            escalation_count: self.current_state.total_escalations,
            drop_back_count: self.current_state.total_drop_backs,
            ..AggregateStats::default()
        };
        for entry in &self.micro_tasks {
            match entry.status {
                MTStatus::Completed => s.completed_mts += 1,
                MTStatus::Failed | MTStatus::Blocked => s.failed_mts += 1,
                MTStatus::Skipped => s.skipped_mts += 1,
                MTStatus::Pending | MTStatus::InProgress => {}
            }
            for chunk in &entry.archived_iterations {
                s.total_iterations += chunk.count;
                s.total_tokens_prompt += chunk.tokens_prompt;
                s.total_tokens_completion += chunk.tokens_completion;
                s.total_duration_ms += chunk.duration_ms;
            }
            let skip = if saved { 0 } else { entry.archived_count().min(entry.iterations.len()) };
            for it in &entry.iterations[skip..] {
                s.total_iterations += 1;
                s.total_tokens_prompt += it.tokens_prompt;
                s.total_tokens_completion += it.tokens_completion;
                s.total_duration_ms += it.duration_ms;
            }
            if entry
                .distillation_candidate
                .as_ref()
                .is_some_and(|c| c.candidate_ref.is_some() || c.skill_log_entry_id.is_some())
            {
                s.distillation_candidates_generated += 1;
            }
        }
        s
    }

    /// New archive chunks: an MT holding at least `2 * ARCHIVE_CHUNK` records past its
    /// archived prefix gives its oldest `ARCHIVE_CHUNK`, and a finished MT (completed,
    /// failed, skipped) gives all of them, so the saved form holds the recent
    /// records of unfinished MTs only. The caller
    /// writes the chunk files, then hands them to [`ProgressArtifact::adopt_archive_chunks`];
    /// the in-memory records stay where they are. Chunk names and bytes depend only on the
    /// records, so cutting again after a crash rewrites the same files.
    pub fn cut_archive_chunks(&self) -> Vec<ArchiveChunk> {
        let mut chunks = Vec::new();
        for (index, entry) in self.micro_tasks.iter().enumerate() {
            let mut start = entry.archived_count();
            // Blocked is not final: an MT waiting at a gate is blocked until the decision.
            let finished = matches!(entry.status, MTStatus::Completed | MTStatus::Failed | MTStatus::Skipped);
            loop {
                let left = entry.iterations.len().saturating_sub(start);
                let take = if left >= 2 * ARCHIVE_CHUNK {
                    ARCHIVE_CHUNK
                } else if finished && left > 0 {
                    // A finished MT's history is final: all of it goes.
                    left
                } else {
                    break;
                };
                let records = &entry.iterations[start..start + take];
                let mut bytes = serde_json::to_vec(records).expect("iteration records serialise");
                bytes.push(b'\n');
                let path = format!("{ARCHIVE_DIR}/{}_{:05}.json", entry.mt_id, start + 1);
                let reference =
                    IterationArchiveRef::describe(path, &bytes, records).expect("a chunk holds records");
                chunks.push(ArchiveChunk { entry: index, reference, bytes });
                start += take;
            }
        }
        chunks
    }

    /// Records chunks cut by [`ProgressArtifact::cut_archive_chunks`] once their files
    /// are durable.
    pub fn adopt_archive_chunks(&mut self, chunks: Vec<ArchiveChunk>) {
        for chunk in chunks {
            if let Some(entry) = self.micro_tasks.get_mut(chunk.entry) {
                entry.archived_iterations.push(chunk.reference);
            }
        }
    }

    /// Turns the in-memory form into the saved form: takes every entry's archived records
    /// out of `iterations`. [`ProgressArtifact::restore_archived`] puts them back.
    pub fn detach_archived(&mut self) -> DetachedHistory {
        let mut held = Vec::new();
        for (index, entry) in self.micro_tasks.untracked().iter_mut().enumerate() {
            let archived = entry.archived_count().min(entry.iterations.len());
            if archived > 0 {
                let tail = entry.iterations.split_off(archived);
                held.push((index, std::mem::replace(&mut entry.iterations, tail)));
            }
        }
        DetachedHistory(held)
    }

    /// Undoes [`ProgressArtifact::detach_archived`].
    pub fn restore_archived(&mut self, detached: DetachedHistory) {
        for (index, mut head) in detached.0 {
            if let Some(entry) = self.micro_tasks.untracked().get_mut(index) {
                head.append(&mut entry.iterations);
                entry.iterations = head;
            }
        }
    }

    /// Turns a loaded saved form into the in-memory form: `read` returns a chunk's bytes by
    /// its job-relative path. Each chunk must match its recorded hash and totals; every
    /// failure names the chunk.
    pub fn attach_archived(
        &mut self,
        mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<(), String> {
        for entry in &mut self.micro_tasks {
            if entry.archived_iterations.is_empty() {
                continue;
            }
            let mut all = Vec::new();
            for chunk in &entry.archived_iterations {
                chunk.check_path()?;
                let records = chunk.check(&read(&chunk.path)?)?;
                all.extend(records);
            }
            all.append(&mut entry.iterations);
            entry.iterations = all;
        }
        Ok(())
    }

    /// Checks the schema rules serde cannot: the const `schema_version`, MT id patterns,
    /// one entry per MT, the iteration numbering (per level from 1, consecutive) and the
    /// step id of each iteration (the attempt ordinal across levels, 3.8.2), and levels
    /// that exist in the policy's chain. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        self.validate_form(false)
    }

    /// [`ProgressArtifact::validate`] for the saved form, whose entries leave their
    /// archived records out: numbering continues from each entry's last chunk.
    pub fn validate_saved(&self) -> Result<(), Vec<String>> {
        self.validate_form(true)
    }

    fn validate_form(&self, saved: bool) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.schema_version != PROGRESS_SCHEMA_VERSION {
            problems.push(format!(
                "schema_version must be \"{PROGRESS_SCHEMA_VERSION}\", found {:?}",
                self.schema_version
            ));
        }
        if self.wp_id.is_empty() {
            problems.push("wp_id is empty".to_string());
        }
        if self.job_id.is_empty() {
            problems.push("job_id is empty".to_string());
        }
        let max_level = self.policy.max_escalation_level();
        if let Some(active) = &self.current_state.active_mt
            && !self.micro_tasks.iter().any(|e| &e.mt_id == active)
        {
            problems.push(format!("current_state.active_mt {active} has no entry in micro_tasks"));
        }
        if self.current_state.active_model_level > max_level {
            problems.push(format!(
                "current_state.active_model_level {} exceeds the chain's highest level {max_level}",
                self.current_state.active_model_level
            ));
        }
        let mut seen = HashSet::with_capacity(self.micro_tasks.len());
        for entry in &self.micro_tasks {
            let mt = &entry.mt_id;
            if !is_valid_mt_id(mt) {
                problems.push(format!("micro_tasks entry id {mt:?} does not match ^MT-[0-9]{{3}}$"));
            }
            if !seen.insert(mt.as_str()) {
                problems.push(format!("micro_tasks has more than one entry for {mt}"));
            }
            let archived = entry.archived_count();
            let (offset, mut previous) = if saved {
                let last = entry.archived_iterations.last();
                (archived, last.map(|c| (c.last_escalation_level, c.last_iteration)))
            } else {
                if archived > entry.iterations.len() {
                    problems.push(format!(
                        "{mt} archive chunks cover {archived} records but only {} are loaded",
                        entry.iterations.len()
                    ));
                }
                (0, None)
            };
            for (ordinal, it) in entry.iterations.iter().enumerate() {
                let ordinal = ordinal + offset;
                let expected_iteration = match previous {
                    Some((level, n)) if level == it.escalation_level => n + 1,
                    _ => 1,
                };
                if it.iteration != expected_iteration {
                    problems.push(format!(
                        "{mt} iteration record {} at level {} is numbered {}, expected {expected_iteration}",
                        ordinal + 1,
                        it.escalation_level,
                        it.iteration
                    ));
                }
                let expected_step = step_id(mt, ordinal as u32 + 1);
                if it.step_id != expected_step {
                    problems.push(format!(
                        "{mt} iteration record {} has step_id {:?}, expected {expected_step:?}",
                        ordinal + 1,
                        it.step_id
                    ));
                }
                if it.escalation_level > max_level {
                    problems.push(format!(
                        "{mt} iteration record {} uses level {} beyond the chain's highest level {max_level}",
                        ordinal + 1,
                        it.escalation_level
                    ));
                }
                previous = Some((it.escalation_level, it.iteration));
            }
            // In the saved form a finished MT's records may all be archived; its last
            // chunk then names the final iteration.
            let in_last_chunk = saved
                && entry
                    .archived_iterations
                    .last()
                    .is_some_and(|c| Some(c.last_iteration) == entry.final_iteration);
            if let Some(last) = entry.final_iteration
                && !in_last_chunk
                && !entry.iterations.iter().any(|it| it.iteration == last)
            {
                problems.push(format!("{mt} final_iteration {last} names no recorded iteration"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn iteration(mt: &str, ordinal: u32, iteration: u32, level: u32) -> IterationRecord {
        IterationRecord {
            iteration,
            step_id: step_id(mt, ordinal),
            model_id: "qwen2.5-coder:7b".into(),
            lora_id: None,
            escalation_level: level,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            completed_at: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: 1000,
            tokens_prompt: 100,
            tokens_completion: 20,
            claimed_complete: false,
            validation_passed: None,
            validation_evidence_ref: None,
            outcome: IterationOutcome::Retry,
            failure_category: Some(FailureCategory::IncompleteImplementation),
            error_summary: None,
            context_snapshot_id: "snap".into(),
        }
    }

    fn artifact() -> ProgressArtifact {
        let mut first = MTProgressEntry::pending("MT-001", "first");
        first.status = MTStatus::Completed;
        first.iterations =
            vec![iteration("MT-001", 1, 1, 0), iteration("MT-001", 2, 2, 0), iteration("MT-001", 3, 1, 1)];
        first.iterations[2].outcome = IterationOutcome::Success;
        first.final_iteration = Some(1);
        first.final_model_level = Some(1);
        let mut second = MTProgressEntry::pending("MT-002", "second");
        second.status = MTStatus::Blocked;
        ProgressArtifact {
            schema_version: PROGRESS_SCHEMA_VERSION.into(),
            wp_id: "WP-1".into(),
            job_id: "job".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            completed_at: None,
            status: ProgressStatus::InProgress,
            policy: ExecutionPolicy::default(),
            learning_context: LearningContext {
                skill_bank_snapshot_at_start: "2026-01-01T00:00:00.000Z".into(),
                loras_available: vec![],
                pending_distillation_jobs: 0,
            },
            current_state: CurrentState {
                active_mt: Some("MT-002".into()),
                total_escalations: 1,
                ..CurrentState::default()
            },
            micro_tasks: vec![first, second].into(),
            aggregate_stats: AggregateStats::default(),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn progress_artifact_round_trips_with_exact_spellings() {
        let mut p = artifact();
        p.extra.insert("x_extra".into(), serde_json::json!("kept"));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], "in_progress");
        assert_eq!(v["micro_tasks"][0]["iterations"][2]["outcome"], "SUCCESS");
        assert_eq!(v["micro_tasks"][0]["iterations"][0]["failure_category"], "incomplete_implementation");
        assert_eq!(v["micro_tasks"][1]["status"], "blocked");
        let back: ProgressArtifact = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn aggregate_stats_are_recomputed_from_entries() {
        let mut p = artifact();
        p.recompute_aggregate_stats();
        let s = &p.aggregate_stats;
        assert_eq!((s.total_mts, s.completed_mts, s.failed_mts, s.skipped_mts), (2, 1, 1, 0));
        assert_eq!(s.total_iterations, 3);
        assert_eq!(s.total_tokens_prompt, 300);
        assert_eq!(s.total_tokens_completion, 60);
        assert_eq!(s.total_duration_ms, 3000);
        assert_eq!(s.escalation_count, 1);
    }

    #[test]
    fn validate_accepts_a_consistent_artifact() {
        assert_eq!(artifact().validate(), Ok(()));
    }

    #[test]
    fn validate_reports_schema_version_duplicates_and_numbering() {
        let mut p = artifact();
        p.schema_version = "2.0".into();
        p.micro_tasks.push(MTProgressEntry::pending("MT-001", "dup"));
        p.micro_tasks.push(MTProgressEntry::pending("MT-1", "bad"));
        p.micro_tasks[0].iterations[1].iteration = 3;
        p.micro_tasks[0].iterations[2].step_id = "MT-001_iter-001".into();
        let problems = p.validate().unwrap_err();
        assert!(problems.iter().any(|m| m.contains("schema_version")), "{problems:?}");
        assert!(problems.iter().any(|m| m.contains("more than one entry for MT-001")));
        assert!(problems.iter().any(|m| m.contains("\"MT-1\"")));
        assert!(problems.iter().any(|m| m.contains("numbered 3, expected 2")));
        assert!(problems.iter().any(|m| m.contains("expected \"MT-001_iter-003\"")));
    }

    /// An MT with `n` records: four per level, levels 0, 1, 2, ...
    fn long_mt(n: u32) -> ProgressArtifact {
        let mut p = artifact();
        p.policy.escalation_chain = (0..=n / 4)
            .map(|level| crate::policy::EscalationLevel {
                level,
                model_id: "qwen2.5-coder:7b".into(),
                lora_id: None,
                lora_selector: None,
                is_cloud: false,
                is_hard_gate: false,
                context_window: 8192,
            })
            .collect();
        let entry = &mut p.micro_tasks[1];
        entry.status = MTStatus::InProgress;
        entry.iterations = (0..n).map(|i| iteration("MT-002", i + 1, i % 4 + 1, i / 4)).collect();
        for (i, r) in entry.iterations.iter_mut().enumerate() {
            r.tokens_prompt = 100 + i as u64;
            r.duration_ms = 7 * i as u64;
        }
        p
    }

    #[test]
    fn chunks_are_cut_only_from_a_long_history_and_leave_a_bounded_tail_inline() {
        let short = long_mt(2 * ARCHIVE_CHUNK as u32 - 1);
        // Only the finished MT-001 gives its (three) records.
        let cut = short.cut_archive_chunks();
        assert_eq!(cut.len(), 1);
        assert_eq!((cut[0].entry, cut[0].reference.count), (0, 3));
        assert_eq!(cut[0].reference.path, "progress_archive/MT-001_00001.json");
        let mut p = long_mt(100);
        let chunks: Vec<ArchiveChunk> = p.cut_archive_chunks().into_iter().filter(|c| c.entry == 1).collect();
        // 100 records: two chunks of 32, 36 left inline (32..=63).
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].reference.path, "progress_archive/MT-002_00001.json");
        assert_eq!(chunks[1].reference.path, "progress_archive/MT-002_00033.json");
        assert_eq!(chunks[1].reference.last_iteration, 4);
        assert_eq!(chunks[1].reference.last_escalation_level, 15);
        // The same records give the same chunk bytes: a repeated save rewrites them unchanged.
        let again: Vec<ArchiveChunk> = p.cut_archive_chunks().into_iter().filter(|c| c.entry == 1).collect();
        assert_eq!(again[0].bytes, chunks[0].bytes);
        p.adopt_archive_chunks(chunks);
        assert!(p.cut_archive_chunks().iter().all(|c| c.entry == 0), "nothing new to cut for MT-002");
        assert_eq!(p.micro_tasks[1].archived_count(), 64);
        // Once MT-002 is finished, the rest of it goes too.
        p.micro_tasks[1].status = MTStatus::Failed;
        let rest: Vec<ArchiveChunk> = p.cut_archive_chunks().into_iter().filter(|c| c.entry == 1).collect();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].reference.count, 36);
        assert_eq!(rest[0].reference.path, "progress_archive/MT-002_00065.json");
    }

    #[test]
    fn the_saved_form_leaves_archived_records_out_and_keeps_totals_and_numbering() {
        let mut p = long_mt(100);
        p.recompute_aggregate_stats();
        let full_stats = p.aggregate_stats.clone();
        let chunks = p.cut_archive_chunks();
        let files: std::collections::HashMap<String, Vec<u8>> =
            chunks.iter().map(|c| (c.reference.path.clone(), c.bytes.clone())).collect();
        p.adopt_archive_chunks(chunks);
        let in_memory = p.clone();

        let detached = p.detach_archived();
        assert_eq!(p.micro_tasks[1].iterations.len(), 36);
        assert_eq!(p.micro_tasks[1].iterations[0].step_id, "MT-002_iter-065");
        p.recompute_aggregate_stats_saved();
        assert_eq!(p.aggregate_stats, full_stats);
        assert_eq!(p.validate_saved(), Ok(()));
        let saved = serde_json::to_value(&p).unwrap();
        p.restore_archived(detached);
        assert_eq!(p, in_memory);

        // Loading the saved form reads the chunks back.
        let mut loaded: ProgressArtifact = serde_json::from_value(saved).unwrap();
        loaded
            .attach_archived(|path| files.get(path).cloned().ok_or_else(|| format!("{path} missing")))
            .unwrap();
        assert_eq!(loaded, in_memory);
        assert_eq!(loaded.validate(), Ok(()));
        loaded.recompute_aggregate_stats();
        assert_eq!(loaded.aggregate_stats, full_stats);
    }

    #[test]
    fn an_archive_chunk_that_does_not_match_its_reference_is_refused() {
        let mut p = long_mt(64);
        let chunks: Vec<ArchiveChunk> = p.cut_archive_chunks().into_iter().filter(|c| c.entry == 1).collect();
        let good = chunks[0].bytes.clone();
        p.adopt_archive_chunks(chunks);
        let reference = p.micro_tasks[1].archived_iterations[0].clone();
        assert_eq!(reference.check(&good).unwrap().len(), ARCHIVE_CHUNK);

        let edited = String::from_utf8(good.clone()).unwrap().replacen(
            "\"tokens_prompt\":100",
            "\"tokens_prompt\":1",
            1,
        );
        assert!(reference.check(edited.as_bytes()).unwrap_err().contains("sha256"));

        let mut lying = reference.clone();
        lying.tokens_prompt += 1;
        assert!(lying.check(&good).unwrap_err().contains("totals"));

        let mut escaping = reference.clone();
        escaping.path = "progress_archive/../progress_artifact.json".into();
        assert!(escaping.check_path().is_err());
        escaping.path = "/etc/passwd".into();
        let mut saved = p.clone();
        saved.micro_tasks[1].archived_iterations[0] = escaping;
        let _ = saved.detach_archived();
        let err = saved.attach_archived(|_| panic!("a refused path is never read")).unwrap_err();
        assert!(err.contains("is not a file under progress_archive/"), "{err}");
    }

    #[test]
    fn the_change_record_counts_every_mutable_path_and_belongs_to_one_instance_and_taker() {
        let mut tasks: MicroTasks =
            (1..=4).map(|n| MTProgressEntry::pending(format!("MT-00{n}"), "t")).collect();
        let lineage = tasks.take_changes(7).lineage;
        assert_eq!(tasks.take_changes(7), EntryChanges { lineage, indexes: Some(vec![]) });
        let _ = &tasks[3];
        let _ = tasks.iter().count();
        assert_eq!(tasks.take_changes(7).indexes, Some(vec![]), "reads change nothing");
        tasks[2].name = "x".into();
        tasks.get_mut(0).unwrap().name = "y".into();
        tasks[2].status = MTStatus::Completed;
        tasks.push(MTProgressEntry::pending("MT-005", "new"));
        assert_eq!(tasks.take_changes(7).indexes, Some(vec![0, 2, 4]));
        for entry in &mut tasks {
            entry.name.clear();
        }
        assert_eq!(tasks.take_changes(7).indexes, None, "iter_mut counts every entry");
        tasks[1].name = "z".into();
        assert_eq!(tasks.take_changes(8).indexes, None, "another taker is told everything");
        assert_eq!(tasks.take_changes(7).indexes, None, "and so is the one before it");
        let mut copy = tasks.clone();
        let theirs = copy.take_changes(7);
        assert!(theirs.lineage != lineage && theirs.indexes.is_none(), "a clone is a new lineage");
        assert_eq!(copy, tasks);
        let json = serde_json::to_string(&tasks).unwrap();
        assert!(json.starts_with("[{"), "serialised as the plain array");
        let mut back: MicroTasks = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tasks);
        assert_eq!(back.take_changes(7).indexes, None);
        for _ in 0..1_000 {
            back[1].name.push('.');
        }
        assert_eq!(back.changes.touched.len(), 0, "a record nobody takes stays small");
        assert_eq!(back.take_changes(7).indexes, None, "and counts every entry");
    }
}
