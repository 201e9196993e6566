//! G-INTEGRITY: input artifact hashes match their stored bytes, serialised `params` stay
//! within the 32 KB inline rule (MTX-SPEC 10.6), and `cwd` and every path resolve, symlinks
//! followed, inside the workspace; writes through symlinks and out-of-scope writes are
//! refused (12.3 scenario 3).
//!
//! The path checks here are the same functions the engines use, so the gate and the engine
//! can never disagree about what a path means. This gate must never write anything.

use std::path::{Component, Path, PathBuf};

use mtx_store::StoreError;

use super::{G_INTEGRITY, GateDenied, GateEnv, GatePass, GateResult, Prepared, codes, inside};
use crate::op::{InputRef, PlannedOperation};

/// MTX-SPEC 10.6: larger payloads travel as input artifacts.
pub const MAX_INLINE_PARAMS_BYTES: usize = 32 * 1024;

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_INTEGRITY, code, reason)
}

pub fn check(op: &PlannedOperation, env: &GateEnv<'_>, prep: &mut Prepared) -> GateResult {
    let size = serde_json::to_vec(&op.params).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_INLINE_PARAMS_BYTES {
        return Err(deny(
            codes::INTEGRITY_PARAMS_TOO_LARGE,
            format!(
                "params are {size} bytes inline, more than {MAX_INLINE_PARAMS_BYTES}; pass them as an input artifact"
            ),
        ));
    }
    for input in &op.inputs {
        if let InputRef::Artifact(handle) = input {
            verify_artifact(env, handle)?;
            prep.input_hashes.push(handle.sha256.clone());
        }
    }
    match (op.engine_id.as_str(), op.operation.as_str()) {
        ("engine.shell", "exec") => {
            let cwd = op.params["cwd"].as_str().unwrap_or(".");
            let resolved = resolve_dir(env.workspace_root, cwd)?;
            if let Some(plan) = prep.exec.as_mut() {
                plan.cwd = Some(resolved);
            }
            Ok(GatePass)
        }
        ("engine.fs", "write_files") => {
            let plan = crate::fs_engine::plan_writes(
                env.workspace_root,
                &op.params,
                env.artifacts,
                env.protected_paths,
            )?;
            prep.input_hashes.extend(plan.content_ref_hashes());
            prep.writes = Some(plan);
            Ok(GatePass)
        }
        ("engine.fs", "read_files") => {
            prep.reads = Some(crate::fs_engine::plan_reads(env.workspace_root, &op.params)?);
            Ok(GatePass)
        }
        ("engine.fs", "diff") => {
            prep.diff = Some(crate::fs_engine::plan_diff(env.workspace_root, &op.params, env.artifacts)?);
            Ok(GatePass)
        }
        _ => Ok(GatePass),
    }
}

/// Re-hashes an input artifact's stored bytes against its handle.
pub fn verify_artifact(env: &GateEnv<'_>, handle: &mtx_types::ArtifactHandle) -> GateResult {
    match env.artifacts.get(handle) {
        Ok(_) => Ok(GatePass),
        Err(StoreError::HashMismatch { expected, actual, .. }) => Err(deny(
            codes::INTEGRITY_INPUT_HASH,
            format!(
                "input artifact {} should hash to {expected} but its bytes hash to {actual}",
                handle.path
            ),
        )),
        Err(e) => Err(deny(
            codes::INTEGRITY_INPUT_MISSING,
            format!("input artifact {} cannot be read: {e}", handle.path),
        )),
    }
}

/// A workspace-relative path in normal form: no `..`, not absolute, no empty or NUL,
/// `.` components dropped. The text the scope lists are compared against.
pub fn normalise_rel(path: &str) -> Result<String, GateDenied> {
    if path.is_empty() || path.contains('\0') {
        return Err(deny(codes::INTEGRITY_PATH_INVALID, format!("path {path:?} is empty or contains NUL")));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(deny(codes::INTEGRITY_OUTSIDE_WORKSPACE, format!("path {path:?} is absolute")));
    }
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| {
                deny(codes::INTEGRITY_PATH_INVALID, format!("path {path:?} is not valid utf-8"))
            })?),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(deny(
                    codes::INTEGRITY_OUTSIDE_WORKSPACE,
                    format!("path {path:?} climbs out with .."),
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(deny(codes::INTEGRITY_OUTSIDE_WORKSPACE, format!("path {path:?} is absolute")));
            }
        }
    }
    if parts.is_empty() {
        return Err(deny(
            codes::INTEGRITY_PATH_INVALID,
            format!("path {path:?} names the workspace root itself"),
        ));
    }
    Ok(parts.join("/"))
}

/// Resolves a directory (`cwd`) with symlinks followed and requires it inside `root`.
/// A path that is lexically inside but resolves outside is a symlink escape.
pub fn resolve_dir(root: &Path, dir: &str) -> Result<PathBuf, GateDenied> {
    if dir.contains('\0') {
        return Err(deny(codes::INTEGRITY_PATH_INVALID, "cwd contains NUL"));
    }
    let joined = root.join(dir);
    let canonical = joined
        .canonicalize()
        .map_err(|e| deny(codes::INTEGRITY_PATH_INVALID, format!("cwd {dir:?} cannot be resolved: {e}")))?;
    if !inside(root, &canonical) {
        let lexically_inside = !Path::new(dir).is_absolute()
            && !Path::new(dir).components().any(|c| matches!(c, Component::ParentDir));
        let code = if lexically_inside {
            codes::SBOX_FS_ESCAPE_DETECTED
        } else {
            codes::INTEGRITY_OUTSIDE_WORKSPACE
        };
        return Err(deny(
            code,
            format!("cwd {dir:?} resolves to {} outside the workspace", canonical.display()),
        ));
    }
    if !canonical.is_dir() {
        return Err(deny(codes::INTEGRITY_NOT_A_FILE, format!("cwd {dir:?} is not a directory")));
    }
    Ok(canonical)
}

/// Fails if any existing component of `rel` beneath `root` is a symlink (the final one
/// included). Components that do not exist yet end the walk.
pub fn refuse_symlinks(root: &Path, rel: &str) -> GateResult {
    let mut cur = root.to_path_buf();
    for part in rel.split('/') {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&cur).map(|t| t.display().to_string()).unwrap_or_default();
                let escapes = cur.canonicalize().map(|c| !inside(root, &c)).unwrap_or(true);
                let code =
                    if escapes { codes::SBOX_FS_ESCAPE_DETECTED } else { codes::INTEGRITY_SYMLINK_WRITE };
                return Err(deny(
                    code,
                    format!("path {rel} goes through the symlink {} -> {target}", cur.display()),
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(GatePass)
}

/// Resolves an existing file for reading: symlinks are followed, and the target must be a
/// regular file inside `root`.
pub fn resolve_read(root: &Path, rel: &str) -> Result<PathBuf, GateDenied> {
    let rel = normalise_rel(rel)?;
    let canonical = root
        .join(&rel)
        .canonicalize()
        .map_err(|e| deny(codes::INTEGRITY_PATH_INVALID, format!("path {rel} cannot be resolved: {e}")))?;
    if !inside(root, &canonical) {
        return Err(deny(
            codes::SBOX_FS_ESCAPE_DETECTED,
            format!("path {rel} resolves to {} outside the workspace", canonical.display()),
        ));
    }
    if !canonical.is_file() {
        return Err(deny(codes::INTEGRITY_NOT_A_FILE, format!("path {rel} is not a regular file")));
    }
    Ok(canonical)
}
