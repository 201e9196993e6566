//! Durable file primitives shared by every store: atomic replace and directory fsync.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::journal::{FrameContent, Journal};
use crate::spare::SparePool;

/// Replaces `path` with `bytes` atomically: write a temp file in the same directory,
/// fsync it, rename it over `path`, fsync the directory (a [`WriteGroup`] of one file). A
/// crash leaves either the old or the new complete file, never a torn one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic_write_in(path, bytes, None)
}

/// [`atomic_write`], through `journal` when there is one ([`WriteGroup::commit_in`]).
pub fn atomic_write_in(path: &Path, bytes: &[u8], journal: Option<&Journal>) -> Result<(), StoreError> {
    let Some(name) = path.file_name() else {
        return Err(StoreError::invalid("file path", format!("{} names no file", path.display())));
    };
    let mut group = WriteGroup::default();
    group.add(parent_dir(path), name, &Content::Bytes(bytes));
    group.commit_in(journal)
}

/// The directory of `path`: `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."))
}

/// Replaces several files of one directory atomically each, in order: every temp file is
/// written and fsynced, renamed over its target in the order given, then the directory is
/// fsynced once. A crash leaves each file old or new, never torn; the one directory fsync
/// is what a batch saves over separate `atomic_write` calls.
pub fn atomic_write_all(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), StoreError> {
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
pub fn atomic_write_entries(dir: &Path, files: &[(&str, Content<'_>)]) -> Result<(), StoreError> {
    let mut group = WriteGroup::default();
    for (name, content) in files {
        group.add(dir, name, content);
    }
    group.commit()
}

/// Files written together, each atomically (temp file, fsync, rename), possibly in several
/// directories: a model response's artifact blob, its sidecar and the step files that share
/// its bytes, say. [`WriteGroup::commit`] writes every temp file, then fsyncs them, renames
/// them in the order added, and fsyncs every directory touched, each once. A crash leaves
/// each file old or new, never torn, and a file only ever appears under its name with its
/// bytes durable.
///
/// What a group saves over separate [`atomic_write_entries`] calls is directory syncs: one
/// per directory for all its files.
#[derive(Debug, Default)]
pub struct WriteGroup {
    entries: Vec<GroupEntry>,
}

#[derive(Debug)]
struct GroupEntry {
    dir: PathBuf,
    name: OsString,
    content: OwnedContent,
}

#[derive(Debug)]
enum OwnedContent {
    Bytes(Vec<u8>),
    SameAs(PathBuf),
}

impl GroupEntry {
    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl WriteGroup {
    /// Adds `dir/name`; a later entry for the same path replaces the earlier one.
    pub fn add(&mut self, dir: &Path, name: impl AsRef<OsStr>, content: &Content<'_>) {
        let name = name.as_ref();
        let content = match content {
            Content::Bytes(bytes) => OwnedContent::Bytes(bytes.to_vec()),
            Content::SameAs(source) => OwnedContent::SameAs(source.to_path_buf()),
        };
        self.entries.retain(|e| !(e.dir == dir && e.name == name));
        self.entries.push(GroupEntry { dir: dir.to_owned(), name: name.to_owned(), content });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the group will write at `path`; `None` when it has no such file or links
    /// it to another.
    pub fn bytes_of(&self, path: &Path) -> Option<&[u8]> {
        self.entries.iter().find(|e| e.path() == path).and_then(|e| match &e.content {
            OwnedContent::Bytes(b) => Some(b.as_slice()),
            OwnedContent::SameAs(_) => None,
        })
    }

    /// Writes the group through `journal` when there is one: the files are journaled, the
    /// journal synced, then each file is written under its name, atomically but unsynced
    /// (the journal holds it until its next checkpoint). Without a journal, the same as
    /// [`WriteGroup::commit`].
    pub fn commit_in(self, journal: Option<&Journal>) -> Result<(), StoreError> {
        match journal {
            Some(journal) => {
                journal.stage_group(self)?;
                journal.sync()
            }
            None => self.commit(),
        }
    }

    /// Like [`WriteGroup::stage_in`], and the journal starts syncing on its own thread at
    /// once ([`Journal::sync_behind`]): for files that should be durable soon, that nothing
    /// reads back by name before the next barrier, while the writer goes on with work that
    /// touches nothing outside the state. Without a journal, the same as
    /// [`WriteGroup::commit`].
    pub fn commit_behind(self, journal: Option<&Journal>) -> Result<(), StoreError> {
        match journal {
            Some(journal) => {
                journal.stage_group(self)?;
                journal.sync_behind()
            }
            None => self.commit(),
        }
    }

    /// Like [`WriteGroup::commit_in`], but with a journal the files are only journaled: the
    /// journal's next sync (a barrier, or the commit of another group) makes them durable
    /// and then writes them. For files nothing reads back before that sync; until then they
    /// are not on disk under their names.
    pub fn stage_in(self, journal: Option<&Journal>) -> Result<(), StoreError> {
        match journal {
            Some(journal) => journal.stage_group(self),
            None => self.commit(),
        }
    }

    /// The group's files as the journal records them.
    pub(crate) fn frames(&self) -> Vec<(PathBuf, FrameContent<'_>)> {
        self.entries
            .iter()
            .map(|e| {
                let content = match &e.content {
                    OwnedContent::Bytes(b) => FrameContent::Bytes(b),
                    OwnedContent::SameAs(source) => FrameContent::SameAs(source),
                };
                (e.path(), content)
            })
            .collect()
    }

    /// Writes the files of a journaled group under their names, in order, unsynced.
    pub(crate) fn write_files(&self, spares: Option<&SparePool>) -> Result<(), StoreError> {
        let mut made: Vec<&Path> = Vec::new();
        for e in &self.entries {
            if !made.contains(&e.dir.as_path()) {
                make_dir(&e.dir, spares).map_err(|err| StoreError::io(&e.dir, err))?;
                made.push(&e.dir);
            }
            // In order, so the source of a link this group writes is already in place.
            match &e.content {
                OwnedContent::Bytes(bytes) => write_unsynced(&e.path(), bytes, spares)?,
                OwnedContent::SameAs(source) => link_unsynced(source, &e.path())?,
            }
        }
        Ok(())
    }

    /// Writes the group (see the type's documentation); none of it is visible before. An
    /// error names the file or directory it happened on, and leaves no temp file behind.
    pub fn commit(self) -> Result<(), StoreError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut dirs_to_sync: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<&Path> = Vec::new();
        for e in &self.entries {
            if !dirs.contains(&e.dir.as_path()) {
                dirs.push(&e.dir);
                create_dir_deferred(&e.dir, &mut dirs_to_sync).map_err(|err| StoreError::io(&e.dir, err))?;
            }
        }
        let mut temps: Vec<PathBuf> = Vec::with_capacity(self.entries.len());
        let result = (|| {
            let mut to_sync: Vec<(File, PathBuf)> = Vec::new();
            for (i, e) in self.entries.iter().enumerate() {
                let tmp = temp_path(&e.dir, &e.name);
                temps.push(tmp.clone());
                let at = |err| StoreError::io(&tmp, err);
                match &e.content {
                    OwnedContent::Bytes(bytes) => {
                        to_sync.push((write_new(&tmp, bytes).map_err(at)?, e.path()))
                    }
                    OwnedContent::SameAs(source) => {
                        // A source this group writes is still under its temp name.
                        let source = self.entries[..i]
                            .iter()
                            .position(|earlier| &earlier.path() == source)
                            .map_or(source.as_path(), |k| temps[k].as_path());
                        if fs::hard_link(source, &tmp).is_err() {
                            let bytes = fs::read(source).map_err(|err| StoreError::io(source, err))?;
                            to_sync.push((write_new(&tmp, &bytes).map_err(at)?, e.path()));
                        }
                    }
                }
            }
            for (file, path) in &to_sync {
                file.sync_data().map_err(|err| StoreError::io(path, err))?;
            }
            drop(to_sync);
            for (e, tmp) in self.entries.iter().zip(&temps) {
                let path = e.path();
                fs::rename(tmp, &path).map_err(|err| StoreError::io(&path, err))?;
                // Renaming a link onto a name of the same file is a no-op that keeps both.
                if matches!(e.content, OwnedContent::SameAs(_)) && fs::symlink_metadata(tmp).is_ok() {
                    fs::remove_file(tmp).map_err(|err| StoreError::io(tmp, err))?;
                }
                if !dirs_to_sync.contains(&e.dir) {
                    dirs_to_sync.push(e.dir.clone());
                }
            }
            dirs_to_sync.iter().try_for_each(|dir| sync_dir(dir).map_err(|err| StoreError::io(dir, err)))
        })();
        if result.is_err() {
            for tmp in &temps {
                let _ = fs::remove_file(tmp);
            }
        }
        result
    }
}

/// `create_dir_all`, with a spare directory for a missing last component when there is one.
fn make_dir(dir: &Path, spares: Option<&SparePool>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let (Some(pool), Some(parent)) = (spares, dir.parent())
        && parent.is_dir()
        && pool.take_dir(dir)
    {
        return Ok(());
    }
    fs::create_dir_all(dir)
}

/// Replaces `path` with `bytes` through a file written under another name and renamed (a
/// spare one when there is one), without syncing: readers see the old or the new file, never
/// a torn one, but only a journal makes it durable.
pub(crate) fn write_unsynced(
    path: &Path,
    bytes: &[u8],
    spares: Option<&SparePool>,
) -> Result<(), StoreError> {
    if let Some(pool) = spares
        && let Some(spare) = pool.take_file()
    {
        match spare.install(path, bytes) {
            Ok(()) => return Ok(()),
            // The pool is on another filesystem or cannot rename this way: write it here.
            Err(e) if pool.refused(&e) => {}
            Err(e) => return Err(StoreError::io(path, e)),
        }
    }
    let (dir, name) = (parent_dir(path), path.file_name().unwrap_or_default());
    let tmp = temp_path(dir, name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(path, err));
    }
    Ok(())
}

/// [`write_unsynced`] with the bytes of `source`: a hard link where one can be made, a copy
/// elsewhere. A new name is linked in place; an existing one is replaced through a temp link.
fn link_unsynced(source: &Path, path: &Path) -> Result<(), StoreError> {
    let copy = || {
        let bytes = fs::read(source).map_err(|err| StoreError::io(source, err))?;
        write_unsynced(path, &bytes, None)
    };
    match fs::hard_link(source, path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => return copy(),
    }
    let (dir, name) = (parent_dir(path), path.file_name().unwrap_or_default());
    let tmp = temp_path(dir, name);
    if fs::hard_link(source, &tmp).is_err() {
        return copy();
    }
    let renamed = fs::rename(&tmp, path);
    // Renaming a link onto a name of the same file is a no-op that keeps both.
    if renamed.is_err() || fs::symlink_metadata(&tmp).is_ok() {
        let _ = fs::remove_file(&tmp);
    }
    renamed.map_err(|err| StoreError::io(path, err))
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

/// What a caller knows of the file it will write over next: its bytes, and the identity,
/// size and mtime the file had when they were written (so a file changed since is not
/// trusted).
#[derive(Debug, Clone)]
pub(crate) struct KnownFile {
    pub bytes: Vec<u8>,
    stamp: FileStamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    fn of(m: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp { dev: m.dev(), ino: m.ino(), len: m.len(), mtime: (m.mtime(), m.mtime_nsec()) }
    }
}

/// Replaces `path` with `bytes` and keeps the file it replaces as `previous` (same
/// directory): `bytes` are written over the copy `previous` held and synced
/// ([`rewrite_previous`]), the two names are exchanged in one step ([`swap_in`]), then the
/// directory is synced. `path` is never missing or torn, no file is created or unlinked,
/// and a file rewritten at every iteration reuses the same two inodes and their pages. A
/// crash while `previous` is rewritten leaves `path` intact and only the older copy torn.
/// `before_rename` runs just before the exchange and `after_rename` after the directory
/// sync. Returns what `previous` will hold for the call after next: the file now at `path`.
///
/// The progress store runs the same steps with the first one alongside a barrier and the
/// directory sync in the background (`crate::progress`).
#[cfg(test)]
pub(crate) fn replace_keeping_previous(
    path: &Path,
    bytes: Vec<u8>,
    previous: &Path,
    known: Option<&KnownFile>,
    before_rename: impl FnOnce(),
    after_rename: impl FnOnce(),
) -> io::Result<Option<KnownFile>> {
    rewrite_previous(path, &bytes, previous, known)?;
    before_rename();
    swap_in(path, previous)?;
    sync_dir(parent_dir(path))?;
    after_rename();
    KnownFile::now_at(path, bytes).map(Some)
}

impl KnownFile {
    /// `bytes`, as the file at `path` holds them now.
    pub(crate) fn now_at(path: &Path, bytes: Vec<u8>) -> io::Result<KnownFile> {
        let written = fs::symlink_metadata(path)?;
        Ok(KnownFile { bytes, stamp: FileStamp::of(&written) })
    }
}

/// Writes `bytes` over the file at `previous` (the copy to be exchanged with `path`) and
/// syncs its data.
///
/// `known` is what `previous` holds when the caller wrote it (the file replaced two saves
/// ago): when `previous` is still that file, unchanged, only the 4 KiB pages that differ
/// are written, so a sync of a large, mostly unchanged file writes a few pages instead of
/// all of them. Only a plain file of its own is written in place: never a link shared
/// with `path` (which an older mtx could leave after a crash) or with anything else.
pub(crate) fn rewrite_previous(
    path: &Path,
    bytes: &[u8],
    previous: &Path,
    known: Option<&KnownFile>,
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    create_dir_durable(parent_dir(path))?;
    let mut trusted = None;
    match fs::symlink_metadata(previous) {
        Ok(m) if m.is_file() && m.nlink() == 1 => {
            trusted = known.filter(|k| k.stamp == FileStamp::of(&m));
        }
        Ok(_) => fs::remove_file(previous)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(previous)?;
    match trusted {
        Some(old) => write_changed_pages(&file, &old.bytes, bytes)?,
        None => file.write_all(bytes)?,
    }
    file.set_len(bytes.len() as u64)?;
    file.sync_data()
}

/// Puts the synced copy at `previous` in place at `path`, keeping the file that was there
/// as `previous`: one `renameat2(RENAME_EXCHANGE)`. Returns whether the names were
/// exchanged: then the directory already held both and a power loss before its next sync
/// leaves either pair, each file whole. Otherwise (the first save; a filesystem that
/// cannot exchange, logged, and no previous copy is kept) `previous` was renamed over
/// `path`, and the caller must sync the directory before it relies on the name.
pub(crate) fn swap_in(path: &Path, previous: &Path) -> io::Result<bool> {
    match exchange(previous, path) {
        Ok(()) => Ok(true),
        // Nothing to keep yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(previous, path).map(|()| false),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot exchange names here; no previous copy kept");
            fs::rename(previous, path).map(|()| false)
        }
    }
}

/// Writes the pages of `new` that differ from `old`, which `file` holds, in runs.
fn write_changed_pages(file: &File, old: &[u8], new: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    let pages = new.len().div_ceil(PAGE);
    let mut run: Option<usize> = None;
    for page in 0..=pages {
        let changed = page < pages && {
            let range = page * PAGE..((page + 1) * PAGE).min(new.len());
            old.get(range.clone()) != Some(&new[range])
        };
        match (changed, run) {
            (true, None) => run = Some(page),
            (false, Some(first)) => {
                let (from, to) = (first * PAGE, (page * PAGE).min(new.len()));
                file.write_all_at(&new[from..to], from as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then), in one step.
#[cfg(target_os = "linux")]
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

/// Swaps the names `a` and `b` atomically (both must exist).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

#[cfg(target_os = "linux")]
fn renameat2(a: &Path, b: &Path, flags: libc::c_uint) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// fsync a directory so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `dir/.<name>.tmp-<pid>-<n>`: a temp name no other writer uses.
fn temp_path(dir: &Path, name: &OsStr) -> PathBuf {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{}", process_id(), unique_suffix()));
    dir.join(tmp)
}

/// `std::process::id`, asked of the kernel once (it is a system call each time).
fn process_id() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(std::process::id)
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `create_dir_all`, then fsync the parent of every directory it created, so a new
/// directory (a step's `step_outputs/<key>/`) survives a power loss along with its files.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let mut parents = Vec::new();
    create_dir_deferred(dir, &mut parents)?;
    parents.iter().try_for_each(|p| sync_dir(p))
}

/// `create_dir_all` that adds the parent of every directory it created to `parents`, for
/// the caller to fsync, instead of syncing it at once.
fn create_dir_deferred(dir: &Path, parents: &mut Vec<PathBuf>) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_deferred(parent, parents)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer created it between the check and here.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    if !parents.iter().any(|p| p == parent) {
        parents.push(parent.to_owned());
    }
    Ok(())
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

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_group_writes_files_of_several_directories_and_links_within_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, step) = (dir.path().join("blobs/ab"), dir.path().join("steps/k1"));
        let mut group = WriteGroup::default();
        group.add(&blobs, "abcd", &Content::Bytes(b"model said this"));
        group.add(&blobs, "abcd.meta.json", &Content::Bytes(b"{}"));
        group.add(&step, "response.json", &Content::Bytes(b"{\"tokens\": 3}"));
        group.add(&step, "response.txt", &Content::SameAs(&blobs.join("abcd")));
        assert_eq!(group.bytes_of(&blobs.join("abcd")), Some(&b"model said this"[..]));
        assert_eq!(group.bytes_of(&step.join("response.txt")), None, "a linked file");
        assert!(!blobs.exists() && !step.exists(), "nothing is written before the commit");
        group.commit().unwrap();
        assert_eq!(names_in(&blobs), ["abcd", "abcd.meta.json"]);
        assert_eq!(names_in(&step), ["response.json", "response.txt"]);
        assert_eq!(fs::read(step.join("response.txt")).unwrap(), b"model said this");
        // The step file is the blob itself, not a copy.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(step.join("response.txt")).unwrap().ino(),
            fs::metadata(blobs.join("abcd")).unwrap().ino()
        );
    }

    #[test]
    fn a_failed_group_leaves_no_file_of_it_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let missing = dir.path().join("no such blob");
        let mut group = WriteGroup::default();
        group.add(&out, "a.json", &Content::Bytes(b"{}"));
        group.add(&out, "b.txt", &Content::SameAs(&missing));
        let err = group.commit().unwrap_err();
        assert!(err.to_string().contains("no such blob"), "the error names the file: {err}");
        assert!(names_in(&out).is_empty(), "no temp and no partial file: {:?}", names_in(&out));
    }

    /// A large file saved again and again with small changes: the previous copy is
    /// rewritten page by page where it differs, and comes out exactly as a whole write would
    /// leave it; a copy changed behind the writer's back is written whole.
    #[test]
    fn a_known_previous_copy_is_rewritten_only_where_it_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (path, previous) = (dir.path().join("doc.json"), dir.path().join("doc.prev.json"));
        let version = |n: u8, len: usize| -> Vec<u8> {
            let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            v[5000] = n;
            v[len - 10] = n;
            v
        };
        let mut known: [Option<KnownFile>; 2] = [None, None];
        for (n, len) in [(1, 20_000), (2, 20_000), (3, 30_000), (4, 12_000), (5, 12_000)] {
            let bytes = version(b'0' + n, len);
            let written =
                replace_keeping_previous(&path, bytes.clone(), &previous, known[0].as_ref(), || {}, || {})
                    .unwrap();
            known = [known[1].take(), written];
            assert_eq!(fs::read(&path).unwrap(), bytes, "version {n}");
        }
        assert_eq!(fs::read(&previous).unwrap(), version(b'4', 12_000));
        // Someone else writes the previous copy: its stamp no longer matches.
        fs::write(&previous, b"not what the writer knows").unwrap();
        let bytes = version(b'6', 12_000);
        replace_keeping_previous(&path, bytes.clone(), &previous, known[0].as_ref(), || {}, || {}).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_replace_that_keeps_the_previous_file_never_leaves_the_name_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, previous) = (dir.path().join("doc.json"), dir.path().join("doc.prev.json"));
        let mut seen_during = Vec::new();
        for version in [&b"one"[..], b"two", b"three"] {
            replace_keeping_previous(
                &path,
                version.to_vec(),
                &previous,
                None,
                || seen_during.push(fs::read(&path).ok()),
                || {},
            )
            .unwrap();
        }
        assert_eq!(seen_during, [None, Some(b"one".to_vec()), Some(b"two".to_vec())]);
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(fs::read(&previous).unwrap(), b"two");
        assert_eq!(names_in(dir.path()), ["doc.json", "doc.prev.json"]);

        // A previous copy that is a second name of the current file is not written through.
        fs::remove_file(&previous).unwrap();
        fs::hard_link(&path, &previous).unwrap();
        replace_keeping_previous(&path, b"four".to_vec(), &previous, None, || {}, || {}).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"four");
        assert_eq!(fs::read(&previous).unwrap(), b"three");
        // Nor is a symbolic link followed.
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, b"not mtx's").unwrap();
        fs::remove_file(&previous).unwrap();
        std::os::unix::fs::symlink(&outside, &previous).unwrap();
        replace_keeping_previous(&path, b"five".to_vec(), &previous, None, || {}, || {}).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"not mtx's");
        assert_eq!(
            (fs::read(&path).unwrap(), fs::read(&previous).unwrap()),
            (b"five".to_vec(), b"four".to_vec())
        );
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("export.jsonl")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/export.jsonl")), Path::new("out"));
        assert!(atomic_write(Path::new("/"), b"x").is_err(), "a path naming no file is refused");
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
