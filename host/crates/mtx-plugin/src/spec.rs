//! What the run config says about one plugin: where its component comes from, its pin,
//! its grants, its limits and its own configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::grants::Grant;

/// The five plugin worlds of `mtx:plugin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    MtPlanner,
    ModelBackend,
    LoraSelector,
    EscalationPolicy,
    Validator,
}

impl World {
    pub const ALL: [World; 5] = [
        World::MtPlanner,
        World::ModelBackend,
        World::LoraSelector,
        World::EscalationPolicy,
        World::Validator,
    ];

    pub fn name(self) -> &'static str {
        match self {
            World::MtPlanner => "mt-planner",
            World::ModelBackend => "model-backend",
            World::LoraSelector => "lora-selector",
            World::EscalationPolicy => "escalation-policy",
            World::Validator => "validator",
        }
    }

    /// The functions the world exports at its top level.
    pub fn functions(self) -> &'static [&'static str] {
        match self {
            World::MtPlanner => &["plan"],
            World::ModelBackend => &["describe-model", "prepare-model", "complete"],
            World::LoraSelector => &["select"],
            World::EscalationPolicy => &["decide", "drop-back"],
            World::Validator => &["validate"],
        }
    }

    /// Policy worlds must be pure: fixed clocks and a seeded random source, so every
    /// decision reproduces under `mtx replay`.
    pub fn is_pure(self) -> bool {
        !matches!(self, World::ModelBackend)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a component's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// `builtin:<name>`: embedded in the `mtx` binary.
    Builtin(String),
    /// A `.wasm` component on disk.
    Path(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "builtin:{name}"),
            PluginSource::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Per-call limits of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub memory_bytes: usize,
    /// Deadline of one call, measured while the call runs (guest code and host calls).
    pub cpu_deadline: Duration,
}

impl Limits {
    pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

    pub fn default_for(world: World) -> Self {
        let deadline = match world {
            World::MtPlanner => Duration::from_secs(10),
            World::ModelBackend => Duration::from_secs(330),
            World::Validator => Duration::from_secs(60),
            World::LoraSelector | World::EscalationPolicy => Duration::from_secs(1),
        };
        Limits { memory_bytes: Self::DEFAULT_MEMORY_BYTES, cpu_deadline: deadline }
    }
}

/// Everything the host needs to load and call one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name used in records and errors (the built-in name or the file stem).
    pub name: String,
    /// The run-config role (`planner`, `model_backend`, `lora_selector`,
    /// `escalation_policy`, `validators`).
    pub role: String,
    pub world: World,
    pub source: PluginSource,
    pub sha256: Option<String>,
    pub grants: Vec<Grant>,
    pub limits: Limits,
    pub config: BTreeMap<String, String>,
}

impl PluginSpec {
    /// A built-in plugin with no grants and default limits.
    pub fn builtin(name: &str, role: &str, world: World) -> Self {
        PluginSpec {
            name: name.to_owned(),
            role: role.to_owned(),
            world,
            source: PluginSource::Builtin(name.to_owned()),
            sha256: None,
            grants: Vec::new(),
            limits: Limits::default_for(world),
            config: BTreeMap::new(),
        }
    }

    /// A component file with no grants and default limits.
    pub fn file(path: impl Into<PathBuf>, role: &str, world: World) -> Self {
        let path = path.into();
        let name =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
        PluginSpec {
            name,
            role: role.to_owned(),
            world,
            source: PluginSource::Path(path),
            sha256: None,
            grants: Vec::new(),
            limits: Limits::default_for(world),
            config: BTreeMap::new(),
        }
    }
}
