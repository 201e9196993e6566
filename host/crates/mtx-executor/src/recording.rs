//! The one writer of a job's logs: the Flight Recorder, the run ledger and the Job History
//! index, shared by the loop, the plugin host (plugin calls, grant uses) and the Tool Bus
//! (gate outcomes, capability checks, tool calls).
//!
//! Every event goes through [`JobLog::emit`]: recorded first (in the job's journal, which
//! writes `events.jsonl` once the record is durable), then queued for the live
//! [`crate::RunObserver`], and indexed in the Job History once durable. Recording must never
//! be skipped silently: an emit failure is returned to the loop, except inside the plugin
//! and Tool Bus callbacks, which cannot fail a call and log the problem instead.

use std::sync::{Arc, Mutex, MutexGuard};

use mtx_plugin::{GrantUse, PluginCall, PluginLog, PluginRecorder, World};
use mtx_store::ledger::PluginCallRecord;
use mtx_store::recorder::StoredEvent;
use mtx_store::{Event, EventEnvelope, FlightRecorder, JobHistory, LedgerRecord, RunLedger, StoreError};
use mtx_store::{InputPack, Journal};
use mtx_toolbus::observer::{capability_action_payload, gate_outcome_payload};
use mtx_toolbus::{GateOutcome, PlannedOperation, ToolBusObserver, ToolCallRecord};
use serde_json::{Value, json};

/// Which step a plugin call or tool call belongs to, for the records.
#[derive(Debug, Clone, Default)]
pub struct StepScope {
    pub mt_id: Option<String>,
    pub step_id: Option<String>,
    pub iteration: Option<u32>,
}

pub struct JobLog {
    pub job_id: String,
    recorder: FlightRecorder,
    ledger: Mutex<RunLedger>,
    history: Option<Mutex<JobHistory>>,
    unseen: Mutex<Vec<EventEnvelope>>,
    scope: Mutex<StepScope>,
    /// State changes a crashed process recorded after its last progress save (see
    /// [`JobLog::arm_replay`]), keyed by [`replay_key`].
    replay: Mutex<Vec<(String, EventEnvelope)>>,
    /// Durable events not yet handed to the Job History index (see [`JobLog::sync`]).
    unindexed: Mutex<Vec<StoredEvent>>,
    /// The thread that writes index batches; `None` indexes on the caller's thread.
    indexer: Mutex<Option<Indexer>>,
    /// Large plugin-call inputs, kept out of the ledger (`plugin_inputs.jsonl`).
    inputs: Mutex<InputPack>,
    /// The job's journal, which the recorder, the ledger and the input pack append through:
    /// a barrier is then one fdatasync of it (`mtx_store::journal`).
    journal: Option<Arc<Journal>>,
}

/// Durable events the Job History index takes in one transaction. One SQLite commit per
/// barrier, on the loop's thread, cost about a tenth of an iteration's host time.
const INDEX_BATCH: usize = 128;

/// Events a failing index holds for a retry before it gives them up to `mtx jobs --reindex`.
const INDEX_CARRY_MAX: usize = 64 * INDEX_BATCH;

/// Plugin-call inputs longer than this go to the input pack, not inline in the ledger.
const INLINE_INPUT_MAX: usize = 1024;

/// Whether an event records a state change of the job (an MT started, decided, escalated,
/// completed; a model answered; a cloud step), as opposed to a call or a runtime fact
/// (plugin and Tool Bus calls, gate outcomes, context compilation) that a re-run step
/// legitimately records again. The resumption records (FR-EVT-MT-008, FR-EVT-WF-RECOVERY)
/// describe each resume and are never replayed.
pub fn is_state_change(event_type: &str) -> bool {
    (event_type.starts_with("FR-EVT-MT-") && event_type != "FR-EVT-MT-008")
        || event_type == "FR-EVT-LLM-INFERENCE"
        || event_type.starts_with("FR-EVT-CLOUD-")
}

/// What identifies one state change across two executions of the same step: the type, the
/// MT, the iteration and model, and the step and levels the payload names. Times, ids and
/// durations are left out: they differ between the two executions by construction.
fn replay_key(
    event_type: &str,
    mt_id: Option<&str>,
    iteration: Option<u32>,
    model_id: Option<&str>,
    payload: &Value,
) -> Option<String> {
    if !is_state_change(event_type) {
        return None;
    }
    let field = |k: &str| payload.get(k).map(Value::to_string).unwrap_or_default();
    Some(format!(
        "{event_type}|{}|{}|{}|{}|{}|{}|{}",
        mt_id.unwrap_or(""),
        iteration.map(|i| i.to_string()).unwrap_or_default(),
        model_id.unwrap_or(""),
        field("step_id"),
        field("from_level"),
        field("to_level"),
        field("escalation_level"),
    ))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobLog {
    /// The log writer of a job; with `journal`, every append goes through it.
    pub fn new(
        job_id: &str,
        recorder: FlightRecorder,
        mut ledger: RunLedger,
        history: Option<JobHistory>,
        mut inputs: InputPack,
        journal: Option<Arc<Journal>>,
    ) -> Result<Self, StoreError> {
        if let Err(e) = recorder.set_group_commit(true) {
            tracing::warn!(job_id, error = %e, "flight recorder: group commit not enabled");
        }
        if let Some(journal) = &journal {
            recorder.attach_journal(Arc::clone(journal))?;
            ledger.attach_journal(Arc::clone(journal))?;
            inputs.attach_journal(Arc::clone(journal))?;
        }
        // A process killed between index batches left events out of the index.
        if let Some(h) = &history
            && let Err(e) = h.catch_up(job_id, recorder.path())
        {
            tracing::warn!(job_id, error = %e, "job history: catching up with the log failed");
        }
        let indexer = history.as_ref().and_then(|h| Indexer::start(job_id, h));
        Ok(JobLog {
            job_id: job_id.to_owned(),
            recorder,
            ledger: Mutex::new(ledger),
            history: history.map(Mutex::new),
            unseen: Mutex::new(Vec::new()),
            scope: Mutex::new(StepScope::default()),
            replay: Mutex::new(Vec::new()),
            unindexed: Mutex::new(Vec::new()),
            indexer: Mutex::new(indexer),
            inputs: Mutex::new(inputs),
            journal,
        })
    }

    /// Arms crash replay (MTX-SPEC 8.5): `recorded` are the events a crashed process wrote
    /// after its last progress save. The resumed loop re-executes from that save, and each
    /// state change it emits that one of these already records is not written again; the
    /// recorded envelope stands. So a step interrupted between its write-ahead events and
    /// the progress save that commits it is neither lost nor recorded twice.
    pub fn arm_replay(&self, recorded: Vec<EventEnvelope>) {
        let tail: Vec<(String, EventEnvelope)> = recorded
            .into_iter()
            .filter_map(|e| {
                let payload = Value::Object(e.payload.clone());
                let key = replay_key(
                    &e.event_type,
                    e.mt_id.as_deref(),
                    e.iteration,
                    e.model_id.as_deref(),
                    &payload,
                )?;
                Some((key, e))
            })
            .collect();
        *lock(&self.replay) = tail;
    }

    /// The recorded envelope of `event` when crash replay already holds it.
    fn replayed(&self, event: &Event) -> Option<EventEnvelope> {
        let mut tail = lock(&self.replay);
        if tail.is_empty() {
            return None;
        }
        let key = replay_key(
            &event.event_type,
            event.mt_id.as_deref(),
            event.iteration,
            event.model_id.as_deref(),
            &event.payload,
        )?;
        let at = tail.iter().position(|(k, _)| *k == key)?;
        Some(tail.remove(at).1)
    }

    /// Makes every event and every deferred ledger record written so far durable. The
    /// loop calls it before each progress save and each side effect (model call,
    /// workspace write, validation), which keeps the Flight Recorder and the ledger
    /// written ahead of them with one fdatasync per file and barrier instead of one per
    /// record (the job's recorder runs in group commit; plugin-call records and step
    /// completions are deferred ledger appends).
    ///
    /// The Job History index takes the events after they are durable, [`INDEX_BATCH`] at a
    /// time on a thread of its own, and the rest when the job's log closes. It is derived
    /// (rebuildable from `events.jsonl`, which `mtx events` and the console read), so while
    /// a job runs it may lag the log by a batch or two.
    ///
    /// With a journal, the three syncs are one fdatasync of the journal, and a journal
    /// grown past its limit is checkpointed here, between two operations.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.sync_logs()?;
        self.ledger().sync()?;
        if let Some(journal) = &self.journal {
            // Also when no log has an append waiting: groups staged or committed behind.
            journal.sync()?;
            journal.checkpoint_if_large()?;
        }
        Ok(())
    }

    /// [`JobLog::sync`] but for the ledger, for a barrier followed at once by a synced
    /// ledger append (a step `in_progress`): that append's fdatasync makes the deferred
    /// ledger records before it durable too, so syncing them first would cost a second one.
    /// With a journal it makes every earlier frame durable, so there is nothing to do here.
    pub fn sync_events(&self) -> Result<(), StoreError> {
        if self.journal.is_none() {
            self.sync_logs()?;
        }
        Ok(())
    }

    /// [`JobLog::sync`], but with a journal the files and appends its frames hold are
    /// written on the journal's thread ([`Journal::sync_apply_behind`]): for the barrier
    /// before a model call and the one of a progress save, which are followed by work that
    /// reads no journaled file (the call; the save and the loop's next steps). Everything
    /// is durable when it returns. Every read of a journaled file settles the journal
    /// first: the artifact store, the job directory's reads (`JobDir::settled`), and the
    /// journal's own syncs.
    pub fn sync_apply_behind(&self) -> Result<(), StoreError> {
        let Some(journal) = &self.journal else { return self.sync() };
        journal.sync_apply_behind()?;
        self.index_if_due();
        journal.checkpoint_if_large()
    }

    fn sync_logs(&self) -> Result<(), StoreError> {
        self.recorder.sync()?;
        // The inputs before the ledger records that name them.
        lock(&self.inputs).sync()?;
        self.index_if_due();
        Ok(())
    }

    fn index_if_due(&self) {
        if lock(&self.unindexed).len() >= INDEX_BATCH {
            self.flush_index();
        }
    }

    fn flush_index(&self) {
        let pending = std::mem::take(&mut *lock(&self.unindexed));
        if pending.is_empty() {
            return;
        }
        let pending = match lock(&self.indexer).as_ref() {
            Some(indexer) => match indexer.send(pending) {
                Ok(()) => return,
                // The thread is gone; index here.
                Err(batch) => batch,
            },
            None => pending,
        };
        if let Some(h) = self.history()
            && let Err(e) = h.index_events(&self.job_id, &pending)
        {
            // The index is rebuildable from events.jsonl (`reindex`); a failed insert
            // must not stop the job whose durable log already holds the events.
            tracing::warn!(job_id = %self.job_id, error = %e, "job history index failed");
        }
    }

    pub fn recorder(&self) -> &FlightRecorder {
        &self.recorder
    }

    pub fn ledger(&self) -> MutexGuard<'_, RunLedger> {
        lock(&self.ledger)
    }

    pub fn history(&self) -> Option<MutexGuard<'_, JobHistory>> {
        self.history.as_ref().map(lock)
    }

    pub fn set_scope(&self, scope: StepScope) {
        *lock(&self.scope) = scope;
    }

    fn scope(&self) -> StepScope {
        lock(&self.scope).clone()
    }

    /// Durably records `event`, indexes it, and queues it for the live view. During crash
    /// replay, a state change the crashed process already recorded is returned as recorded.
    pub fn emit(&self, event: Event) -> Result<EventEnvelope, StoreError> {
        if let Some(recorded) = self.replayed(&event) {
            return Ok(recorded);
        }
        let StoredEvent { offset, envelope } = self.recorder.emit_stored(event)?;
        if self.history.is_some() {
            // The index keeps the envelope's header and offset, never the payload.
            lock(&self.unindexed).push(StoredEvent { offset, envelope: envelope.header() });
        }
        lock(&self.unseen).push(envelope.clone());
        Ok(envelope)
    }

    /// Events recorded since the last call, in order.
    pub fn take_unseen(&self) -> Vec<EventEnvelope> {
        std::mem::take(&mut *lock(&self.unseen))
    }

    fn emit_logged(&self, event: Event) {
        if let Err(e) = self.emit(event) {
            tracing::error!(job_id = %self.job_id, error = %e, "flight recorder write failed in a callback");
        }
    }

    pub fn append(&self, record: &LedgerRecord) -> Result<u64, StoreError> {
        self.ledger().append(record)
    }

    /// A ledger append made durable by the next [`JobLog::sync`].
    pub fn append_deferred(&self, record: &LedgerRecord) -> Result<u64, StoreError> {
        self.ledger().append_deferred(record)
    }
}

/// The input a ledger record keeps for `call`, and what it leaves out (`None`: nothing).
fn ledger_input(call: &PluginCall) -> (String, Option<Value>) {
    if call.world != World::ModelBackend.name() {
        return (call.input.clone(), None);
    }
    let Ok(mut input) = serde_json::from_str::<Value>(&call.input) else {
        return (call.input.clone(), None);
    };
    let Some(prompt) = input.get("prompt").and_then(Value::as_str).map(str::to_owned) else {
        return (call.input.clone(), None);
    };
    input["prompt"] = Value::Null;
    let kept = String::from_utf8_lossy(&mtx_types::canonical_json_value(&input)).into_owned();
    let elided =
        json!({"prompt": {"sha256": mtx_types::sha256_hex(prompt.as_bytes()), "bytes": prompt.len()}});
    (kept, Some(elided))
}

impl Drop for JobLog {
    /// A job that stops between barriers (an error path) still leaves its events indexed,
    /// and the index holds every event once the log is gone.
    fn drop(&mut self) {
        if let Some(journal) = &self.journal {
            // Every file of the job durable and the journal empty: the job's files are the
            // truth again for whoever writes next (an operator's decision).
            let closed = self
                .recorder
                .detach_journal()
                .and_then(|()| lock(&self.inputs).detach_journal())
                .and_then(|()| self.ledger().detach_journal())
                .and_then(|()| journal.checkpoint());
            if let Err(e) = closed {
                tracing::error!(job_id = %self.job_id, error = %e, "journal: final checkpoint failed; the next open replays it");
            }
        }
        self.flush_index();
        if let Some(indexer) = lock(&self.indexer).take() {
            indexer.finish();
        }
    }
}

/// Writes batches of events into the Job History index on a thread of its own, with its
/// own connection, so the loop never waits for SQLite.
struct Indexer {
    batches: std::sync::mpsc::Sender<Vec<StoredEvent>>,
    worker: std::thread::JoinHandle<()>,
}

impl Indexer {
    /// `None` when the thread or its connection cannot be had (the caller then indexes).
    fn start(job_id: &str, history: &JobHistory) -> Option<Indexer> {
        let own = match JobHistory::open(history.path()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "job history: no connection for the indexer thread");
                return None;
            }
        };
        let (batches, received) = std::sync::mpsc::channel::<Vec<StoredEvent>>();
        let job = job_id.to_owned();
        let worker = std::thread::Builder::new()
            .name("mtx-history-index".into())
            .spawn(move || {
                // A batch that failed (the database busy past its timeout, say) is tried
                // again with the next one, so a passing failure leaves no hole that
                // `catch_up`, which only looks past the last indexed event, would miss.
                let mut carry: Vec<StoredEvent> = Vec::new();
                for batch in received {
                    carry.extend(batch);
                    match own.index_events(&job, &carry) {
                        Ok(()) => carry.clear(),
                        Err(e) if carry.len() > INDEX_CARRY_MAX => {
                            tracing::warn!(job_id = %job, error = %e, dropped = carry.len(),
                                "job history index keeps failing; `mtx jobs --reindex` rebuilds it from events.jsonl");
                            carry.clear();
                        }
                        Err(e) => tracing::warn!(job_id = %job, error = %e, "job history index failed; retrying with the next batch"),
                    }
                }
            })
            .map_err(|e| tracing::warn!(job_id, error = %e, "job history: no indexer thread"))
            .ok()?;
        Some(Indexer { batches, worker })
    }

    /// Hands `batch` to the thread; gives it back when the thread is gone.
    fn send(&self, batch: Vec<StoredEvent>) -> Result<(), Vec<StoredEvent>> {
        self.batches.send(batch).map_err(|e| e.0)
    }

    /// Waits until every batch sent is in the index.
    fn finish(self) {
        drop(self.batches);
        if self.worker.join().is_err() {
            tracing::warn!("job history indexer thread panicked");
        }
    }
}

impl PluginRecorder for JobLog {
    fn plugin_call(&self, call: &PluginCall) {
        let scope = self.scope();
        let output: Value = match &call.output {
            Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
            None => json!({"error": call.error, "outcome": call.outcome}),
        };
        // Built member by member: `json!` would copy `output` through a serializer, and
        // it is the model's whole answer on a model call.
        let mut payload = serde_json::Map::with_capacity(15);
        let mut put = |key: &str, value: Value| payload.insert(key.to_owned(), value);
        put("plugin", Value::from(call.plugin.as_str()));
        put("role", Value::from(call.role.as_str()));
        put("world", Value::from(call.world.as_str()));
        put("digest", Value::from(call.digest.as_str()));
        put("world_version", Value::from(call.world_version.as_str()));
        put("function", Value::from(call.function.as_str()));
        put("input_hash", Value::from(call.input_sha256.as_str()));
        put("output_hash", Value::from(call.output_sha256.as_deref()));
        put("output", output.clone());
        put("outcome", Value::from(call.outcome.as_str()));
        put("error", Value::from(call.error.as_deref()));
        put("duration_us", Value::from(call.duration_us));
        put("clock", Value::from(call.clock.as_str()));
        put("seed", Value::from(call.seed.as_str()));
        put("step_id", Value::from(scope.step_id.as_deref()));
        let mut event = Event::new("FR-EVT-PLUGIN-001", Value::Object(payload));
        if let Some(mt) = &scope.mt_id {
            event = event.mt(mt);
        }
        if let Some(i) = scope.iteration {
            event = event.iteration(i);
        }
        self.emit_logged(event);
        // `mtx replay` re-runs the call from the ledger: the canonical input is kept next
        // to its hash, with the function and world version it was made against. A model
        // backend is never re-run, and its prompt is already kept (the prompt artifact and
        // the step's `prompt.txt`), so the ledger keeps the prompt's hash instead: the
        // largest part of every iteration's ledger bytes (11.4 caps the ledger at 50 MB).
        let (input, elided) = ledger_input(call);
        let (input, input_ref) = if input.len() > INLINE_INPUT_MAX {
            match lock(&self.inputs).append(&input) {
                Ok(at) => (Value::Null, Some(at)),
                Err(e) => {
                    tracing::warn!(job_id = %self.job_id, error = %e, "input pack write failed; input kept inline");
                    (Value::String(input), None)
                }
            }
        } else {
            (Value::String(input), None)
        };
        let record = LedgerRecord::PluginCall(PluginCallRecord {
            plugin: call.plugin.clone(),
            digest: call.digest.clone(),
            world: Some(call.world.clone()),
            input_hash: call.input_sha256.clone(),
            output: {
                let mut record = serde_json::Map::with_capacity(12);
                let mut put = |key: &str, value: Value| record.insert(key.to_owned(), value);
                put("function", Value::from(call.function.as_str()));
                put("world_version", Value::from(call.world_version.as_str()));
                put("role", Value::from(call.role.as_str()));
                put("input", input);
                put("input_ref", json!(input_ref));
                put("input_elided", elided.unwrap_or(Value::Null));
                put("output", output);
                put("output_sha256", Value::from(call.output_sha256.as_deref()));
                put("outcome", Value::from(call.outcome.as_str()));
                put("error", Value::from(call.error.as_deref()));
                put("clock", Value::from(call.clock.as_str()));
                put("seed", Value::from(call.seed.as_str()));
                Value::Object(record)
            },
            mt_id: scope.mt_id.clone(),
            step_id: scope.step_id.clone(),
        });
        if let Err(e) = self.append_deferred(&record) {
            tracing::error!(job_id = %self.job_id, error = %e, "ledger write of a plugin call failed");
        }
    }

    fn grant_use(&self, grant: &GrantUse) {
        self.emit_logged(Event::new(
            "FR-EVT-PLUGIN-002",
            json!({
                "plugin": grant.plugin,
                "digest": grant.digest,
                "grant": grant.capability,
                "detail": grant.detail,
                "decision_outcome": if grant.allowed { "allow" } else { "deny" },
            }),
        ));
    }

    fn plugin_log(&self, log: &PluginLog) {
        tracing::debug!(plugin = %log.plugin, level = %log.level, message = %log.message, "plugin log");
    }
}

impl ToolBusObserver for JobLog {
    fn gate_outcome(&self, op: &PlannedOperation, gate: &str, outcome: &GateOutcome) {
        let mut event = Event::new("FR-EVT-GATE-001", gate_outcome_payload(op, gate, outcome));
        if let Some(mt) = &op.mt_id {
            event = event.mt(mt);
        }
        self.emit_logged(event);
    }

    fn capability_check(&self, op: &PlannedOperation, actor_id: &str, capability: &str, allowed: bool) {
        let mut event =
            Event::new("FR-EVT-CAP-001", capability_action_payload(op, actor_id, capability, allowed))
                .capability(capability);
        if let Some(mt) = &op.mt_id {
            event = event.mt(mt);
        }
        self.emit_logged(event);
    }

    fn tool_call(&self, record: &ToolCallRecord) {
        self.emit_logged(Event::new("FR-EVT-007", record.to_payload()));
    }
}
