//! Wording analysis for the planner: the words of a deliverable, how well a path matches
//! them, which test filter a command carries, and the task tags of an MT.
//!
//! Purely lexical and deterministic; must never depend on anything but its arguments.

use std::collections::BTreeSet;

use crate::paths;

/// Words too common in packet prose to say anything about a file.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "into", "that", "this", "all", "are", "has", "have", "not", "use",
    "add", "new", "via", "each", "its", "must", "should", "when", "verify", "test", "tests", "field", "file",
    "files", "struct", "type", "value", "values", "data", "call", "run", "src", "lib", "mod", "rs", "py",
    "ts", "option", "string", "none", "some", "true", "false", "current", "correct", "read", "back",
];

/// Path components that name no subsystem.
const GENERIC_DIRS: &[&str] = &[
    "src", "lib", "crates", "crate", "backend", "frontend", "app", "apps", "pkg", "packages", "internal",
    "main",
];

/// Lower-case words of `text`: identifiers split on non-alphanumerics except `_`, plus the
/// parts of `snake_case` and `CamelCase` identifiers, plus a snake form of CamelCase.
pub fn words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
        let raw = raw.trim_matches('.');
        if raw.is_empty() {
            continue;
        }
        let snake = camel_to_snake(raw);
        for w in std::iter::once(raw.to_lowercase())
            .chain(std::iter::once(snake.clone()))
            .chain(snake.split(['_', '.']).map(String::from))
        {
            if w.len() >= 3 && !STOPWORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()) {
                out.insert(w);
            }
        }
    }
    out
}

/// `FlightRecorderEvent` -> `flight_recorder_event`.
fn camel_to_snake(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    out
}

/// How strongly a path matches a set of words: a file name or stem named outright weighs
/// 3, a directory component 1, a CamelCase identifier whose snake form starts with a
/// directory name 1.
pub fn path_score(path: &str, words: &BTreeSet<String>) -> u32 {
    let lower = path.to_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower).to_string();
    let stem = paths::stem(&base).to_string();
    let dirs: Vec<&str> = lower.split('/').rev().skip(1).filter(|d| !GENERIC_DIRS.contains(d)).collect();
    let mut score = 0;
    if words.contains(&base)
        || (stem.len() >= 3 && words.contains(&stem) && !STOPWORDS.contains(&stem.as_str()))
    {
        score += 3;
    }
    for d in &dirs {
        let named = words.contains(*d);
        let camel_prefix =
            d.len() >= 4 && words.iter().any(|w| w.len() > d.len() && w.starts_with(&format!("{d}_")));
        if named || camel_prefix {
            score += 1;
        }
    }
    score
}

/// Flags of cargo, libtest, pytest and go test whose value is a separate word.
const VALUE_FLAGS: &[&str] = &[
    "-p",
    "--package",
    "--manifest-path",
    "--test",
    "--features",
    "-F",
    "--bin",
    "--example",
    "--bench",
    "--target",
    "--target-dir",
    "-j",
    "--jobs",
    "--profile",
    "--color",
    "--test-threads",
    "--skip",
    "--format",
    "--logfile",
    "-Z",
    "-m",
    "-c",
    "--rootdir",
    "-tags",
    "-timeout",
    "-count",
];

/// The test filter of a command: the first plain argument after `cargo test`/`cargo nextest
/// run`, or a path/node id given to `pytest`/`go test`/`npm test --`.
pub fn test_filter(command: &str) -> Option<String> {
    let parts: Vec<&str> = command.split_whitespace().collect();
    let after = match parts.as_slice() {
        ["cargo", "test", rest @ ..] => rest,
        ["cargo", "nextest", "run", rest @ ..] => rest,
        ["pytest", rest @ ..]
        | ["python", "-m", "pytest", rest @ ..]
        | ["python3", "-m", "pytest", rest @ ..] => rest,
        ["go", "test", rest @ ..] => rest,
        _ => return None,
    };
    let mut skip_value = false;
    let mut take_next = false;
    for a in after {
        let a = a.trim_matches(['"', '\'']);
        if take_next {
            return Some(a.to_string());
        }
        if skip_value {
            skip_value = false;
            continue;
        }
        // `cargo test -- <filter>`: libtest's own arguments follow `--`, the filter among them.
        if a == "--" {
            continue;
        }
        // `pytest -k <expr>`, `go test -run <regex>`: the value is the filter.
        if a == "-k" || a == "-run" {
            take_next = true;
            continue;
        }
        if a.starts_with('-') {
            skip_value = VALUE_FLAGS.contains(&a);
            continue;
        }
        return Some(a.to_string());
    }
    None
}

/// Whether `command` runs something specific to these words or paths.
pub fn command_matches(command: &str, words: &BTreeSet<String>, files: &[String]) -> bool {
    let Some(filter) = test_filter(command) else { return false };
    let lower = filter.to_lowercase();
    if files.iter().any(|f| lower.contains(&f.to_lowercase()) || f.to_lowercase().contains(&lower)) {
        return true;
    }
    let filter_words = self::words(&filter.replace("::", " "));
    let parts: BTreeSet<&str> = lower.split(['_', ':', '/', '.']).filter(|p| p.len() >= 3).collect();
    let overlap = parts.iter().filter(|p| words.contains(**p)).count();
    overlap >= 2
        || (parts.len() == 1 && overlap == 1)
        || filter_words.iter().any(|w| w.contains('_') && words.contains(w))
}

/// Whether a command is a whole-suite command (no filter, not a wrapper of something narrower).
pub fn is_whole_suite(command: &str) -> bool {
    test_filter(command).is_none()
}

/// Task tags: languages from extensions, subsystems from path components, a few topics
/// from the wording.
pub fn task_tags(files: &[String], text: &str) -> Vec<String> {
    let mut tags = BTreeSet::new();
    for f in files {
        if let Some(lang) = paths::extension(f).and_then(|e| language(&e)) {
            tags.insert(lang.to_string());
        }
        let comps: Vec<&str> = f.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            let c = c.to_lowercase();
            let test_dir = c == "tests" || c == "test";
            if !GENERIC_DIRS.contains(&c.as_str()) && !test_dir && c.len() >= 3 && !c.starts_with('.') {
                tags.insert(c.replace('-', "_"));
            }
        }
        if comps.iter().any(|c| *c == "tests" || *c == "test") || f.contains("_test.") || f.contains("test_")
        {
            tags.insert("testing".into());
        }
    }
    let lower = text.to_lowercase();
    for (needle, tag) in [
        ("test", "testing"),
        ("migration", "migration"),
        ("schema", "schema"),
        ("serde", "serialization"),
        ("serializ", "serialization"),
        ("async", "async"),
        ("sql", "sql"),
        ("duckdb", "sql"),
        ("sqlite", "sql"),
        ("lifetime", "lifetimes"),
        ("trait", "traits"),
    ] {
        if lower.contains(needle) {
            tags.insert(tag.into());
        }
    }
    tags.into_iter().collect()
}

fn language(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "rs" => "rust",
        "py" => "python",
        "ts" | "tsx" => "typescript",
        "js" | "jsx" | "mjs" => "javascript",
        "go" => "go",
        "java" => "java",
        "kt" => "kotlin",
        "c" | "h" => "c",
        "cc" | "cpp" | "hpp" | "cxx" => "cpp",
        "rb" => "ruby",
        "sh" | "bash" => "shell",
        "sql" => "sql",
        "md" => "docs",
        "toml" | "yaml" | "yml" | "json" => "config",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_identifiers() {
        let w = words("FlightRecorderEvent struct has model_session_id: Option<String> field.");
        for expected in [
            "flightrecorderevent",
            "flight_recorder_event",
            "flight",
            "recorder",
            "model_session_id",
            "session",
        ] {
            assert!(w.contains(expected), "{expected} missing from {w:?}");
        }
        assert!(!w.contains("struct") && !w.contains("has"));
    }

    #[test]
    fn paths_score_by_name_and_directory() {
        let w = words("DuckDB schema includes model_session_id TEXT column via migration.");
        assert_eq!(path_score("src/flight_recorder/duckdb.rs", &w), 3);
        let w = words("All 9 session emitters in workflows.rs populate model_session_id");
        assert_eq!(path_score("src/backend/core/src/workflows.rs", &w), 3);
        let w = words("FlightRecorderEvent struct gains a field");
        assert_eq!(path_score("src/flight_recorder/mod.rs", &w), 1);
        assert_eq!(path_score("src/other/mod.rs", &w), 0);
    }

    #[test]
    fn test_filters() {
        assert_eq!(test_filter("cargo test query_by_session").as_deref(), Some("query_by_session"));
        assert_eq!(
            test_filter("cargo test -p core config::merger -- --nocapture").as_deref(),
            Some("config::merger")
        );
        assert_eq!(test_filter("cargo test --manifest-path a/Cargo.toml"), None);
        assert_eq!(test_filter("pytest tests/test_a.py -q").as_deref(), Some("tests/test_a.py"));
        assert_eq!(test_filter("just gov-check"), None);
        assert_eq!(test_filter("cargo test -p handshake_core -- skill_bank").as_deref(), Some("skill_bank"));
        assert_eq!(test_filter("cargo test -- --test-threads 1 --nocapture"), None);
        assert_eq!(test_filter("pytest -q -k 'parser and not slow'").as_deref(), Some("parser"));
        assert_eq!(test_filter("go test ./... -run TestLexer").as_deref(), Some("./..."));
    }

    #[test]
    fn commands_match_wording_or_files() {
        let w = words("Query-by-session test: emit events across two sessions, query by model_session_id");
        assert!(command_matches("cargo test query_by_session", &w, &[]));
        assert!(!command_matches("cargo test flight_recorder_round_trip", &w, &[]));
        assert!(command_matches(
            "pytest tests/test_parser.py",
            &BTreeSet::new(),
            &["tests/test_parser.py".into()]
        ));
    }

    #[test]
    fn tags_from_paths_and_wording() {
        let t = task_tags(&["src/backend/core/flight_recorder/duckdb.rs".into()], "DuckDB migration");
        assert_eq!(t, vec!["core", "flight_recorder", "migration", "rust", "sql"]);
    }
}
