//! The run configuration file (`mtx.toml`): which component fills each plugin role,
//! what each plugin is granted, its limits and settings, the execution policy, the LoRA
//! registry and the Tool Bus allow-list.
//!
//! Parsing is strict: an unknown key or an unknown capability string is an error that
//! names it and says where it is. Defaults grant nothing. The reference of every key is
//! host/docs/run-config.md; `RUN_CONFIG_SCHEMA` is its JSON Schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mtx_executor::{PluginSet, ToolBusSettings};
use mtx_plugin::{Grant, Limits, PluginSource, PluginSpec, World};
use mtx_types::{ExecutionPolicy, LoRAInfo};
use serde::Deserialize;

/// The JSON Schema of the run configuration, published for editors and CI checks.
pub const RUN_CONFIG_SCHEMA: &str = include_str!("../docs/run-config.schema.json");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read run config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("run config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("run config {path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    policy: Option<toml::Table>,
    #[serde(default)]
    loras: Vec<toml::Table>,
    #[serde(default)]
    toolbus: RawToolBus,
    capability_profile_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    planner: Option<RawPlugin>,
    model_backend: Option<RawPlugin>,
    lora_selector: Option<RawPlugin>,
    escalation_policy: Option<RawPlugin>,
    validators: Option<Vec<RawPlugin>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    component: String,
    sha256: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_bytes: Option<u64>,
    cpu_deadline_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolBus {
    #[serde(default)]
    proc_exec: Vec<String>,
    shell_program: Option<String>,
    #[serde(default)]
    env: Vec<String>,
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The file it came from (None for the built-in defaults).
    pub path: Option<PathBuf>,
    pub plugins: PluginSet,
    pub policy: ExecutionPolicy,
    pub loras: Vec<LoRAInfo>,
    pub toolbus: ToolBusSettings,
    pub capability_profile_id: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            path: None,
            plugins: PluginSet::defaults(),
            policy: ExecutionPolicy::default(),
            loras: Vec::new(),
            toolbus: ToolBusSettings { proc_exec: Vec::new(), shell_program: None, env: Vec::new() },
            capability_profile_id: "default".into(),
        }
    }
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, path, &base)
    }

    /// Parses config text; relative paths in it are resolved against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<RunConfig, ConfigError> {
        let shown = path.display().to_string();
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: shown.clone(), message: one_line(&e.to_string()) })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: shown.clone(),
            key: key.to_owned(),
            message,
        };

        let defaults = PluginSet::defaults();
        let plugin = |raw: Option<RawPlugin>, role: &str, world: World, default: PluginSpec| match raw {
            None => Ok(default),
            Some(raw) => plugin_spec(raw, role, world, base)
                .map_err(|(key, msg)| invalid(&format!("plugins.{role}.{key}"), msg)),
        };
        let validators = match raw.plugins.validators {
            None => defaults.validators.clone(),
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    plugin_spec(raw, "validators", World::Validator, base)
                        .map_err(|(key, msg)| invalid(&format!("plugins.validators[{i}].{key}"), msg))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let plugins = PluginSet {
            planner: plugin(raw.plugins.planner, "planner", World::MtPlanner, defaults.planner.clone())?,
            model_backend: plugin(
                raw.plugins.model_backend,
                "model_backend",
                World::ModelBackend,
                defaults.model_backend.clone(),
            )?,
            lora_selector: plugin(
                raw.plugins.lora_selector,
                "lora_selector",
                World::LoraSelector,
                defaults.lora_selector.clone(),
            )?,
            escalation_policy: plugin(
                raw.plugins.escalation_policy,
                "escalation_policy",
                World::EscalationPolicy,
                defaults.escalation_policy.clone(),
            )?,
            validators,
        };

        let policy = match raw.policy {
            None => ExecutionPolicy::default(),
            Some(table) => policy_from(table).map_err(|(key, msg)| invalid(&key, msg))?,
        };
        if let Err(problems) = policy.validate() {
            return Err(invalid("policy", problems.join("; ")));
        }

        let loras = raw
            .loras
            .into_iter()
            .enumerate()
            .map(|(i, table)| {
                let value = serde_json::to_value(&table)
                    .map_err(|e| invalid(&format!("loras[{i}]"), e.to_string()))?;
                check_keys(&value, LORA_KEYS)
                    .map_err(|k| invalid(&format!("loras[{i}].{k}"), "unknown key".into()))?;
                serde_json::from_value::<LoRAInfo>(value)
                    .map_err(|e| invalid(&format!("loras[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;

        for program in &raw.toolbus.proc_exec {
            if program.is_empty() || program.contains('/') || program.contains(char::is_whitespace) {
                return Err(invalid(
                    "toolbus.proc_exec",
                    format!(
                        "`{program}` must be a bare program name such as `cargo` (resolved on the scrubbed PATH)"
                    ),
                ));
            }
        }
        Ok(RunConfig {
            path: Some(path.to_owned()),
            plugins,
            policy,
            loras,
            toolbus: ToolBusSettings {
                proc_exec: raw.toolbus.proc_exec,
                shell_program: raw.toolbus.shell_program,
                env: raw.toolbus.env,
            },
            capability_profile_id: raw.capability_profile_id.unwrap_or_else(|| "default".into()),
        })
    }
}

const POLICY_KEYS: &[&str] = &[
    "max_iterations_per_mt",
    "max_total_iterations",
    "max_duration_ms",
    "escalation_chain",
    "cloud_escalation_allowed",
    "drop_back_strategy",
    "lora_selection",
    "pause_points",
    "enable_distillation",
    "extensions",
    "automation_level",
    "max_total_tokens",
    "explicit_lora_id",
];
const LEVEL_KEYS: &[&str] =
    &["level", "model_id", "lora_id", "lora_selector", "is_cloud", "is_hard_gate", "context_window"];
const LORA_KEYS: &[&str] = &[
    "lora_id",
    "lora_version",
    "base_model_id",
    "trained_on_task_types",
    "specialization",
    "weak_on_task_types",
    "last_trained_at",
    "eval_metrics",
    "training_priority",
];

fn check_keys(value: &serde_json::Value, allowed: &[&str]) -> Result<(), String> {
    if let Some(map) = value.as_object() {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(key.clone());
            }
        }
    }
    Ok(())
}

/// Overlays `[policy]` on the spec defaults.
fn policy_from(table: toml::Table) -> Result<ExecutionPolicy, (String, String)> {
    let overlay = serde_json::to_value(&table).map_err(|e| ("policy".to_owned(), e.to_string()))?;
    check_keys(&overlay, POLICY_KEYS).map_err(|k| (format!("policy.{k}"), "unknown key".to_owned()))?;
    if let Some(chain) = overlay.get("escalation_chain").and_then(|c| c.as_array()) {
        for (i, level) in chain.iter().enumerate() {
            check_keys(level, LEVEL_KEYS)
                .map_err(|k| (format!("policy.escalation_chain[{i}].{k}"), "unknown key".to_owned()))?;
        }
    }
    let mut merged = serde_json::to_value(ExecutionPolicy::default()).expect("policy serialises");
    if let (Some(base), Some(over)) = (merged.as_object_mut(), overlay.as_object()) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(merged).map_err(|e| ("policy".to_owned(), e.to_string()))
}

fn plugin_spec(
    raw: RawPlugin,
    role: &str,
    world: World,
    base: &Path,
) -> Result<PluginSpec, (String, String)> {
    let source = match raw.component.strip_prefix("builtin:") {
        Some(name) => {
            if mtx_plugin::builtins::get(name).is_none() {
                return Err((
                    "component".into(),
                    format!(
                        "unknown built-in `{name}` (available: {})",
                        mtx_plugin::builtins::names().join(", ")
                    ),
                ));
            }
            PluginSource::Builtin(name.to_owned())
        }
        None => PluginSource::Path(base.join(&raw.component)),
    };
    let name = match &source {
        PluginSource::Builtin(name) => name.clone(),
        PluginSource::Path(path) => {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| role.into())
        }
    };
    if let Some(pin) = &raw.sha256
        && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(("sha256".into(), "must be 64 hexadecimal characters".into()));
    }
    let grants = raw
        .grants
        .iter()
        .map(|g| g.parse::<Grant>().map_err(|e| ("grants".to_owned(), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut limits = Limits::default_for(world);
    if let Some(bytes) = raw.limits.memory_bytes {
        if bytes < (1 << 20) || bytes > mtx_plugin::engine::MAX_PLUGIN_MEMORY as u64 {
            return Err((
                "limits.memory_bytes".into(),
                format!("must be between 1 MiB and {} bytes", mtx_plugin::engine::MAX_PLUGIN_MEMORY),
            ));
        }
        limits.memory_bytes = bytes as usize;
    }
    if let Some(ms) = raw.limits.cpu_deadline_ms {
        if ms == 0 || ms > 3_600_000 {
            return Err(("limits.cpu_deadline_ms".into(), "must be between 1 and 3600000".into()));
        }
        limits.cpu_deadline = Duration::from_millis(ms);
    }
    let mut config = BTreeMap::new();
    for (key, value) in raw.config {
        // `<key>_file` settings are read by the host, so the plugin needs no file grant:
        // `cassette_file = "cassette.json"` reaches the plugin as `cassette` (the text).
        if let Some(stem) = key.strip_suffix("_file") {
            let toml::Value::String(rel) = &value else {
                return Err((format!("config.{key}"), "must be a file path".into()));
            };
            let path = base.join(rel);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| (format!("config.{key}"), format!("cannot read {}: {e}", path.display())))?;
            config.insert(stem.to_owned(), text);
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            other => serde_json::to_string(&other).map_err(|e| (format!("config.{key}"), e.to_string()))?,
        };
        config.insert(key, text);
    }
    Ok(PluginSpec {
        name,
        role: role.to_owned(),
        world,
        source,
        sha256: raw.sha256.map(|s| s.to_ascii_lowercase()),
        grants,
        limits,
        config,
    })
}

fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunConfig, ConfigError> {
        RunConfig::parse(text, Path::new("mtx.toml"), Path::new("."))
    }

    #[test]
    fn empty_config_means_defaults_and_no_grants() {
        let config = parse("").unwrap();
        assert_eq!(config.plugins.planner.source, PluginSource::Builtin("planner-default".into()));
        assert!(config.plugins.validators.iter().all(|v| v.grants.is_empty()));
        assert!(config.toolbus.proc_exec.is_empty());
        assert_eq!(config.policy, ExecutionPolicy::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[plugins.planner]\ncomponent = \"builtin:planner-default\"\ncolour = \"red\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse("[policy]\nmax_iterations = 3\n").unwrap_err();
        assert!(err.to_string().contains("policy.max_iterations"), "{err}");
        let err = parse("[toolbus]\nallow = []\n").unwrap_err();
        assert!(err.to_string().contains("allow"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_named() {
        let err = parse(
            "[plugins.model_backend]\ncomponent = \"builtin:backend-openai\"\ngrants = [\"net.tcp:x\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("plugins.model_backend.grants") && text.contains("net.tcp:x"), "{text}");
    }

    #[test]
    fn policy_overlays_defaults_and_is_validated() {
        let config = parse("[policy]\nmax_iterations_per_mt = 2\n").unwrap();
        assert_eq!(config.policy.max_iterations_per_mt, 2);
        assert_eq!(config.policy.escalation_chain, ExecutionPolicy::default().escalation_chain);
        assert!(parse("[policy]\nmax_iterations_per_mt = 99\n").is_err());
    }

    #[test]
    fn limits_grants_and_pins_are_checked() {
        let config = parse(
            "[plugins.model_backend]\ncomponent = \"builtin:backend-openai\"\ngrants = [\"net.http:127.0.0.1:11434\"]\n\
             [plugins.model_backend.limits]\ncpu_deadline_ms = 5000\n[plugins.model_backend.config]\nbase_url = \"http://127.0.0.1:11434/v1\"\nmodels = { a = 1 }\n",
        )
        .unwrap();
        let backend = &config.plugins.model_backend;
        assert_eq!(backend.grants, vec!["net.http:127.0.0.1:11434".parse::<Grant>().unwrap()]);
        assert_eq!(backend.limits.cpu_deadline, Duration::from_secs(5));
        assert_eq!(backend.config["models"], r#"{"a":1}"#);
        assert!(
            parse("[plugins.planner]\ncomponent = \"builtin:planner-default\"\nsha256 = \"xyz\"\n").is_err()
        );
        assert!(parse("[plugins.planner]\ncomponent = \"builtin:no-such-plugin\"\n").is_err());
    }
}
