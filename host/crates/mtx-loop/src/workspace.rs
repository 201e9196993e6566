//! Read-only access to the workspace under execution, and the path rules every module of
//! this crate shares (14.2.5 normalisation and scope matching).
//!
//! This is the only place in the crate that touches the filesystem, and it only reads:
//! it must never write, create or delete anything, and it must never resolve a path that
//! leaves the workspace root.

use std::collections::BTreeMap;
use std::io;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Reads workspace files by repo-relative path (`/` separators).
///
/// `Ok(None)` means the file does not exist; an `Err` is an environment failure
/// (permission, escape attempt, I/O error).
pub trait WorkspaceReader {
    fn read(&self, rel_path: &str) -> Result<Option<Vec<u8>>, io::Error>;
}

/// Largest file [`DirReader`] reads: a prompt holds a few thousand tokens, so a bigger
/// file can only be shown as chunks, and reading gigabytes to pick them is not worth it.
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

/// A [`WorkspaceReader`] over a directory on disk.
///
/// Refuses relative paths that are absolute, contain `..`, backslashes or NUL, and paths
/// whose canonical form (symlinks resolved) lies outside the root.
///
/// A read opens the path beneath the root's directory handle (`openat2` with
/// `RESOLVE_BENEATH` where the kernel has it), one call instead of resolving every
/// component of the absolute path. What that refuses (a symlink leaving the root, or an
/// absolute symlink, which `RESOLVE_BENEATH` refuses even when it points inside) is
/// decided again by resolving the path, so a link inside the workspace still reads.
#[derive(Debug, Clone)]
pub struct DirReader {
    root: PathBuf,
    dir: Arc<cap_std::fs::Dir>,
}

impl DirReader {
    /// A reader rooted at `root`; the root is canonicalised once so that later checks
    /// compare like with like.
    pub fn new(root: &Path) -> Result<Self, io::Error> {
        let root = root.canonicalize()?;
        let dir = cap_std::fs::Dir::open_ambient_dir(&root, cap_std::ambient_authority())?;
        Ok(DirReader { root, dir: Arc::new(dir) })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path resolved (symlinks followed) and checked to lie inside the root; `None`
    /// when it does not exist.
    fn resolve(&self, rel_path: &str) -> Result<Option<PathBuf>, io::Error> {
        let canonical = match self.root.join(rel_path).canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !canonical.starts_with(&self.root) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("workspace path {rel_path:?} resolves outside the workspace root"),
            ));
        }
        Ok(Some(canonical))
    }
}

impl WorkspaceReader for DirReader {
    fn read(&self, rel_path: &str) -> Result<Option<Vec<u8>>, io::Error> {
        if let Err(reason) = check_relative_path(rel_path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("workspace path {rel_path:?} refused: {reason}"),
            ));
        }
        let file = match self.dir.open(rel_path) {
            Ok(file) => file.into_std(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(_) => match self.resolve(rel_path)? {
                Some(canonical) => match std::fs::File::open(&canonical) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                },
                None => return Ok(None),
            },
        };
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Ok(None);
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "workspace file {rel_path:?} has {} bytes, more than the {MAX_READ_BYTES} a read allows",
                    meta.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut (&file).take(MAX_READ_BYTES), &mut bytes)?;
        Ok(Some(bytes))
    }
}

/// An in-memory [`WorkspaceReader`]: path -> bytes. Used by callers that hold file
/// contents already (replay, tests).
#[derive(Debug, Clone, Default)]
pub struct MemReader {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl MemReader {
    pub fn new<P: Into<String>, C: Into<Vec<u8>>>(files: impl IntoIterator<Item = (P, C)>) -> Self {
        MemReader { files: files.into_iter().map(|(p, c)| (p.into(), c.into())).collect() }
    }
}

impl WorkspaceReader for MemReader {
    fn read(&self, rel_path: &str) -> Result<Option<Vec<u8>>, io::Error> {
        Ok(self.files.get(rel_path).cloned())
    }
}

/// Why a relative path is refused, or `Ok` when it is a plain repo-relative path.
pub(crate) fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.contains('\0') {
        return Err("contains NUL");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    if path.contains('\\') {
        return Err("contains a backslash");
    }
    if path.starts_with('/') || Path::new(path).is_absolute() || path.as_bytes().get(1) == Some(&b':') {
        return Err("absolute path");
    }
    for comp in Path::new(path).components() {
        match comp {
            Component::ParentDir => return Err("contains '..'"),
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err("absolute path"),
        }
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err("contains '..'");
    }
    Ok(())
}

/// Normalises a path the way 14.2.5 step 1 and 3 do: strip backticks and surrounding
/// whitespace, `\` -> `/`, collapse `//`, strip a leading `./` and a leading `/`.
pub fn normalize_path(raw: &str) -> String {
    let mut p: String =
        raw.trim().chars().filter(|c| *c != '`').collect::<String>().trim().replace('\\', "/");
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest.to_string();
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest.to_string();
        } else {
            break;
        }
    }
    p
}

/// Whether `candidate` matches one scope `entry` (14.2.5): a trailing `/**`, `/**/*` or `/`
/// is removed from the entry; the candidate matches when it equals the entry or lies under
/// it. A bare `**` (or an entry that normalises to nothing) matches nothing.
pub fn path_matches_entry(candidate: &str, entry: &str) -> bool {
    let mut e = normalize_path(entry);
    for suffix in ["/**/*", "/**", "/"] {
        if let Some(stripped) = e.strip_suffix(suffix) {
            e = stripped.to_string();
            break;
        }
    }
    if e.is_empty() || e == "**" || e == "*" {
        return false;
    }
    let c = normalize_path(candidate);
    // `src/../secret` lexically starts with `src/` but is not under it.
    if c.split('/').any(|seg| seg == "..") {
        return false;
    }
    c == e || c.strip_prefix(e.as_str()).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `candidate` matches any of `entries`.
pub fn path_in_entries(candidate: &str, entries: &[String]) -> bool {
    entries.iter().any(|e| path_matches_entry(candidate, e))
}

/// Lines of a text the way an editor numbers them: a trailing newline does not start an
/// extra line, `\r` before `\n` is not part of the line.
pub(crate) fn text_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_reader_reads_files_and_reports_missing_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "fn a() {}\n").unwrap();
        let r = DirReader::new(dir.path()).unwrap();
        assert_eq!(r.read("src/lib.rs").unwrap().unwrap(), b"fn a() {}\n");
        assert_eq!(r.read("src/missing.rs").unwrap(), None);
        assert_eq!(r.read("src").unwrap(), None, "a directory is not a file");
    }

    #[test]
    fn dir_reader_refuses_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("big.bin")).unwrap();
        f.set_len(MAX_READ_BYTES + 1).unwrap();
        let r = DirReader::new(dir.path()).unwrap();
        assert_eq!(r.read("big.bin").unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn dir_reader_refuses_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        let r = DirReader::new(dir.path()).unwrap();
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "a\\b", "", "a\0b"] {
            let err = r.read(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn dir_reader_refuses_symlink_leaving_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let r = DirReader::new(dir.path()).unwrap();
        assert_eq!(r.read("link").unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }

    #[cfg(unix)]
    #[test]
    fn dir_reader_follows_symlinks_that_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/real.rs"), "real").unwrap();
        std::os::unix::fs::symlink("real.rs", dir.path().join("src/relative.rs")).unwrap();
        // An absolute link is refused by a beneath-the-root open even when it points
        // inside; the reader resolves it and reads.
        std::os::unix::fs::symlink(dir.path().join("src/real.rs"), dir.path().join("absolute.rs")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("src/gone.rs"), dir.path().join("dangling.rs")).unwrap();
        let r = DirReader::new(dir.path()).unwrap();
        assert_eq!(r.read("src/relative.rs").unwrap().unwrap(), b"real");
        assert_eq!(r.read("absolute.rs").unwrap().unwrap(), b"real");
        assert_eq!(r.read("dangling.rs").unwrap(), None);
    }

    #[test]
    fn normalize_path_follows_14_2_5() {
        assert_eq!(normalize_path(" `./src//lib.rs` "), "src/lib.rs");
        assert_eq!(normalize_path("/src\\a.rs"), "src/a.rs");
    }

    #[test]
    fn scope_matching_handles_dirs_globs_and_bare_stars() {
        assert!(path_matches_entry("src/a.rs", "src/a.rs"));
        assert!(path_matches_entry("src/x/a.rs", "src/**"));
        assert!(path_matches_entry("src/x/a.rs", "src/"));
        assert!(!path_matches_entry("srcx/a.rs", "src"));
        assert!(!path_matches_entry("a.rs", "**"));
        assert!(!path_matches_entry("a.rs", ""));
        assert!(!path_matches_entry("src/../secret.rs", "src/**"));
        assert!(!path_matches_entry("src/..", "src"));
    }

    #[test]
    fn text_lines_ignores_trailing_newline_and_cr() {
        assert_eq!(text_lines("a\r\nb\n"), vec!["a", "b"]);
        assert_eq!(text_lines("a\n\n"), vec!["a", ""]);
        assert!(text_lines("").is_empty());
    }
}
