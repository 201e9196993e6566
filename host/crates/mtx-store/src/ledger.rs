//! The run ledger file (MTX-SPEC 3.8, 8.3): `run_ledger.jsonl`, append-only and
//! hash-chained.
//!
//! The first record is the header (`ledger_id`, `wp_id`, `job_id`, `created_at`); then
//! every step state change is a full LedgerStep snapshot, and resume records set
//! `resume_point` / `resume_reason`. The loop adds its own record kinds (gate decisions,
//! consent, plugin calls, and any `Custom` kind) so that a replay finds every recorded
//! decision in one ordered, verifiable place. `fold` gives the RunLedger object of 3.8
//! (last snapshot per `step_id` wins; steps keep the order of their first record).
//!
//! `append` returns only after the record is on disk (fsync): the caller performs the
//! guarded side effect (the model call, 8.3 item 3) afterwards. A torn final line left
//! by a crash is cut off by `open` and the repair is appended as a `repair` record.
//! This module never rewrites or removes a record.

use std::collections::HashMap;
use std::path::Path;

use mtx_types::ArtifactHandle;
use mtx_types::ledger::{LedgerStep, LedgerStepStatus, RunLedger as RunLedgerDoc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chain::{ChainFile, TornTail};
use crate::error::StoreError;

/// Maximum size of a run ledger file (MTX-SPEC 11.4).
pub const LEDGER_CAP_BYTES: u64 = 50 * 1024 * 1024;

/// Share of a storage cap at which the loop emits `resource_warning` (11.4 \[D\]).
pub const CAP_WARNING_RATIO: f64 = 0.8;

/// The first record of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHeader {
    pub ledger_id: String,
    pub wp_id: String,
    pub job_id: String,
    pub created_at: String,
}

/// Sets the ledger's resume point (8.5 step 2.5, 8.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub resume_point: Option<String>,
    pub resume_reason: String,
}

/// A gate decision the loop acted on (3.18): the resume reads it, the ledger proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecisionRecord {
    pub decision_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    pub gate_reason: String,
    /// `continue` | `abort` | `skip`
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_ref: Option<ArtifactHandle>,
}

/// A cloud-escalation consent the loop acted on (5.14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub request_id: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_receipt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_ref: Option<ArtifactHandle>,
}

/// One call of a policy plugin, recorded so `mtx replay` can re-run and compare it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginCallRecord {
    pub plugin: String,
    /// SHA-256 of the component bytes that ran.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    /// SHA-256 of the canonical JSON of the input.
    pub input_hash: String,
    /// The decoded output, or the failure.
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

/// The record `open` appends after cutting off a torn final line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    pub file: String,
    pub truncated_at_offset: u64,
    pub discarded_bytes: u64,
    pub discarded_sha256: String,
    pub reason: String,
    pub repaired_at: String,
}

impl RepairRecord {
    pub(crate) fn from_torn(file: &str, torn: &TornTail) -> Self {
        RepairRecord {
            file: file.to_owned(),
            truncated_at_offset: torn.offset,
            discarded_bytes: torn.discarded_bytes,
            discarded_sha256: torn.discarded_sha256.clone(),
            reason: torn.reason.clone(),
            repaired_at: mtx_types::now_rfc3339(),
        }
    }
}

/// One ledger record; the `kind` member names the variant on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerRecord {
    Header(LedgerHeader),
    Step(LedgerStep),
    Resume(ResumeRecord),
    GateDecision(GateDecisionRecord),
    Consent(ConsentRecord),
    PluginCall(PluginCallRecord),
    Repair(RepairRecord),
    /// Any other kind the loop needs; `fields` are stored next to `kind` as they are.
    #[serde(skip)]
    Custom {
        kind: String,
        fields: Map<String, Value>,
    },
}

const KNOWN_KINDS: &[&str] =
    &["header", "step", "resume", "gate_decision", "consent", "plugin_call", "repair"];

impl LedgerRecord {
    /// The on-disk `kind`.
    pub fn kind(&self) -> &str {
        match self {
            LedgerRecord::Header(_) => "header",
            LedgerRecord::Step(_) => "step",
            LedgerRecord::Resume(_) => "resume",
            LedgerRecord::GateDecision(_) => "gate_decision",
            LedgerRecord::Consent(_) => "consent",
            LedgerRecord::PluginCall(_) => "plugin_call",
            LedgerRecord::Repair(_) => "repair",
            LedgerRecord::Custom { kind, .. } => kind,
        }
    }

    fn to_map(&self) -> Result<Map<String, Value>, StoreError> {
        match self {
            LedgerRecord::Custom { kind, fields } => {
                if KNOWN_KINDS.contains(&kind.as_str()) {
                    return Err(StoreError::invalid(
                        "ledger record",
                        format!("custom kind {kind:?} collides with a built-in kind"),
                    ));
                }
                let mut map = Map::new();
                map.insert("kind".into(), Value::from(kind.as_str()));
                map.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(map)
            }
            other => match serde_json::to_value(other) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => unreachable!("an internally tagged enum serialises to an object"),
                Err(e) => Err(StoreError::invalid("ledger record", e.to_string())),
            },
        }
    }

    /// Reads a record from its on-disk line. Built-in kinds parse straight into their
    /// type (the chain members are ignored); other kinds become `Custom`.
    pub fn from_slice(line: &[u8]) -> Result<Self, String> {
        // Fast path for the common record: `seal` writes `kind` right after the chain
        // members, and LedgerStep ignores the members it does not know, so a step parses
        // without serde's buffering of internally tagged enums.
        if is_step_line(line) {
            return serde_json::from_slice::<LedgerStep>(line)
                .map(LedgerRecord::Step)
                .map_err(|e| format!("step record: {e}"));
        }
        match serde_json::from_slice::<LedgerRecord>(line) {
            Ok(record) => Ok(record),
            Err(typed) => match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(map)) => {
                    let known =
                        map.get("kind").and_then(Value::as_str).is_some_and(|k| KNOWN_KINDS.contains(&k));
                    if known { Err(typed.to_string()) } else { Self::from_map(map) }
                }
                Ok(_) => Err("record is not a JSON object".into()),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Reads a record from its on-disk object (chain members already removed).
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self, String> {
        for chain_member in ["seq", "prev_hash", "hash"] {
            map.remove(chain_member);
        }
        let kind = map.get("kind").and_then(Value::as_str).ok_or("record has no kind")?.to_owned();
        if KNOWN_KINDS.contains(&kind.as_str()) {
            serde_json::from_value(Value::Object(map)).map_err(|e| format!("{kind} record: {e}"))
        } else {
            map.remove("kind");
            Ok(LedgerRecord::Custom { kind, fields: map })
        }
    }
}

fn is_step_line(line: &[u8]) -> bool {
    const PREV: &[u8] = b",\"prev_hash\":\"";
    const KIND: &[u8] = b"\",\"kind\":\"step\",";
    line.windows(PREV.len())
        .take(32)
        .position(|w| w == PREV)
        .is_some_and(|at| line.get(at + PREV.len() + 64..).is_some_and(|rest| rest.starts_with(KIND)))
}

/// A record with its position in the chain, as `records` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub seq: u64,
    pub record: LedgerRecord,
}

/// Refuses a second header and a malformed step snapshot.
fn check_appendable(record: &LedgerRecord) -> Result<(), StoreError> {
    match record {
        LedgerRecord::Header(_) => {
            Err(StoreError::invalid("ledger record", "a ledger has exactly one header, written by create"))
        }
        LedgerRecord::Step(step) => check_step(step),
        _ => Ok(()),
    }
}

/// An open run ledger file.
#[derive(Debug)]
pub struct RunLedger {
    chain: ChainFile,
    header: LedgerHeader,
    /// Folded state, kept current on every append so `fold` never re-reads the file.
    steps: Vec<LedgerStep>,
    step_index: HashMap<String, usize>,
    resume_point: Option<String>,
    resume_reason: Option<String>,
    repaired: Option<RepairRecord>,
}

impl RunLedger {
    /// Creates `path` with its header record; fails if the file exists.
    pub fn create(path: &Path, header: LedgerHeader) -> Result<Self, StoreError> {
        let mut chain = ChainFile::create(path, LEDGER_CAP_BYTES, "ledger")?;
        chain.append(LedgerRecord::Header(header.clone()).to_map()?)?;
        Ok(Self::empty(chain, header))
    }

    fn empty(chain: ChainFile, header: LedgerHeader) -> Self {
        RunLedger {
            chain,
            header,
            steps: Vec::new(),
            step_index: HashMap::new(),
            resume_point: None,
            resume_reason: None,
            repaired: None,
        }
    }

    /// Opens an existing ledger: verifies the chain, cuts off and records a torn final
    /// line, and folds the records.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let (chain, opened) = ChainFile::open(path, LEDGER_CAP_BYTES, "ledger")?;
        let torn = opened.torn.clone();
        let mut records = opened.lines.iter().map(|l| {
            LedgerRecord::from_slice(l.bytes(&opened.bytes)).map_err(|message| StoreError::ChainBroken {
                path: path.to_owned(),
                line: l.seq,
                message,
            })
        });
        let header = match records.next() {
            Some(Ok(LedgerRecord::Header(h))) => h,
            Some(Ok(other)) => {
                return Err(StoreError::corrupt(
                    path,
                    format!("first record is {:?}, not the header", other.kind()),
                ));
            }
            Some(Err(e)) => return Err(e),
            None => return Err(StoreError::corrupt(path, "ledger has no header record")),
        };
        let mut ledger = Self::empty(chain, header);
        for record in records {
            ledger.apply(record?);
        }
        if let Some(torn) = torn {
            let repair = RepairRecord::from_torn("run_ledger.jsonl", &torn);
            tracing::warn!(target: "mtx::store", path = %path.display(), offset = torn.offset,
                bytes = torn.discarded_bytes, "cut off a torn final ledger line");
            ledger.append(&LedgerRecord::Repair(repair.clone()))?;
            ledger.repaired = Some(repair);
        }
        Ok(ledger)
    }

    fn apply(&mut self, record: LedgerRecord) {
        match record {
            LedgerRecord::Step(step) => match self.step_index.get(&step.step_id) {
                Some(&i) => self.steps[i] = step,
                None => {
                    self.step_index.insert(step.step_id.clone(), self.steps.len());
                    self.steps.push(step);
                }
            },
            LedgerRecord::Resume(r) => {
                self.resume_point = r.resume_point;
                self.resume_reason = Some(r.resume_reason);
            }
            _ => {}
        }
    }

    /// Appends `record` and returns its `seq` once it is durable.
    pub fn append(&mut self, record: &LedgerRecord) -> Result<u64, StoreError> {
        check_appendable(record)?;
        let appended = self.chain.append(record.to_map()?)?;
        self.apply(record.clone());
        Ok(appended.seq)
    }

    /// Appends `record` without waiting for it to be durable: readers see it at once, and
    /// the next [`RunLedger::sync`] or synced append makes it durable. For audit records
    /// (plugin calls) and step snapshots whose durability a later barrier provides; a
    /// step `in_progress` must be synced before its model call (8.3 item 3).
    pub fn append_deferred(&mut self, record: &LedgerRecord) -> Result<u64, StoreError> {
        check_appendable(record)?;
        let appended = self.chain.append_deferred(record.to_map()?)?;
        self.apply(record.clone());
        Ok(appended.seq)
    }

    /// Sends every later record through the job's journal (`crate::journal`).
    pub fn attach_journal(&mut self, journal: std::sync::Arc<crate::Journal>) -> Result<(), StoreError> {
        self.chain.attach_journal(journal)
    }

    /// Makes every record so far durable and writes without the journal from here on.
    pub fn detach_journal(&mut self) -> Result<(), StoreError> {
        self.chain.detach_journal()
    }

    /// Makes every record appended so far durable (one fdatasync, none when nothing is
    /// pending).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.chain.sync()
    }

    /// Appends several records with one fsync (recovery writes its records this way).
    pub fn append_all(&mut self, records: &[LedgerRecord]) -> Result<u64, StoreError> {
        let mut bodies = Vec::with_capacity(records.len());
        for record in records {
            check_appendable(record)?;
            bodies.push(record.to_map()?);
        }
        let appended = self.chain.append_all(bodies)?;
        records.iter().for_each(|r| self.apply(r.clone()));
        Ok(appended.last().map_or(self.chain.next_seq() - 1, |a| a.seq))
    }

    /// Appends a step snapshot; shorthand for `append(&LedgerRecord::Step(..))`.
    pub fn append_step(&mut self, step: &LedgerStep) -> Result<u64, StoreError> {
        self.append(&LedgerRecord::Step(step.clone()))
    }

    /// The RunLedger object of MTX-SPEC 3.8.1.
    pub fn fold(&self) -> RunLedgerDoc {
        RunLedgerDoc {
            ledger_id: self.header.ledger_id.clone(),
            wp_id: self.header.wp_id.clone(),
            job_id: self.header.job_id.clone(),
            created_at: self.header.created_at.clone(),
            steps: self.steps.clone(),
            resume_point: self.resume_point.clone(),
            resume_reason: self.resume_reason.clone(),
        }
    }

    /// The latest snapshot of every step, in the order of their first record.
    pub fn steps(&self) -> &[LedgerStep] {
        &self.steps
    }

    /// The latest snapshot of one step.
    pub fn step(&self, step_id: &str) -> Option<&LedgerStep> {
        self.step_index.get(step_id).map(|&i| &self.steps[i])
    }

    pub fn header(&self) -> &LedgerHeader {
        &self.header
    }

    /// The repair `open` performed, if it cut off a torn line.
    pub fn repaired(&self) -> Option<&RepairRecord> {
        self.repaired.as_ref()
    }

    /// Current file size, for the 80 % `resource_warning` of 11.4.
    pub fn size_bytes(&self) -> u64 {
        self.chain.len()
    }

    /// Whether the file has reached 80 % of its 50 MB cap (emit FR-EVT-MTX-001 `storage_near_cap`).
    pub fn near_cap(&self) -> bool {
        self.chain.len() as f64 >= LEDGER_CAP_BYTES as f64 * CAP_WARNING_RATIO
    }

    pub fn path(&self) -> &Path {
        self.chain.path()
    }

    /// Every record in order, re-read from the file (for `mtx ledger` and replay).
    pub fn records(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        read_records(self.chain.path())
    }
}

/// Reads and verifies every record of a ledger file without opening it for writing.
pub fn read_records(path: &Path) -> Result<Vec<LedgerEntry>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let scan = crate::chain::scan(&bytes);
    if let Some(d) = scan.defect {
        return Err(StoreError::ChainBroken { path: path.to_owned(), line: d.line, message: d.message });
    }
    scan.lines
        .iter()
        .map(|l| {
            LedgerRecord::from_slice(l.bytes(&bytes))
                .map(|record| LedgerEntry { seq: l.seq, record })
                .map_err(|message| StoreError::ChainBroken { path: path.to_owned(), line: l.seq, message })
        })
        .collect()
}

fn check_step(step: &LedgerStep) -> Result<(), StoreError> {
    let well_formed = step.step_id.split_once("_iter-").is_some_and(|(mt, n)| {
        mtx_types::progress::is_valid_mt_id(mt) && n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit())
    });
    if !well_formed {
        return Err(StoreError::invalid(
            "ledger step",
            format!("step_id {:?} is not {{mt_id}}_iter-{{NNN}}", step.step_id),
        ));
    }
    let key = &step.idempotency_key;
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StoreError::invalid(
            "ledger step",
            format!("idempotency_key of {} is not 64 lowercase hex characters", step.step_id),
        ));
    }
    if step.status == LedgerStepStatus::Completed && step.output_artifact_ref.is_none() {
        return Err(StoreError::invalid(
            "ledger step",
            format!("completed step {} has no output_artifact_ref", step.step_id),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mtx_types::ledger::{idempotency_key, step_id};

    pub(crate) fn header() -> LedgerHeader {
        LedgerHeader {
            ledger_id: uuid::Uuid::now_v7().to_string(),
            wp_id: "WP-1-Test-v1".into(),
            job_id: "job-1".into(),
            created_at: mtx_types::now_rfc3339(),
        }
    }

    pub(crate) fn step(mt: &str, n: u32, status: LedgerStepStatus) -> LedgerStep {
        LedgerStep {
            step_id: step_id(mt, n),
            idempotency_key: idempotency_key(mt, n, "m", None, &mtx_types::sha256_hex(b"p")),
            status,
            started_at: Some(mtx_types::now_rfc3339()),
            completed_at: None,
            output_artifact_ref: (status == LedgerStepStatus::Completed).then(|| ArtifactHandle {
                artifact_id: "a".into(),
                path: format!(
                    "step_outputs/{}/output.json",
                    idempotency_key(mt, n, "m", None, &mtx_types::sha256_hex(b"p"))
                ),
                sha256: "0".repeat(64),
                size_bytes: None,
                media_type: None,
            }),
            error: None,
            recoverable: true,
            escalation_level: 0,
        }
    }

    #[test]
    fn fold_keeps_the_last_snapshot_per_step_in_first_seen_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_ledger.jsonl");
        let mut l = RunLedger::create(&path, header()).unwrap();
        l.append_step(&step("MT-001", 1, LedgerStepStatus::InProgress)).unwrap();
        l.append_step(&step("MT-002", 1, LedgerStepStatus::InProgress)).unwrap();
        l.append_step(&step("MT-001", 1, LedgerStepStatus::Completed)).unwrap();
        l.append(&LedgerRecord::Resume(ResumeRecord {
            resume_point: Some("MT-002_iter-001".into()),
            resume_reason: "pause_point:MT-002".into(),
        }))
        .unwrap();
        let in_memory = l.fold();
        drop(l);
        let folded = RunLedger::open(&path).unwrap().fold();
        assert_eq!(folded, in_memory);
        assert_eq!(folded.steps.len(), 2);
        assert_eq!(folded.steps[0].step_id, "MT-001_iter-001");
        assert_eq!(folded.steps[0].status, LedgerStepStatus::Completed);
        assert_eq!(folded.steps[1].status, LedgerStepStatus::InProgress);
        assert_eq!(folded.resume_point.as_deref(), Some("MT-002_iter-001"));
        assert_eq!(folded.resume_reason.as_deref(), Some("pause_point:MT-002"));
    }

    #[test]
    fn custom_and_plugin_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_ledger.jsonl");
        let mut l = RunLedger::create(&path, header()).unwrap();
        let call = LedgerRecord::PluginCall(PluginCallRecord {
            plugin: "lora-selector".into(),
            digest: "a".repeat(64),
            world: Some("lora-selector".into()),
            input_hash: "b".repeat(64),
            output: serde_json::json!({"lora_id": null}),
            mt_id: Some("MT-001".into()),
            step_id: None,
        });
        let custom = LedgerRecord::Custom {
            kind: "model_swap".into(),
            fields: serde_json::json!({"request_id": "r1"}).as_object().unwrap().clone(),
        };
        l.append(&call).unwrap();
        l.append(&custom).unwrap();
        let records = l.records().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].record, call);
        assert_eq!(records[2].record, custom);
        assert_eq!(records[2].seq, 3);
    }

    #[test]
    fn malformed_steps_and_second_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_ledger.jsonl");
        let mut l = RunLedger::create(&path, header()).unwrap();
        let mut bad = step("MT-001", 1, LedgerStepStatus::InProgress);
        bad.step_id = "MT-001_iter-1".into();
        assert!(matches!(l.append_step(&bad), Err(StoreError::Invalid { .. })));
        let mut done = step("MT-001", 1, LedgerStepStatus::Completed);
        done.output_artifact_ref = None;
        assert!(matches!(l.append_step(&done), Err(StoreError::Invalid { .. })));
        assert!(matches!(l.append(&LedgerRecord::Header(header())), Err(StoreError::Invalid { .. })));
        assert_eq!(l.records().unwrap().len(), 1, "nothing was written");
        assert!(matches!(RunLedger::create(&path, header()), Err(StoreError::AlreadyExists { .. })));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_repair_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_ledger.jsonl");
        let mut l = RunLedger::create(&path, header()).unwrap();
        l.append_step(&step("MT-001", 1, LedgerStepStatus::InProgress)).unwrap();
        drop(l);
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"seq\":3,\"pr").unwrap();
        let l = RunLedger::open(&path).unwrap();
        let repair = l.repaired().expect("repair reported");
        assert_eq!(repair.discarded_bytes, 12);
        let records = l.records().unwrap();
        assert_eq!(records.len(), 3);
        assert!(matches!(&records[2].record, LedgerRecord::Repair(r) if r.discarded_bytes == 12));
        assert_eq!(l.fold().steps.len(), 1, "the step before the tear is kept");
    }
}
