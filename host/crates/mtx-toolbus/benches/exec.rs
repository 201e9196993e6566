//! Tool Bus overhead, measured against a baseline in the same run (STYLE.md rule 16):
//!
//! 1. gate + spawn + capture for `true` and for a small real command (`ls -l /usr/bin`),
//!    as a ratio against a bare `std::process::Command` of the same argv with piped
//!    output. Three Tool Bus variants: the gates and the sandboxed runner alone (no
//!    evidence), the same without Landlock, and the full `submit` (evidence, sidecars and
//!    the EngineResult stored durably, fsync included).
//! 2. `engine.fs` / `write_files` of 5 files of 10 KB, durable (temp + fsync + rename +
//!    directory fsync), p50 and p99.
//!
//! Run: `cargo bench -p mtx-toolbus --bench exec` (release profile). Samples alternate
//! between the variants so machine drift hits them alike; medians are reported.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtx_store::{ArtifactMeta, ArtifactStore};
use mtx_toolbus::gates::{self, GateEnv};
use mtx_toolbus::observer::RecordingObserver;
use mtx_toolbus::op::{Budget, Determinism, OutputSpec, POE_SCHEMA_VERSION};
use mtx_toolbus::sandbox::SandboxConfig;
use mtx_toolbus::shell::{RunLimits, Spawner, run};
use mtx_toolbus::{CapabilityProfile, PlannedOperation, ToolBus, ToolBusConfig};
use serde_json::json;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn profile() -> CapabilityProfile {
    CapabilityProfile::new("bench", &["proc.exec:true", "proc.exec:ls", "fs.write", "fs.read"])
}

fn exec_op(command: &str) -> PlannedOperation {
    let mut op = PlannedOperation::verify_exec(command, 30_000, "bench");
    op.job_id = Some("job-bench".into());
    op.trace_id = Some("trace-bench".into());
    op
}

fn bus(ws: &std::path::Path, state: &std::path::Path, landlock: bool) -> ToolBus {
    let mut cfg = ToolBusConfig::new(ws, profile());
    cfg.verify_commands = vec!["true".into(), "ls -l /usr/bin".into()];
    cfg.path = Some(PATH.into());
    cfg.sandbox = SandboxConfig { landlock, ..SandboxConfig::default() };
    ToolBus::new(cfg, ArtifactStore::open(state).unwrap(), Arc::new(RecordingObserver::new())).unwrap()
}

/// Gates plus the sandboxed runner, without storing evidence.
fn gated_run(bus: &ToolBus, command: &str, spawner: &Spawner) -> usize {
    let op = exec_op(command);
    let obs = RecordingObserver::new();
    let cfg = bus.config();
    let configured: Vec<std::path::PathBuf> = PATH.split(':').map(Into::into).collect();
    let env = GateEnv {
        workspace_root: bus.workspace_root(),
        profile: &cfg.profile,
        plugin_grants: None,
        verify_commands: &cfg.verify_commands,
        shell_program: None,
        protected_paths: &cfg.protected_paths,
        granted_env: &cfg.granted_env,
        configured_path: &configured,
        registry: &cfg.registry,
        artifacts: bus.artifacts(),
        observer: &obs,
        actor_id: "host",
    };
    let prep = gates::run_gates(&op, &env).unwrap();
    let plan = prep.exec.unwrap();
    let limits = RunLimits { timeout: Duration::from_secs(30), stream_cap: 10_485_760, rlimits: Vec::new() };
    let c = run(&plan, &limits, spawner).unwrap();
    assert_eq!(c.exit_code, 0);
    c.stdout.len()
}

fn bare(argv: &[&str], cwd: &std::path::Path, scrubbed: bool) -> usize {
    let mut cmd = Command::new(argv[0]);
    if scrubbed {
        cmd.env_clear().env("PATH", PATH);
    }
    let out = cmd
        .args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout.len()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn exec_bench(label: &str, command: &str, argv: &[&str], n: usize) {
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let b_ll = bus(ws.path(), state.path(), true);
    let b_plain = bus(ws.path(), state.path(), false);
    let sp_ll = Spawner::new(b_ll.workspace_root(), &SandboxConfig::default());
    let sp_plain =
        Spawner::new(b_ll.workspace_root(), &SandboxConfig { landlock: false, ..SandboxConfig::default() });
    println!("{label}: landlock enforced on this machine: {}", sp_ll.landlock_enforced());
    let mut t_bare = Vec::new();
    let mut t_bare_scrubbed = Vec::new();
    let mut t_gated = Vec::new();
    let mut t_gated_nol = Vec::new();
    let mut t_full = Vec::new();
    for _ in 0..20 {
        bare(argv, ws.path(), false);
        gated_run(&b_ll, command, &sp_ll);
    }
    for _ in 0..n {
        let t = Instant::now();
        bare(argv, ws.path(), false);
        t_bare.push(t.elapsed());
        let t = Instant::now();
        bare(argv, ws.path(), true);
        t_bare_scrubbed.push(t.elapsed());
        let t = Instant::now();
        gated_run(&b_ll, command, &sp_ll);
        t_gated.push(t.elapsed());
        let t = Instant::now();
        gated_run(&b_plain, command, &sp_plain);
        t_gated_nol.push(t.elapsed());
        let t = Instant::now();
        b_ll.submit(exec_op(command)).unwrap();
        t_full.push(t.elapsed());
    }
    let base = median(&mut t_bare);
    let base_s = median(&mut t_bare_scrubbed);
    let g = median(&mut t_gated);
    let gn = median(&mut t_gated_nol);
    let f = median(&mut t_full);
    println!(
        "{label}: n={n} median bare {:.0} us, bare with the bus's scrubbed env {:.0} us",
        us(base),
        us(base_s)
    );
    println!(
        "  gates + spawn + capture, landlock on : {:.0} us  ratio {:.3} (vs scrubbed bare {:.3})",
        us(g),
        us(g) / us(base),
        us(g) / us(base_s)
    );
    println!(
        "  gates + spawn + capture, landlock off: {:.0} us  ratio {:.3} (vs scrubbed bare {:.3})",
        us(gn),
        us(gn) / us(base),
        us(gn) / us(base_s)
    );
    println!("  full submit (durable evidence)       : {:.0} us  ratio {:.3}", us(f), us(f) / us(base));
}

fn write_bench(n: usize) {
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let b = bus(ws.path(), state.path(), true);
    let names: Vec<String> = (0..5).map(|i| format!("src/f{i}.rs")).collect();
    let mut times = Vec::new();
    for iter in 0..n + 10 {
        // 5 x 10 KB is over the 32 KB inline rule, so the contents travel as artifacts
        // (stored before the clock starts, as the loop stores a model's edits first).
        let files: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let bytes = format!("{iter:07}{i}").repeat(1280);
                let meta = ArtifactMeta { kind: "edit".into(), ..ArtifactMeta::default() };
                let h = b.artifacts().put(bytes.as_bytes(), meta).unwrap();
                json!({"path": p, "content_ref": h})
            })
            .collect();
        let scope: Vec<&str> = names.iter().map(String::as_str).collect();
        let (modify, create): (Vec<&str>, Vec<&str>) =
            if iter == 0 { (vec![], scope) } else { (scope, vec![]) };
        let op = PlannedOperation {
            schema_version: POE_SCHEMA_VERSION.into(),
            op_id: uuid::Uuid::now_v7().to_string(),
            engine_id: "engine.fs".into(),
            engine_version_req: None,
            operation: "write_files".into(),
            inputs: Vec::new(),
            params: json!({"files": files, "scope": {"modify": modify, "create": create}}),
            capabilities_requested: vec!["fs.write".into()],
            capability_profile_id: "bench".into(),
            budget: Budget { max_duration_ms: Some(30_000), ..Budget::default() },
            determinism: Determinism::D3,
            evidence_policy: None,
            output_spec: OutputSpec::default(),
            job_id: Some("job-bench".into()),
            mt_id: None,
            trace_id: Some("trace-bench".into()),
            extra: serde_json::Map::new(),
        };
        let t = Instant::now();
        b.submit(op).unwrap();
        if iter >= 10 {
            times.push(t.elapsed());
        }
    }
    let p50 = pct(&mut times, 0.50);
    let p99 = pct(&mut times, 0.99);
    println!(
        "write_files 5 x 10 KB durable (content by reference): n={n} p50 {:.2} ms  p99 {:.2} ms",
        us(p50) / 1e3,
        us(p99) / 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let n = std::env::var("MTX_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    println!("tmp dir: {}", std::env::temp_dir().display());
    exec_bench("true", "true", &["/usr/bin/true"], n);
    exec_bench("ls -l /usr/bin", "ls -l /usr/bin", &["/usr/bin/ls", "-l", "/usr/bin"], n);
    write_bench(n);
}
