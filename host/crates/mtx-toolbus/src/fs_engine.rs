//! `engine.fs`: applying a model's edits (`write_files`), reading workspace files
//! (`read_files`) and telling validators what changed since a baseline (`diff`).
//!
//! `write_files` is all-or-nothing: every path is checked first (normal form, inside the
//! operation's modify/create scope, no symlink anywhere on the path, modify needs an
//! existing file, create a missing one), then every temp file is written and fsynced, the
//! pre-images are re-checked, then the renames happen and the directories are fsynced.
//! Each file's pre- and post-image sha256 is recorded, so a re-apply after a crash skips
//! files already at their post-image and a file changed underneath is a conflict. This is
//! the only code in mtx that writes into the workspace; it must never follow a symlink
//! when writing, nor write a path the gates did not plan.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mtx_store::ArtifactStore;
use mtx_types::{ArtifactHandle, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bus::EngineCtx;
use crate::gates::integrity::{normalise_rel, refuse_symlinks, resolve_read};
use crate::gates::{G_INTEGRITY, GateDenied, codes, inside};
use crate::linediff::changed_lines;
use crate::op::{EngineError, EngineResult, OpStatus};

pub const FS_WRITE_CONFLICT: &str = "FS_WRITE_CONFLICT";
pub const FS_WRITE_FAILED: &str = "FS_WRITE_FAILED";
pub const FS_READ_FAILED: &str = "FS_READ_FAILED";

/// Default and largest per-file read size of `read_files`.
const DEFAULT_READ_BYTES: u64 = 1024 * 1024;

fn deny(code: &str, reason: impl Into<String>) -> GateDenied {
    GateDenied::new(G_INTEGRITY, code, reason)
}

/// The structural rules of each operation's params beyond the registry's key/type table.
pub fn check_params_shape(operation: &str, params: &Value) -> Result<(), String> {
    match operation {
        "write_files" => {
            let files =
                params["files"].as_array().filter(|a| !a.is_empty()).ok_or("params.files is empty")?;
            for (i, f) in files.iter().enumerate() {
                let obj = f.as_object().ok_or_else(|| format!("params.files[{i}] is not an object"))?;
                if !obj.get("path").is_some_and(Value::is_string) {
                    return Err(format!("params.files[{i}].path must be a string"));
                }
                let content = obj.get("content").is_some_and(Value::is_string);
                let content_ref = obj.get("content_ref").is_some_and(Value::is_object);
                if content == content_ref {
                    return Err(format!(
                        "params.files[{i}] needs exactly one of content (string) and content_ref"
                    ));
                }
                if let Some(r) = obj.get("content_ref")
                    && serde_json::from_value::<ArtifactHandle>(r.clone()).is_err()
                {
                    return Err(format!("params.files[{i}].content_ref is not an artifact handle"));
                }
                if obj.get("expected_pre_sha256").is_some_and(|v| !(v.is_string() || v.is_null())) {
                    return Err(format!("params.files[{i}].expected_pre_sha256 must be a string or null"));
                }
                if let Some(k) = obj.keys().find(|k| {
                    !matches!(k.as_str(), "path" | "content" | "content_ref" | "expected_pre_sha256")
                }) {
                    return Err(format!("params.files[{i}].{k} is not a field of a file write"));
                }
            }
            let scope = params["scope"].as_object().ok_or("params.scope must be an object")?;
            for key in ["modify", "create"] {
                let list = scope
                    .get(key)
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("params.scope.{key} must be an array"))?;
                if list.iter().any(|v| !v.is_string()) {
                    return Err(format!("params.scope.{key} must hold strings"));
                }
            }
            if let Some(k) = scope.keys().find(|k| !matches!(k.as_str(), "modify" | "create")) {
                return Err(format!("params.scope.{k} is not a scope list"));
            }
            Ok(())
        }
        "read_files" => {
            let paths =
                params["paths"].as_array().filter(|a| !a.is_empty()).ok_or("params.paths is empty")?;
            if paths.iter().any(|p| !p.is_string()) {
                return Err("params.paths must hold strings".into());
            }
            Ok(())
        }
        "diff" => {
            let base = params["baseline"].as_array().ok_or("params.baseline must be an array")?;
            for (i, b) in base.iter().enumerate() {
                if !b["path"].is_string() {
                    return Err(format!("params.baseline[{i}].path must be a string"));
                }
                if !(b["sha256"].is_string() || b["sha256"].is_null()) {
                    return Err(format!("params.baseline[{i}].sha256 must be a string or null"));
                }
                if let Some(r) = b.get("content_ref")
                    && !r.is_null()
                    && serde_json::from_value::<ArtifactHandle>(r.clone()).is_err()
                {
                    return Err(format!("params.baseline[{i}].content_ref is not an artifact handle"));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What applying one file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteAction {
    Created,
    Modified,
    /// Already at its post-image (an idempotent re-apply).
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct PlannedWrite {
    /// Normalised workspace-relative path.
    pub rel: String,
    pub target: PathBuf,
    pub content: Vec<u8>,
    pub pre_sha256: Option<String>,
    pub pre_image: Option<Vec<u8>>,
    pub post_sha256: String,
    pub action: WriteAction,
    pub mode: Option<u32>,
    pub content_ref: Option<ArtifactHandle>,
}

#[derive(Debug, Clone, Default)]
pub struct WritePlan {
    pub files: Vec<PlannedWrite>,
}

impl WritePlan {
    pub fn content_ref_hashes(&self) -> Vec<String> {
        self.files.iter().filter_map(|f| f.content_ref.as_ref().map(|h| h.sha256.clone())).collect()
    }
}

fn scope_set(params: &Value, key: &str) -> Result<BTreeSet<String>, GateDenied> {
    let mut out = BTreeSet::new();
    for v in params["scope"][key].as_array().into_iter().flatten() {
        out.insert(normalise_rel(v.as_str().unwrap_or_default())?);
    }
    Ok(out)
}

fn read_existing(path: &Path) -> Result<Option<(Vec<u8>, u32)>, GateDenied> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {
            let bytes = fs::read(path).map_err(|e| {
                deny(codes::INTEGRITY_PATH_INVALID, format!("{} cannot be read: {e}", path.display()))
            })?;
            Ok(Some((bytes, m.permissions().mode() & 0o7777)))
        }
        Ok(m) if m.file_type().is_symlink() => {
            Err(deny(codes::INTEGRITY_SYMLINK_WRITE, format!("{} is a symlink", path.display())))
        }
        Ok(_) => Err(deny(codes::INTEGRITY_NOT_A_FILE, format!("{} is not a regular file", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(deny(codes::INTEGRITY_PATH_INVALID, format!("{} cannot be inspected: {e}", path.display())))
        }
    }
}

/// G-INTEGRITY's plan of a `write_files` operation: every check that does not write.
pub fn plan_writes(
    root: &Path,
    params: &Value,
    store: &ArtifactStore,
    protected: &[String],
) -> Result<WritePlan, GateDenied> {
    let modify = scope_set(params, "modify")?;
    let create = scope_set(params, "create")?;
    let mut plan = WritePlan::default();
    let mut seen = BTreeSet::new();
    for f in params["files"].as_array().into_iter().flatten() {
        let rel = normalise_rel(f["path"].as_str().unwrap_or_default())?;
        if let Some(p) = protected
            .iter()
            .map(|p| p.trim_matches('/'))
            .find(|p| rel == *p || rel.starts_with(&format!("{p}/")))
        {
            return Err(deny(
                codes::INTEGRITY_PROTECTED_PATH,
                format!("path {rel} is inside the protected {p}"),
            ));
        }
        if !seen.insert(rel.clone()) {
            return Err(deny(codes::INTEGRITY_PATH_INVALID, format!("path {rel} is written twice")));
        }
        let (in_modify, in_create) = (modify.contains(&rel), create.contains(&rel));
        if !in_modify && !in_create {
            return Err(deny(
                codes::INTEGRITY_OUT_OF_SCOPE,
                format!("path {rel} is not in the operation's modify or create scope"),
            ));
        }
        refuse_symlinks(root, &rel)?;
        let target = root.join(&rel);
        // Every existing ancestor must be a real directory inside the workspace.
        let mut ancestor = target.parent();
        while let Some(dir) = ancestor {
            if dir.exists() {
                let canonical = dir.canonicalize().map_err(|e| {
                    deny(codes::INTEGRITY_PATH_INVALID, format!("{} cannot be resolved: {e}", dir.display()))
                })?;
                if !inside(root, &canonical) {
                    return Err(deny(
                        codes::SBOX_FS_ESCAPE_DETECTED,
                        format!("path {rel} resolves outside the workspace"),
                    ));
                }
                if !canonical.is_dir() {
                    return Err(deny(
                        codes::INTEGRITY_NOT_A_FILE,
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                break;
            }
            ancestor = dir.parent();
        }
        let (content, content_ref) = match f.get("content_ref") {
            Some(r) => {
                let handle: ArtifactHandle = serde_json::from_value(r.clone()).map_err(|e| {
                    deny(codes::INTEGRITY_INPUT_MISSING, format!("content_ref of {rel}: {e}"))
                })?;
                let bytes = store.get(&handle).map_err(|e| match e {
                    mtx_store::StoreError::HashMismatch { .. } => deny(
                        codes::INTEGRITY_INPUT_HASH,
                        format!("content_ref of {rel} does not match its hash: {e}"),
                    ),
                    other => deny(
                        codes::INTEGRITY_INPUT_MISSING,
                        format!("content_ref of {rel} cannot be read: {other}"),
                    ),
                })?;
                (bytes, Some(handle))
            }
            None => (f["content"].as_str().unwrap_or_default().as_bytes().to_vec(), None),
        };
        let existing = read_existing(&target)?;
        let pre_sha256 = existing.as_ref().map(|(b, _)| sha256_hex(b));
        let post_sha256 = sha256_hex(&content);
        let expected_pre = f.get("expected_pre_sha256").and_then(Value::as_str);
        let action = if pre_sha256.as_deref() == Some(post_sha256.as_str()) {
            WriteAction::Unchanged
        } else {
            if f.get("expected_pre_sha256").is_some() && pre_sha256.as_deref() != expected_pre {
                return Err(deny(
                    codes::INTEGRITY_PRE_IMAGE_CONFLICT,
                    format!(
                        "{rel} changed underneath: expected pre-image {}, found {}",
                        expected_pre.unwrap_or("(missing)"),
                        pre_sha256.as_deref().unwrap_or("(missing)")
                    ),
                ));
            }
            match (&existing, in_modify, in_create) {
                (None, true, false) => {
                    return Err(deny(
                        codes::INTEGRITY_MODIFY_MISSING,
                        format!("{rel} is in the modify scope but does not exist"),
                    ));
                }
                (Some(_), false, true) => {
                    return Err(deny(
                        codes::INTEGRITY_CREATE_EXISTS,
                        format!("{rel} is in the create scope but already exists"),
                    ));
                }
                (None, _, _) => WriteAction::Created,
                (Some(_), _, _) => WriteAction::Modified,
            }
        };
        plan.files.push(PlannedWrite {
            rel,
            target,
            content,
            pre_sha256,
            mode: existing.as_ref().map(|(_, m)| *m),
            pre_image: existing.map(|(b, _)| b),
            post_sha256,
            action,
            content_ref,
        });
    }
    Ok(plan)
}

fn temp_path(target: &Path, op_id: &str, i: usize) -> PathBuf {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let short: String = op_id.chars().filter(|c| c.is_ascii_hexdigit()).take(12).collect();
    target.with_file_name(format!(".{name}.mtx-tmp-{short}-{i}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Applies a checked plan. Nothing is renamed unless every temp file is durable and every
/// pre-image still holds.
pub(crate) fn execute_writes(ctx: &EngineCtx<'_>, plan: &WritePlan) -> EngineResult {
    let mut result = ctx.empty_result();
    let pending: Vec<(usize, &PlannedWrite)> =
        plan.files.iter().enumerate().filter(|(_, f)| f.action != WriteAction::Unchanged).collect();
    let mut temps: Vec<(PathBuf, &PlannedWrite)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, &PlannedWrite)]| {
        for (t, _) in temps {
            let _ = fs::remove_file(t);
        }
    };
    for (i, f) in &pending {
        let outcome = (|| -> std::io::Result<PathBuf> {
            if let Some(parent) = f.target.parent() {
                fs::create_dir_all(parent)?;
            }
            // A directory created just now could have been swapped for a symlink.
            refuse_symlinks(ctx.workspace_root, &f.rel).map_err(|d| std::io::Error::other(d.reason))?;
            let tmp = temp_path(&f.target, &ctx.op.op_id, *i);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(f.mode.unwrap_or(0o644))
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            file.write_all(&f.content)?;
            file.sync_all()?;
            Ok(tmp)
        })();
        match outcome {
            Ok(tmp) => temps.push((tmp, f)),
            Err(e) => {
                cleanup(&temps);
                result
                    .errors
                    .push(EngineError::new(FS_WRITE_FAILED, format!("writing {} failed: {e}", f.rel)));
                return ctx.finish(result);
            }
        }
    }
    // Re-check every pre-image right before the renames: a change since the gate ran is a
    // conflict, and nothing is applied.
    for (_, f) in &temps {
        let now = read_existing(&f.target).map(|o| o.map(|(b, _)| sha256_hex(&b)));
        if now.as_ref().map_err(|d| d.reason.clone()) != Ok(&f.pre_sha256) {
            cleanup(&temps);
            result.errors.push(EngineError::new(
                FS_WRITE_CONFLICT,
                format!("{} changed underneath before it was applied", f.rel),
            ));
            return ctx.finish(result);
        }
    }
    let mut done: Vec<&PlannedWrite> = Vec::new();
    for (k, (tmp, f)) in temps.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, &f.target) {
            // Put back what was already applied so the operation stays all-or-nothing.
            for d in &done {
                let _ = match &d.pre_image {
                    Some(bytes) => fs::write(&d.target, bytes),
                    None => fs::remove_file(&d.target),
                };
            }
            cleanup(&temps[k..]);
            result
                .errors
                .push(EngineError::new(FS_WRITE_FAILED, format!("renaming into {} failed: {e}", f.rel)));
            return ctx.finish(result);
        }
        done.push(f);
    }
    let dirs: BTreeSet<PathBuf> =
        done.iter().filter_map(|f| f.target.parent().map(Path::to_path_buf)).collect();
    for d in &dirs {
        if let Err(e) = sync_dir(d) {
            result
                .errors
                .push(EngineError::new(FS_WRITE_FAILED, format!("fsync of {} failed: {e}", d.display())));
            return ctx.finish(result);
        }
    }
    let files: Vec<Value> = plan
        .files
        .iter()
        .map(|f| {
            json!({
                "path": f.rel,
                "action": f.action,
                "pre_sha256": f.pre_sha256,
                "post_sha256": f.post_sha256,
                "size_bytes": f.content.len(),
            })
        })
        .collect();
    let report = json!({ "op_id": ctx.op.op_id, "files": files });
    match ctx.put(
        "fs_write_report",
        &serde_json::to_vec_pretty(&report).unwrap_or_default(),
        "application/json",
    ) {
        Ok(h) => result.outputs.push(h),
        Err(e) => result
            .errors
            .push(EngineError::new(FS_WRITE_FAILED, format!("storing the write report failed: {e}"))),
    }
    result.status = if result.errors.is_empty() { OpStatus::Succeeded } else { OpStatus::Failed };
    result.report = Some(report);
    ctx.finish(result)
}

#[derive(Debug, Clone, Default)]
pub struct ReadPlan {
    pub files: Vec<(String, PathBuf)>,
    pub max_bytes_per_file: u64,
}

pub fn plan_reads(root: &Path, params: &Value) -> Result<ReadPlan, GateDenied> {
    let mut files = Vec::new();
    for p in params["paths"].as_array().into_iter().flatten() {
        let rel = normalise_rel(p.as_str().unwrap_or_default())?;
        let path = resolve_read(root, &rel)?;
        files.push((rel, path));
    }
    let max = params["max_bytes_per_file"].as_u64().unwrap_or(DEFAULT_READ_BYTES).min(DEFAULT_READ_BYTES);
    Ok(ReadPlan { files, max_bytes_per_file: max })
}

pub(crate) fn execute_reads(ctx: &EngineCtx<'_>, plan: &ReadPlan) -> EngineResult {
    let mut result = ctx.empty_result();
    let total_cap = ctx.budget.max_output_bytes.unwrap_or(u64::MAX);
    let mut total = 0u64;
    let mut entries = Vec::new();
    for (rel, path) in &plan.files {
        let cap = plan.max_bytes_per_file.min(total_cap.saturating_sub(total));
        let mut bytes = Vec::new();
        let read = fs::File::open(path).and_then(|f| f.take(cap + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            result.errors.push(EngineError::new(FS_READ_FAILED, format!("reading {rel} failed: {e}")));
            return ctx.finish(result);
        }
        let truncated = bytes.len() as u64 > cap;
        bytes.truncate(cap as usize);
        total += bytes.len() as u64;
        match ctx.put("file_content", &bytes, "application/octet-stream") {
            Ok(h) => {
                entries.push(json!({"path": rel, "sha256": h.sha256, "size_bytes": bytes.len(), "truncated": truncated, "ref": h.canonical()}));
                result.outputs.push(h);
            }
            Err(e) => {
                result.errors.push(EngineError::new(FS_READ_FAILED, format!("storing {rel} failed: {e}")));
                return ctx.finish(result);
            }
        }
    }
    let report = json!({ "files": entries });
    match ctx.put(
        "fs_read_report",
        &serde_json::to_vec_pretty(&report).unwrap_or_default(),
        "application/json",
    ) {
        Ok(h) => result.outputs.insert(0, h),
        Err(e) => result
            .errors
            .push(EngineError::new(FS_READ_FAILED, format!("storing the read report failed: {e}"))),
    }
    result.status = if result.errors.is_empty() { OpStatus::Succeeded } else { OpStatus::Failed };
    result.report = Some(report);
    ctx.finish(result)
}

#[derive(Debug, Clone)]
pub struct DiffEntry {
    pub rel: String,
    /// `None` when the file did not exist at baseline time.
    pub baseline_sha256: Option<String>,
    pub baseline_content: Option<Vec<u8>>,
    /// Canonical path when the file exists now.
    pub current: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct DiffPlan {
    pub entries: Vec<DiffEntry>,
}

pub fn plan_diff(root: &Path, params: &Value, store: &ArtifactStore) -> Result<DiffPlan, GateDenied> {
    let mut entries = Vec::new();
    for b in params["baseline"].as_array().into_iter().flatten() {
        let rel = normalise_rel(b["path"].as_str().unwrap_or_default())?;
        let joined = root.join(&rel);
        let current = match fs::symlink_metadata(&joined) {
            Ok(_) => Some(resolve_read(root, &rel)?),
            Err(_) => None,
        };
        let baseline_content = match b.get("content_ref").filter(|r| !r.is_null()) {
            Some(r) => {
                let handle: ArtifactHandle = serde_json::from_value(r.clone())
                    .map_err(|e| deny(codes::INTEGRITY_INPUT_MISSING, format!("baseline of {rel}: {e}")))?;
                Some(
                    store
                        .get(&handle)
                        .map_err(|e| deny(codes::INTEGRITY_INPUT_HASH, format!("baseline of {rel}: {e}")))?,
                )
            }
            None => None,
        };
        entries.push(DiffEntry {
            rel,
            baseline_sha256: b["sha256"].as_str().map(str::to_owned),
            baseline_content,
            current,
        });
    }
    Ok(DiffPlan { entries })
}

fn text_lines(bytes: &[u8]) -> Option<Vec<&str>> {
    std::str::from_utf8(bytes).ok().map(|s| s.lines().collect())
}

pub(crate) fn execute_diff(ctx: &EngineCtx<'_>, plan: &DiffPlan) -> EngineResult {
    let mut result = ctx.empty_result();
    let mut changed = Vec::new();
    for e in &plan.entries {
        let now = match &e.current {
            Some(p) => match fs::read(p) {
                Ok(b) => Some(b),
                Err(err) => {
                    result
                        .errors
                        .push(EngineError::new(FS_READ_FAILED, format!("reading {} failed: {err}", e.rel)));
                    return ctx.finish(result);
                }
            },
            None => None,
        };
        let now_sha = now.as_ref().map(|b| sha256_hex(b));
        if now_sha == e.baseline_sha256 {
            continue;
        }
        let status = match (&e.baseline_sha256, &now) {
            (None, Some(_)) => "created",
            (Some(_), None) => "deleted",
            _ => "modified",
        };
        let mut entry =
            json!({"path": e.rel, "status": status, "baseline_sha256": e.baseline_sha256, "sha256": now_sha});
        let old_lines = match (&e.baseline_sha256, &e.baseline_content) {
            (None, _) => Some(Vec::new()),
            (Some(_), Some(b)) => text_lines(b),
            (Some(_), None) => None,
        };
        let new_lines = match &now {
            Some(b) => text_lines(b),
            None => Some(Vec::new()),
        };
        if let (Some(old), Some(new)) = (old_lines, new_lines) {
            let ch = changed_lines(&old, &new);
            entry["added_lines"] = json!(ch.added);
            entry["removed_lines"] = json!(ch.removed);
        }
        changed.push(entry);
    }
    let report = json!({ "changed": changed });
    match ctx.put(
        "fs_diff_report",
        &serde_json::to_vec_pretty(&report).unwrap_or_default(),
        "application/json",
    ) {
        Ok(h) => result.outputs.push(h),
        Err(e) => result
            .errors
            .push(EngineError::new(FS_READ_FAILED, format!("storing the diff report failed: {e}"))),
    }
    result.status = if result.errors.is_empty() { OpStatus::Succeeded } else { OpStatus::Failed };
    result.report = Some(report);
    ctx.finish(result)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::op::PlannedOperation;
    use crate::registry::Registry;
    use crate::sandbox::SandboxConfig;

    /// The race the gate cannot see: a file changes after G-INTEGRITY planned the write
    /// and before the rename. The engine re-checks every pre-image and applies nothing.
    #[test]
    fn a_pre_image_changed_after_the_gate_is_a_conflict_and_nothing_is_applied() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(state.path()).unwrap();
        fs::write(root.join("a.txt"), "a1").unwrap();
        let params = json!({
            "files": [{"path": "new.txt", "content": "n"}, {"path": "a.txt", "content": "a2"}],
            "scope": {"modify": ["a.txt"], "create": ["new.txt"]},
        });
        let plan = plan_writes(&root, &params, &store, &[]).unwrap();
        fs::write(root.join("a.txt"), "changed underneath").unwrap();
        let registry = Registry::builtin();
        let engine = registry.engine("engine.fs").unwrap();
        let mut op = PlannedOperation::verify_exec("true", 1000, "p");
        op.engine_id = "engine.fs".into();
        op.operation = "write_files".into();
        let ctx = EngineCtx {
            op: &op,
            engine,
            workspace_root: &root,
            budget: &op.budget,
            sandbox: &SandboxConfig::default(),
            store: &store,
            config_hash: "c",
            capabilities_granted: &[],
            input_hashes: &[],
            started_at: String::new(),
            spawner: &OnceLock::new(),
        };
        let r = execute_writes(&ctx, &plan);
        assert_eq!(r.status, OpStatus::Failed);
        assert_eq!(r.errors[0].code, FS_WRITE_CONFLICT);
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "changed underneath");
        assert!(!root.join("new.txt").exists(), "all or nothing");
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("mtx-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files are removed");
    }
}
