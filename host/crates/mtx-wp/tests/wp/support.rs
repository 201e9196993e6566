//! Shared helpers: fixture paths and temp packet folders.

use std::path::{Path, PathBuf};

/// A folder under tests/fixtures.
pub fn fixture(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir)
}

/// A temp dir holding `files` as `(name in the temp dir, content)`.
pub fn temp_packet(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Copies real fixtures into a temp dir under new names, as a Handshake packet folder.
pub fn real_folder(pairs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in pairs {
        std::fs::copy(fixture("real").join(from), dir.path().join(to)).unwrap();
    }
    dir
}
