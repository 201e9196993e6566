//! The Flight Recorder (MTX-SPEC 9): `events.jsonl`, append-only and hash-chained, one
//! envelope (9.1) per line.
//!
//! `emit` is write-ahead (9.6 item 1, 11.5 item 1): it redacts and validates the event,
//! appends it, fsyncs, and only then returns `Ok`; the caller applies the state change
//! afterwards and must not apply it on `Err`. Every recorded event is also sent to
//! `tracing` under the target `mtx::fr`, so `RUST_LOG=mtx::fr=info` shows the timeline.
//!
//! When the main log cannot be written, `emit` returns the typed error; the only event
//! that may then go to the fallback log `events.fallback.jsonl` is the hard gate
//! (FR-EVT-MT-006) that stops the job (11.5 item 1 \[D\]). The recorder never edits or
//! removes a recorded event, and never records raw prompts or responses: callers pass
//! hashes and artifact refs, and secret-named keys are redacted here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chain::ChainFile;
use crate::error::StoreError;
use crate::events::{self, Actor, EnvelopeView};

/// The correlation ids every event of one run attempt carries (9.1, 9.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    pub trace_id: String,
    pub job_id: String,
    pub workflow_run_id: String,
    pub wp_id: String,
}

/// One recorded event: the common envelope of MTX-SPEC 9.1 plus the chain members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub seq: u64,
    pub prev_hash: String,
    pub event_id: String,
    pub event_type: String,
    pub event_name: String,
    pub timestamp: String,
    pub actor: Actor,
    pub trace_id: String,
    pub job_id: String,
    pub workflow_run_id: String,
    pub wp_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_id: Option<String>,
    pub payload: Map<String, Value>,
    /// SHA-256 of the record without this member (see the chain format).
    #[serde(default)]
    pub hash: String,
}

impl EventEnvelope {
    /// A copy without the payload: what an index of the log keeps.
    pub fn header(&self) -> EventEnvelope {
        EventEnvelope {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            event_name: self.event_name.clone(),
            timestamp: self.timestamp.clone(),
            actor: self.actor,
            trace_id: self.trace_id.clone(),
            job_id: self.job_id.clone(),
            workflow_run_id: self.workflow_run_id.clone(),
            wp_id: self.wp_id.clone(),
            mt_id: self.mt_id.clone(),
            iteration: self.iteration,
            model_id: self.model_id.clone(),
            capability_id: self.capability_id.clone(),
            payload: Map::new(),
            hash: self.hash.clone(),
        }
    }
}

/// An event about to be emitted: built with `Event::new(..).mt(..).iteration(..)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_type: String,
    pub payload: Value,
    pub actor: Option<Actor>,
    pub mt_id: Option<String>,
    pub iteration: Option<u32>,
    pub model_id: Option<String>,
    pub capability_id: Option<String>,
}

impl Event {
    pub fn new(event_type: &str, payload: Value) -> Self {
        Event {
            event_type: event_type.to_owned(),
            payload,
            actor: None,
            mt_id: None,
            iteration: None,
            model_id: None,
            capability_id: None,
        }
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    pub fn mt(mut self, mt_id: &str) -> Self {
        self.mt_id = Some(mt_id.to_owned());
        self
    }

    pub fn iteration(mut self, iteration: u32) -> Self {
        self.iteration = Some(iteration);
        self
    }

    pub fn model(mut self, model_id: &str) -> Self {
        self.model_id = Some(model_id.to_owned());
        self
    }

    pub fn capability(mut self, capability_id: &str) -> Self {
        self.capability_id = Some(capability_id.to_owned());
        self
    }
}

impl Drop for FlightRecorder {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(path = %self.main_path.display(), error = %e, "flight recorder: final sync failed");
        }
    }
}

/// Name of the fallback log next to `events.jsonl`.
pub const FALLBACK_FILE: &str = "events.fallback.jsonl";

#[derive(Debug)]
struct Logs {
    main: ChainFile,
    fallback: Option<ChainFile>,
    /// Group commit: events are written at once and synced at [`FlightRecorder::sync`].
    group_commit: bool,
}

/// The Flight Recorder of one job.
#[derive(Debug)]
pub struct FlightRecorder {
    correlation: Correlation,
    logs: Mutex<Logs>,
    main_path: PathBuf,
    fallback_path: PathBuf,
}

impl FlightRecorder {
    /// Creates `path` (normally `jobs/<job_id>/events.jsonl`); fails if it exists.
    pub fn create(path: &Path, correlation: Correlation) -> Result<Self, StoreError> {
        let main = ChainFile::create(path, u64::MAX, "events")?;
        Ok(Self::with(main, path, correlation))
    }

    /// Opens an existing log for a new run attempt (a new `workflow_run_id`): verifies
    /// the chain, and when a crash left a torn final line, cuts it off and records
    /// FR-EVT-MTX-004 `log_tail_repaired`.
    pub fn open(path: &Path, correlation: Correlation) -> Result<Self, StoreError> {
        let (main, opened) = ChainFile::open(path, u64::MAX, "events")?;
        let torn = opened.torn;
        let recorder = Self::with(main, path, correlation);
        if let Some(t) = torn {
            let repair = crate::ledger::RepairRecord::from_torn("events.jsonl", &t);
            let payload = serde_json::to_value(&repair).expect("repair record serialises");
            recorder.emit(Event::new("FR-EVT-MTX-004", payload).actor(Actor::System))?;
        }
        Ok(recorder)
    }

    fn with(main: ChainFile, path: &Path, correlation: Correlation) -> Self {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        FlightRecorder {
            correlation,
            logs: Mutex::new(Logs { main, fallback: None, group_commit: false }),
            main_path: path.to_owned(),
            fallback_path: dir.join(FALLBACK_FILE),
        }
    }

    pub fn correlation(&self) -> &Correlation {
        &self.correlation
    }

    /// Next `seq` of the main log (one past the last recorded event).
    pub fn next_seq(&self) -> u64 {
        self.lock().main.next_seq()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Redacts, validates and durably records `event`; returns the stored envelope.
    pub fn emit(&self, event: Event) -> Result<EventEnvelope, StoreError> {
        self.emit_stored(event).map(|s| s.envelope)
    }

    /// `emit`, also returning the byte offset of the record (for the Job History index).
    pub fn emit_stored(&self, event: Event) -> Result<StoredEvent, StoreError> {
        // Stamp the event under the lock so timestamps never run backwards along `seq`.
        let mut logs = self.lock();
        let body = self.prepare(event)?;
        let appended =
            if logs.group_commit { logs.main.append_deferred(body)? } else { logs.main.append(body)? };
        drop(logs);
        let envelope = to_envelope(appended.record, &self.main_path)?;
        trace_event(&envelope, false);
        Ok(StoredEvent { offset: appended.offset, envelope })
    }

    pub fn path(&self) -> &Path {
        &self.main_path
    }

    /// Switches group commit on or off. Off (the default), every event is fsynced before
    /// `emit` returns. On, `emit` writes the event (readers see it at once, a killed
    /// process loses nothing) and [`FlightRecorder::sync`] makes everything written so far
    /// durable with one fdatasync: the caller syncs before each state change and side
    /// effect the events describe, which keeps the log written ahead of them.
    pub fn set_group_commit(&self, on: bool) -> Result<(), StoreError> {
        let mut logs = self.lock();
        if !on {
            logs.main.sync()?;
        }
        logs.group_commit = on;
        Ok(())
    }

    /// Sends every later event through the job's journal (`crate::journal`); a sync then
    /// makes the journal durable instead of `events.jsonl`.
    pub fn attach_journal(&self, journal: std::sync::Arc<crate::Journal>) -> Result<(), StoreError> {
        self.lock().main.attach_journal(journal)
    }

    /// Makes every event so far durable and writes without the journal from here on.
    pub fn detach_journal(&self) -> Result<(), StoreError> {
        self.lock().main.detach_journal()
    }

    /// Makes every event recorded so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.lock().main.sync()
    }

    /// Records a hard-gate event (FR-EVT-MT-006) in `events.fallback.jsonl` when the main
    /// log is unavailable (11.5 item 1 \[D\]). Any other event type is refused.
    pub fn emit_fallback(&self, event: Event) -> Result<EventEnvelope, StoreError> {
        if event.event_type != "FR-EVT-MT-006" {
            return Err(StoreError::invalid(
                "fallback event",
                format!(
                    "only the hard gate FR-EVT-MT-006 may use the fallback log, not {}",
                    event.event_type
                ),
            ));
        }
        let mut logs = self.lock();
        let body = self.prepare(event)?;
        if logs.fallback.is_none() {
            let file = if self.fallback_path.exists() {
                ChainFile::open(&self.fallback_path, u64::MAX, "events.fallback")?.0
            } else {
                ChainFile::create(&self.fallback_path, u64::MAX, "events.fallback")?
            };
            logs.fallback = Some(file);
        }
        let appended = logs.fallback.as_mut().expect("fallback opened above").append(body)?;
        drop(logs);
        let envelope = to_envelope(appended.record, &self.fallback_path)?;
        trace_event(&envelope, true);
        Ok(envelope)
    }

    /// Builds the envelope body (without chain members) and validates it.
    fn prepare(&self, event: Event) -> Result<Map<String, Value>, StoreError> {
        let spec = events::lookup(&event.event_type)?;
        let mut payload = match event.payload {
            Value::Object(map) => map,
            other => {
                return Err(StoreError::InvalidEvent {
                    event_type: spec.id.to_owned(),
                    message: format!("payload must be an object, found {other}"),
                });
            }
        };
        let mut as_value = Value::Object(std::mem::take(&mut payload));
        events::redact(&mut as_value);
        let Value::Object(payload) = as_value else { unreachable!("redaction keeps the object") };
        // The ids live in both places (9.1 [D]); take them from the payload when the
        // caller set them only there.
        let mt_id = event.mt_id.or_else(|| payload.get("mt_id").and_then(Value::as_str).map(str::to_owned));
        let iteration = event
            .iteration
            .or_else(|| payload.get("iteration").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()));
        let model_id =
            event.model_id.or_else(|| payload.get("model_id").and_then(Value::as_str).map(str::to_owned));
        let c = &self.correlation;
        let view = EnvelopeView {
            trace_id: &c.trace_id,
            wp_id: &c.wp_id,
            mt_id: mt_id.as_deref(),
            iteration,
            model_id: model_id.as_deref(),
        };
        events::validate(spec, &view, &payload)?;
        let mut body = Map::with_capacity(14);
        body.insert("event_id".into(), Value::from(uuid::Uuid::now_v7().to_string()));
        body.insert("event_type".into(), Value::from(spec.id));
        body.insert("event_name".into(), Value::from(spec.name));
        body.insert("timestamp".into(), Value::from(mtx_types::now_rfc3339()));
        body.insert(
            "actor".into(),
            serde_json::to_value(event.actor.unwrap_or(spec.default_actor)).expect("enum"),
        );
        body.insert("trace_id".into(), Value::from(c.trace_id.as_str()));
        body.insert("job_id".into(), Value::from(c.job_id.as_str()));
        body.insert("workflow_run_id".into(), Value::from(c.workflow_run_id.as_str()));
        body.insert("wp_id".into(), Value::from(c.wp_id.as_str()));
        if let Some(m) = mt_id {
            body.insert("mt_id".into(), Value::from(m));
        }
        if let Some(i) = iteration {
            body.insert("iteration".into(), Value::from(i));
        }
        if let Some(m) = model_id {
            body.insert("model_id".into(), Value::from(m));
        }
        if let Some(cap) = event.capability_id {
            body.insert("capability_id".into(), Value::from(cap));
        }
        body.insert("payload".into(), Value::Object(payload));
        Ok(body)
    }
}

/// The envelope of a record this process just sealed. Members are moved out, not parsed
/// again: the record was built from checked parts a moment ago, so a member missing or of
/// the wrong kind is an error of this crate, reported like a corrupt record.
fn to_envelope(record: Map<String, Value>, path: &Path) -> Result<EventEnvelope, StoreError> {
    let bad = |member: &str| StoreError::corrupt(path, format!("sealed event has no valid `{member}`"));
    let string = |value: Value, member: &str| match value {
        Value::String(s) => Ok(s),
        _ => Err(bad(member)),
    };
    let optional = |value: Value, member: &str| match value {
        Value::Null => Ok(None),
        other => string(other, member).map(Some),
    };
    let mut e = EventEnvelope {
        seq: 0,
        prev_hash: String::new(),
        event_id: String::new(),
        event_type: String::new(),
        event_name: String::new(),
        timestamp: String::new(),
        actor: Actor::System,
        trace_id: String::new(),
        job_id: String::new(),
        workflow_run_id: String::new(),
        wp_id: String::new(),
        mt_id: None,
        iteration: None,
        model_id: None,
        capability_id: None,
        payload: Map::new(),
        hash: String::new(),
    };
    let mut seen = 0u32;
    for (key, value) in record {
        match key.as_str() {
            "seq" => e.seq = value.as_u64().ok_or_else(|| bad("seq"))?,
            "prev_hash" => e.prev_hash = string(value, "prev_hash")?,
            "event_id" => e.event_id = string(value, "event_id")?,
            "event_type" => e.event_type = string(value, "event_type")?,
            "event_name" => e.event_name = string(value, "event_name")?,
            "timestamp" => e.timestamp = string(value, "timestamp")?,
            "actor" => e.actor = serde_json::from_value(value).map_err(|_| bad("actor"))?,
            "trace_id" => e.trace_id = string(value, "trace_id")?,
            "job_id" => e.job_id = string(value, "job_id")?,
            "workflow_run_id" => e.workflow_run_id = string(value, "workflow_run_id")?,
            "wp_id" => e.wp_id = string(value, "wp_id")?,
            "hash" => e.hash = string(value, "hash")?,
            "payload" => match value {
                Value::Object(map) => e.payload = map,
                _ => return Err(bad("payload")),
            },
            // Optional members, not counted.
            "mt_id" => {
                e.mt_id = optional(value, "mt_id")?;
                continue;
            }
            "model_id" => {
                e.model_id = optional(value, "model_id")?;
                continue;
            }
            "capability_id" => {
                e.capability_id = optional(value, "capability_id")?;
                continue;
            }
            "iteration" => {
                e.iteration = match value {
                    Value::Null => None,
                    other => Some(
                        other.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad("iteration"))?,
                    ),
                };
                continue;
            }
            _ => continue,
        }
        seen += 1;
    }
    // Every required member: seq, prev_hash, hash, the eight header strings, actor, payload.
    if seen != 13 {
        return Err(StoreError::corrupt(path, "sealed event lacks a required member"));
    }
    Ok(e)
}

fn trace_event(e: &EventEnvelope, fallback: bool) {
    tracing::info!(
        target: "mtx::fr",
        seq = e.seq,
        event_type = %e.event_type,
        job_id = %e.job_id,
        mt_id = e.mt_id.as_deref().unwrap_or(""),
        iteration = e.iteration.unwrap_or(0),
        fallback,
        "{}",
        e.event_name
    );
}

/// One event read back from a log, with its byte offset (for the Job History index).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub offset: u64,
    pub envelope: EventEnvelope,
}

/// Reads and verifies every event of a log file.
pub fn read_events(path: &Path) -> Result<Vec<StoredEvent>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let scan = crate::chain::scan(&bytes);
    if let Some(d) = scan.defect {
        return Err(StoreError::ChainBroken { path: path.to_owned(), line: d.line, message: d.message });
    }
    scan.lines
        .iter()
        .map(|l| {
            serde_json::from_slice(l.bytes(&bytes))
                .map(|envelope| StoredEvent { offset: l.offset, envelope })
                .map_err(|e| StoreError::ChainBroken {
                    path: path.to_owned(),
                    line: l.seq,
                    message: e.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn correlation() -> Correlation {
        Correlation {
            trace_id: uuid::Uuid::now_v7().to_string(),
            job_id: "job-1".into(),
            workflow_run_id: uuid::Uuid::now_v7().to_string(),
            wp_id: "WP-1-Test-v1".into(),
        }
    }

    pub(crate) fn started(mt: &str, n: u32) -> Event {
        Event::new("FR-EVT-MT-002", json!({"wp_id": "WP-1-Test-v1", "mt_id": mt, "iteration": n}))
            .mt(mt)
            .iteration(n)
    }

    #[test]
    fn emitted_events_carry_the_envelope_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let fr = FlightRecorder::create(&path, correlation()).unwrap();
        let a = fr.emit(started("MT-001", 1)).unwrap();
        let b = fr.emit(started("MT-001", 2)).unwrap();
        assert_eq!(a.event_type, "FR-EVT-MT-002");
        assert_eq!(a.event_name, "micro_task_iteration_started");
        assert_eq!(a.actor, Actor::Agent);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.iteration, Some(1));
        assert_eq!(uuid::Uuid::parse_str(&a.event_id).unwrap().get_version_num(), 7);
        let stored = read_events(&path).unwrap();
        // What emit returns is what a reader parses back, member for member.
        assert_eq!(stored.iter().map(|s| &s.envelope).collect::<Vec<_>>(), [&a, &b]);
        assert_eq!(stored[0].offset, 0);
    }

    #[test]
    fn concurrent_emitters_share_one_ordered_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let fr = std::sync::Arc::new(FlightRecorder::create(&path, correlation()).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let fr = fr.clone();
                std::thread::spawn(move || {
                    for n in 1..=5 {
                        fr.emit(started(&format!("MT-00{}", t + 1), n)).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 20);
        assert!(events.windows(2).all(|w| w[0].envelope.timestamp <= w[1].envelope.timestamp));
    }

    #[test]
    fn invalid_events_are_rejected_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let fr = FlightRecorder::create(&path, correlation()).unwrap();
        assert!(matches!(fr.emit(Event::new("FR-EVT-NOPE", json!({}))), Err(StoreError::UnknownEvent(_))));
        let bad = Event::new("FR-EVT-MT-002", json!({"wp_id": "WP-1-Test-v1", "mt_id": "MT-001"}));
        assert!(matches!(fr.emit(bad), Err(StoreError::InvalidEvent { .. })));
        let mismatch = started("MT-001", 1).mt("MT-002");
        assert!(matches!(fr.emit(mismatch), Err(StoreError::InvalidEvent { .. })));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn payload_ids_fill_the_envelope_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let fr = FlightRecorder::create(&dir.path().join("events.jsonl"), correlation()).unwrap();
        let c = fr.correlation().clone();
        let e = fr
            .emit(Event::new(
                "FR-EVT-LLM-INFERENCE",
                json!({"trace_id": c.trace_id, "model_id": "m", "mt_id": "MT-001",
                   "token_usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                   "api_token": "s3cret"}),
            ))
            .unwrap();
        assert_eq!(e.model_id.as_deref(), Some("m"));
        assert_eq!(e.mt_id.as_deref(), Some("MT-001"));
        assert_eq!(e.payload["api_token"], events::REDACTED);
        assert_eq!(read_events(&dir.path().join("events.jsonl")).unwrap()[0].envelope, e);
        let raw = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert!(!raw.contains("s3cret"));
    }

    #[test]
    fn the_fallback_log_takes_only_the_hard_gate() {
        let dir = tempfile::tempdir().unwrap();
        let fr = FlightRecorder::create(&dir.path().join("events.jsonl"), correlation()).unwrap();
        assert!(fr.emit_fallback(started("MT-001", 1)).is_err());
        let gate =
            Event::new("FR-EVT-MT-006", json!({"wp_id": "WP-1-Test-v1", "reason": "resource_exhausted"}));
        let e = fr.emit_fallback(gate).unwrap();
        assert_eq!(e.seq, 1);
        assert_eq!(read_events(&dir.path().join(FALLBACK_FILE)).unwrap().len(), 1);
        assert_eq!(read_events(&dir.path().join("events.jsonl")).unwrap().len(), 0);
    }

    #[test]
    fn reopening_cuts_a_torn_event_and_records_the_repair() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let fr = FlightRecorder::create(&path, correlation()).unwrap();
        fr.emit(started("MT-001", 1)).unwrap();
        drop(fr);
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"seq\":2").unwrap();
        let fr = FlightRecorder::open(&path, correlation()).unwrap();
        assert_eq!(fr.next_seq(), 3);
        let events = read_events(&path).unwrap();
        assert_eq!(events[1].envelope.event_type, "FR-EVT-MTX-004");
        assert_eq!(events[1].envelope.payload["discarded_bytes"], 8);
    }
}
