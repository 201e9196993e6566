//! Capability ids and profiles (MTX-SPEC 3.20, 10.10): parsing `<axis>[:<scope>]`,
//! the deny-by-default profile check, and deriving `proc.exec:<tool>` from a command.
//!
//! This module only answers "is this id valid" and "does this profile grant it". It must
//! never widen a grant: an unknown id is an error, and no tool name means no capability.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Origin error code of an unknown capability id (MTX-SPEC 10.10.1).
pub const UNKNOWN_CAPABILITY_CODE: &str = "HSK-4001";

/// Registered axes. `device` has the fixed sub-kinds of 10.10.2; the `artifact.*` ids are
/// the full ids `mtx` registers (10.10.1).
const AXES: &[&str] = &[
    "fs.read",
    "fs.write",
    "proc.exec",
    "net.http",
    "device",
    "device.camera",
    "device.mic",
    "device.usb",
    "device.serial",
    "secrets.use",
    "gpu.compute",
    "artifact.read",
    "artifact.write",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0:?} (HSK-4001)")]
    UnknownCapability(String),
    #[error("no tool name can be derived from command {0:?}")]
    NoToolName(String),
    #[error("command {command:?} cannot be split into words: {reason}")]
    Unparsable { command: String, reason: String },
}

impl CapabilityError {
    pub fn code(&self) -> &'static str {
        match self {
            CapabilityError::UnknownCapability(_) => UNKNOWN_CAPABILITY_CODE,
            CapabilityError::NoToolName(_) | CapabilityError::Unparsable { .. } => "CAP_NO_TOOL_NAME",
        }
    }
}

/// A parsed capability id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Capability {
    pub axis: String,
    pub scope: Option<String>,
}

impl Capability {
    /// Parses `<axis>[:<scope>]`; the axis must be registered and a scope non-empty.
    pub fn parse(id: &str) -> Result<Self, CapabilityError> {
        let unknown = || CapabilityError::UnknownCapability(id.to_owned());
        let (axis, scope) = match id.split_once(':') {
            Some((a, s)) => (a, Some(s)),
            None => (id, None),
        };
        if !AXES.contains(&axis) {
            return Err(unknown());
        }
        if let Some(s) = scope
            && (s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(unknown());
        }
        Ok(Capability { axis: axis.to_owned(), scope: scope.map(str::to_owned) })
    }

    /// `device.camera` is covered by a `device` grant, as a scope of the device axis.
    fn axis_family(&self) -> &str {
        if self.axis.starts_with("device.") { "device" } else { &self.axis }
    }

    /// Whether this capability, held as a grant, covers `wanted`: a bare axis covers every
    /// scope of that axis; a scoped grant covers only the same scope.
    pub fn covers(&self, wanted: &Capability) -> bool {
        if self.axis == wanted.axis {
            return match (&self.scope, &wanted.scope) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            };
        }
        self.axis == "device" && self.scope.is_none() && wanted.axis_family() == "device"
    }

    /// Axes that need a recorded consent or policy approval besides the grant (10.10.3).
    pub fn needs_consent(&self) -> bool {
        matches!(self.axis_family(), "net.http" | "device" | "secrets.use")
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(s) => write!(f, "{}:{}", self.axis, s),
            None => f.write_str(&self.axis),
        }
    }
}

/// A job's capability profile: a whitelist of registry ids (10.10.1), plus the consents
/// policy recorded for the axes that need one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityProfile {
    pub id: String,
    #[serde(default)]
    pub grants: Vec<String>,
    /// Capability ids whose consent has been recorded (only meaningful for `net.http`,
    /// `device.*`, `secrets.use:*`).
    #[serde(default)]
    pub consents: Vec<String>,
}

impl CapabilityProfile {
    pub fn new(id: &str, grants: &[&str]) -> Self {
        CapabilityProfile {
            id: id.to_owned(),
            grants: grants.iter().map(|g| (*g).to_owned()).collect(),
            consents: Vec::new(),
        }
    }

    /// Whether the profile grants `wanted`. Unparsable grants grant nothing.
    pub fn grants(&self, wanted: &Capability) -> bool {
        self.grants.iter().filter_map(|g| Capability::parse(g).ok()).any(|g| g.covers(wanted))
    }

    /// Whether a consent for `wanted` is on record.
    pub fn has_consent(&self, wanted: &Capability) -> bool {
        self.consents.iter().filter_map(|g| Capability::parse(g).ok()).any(|g| g.covers(wanted))
    }

    /// The scopes of `axis` this profile grants; `None` inside means the bare axis.
    pub fn scopes_of(&self, axis: &str) -> Vec<Option<String>> {
        self.grants
            .iter()
            .filter_map(|g| Capability::parse(g).ok())
            .filter(|c| c.axis == axis)
            .map(|c| c.scope)
            .collect()
    }
}

/// MTX-SPEC 10.10.5: `proc.exec:<tool>` of a command. The first shell word (quote-aware),
/// its basename, a trailing `.exe` stripped. No derivable name is an error, never the bare
/// axis (the prior implementation's fallback granted every tool).
pub fn derive_proc_exec(command: &str) -> Result<String, CapabilityError> {
    let words = shell_words::split(command)
        .map_err(|e| CapabilityError::Unparsable { command: command.to_owned(), reason: e.to_string() })?;
    let first = words.first().ok_or_else(|| CapabilityError::NoToolName(command.to_owned()))?;
    let name = tool_name(first).ok_or_else(|| CapabilityError::NoToolName(command.to_owned()))?;
    Ok(format!("proc.exec:{name}"))
}

/// The basename of a program word with `.exe` stripped, if it names anything.
pub fn tool_name(word: &str) -> Option<String> {
    let base = word.rsplit(['/', '\\']).next().unwrap_or(word);
    let base = base.strip_suffix(".exe").unwrap_or(base);
    let ok = !base.is_empty()
        && base != "."
        && base != ".."
        && !base.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':');
    ok.then(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_takes_the_quoted_first_word_basename_without_exe() {
        assert_eq!(derive_proc_exec("cargo test x").unwrap(), "proc.exec:cargo");
        assert_eq!(derive_proc_exec("'/usr/bin/python3' -m x").unwrap(), "proc.exec:python3");
        assert_eq!(derive_proc_exec(r"'C:\tools\cargo.exe' build").unwrap(), "proc.exec:cargo");
        assert!(matches!(derive_proc_exec("   "), Err(CapabilityError::NoToolName(_))));
        assert!(matches!(derive_proc_exec("'unbalanced"), Err(CapabilityError::Unparsable { .. })));
        assert!(matches!(derive_proc_exec("/usr/bin/"), Err(CapabilityError::NoToolName(_))));
    }

    #[test]
    fn bare_axis_covers_scopes_but_a_scope_covers_only_itself() {
        let p = CapabilityProfile::new("coder", &["fs.read", "proc.exec:cargo", "device"]);
        assert!(p.grants(&Capability::parse("fs.read:src").unwrap()));
        assert!(p.grants(&Capability::parse("proc.exec:cargo").unwrap()));
        assert!(!p.grants(&Capability::parse("proc.exec:sh").unwrap()));
        assert!(!p.grants(&Capability::parse("proc.exec").unwrap()));
        assert!(p.grants(&Capability::parse("device.usb").unwrap()));
        assert!(!p.grants(&Capability::parse("fs.write").unwrap()));
    }

    #[test]
    fn unknown_ids_are_rejected_with_hsk_4001() {
        for id in ["fs.delete", "proc.exec:", "root", "net.http:a b", ""] {
            let err = Capability::parse(id).unwrap_err();
            assert_eq!(err.code(), UNKNOWN_CAPABILITY_CODE, "{id}");
        }
    }
}
