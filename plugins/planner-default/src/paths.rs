//! Path handling for the planner: light normalisation of packet paths (MTX-SPEC 14.2.5),
//! scope matching as MT-VAL-005 does it, and expansion of directory scopes into the
//! concrete workspace files beneath them.
//!
//! Must never place a path outside the packet's in-scope entries into `modify`/`create`.

/// Backticks, a trailing parenthetical note, `\`, `./` and a leading `/` removed.
pub fn normalize(raw: &str) -> String {
    let mut p = raw.trim().to_string();
    if let Some(open) = p.find(" (") {
        p.truncate(open);
    }
    let mut p = p.replace('`', "").trim().replace('\\', "/");
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    let p = p.trim_start_matches("./").trim_start_matches('/');
    p.trim().to_string()
}

/// The scope entry without a trailing `/**`, `/**/*` or `/`; `None` for a bare `**`
/// (which matches nothing, so a mis-configured packet surfaces as MT-VAL-005 errors).
fn scope_prefix(entry: &str) -> Option<String> {
    let e = normalize(entry);
    let e = e.strip_suffix("/**/*").or_else(|| e.strip_suffix("/**")).unwrap_or(&e);
    let e = e.trim_end_matches('/');
    (!e.is_empty() && e != "**" && e != "*").then(|| e.to_string())
}

/// `path` equals a scope entry or lies beneath one.
pub fn in_scope(path: &str, entries: &[String]) -> bool {
    let p = normalize(path);
    entries.iter().filter_map(|e| scope_prefix(e)).any(|s| p == s || p.starts_with(&format!("{s}/")))
}

/// Whether the entry names a directory (ends with `/` or a glob, or has files beneath it).
pub fn is_directory(entry: &str, workspace: &[&str]) -> bool {
    let raw = normalize(entry);
    if raw.ends_with('/') || raw.ends_with("/**") || raw.ends_with("/**/*") {
        return true;
    }
    let Some(prefix) = scope_prefix(entry) else { return false };
    !workspace.contains(&prefix.as_str()) && workspace.iter().any(|f| f.starts_with(&format!("{prefix}/")))
}

/// The workspace files equal to or beneath `entry`, in workspace order.
pub fn expand<'a>(entry: &str, workspace: &[&'a str]) -> Vec<&'a str> {
    let Some(prefix) = scope_prefix(entry) else { return vec![] };
    workspace.iter().copied().filter(|f| *f == prefix || f.starts_with(&format!("{prefix}/"))).collect()
}

/// The file extension in lower case (`rs`, `py`), if any.
pub fn extension(path: &str) -> Option<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = base.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The file name without its extension.
pub fn stem(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.rsplit_once('.').map_or(base, |(s, _)| if s.is_empty() { base } else { s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_packet_paths() {
        assert_eq!(normalize(" `./src/models/` (new skill_bank module)"), "src/models/");
        assert_eq!(normalize("src\\\\a.rs"), "src/a.rs");
        assert_eq!(normalize("/src//b.rs"), "src/b.rs");
    }

    #[test]
    fn scope_matching_follows_mt_val_005() {
        let s = vec!["src/lib/**".to_string(), "docs/".to_string(), "**".to_string()];
        assert!(in_scope("src/lib/mod.rs", &s));
        assert!(in_scope("src/lib", &s));
        assert!(!in_scope("src/library.rs", &s));
        assert!(in_scope("docs/a/b.md", &s));
        assert!(!in_scope("other.rs", &s), "a bare ** matches nothing");
    }

    #[test]
    fn directories_expand_to_their_files() {
        let ws = ["src/a/x.rs", "src/a/y.rs", "src/ab.rs"];
        assert_eq!(expand("src/a/**", &ws), vec!["src/a/x.rs", "src/a/y.rs"]);
        assert!(is_directory("src/a", &ws));
        assert!(!is_directory("src/ab.rs", &ws));
        assert!(!is_directory("src/new.rs", &ws));
    }

    #[test]
    fn stems_and_extensions() {
        assert_eq!((stem("a/b/duckdb.rs"), extension("a/b/duckdb.rs").as_deref()), ("duckdb", Some("rs")));
        assert_eq!((stem("Makefile"), extension("Makefile")), ("Makefile", None));
        assert_eq!(extension(".gitignore"), None);
    }
}
