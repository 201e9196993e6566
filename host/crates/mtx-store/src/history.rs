//! Job History (MTX-SPEC 15.3, AC-1): `history.sqlite`, the index behind `mtx jobs` and
//! `mtx events`.
//!
//! SQLite is an index, never the truth: every row can be rebuilt from the job directory
//! with `reindex`. The `jobs` table enforces the contract invariant of 3.1.5 when a job
//! is created (a mismatch returns an error and stores nothing) and when its status
//! changes; the `events` table points into `events.jsonl` by byte offset so the FR
//! timeline can be filtered by type and MT without scanning the log. The database runs in
//! WAL mode with a busy timeout so the CLI can read while a job writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtx_types::{JobStatus, check_job_contract, status_reason};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
use crate::jobdir::JobDir;
use crate::recorder::{StoredEvent, read_events};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    job_kind      TEXT NOT NULL,
    profile_id    TEXT NOT NULL,
    protocol_id   TEXT NOT NULL,
    wp_id         TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    completed_at  TEXT,
    updated_at    TEXT NOT NULL,
    current_mt    TEXT,
    current_level INTEGER,
    models_used   TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    job_dir       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_by_wp ON jobs(wp_id);
CREATE TABLE IF NOT EXISTS events (
    job_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    mt_id       TEXT,
    iteration   INTEGER,
    timestamp   TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(job_id, event_type);
CREATE INDEX IF NOT EXISTS events_by_mt ON events(job_id, mt_id);
";

/// One row of the `jobs` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub job_id: String,
    pub job_kind: String,
    pub profile_id: String,
    pub protocol_id: String,
    pub wp_id: String,
    pub status: JobStatus,
    pub status_reason: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub updated_at: String,
    pub current_mt: Option<String>,
    pub current_level: Option<u32>,
    pub models_used: Vec<String>,
    /// Summary metrics (MicroTaskMetrics / JobMetrics as JSON).
    pub metrics: Value,
    pub job_dir: String,
}

/// A status change; `None` fields keep their stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    pub status: Option<JobStatus>,
    pub status_reason: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub current_mt: Option<String>,
    pub current_level: Option<u32>,
    pub models_used: Option<Vec<String>>,
    pub metrics: Option<Value>,
}

/// Filters of `mtx jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub wp_id: Option<String>,
    pub limit: Option<u32>,
}

/// Filters of `mtx events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub mt_id: Option<String>,
    pub limit: Option<u32>,
}

/// One row of the `events` table: where an event sits in `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub job_id: String,
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub mt_id: Option<String>,
    pub iteration: Option<u32>,
    pub timestamp: String,
    pub byte_offset: u64,
}

/// The Job History database.
#[derive(Debug)]
pub struct JobHistory {
    conn: Connection,
    path: PathBuf,
}

fn status_str(status: JobStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn parse_status(s: &str) -> rusqlite::Result<JobStatus> {
    serde_json::from_value(Value::from(s))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))
}

impl JobHistory {
    /// Opens (creating when missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let sql = |source| StoreError::Sqlite { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(JobHistory { conn, path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Inserts a new job; a contract mismatch (3.1.5) or an existing id stores nothing.
    pub fn create_job(&self, job: &JobRow) -> Result<(), StoreError> {
        check_job_contract(&job.job_kind, &job.profile_id, &job.protocol_id)
            .map_err(|e| StoreError::invalid("job contract", e.to_string()))?;
        if self.get_job(&job.job_id)?.is_some() {
            return Err(StoreError::invalid("job", format!("job {} already exists", job.job_id)));
        }
        self.upsert(job)
    }

    fn upsert(&self, job: &JobRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO jobs (job_id, job_kind, profile_id, protocol_id, wp_id, status, status_reason,
                    created_at, started_at, completed_at, updated_at, current_mt, current_level, models_used, metrics, job_dir)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    job.job_id,
                    job.job_kind,
                    job.profile_id,
                    job.protocol_id,
                    job.wp_id,
                    status_str(job.status),
                    job.status_reason,
                    job.created_at,
                    job.started_at,
                    job.completed_at,
                    job.updated_at,
                    job.current_mt,
                    job.current_level,
                    serde_json::to_string(&job.models_used).expect("strings serialise"),
                    job.metrics.to_string(),
                    job.job_dir,
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Applies a status change. A stored row that breaks the contract invariant accepts
    /// only the hard failure 3.1.5 item 3 demands (`failed` or `poisoned` with reason
    /// `invalid_job_contract`); anything else is refused and nothing changes.
    pub fn update_status(&self, job_id: &str, update: &StatusUpdate) -> Result<(), StoreError> {
        let mut job = self
            .get_job(job_id)?
            .ok_or_else(|| StoreError::invalid("job", format!("no job {job_id} in the history")))?;
        if let Err(e) = check_job_contract(&job.job_kind, &job.profile_id, &job.protocol_id) {
            let hard_failure = matches!(update.status, Some(JobStatus::Failed | JobStatus::Poisoned))
                && update.status_reason.as_deref() == Some(status_reason::INVALID_JOB_CONTRACT);
            if !hard_failure {
                return Err(StoreError::invalid("job contract", e.to_string()));
            }
        }
        if let Some(s) = update.status {
            job.status = s;
        }
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = &update.$field { job.$field = v.clone().into(); } )* };
        }
        take!(status_reason, started_at, completed_at, current_mt, current_level, models_used, metrics);
        job.updated_at = mtx_types::now_rfc3339();
        self.upsert(&job)
    }

    pub fn get_job(&self, job_id: &str) -> Result<Option<JobRow>, StoreError> {
        self.conn
            .query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"), [job_id], job_from_row)
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// `mtx jobs`: newest first.
    pub fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR wp_id = ?2)
                 ORDER BY created_at DESC, job_id LIMIT ?3"
            ))
            .map_err(|e| self.sql(e))?;
        let limit = filter.limit.map_or(-1, i64::from);
        let rows = stmt
            .query_map(params![filter.status.map(status_str), filter.wp_id, limit], job_from_row)
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.sql(e))
    }

    /// Indexes one recorded event (idempotent: the same `(job_id, seq)` is replaced).
    pub fn index_event(&self, job_id: &str, event: &StoredEvent) -> Result<(), StoreError> {
        self.index_events(job_id, std::slice::from_ref(event))
    }

    /// Indexes several recorded events in one transaction (a running job indexes the
    /// events of each durability barrier together).
    pub fn index_events(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        self.insert_events(job_id, events)?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Inserts event rows inside the caller's transaction.
    fn insert_events(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO events (job_id, seq, event_id, event_type, mt_id, iteration, timestamp, byte_offset)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.sql(e))?;
            for event in events {
                let e = &event.envelope;
                stmt.execute(params![
                    job_id,
                    e.seq,
                    e.event_id,
                    e.event_type,
                    e.mt_id,
                    e.iteration,
                    e.timestamp,
                    event.offset
                ])
                .map_err(|err| self.sql(err))?;
            }
        }
        Ok(())
    }

    /// Indexes the events of `events.jsonl` that the index does not hold yet: those a
    /// process recorded after its last index batch before it was killed. Reads only the
    /// log's tail after the last indexed record. Returns the number of events indexed.
    pub fn catch_up(&self, job_id: &str, events: &Path) -> Result<usize, StoreError> {
        let last: Option<(u64, u64)> = self
            .conn
            .query_row(
                "SELECT seq, byte_offset FROM events WHERE job_id = ?1 ORDER BY seq DESC LIMIT 1",
                [job_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        use std::io::{Read, Seek, SeekFrom};
        let (after_seq, from) = last.unwrap_or((0, 0));
        let mut file = match std::fs::File::open(events) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(events, e)),
        };
        let len = file.metadata().map_err(|e| StoreError::io(events, e))?.len();
        if from > len {
            return Err(StoreError::corrupt(
                events,
                format!("the index points past the end of the log ({from})"),
            ));
        }
        // Only the tail from the last indexed record on is read, not the whole log.
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_to_end(&mut tail))
            .map_err(|e| StoreError::io(events, e))?;
        let mut found = Vec::new();
        let mut offset = from;
        for line in tail.split_inclusive(|b| *b == b'\n') {
            let start = offset;
            offset += line.len() as u64;
            if line.last() != Some(&b'\n') {
                break; // a torn last line is not a record
            }
            let envelope: crate::recorder::EventEnvelope = serde_json::from_slice(line)
                .map_err(|e| StoreError::corrupt(events, format!("byte {start}: {e}")))?;
            if envelope.seq > after_seq {
                found.push(StoredEvent { offset: start, envelope });
            }
        }
        self.index_events(job_id, &found)?;
        Ok(found.len())
    }

    /// `mtx events`: a job's events in `seq` order.
    pub fn query_events(&self, job_id: &str, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT job_id, seq, event_id, event_type, mt_id, iteration, timestamp, byte_offset FROM events
                 WHERE job_id = ?1 AND (?2 IS NULL OR event_type = ?2) AND (?3 IS NULL OR mt_id = ?3)
                 ORDER BY seq LIMIT ?4",
            )
            .map_err(|e| self.sql(e))?;
        let limit = filter.limit.map_or(-1, i64::from);
        let rows = stmt
            .query_map(params![job_id, filter.event_type, filter.mt_id, limit], |r| {
                Ok(EventRow {
                    job_id: r.get(0)?,
                    seq: r.get(1)?,
                    event_id: r.get(2)?,
                    event_type: r.get(3)?,
                    mt_id: r.get(4)?,
                    iteration: r.get(5)?,
                    timestamp: r.get(6)?,
                    byte_offset: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.sql(e))
    }

    /// Rebuilds a job's rows from its directory: `job.json` (required), the progress
    /// artifact (current MT, level, models used) and `events.jsonl`. Returns the number of
    /// events indexed. Runs in one transaction: on any error the old rows stay.
    pub fn reindex(&self, job: &JobDir) -> Result<usize, StoreError> {
        let path = job.job_json();
        let bytes = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        let need =
            |k: &str| text(k).ok_or_else(|| StoreError::corrupt(&path, format!("job.json has no {k}")));
        let status: JobStatus = serde_json::from_value(doc.get("status").cloned().unwrap_or(Value::Null))
            .map_err(|e| StoreError::corrupt(&path, format!("status: {e}")))?;
        let mut row = JobRow {
            job_id: need("job_id")?,
            job_kind: need("job_kind")?,
            profile_id: need("profile_id")?,
            protocol_id: need("protocol_id")?,
            wp_id: need("wp_id")?,
            status,
            status_reason: text("status_reason").unwrap_or_default(),
            created_at: need("created_at")?,
            started_at: text("started_at"),
            completed_at: text("completed_at"),
            updated_at: text("updated_at").unwrap_or_default(),
            current_mt: None,
            current_level: None,
            models_used: Vec::new(),
            metrics: doc.get("metrics").cloned().unwrap_or(Value::Null),
            job_dir: job.root().display().to_string(),
        };
        check_job_contract(&row.job_kind, &row.profile_id, &row.protocol_id)
            .map_err(|e| StoreError::invalid("job contract", e.to_string()))?;
        // Through the progress store, so archived iteration records count too.
        if let Ok(p) = crate::progress::ProgressStore::new(&job.progress_artifact())
            .load::<mtx_types::progress::ProgressArtifact>()
        {
            row.current_mt = p.current_state.active_mt.clone();
            row.current_level = Some(p.current_state.active_model_level);
            row.models_used = p.models_used();
        }
        let events = if job.events().exists() { read_events(&job.events())? } else { Vec::new() };
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        self.upsert(&row)?;
        tx.execute("DELETE FROM events WHERE job_id = ?1", [&row.job_id]).map_err(|e| self.sql(e))?;
        self.insert_events(&row.job_id, &events)?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(events.len())
    }
}

const JOB_COLUMNS: &str =
    "job_id, job_kind, profile_id, protocol_id, wp_id, status, status_reason, created_at,
    started_at, completed_at, updated_at, current_mt, current_level, models_used, metrics, job_dir";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let models: String = r.get(13)?;
    let metrics: String = r.get(14)?;
    Ok(JobRow {
        job_id: r.get(0)?,
        job_kind: r.get(1)?,
        profile_id: r.get(2)?,
        protocol_id: r.get(3)?,
        wp_id: r.get(4)?,
        status: parse_status(&r.get::<_, String>(5)?)?,
        status_reason: r.get(6)?,
        created_at: r.get(7)?,
        started_at: r.get(8)?,
        completed_at: r.get(9)?,
        updated_at: r.get(10)?,
        current_mt: r.get(11)?,
        current_level: r.get(12)?,
        models_used: serde_json::from_str(&models).unwrap_or_default(),
        metrics: serde_json::from_str(&metrics).unwrap_or(Value::Null),
        job_dir: r.get(15)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobdir::StateDir;
    use crate::recorder::FlightRecorder;
    use serde_json::json;

    fn row(job_id: &str, wp: &str, status: JobStatus) -> JobRow {
        JobRow {
            job_id: job_id.into(),
            job_kind: "micro_task_execution".into(),
            profile_id: "micro_task_executor_v1".into(),
            protocol_id: "micro_task_executor_v1".into(),
            wp_id: wp.into(),
            status,
            status_reason: String::new(),
            created_at: format!("2026-01-01T00:00:0{}.000Z", job_id.len() % 10),
            started_at: None,
            completed_at: None,
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            current_mt: None,
            current_level: None,
            models_used: vec![],
            metrics: json!({}),
            job_dir: "/tmp/x".into(),
        }
    }

    #[test]
    fn a_contract_mismatch_is_refused_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = JobHistory::open(&dir.path().join("history.sqlite")).unwrap();
        let mut bad = row("j1", "WP-1", JobStatus::Queued);
        bad.job_kind = "workflow_run".into();
        assert!(matches!(h.create_job(&bad), Err(StoreError::Invalid { .. })));
        let mut bad2 = row("j2", "WP-1", JobStatus::Queued);
        bad2.protocol_id = "other".into();
        assert!(h.create_job(&bad2).is_err());
        assert!(h.list_jobs(&JobFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn jobs_are_listed_by_status_and_wp_and_updated() {
        let dir = tempfile::tempdir().unwrap();
        let h = JobHistory::open(&dir.path().join("history.sqlite")).unwrap();
        h.create_job(&row("a", "WP-1", JobStatus::Running)).unwrap();
        h.create_job(&row("bb", "WP-2", JobStatus::Running)).unwrap();
        h.create_job(&row("ccc", "WP-1", JobStatus::Completed)).unwrap();
        assert!(h.create_job(&row("a", "WP-1", JobStatus::Running)).is_err(), "ids are unique");
        let running =
            h.list_jobs(&JobFilter { status: Some(JobStatus::Running), ..Default::default() }).unwrap();
        assert_eq!(running.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), ["bb", "a"]);
        let wp1 = h.list_jobs(&JobFilter { wp_id: Some("WP-1".into()), ..Default::default() }).unwrap();
        assert_eq!(wp1.len(), 2);
        h.update_status(
            "a",
            &StatusUpdate {
                status: Some(JobStatus::Stalled),
                status_reason: Some("crash_recovery".into()),
                current_mt: Some("MT-002".into()),
                models_used: Some(vec!["m".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        let a = h.get_job("a").unwrap().unwrap();
        assert_eq!(a.status, JobStatus::Stalled);
        assert_eq!(a.current_mt.as_deref(), Some("MT-002"));
        assert_eq!(a.models_used, ["m"]);
        assert!(h.update_status("missing", &StatusUpdate::default()).is_err());
    }

    #[test]
    fn a_bad_stored_contract_only_accepts_the_hard_failure() {
        let dir = tempfile::tempdir().unwrap();
        let h = JobHistory::open(&dir.path().join("history.sqlite")).unwrap();
        let mut bad = row("j", "WP-1", JobStatus::Queued);
        bad.job_kind = "workflow_run".into();
        h.upsert(&bad).unwrap(); // as an old record would be found
        let run = StatusUpdate { status: Some(JobStatus::Running), ..Default::default() };
        assert!(matches!(h.update_status("j", &run), Err(StoreError::Invalid { .. })));
        assert_eq!(h.get_job("j").unwrap().unwrap().status, JobStatus::Queued);
        let fail = StatusUpdate {
            status: Some(JobStatus::Failed),
            status_reason: Some("invalid_job_contract".into()),
            ..Default::default()
        };
        h.update_status("j", &fail).unwrap();
        assert_eq!(h.get_job("j").unwrap().unwrap().status, JobStatus::Failed);
    }

    /// A created directory for `job-1` of WP-1-Test-v1 and its Flight Recorder.
    fn recorded_job() -> (tempfile::TempDir, StateDir, JobDir, FlightRecorder) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let job = state.job("job-1").unwrap();
        job.create().unwrap();
        let mut c = crate::recorder::tests::correlation();
        c.wp_id = "WP-1-Test-v1".into();
        let fr = FlightRecorder::create(&job.events(), c).unwrap();
        (dir, state, job, fr)
    }

    #[test]
    fn reindex_rebuilds_rows_from_the_job_files() {
        let (_dir, state, job, fr) = recorded_job();
        let mut doc = serde_json::to_value(row("job-1", "WP-1-Test-v1", JobStatus::Running)).unwrap();
        doc["status_reason"] = json!("");
        std::fs::write(job.job_json(), doc.to_string()).unwrap();
        fr.emit(crate::recorder::tests::started("MT-001", 1)).unwrap();
        fr.emit(crate::recorder::tests::started("MT-002", 1)).unwrap();
        fr.emit(crate::recorder::Event::new(
            "FR-EVT-MT-004",
            json!({"wp_id": "WP-1-Test-v1", "mt_id": "MT-001"}),
        ))
        .unwrap();

        let h = JobHistory::open(&state.history_db()).unwrap();
        assert_eq!(h.reindex(&job).unwrap(), 3);
        assert_eq!(h.reindex(&job).unwrap(), 3, "reindex is repeatable");
        assert_eq!(h.get_job("job-1").unwrap().unwrap().wp_id, "WP-1-Test-v1");
        let all = h.query_events("job-1", &EventFilter::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let by_type = h
            .query_events(
                "job-1",
                &EventFilter { event_type: Some("FR-EVT-MT-002".into()), ..Default::default() },
            )
            .unwrap();
        assert_eq!(by_type.len(), 2);
        let by_mt = h
            .query_events("job-1", &EventFilter { mt_id: Some("MT-001".into()), ..Default::default() })
            .unwrap();
        assert_eq!(by_mt.len(), 2);
        // The offset points at the record in the log.
        let log = std::fs::read(job.events()).unwrap();
        let third = &log[by_mt[1].byte_offset as usize..];
        assert!(third.starts_with(b"{\"seq\":3,"));
    }

    #[test]
    fn catch_up_indexes_only_the_events_after_the_last_indexed_one() {
        let (_dir, state, job, fr) = recorded_job();
        let h = JobHistory::open(&state.history_db()).unwrap();
        assert_eq!(h.catch_up("job-1", &job.events()).unwrap(), 0, "an empty log has nothing to index");
        let first = fr.emit_stored(crate::recorder::tests::started("MT-001", 1)).unwrap();
        h.index_event("job-1", &first).unwrap();
        for i in 2..=4 {
            fr.emit(crate::recorder::tests::started("MT-001", i)).unwrap();
        }
        drop(fr);
        // A torn last line (a write cut short) is not a record.
        let mut log = std::fs::OpenOptions::new().append(true).open(job.events()).unwrap();
        std::io::Write::write_all(&mut log, b"{\"seq\":5,\"prev").unwrap();

        assert_eq!(h.catch_up("job-1", &job.events()).unwrap(), 3);
        let rows = h.query_events("job-1", &EventFilter::default()).unwrap();
        assert_eq!(rows.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(rows.iter().filter_map(|e| e.iteration).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let bytes = std::fs::read(job.events()).unwrap();
        assert!(bytes[rows[3].byte_offset as usize..].starts_with(b"{\"seq\":4,"));
        assert_eq!(h.catch_up("job-1", &job.events()).unwrap(), 0, "a second catch-up finds nothing new");
        assert_eq!(h.catch_up("job-2", &job.events()).unwrap(), 4, "another job id starts from the top");
    }
}
