//! Shared fixtures of the Tool Bus suites: a temp workspace and state dir, a bus with a
//! recording observer, operation builders, and the denial assertion every adversarial case
//! uses (typed denial, observer record, nothing ran, nothing changed).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtx_store::ArtifactStore;
use mtx_toolbus::gates::GateOutcome;
use mtx_toolbus::op::{Budget, Determinism, EvidencePolicy, OutputSpec, POE_SCHEMA_VERSION};
use mtx_toolbus::{
    CapabilityProfile, EngineResult, GateDenied, OpStatus, PlannedOperation, RecordingObserver,
    SandboxConfig, ToolBus, ToolBusConfig, ToolBusError,
};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const PROFILE: &str = "coder";
pub const TRUSTED_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Tools the default profile allows.
pub const TOOLS: &[&str] =
    &["true", "false", "echo", "sleep", "yes", "head", "cat", "printenv", "pwd", "printf", "sh"];

pub struct Fixture {
    pub ws: TempDir,
    pub state: TempDir,
    pub bus: ToolBus,
    pub obs: Arc<RecordingObserver>,
}

impl Fixture {
    pub fn root(&self) -> PathBuf {
        self.ws.path().canonicalize().unwrap()
    }

    pub fn store(&self) -> &ArtifactStore {
        self.bus.artifacts()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.ws.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.ws.path().join(rel)).ok()
    }
}

pub fn default_profile() -> CapabilityProfile {
    let mut grants: Vec<String> = TOOLS.iter().map(|t| format!("proc.exec:{t}")).collect();
    grants.push("fs.read".into());
    grants.push("fs.write".into());
    CapabilityProfile { id: PROFILE.into(), grants, consents: Vec::new() }
}

/// A bus over a fresh workspace with `verify` as the job's verify commands.
pub fn fixture_with(verify: &[&str], tweak: impl FnOnce(&mut ToolBusConfig, &Path)) -> Fixture {
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = ToolBusConfig::new(ws.path(), default_profile());
    cfg.verify_commands = verify.iter().map(|s| (*s).to_owned()).collect();
    cfg.path = Some(TRUSTED_PATH.into());
    cfg.sandbox = SandboxConfig::default();
    tweak(&mut cfg, ws.path());
    let obs = Arc::new(RecordingObserver::new());
    let store = ArtifactStore::open(state.path()).unwrap();
    let bus = ToolBus::new(cfg, store, obs.clone()).unwrap();
    Fixture { ws, state, bus, obs }
}

pub fn fixture(verify: &[&str]) -> Fixture {
    fixture_with(verify, |_, _| {})
}

fn correlate(mut op: PlannedOperation) -> PlannedOperation {
    op.job_id = Some("job-1".into());
    op.mt_id = Some("MT-001".into());
    op.trace_id = Some(uuid::Uuid::now_v7().to_string());
    op
}

/// The 10.11 validation operation for `command`.
pub fn exec_op(command: &str, timeout_ms: u64) -> PlannedOperation {
    correlate(PlannedOperation::verify_exec(command, timeout_ms, PROFILE))
}

fn fs_op(operation: &str, params: Value, caps: &[&str]) -> PlannedOperation {
    correlate(PlannedOperation {
        schema_version: POE_SCHEMA_VERSION.into(),
        op_id: uuid::Uuid::now_v7().to_string(),
        engine_id: "engine.fs".into(),
        engine_version_req: None,
        operation: operation.into(),
        inputs: Vec::new(),
        params,
        capabilities_requested: caps.iter().map(|c| (*c).to_owned()).collect(),
        capability_profile_id: PROFILE.into(),
        budget: Budget {
            max_duration_ms: Some(30_000),
            max_output_bytes: Some(10_485_760),
            ..Budget::default()
        },
        determinism: Determinism::D3,
        evidence_policy: None,
        output_spec: OutputSpec::default(),
        job_id: None,
        mt_id: None,
        trace_id: None,
        extra: serde_json::Map::new(),
    })
}

/// `engine.fs` / `write_files` of `files` (a JSON array) with the given scope.
pub fn write_op(files: Value, modify: &[&str], create: &[&str]) -> PlannedOperation {
    fs_op(
        "write_files",
        json!({"files": files, "scope": {"modify": modify, "create": create}}),
        &["fs.write"],
    )
}

pub fn read_op(paths: &[&str]) -> PlannedOperation {
    fs_op("read_files", json!({ "paths": paths }), &["fs.read"])
}

pub fn diff_op(baseline: Value) -> PlannedOperation {
    fs_op("diff", json!({ "baseline": baseline }), &["fs.read"])
}

pub fn with_d1(mut op: PlannedOperation) -> PlannedOperation {
    op.determinism = Determinism::D1;
    op.evidence_policy = Some(EvidencePolicy::capture_stdout_stderr());
    op
}

/// Every file under `dir` (symlinks as their target text, special files by name only)
/// with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, std::fs::read_link(&p).unwrap().display().to_string().into_bytes());
            } else if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                // FIFOs, sockets, devices: never opened (a FIFO would block the reader).
                out.insert(format!("{rel}|special"), Vec::new());
            }
        }
    }
    out
}

/// Submits `op`, which must be denied by `gate` with `code`; checks the denial is typed,
/// recorded by the observer (gate outcome and a failed tool call), that no evidence was
/// produced, and that the workspace is byte-for-byte unchanged.
pub fn assert_denied(fx: &Fixture, op: PlannedOperation, gate: &str, code: &str) -> GateDenied {
    let before = snapshot(fx.ws.path());
    let op_id = op.op_id.clone();
    let err = fx.bus.submit(op).expect_err("the operation must be denied");
    let ToolBusError::Denied { denial, result } = err else { panic!("expected a gate denial, got {err:?}") };
    assert_eq!((denial.gate.as_str(), denial.code.as_str()), (gate, code), "denial: {denial}");
    assert_eq!(result.status, OpStatus::Denied);
    assert!(result.errors.iter().any(|e| e.code == code));
    assert_eq!(fx.obs.denial_for(&op_id).as_ref(), Some(&denial), "the observer recorded the denial");
    let gates = fx.obs.gates_for(&op_id);
    assert!(
        matches!(gates.last(), Some((g, GateOutcome::Deny(_))) if g == gate),
        "last gate outcome is the denial"
    );
    let call =
        fx.obs.tool_calls().into_iter().find(|c| c["tool_call_id"] == op_id).expect("tool_call recorded");
    assert_eq!(call["ok"], false);
    assert_eq!(call["error"]["code"], code);
    assert_eq!(snapshot(fx.ws.path()), before, "the workspace must be unchanged");
    denial
}

/// Submits `op`, which must run; returns the result.
pub fn run_ok(fx: &Fixture, op: PlannedOperation) -> EngineResult {
    match fx.bus.submit(op) {
        Ok(r) => r,
        Err(e) => panic!("operation was refused: {e}"),
    }
}

pub fn stdout_of(fx: &Fixture, r: &EngineResult) -> Vec<u8> {
    fx.store().get(&r.terminal.as_ref().expect("terminal output").stdout_ref).unwrap()
}
