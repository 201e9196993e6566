//! MTX-SPEC 10.1 rule 3 (no bypass), as a structural test: outside the Tool Bus crate, no
//! production source of the host (host/src and host/crates/*/src, `#[cfg(test)]` code and
//! comments excluded) may spawn a process or open a file for writing. A short allow-list
//! names the few non-workspace writers, each with its reason.
//!
//! The scanner is a plain function over a directory tree, so the tests of the test below
//! feed it a temp tree with a stray `Command::new` (and friends) and watch it fail.

use std::path::{Path, PathBuf};

/// Text that spawns a process.
const SPAWN_PATTERNS: &[&str] = &[
    "std::process::Command",
    "process::Command",
    "Command::new",
    "libc::fork",
    "libc::vfork",
    "libc::execv",
    "libc::execve",
    "libc::execvp",
    "libc::system",
    "posix_spawn",
];

/// Text that opens, creates, replaces or removes a file, or removes a directory. Creating
/// a directory alone is not flagged: it changes no file content, and the state-dir layout
/// code creates its directories in many places.
const WRITE_PATTERNS: &[&str] = &[
    "File::create",
    "File::options",
    "OpenOptions",
    "fs::write",
    "fs::rename",
    "fs::copy",
    "fs::remove_file",
    "fs::remove_dir",
    "fs::hard_link",
    "fs::set_permissions",
    "fs::symlink",
    "unix::fs::symlink",
    "remove_file(",
    "remove_dir_all(",
    "set_permissions(",
];

/// Paths (relative to host/, `/`-separated; a trailing `/` allows a whole directory)
/// allowed to match, and why.
const ALLOWED: &[(&str, &str)] = &[
    (
        "crates/mtx-toolbus/src/",
        "the Tool Bus itself: engine.shell spawns verify commands and engine.fs applies edits, both behind the gates",
    ),
    (
        "crates/mtx-store/src/",
        "the durable-state crate writes only beneath the state directory (artifact store, ledger, Flight Recorder, \
         progress, Job History) through its atomic-write and append primitives; its crate doc forbids touching the \
         workspace under execution",
    ),
    (
        "crates/mtx-plugin/src/engine.rs",
        "the compiled-component cache: precompiled `*.cwasm` files written (temp + rename) into a private cache \
         directory the run config names, never into the workspace under execution",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    file: String,
    line: usize,
    pattern: &'static str,
}

/// Removes comments and blanks string and char literal contents, keeping line breaks so
/// line numbers stay right. Patterns inside strings (an error message that names
/// `fs::write`) are not calls.
fn strip_comments_and_strings(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"')
                || (next == Some('#') && b.get(i + 2).is_some_and(|&x| x == '"' || x == '#')))
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            out.push_str("\"\"");
            while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            i = j;
        } else if c == '"' {
            out.push_str("\"\"");
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if b.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == '\''
            && (b.get(i + 2) == Some(&'\'') || (next == Some('\\') && b.get(i + 3) == Some(&'\'')))
        {
            // A char literal such as '{' or '\n'; lifetimes ('a) are left alone.
            out.push_str("' '");
            i += if next == Some('\\') { 4 } else { 3 };
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks every item annotated `#[cfg(test)]` (a `mod tests { .. }`, a fn, an impl), keeping
/// line breaks. Works on text already stripped of comments and strings.
fn strip_cfg_test(src: &str) -> String {
    let mut out: Vec<char> = src.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + marker.len();
        // The item ends at its first `;` outside braces, or at the brace matching its first `{`.
        let mut depth = 0usize;
        while j < out.len() {
            match out[j] {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        for c in out.iter_mut().take((j + 1).min(src.len())).skip(start) {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j + 1;
    }
    out.into_iter().collect()
}

fn scan_source(rel: &str, src: &str) -> Vec<Finding> {
    let cleaned = strip_cfg_test(&strip_comments_and_strings(src));
    let mut found = Vec::new();
    for (n, line) in cleaned.lines().enumerate() {
        for pattern in SPAWN_PATTERNS.iter().chain(WRITE_PATTERNS) {
            if line.contains(pattern) {
                found.push(Finding { file: rel.to_owned(), line: n + 1, pattern });
            }
        }
        // `use std::process::{Command as Cmd}` followed by `Cmd::new(..)`.
        let is_use = line.trim_start().starts_with("use ") || line.trim_start().starts_with("pub use ");
        if is_use
            && line.contains("process::")
            && line.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|t| t == "Command")
        {
            found.push(Finding { file: rel.to_owned(), line: n + 1, pattern: "use <process>::Command" });
        }
        // `use std::fs::{write, rename}` followed by a bare `write(..)` call.
        if line.trim_start().starts_with("use ") && line.contains("fs::") {
            for name in ["write", "rename", "copy", "remove_file", "remove_dir_all", "File"] {
                let imported = line
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|tok| tok == name && name != "File");
                if imported {
                    found.push(Finding {
                        file: rel.to_owned(),
                        line: n + 1,
                        pattern: "use std::fs::<writer>",
                    });
                }
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Scans host/src and host/crates/*/src under `host_dir`; returns findings outside the
/// allow-list.
fn scan_host(host_dir: &Path, allowed: &[(&str, &str)]) -> Vec<Finding> {
    let mut src_dirs = vec![host_dir.join("src")];
    if let Ok(crates) = std::fs::read_dir(host_dir.join("crates")) {
        let mut dirs: Vec<PathBuf> = crates.flatten().map(|e| e.path().join("src")).collect();
        dirs.sort();
        src_dirs.extend(dirs);
    }
    let mut files = Vec::new();
    for d in &src_dirs {
        rust_files(d, &mut files);
    }
    files.sort();
    let mut findings = Vec::new();
    for f in files {
        let rel = f.strip_prefix(host_dir).unwrap().to_string_lossy().replace('\\', "/");
        let is_allowed =
            allowed.iter().any(|(a, _)| if a.ends_with('/') { rel.starts_with(a) } else { rel == *a });
        if is_allowed {
            continue;
        }
        let src = std::fs::read_to_string(&f).unwrap_or_default();
        findings.extend(scan_source(&rel, &src));
    }
    findings
}

#[test]
fn nothing_outside_the_tool_bus_spawns_or_writes() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    assert!(host.join("crates/mtx-toolbus/src/lib.rs").is_file(), "scanning from {}", host.display());
    let findings = scan_host(&host, ALLOWED);
    assert!(
        findings.is_empty(),
        "production code outside the Tool Bus spawns a process or writes a file (MTX-SPEC 10.1 rule 3); \
         route it through mtx-toolbus (workspace) or mtx-store (state dir):\n{findings:#?}"
    );
}

#[test]
fn every_allow_list_entry_says_why_and_whole_crate_entries_exist() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (path, why) in ALLOWED {
        assert!(why.len() > 40, "allow-list entry {path} needs a real reason");
        if path.ends_with('/') {
            assert!(host.join(path).is_dir(), "allow-list entry {path} does not exist");
        }
    }
}

// ---- tests of the test ----

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (rel, body) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    d
}

#[test]
fn a_stray_command_new_in_a_crate_is_found() {
    let d = tree(&[
        ("src/lib.rs", "pub fn ok() {}\n"),
        ("crates/mtx-evil/src/run.rs", "pub fn go() {\n    let _ = std::process::Command::new(\"sh\");\n}\n"),
    ]);
    let f = scan_host(d.path(), ALLOWED);
    assert_eq!(f.len(), 3, "{f:#?}");
    assert!(f.iter().all(|x| x.file == "crates/mtx-evil/src/run.rs" && x.line == 2));
}

#[test]
fn stray_writes_and_forks_in_the_host_are_found() {
    let d = tree(&[(
        "src/main.rs",
        "use std::fs::{self, write};\nfn a() { fs::write(\"x\", b\"\").unwrap(); }\nfn b() { std::fs::OpenOptions::new(); }\nfn c() { unsafe { libc::fork(); } }\n",
    )]);
    let lines: Vec<(usize, &str)> =
        scan_host(d.path(), ALLOWED).into_iter().map(|f| (f.line, f.pattern)).collect();
    assert_eq!(
        lines,
        [(1, "use std::fs::<writer>"), (2, "fs::write"), (3, "OpenOptions"), (4, "libc::fork")]
    );
}

#[test]
fn test_code_comments_and_strings_are_not_findings_but_code_after_them_is() {
    let src = "\
// Command::new is only mentioned here
/* fs::write in a block comment */
pub fn msg() -> &'static str { \"cannot fs::write {x}\" }
#[cfg(test)]
mod tests {
    fn t() { let c = '{'; std::process::Command::new(\"true\"); }
}
pub fn after() { std::fs::remove_file(\"x\").ok(); }
";
    let f = scan_source("src/lib.rs", src);
    assert_eq!(
        f.iter().map(|x| (x.line, x.pattern)).collect::<Vec<_>>(),
        [(8, "fs::remove_file"), (8, "remove_file(")]
    );
}

#[test]
fn an_aliased_command_import_is_found() {
    let src =
        "use std::process::{Command as Cmd, Stdio};\nfn f() { Cmd::new(\"x\").stdin(Stdio::null()); }\n";
    let f = scan_source("src/lib.rs", src);
    assert_eq!(f.iter().map(|x| (x.line, x.pattern)).collect::<Vec<_>>(), [(1, "use <process>::Command")]);
}

#[test]
fn the_allow_list_covers_only_its_own_paths() {
    let body = "fn f() { std::process::Command::new(\"x\"); }\n";
    let d = tree(&[("crates/mtx-toolbus/src/shell.rs", body), ("crates/mtx-toolbusx/src/shell.rs", body)]);
    let f = scan_host(d.path(), ALLOWED);
    assert!(!f.is_empty());
    assert!(f.iter().all(|x| x.file.starts_with("crates/mtx-toolbusx/")), "{f:#?}");
}
