//! The console's HTTP surface: the page, the JSON API under `/api/`, and the live stream.
//!
//! ```text
//! GET  /                                 the page (CSS and JS inlined)
//! GET  /api/jobs?status=&wp=             Job History
//! GET  /api/jobs/{id}                    job.json, progress, waves, escalations, candidates, gate
//! GET  /api/jobs/{id}/events?type=&mt=&after=
//! GET  /api/jobs/{id}/ledger             records + hash-chain verification
//! GET  /api/jobs/{id}/steps/{step_id}   one iteration's files (prompt, response, evidence)
//! GET  /api/jobs/{id}/stream?after=      server-sent events: new FR records and job.json changes
//!                                        (polled every 500 ms)
//! GET  /api/artifacts/{sha256}?path=&job=
//! POST /api/jobs/{id}/gate               {decision: continue|skip|abort, note?}
//! POST /api/jobs/{id}/consent            {approve: bool, note?}
//! POST /api/jobs/{id}/resume             {}: resume a job whose decision is already recorded
//! ```
//!
//! Reads run on blocking threads (SQLite and file I/O). A decision is recorded through
//! [`OperatorActions`] and then the job is resumed, the step the CLI prints after
//! `mtx gate` / `mtx consent`. Handlers never write into the state directory themselves.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::guard::{GuardConfig, guard};
use crate::views::{self, EventsQuery, JobsQuery, ViewError};
use crate::{CONSOLE_USER_ID, ConsoleConfig, OperatorActions};

/// How often the live stream looks for new Flight Recorder records.
const STREAM_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct AppState {
    state_dir: Arc<PathBuf>,
    actions: Arc<dyn OperatorActions>,
    guard: GuardConfig,
    page: Arc<String>,
}

impl AppState {
    pub fn new(config: ConsoleConfig, actions: Arc<dyn OperatorActions>) -> Self {
        AppState {
            state_dir: Arc::new(config.state_dir),
            actions,
            guard: GuardConfig { token: config.token },
            page: Arc::new(crate::assets::page()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let guard_config = state.guard.clone();
    Router::new()
        .route("/", get(page))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(job_detail))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/ledger", get(job_ledger))
        .route("/api/jobs/{id}/stream", get(job_stream))
        .route("/api/jobs/{id}/steps/{step_id}", get(job_step))
        .route("/api/jobs/{id}/gate", post(gate))
        .route("/api/jobs/{id}/consent", post(consent))
        .route("/api/jobs/{id}/resume", post(resume))
        .route("/api/jobs/{id}/request", post(request))
        .route("/api/artifacts/{sha256}", get(artifact))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard_config, guard))
}

/// A view error as a JSON response with the matching status.
struct ApiError(ViewError);

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ViewError::NotFound(_) => StatusCode::NOT_FOUND,
            ViewError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ViewError::Integrity(_) | ViewError::Refused(_) => StatusCode::CONFLICT,
            ViewError::Store(_) | ViewError::Unreadable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Runs a blocking read or action off the async runtime.
async fn blocking<F>(f: F) -> ApiResult
where
    F: FnOnce() -> Result<Value, ViewError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map(Json).map_err(ApiError),
        Err(e) => Err(ApiError(ViewError::Refused(format!("the request's worker failed: {e}")))),
    }
}

async fn page(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], Html(state.page.as_str().to_owned()))
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "no such page" }))).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct JobsParams {
    status: Option<String>,
    wp: Option<String>,
}

async fn list_jobs(State(state): State<AppState>, Query(p): Query<JobsParams>) -> ApiResult {
    let dir = state.state_dir.clone();
    blocking(move || views::list_jobs(&dir, &JobsQuery { status: p.status, wp: p.wp })).await
}

async fn job_detail(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let dir = state.state_dir.clone();
    blocking(move || views::job_detail(&dir, &id)).await
}

#[derive(Debug, Default, Deserialize)]
struct EventsParams {
    #[serde(rename = "type")]
    event_type: Option<String>,
    mt: Option<String>,
    after: Option<String>,
}

fn parse_after(after: Option<&str>) -> Result<Option<u64>, ViewError> {
    match after.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            s.parse().map(Some).map_err(|_| ViewError::BadRequest(format!("after={s:?} is not a seq")))
        }
    }
}

async fn job_events(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<EventsParams>,
) -> ApiResult {
    let dir = state.state_dir.clone();
    let after = parse_after(p.after.as_deref())?;
    let query = EventsQuery { event_type: p.event_type, mt: p.mt, after };
    blocking(move || views::events(&dir, &id, &query)).await
}

async fn job_ledger(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let dir = state.state_dir.clone();
    blocking(move || views::ledger(&dir, &id)).await
}

async fn job_step(
    State(state): State<AppState>,
    UrlPath((id, step_id)): UrlPath<(String, String)>,
) -> ApiResult {
    let dir = state.state_dir.clone();
    blocking(move || views::step(&dir, &id, &step_id)).await
}

#[derive(Debug, Default, Deserialize)]
struct ArtifactParams {
    path: Option<String>,
    job: Option<String>,
}

async fn artifact(
    State(state): State<AppState>,
    UrlPath(sha256): UrlPath<String>,
    Query(p): Query<ArtifactParams>,
) -> ApiResult {
    let dir = state.state_dir.clone();
    blocking(move || views::artifact(&dir, &sha256, p.path.as_deref(), p.job.as_deref())).await
}

// ------------------------------------------------------------------------- actions

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateBody {
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    approve: bool,
    #[serde(default)]
    note: Option<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ViewError> {
    serde_json::from_slice(body).map_err(|e| ViewError::BadRequest(format!("request body: {e}")))
}

/// Records a decision, then resumes the job so it acts on it; a failed resume is reported
/// next to the recorded decision (the decision stands and `mtx resume` can apply it).
fn decide_and_resume(
    actions: &dyn OperatorActions,
    job_id: &str,
    decide: impl FnOnce(&dyn OperatorActions) -> Result<Value, String>,
) -> Result<Value, ViewError> {
    let recorded = decide(actions).map_err(ViewError::Refused)?;
    let resume_error = actions.resume(job_id).err();
    Ok(json!({
        "job_id": job_id,
        "recorded": recorded,
        "resumed": resume_error.is_none(),
        "resume_error": resume_error,
    }))
}

async fn gate(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: GateBody = parse_body(&body)?;
    if !matches!(body.decision.as_str(), "continue" | "skip" | "abort") {
        return Err(ViewError::BadRequest(format!(
            "decision {:?} is not one of continue, skip, abort",
            body.decision
        ))
        .into());
    }
    let dir = state.state_dir.clone();
    let actions = state.actions.clone();
    blocking(move || {
        views::job_dir(&dir, &id)?;
        let note = body.note.as_deref().filter(|n| !n.is_empty());
        decide_and_resume(actions.as_ref(), &id, |a| a.gate(&id, &body.decision, note, CONSOLE_USER_ID))
    })
    .await
}

async fn consent(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: ConsentBody = parse_body(&body)?;
    let dir = state.state_dir.clone();
    let actions = state.actions.clone();
    blocking(move || {
        views::job_dir(&dir, &id)?;
        let note = body.note.as_deref().filter(|n| !n.is_empty());
        decide_and_resume(actions.as_ref(), &id, |a| a.consent(&id, body.approve, note, CONSOLE_USER_ID))
    })
    .await
}

/// Resumes a job whose decision is recorded but not yet acted on (e.g. after a resume
/// that failed, or a decision taken with `mtx gate`).
async fn resume(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let _: serde_json::Map<String, Value> = parse_body(&body)?;
    let dir = state.state_dir.clone();
    let actions = state.actions.clone();
    blocking(move || {
        views::job_dir(&dir, &id)?;
        actions.resume(&id).map_err(ViewError::Refused)?;
        Ok(json!({ "job_id": id, "resumed": true }))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct RequestBody {
    kind: String,
    #[serde(default)]
    note: Option<String>,
}

/// Asks a running job to skip its active MT or to stop (MTX-SPEC 5.15), as `mtx skip` and
/// `mtx cancel` do; the job records the request when it acts on it.
async fn request(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: RequestBody = parse_body(&body)?;
    if !matches!(body.kind.as_str(), "skip" | "cancel") {
        return Err(
            ViewError::BadRequest(format!("request {:?} is not one of skip, cancel", body.kind)).into()
        );
    }
    let dir = state.state_dir.clone();
    let actions = state.actions.clone();
    blocking(move || {
        views::job_dir(&dir, &id)?;
        let note = body.note.as_deref().filter(|n| !n.is_empty());
        let requested =
            actions.request(&id, &body.kind, note, CONSOLE_USER_ID).map_err(ViewError::Refused)?;
        Ok(json!({ "job_id": id, "requested": requested }))
    })
    .await
}

// ----------------------------------------------------------------------- live stream

#[derive(Debug, Default, Deserialize)]
struct StreamParams {
    after: Option<String>,
}

/// New Flight Recorder records of a job as server-sent events (`event: fr`, `id: <seq>`),
/// found by polling `events.jsonl`; a reconnecting browser continues from `Last-Event-ID`.
/// A change of `job.json` is sent as `event: job` (data: the job's `status`): the executor
/// marks a finished job there after its last FR record (FR-EVT-MT-009), so a page that
/// refreshed on that record alone could keep showing the job as running.
async fn job_stream(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = parse_after(last_event_id.or(p.after.as_deref()))?.unwrap_or(0);
    let dir = state.state_dir.clone();
    {
        let (dir, id) = (dir.clone(), id.clone());
        tokio::task::spawn_blocking(move || views::job_dir(&dir, &id).map(|_| ()))
            .await
            .map_err(|e| ApiError(ViewError::Refused(e.to_string())))??;
    }
    struct Cursor {
        dir: Arc<PathBuf>,
        id: String,
        after: u64,
        pending: std::collections::VecDeque<SseEvent>,
        first: bool,
        done: bool,
        log_len: Option<u64>,
        record: Option<RecordStamp>,
    }
    let cursor = Cursor {
        dir,
        id,
        after,
        pending: Default::default(),
        first: true,
        done: false,
        log_len: None,
        record: None,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if c.done {
                return None;
            }
            if let Some(sse) = c.pending.pop_front() {
                return Some((Ok(sse), c));
            }
            if !c.first {
                tokio::time::sleep(STREAM_POLL).await;
            }
            c.first = false;
            let (dir, id, after, seen_len) = (c.dir.clone(), c.id.clone(), c.after, c.log_len);
            let read = tokio::task::spawn_blocking(move || {
                let job = views::job_dir(&dir, &id)?;
                let record = RecordStamp::of(&job.job_json());
                // The log only grows: an unchanged length means nothing new, so a quiet
                // job costs a stat and a read of its small job.json per poll instead of a
                // re-read of its whole log.
                let len = std::fs::metadata(job.events()).map_or(0, |m| m.len());
                if Some(len) == seen_len {
                    return Ok((len, Value::Null, record));
                }
                let query = EventsQuery { after: Some(after), ..Default::default() };
                views::events(&dir, &id, &query).map(|v| (len, v, record))
            })
            .await;
            match read {
                Ok(Ok((len, v, record))) => {
                    c.log_len = Some(len);
                    for e in v["events"].as_array().into_iter().flatten() {
                        let seq = e["seq"].as_u64().unwrap_or(0);
                        c.after = c.after.max(seq);
                        c.pending.push_back(
                            SseEvent::default().event("fr").id(seq.to_string()).data(e.to_string()),
                        );
                    }
                    // The first look only takes the stamp: the page has just read job.json.
                    if c.record.as_ref().is_some_and(|seen| *seen != record) {
                        c.pending.push_back(SseEvent::default().event("job").data(record.status.clone()));
                    }
                    c.record = Some(record);
                }
                // The job directory went away, or the log cannot be read right now; the
                // stream says so once and ends, and the page falls back to polling.
                Ok(Err(e)) => {
                    c.done = true;
                    return Some((Ok(SseEvent::default().event("error").data(e.to_string())), c));
                }
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What the stream compares to notice that `job.json` changed: its length and mtime, and
/// the status itself, so a rewrite that keeps both (a coarse clock) still counts when the
/// status, what the page shows first, moved.
#[derive(Debug, Clone, PartialEq)]
struct RecordStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    status: String,
}

impl RecordStamp {
    fn of(path: &std::path::Path) -> RecordStamp {
        let meta = std::fs::metadata(path).ok();
        let status = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|doc| doc.get("status").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        RecordStamp {
            len: meta.as_ref().map_or(0, |m| m.len()),
            modified: meta.and_then(|m| m.modified().ok()),
            status,
        }
    }
}
