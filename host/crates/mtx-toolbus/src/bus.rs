//! The Tool Bus runtime: the one entry point through which an operation reaches an engine
//! (MTX-SPEC 10.1 rule 3, no bypass). `submit` runs the six gates in order, invokes the
//! engine, re-checks provenance and evidence on the result, stores the EngineResult as an
//! artifact and reports every gate outcome, capability check and tool call.
//!
//! A denial is a value (`ToolBusError::Denied`) carrying the typed `GateDenied` and a
//! `denied` EngineResult; it is never a panic. This module must never let an operation run
//! that a gate refused, and never hand an engine anything the gates did not resolve.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mtx_store::{ArtifactMeta, ArtifactStore, StoreError};
use mtx_types::{ArtifactHandle, canonical_json, now_rfc3339, sha256_hex};
use serde_json::{Map, Value, json};

use crate::caps::CapabilityProfile;
use crate::gates::{self, G_SAFETY_SANDBOX, GateDenied, GateEnv, GateOutcome, Prepared};
use crate::observer::{Actor, ToolBusObserver, ToolCallError, ToolCallRecord};
use crate::op::{Budget, EngineError, EngineResult, InputRef, OpStatus, PlannedOperation, Provenance};
use crate::registry::{EngineSpec, Registry};
use crate::sandbox::SandboxConfig;
use crate::shell::Spawner;

/// PATH searched when the run config names none and the host has no PATH.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a run config decides about the Tool Bus.
#[derive(Debug, Clone)]
pub struct ToolBusConfig {
    /// The workspace under execution; canonicalised by `ToolBus::new`.
    pub workspace_root: PathBuf,
    /// The job's capability profile.
    pub profile: CapabilityProfile,
    /// The job's verify commands, verbatim (`MT.verify[*].command` of every MT): the only
    /// command strings `engine.shell` will run (S2).
    pub verify_commands: Vec<String>,
    /// A shell program (for example `sh`) the run config grants for commands that need
    /// shell syntax; `None` means such commands are refused.
    pub shell_program: Option<String>,
    /// Environment variables the child receives besides PATH; their names are also the
    /// only names `params.env` may override.
    pub granted_env: Vec<(String, String)>,
    pub registry: Registry,
    /// The PATH programs are resolved against, `:`-separated; `None` takes the host's.
    pub path: Option<String>,
    pub sandbox: SandboxConfig,
    /// Workspace-relative prefixes `engine.fs` never writes, whatever an operation's scope
    /// says: the state directory when it lives in the workspace, and `.git` (a hook
    /// written there would run on the operator's next git command).
    pub protected_paths: Vec<String>,
}

impl ToolBusConfig {
    pub fn new(workspace_root: &Path, profile: CapabilityProfile) -> Self {
        ToolBusConfig {
            workspace_root: workspace_root.to_path_buf(),
            profile,
            verify_commands: Vec::new(),
            shell_program: None,
            granted_env: Vec::new(),
            registry: Registry::builtin(),
            path: None,
            sandbox: SandboxConfig::default(),
            protected_paths: vec![".mtx".to_owned(), ".git".to_owned()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolBusError {
    /// A gate refused the operation; `result` is the recorded `denied` EngineResult.
    #[error("{denial}")]
    Denied { denial: GateDenied, result: Box<EngineResult> },
    #[error("invalid tool bus configuration: {0}")]
    Config(String),
    #[error("invalid operation: {0}")]
    Invalid(String),
    #[error("artifact store failed: {0}")]
    Store(#[from] StoreError),
}

impl ToolBusError {
    pub fn denial(&self) -> Option<&GateDenied> {
        match self {
            ToolBusError::Denied { denial, .. } => Some(denial),
            _ => None,
        }
    }
}

/// The Tool Bus of one job.
pub struct ToolBus {
    config: ToolBusConfig,
    root: PathBuf,
    configured_path: Vec<PathBuf>,
    config_hash: String,
    artifacts: ArtifactStore,
    observer: Arc<dyn ToolBusObserver>,
    spawner: OnceLock<Spawner>,
}

/// What an engine needs from the bus for one operation.
pub(crate) struct EngineCtx<'a> {
    pub op: &'a PlannedOperation,
    pub engine: &'a EngineSpec,
    pub workspace_root: &'a Path,
    pub budget: &'a Budget,
    pub sandbox: &'a SandboxConfig,
    pub store: &'a ArtifactStore,
    pub config_hash: &'a str,
    pub capabilities_granted: &'a [String],
    pub input_hashes: &'a [String],
    pub started_at: String,
    /// The bus's process spawner, created on the first `engine.shell` operation.
    pub spawner: &'a OnceLock<Spawner>,
}

impl EngineCtx<'_> {
    /// Stores engine output with the sidecar metadata of 10.7 item 3.
    pub fn put(&self, kind: &str, bytes: &[u8], media_type: &str) -> Result<ArtifactHandle, StoreError> {
        self.store.put(
            bytes,
            ArtifactMeta {
                kind: kind.to_owned(),
                producer: self.engine.engine_id.clone(),
                op_id: Some(self.op.op_id.clone()),
                input_hashes: self.input_hashes.to_vec(),
                determinism: Some(self.op.determinism.as_str().to_owned()),
                job_id: self.op.job_id.clone(),
                media_type: Some(media_type.to_owned()),
                engine_version: Some(format!("{}@{}", self.engine.implementation_id, self.engine.version)),
                config_hash: Some(self.config_hash.to_owned()),
                ..ArtifactMeta::default()
            },
        )
    }

    pub fn empty_result(&self) -> EngineResult {
        EngineResult {
            op_id: self.op.op_id.clone(),
            status: OpStatus::Failed,
            started_at: self.started_at.clone(),
            ended_at: String::new(),
            outputs: Vec::new(),
            evidence: Vec::new(),
            provenance: provenance_base(
                self.op,
                self.engine,
                self.config_hash,
                self.capabilities_granted,
                self.input_hashes,
            ),
            errors: Vec::new(),
            logs_ref: None,
            terminal: None,
            report: None,
        }
    }

    pub fn finish(&self, mut result: EngineResult) -> EngineResult {
        result.ended_at = now_rfc3339();
        result.provenance.output_refs = result.outputs.iter().map(ArtifactHandle::canonical).collect();
        result.provenance.output_hashes = result.outputs.iter().map(|h| h.sha256.clone()).collect();
        result
    }
}

fn provenance_base(
    op: &PlannedOperation,
    engine: &EngineSpec,
    config_hash: &str,
    granted: &[String],
    input_hashes: &[String],
) -> Provenance {
    let mut environment = Map::new();
    environment.insert("os".into(), std::env::consts::OS.into());
    environment.insert("arch".into(), std::env::consts::ARCH.into());
    environment.insert("host_pid".into(), std::process::id().into());
    environment.insert("toolbus_version".into(), env!("CARGO_PKG_VERSION").into());
    Provenance {
        engine_id: engine.engine_id.clone(),
        implementation_id: engine.implementation_id.clone(),
        engine_version: engine.version.clone(),
        implementation_version: engine.implementation_version.clone(),
        operation: op.operation.clone(),
        determinism: op.determinism.as_str().to_owned(),
        input_refs: op
            .inputs
            .iter()
            .map(|i| match i {
                InputRef::Artifact(h) => h.canonical(),
                InputRef::Entity(e) => format!("{}:{}", e.kind, e.id),
            })
            .collect(),
        input_hashes: input_hashes.to_vec(),
        output_refs: Vec::new(),
        output_hashes: Vec::new(),
        config_hash: config_hash.to_owned(),
        capabilities_granted: granted.to_vec(),
        environment,
        sandbox: None,
    }
}

/// Who is submitting, and the plugin grants that narrow the job profile.
#[derive(Debug, Clone, Default)]
pub struct SubmitContext {
    pub actor: Actor,
    pub plugin_grants: Option<CapabilityProfile>,
    pub parent_span_id: Option<String>,
}

impl ToolBus {
    pub fn new(
        config: ToolBusConfig,
        artifacts: ArtifactStore,
        observer: Arc<dyn ToolBusObserver>,
    ) -> Result<Self, ToolBusError> {
        let root = config.workspace_root.canonicalize().map_err(|e| {
            ToolBusError::Config(format!(
                "workspace root {} cannot be resolved: {e}",
                config.workspace_root.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(ToolBusError::Config(format!(
                "workspace root {} is not a directory",
                root.display()
            )));
        }
        // Unknown ids are rejected (10.10.1), in the profile as in a request: a typo in a
        // grant must not silently grant nothing while the job looks configured.
        for id in config.profile.grants.iter().chain(config.profile.consents.iter()) {
            crate::caps::Capability::parse(id).map_err(|e| {
                ToolBusError::Config(format!("capability profile {}: {e}", config.profile.id))
            })?;
        }
        let path_text = config
            .path
            .clone()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| FALLBACK_PATH.to_owned());
        let configured_path: Vec<PathBuf> =
            path_text.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        let env_names: Vec<&str> = config.granted_env.iter().map(|(k, _)| k.as_str()).collect();
        let config_hash = sha256_hex(&canonical_json(&json!({
            "registry": config.registry,
            "profile": config.profile,
            "verify_commands": config.verify_commands,
            "shell_program": config.shell_program,
            "protected_paths": config.protected_paths,
            "granted_env": env_names,
            "path": path_text,
            "sandbox": {
                "landlock": config.sandbox.landlock,
                "require_landlock": config.sandbox.require_landlock,
                "extra_writable": config.sandbox.extra_writable,
            },
        })));
        Ok(ToolBus {
            config,
            root,
            configured_path,
            config_hash,
            artifacts,
            observer,
            spawner: OnceLock::new(),
        })
    }

    /// The canonical workspace root.
    pub fn workspace_root(&self) -> &Path {
        &self.root
    }

    pub fn config_hash(&self) -> &str {
        &self.config_hash
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    pub fn config(&self) -> &ToolBusConfig {
        &self.config
    }

    /// Submits an operation on behalf of the host.
    pub fn submit(&self, op: PlannedOperation) -> Result<EngineResult, ToolBusError> {
        self.submit_with(op, &SubmitContext { actor: Actor::host(), ..SubmitContext::default() })
    }

    /// Submits an operation with an explicit actor and, for a plugin, its grants.
    pub fn submit_with(
        &self,
        op: PlannedOperation,
        ctx: &SubmitContext,
    ) -> Result<EngineResult, ToolBusError> {
        self.submit_recorded(op, ctx).map(|(result, _)| result)
    }

    /// Like `submit_with`, also returning the handle of the stored EngineResult (the
    /// `result_ref` of the `tool_call` event), when storing it succeeded.
    pub fn submit_recorded(
        &self,
        op: PlannedOperation,
        ctx: &SubmitContext,
    ) -> Result<(EngineResult, Option<ArtifactHandle>), ToolBusError> {
        let started_at = now_rfc3339();
        let clock = Instant::now();
        let actor_id = ctx.actor.id();
        let env = GateEnv {
            workspace_root: &self.root,
            profile: &self.config.profile,
            plugin_grants: ctx.plugin_grants.as_ref(),
            verify_commands: &self.config.verify_commands,
            shell_program: self.config.shell_program.as_deref(),
            protected_paths: &self.config.protected_paths,
            granted_env: &self.config.granted_env,
            configured_path: &self.configured_path,
            registry: &self.config.registry,
            artifacts: &self.artifacts,
            observer: self.observer.as_ref(),
            actor_id: &actor_id,
        };
        let prep = match gates::run_gates(&op, &env) {
            Ok(p) => p,
            Err(denial) => {
                let result = self.denied_result(&op, &denial, started_at);
                return Err(self.deny(&op, ctx, denial, result, clock));
            }
        };
        let mut result = self.execute(&op, &prep, started_at);
        if op.engine_id == "engine.shell"
            && let Some(sb) = &result.provenance.sandbox
        {
            let outcome = if sb.landlock {
                GateOutcome::Pass
            } else {
                GateOutcome::Degraded { reason: format!("landlock not enforced: {}", sb.landlock_status) }
            };
            self.observer.gate_outcome(&op, G_SAFETY_SANDBOX, &outcome);
        }
        for (gate, check) in [
            (gates::G_PROVENANCE, gates::provenance::check_result(&result)),
            (gates::G_DET, gates::det::check_result(&op, &result)),
        ] {
            gates::report(self.observer.as_ref(), &op, gate, &check);
            if let Err(denial) = check {
                result.status = OpStatus::Denied;
                result.errors.push(EngineError::new(&denial.code, &denial.reason));
                return Err(self.deny(&op, ctx, denial, result, clock));
            }
        }
        let result_ref = self.store_result(&op, &result);
        self.record_call(&op, ctx, &result, None, result_ref.as_ref(), clock);
        Ok((result, result_ref))
    }

    fn execute(&self, op: &PlannedOperation, prep: &Prepared, started_at: String) -> EngineResult {
        // G-SCHEMA records the registered engine and G-CAP refuses an unregistered one, so
        // after the gates this is always set; the arm below only keeps the bus panic-free.
        let Some(engine) = &prep.engine else {
            let denial = GateDenied::new(
                gates::G_CAP,
                gates::codes::CAP_ENGINE_UNKNOWN,
                format!("engine {} is not registered", op.engine_id),
            );
            return self.denied_result(op, &denial, started_at);
        };
        let ctx = EngineCtx {
            op,
            engine,
            workspace_root: &self.root,
            budget: &prep.budget,
            sandbox: &self.config.sandbox,
            store: &self.artifacts,
            config_hash: &self.config_hash,
            capabilities_granted: &prep.capabilities_granted,
            input_hashes: &prep.input_hashes,
            started_at,
            spawner: &self.spawner,
        };
        match (op.engine_id.as_str(), op.operation.as_str()) {
            ("engine.shell", "exec") => match &prep.exec {
                Some(plan) => crate::shell::execute(&ctx, plan),
                None => missing_plan(&ctx),
            },
            ("engine.fs", "write_files") => match &prep.writes {
                Some(plan) => crate::fs_engine::execute_writes(&ctx, plan),
                None => missing_plan(&ctx),
            },
            ("engine.fs", "read_files") => match &prep.reads {
                Some(plan) => crate::fs_engine::execute_reads(&ctx, plan),
                None => missing_plan(&ctx),
            },
            ("engine.fs", "diff") => match &prep.diff {
                Some(plan) => crate::fs_engine::execute_diff(&ctx, plan),
                None => missing_plan(&ctx),
            },
            _ => {
                // A registry override may declare engines this build has no adapter for.
                let mut r = ctx.empty_result();
                r.errors.push(EngineError::new(
                    "ENGINE_NOT_IMPLEMENTED",
                    format!("no adapter for {} {} in this build", op.engine_id, op.operation),
                ));
                ctx.finish(r)
            }
        }
    }

    fn denied_result(&self, op: &PlannedOperation, denial: &GateDenied, started_at: String) -> EngineResult {
        let mut provenance = Provenance {
            engine_id: op.engine_id.clone(),
            operation: op.operation.clone(),
            determinism: op.determinism.as_str().to_owned(),
            config_hash: self.config_hash.clone(),
            ..Provenance::default()
        };
        if let Some(e) = self.config.registry.engine(&op.engine_id) {
            provenance.implementation_id = e.implementation_id.clone();
            provenance.engine_version = e.version.clone();
            provenance.implementation_version = e.implementation_version.clone();
        }
        EngineResult {
            op_id: op.op_id.clone(),
            status: OpStatus::Denied,
            started_at,
            ended_at: now_rfc3339(),
            outputs: Vec::new(),
            evidence: Vec::new(),
            provenance,
            errors: vec![EngineError::new(&denial.code, format!("{}: {}", denial.gate, denial.reason))],
            logs_ref: None,
            terminal: None,
            report: None,
        }
    }

    fn deny(
        &self,
        op: &PlannedOperation,
        ctx: &SubmitContext,
        denial: GateDenied,
        result: EngineResult,
        clock: Instant,
    ) -> ToolBusError {
        let result_ref = self.store_result(op, &result);
        self.record_call(op, ctx, &result, Some(&denial), result_ref.as_ref(), clock);
        ToolBusError::Denied { denial, result: Box::new(result) }
    }

    /// Stores the EngineResult itself; a failure to store is recorded in the tool call as
    /// a missing `result_ref`, never hidden.
    fn store_result(&self, op: &PlannedOperation, result: &EngineResult) -> Option<ArtifactHandle> {
        let bytes = serde_json::to_vec(result).ok()?;
        self.artifacts
            .put(
                &bytes,
                ArtifactMeta {
                    kind: "engine_result".into(),
                    producer: "mtx.toolbus".into(),
                    op_id: Some(op.op_id.clone()),
                    determinism: Some(op.determinism.as_str().to_owned()),
                    job_id: op.job_id.clone(),
                    media_type: Some("application/json".into()),
                    config_hash: Some(self.config_hash.clone()),
                    ..ArtifactMeta::default()
                },
            )
            .ok()
    }

    fn record_call(
        &self,
        op: &PlannedOperation,
        ctx: &SubmitContext,
        result: &EngineResult,
        denial: Option<&GateDenied>,
        result_ref: Option<&ArtifactHandle>,
        clock: Instant,
    ) {
        let spec = self.config.registry.engine(&op.engine_id).and_then(|e| e.operation(&op.operation));
        let side_effect = spec.map(|s| s.side_effect.clone()).unwrap_or_else(|| "EXECUTE".into());
        let idempotency = spec.map(|s| s.idempotency.clone()).unwrap_or_else(|| "NON_IDEMPOTENT".into());
        let args_hash = sha256_hex(&canonical_json(&op.params));
        let idempotency_key = (idempotency == "IDEMPOTENT_WITH_KEY").then(|| args_hash.clone());
        let error = match denial {
            Some(d) => Some(ToolCallError {
                code: d.code.clone(),
                kind: "denied".into(),
                message: format!("{}: {}", d.gate, d.reason),
                retryable: false,
            }),
            None => result.errors.first().map(|e| ToolCallError {
                code: e.code.clone(),
                kind: "engine".into(),
                message: e.message.clone(),
                retryable: e.code == gates::codes::SBOX_TIMEOUT,
            }),
        };
        let files = match op.engine_id.as_str() {
            "engine.fs" => touched_files(&op.params),
            _ => Vec::new(),
        };
        let record = ToolCallRecord {
            trace_id: op.trace_id.clone().unwrap_or_default(),
            tool_call_id: op.op_id.clone(),
            tool_id: format!("{}.{}", op.engine_id, op.operation),
            tool_version: self
                .config
                .registry
                .engine(&op.engine_id)
                .map(|e| e.version.clone())
                .unwrap_or_default(),
            side_effect,
            idempotency,
            idempotency_key,
            actor: ctx.actor.clone(),
            ok: result.status == OpStatus::Succeeded,
            args_hash,
            result_ref: result_ref.map(ArtifactHandle::canonical),
            result_hash: result_ref.map(|h| h.sha256.clone()),
            error,
            started_at: result.started_at.clone(),
            ended_at: result.ended_at.clone(),
            duration_ms: clock.elapsed().as_millis() as u64,
            workspace_ids: vec![self.root.display().to_string()],
            artifacts: result
                .outputs
                .iter()
                .chain(result.evidence.iter())
                .map(ArtifactHandle::canonical)
                .collect(),
            files,
            capability_ids: op.capabilities_requested.clone(),
            parent_span_id: ctx.parent_span_id.clone(),
        };
        self.observer.tool_call(&record);
    }
}

fn touched_files(params: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["files", "baseline"] {
        if let Some(a) = params[key].as_array() {
            out.extend(a.iter().filter_map(|f| f["path"].as_str().map(str::to_owned)));
        }
    }
    if let Some(a) = params["paths"].as_array() {
        out.extend(a.iter().filter_map(|p| p.as_str().map(str::to_owned)));
    }
    out
}

fn missing_plan(ctx: &EngineCtx<'_>) -> EngineResult {
    let mut r = ctx.empty_result();
    r.errors.push(EngineError::new("ENGINE_PLAN_MISSING", "the gates resolved no plan for this operation"));
    ctx.finish(r)
}
