//! Path normalisation and scope matching (MTX-SPEC 14.2.5, MT-VAL-005).
//!
//! Scope matching is a security boundary: it must fail closed. It never touches the
//! file system and never widens a scope entry (a bare `**` matches nothing, a candidate
//! with a `..` segment matches nothing).

use std::sync::LazyLock;

use regex::Regex;

/// Placeholders that mean "no path" in real packets.
const PLACEHOLDERS: [&str; 4] = ["NONE", "N/A", "PATH/TO/FILE", "OUT/OF/SCOPE/PATH"];

static TRAILING_NOTE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(\S.*?)\s+\([^()]*\)\s*$").unwrap());
static WORKTREE_PREFIX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\.\./[^/]+/").unwrap());

/// The outcome of normalising one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedPath {
    /// `None` when the entry was a placeholder or empty.
    pub path: Option<String>,
    /// One note per change, e.g. `stripped worktree prefix ../handshake_main/`.
    pub changes: Vec<String>,
}

/// Normalises one path entry: backticks, trailing parenthetical note, separators, leading
/// `./` and `/`, worktree prefix `../<checkout_dir>/`, placeholders.
pub fn normalise_path(raw: &str) -> NormalisedPath {
    let mut changes = Vec::new();
    let mut p = raw.trim().to_string();
    if p.contains('`') {
        p = p.replace('`', "").trim().to_string();
        changes.push("stripped backticks".to_string());
    }
    if let Some(c) = TRAILING_NOTE.captures(&p) {
        let kept = c[1].to_string();
        changes.push(format!("dropped note {:?}", p[kept.len()..].trim()));
        p = kept;
    }
    if p.contains('\\') {
        p = p.replace('\\', "/");
        changes.push("replaced backslashes".to_string());
    }
    if p.contains("//") {
        while p.contains("//") {
            p = p.replace("//", "/");
        }
        changes.push("collapsed //".to_string());
    }
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest.to_string();
            changes.push("stripped leading ./".to_string());
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest.to_string();
            changes.push("stripped leading /".to_string());
        } else {
            break;
        }
    }
    if let Some(m) = WORKTREE_PREFIX.find(&p)
        && m.as_str() != "../../"
    {
        changes.push(format!("stripped worktree prefix {}", m.as_str()));
        p = p[m.end()..].to_string();
    }
    if p.is_empty() || PLACEHOLDERS.iter().any(|ph| p.eq_ignore_ascii_case(ph)) {
        if !p.is_empty() {
            changes.push(format!("dropped placeholder {p}"));
        }
        return NormalisedPath { path: None, changes };
    }
    NormalisedPath { path: Some(p), changes }
}

/// Normalises a list of entries, de-duplicating in first-occurrence order and recording
/// every change in `warnings` as `<field>: <raw>: <change>`.
pub fn normalise_paths(raw: &[String], field: &str, warnings: &mut Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in raw {
        let n = normalise_path(entry);
        for change in &n.changes {
            warnings.push(format!("{field}: {:?}: {change}", entry.trim()));
        }
        if let Some(p) = n.path {
            if out.contains(&p) {
                warnings.push(format!("{field}: dropped duplicate {p:?}"));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A scope entry reduced to the prefix it stands for: trailing `/**/*`, `/**` and `/`
/// removed. `None` for entries that must match nothing (bare `**`, empty).
fn scope_prefix(entry: &str) -> Option<String> {
    let mut e = normalise_path(entry).path?;
    loop {
        if let Some(s) = e.strip_suffix("/**/*") {
            e = s.to_string();
        } else if let Some(s) = e.strip_suffix("/**") {
            e = s.to_string();
        } else if let Some(s) = e.strip_suffix('/') {
            e = s.to_string();
        } else {
            break;
        }
    }
    if e.is_empty() || e == "**" || e == "*" { None } else { Some(e) }
}

/// A candidate path (an MT's `files.modify` / `files.create` entry) in comparable form.
/// Only the harmless steps are applied (separators, `//`, leading `./`): a candidate that
/// is absolute, climbs with `..` or carries a worktree prefix names a file outside the
/// workspace, and stripping those would let it pass as an in-scope path. Such candidates
/// (and placeholders) give `None`, so they are never inside any scope.
fn candidate_path(raw: &str) -> Option<String> {
    let mut p = raw.trim().replace('\\', "/");
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.to_string();
    }
    let bad = p.is_empty()
        || p.starts_with('/')
        || p.split('/').any(|seg| seg == "..")
        || PLACEHOLDERS.iter().any(|ph| p.eq_ignore_ascii_case(ph));
    if bad { None } else { Some(p) }
}

/// Whether `path` lies inside one of `scope_entries` (14.2.5): it equals an entry or
/// starts with an entry followed by `/`, after trailing `/**`, `/**/*` and `/` are removed
/// from the entry. A bare `**` entry matches nothing; so does an absolute candidate or one
/// with a `..` segment.
pub fn path_in_scope(path: &str, scope_entries: &[String]) -> bool {
    let Some(candidate) = candidate_path(path) else {
        return false;
    };
    let candidate = candidate.trim_end_matches('/');
    scope_entries.iter().filter_map(|e| scope_prefix(e)).any(|prefix| {
        candidate == prefix || (candidate.starts_with(&prefix) && candidate[prefix.len()..].starts_with('/'))
    })
}

/// Whether an OUT_OF_SCOPE entry is a path rather than prose: one token, no spaces, with
/// a `/` or a file extension.
pub fn looks_like_path(entry: &str) -> bool {
    let Some(p) = normalise_path(entry).path else {
        return false;
    };
    !p.chars().any(char::is_whitespace)
        && (p.contains('/')
            || p.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && !ext.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalisation_applies_every_step() {
        let n = normalise_path("  `./src\\models//x/ (new skill_bank module)`  ");
        assert_eq!(n.path.as_deref(), Some("src/models/x/"));
        assert_eq!(normalise_path("../handshake_main/src/a.rs").path.as_deref(), Some("src/a.rs"));
        assert_eq!(normalise_path("/abs/x").path.as_deref(), Some("abs/x"));
        assert_eq!(normalise_path("N/A").path, None);
        assert_eq!(normalise_path("PATH/TO/FILE").path, None);
    }

    #[test]
    fn dedup_keeps_first_and_warns() {
        let mut w = Vec::new();
        let out = normalise_paths(
            &scope(&["src/a.rs", "./src/a.rs", "NONE", "src/b.rs"]),
            "IN_SCOPE_PATHS",
            &mut w,
        );
        assert_eq!(out, ["src/a.rs", "src/b.rs"]);
        assert!(w.iter().any(|m| m.contains("duplicate")));
        assert!(w.iter().any(|m| m.contains("placeholder")));
    }

    #[test]
    fn scope_matching_follows_the_prefix_rule() {
        let s = scope(&["src/lib", "crates/x/**", "docs/**/*", "a.rs"]);
        assert!(path_in_scope("src/lib", &s));
        assert!(path_in_scope("src/lib/mod.rs", &s));
        assert!(!path_in_scope("src/library.rs", &s));
        assert!(path_in_scope("crates/x/src/main.rs", &s));
        assert!(path_in_scope("docs/a/b.md", &s));
        assert!(path_in_scope("./a.rs", &s));
        assert!(!path_in_scope("b.rs", &s));
        assert!(!path_in_scope("src/lib/../../etc/passwd", &s));
        assert!(path_in_scope("src\\lib\\x.rs", &s));
    }

    #[test]
    fn candidates_outside_the_workspace_never_match() {
        let s = scope(&["src/"]);
        assert!(!path_in_scope("../handshake_main/src/a.rs", &s));
        assert!(!path_in_scope("/src/a.rs", &s));
        assert!(!path_in_scope("NONE", &s));
    }

    #[test]
    fn bare_double_star_matches_nothing() {
        assert!(!path_in_scope("src/a.rs", &scope(&["**"])));
        assert!(!path_in_scope("src/a.rs", &scope(&["/**"])));
        assert!(!path_in_scope("src/a.rs", &scope(&[])));
    }

    #[test]
    fn prose_is_not_a_path() {
        assert!(!looks_like_path("Calendar Lens UI and user-facing projection work"));
        assert!(looks_like_path("src/secret.rs"));
        assert!(looks_like_path("Cargo.lock"));
    }
}
