//! Durability benchmarks of mtx-store (MTX-SPEC 13.5). Run with `cargo bench -p mtx-store`.
//!
//! Every figure is printed next to its ratio to a baseline measured in the same run: one
//! `write` + `fsync` of a small file, the cheapest durable write the disk allows. The
//! files live under the cargo target directory (a real disk, not a tmpfs) unless
//! `MTX_BENCH_DIR` names another place. Targets: progress replace p99 <= 5 ms, event
//! emission p99 <= 1 ms, scan + reconcile of a 10,000-step job <= 200 ms.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mtx_store::ledger::{LedgerHeader, LedgerRecord, RunLedger};
use mtx_store::recorder::{Correlation, Event, FlightRecorder};
use mtx_store::{ProgressStore, StateDir, StepOutput, recovery, verify_job};
use mtx_types::{
    ExecutionPolicy, IterationOutcome, IterationRecord, LearningContext, LedgerStep, LedgerStepStatus,
    MTProgressEntry, ProgressArtifact, ProgressStatus, idempotency_key, sha256_hex, step_id,
};
use serde_json::json;

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats { p50: at(0.50), p99: at(0.99) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, s: &Stats, base: &Stats) {
    println!(
        "{name:<34} p50 {:>8.3} ms ({:>5.2}x baseline)   p99 {:>8.3} ms ({:>5.2}x baseline)",
        ms(s.p50),
        s.p50.as_secs_f64() / base.p50.as_secs_f64(),
        ms(s.p99),
        s.p99.as_secs_f64() / base.p99.as_secs_f64()
    );
}

fn sample(n: usize, mut f: impl FnMut(usize)) -> Stats {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i);
        out.push(t.elapsed());
    }
    stats(out)
}

fn bench_root() -> PathBuf {
    let base = std::env::var_os("MTX_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&base).unwrap();
    base
}

fn correlation() -> Correlation {
    Correlation {
        trace_id: uuid::Uuid::now_v7().to_string(),
        job_id: "bench".into(),
        workflow_run_id: uuid::Uuid::now_v7().to_string(),
        wp_id: "WP-1-Bench-v1".into(),
    }
}

fn header() -> LedgerHeader {
    LedgerHeader {
        ledger_id: uuid::Uuid::now_v7().to_string(),
        wp_id: "WP-1-Bench-v1".into(),
        job_id: "bench".into(),
        created_at: mtx_types::now_rfc3339(),
    }
}

fn step(mt: &str, n: u32, status: LedgerStepStatus, output: Option<mtx_types::ArtifactHandle>) -> LedgerStep {
    LedgerStep {
        step_id: step_id(mt, n),
        idempotency_key: idempotency_key(mt, n, "m", None, &sha256_hex(&n.to_le_bytes())),
        status,
        started_at: Some(mtx_types::now_rfc3339()),
        completed_at: None,
        output_artifact_ref: output,
        error: None,
        recoverable: true,
        escalation_level: 0,
    }
}

fn record(mt: &str, n: u32) -> IterationRecord {
    IterationRecord {
        iteration: n,
        step_id: step_id(mt, n),
        model_id: "qwen2.5-coder:7b".into(),
        lora_id: None,
        escalation_level: 0,
        started_at: mtx_types::now_rfc3339(),
        completed_at: mtx_types::now_rfc3339(),
        duration_ms: 1200,
        tokens_prompt: 1800,
        tokens_completion: 400,
        claimed_complete: false,
        validation_passed: Some(false),
        validation_evidence_ref: None,
        outcome: IterationOutcome::Retry,
        failure_category: None,
        error_summary: Some("test failed".into()),
        context_snapshot_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// A mid-sized progress artifact: 8 MTs with 5 iterations each.
fn progress() -> ProgressArtifact {
    let micro_tasks = (1..=8)
        .map(|i| {
            let mt = format!("MT-{i:03}");
            let mut e = MTProgressEntry::pending(mt.clone(), format!("task {i}"));
            e.status = mtx_types::MTStatus::InProgress;
            e.iterations = (1..=5).map(|n| record(&mt, n)).collect();
            e
        })
        .collect();
    ProgressArtifact {
        schema_version: "1.0".into(),
        wp_id: "WP-1-Bench-v1".into(),
        job_id: "bench".into(),
        created_at: mtx_types::now_rfc3339(),
        updated_at: mtx_types::now_rfc3339(),
        completed_at: None,
        status: ProgressStatus::InProgress,
        policy: ExecutionPolicy::default(),
        learning_context: LearningContext::default(),
        current_state: Default::default(),
        micro_tasks,
        aggregate_stats: Default::default(),
        extra: Default::default(),
    }
}

/// A job with `steps` ledger steps (in_progress + completed records each), the last one
/// left in progress with its output written, and up to 500 events.
fn big_job(root: &Path, steps: u32) -> Duration {
    let t = Instant::now();
    let job = StateDir::new(root).job("bench").unwrap();
    job.create().unwrap();
    let mut ledger = RunLedger::create(&job.run_ledger(), header()).unwrap();
    let fr = FlightRecorder::create(&job.events(), correlation()).unwrap();
    let mut p = progress();
    p.micro_tasks.truncate(1);
    p.micro_tasks[0].iterations.clear();
    ProgressStore::new(&job.progress_artifact()).save(&mut p).unwrap();
    let shared = StepOutput {
        step_id: step_id("MT-001", 1),
        idempotency_key: "f".repeat(64),
        prompt_hash: sha256_hex(b"p"),
        context_snapshot_id: uuid::Uuid::now_v7().to_string(),
        context_snapshot_hash: sha256_hex(b"c"),
        context_snapshot_ref: None,
        prompt_envelope_hashes: None,
        prompt_snapshot_ref: None,
        output_snapshot_ref: None,
        validation_ref: None,
        mt_id: "MT-001".into(),
        iteration_record: None,
        loop_commit: None,
    };
    let handle = job.write_step_output(&shared).unwrap();
    // Batched appends (one fsync per thousand records) so building the job does not
    // dominate the run; the records are the same as the loop's single appends.
    let mut batch = Vec::new();
    for n in 1..=steps {
        batch.push(LedgerRecord::Step(step("MT-001", n, LedgerStepStatus::InProgress, None)));
        if n < steps {
            batch.push(LedgerRecord::Step(step(
                "MT-001",
                n,
                LedgerStepStatus::Completed,
                Some(handle.clone()),
            )));
        } else {
            let mut last = shared.clone();
            last.idempotency_key = step("MT-001", n, LedgerStepStatus::Pending, None).idempotency_key;
            job.write_step_output(&last).unwrap();
        }
        if batch.len() >= 1000 || n == steps {
            ledger.append_all(&batch).unwrap();
            batch.clear();
        }
    }
    for n in 1..=steps.min(500) {
        fr.emit(Event::new(
            "FR-EVT-MT-002",
            json!({"wp_id": "WP-1-Bench-v1", "mt_id": "MT-001", "iteration": n}),
        ))
        .unwrap();
    }
    t.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, with no flag:
    // then only check that it runs, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 5 } else { 300 };
    let root = tempfile::tempdir_in(bench_root()).unwrap();
    println!("mtx-store durable benchmarks in {} ({} samples each)", root.path().display(), n);

    // Baseline: overwrite 256 bytes of an existing small file and fsync it.
    let base_path = root.path().join("baseline.bin");
    let mut f =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&base_path).unwrap();
    let payload = [7u8; 256];
    let base = sample(n, |_| {
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&payload).unwrap();
        f.sync_all().unwrap();
    });
    report("baseline write+fsync (256 B)", &base, &base);

    let store = ProgressStore::new(&root.path().join("progress_artifact.json"));
    let mut doc = progress();
    let size = store.save(&mut doc).unwrap();
    let s = sample(n, |_| {
        store.save(&mut doc).unwrap();
    });
    report(&format!("progress replace ({} KiB)", size / 1024), &s, &base);

    let mut ledger = RunLedger::create(&root.path().join("run_ledger.jsonl"), header()).unwrap();
    let s = sample(n, |i| {
        ledger.append_step(&step("MT-001", i as u32 + 1, LedgerStepStatus::InProgress, None)).unwrap();
    });
    report("ledger append (step record)", &s, &base);

    let fr = FlightRecorder::create(&root.path().join("events.jsonl"), correlation()).unwrap();
    let s = sample(n, |i| {
        fr.emit(Event::new(
            "FR-EVT-MT-002",
            json!({"wp_id": "WP-1-Bench-v1", "mt_id": "MT-001", "iteration": i + 1}),
        ))
        .unwrap();
    });
    report("event emission (durable)", &s, &base);

    // Group commit, as a running job's recorder does: events are written at once and made
    // durable by one sync at the loop's next barrier (about six events per barrier in the
    // loop bench job). Per event: the emission cost plus a sixth of the sync.
    let grouped = FlightRecorder::create(&root.path().join("events-grouped.jsonl"), correlation()).unwrap();
    grouped.set_group_commit(true).unwrap();
    let s = sample(n, |i| {
        grouped
            .emit(Event::new(
                "FR-EVT-MT-002",
                json!({"wp_id": "WP-1-Bench-v1", "mt_id": "MT-001", "iteration": i + 1}),
            ))
            .unwrap();
    });
    report("event emission (group commit, no sync)", &s, &base);
    let s = sample(n, |i| {
        for k in 0..6 {
            grouped
                .emit(Event::new(
                    "FR-EVT-MT-002",
                    json!({"wp_id": "WP-1-Bench-v1", "mt_id": "MT-001", "iteration": i * 6 + k}),
                ))
                .unwrap();
        }
        grouped.sync().unwrap();
    });
    report("6 events + one barrier sync", &s, &base);

    let steps = if quick { 50 } else { 10_000 };
    let state = root.path().join("state");
    let built = big_job(&state, steps);
    println!("built a job with {steps} ledger steps in {:.1} ms", ms(built));
    let job = StateDir::new(&state).job("bench").unwrap();
    let t = Instant::now();
    let found = recovery::scan(&state).unwrap();
    let report_r = recovery::reconcile(&job).unwrap();
    let took = t.elapsed();
    assert_eq!(found.len(), 1);
    assert_eq!(report_r.steps_recovered, 1);
    println!(
        "{:<34} {:>8.3} ms ({:>5.1}x baseline p50) for {steps} steps, {} ledger records",
        "recovery scan + reconcile",
        ms(took),
        took.as_secs_f64() / base.p50.as_secs_f64(),
        2 * steps
    );

    let t = Instant::now();
    let v = verify_job(&state, "bench").unwrap();
    let took = t.elapsed();
    assert!(v.is_ok(), "{:?}", v.problems.first());
    println!(
        "{:<34} {:>8.0} records/s ({} records in {:.1} ms; {:.1}x baseline p50)",
        "verify throughput",
        v.records() as f64 / took.as_secs_f64(),
        v.records(),
        ms(took),
        took.as_secs_f64() / base.p50.as_secs_f64()
    );
}
