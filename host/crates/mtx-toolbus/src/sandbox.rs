//! The child's confinement: rlimits from the budget and, where the kernel offers it, a
//! Landlock ruleset that lets the child write only beneath the workspace and temp dirs
//! (MTX-SPEC 10.10.3, 10.5 G-SAFETY.SANDBOX intent).
//!
//! Landlock restricts the calling thread and everything it spawns, and never lifts, so the
//! ruleset is applied on the bus's dedicated spawner thread (`shell::Spawner`), never on a
//! host thread. What was
//! actually enforced is reported, never assumed: provenance records it.

use std::path::PathBuf;

use crate::op::Budget;

/// How the run config wants the child confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Apply Landlock when the kernel supports it.
    pub landlock: bool,
    /// Refuse to run at all when Landlock cannot be enforced (`SBOX_POLICY_DENIED`).
    pub require_landlock: bool,
    /// Directories besides the workspace and the temp dir the child may write beneath
    /// (for example a tool's cache directory).
    pub extra_writable: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig { landlock: true, require_landlock: false, extra_writable: Vec::new() }
    }
}

/// Device files every program may write to (writes there do not persist).
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// One rlimit to set in the child, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: i32,
    pub name: &'static str,
    pub value: u64,
}

/// The rlimits a budget asks for.
pub fn rlimits_for(budget: &Budget) -> Vec<Rlimit> {
    let mut out = Vec::new();
    if let Some(v) = budget.max_memory_bytes {
        out.push(Rlimit { resource: libc::RLIMIT_AS as i32, name: "RLIMIT_AS", value: v });
    }
    if let Some(ms) = budget.max_cpu_ms {
        out.push(Rlimit {
            resource: libc::RLIMIT_CPU as i32,
            name: "RLIMIT_CPU",
            value: ms.div_ceil(1000).max(1),
        });
    }
    if let Some(v) = budget.max_processes {
        out.push(Rlimit { resource: libc::RLIMIT_NPROC as i32, name: "RLIMIT_NPROC", value: v });
    }
    if let Some(v) = budget.max_file_bytes {
        out.push(Rlimit { resource: libc::RLIMIT_FSIZE as i32, name: "RLIMIT_FSIZE", value: v });
    }
    out
}

/// The directories the child may write beneath.
pub fn writable_paths(workspace_root: &std::path::Path, cfg: &SandboxConfig) -> Vec<PathBuf> {
    let mut out = vec![workspace_root.to_path_buf(), std::env::temp_dir()];
    if let Ok(tmp) = std::path::Path::new("/tmp").canonicalize()
        && !out.contains(&tmp)
    {
        out.push(tmp);
    }
    out.extend(cfg.extra_writable.iter().cloned());
    out
}

/// Restricts the calling thread (and every process it spawns afterwards) to writing only
/// beneath `writable` and the harmless device files. Returns the enforcement status text
/// and whether anything was enforced.
#[cfg(target_os = "linux")]
pub fn restrict_current_thread(writable: &[PathBuf]) -> (bool, String) {
    use landlock::{
        ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V5;
    let result = (|| {
        Ruleset::default()
            .handle_access(AccessFs::from_write(abi))?
            .create()?
            .add_rules(path_beneath_rules(writable, AccessFs::from_write(abi)))?
            .add_rules(path_beneath_rules(WRITABLE_DEVICES, AccessFs::from_write(abi)))?
            .restrict_self()
    })();
    match result {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => (true, "fully_enforced".into()),
            RulesetStatus::PartiallyEnforced => (true, "partially_enforced".into()),
            RulesetStatus::NotEnforced => (false, "not_enforced".into()),
        },
        Err(e) => (false, format!("error: {e}")),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn restrict_current_thread(_writable: &[PathBuf]) -> (bool, String) {
    (false, "unsupported_os".into())
}
