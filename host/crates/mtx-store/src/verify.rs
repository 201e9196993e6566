//! `mtx verify <JOB_ID>` (MTX-SPEC 9.6 item 6, 11.5): checks a job's durable state
//! without changing it.
//!
//! In order: the run ledger chain and its records, the Flight Recorder chain (and the
//! fallback log when present) with every event re-validated against the registry, the
//! inputs that ledger records keep in `plugin_inputs.jsonl` (re-hashed against the record),
//! the progress artifact (content hash and schema), and finally every artifact referenced
//! from any of them, re-hashed. A reference is any JSON object with a string `path` and
//! a 64-hex `sha256` (the ArtifactHandle shape); `sha256/..` paths resolve in the shared
//! artifact store, other paths in the job directory. The report lists every problem found,
//! the first one being the first broken record. Verification never repairs anything: a
//! torn final line is reported here and cut off only by the next `open`.

use std::collections::BTreeSet;
use std::path::Path;

use mtx_types::{ProgressArtifact, sha256_hex};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::chain::scan;
use crate::error::StoreError;
use crate::events::{self, EnvelopeView};
use crate::inputs::{INPUT_PACK_FILE, InputRef};
use crate::jobdir::{JobDir, StateDir};
use crate::ledger::LedgerRecord;
use crate::progress::parse_and_validate;
use crate::recorder::FALLBACK_FILE;

/// One thing wrong with a job's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File name relative to the job directory (or the artifact path).
    pub file: String,
    /// 1-based line of a JSON Lines file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of `verify_job`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub job_id: String,
    pub ledger_records: u64,
    pub events: u64,
    /// Plugin inputs in `plugin_inputs.jsonl` re-hashed against their ledger records.
    pub inputs_checked: u64,
    pub artifacts_checked: u64,
    pub progress_checked: bool,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first broken record, in the order the checks run.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// Records checked in the two chains (for throughput figures).
    pub fn records(&self) -> u64 {
        self.ledger_records + self.events
    }
}

/// Verifies the job `job_id` under `state_dir`.
pub fn verify_job(state_dir: &Path, job_id: &str) -> Result<VerifyReport, StoreError> {
    let state = StateDir::new(state_dir);
    let job = state.job(job_id)?;
    if !job.root().is_dir() {
        return Err(StoreError::invalid("job id", format!("no job directory for {job_id}")));
    }
    let mut report = VerifyReport { job_id: job_id.to_owned(), ..VerifyReport::default() };
    let mut handles = BTreeSet::new();
    let mut packed = Vec::new();

    if let Some(lines) = check_chain(&job, "run_ledger.jsonl", &mut report) {
        for (line, map) in lines {
            report.ledger_records += 1;
            collect_in_map(&map, &mut handles);
            if let Some(input) = PackedInput::of(line, &map) {
                packed.push(input);
            }
            let checked = LedgerRecord::from_map(map).and_then(|record| match record {
                LedgerRecord::Header(h) if line != 1 => {
                    Err(format!("a second header (ledger {})", h.ledger_id))
                }
                LedgerRecord::Header(h) if h.job_id != job_id => {
                    Err(format!("the header names job {}, not {job_id}", h.job_id))
                }
                other if line == 1 && !matches!(other, LedgerRecord::Header(_)) => {
                    Err(format!("the first record is {:?}, not the header", other.kind()))
                }
                _ => Ok(()),
            });
            if let Err(message) = checked {
                report.problems.push(Problem {
                    file: "run_ledger.jsonl".into(),
                    line: Some(line),
                    seq: Some(line),
                    message,
                });
            }
        }
    }
    for file in ["events.jsonl", FALLBACK_FILE] {
        if file == FALLBACK_FILE && !job.root().join(file).exists() {
            continue;
        }
        if let Some(lines) = check_chain(&job, file, &mut report) {
            for (line, map) in lines {
                report.events += 1;
                collect_in_map(&map, &mut handles);
                if let Err(message) = check_event(&map, job_id) {
                    report.problems.push(Problem {
                        file: file.into(),
                        line: Some(line),
                        seq: Some(line),
                        message,
                    });
                }
            }
        }
    }
    check_input_pack(&job, &packed, &mut report);
    let progress = job.progress_artifact();
    if progress.exists() {
        report.progress_checked = true;
        match std::fs::read(&progress) {
            Ok(bytes) => {
                if let Err(e) = parse_and_validate::<ProgressArtifact>(&progress, &bytes) {
                    report.problems.push(problem("progress_artifact.json", e.to_string()));
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                    collect_handles(&value, &mut handles);
                }
            }
            Err(e) => report.problems.push(problem("progress_artifact.json", e.to_string())),
        }
    }
    let store_root = state.artifacts_dir();
    for (path, sha) in handles {
        report.artifacts_checked += 1;
        let file = if path.starts_with("sha256/") { Ok(store_root.join(&path)) } else { job.resolve(&path) };
        let message = match file {
            Err(e) => Some(e.to_string()),
            Ok(file) => match std::fs::read(&file) {
                Ok(bytes) => {
                    let actual = sha256_hex(&bytes);
                    (actual != sha).then(|| format!("expected sha256 {sha}, found {actual}"))
                }
                Err(e) => Some(format!("cannot read: {e}")),
            },
        };
        if let Some(message) = message {
            report.problems.push(problem(&path, message));
        }
    }
    Ok(report)
}

/// A plugin call's input that its ledger record keeps in the input pack, not inline.
struct PackedInput {
    ledger_line: u64,
    at: InputRef,
    input_hash: String,
    /// The record keeps a model backend's input without its prompt (whose hash it names
    /// instead): those bytes are not the ones `input_hash` covers.
    elided: bool,
}

impl PackedInput {
    fn of(ledger_line: u64, map: &Map<String, Value>) -> Option<PackedInput> {
        if map.get("kind").and_then(Value::as_str) != Some("plugin_call") {
            return None;
        }
        let output = map.get("output")?;
        let at: InputRef = serde_json::from_value(output.get("input_ref")?.clone()).ok()?;
        Some(PackedInput {
            ledger_line,
            at,
            input_hash: map.get("input_hash").and_then(Value::as_str).unwrap_or_default().to_owned(),
            elided: output.get("input_elided").is_some_and(|v| !v.is_null()),
        })
    }
}

/// The input pack is not chained: the ledger records that name its bytes carry their hash,
/// so each packed input is re-hashed against its record.
fn check_input_pack(job: &JobDir, packed: &[PackedInput], report: &mut VerifyReport) {
    if packed.is_empty() {
        return;
    }
    let bytes = match std::fs::read(job.root().join(INPUT_PACK_FILE)) {
        Ok(b) => b,
        Err(e) => {
            report.problems.push(problem(
                INPUT_PACK_FILE,
                format!("cannot read ({} ledger records name inputs in it): {e}", packed.len()),
            ));
            return;
        }
    };
    for input in packed {
        report.inputs_checked += 1;
        let at = &input.at;
        let range = usize::try_from(at.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(at.bytes).ok()?)?;
            bytes.get(start..end)
        });
        let whose = format!("the input of ledger record {}", input.ledger_line);
        let message = if at.file != INPUT_PACK_FILE {
            Some(format!("{whose} names the unknown file {:?}", at.file))
        } else {
            match range {
                None => Some(format!(
                    "{whose} at bytes {}+{} is past the end ({} bytes)",
                    at.offset,
                    at.bytes,
                    bytes.len()
                )),
                Some(found) if input.elided => serde_json::from_slice::<Value>(found)
                    .err()
                    .map(|e| format!("{whose} at bytes {}+{} is not JSON: {e}", at.offset, at.bytes)),
                Some(found) => {
                    let actual = sha256_hex(found);
                    (actual != input.input_hash).then(|| {
                        format!(
                            "{whose} at bytes {}+{} hashes to {actual}, the record says {}",
                            at.offset, at.bytes, input.input_hash
                        )
                    })
                }
            }
        };
        if let Some(message) = message {
            report.problems.push(problem(INPUT_PACK_FILE, message));
        }
    }
}

fn problem(file: &str, message: String) -> Problem {
    Problem { file: file.to_owned(), line: None, seq: None, message }
}

/// Scans one chain file; records problems and returns the verified lines.
fn check_chain(
    job: &JobDir,
    file: &str,
    report: &mut VerifyReport,
) -> Option<Vec<(u64, Map<String, Value>)>> {
    let path = job.root().join(file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            report.problems.push(problem(file, format!("cannot read: {e}")));
            return None;
        }
    };
    let s = scan(&bytes);
    if let Some(d) = &s.defect {
        report.problems.push(Problem {
            file: file.into(),
            line: Some(d.line),
            seq: d.seq,
            message: d.message.clone(),
        });
    }
    if let Some(t) = &s.torn {
        report.problems.push(Problem {
            file: file.into(),
            line: Some(s.lines.len() as u64 + 1),
            seq: None,
            message: format!(
                "torn final line at byte {} ({}); the next open cuts it off",
                t.offset, t.reason
            ),
        });
    }
    let mut lines = Vec::with_capacity(s.lines.len());
    for l in &s.lines {
        match serde_json::from_slice::<Value>(l.bytes(&bytes)) {
            Ok(Value::Object(map)) => lines.push((l.seq, map)),
            _ => {
                report.problems.push(Problem {
                    file: file.into(),
                    line: Some(l.seq),
                    seq: Some(l.seq),
                    message: "record is not a JSON object".into(),
                });
                break;
            }
        }
    }
    Some(lines)
}

fn check_event(map: &Map<String, Value>, job_id: &str) -> Result<(), String> {
    let text = |k: &str| map.get(k).and_then(Value::as_str);
    if text("job_id") != Some(job_id) {
        return Err(format!("event names job {:?}, not {job_id}", text("job_id")));
    }
    let event_type = text("event_type").ok_or("event_type is missing")?;
    let spec = events::lookup(event_type).map_err(|e| e.to_string())?;
    if text("event_name") != Some(spec.name) {
        return Err(format!("event_name does not match the catalogue name {} of {event_type}", spec.name));
    }
    let payload = map.get("payload").and_then(Value::as_object).ok_or("payload is not an object")?;
    let view = EnvelopeView {
        trace_id: text("trace_id").unwrap_or(""),
        wp_id: text("wp_id").unwrap_or(""),
        mt_id: text("mt_id"),
        iteration: map.get("iteration").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()),
        model_id: text("model_id"),
    };
    events::validate(spec, &view, payload).map_err(|e| e.to_string())
}

fn collect_in_map(map: &Map<String, Value>, out: &mut BTreeSet<(String, String)>) {
    if let (Some(Value::String(path)), Some(Value::String(sha))) = (map.get("path"), map.get("sha256"))
        && sha.len() == 64
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
    {
        out.insert((path.clone(), sha.clone()));
    }
    map.values().for_each(|v| collect_handles(v, out));
}

/// Adds `(path, sha256)` of every ArtifactHandle-shaped object in `value`.
fn collect_handles(value: &Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => collect_in_map(map, out),
        Value::Array(items) => items.iter().for_each(|v| collect_handles(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ArtifactMeta, ArtifactStore};
    use crate::ledger::RunLedger;
    use crate::progress::ProgressStore;
    use crate::recorder::FlightRecorder;
    use mtx_types::LedgerStepStatus;
    use serde_json::json;

    /// A job with a ledger, events, a progress artifact and referenced artifacts.
    fn job() -> (tempfile::TempDir, JobDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let job = state.job("job-1").unwrap();
        job.create().unwrap();
        let store = ArtifactStore::open(&state.artifacts_dir()).unwrap();
        let blob = store
            .put(b"model response", ArtifactMeta { kind: "model_response".into(), ..Default::default() })
            .unwrap();
        let mut ledger = RunLedger::create(&job.run_ledger(), crate::ledger::tests::header()).unwrap();
        let s = crate::ledger::tests::step("MT-001", 1, LedgerStepStatus::InProgress);
        ledger.append_step(&s).unwrap();
        let mut done = s.clone();
        done.status = LedgerStepStatus::Completed;
        done.output_artifact_ref = Some(
            job.write_step_output(&crate::jobdir::tests::output(&s.idempotency_key, &s.step_id)).unwrap(),
        );
        ledger.append_step(&done).unwrap();
        let mut c = crate::recorder::tests::correlation();
        c.wp_id = "WP-1-Test-v1".into();
        let fr = FlightRecorder::create(&job.events(), c).unwrap();
        fr.emit(crate::recorder::tests::started("MT-001", 1)).unwrap();
        fr.emit(crate::recorder::Event::new(
            "FR-EVT-MT-015",
            json!({"wp_id": "WP-1-Test-v1", "mt_id": "MT-001", "candidate_ref": blob}),
        ))
        .unwrap();
        fr.emit(crate::recorder::tests::started("MT-001", 2)).unwrap();
        let mut doc = crate::rebuild::tests::sample_progress();
        doc.wp_id = "WP-1-Test-v1".into();
        ProgressStore::new(&job.progress_artifact()).save(&mut doc).unwrap();
        (dir, job, blob.path)
    }

    fn flip_byte(path: &Path, needle: &str) {
        let text = std::fs::read_to_string(path).unwrap();
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle} in {}", path.display()));
        let mut bytes = text.into_bytes();
        let i = at + needle.len() - 1;
        bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_clean_job_verifies() {
        let (dir, _job, _) = job();
        let report = verify_job(dir.path(), "job-1").unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.ledger_records, report.events), (3, 3));
        assert_eq!(report.artifacts_checked, 2, "the step output and the candidate blob");
    }

    #[test]
    fn a_one_byte_edit_in_the_events_log_is_found() {
        let (dir, job, _) = job();
        // Last line: no successor covers it, the record's own hash does.
        flip_byte(&job.events(), "\"iteration\":2");
        let report = verify_job(dir.path(), "job-1").unwrap();
        let p = report.first_problem().expect("detected");
        assert_eq!((p.file.as_str(), p.line), ("events.jsonl", Some(3)));
    }

    #[test]
    fn a_one_byte_edit_in_the_ledger_is_found() {
        let (dir, job, _) = job();
        flip_byte(&job.run_ledger(), "\"escalation_level\":0");
        let report = verify_job(dir.path(), "job-1").unwrap();
        let p = report.first_problem().expect("detected");
        assert_eq!((p.file.as_str(), p.line), ("run_ledger.jsonl", Some(2)));
    }

    #[test]
    fn a_one_byte_edit_in_an_artifact_blob_is_found() {
        let (dir, _job, blob) = job();
        let path = dir.path().join("artifacts").join(&blob);
        std::fs::write(&path, b"model responsf").unwrap();
        let report = verify_job(dir.path(), "job-1").unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].file, blob);
        assert!(report.problems[0].message.contains("expected sha256"));
    }

    #[test]
    fn a_one_byte_edit_in_the_progress_artifact_is_found() {
        let (dir, job, _) = job();
        flip_byte(&job.progress_artifact(), "\"name\":\"one");
        let report = verify_job(dir.path(), "job-1").unwrap();
        let p = report.first_problem().expect("detected");
        assert_eq!(p.file, "progress_artifact.json");
        assert!(p.message.contains("content_sha256"), "{}", p.message);
    }

    #[test]
    fn a_log_copied_from_another_job_is_found() {
        let (dir, job, _) = job();
        let state = StateDir::new(dir.path());
        let other = state.job("job-2").unwrap();
        other.create().unwrap();
        std::fs::copy(job.run_ledger(), other.run_ledger()).unwrap();
        std::fs::copy(job.events(), other.events()).unwrap();
        let report = verify_job(dir.path(), "job-2").unwrap();
        let files: Vec<&str> = report.problems.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files[0], "run_ledger.jsonl");
        assert!(report.problems[0].message.contains("names job job-1"), "{}", report.problems[0].message);
        assert!(files.contains(&"events.jsonl"));
    }

    /// Adds two plugin calls whose inputs live in the input pack: a policy call (the pack
    /// holds the bytes `input_hash` covers) and a model call whose prompt is elided.
    fn with_packed_inputs(job: &JobDir) {
        let mut pack = crate::inputs::InputPack::open(job.root()).unwrap();
        let policy_input = r#"{"history":["first","second"],"mt_id":"MT-001"}"#;
        let model_input = r#"{"model_id":"m","prompt":null}"#;
        let policy_at = pack.append(policy_input).unwrap();
        let model_at = pack.append(model_input).unwrap();
        pack.sync().unwrap();
        let mut ledger = RunLedger::open(&job.run_ledger()).unwrap();
        let call = |world: &str, input_hash: String, at: &InputRef, elided: Value| {
            LedgerRecord::PluginCall(crate::ledger::PluginCallRecord {
                plugin: world.into(),
                digest: "a".repeat(64),
                world: Some(world.into()),
                input_hash,
                output: json!({"input": null, "input_ref": at, "input_elided": elided}),
                mt_id: Some("MT-001".into()),
                step_id: None,
            })
        };
        ledger
            .append(&call("escalation-policy", sha256_hex(policy_input.as_bytes()), &policy_at, Value::Null))
            .unwrap();
        let elided = json!({"prompt": {"sha256": "c".repeat(64), "bytes": 10}});
        ledger.append(&call("model-backend", "d".repeat(64), &model_at, elided)).unwrap();
    }

    #[test]
    fn packed_plugin_inputs_are_checked_against_their_ledger_records() {
        let (dir, job, _) = job();
        with_packed_inputs(&job);
        let report = verify_job(dir.path(), "job-1").unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.inputs_checked, 2);

        let pack = job.root().join(INPUT_PACK_FILE);
        flip_byte(&pack, "\"first");
        let report = verify_job(dir.path(), "job-1").unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let p = &report.problems[0];
        assert_eq!(p.file, INPUT_PACK_FILE);
        assert!(p.message.contains("ledger record 4") && p.message.contains("hashes to"), "{}", p.message);

        // Cut inside the second input: the first is still wrong, the second is past the end.
        let bytes = std::fs::read(&pack).unwrap();
        std::fs::write(&pack, &bytes[..bytes.len() - 8]).unwrap();
        let report = verify_job(dir.path(), "job-1").unwrap();
        let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[1].contains("ledger record 5") && messages[1].contains("past the end"),
            "{messages:?}"
        );

        std::fs::remove_file(&pack).unwrap();
        let report = verify_job(dir.path(), "job-1").unwrap();
        assert!(report.problems[0].message.contains("2 ledger records name inputs"), "{:?}", report.problems);
    }

    #[test]
    fn an_unknown_job_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(verify_job(dir.path(), "nope"), Err(StoreError::Invalid { .. })));
    }
}
