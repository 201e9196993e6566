//! The Tool Bus envelopes: PlannedOperation (`poe-1.0`) and EngineResult (MTX-SPEC 3.17,
//! 10.2, 10.3), with their budget, output spec, determinism and evidence policy.
//!
//! These are plain serde records. They must never carry behaviour: validation lives in the
//! gates, execution in the engines. Unknown fields are preserved on read (MTX-SPEC 3) so a
//! newer planner's extra keys survive a round trip without changing what runs.

use std::fmt;

use mtx_types::ArtifactHandle;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The only `schema_version` this Tool Bus accepts (MTX-SPEC 10.1 rule 4).
pub const POE_SCHEMA_VERSION: &str = "poe-1.0";

/// Evidence policy of validation operations (MTX-SPEC 10.11).
pub const EVIDENCE_CAPTURE_STDOUT_STDERR: &str = "capture_stdout_stderr";

/// MTX-SPEC 10.4 determinism levels. Ordered from weakest (`D0`, live) to strongest
/// (`D3`, bitwise), so `requested <= ceiling` is the G-DET rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Determinism {
    D0,
    D1,
    D2,
    D3,
}

impl Determinism {
    pub fn as_str(self) -> &'static str {
        match self {
            Determinism::D0 => "D0",
            Determinism::D1 => "D1",
            Determinism::D2 => "D2",
            Determinism::D3 => "D3",
        }
    }

    /// Parses `D0..D3`, also the lower-case spelling the prior implementation wrote.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "D0" | "d0" => Some(Determinism::D0),
            "D1" | "d1" => Some(Determinism::D1),
            "D2" | "d2" => Some(Determinism::D2),
            "D3" | "d3" => Some(Determinism::D3),
            _ => None,
        }
    }

    /// D0 and D1 results are replayable only through captured evidence (MTX-SPEC 10.4).
    pub fn requires_evidence(self) -> bool {
        matches!(self, Determinism::D0 | Determinism::D1)
    }
}

impl fmt::Display for Determinism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Determinism {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Determinism {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Determinism::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown determinism level {s:?}, expected D0..D3"))
        })
    }
}

/// The evidence policy, always written as a string. On input the object form
/// `{required, notes}` of the prior implementation is accepted: `required: false` reads as
/// `none`, `required: true` reads as the notes text, or `capture_stdout_stderr` without notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePolicy(pub String);

impl EvidencePolicy {
    pub fn capture_stdout_stderr() -> Self {
        EvidencePolicy(EVIDENCE_CAPTURE_STDOUT_STDERR.to_owned())
    }

    /// Whether the policy asks for evidence at all (`none` and empty do not).
    pub fn captures(&self) -> bool {
        let s = self.0.trim();
        !s.is_empty() && s != "none"
    }
}

impl Serialize for EvidencePolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EvidencePolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Object {
                required: bool,
                #[serde(default)]
                notes: Option<String>,
            },
        }
        Ok(match Form::deserialize(d)? {
            Form::Text(s) => EvidencePolicy(s),
            Form::Object { required: false, .. } => EvidencePolicy("none".to_owned()),
            Form::Object { required: true, notes } => EvidencePolicy(
                notes
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| EVIDENCE_CAPTURE_STDOUT_STDERR.to_owned()),
            ),
        })
    }
}

/// MTX-SPEC 3.0 EntityRef.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: String,
    pub id: String,
}

/// One element of `inputs`: an artifact (hash-verified by G-INTEGRITY) or an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputRef {
    Artifact(ArtifactHandle),
    Entity(EntityRef),
}

/// Resource caps of one operation (MTX-SPEC 10.5 G-BUDGET). At least one must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Byte cap applied to each captured stream (stdout, stderr) and to engine outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Address-space cap of the child (RLIMIT_AS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// CPU-time cap of the child (RLIMIT_CPU, rounded up to whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_ms: Option<u64>,
    /// Process-count cap of the child's user (RLIMIT_NPROC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u64>,
    /// Largest file the child may write (RLIMIT_FSIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
}

impl Budget {
    pub fn any_set(&self) -> bool {
        self.max_duration_ms.is_some()
            || self.max_output_bytes.is_some()
            || self.max_memory_bytes.is_some()
            || self.max_cpu_ms.is_some()
            || self.max_processes.is_some()
            || self.max_file_bytes.is_some()
    }
}

/// Expected output types and the byte cap of the exported outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    #[serde(default)]
    pub expected_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// MTX-SPEC 10.2 PlannedOperation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOperation {
    pub schema_version: String,
    pub op_id: String,
    pub engine_id: String,
    /// SemVer requirement, or null for any version. Always written, null included.
    #[serde(default)]
    pub engine_version_req: Option<String>,
    pub operation: String,
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    pub params: Value,
    #[serde(default)]
    pub capabilities_requested: Vec<String>,
    #[serde(default)]
    pub capability_profile_id: String,
    #[serde(default)]
    pub budget: Budget,
    pub determinism: Determinism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_policy: Option<EvidencePolicy>,
    #[serde(default)]
    pub output_spec: OutputSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PlannedOperation {
    /// The 10.11 validation operation for one verify command, with a fresh v7 op id.
    pub fn verify_exec(command: &str, timeout_ms: u64, capability_profile_id: &str) -> Self {
        let tool = crate::caps::derive_proc_exec(command).unwrap_or_else(|_| "proc.exec:".to_owned());
        PlannedOperation {
            schema_version: POE_SCHEMA_VERSION.to_owned(),
            op_id: uuid::Uuid::now_v7().to_string(),
            engine_id: "engine.shell".to_owned(),
            engine_version_req: None,
            operation: "exec".to_owned(),
            inputs: Vec::new(),
            params: serde_json::json!({
                "command": command,
                "cwd": ".",
                "timeout_ms": timeout_ms,
                "env": {},
            }),
            capabilities_requested: vec![tool],
            capability_profile_id: capability_profile_id.to_owned(),
            budget: Budget {
                max_duration_ms: Some(timeout_ms),
                max_output_bytes: Some(10_485_760),
                ..Budget::default()
            },
            determinism: Determinism::D1,
            evidence_policy: Some(EvidencePolicy::capture_stdout_stderr()),
            output_spec: OutputSpec {
                expected_types: vec!["artifact.terminal_output".to_owned()],
                max_bytes: Some(10_485_760),
            },
            job_id: None,
            mt_id: None,
            trace_id: None,
            extra: Map::new(),
        }
    }
}

/// MTX-SPEC 10.3 status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    Succeeded,
    Failed,
    Denied,
}

/// A typed error of an EngineResult.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_ref: Option<ArtifactHandle>,
}

impl EngineError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        EngineError { code: code.to_owned(), message: message.into(), details_ref: None }
    }
}

/// Where and how the child ran: the environment identifiers of MTX-SPEC 10.3 and 10.10.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Whether a Landlock ruleset restricted the child's writes.
    pub landlock: bool,
    /// Landlock enforcement as the kernel reported it (`fully_enforced`,
    /// `partially_enforced`, `not_enforced`, `disabled`, or an error text).
    pub landlock_status: String,
    /// Directories the child could write beneath when Landlock was active.
    #[serde(default)]
    pub writable_paths: Vec<String>,
    /// rlimits applied to the child, by name (`RLIMIT_AS`, ...), in the kernel's units.
    #[serde(default)]
    pub rlimits: Map<String, Value>,
    pub process_group: bool,
    pub env_scrubbed: bool,
    pub stdin_null: bool,
    /// `argv` (no shell) or `shell:<program>` when the run config granted a shell.
    pub exec_mode: String,
}

/// MTX-SPEC 10.3 provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub engine_id: String,
    pub implementation_id: String,
    pub engine_version: String,
    pub implementation_version: String,
    pub operation: String,
    pub determinism: String,
    #[serde(default)]
    pub input_refs: Vec<String>,
    #[serde(default)]
    pub input_hashes: Vec<String>,
    #[serde(default)]
    pub output_refs: Vec<String>,
    #[serde(default)]
    pub output_hashes: Vec<String>,
    pub config_hash: String,
    #[serde(default)]
    pub capabilities_granted: Vec<String>,
    /// `{os, arch, host_pid, ...}` plus the sandbox record for process engines.
    #[serde(default)]
    pub environment: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxInfo>,
}

/// The `terminal_output.json` record of `engine.shell` (MTX-SPEC 10.12 item 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalOutput {
    pub command: String,
    pub cwd: String,
    pub exit_code: i32,
    pub timed_out: bool,
    pub cancelled: bool,
    pub truncated_bytes: u64,
    pub duration_ms: u64,
    pub stdout_ref: ArtifactHandle,
    pub stderr_ref: ArtifactHandle,
}

/// MTX-SPEC 10.3 EngineResult.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineResult {
    pub op_id: String,
    pub status: OpStatus,
    pub started_at: String,
    pub ended_at: String,
    #[serde(default)]
    pub outputs: Vec<ArtifactHandle>,
    #[serde(default)]
    pub evidence: Vec<ArtifactHandle>,
    pub provenance: Provenance,
    #[serde(default)]
    pub errors: Vec<EngineError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_ref: Option<ArtifactHandle>,
    /// The terminal summary of an `engine.shell` run, also stored as `terminal_output.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalOutput>,
    /// A small, bounded summary of an `engine.fs` operation (the full report is an output
    /// artifact): per-file pre/post hashes for writes, changed lines for diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
}
