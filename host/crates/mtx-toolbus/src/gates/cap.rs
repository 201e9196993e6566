//! G-CAP: capabilities and consent, deny by default (MTX-SPEC 10.5, 10.10).
//!
//! Every requested id must parse, be declared by the engine, be granted by the job's profile
//! (and by the calling plugin's manifest, when a plugin asks) and, for `net.http`,
//! `device.*` and `secrets.use`, have a recorded consent. For `engine.shell` the command
//! must be one of the job's verify commands verbatim (S2), its tool must be requested and
//! granted as `proc.exec:<tool>`, and the program must resolve, outside the workspace, to
//! the binary the trusted PATH names. Every check is reported to the observer. This gate
//! must never grant anything the profile does not name.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{G_CAP, GateDenied, GateEnv, GatePass, GateResult, Prepared, codes, inside};
use crate::caps::{Capability, tool_name};
use crate::op::PlannedOperation;
use crate::registry::version_satisfies;

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_CAP, code, reason)
}

/// Environment variables a verify command may never have overridden: they would change
/// which binary runs or what it loads.
const NEVER_OVERRIDDEN: &[&str] =
    &["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "IFS", "BASH_ENV", "ENV"];

pub fn check(op: &PlannedOperation, env: &GateEnv<'_>, prep: &mut Prepared) -> GateResult {
    if op.capability_profile_id.trim().is_empty() {
        return Err(deny(codes::CAP_PROFILE_MISMATCH, "capability_profile_id is missing"));
    }
    if op.capability_profile_id != env.profile.id {
        return Err(deny(
            codes::CAP_PROFILE_MISMATCH,
            format!(
                "capability profile {:?} is not the job's profile {:?}",
                op.capability_profile_id, env.profile.id
            ),
        ));
    }
    let engine = env.registry.engine(&op.engine_id).ok_or_else(|| {
        deny(codes::CAP_ENGINE_UNKNOWN, format!("engine {} is not registered", op.engine_id))
    })?;
    let spec = engine.operation(&op.operation).ok_or_else(|| {
        deny(codes::CAP_ENGINE_UNKNOWN, format!("engine {} has no operation {}", op.engine_id, op.operation))
    })?;
    if let Some(req) = op.engine_version_req.as_deref() {
        match version_satisfies(&engine.version, req) {
            Some(true) => {}
            Some(false) => {
                return Err(deny(
                    codes::CAP_ENGINE_VERSION,
                    format!(
                        "engine {} version {} does not satisfy {req:?}",
                        engine.engine_id, engine.version
                    ),
                ));
            }
            None => {
                return Err(deny(
                    codes::CAP_ENGINE_VERSION,
                    format!("engine_version_req {req:?} does not parse"),
                ));
            }
        }
    }
    if op.capabilities_requested.is_empty() {
        return Err(deny(codes::CAP_NONE_REQUESTED, "capabilities_requested is empty"));
    }
    let declared: Vec<Capability> =
        engine.capabilities.iter().filter_map(|c| Capability::parse(c).ok()).collect();
    let mut requested = Vec::new();
    for id in &op.capabilities_requested {
        let cap = match Capability::parse(id) {
            Ok(c) => c,
            Err(e) => {
                env.observer.capability_check(op, env.actor_id, id, false);
                return Err(deny(codes::UNKNOWN_CAPABILITY, e.to_string()));
            }
        };
        if !declared.iter().any(|d| d.covers(&cap)) {
            env.observer.capability_check(op, env.actor_id, id, false);
            return Err(deny(
                codes::CAP_NOT_DECLARED,
                format!("engine {} does not declare {id}", engine.engine_id),
            ));
        }
        let granted = env.profile.grants(&cap) && env.plugin_grants.is_none_or(|p| p.grants(&cap));
        env.observer.capability_check(op, env.actor_id, id, granted);
        if !granted {
            return Err(deny(
                codes::CAP_NOT_GRANTED,
                format!("capability {id} is not granted to this operation"),
            ));
        }
        if cap.needs_consent() && !env.profile.has_consent(&cap) {
            return Err(deny(
                codes::CAP_CONSENT_REQUIRED,
                format!("capability {id} needs a recorded consent"),
            ));
        }
        requested.push(cap);
    }
    for axis in &spec.required_capabilities {
        if !requested.iter().any(|c| &c.axis == axis) {
            return Err(deny(
                codes::CAP_REQUIRED_MISSING,
                format!("{} {} must request a {axis} capability", op.engine_id, op.operation),
            ));
        }
    }
    prep.capabilities_granted = op.capabilities_requested.clone();
    match (op.engine_id.as_str(), op.operation.as_str()) {
        ("engine.shell", "exec") => check_exec(op, env, prep, &requested),
        ("engine.fs", "write_files") => check_fs_scope(op, env, "fs.write", &write_paths(&op.params)),
        ("engine.fs", "read_files") => check_fs_scope(op, env, "fs.read", &string_list(&op.params["paths"])),
        ("engine.fs", "diff") => {
            let paths: Vec<String> = op.params["baseline"]
                .as_array()
                .map(|a| a.iter().filter_map(|b| b["path"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            check_fs_scope(op, env, "fs.read", &paths)
        }
        _ => Ok(GatePass),
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn write_paths(params: &Value) -> Vec<String> {
    params["files"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["path"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A scoped `fs.write:<prefix>` / `fs.read:<prefix>` grant covers paths beneath the prefix;
/// the bare axis covers the whole workspace. Checked against the job profile and the
/// plugin's grants alike.
fn check_fs_scope(op: &PlannedOperation, env: &GateEnv<'_>, axis: &str, paths: &[String]) -> GateResult {
    for profile in std::iter::once(env.profile).chain(env.plugin_grants) {
        let scopes = profile.scopes_of(axis);
        for path in paths {
            let p = path.trim_start_matches("./");
            let ok = scopes.iter().any(|s| match s {
                None => true,
                Some(prefix) => {
                    let prefix = prefix.trim_start_matches("./").trim_end_matches('/');
                    p == prefix || p.starts_with(&format!("{prefix}/"))
                }
            });
            if !ok {
                let id = format!("{axis}:{p}");
                env.observer.capability_check(op, env.actor_id, &id, false);
                return Err(deny(codes::CAP_NOT_GRANTED, format!("no {axis} grant covers {p}")));
            }
        }
    }
    Ok(GatePass)
}

fn check_exec(
    op: &PlannedOperation,
    env: &GateEnv<'_>,
    prep: &mut Prepared,
    requested: &[Capability],
) -> GateResult {
    let plan = prep.exec.as_mut().ok_or_else(|| deny(codes::CAP_NO_TOOL_NAME, "command was not parsed"))?;
    if !env.verify_commands.iter().any(|c| c == &plan.command) {
        return Err(deny(
            codes::CAP_COMMAND_NOT_VERIFY,
            format!("command {:?} is not one of the job's verify commands", plan.command),
        ));
    }
    let wanted = Capability { axis: "proc.exec".into(), scope: Some(plan.tool.clone()) };
    let id = wanted.to_string();
    if !requested.iter().any(|c| c == &wanted) {
        env.observer.capability_check(op, env.actor_id, &id, false);
        return Err(deny(
            codes::CAP_REQUIRED_MISSING,
            format!("the operation must request {id} for its command"),
        ));
    }
    // `requested` already passed the grant check; `wanted` is among it.
    let cwd = env.workspace_root.to_path_buf();
    plan.program = Some(resolve_program(&plan.program_word, env.configured_path, env.workspace_root, &cwd)?);
    if let Some(shell) = &plan.shell {
        plan.shell_path = Some(resolve_program(shell, env.configured_path, env.workspace_root, &cwd)?);
    }
    // Environment: the trusted PATH, the granted variables, and overrides of granted names only.
    let granted_names: Vec<&str> = env.granted_env.iter().map(|(k, _)| k.as_str()).collect();
    let mut vars: Vec<(String, String)> = env.granted_env.to_vec();
    if let Some(overrides) = op.params.get("env").and_then(Value::as_object) {
        for (k, v) in overrides {
            if NEVER_OVERRIDDEN.contains(&k.as_str()) || !granted_names.contains(&k.as_str()) {
                return Err(deny(
                    codes::CAP_ENV_NOT_GRANTED,
                    format!("environment variable {k} is not granted"),
                ));
            }
            let v = v.as_str().unwrap_or_default().to_owned();
            match vars.iter_mut().find(|(n, _)| n == k) {
                Some(slot) => slot.1 = v,
                None => vars.push((k.clone(), v)),
            }
        }
    }
    let trusted: Vec<String> = trusted_path(env.configured_path, env.workspace_root)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    vars.retain(|(k, _)| k != "PATH");
    vars.insert(0, ("PATH".to_owned(), trusted.join(":")));
    plan.env = vars;
    Ok(GatePass)
}

/// PATH entries a child may search: absolute, existing, outside the workspace.
pub fn trusted_path(configured: &[PathBuf], root: &Path) -> Vec<PathBuf> {
    configured
        .iter()
        .filter(|d| d.is_absolute())
        .filter(|d| d.canonicalize().is_ok_and(|c| !inside(root, &c)))
        .cloned()
        .collect()
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves a program word to the binary the configured PATH names, refusing a name that
/// the first matching PATH entry would take from inside the workspace, and a word with a
/// slash that points anywhere but that same binary (`./cargo` next to a real cargo).
pub fn resolve_program(
    word: &str,
    configured: &[PathBuf],
    root: &Path,
    cwd: &Path,
) -> Result<PathBuf, GateDenied> {
    let name =
        tool_name(word).ok_or_else(|| deny(codes::CAP_NO_TOOL_NAME, format!("no tool name in {word:?}")))?;
    let found = configured
        .iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(&name))
        .find(|p| is_executable_file(p))
        .ok_or_else(|| {
            deny(codes::CAP_PROGRAM_NOT_FOUND, format!("program {name} is not on the trusted PATH"))
        })?;
    let canonical = found.canonicalize().map_err(|e| {
        deny(codes::CAP_PROGRAM_NOT_FOUND, format!("program {} cannot be resolved: {e}", found.display()))
    })?;
    if inside(root, &canonical)
        || found.parent().and_then(|d| d.canonicalize().ok()).is_some_and(|d| inside(root, &d))
    {
        return Err(deny(
            codes::CAP_PROGRAM_IN_WORKSPACE,
            format!("program {name} resolves to {} inside the workspace", canonical.display()),
        ));
    }
    if word.contains('/') {
        let written = if Path::new(word).is_absolute() { PathBuf::from(word) } else { cwd.join(word) };
        let same = written.canonicalize().is_ok_and(|c| c == canonical);
        if !same {
            return Err(deny(
                codes::CAP_PROGRAM_MISMATCH,
                format!("program {word:?} is not the allowlisted {name} at {}", canonical.display()),
            ));
        }
    }
    Ok(found)
}
