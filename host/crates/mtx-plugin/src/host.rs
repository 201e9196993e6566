//! [`PluginHost`]: loads components and calls them, one fresh `Store` and instance per
//! call, inside the plugin's CPU deadline and memory cap, with a WASI context built from
//! its grants alone.
//!
//! Invariant: every call is reported to the [`PluginRecorder`] with the plugin's name,
//! digest, canonical input and outcome; a failing call returns a typed [`PluginError`]
//! and leaves the host able to serve the next call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde::Serialize;
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::bindings::{
    backend, config_iface, host as host_bindings, log_iface, planner, policy, selector, tool_bus, types,
    validator,
};
use crate::builtins;
use crate::engine::{build_engine, compile_cached, deadline_ticks};
use crate::error::{LoadError, PluginError, ReportedError};
use crate::grants::{Grant, secret_env_name};
use crate::recorder::{GrantUse, PluginCall, PluginRecorder};
use crate::spec::{PluginSource, PluginSpec, World};
use crate::state::{
    AllowListHooks, CallIdentity, HostState, HttpAllow, MemoryLimitExceeded, MemoryLimiter, NoToolBus,
    ToolBusPort,
};

/// The version of `mtx:plugin` this host implements.
pub const WIT_VERSION: &str = "0.1.0";

/// Options for a [`PluginHost`].
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

/// A loaded, type-checked plugin, ready to be called.
pub struct LoadedPlugin {
    pub spec: PluginSpec,
    /// sha256 of the component bytes.
    pub digest: String,
    pre: WorldPre,
    /// `spec.config`, shared by every call's state instead of copied into it (a replay
    /// backend's config holds a whole cassette).
    config: Arc<BTreeMap<String, String>>,
}

enum WorldPre {
    Planner(planner::MtPlannerPre<HostState>),
    Backend(backend::ModelBackendPre<HostState>),
    Selector(selector::LoraSelectorPre<HostState>),
    Policy(policy::EscalationPolicyPre<HostState>),
    Validator(validator::ValidatorPre<HostState>),
}

/// What a call may observe of the outside world, fixed by the caller and recorded.
#[derive(Clone)]
pub struct CallContext {
    /// The wall clock a pure plugin sees (RFC 3339).
    pub clock: String,
    /// Seed of the plugin's random source; `None` derives it from the input digest.
    pub seed: Option<u64>,
    /// The Tool Bus, for validator calls.
    pub toolbus: Option<Arc<dyn ToolBusPort>>,
    /// Time added to the plugin's deadline for work the host does on its behalf
    /// (validation commands, model latency).
    pub extra_deadline: Duration,
    /// A bound on this one call below the plugin's own deadline, for a call the run
    /// policy times on its own (a model swap's `swap_timeout_ms`): the call ends with
    /// `PluginError::Deadline` once it is reached.
    pub cap: Option<Duration>,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            clock: "1970-01-01T00:00:00Z".into(),
            seed: None,
            toolbus: None,
            extra_deadline: Duration::ZERO,
            cap: None,
        }
    }
}

pub struct PluginHost {
    engine: Engine,
    pooling: bool,
    linkers: BTreeMap<World, Linker<HostState>>,
    recorder: Arc<dyn PluginRecorder>,
    options: HostOptions,
}

impl PluginHost {
    pub fn new(options: HostOptions, recorder: Arc<dyn PluginRecorder>) -> anyhow::Result<Self> {
        let (engine, pooling) = build_engine()?;
        let mut linkers = BTreeMap::new();
        for world in World::ALL {
            linkers.insert(world, linker_for(&engine, world)?);
        }
        Ok(PluginHost { engine, pooling, linkers, recorder, options })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    pub fn recorder(&self) -> &Arc<dyn PluginRecorder> {
        &self.recorder
    }

    /// Reads the component bytes a spec names.
    pub fn component_bytes(spec: &PluginSpec) -> Result<Vec<u8>, LoadError> {
        match &spec.source {
            PluginSource::Builtin(name) => builtins::get(name).map(<[u8]>::to_vec).ok_or_else(|| {
                LoadError::UnknownBuiltin { name: name.clone(), available: builtins::names().join(", ") }
            }),
            PluginSource::Path(path) => std::fs::read(path)
                .map_err(|source| LoadError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Loads and type-checks a plugin: pin, component format, world, package version and
    /// imports are all checked here, before any guest code runs.
    pub fn load(&self, spec: &PluginSpec) -> Result<LoadedPlugin, LoadError> {
        let bytes = Self::component_bytes(spec)?;
        self.load_bytes(spec, &bytes)
    }

    pub fn load_bytes(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let plugin = spec.name.clone();
        let digest = mtx_types::sha256_hex(bytes);
        if let Some(pin) = &spec.sha256
            && !pin.eq_ignore_ascii_case(&digest)
        {
            return Err(LoadError::PinMismatch {
                plugin,
                expected: pin.to_ascii_lowercase(),
                actual: digest,
            });
        }
        match wasm_kind(bytes) {
            WasmKind::Component => {}
            WasmKind::CoreModule => return Err(LoadError::NotAComponent { plugin }),
            WasmKind::NotWasm => return Err(LoadError::NotWasm { plugin }),
        }
        let component = compile_cached(&self.engine, bytes, &digest, self.options.cache_dir.as_deref())
            .map_err(|e| LoadError::Invalid { plugin: plugin.clone(), reason: format!("{e:#}") })?;
        check_world(&self.engine, &component, spec)?;
        let linker = &self.linkers[&spec.world];
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::UnsatisfiedImport {
            plugin: plugin.clone(),
            world: spec.world.name().into(),
            reason: format!("{e:#}"),
        })?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            plugin: plugin.clone(),
            world: spec.world.name().into(),
            reason: format!("{e:#}"),
        };
        let pre = match spec.world {
            World::MtPlanner => {
                WorldPre::Planner(planner::MtPlannerPre::new(instance_pre).map_err(wrong_world)?)
            }
            World::ModelBackend => {
                WorldPre::Backend(backend::ModelBackendPre::new(instance_pre).map_err(wrong_world)?)
            }
            World::LoraSelector => {
                WorldPre::Selector(selector::LoraSelectorPre::new(instance_pre).map_err(wrong_world)?)
            }
            World::EscalationPolicy => {
                WorldPre::Policy(policy::EscalationPolicyPre::new(instance_pre).map_err(wrong_world)?)
            }
            World::Validator => {
                WorldPre::Validator(validator::ValidatorPre::new(instance_pre).map_err(wrong_world)?)
            }
        };
        Ok(LoadedPlugin { spec: spec.clone(), digest, pre, config: Arc::new(spec.config.clone()) })
    }

    fn build_state(
        &self,
        plugin: &LoadedPlugin,
        ctx: &CallContext,
        seed: u64,
        deadline: Instant,
    ) -> anyhow::Result<HostState> {
        let identity = CallIdentity {
            plugin: plugin.spec.name.as_str().into(),
            digest: plugin.digest.as_str().into(),
            recorder: self.recorder.clone(),
        };
        let record = |capability: String, detail: String, allowed: bool| {
            self.recorder.grant_use(&GrantUse {
                plugin: plugin.spec.name.clone(),
                digest: plugin.digest.clone(),
                capability,
                detail,
                allowed,
            })
        };
        // Nothing is inherited: no env, args, stdio, network or files beyond the grants.
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(true);
        let mut http_allow = Vec::new();
        let mut dirs: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for grant in &plugin.spec.grants {
            match grant {
                Grant::FsRead(dir) => {
                    dirs.entry(dir.clone()).or_insert(false);
                }
                Grant::FsWrite(dir) => {
                    dirs.insert(dir.clone(), true);
                }
                Grant::NetHttp { host, port } => {
                    http_allow.push(HttpAllow { host: host.clone(), port: *port })
                }
                Grant::Env(name) => match std::env::var(name) {
                    Ok(value) => {
                        wasi.env(name, value);
                        record(grant.to_string(), format!("provided {name}"), true);
                    }
                    Err(_) => {
                        record(grant.to_string(), format!("{name} is not set in the host environment"), true)
                    }
                },
                Grant::SecretsUse(id) => {
                    let var = secret_env_name(id);
                    match std::env::var(&var) {
                        Ok(value) => {
                            wasi.env(&var, value);
                            record(grant.to_string(), format!("provided secret {id} as {var}"), true);
                        }
                        Err(_) => record(
                            grant.to_string(),
                            format!("secret {id} is not available (set {var})"),
                            true,
                        ),
                    }
                }
            }
        }
        for (index, (dir, writable)) in dirs.iter().enumerate() {
            let guest = format!("/grant/{index}");
            let perms = if *writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(dir, &guest, perms)?;
            let mode = if *writable { "read-write" } else { "read-only" };
            record(
                format!("{}:{}", if *writable { "fs.write" } else { "fs.read" }, dir.display()),
                format!("preopened at {guest} ({mode})"),
                true,
            );
        }
        if plugin.spec.world.is_pure() {
            let clock = fixed_clock(&ctx.clock);
            wasi.wall_clock(FixedWallClock(clock));
            wasi.monotonic_clock(FixedMonotonicClock);
            wasi.secure_random(rand::rngs::StdRng::seed_from_u64(seed));
            wasi.insecure_random(rand::rngs::StdRng::seed_from_u64(seed.rotate_left(17)));
            wasi.insecure_random_seed(u128::from(seed));
        }
        let mut table = wasmtime::component::ResourceTable::new();
        table.set_max_capacity(10_000);
        Ok(HostState {
            wasi: wasi.build(),
            table,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            hooks: AllowListHooks { allowed: http_allow, identity: identity.clone(), deadline },
            limiter: MemoryLimiter { max_memory_bytes: plugin.spec.limits.memory_bytes },
            config: plugin.config.clone(),
            toolbus: ctx.toolbus.clone().unwrap_or_else(|| Arc::new(NoToolBus)),
            identity,
            logs_kept: 0,
            logs_dropped: 0,
        })
    }

    /// Runs one call in a fresh store and records it.
    fn invoke<I, O>(
        &self,
        plugin: &LoadedPlugin,
        function: &str,
        input: &I,
        ctx: &CallContext,
        call: impl FnOnce(&mut Store<HostState>, &WorldPre) -> wasmtime::Result<Result<O, ReportedError>>,
    ) -> Result<O, PluginError>
    where
        I: Serialize,
        O: Serialize,
    {
        let input_json = mtx_types::canonical_json(input);
        let input_sha256 = mtx_types::sha256_hex(&input_json);
        let seed = ctx.seed.unwrap_or_else(|| u64::from_str_radix(&input_sha256[..16], 16).unwrap_or(0));
        let own = plugin.spec.limits.cpu_deadline + ctx.extra_deadline;
        let limit = ctx.cap.map_or(own, |cap| cap.min(own));
        let started = Instant::now();
        let name = plugin.spec.name.clone();

        let mut logs_dropped = 0;
        let outcome: Result<O, PluginError> = (|| {
            let state = self
                .build_state(plugin, ctx, seed, started + limit)
                .map_err(|e| PluginError::Host { plugin: name.clone(), reason: format!("{e:#}") })?;
            let mut store = Store::new(&self.engine, state);
            store.limiter(|s| &mut s.limiter);
            store.set_epoch_deadline(deadline_ticks(limit));
            store.epoch_deadline_trap();
            let result = call(&mut store, &plugin.pre);
            let dropped = store.data().logs_dropped;
            logs_dropped = dropped;
            if dropped > 0 {
                self.recorder.plugin_log(&crate::recorder::PluginLog {
                    plugin: name.clone(),
                    level: "warn".into(),
                    message: format!("{dropped} further log lines were dropped"),
                    fields: Vec::new(),
                });
            }
            match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(reported)) => Err(PluginError::Reported { plugin: name.clone(), error: reported }),
                Err(e) => Err(classify(&name, e, limit)),
            }
        })();

        let duration_us = started.elapsed().as_micros() as u64;
        let (output, output_sha256, outcome_kind, error) = match &outcome {
            Ok(value) => {
                let json = mtx_types::canonical_json(value);
                let sha = mtx_types::sha256_hex(&json);
                (Some(String::from_utf8_lossy(&json).into_owned()), Some(sha), "ok".to_owned(), None)
            }
            Err(e) => (None, None, e.kind().to_owned(), Some(e.to_string())),
        };
        self.recorder.plugin_call(&PluginCall {
            plugin: name,
            role: plugin.spec.role.clone(),
            world: plugin.spec.world.name().to_owned(),
            digest: plugin.digest.clone(),
            world_version: WIT_VERSION.to_owned(),
            function: function.to_owned(),
            input_sha256,
            input: String::from_utf8_lossy(&input_json).into_owned(),
            output_sha256,
            output,
            outcome: outcome_kind,
            error,
            duration_us,
            clock: if plugin.spec.world.is_pure() { ctx.clock.clone() } else { "host".into() },
            seed: format!("{seed:016x}"),
            logs_dropped,
        });
        outcome
    }

    /// The plugin's own name, version and description.
    pub fn metadata(&self, plugin: &LoadedPlugin) -> Result<types::PluginMetadata, PluginError> {
        self.invoke(plugin, "metadata", &(), &CallContext::default(), |store, pre| {
            Ok(Ok(match pre {
                WorldPre::Planner(p) => {
                    p.instantiate(&mut *store)?.mtx_plugin_plugin().call_metadata(&mut *store)?
                }
                WorldPre::Backend(p) => {
                    p.instantiate(&mut *store)?.mtx_plugin_plugin().call_metadata(&mut *store)?
                }
                WorldPre::Selector(p) => {
                    p.instantiate(&mut *store)?.mtx_plugin_plugin().call_metadata(&mut *store)?
                }
                WorldPre::Policy(p) => {
                    p.instantiate(&mut *store)?.mtx_plugin_plugin().call_metadata(&mut *store)?
                }
                WorldPre::Validator(p) => {
                    p.instantiate(&mut *store)?.mtx_plugin_plugin().call_metadata(&mut *store)?
                }
            }))
        })
    }

    pub fn plan(
        &self,
        plugin: &LoadedPlugin,
        input: &types::PlannerInput,
        ctx: &CallContext,
    ) -> Result<Vec<types::MtDefinition>, PluginError> {
        let WorldPre::Planner(pre) = &plugin.pre else { return Err(wrong_role(plugin, World::MtPlanner)) };
        self.invoke(plugin, "plan", input, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_plan(&mut *store, input)?.map_err(Into::into))
        })
    }

    pub fn select_lora(
        &self,
        plugin: &LoadedPlugin,
        input: &types::LoraSelectionInput,
        ctx: &CallContext,
    ) -> Result<types::LoraSelection, PluginError> {
        let WorldPre::Selector(pre) = &plugin.pre else {
            return Err(wrong_role(plugin, World::LoraSelector));
        };
        self.invoke(plugin, "select", input, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_select(&mut *store, input)?.map_err(Into::into))
        })
    }

    pub fn decide(
        &self,
        plugin: &LoadedPlugin,
        input: &types::DecisionInput,
        ctx: &CallContext,
    ) -> Result<types::EscalationDecision, PluginError> {
        let WorldPre::Policy(pre) = &plugin.pre else {
            return Err(wrong_role(plugin, World::EscalationPolicy));
        };
        self.invoke(plugin, "decide", input, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_decide(&mut *store, input)?.map_err(Into::into))
        })
    }

    pub fn drop_back(
        &self,
        plugin: &LoadedPlugin,
        input: &types::DropBackInput,
        ctx: &CallContext,
    ) -> Result<types::DropBackDecision, PluginError> {
        let WorldPre::Policy(pre) = &plugin.pre else {
            return Err(wrong_role(plugin, World::EscalationPolicy));
        };
        self.invoke(plugin, "drop-back", input, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_drop_back(&mut *store, input)?.map_err(Into::into))
        })
    }

    pub fn validate(
        &self,
        plugin: &LoadedPlugin,
        input: &types::ValidationInput,
        ctx: &CallContext,
    ) -> Result<types::ValidatorReport, PluginError> {
        let WorldPre::Validator(pre) = &plugin.pre else { return Err(wrong_role(plugin, World::Validator)) };
        self.invoke(plugin, "validate", input, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_validate(&mut *store, input)?.map_err(Into::into))
        })
    }

    pub fn describe_model(
        &self,
        plugin: &LoadedPlugin,
        model_id: &str,
        ctx: &CallContext,
    ) -> Result<types::ModelProfile, PluginError> {
        let WorldPre::Backend(pre) = &plugin.pre else { return Err(wrong_role(plugin, World::ModelBackend)) };
        self.invoke(plugin, "describe-model", &model_id, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_describe_model(&mut *store, model_id)?.map_err(Into::into))
        })
    }

    pub fn prepare_model(
        &self,
        plugin: &LoadedPlugin,
        current: Option<&str>,
        target: &str,
        strategy: &str,
        ctx: &CallContext,
    ) -> Result<(), PluginError> {
        let WorldPre::Backend(pre) = &plugin.pre else { return Err(wrong_role(plugin, World::ModelBackend)) };
        self.invoke(plugin, "prepare-model", &(current, target, strategy), ctx, |store, _| {
            Ok(pre
                .instantiate(&mut *store)?
                .call_prepare_model(&mut *store, current, target, strategy)?
                .map_err(Into::into))
        })
    }

    pub fn complete(
        &self,
        plugin: &LoadedPlugin,
        request: &types::ModelRequest,
        ctx: &CallContext,
    ) -> Result<types::ModelResponse, PluginError> {
        let WorldPre::Backend(pre) = &plugin.pre else { return Err(wrong_role(plugin, World::ModelBackend)) };
        self.invoke(plugin, "complete", request, ctx, |store, _| {
            Ok(pre.instantiate(&mut *store)?.call_complete(&mut *store, request)?.map_err(Into::into))
        })
    }
}

fn wrong_role(plugin: &LoadedPlugin, expected: World) -> PluginError {
    PluginError::Host {
        plugin: plugin.spec.name.clone(),
        reason: format!("it implements {}, not {expected}", plugin.spec.world),
    }
}

/// Turns a wasmtime error into a typed plugin error, by type, never by message text.
fn classify(plugin: &str, err: wasmtime::Error, limit: Duration) -> PluginError {
    let plugin = plugin.to_owned();
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return PluginError::Deadline { plugin, limit };
        }
        return PluginError::Trap { plugin, trap: trap.to_string(), detail: format!("{err:?}") };
    }
    if let Some(mem) = err.downcast_ref::<MemoryLimitExceeded>() {
        return PluginError::MemoryLimit { plugin, desired: mem.desired, limit: mem.limit };
    }
    if err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return PluginError::Host {
            plugin,
            reason: format!("too many plugin instances alive at once: {err:#}"),
        };
    }
    // What is left failed while crossing the boundary: a return value the host refused to
    // lift (too large, or not of the world's types) or an instance that could not be set up.
    PluginError::BadOutput { plugin, reason: format!("{err:#}") }
}

fn linker_for(engine: &Engine, world: World) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
    host_bindings::mtx::plugin::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    log_iface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    config_iface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    if world == World::Validator {
        tool_bus::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    }
    Ok(linker)
}

enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

fn wasm_kind(bytes: &[u8]) -> WasmKind {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return WasmKind::NotWasm;
    }
    // Core modules carry version 1 in layer 0; components use layer 1.
    match (bytes[6], bytes[7]) {
        (0, 0) => WasmKind::CoreModule,
        (1, 0) => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

/// Checks the component's exports against the world and the package version, so a
/// component of another world or an incompatible contract is refused by name.
fn check_world(engine: &Engine, component: &Component, spec: &PluginSpec) -> Result<(), LoadError> {
    let plugin = spec.name.clone();
    let ty = component.component_type();
    let exports: Vec<(String, ComponentItem)> =
        ty.exports(engine).map(|(n, e)| (n.to_owned(), e.ty)).collect();
    let supported = semver::Version::parse(WIT_VERSION).expect("WIT_VERSION is semver");
    let mut found_version = None;
    for (name, _) in &exports {
        if let Some(rest) = name.strip_prefix("mtx:plugin/")
            && let Some((_, version)) = rest.split_once('@')
        {
            found_version = Some(version.to_owned());
        }
    }
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("mtx:plugin/")
            && let Some((_, version)) = rest.split_once('@')
            && found_version.is_none()
        {
            found_version = Some(version.to_owned());
        }
    }
    let Some(found) = found_version else {
        return Err(LoadError::WrongWorld {
            plugin,
            world: spec.world.name().into(),
            reason: "it exports no mtx:plugin interface (is it an mtx plugin?)".into(),
        });
    };
    let compatible = semver::Version::parse(&found)
        .map(|v| v.major == supported.major && (supported.major > 0 || v.minor == supported.minor))
        .unwrap_or(false);
    if !compatible {
        return Err(LoadError::IncompatibleVersion { plugin, found, supported: WIT_VERSION.into() });
    }
    let missing: Vec<&str> = spec
        .world
        .functions()
        .iter()
        .copied()
        .filter(|f| {
            !exports.iter().any(|(n, item)| n == f && matches!(item, ComponentItem::ComponentFunc(_)))
        })
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::WrongWorld {
            plugin,
            world: spec.world.name().into(),
            reason: format!(
                "missing export{} {}",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ")
            ),
        });
    }
    Ok(())
}

fn fixed_clock(rfc3339: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| {
            let secs = u64::try_from(t.timestamp()).ok()?;
            Some(Duration::new(secs, t.timestamp_subsec_nanos()))
        })
        .unwrap_or(Duration::ZERO)
}

/// The wall clock a pure plugin sees: always the recorded time of the call.
struct FixedWallClock(Duration);

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// The monotonic clock a pure plugin sees: time does not pass inside a decision.
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Path of a built-in for diagnostics.
pub fn describe_source(source: &PluginSource) -> String {
    source.to_string()
}

#[allow(dead_code)]
fn _assert_path(_: &Path) {}
