//! Durable file primitives shared by every store: atomic replace and directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically: write a temp file in the same directory,
/// fsync it, rename it over `path`, fsync the directory. A crash leaves either the old
/// or the new complete file, never a torn one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_hooked(path, bytes, || {}, || {})
}

/// Replaces several files of one directory atomically each, in order: every temp file is
/// written and fsynced, renamed over its target in the order given, then the directory is
/// fsynced once. A crash leaves each file old or new, never torn; the one directory fsync
/// is what a batch saves over separate `atomic_write` calls.
pub fn atomic_write_all(dir: &Path, files: &[(&str, &[u8])]) -> io::Result<()> {
    let entries: Vec<(&str, Content<'_>)> =
        files.iter().map(|(name, bytes)| (*name, Content::Bytes(bytes))).collect();
    atomic_write_entries(dir, &entries)
}

/// What [`atomic_write_entries`] puts in a file.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Bytes(&'a [u8]),
    /// The bytes of an existing durable, immutable file (a content-addressed blob): the
    /// new name is a hard link to it, so the bytes are neither copied nor synced again.
    /// Where a link cannot be made (another filesystem), the bytes are copied.
    SameAs(&'a Path),
}

/// [`atomic_write_all`] where a file may share the bytes of an existing one.
pub fn atomic_write_entries(dir: &Path, files: &[(&str, Content<'_>)]) -> io::Result<()> {
    create_dir_durable(dir)?;
    let mut staged = Vec::with_capacity(files.len());
    let result = (|| {
        for (name, content) in files {
            let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), unique_suffix()));
            staged.push(tmp.clone());
            match content {
                Content::Bytes(bytes) => write_synced(&tmp, bytes)?,
                Content::SameAs(source) => {
                    if fs::hard_link(source, &tmp).is_err() {
                        write_synced(&tmp, &fs::read(source)?)?;
                    }
                }
            }
        }
        for ((name, _), tmp) in files.iter().zip(&staged) {
            fs::rename(tmp, dir.join(name))?;
            // Renaming a link onto a name of the same file is a no-op that keeps both.
            if fs::symlink_metadata(tmp).is_ok() {
                fs::remove_file(tmp)?;
            }
        }
        sync_dir(dir)
    })();
    if result.is_err() {
        for tmp in &staged {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `atomic_write` with a call just before the rename and one after the directory fsync;
/// the progress store places its crash failpoints there.
pub(crate) fn atomic_write_hooked(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(),
    after_rename: impl FnOnce(),
) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    create_dir_durable(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), unique_suffix()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        before_rename();
        fs::rename(&tmp, path)?;
        sync_dir(dir)?;
        after_rename();
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `create_dir_all`, then fsync the parent of every directory it created, so a new
/// directory (a step's `step_outputs/<key>/`) survives a power loss along with its files.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer created it between the check and here.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_replaces_every_file_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("x/y");
        atomic_write_all(&sub, &[("a.txt", b"one"), ("b.json", b"{}")]).unwrap();
        atomic_write_all(&sub, &[("a.txt", b"two")]).unwrap();
        assert_eq!(fs::read(sub.join("a.txt")).unwrap(), b"two");
        assert_eq!(fs::read(sub.join("b.json")).unwrap(), b"{}");
        let names: Vec<String> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_file_can_share_the_bytes_of_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b"prompt bytes").unwrap();
        let step = dir.path().join("step");
        let entries = [("prompt.txt", Content::SameAs(&blob)), ("intent.json", Content::Bytes(b"{}"))];
        atomic_write_entries(&step, &entries).unwrap();
        // Again: the name already links to the blob, and no temp file may stay behind.
        atomic_write_entries(&step, &entries).unwrap();
        assert_eq!(fs::read(step.join("prompt.txt")).unwrap(), b"prompt bytes");
        let mut names: Vec<String> = fs::read_dir(&step)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["intent.json", "prompt.txt"]);
        let missing = dir.path().join("nothing");
        assert!(atomic_write_entries(&step, &[("x", Content::SameAs(&missing))]).is_err());
        assert!(!step.join("x").exists());
    }

    #[test]
    fn atomic_write_creates_missing_directories_and_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/file.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }
}
