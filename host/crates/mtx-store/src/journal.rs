//! The write-ahead journal of a running job (`jobs/<job_id>/journal.wal`).
//!
//! Every durable file of an iteration used to cost its own flush of the disk cache: the
//! prompt artifact and its sidecar, the ContextSnapshot and its sidecar, the step's
//! `intent.json`, the response, `output.json`, each with its directory, then the Flight
//! Recorder, the input pack and the ledger at each barrier: 23 `fsync`/`fdatasync` calls per
//! iteration, on a disk where each one waits for the device. The journal makes a group of
//! files and every log append since the last barrier durable with one `fdatasync`:
//!
//! - A write group (`WriteGroup::commit_in`) appends one frame per file to the journal,
//!   syncs the journal, and only then writes the files under their names (temp file and
//!   rename, unsynced). So a file a group wrote is only ever visible with its frame durable.
//! - An append to a chain file (events, ledger) or the input pack goes to the journal first
//!   and to the file at once, unsynced; a barrier syncs the journal alone.
//! - A sync applied behind (`Journal::sync_apply_behind`: the barrier before a model call and
//!   the one of a progress save) returns once the frames are durable and leaves their files
//!   and appends to a thread of the journal's own, which writes them in the order of the
//!   syncs. `Journal::settle` waits for that thread; every other sync, `staged_bytes`, a
//!   checkpoint and the reads of the artifact store and the job directory run it first, so
//!   no read in the process sees a file behind the records that name it.
//! - A checkpoint makes every file written so far durable with one `syncfs` of the state's
//!   filesystem and empties the journal. An empty (or missing) journal means the files are
//!   the truth, as they are for a job that was never journaled.
//!
//! The file grows in steps of [`ALLOC_STEP`] bytes of written zeros, and frames are written
//! over them. An `fdatasync` of a file whose size and blocks did not change writes the data
//! alone; one that grew the file also writes its inode (on this project's test machine 133
//! against 300-450 us per sync, three times an iteration). So a checkpoint of a running job
//! keeps the file's space and starts a new epoch at its start: the first frame of every
//! epoch is an `Epoch` frame with a random nonce, and every frame's checksum covers that
//! nonce, so frames of an earlier epoch further on in the file (and whatever else the
//! space held) end the journal as a torn frame does. A checkpoint with no chain attached
//! (a job closing, or a recovery) gives the space back: the file is then empty.
//!
//! Recovery (`Journal::open` of a non-empty journal, before anything reads the job's logs
//! for writing) replays the durable frames: a file that is missing, torn or different is
//! written again, a chain file gets back the appends it lost and is cut back to what the
//! journal holds (after a power loss it may hold later bytes the journal never made
//! durable, which could name files that did not survive); then it checkpoints. A torn last
//! frame (a crash while it was written) is ignored, as a torn last log line is, and the
//! checkpoint cuts it with the rest of the file.
//!
//! Every chain file is attached (`Journal::attach_chain`) with its length, synced, before
//! its first journaled append, and again after each checkpoint, so recovery knows where the
//! durable part of each file ends even when none of its appends reached the journal.
//!
//! Frame layout, little endian: magic `MTXJ`, kind (u8), path length (u16), offset (u64:
//! the append's offset, an attached chain's length, or an epoch's nonce), data length
//! (u32), the path (relative to the journal's base, the state directory), the data, and a
//! CRC-32 of the epoch's nonce followed by everything from the kind to the end of the data.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};

use crate::error::StoreError;
use crate::failpoint::{failpoint, failpoint_with};
use crate::fsutil::WriteGroup;
use crate::spare::SparePool;

/// File name of the journal in a job directory.
pub const JOURNAL_FILE: &str = "journal.wal";

/// A barrier checkpoints once the journal holds this much.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// The file grows by this many bytes of zeros at a time (see the module docs).
pub const ALLOC_STEP: u64 = 1 << 20;

const MAGIC: [u8; 4] = *b"MTXJ";
/// magic, kind, path length, offset, data length.
const HEAD: usize = 4 + 1 + 2 + 8 + 4;
const CRC: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// A chain file and its durable length.
    Attach = 1,
    /// Bytes appended to a chain file at an offset.
    Append = 2,
    /// A whole file.
    File = 3,
    /// A file with the bytes of another (the data is the source's path).
    Link = 4,
    /// A file removed.
    Remove = 5,
    /// The start of an epoch; the offset is its nonce.
    Epoch = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Attach,
            2 => Kind::Append,
            3 => Kind::File,
            4 => Kind::Link,
            5 => Kind::Remove,
            6 => Kind::Epoch,
            _ => return None,
        })
    }
}

/// What a write group puts in one file, as the journal records it.
#[derive(Debug, Clone, Copy)]
pub enum FrameContent<'a> {
    Bytes(&'a [u8]),
    /// The bytes of the file at this path (a hard link, or a copy).
    SameAs(&'a Path),
}

/// What recovery did to the files of a job (all empty for a clean journal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalReplay {
    /// Complete frames read (after the epoch's own).
    pub frames: u64,
    /// Bytes after the last complete frame that are not zeros: a torn last frame, or frames
    /// of an earlier epoch. Recovery ignores them.
    pub torn_bytes: u64,
    /// Files (relative to the base) written again because they were missing or differed.
    pub files_restored: Vec<String>,
    /// Chain files that got appends back, with the number of bytes written.
    pub chains_restored: Vec<(String, u64)>,
    /// Chain files cut back to the journal's durable end, with the bytes cut.
    pub chains_cut: Vec<(String, u64)>,
}

impl JournalReplay {
    /// Whether recovery changed any file of the job.
    pub fn changed_files(&self) -> bool {
        !(self.files_restored.is_empty() && self.chains_restored.is_empty() && self.chains_cut.is_empty())
    }
}

/// The open journal of one job. Shared by every writer of the job (`Arc`). Nothing outside
/// the journal is called while its lock is held; inside, the lock of its sync thread is
/// taken after it, never before.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    base: PathBuf,
    inner: Mutex<Inner>,
    /// Where a write group's temp files and new directories come from (`crate::spare`).
    spares: Option<Arc<SparePool>>,
    /// The thread of [`Journal::sync_behind`], once asked.
    behind: Mutex<Option<Behind>>,
}

/// A thread that syncs the journal's data when asked, while the writer goes on.
#[derive(Debug)]
struct Behind {
    asks: Option<mpsc::Sender<()>>,
    /// The first sync that failed, for the next [`Journal::sync`] to report.
    failed: Arc<Mutex<Option<io::Error>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Behind {
    fn start(file: File) -> io::Result<Behind> {
        let (asks, inbox) = mpsc::channel::<()>();
        let failed: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let failures = Arc::clone(&failed);
        let thread = std::thread::Builder::new().name("mtx-journal-sync".into()).spawn(move || {
            while inbox.recv().is_ok() {
                // Asks that came in meanwhile are covered by this sync.
                while inbox.try_recv().is_ok() {}
                if let Err(e) = file.sync_data() {
                    failures.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                }
            }
        })?;
        Ok(Behind { asks: Some(asks), failed, thread: Some(thread) })
    }

    fn take_failure(&self) -> Option<io::Error> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        drop(self.asks.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Where the next frame goes: the bytes of the current epoch (0: none begun).
    len: u64,
    /// Frames not yet written to the file, which holds the epoch up to `len` minus these:
    /// they go in with one write at the next sync.
    unwritten: Vec<u8>,
    synced_len: u64,
    /// The file's size: zeros from `len` on.
    allocated: u64,
    /// The current epoch's nonce (meaningless while `len` is 0).
    nonce: u64,
    /// Why frames were lost: a write of waiting frames failed after their writers were told
    /// they were journaled, so every later use fails too (the job stops; the next open
    /// replays what reached the file).
    broken: Option<String>,
    /// Attached chain files, by relative path.
    chains: BTreeMap<Vec<u8>, Chain>,
    /// What the frames since the last sync hold, for the files, in journal order: written
    /// once the frames are durable, so a file never shows what a power loss could take back.
    pending: Vec<Pending>,
    /// The thread of [`Journal::sync_apply_behind`], once asked.
    applier: Option<Applier>,
}

#[derive(Debug)]
struct Chain {
    /// Length as journaled.
    len: u64,
    /// Opened for writing at attach; shared with the applier's writes.
    file: Arc<File>,
    path: PathBuf,
}

/// Writes what synced frames hold under the files' names, in journal order.
fn apply(ops: Vec<Pending>, spares: Option<&SparePool>) -> Result<(), StoreError> {
    for op in ops {
        match op {
            Pending::Group(group) => group.write_files(spares)?,
            Pending::Append { file, path, offset, bytes } => {
                file.write_all_at(&bytes, offset).map_err(|e| StoreError::io(&path, e))?
            }
            Pending::Remove(path) => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            },
        }
    }
    Ok(())
}

/// A thread that writes what synced frames hold while the writer goes on: the files of a
/// [`Journal::sync_apply_behind`], in the order of the syncs. [`Journal::settle`] waits for
/// it; every other sync settles before it writes, so the files see one order.
#[derive(Debug)]
struct Applier {
    shared: Arc<ApplyShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct ApplyShared {
    state: Mutex<ApplyState>,
    /// A batch came in, a batch is done, or the thread should stop.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ApplyState {
    batches: VecDeque<Vec<Pending>>,
    /// A batch is taken and not yet written.
    busy: bool,
    /// The first write that failed. The batches after it are dropped unwritten (a link may
    /// name a file that failed); their frames are durable, so the next open writes them.
    failed: Option<StoreError>,
    stop: bool,
}

impl ApplyShared {
    fn lock(&self) -> MutexGuard<'_, ApplyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Applier {
    fn start(spares: Option<Arc<SparePool>>) -> io::Result<Applier> {
        let shared = Arc::new(ApplyShared::default());
        let work = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("mtx-journal-apply".into()).spawn(move || {
            let mut state = work.lock();
            loop {
                let Some(batch) = state.batches.pop_front() else {
                    if state.stop {
                        return;
                    }
                    state = work.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    continue;
                };
                if state.failed.is_none() {
                    state.busy = true;
                    drop(state);
                    // A panic must not leave `busy` set: every settle would wait forever.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        apply(batch, spares.as_deref())
                    }))
                    .unwrap_or_else(|_| {
                        Err(StoreError::invalid(
                            "journal apply thread",
                            "panicked while writing journaled files",
                        ))
                    });
                    state = work.lock();
                    state.busy = false;
                    if let Err(e) = result {
                        state.failed = Some(e);
                    }
                }
                work.changed.notify_all();
            }
        })?;
        Ok(Applier { shared, thread: Some(thread) })
    }

    fn push(&self, batch: Vec<Pending>) {
        self.shared.lock().batches.push_back(batch);
        self.shared.changed.notify_all();
    }

    /// Waits until every batch handed over is written; the first failure, once.
    fn settle(&self) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        while state.busy || !state.batches.is_empty() {
            state = self.shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.failed.take().map_or(Ok(()), Err)
    }
}

impl Drop for Applier {
    /// Writes what was handed over, then stops.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a sync writes what its frames hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On the caller's thread, before it returns.
    Here,
    /// On the journal's thread ([`Journal::sync_apply_behind`]).
    Behind,
}

/// What a frame leaves to do once it is durable.
#[derive(Debug)]
enum Pending {
    Group(WriteGroup),
    /// Bytes for an attached chain file (its handle and path).
    Append {
        file: Arc<File>,
        path: PathBuf,
        offset: u64,
        bytes: Vec<u8>,
    },
    Remove(PathBuf),
}

impl Journal {
    /// Opens (or creates) the journal at `path`, whose frames name files relative to `base`.
    /// A second writer of the same job is refused (`Busy`). A non-empty journal is replayed
    /// and checkpointed first; the report says what that changed (`None`: nothing to do).
    pub fn open(path: &Path, base: &Path) -> Result<(Journal, Option<JournalReplay>), StoreError> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        crate::chain::lock_exclusive(&file, path)?;
        if !existed {
            // Its name must survive a power loss before a frame is trusted to it.
            crate::fsutil::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| StoreError::io(path, e))?;
        let parsed = parse(&bytes);
        let journal = Journal {
            path: path.to_owned(),
            base: base.to_owned(),
            inner: Mutex::new(Inner {
                file,
                len: parsed.end as u64,
                unwritten: Vec::new(),
                broken: None,
                synced_len: parsed.end as u64,
                allocated: bytes.len() as u64,
                nonce: parsed.nonce,
                chains: BTreeMap::new(),
                pending: Vec::new(),
                applier: None,
            }),
            spares: None,
            behind: Mutex::new(None),
        };
        if parsed.frames.is_empty() && parsed.torn_bytes(&bytes) == 0 {
            return Ok((journal, None));
        }
        let replay = journal.replay(&bytes, &parsed)?;
        journal.checkpoint()?;
        // Bytes with no epoch in front (a torn first frame) leave nothing to checkpoint.
        journal.release_if_empty()?;
        Ok((journal, Some(replay)))
    }

    /// Replays the journal of the job in `job_root` when it has one, then closes it: what a
    /// writer that does not journal (an operator's decision on a paused job) runs before it
    /// appends to the job's logs.
    pub fn recover(job_root: &Path, base: &Path) -> Result<Option<JournalReplay>, StoreError> {
        let path = job_root.join(JOURNAL_FILE);
        match fs::metadata(&path) {
            Ok(m) if m.len() > 0 => Ok(Journal::open(&path, base)?.1),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// This journal with its write groups taking temp files and directories from a pool of
    /// spare inodes kept in `dir` (on the state's filesystem; see `crate::spare`). A pool that
    /// cannot start is logged and left out: the groups then create their files.
    pub fn with_spares(mut self, dir: &Path) -> Self {
        match SparePool::start(dir) {
            Ok(pool) => self.spares = Some(Arc::new(pool)),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "no spare inode pool"),
        }
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the journal holds since its last checkpoint.
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rel<'p>(&self, path: &'p Path) -> Result<&'p [u8], StoreError> {
        let rel = path.strip_prefix(&self.base).map_err(|_| {
            StoreError::invalid(
                "journaled path",
                format!("{} is outside the state directory {}", path.display(), self.base.display()),
            )
        })?;
        let bytes = rel.as_os_str().as_bytes();
        if bytes.is_empty() || bytes.len() > u16::MAX as usize {
            return Err(StoreError::invalid(
                "journaled path",
                format!("{} has no usable name", path.display()),
            ));
        }
        Ok(bytes)
    }

    /// Records that the chain file at `path` is `len` bytes long and durable, and syncs the
    /// journal: from here on, recovery cuts the file back to `len` plus the journaled
    /// appends, and the journal appends to the file itself (at each sync).
    pub fn attach_chain(&self, path: &Path, len: u64) -> Result<(), StoreError> {
        let rel = self.rel(path)?.to_vec();
        let file = OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
        let mut inner = self.lock();
        let nonce = self.begin(&mut inner)?;
        let mut buf = Vec::new();
        encode(&mut buf, nonce, Kind::Attach, &rel, len, b"")?;
        self.write(&mut inner, &buf)?;
        inner.chains.insert(rel, Chain { len, file: Arc::new(file), path: path.to_owned() });
        self.sync_locked(&mut inner, Mode::Here)
    }

    /// Writes out what the journal holds for the chain file at `path` and forgets the file:
    /// the next checkpoint no longer attaches it, so it may be written without the journal
    /// once that checkpoint is made.
    pub fn detach_chain(&self, path: &Path) -> Result<(), StoreError> {
        let rel = self.rel(path)?;
        let mut inner = self.lock();
        self.sync_locked(&mut inner, Mode::Here)?;
        inner.chains.remove(rel);
        Ok(())
    }

    /// Journals `bytes` appended at `offset` of the chain file at `path`; the next sync
    /// makes them durable and then appends them to the file. `torn_failpoint` names the
    /// crash point that leaves half of this frame written (the journal's torn append).
    pub fn append_chain(
        &self,
        path: &Path,
        offset: u64,
        bytes: &[u8],
        torn_failpoint: Option<&str>,
    ) -> Result<(), StoreError> {
        let rel = self.rel(path)?;
        let mut inner = self.lock();
        let journaled = inner.chains.get(rel).map(|c| c.len);
        if journaled != Some(offset) {
            return Err(StoreError::invalid(
                "journaled append",
                format!("{} appends at {offset}, the journal has it at {journaled:?}", path.display()),
            ));
        }
        let nonce = self.begin(&mut inner)?;
        let mut buf = Vec::with_capacity(HEAD + rel.len() + bytes.len() + CRC);
        encode(&mut buf, nonce, Kind::Append, rel, offset, bytes)?;
        if let Some(point) = torn_failpoint {
            failpoint_with(point, || {
                let _ = self.flush(&mut inner);
                let _ = inner.file.write_all_at(&buf[..buf.len() / 2], inner.len);
                let _ = inner.file.sync_data();
            });
        }
        self.write(&mut inner, &buf)?;
        let Inner { chains, pending, .. } = &mut *inner;
        let Some(chain) = chains.get_mut(rel) else { return Ok(()) };
        chain.len = offset + bytes.len() as u64;
        // Appends to one file since the last group go to it in one write.
        let earlier = pending.iter_mut().rev().take_while(|p| matches!(p, Pending::Append { .. })).find_map(
            |p| match p {
                Pending::Append { file, offset: at, bytes, .. } if Arc::ptr_eq(file, &chain.file) => {
                    Some((*at, bytes))
                }
                _ => None,
            },
        );
        match earlier {
            Some((at, earlier)) if at + earlier.len() as u64 == offset => earlier.extend_from_slice(bytes),
            _ => pending.push(Pending::Append {
                file: Arc::clone(&chain.file),
                path: chain.path.clone(),
                offset,
                bytes: bytes.to_vec(),
            }),
        }
        Ok(())
    }

    /// Journals a write group's files; the next sync makes them durable and then writes
    /// them under their names (see [`WriteGroup::stage_in`]).
    pub(crate) fn stage_group(&self, group: WriteGroup) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let nonce = self.begin(&mut inner)?;
        let mut buf = Vec::new();
        for (path, content) in group.frames() {
            let rel = self.rel(&path)?;
            match content {
                FrameContent::Bytes(bytes) => encode(&mut buf, nonce, Kind::File, rel, 0, bytes)?,
                FrameContent::SameAs(source) => {
                    let source = self.rel(source)?;
                    encode(&mut buf, nonce, Kind::Link, rel, 0, source)?
                }
            }
        }
        self.write(&mut inner, &buf)?;
        inner.pending.push(Pending::Group(group));
        Ok(())
    }

    /// The bytes a staged group will write at `path`, while it waits for the next sync.
    /// What earlier syncs hold is written first ([`Journal::settle`]), so a file the
    /// journal holds is either staged or in place.
    pub(crate) fn staged_bytes(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let mut inner = self.lock();
        self.settle_locked(&mut inner)?;
        Ok(inner.pending.iter().rev().find_map(|p| match p {
            Pending::Group(g) => g.bytes_of(path).map(<[u8]>::to_vec),
            _ => None,
        }))
    }

    /// Journals the removal of `path`, so that recovery does not bring back a file an
    /// earlier frame wrote. The caller removes the file; the next sync removes it again,
    /// after the files staged before it.
    pub fn log_remove(&self, path: &Path) -> Result<(), StoreError> {
        let rel = self.rel(path)?;
        let mut inner = self.lock();
        let nonce = self.begin(&mut inner)?;
        let mut buf = Vec::new();
        encode(&mut buf, nonce, Kind::Remove, rel, 0, b"")?;
        self.write(&mut inner, &buf)?;
        inner.pending.push(Pending::Remove(path.to_owned()));
        Ok(())
    }

    /// The nonce of the current epoch, beginning one (its frame first in the file) when
    /// the journal is empty.
    fn begin(&self, inner: &mut Inner) -> Result<u64, StoreError> {
        if inner.len == 0 {
            inner.nonce = fresh_nonce();
            let mut buf = Vec::with_capacity(HEAD + CRC);
            encode(&mut buf, inner.nonce, Kind::Epoch, b"", inner.nonce, b"")?;
            self.write(inner, &buf)?;
        }
        Ok(inner.nonce)
    }

    /// Adds frames to the epoch; they reach the file at the next sync (or once a megabyte
    /// waits).
    fn write(&self, inner: &mut Inner, buf: &[u8]) -> Result<(), StoreError> {
        self.usable(inner)?;
        inner.unwritten.extend_from_slice(buf);
        inner.len += buf.len() as u64;
        if inner.unwritten.len() >= ALLOC_STEP as usize { self.flush(inner) } else { Ok(()) }
    }

    fn usable(&self, inner: &Inner) -> Result<(), StoreError> {
        match &inner.broken {
            None => Ok(()),
            Some(why) => Err(StoreError::io(&self.path, io::Error::other(why.clone()))),
        }
    }

    /// Writes the frames that wait to the file. On failure they are gone, and so is what
    /// the sync would have done for them, though their writers were told they were
    /// journaled: the journal is broken from then on (every use fails, so the job stops),
    /// and the file holds the frames before them, which the next open replays.
    fn flush(&self, inner: &mut Inner) -> Result<(), StoreError> {
        self.usable(inner)?;
        if inner.unwritten.is_empty() {
            return Ok(());
        }
        let at = inner.len - inner.unwritten.len() as u64;
        if let Err(e) = self.grow(inner, inner.len) {
            // Zeros ahead are a speed-up: without room for them (a full disk, a file size
            // limit) the frames still go in, and the file grows with them.
            tracing::debug!(journal = %self.path.display(), error = %e, "no room to grow the journal ahead");
        }
        if let Err(e) = inner.file.write_all_at(&inner.unwritten, at) {
            // A partial frame would hide every later one from recovery.
            let _ = inner.file.set_len(at);
            inner.allocated = at;
            inner.len = at;
            inner.unwritten.clear();
            inner.pending.clear();
            inner.broken = Some(format!("journal frames lost: {e}"));
            return Err(StoreError::io(&self.path, e));
        }
        inner.allocated = inner.allocated.max(inner.len);
        inner.unwritten.clear();
        Ok(())
    }

    /// Writes zeros up to a multiple of [`ALLOC_STEP`] at or past `end` when the file is
    /// shorter, so that later frames overwrite blocks the file already has.
    fn grow(&self, inner: &mut Inner, end: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        if end <= inner.allocated {
            return Ok(());
        }
        let target = end.div_ceil(ALLOC_STEP) * ALLOC_STEP;
        while inner.allocated < target {
            let n = (target - inner.allocated).min(ZEROS.len() as u64);
            inner.file.write_all_at(&ZEROS[..n as usize], inner.allocated)?;
            inner.allocated += n;
        }
        Ok(())
    }

    /// Makes every frame written so far durable (one `fdatasync`, none when nothing is
    /// pending), then writes what they hold into the files, in the order journaled.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.sync_locked(&mut inner, Mode::Here)
    }

    /// [`Journal::sync`], but the files and appends the frames hold are written on a thread
    /// of the journal's own, after what earlier such syncs hold: for a sync followed by
    /// work that reads nothing the journal writes (a model call). The frames are durable
    /// when it returns, as after a sync; their files are in place after
    /// [`Journal::settle`], which every read of a journaled file runs first (the artifact
    /// store, the job directory, this journal's own syncs and [`Journal::staged_bytes`]).
    pub fn sync_apply_behind(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.sync_locked(&mut inner, Mode::Behind)
    }

    /// Waits until the files and appends of every sync are written; reports a write that
    /// failed on the journal's thread (and from then on the journal is broken).
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.settle_locked(&mut inner)
    }

    fn settle_locked(&self, inner: &mut Inner) -> Result<(), StoreError> {
        self.usable(inner)?;
        let Some(applier) = &inner.applier else { return Ok(()) };
        applier.settle().inspect_err(|e| inner.broken = Some(format!("journaled files not written: {e}")))
    }

    /// Starts making every frame written so far durable on a thread of the journal's own
    /// and returns at once: for frames that should be durable soon (a model's answer, not
    /// to be asked for again after a power loss) while the writer goes on with work that
    /// touches nothing outside the state. Their files are still written at the next
    /// [`Journal::sync`], which syncs again (cheaply when this one is done), and which
    /// reports this one's failure.
    pub fn sync_behind(&self) -> Result<(), StoreError> {
        // Lock order: the journal's, then the thread's; never the other way.
        self.flush(&mut self.lock())?;
        if self.lock_behind().is_none() {
            // A handle of its own: an error a sync reports is reported once per open file,
            // and this thread's must not hide one from the next sync's.
            let file =
                OpenOptions::new().write(true).open(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
            let started = Behind::start(file).map_err(|e| StoreError::io(&self.path, e))?;
            self.lock_behind().get_or_insert(started);
        }
        let asked =
            self.lock_behind().as_ref().and_then(|b| b.asks.as_ref()).is_some_and(|a| a.send(()).is_ok());
        if asked { Ok(()) } else { self.sync() }
    }

    fn lock_behind(&self) -> MutexGuard<'_, Option<Behind>> {
        self.behind.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_locked(&self, inner: &mut Inner, mode: Mode) -> Result<(), StoreError> {
        if mode == Mode::Here {
            self.settle_locked(inner)?;
        }
        self.flush(inner)?;
        if inner.len != inner.synced_len {
            inner.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
            // A background sync that failed may have taken frames this one took for durable.
            if let Some(e) = self.lock_behind().as_ref().and_then(Behind::take_failure) {
                inner.broken = Some(format!("journal sync failed: {e}"));
                return Err(StoreError::io(&self.path, e));
            }
            inner.synced_len = inner.len;
        }
        if inner.pending.is_empty() {
            return Ok(());
        }
        failpoint("journal.synced");
        let ops = std::mem::take(&mut inner.pending);
        if mode == Mode::Behind {
            if inner.applier.is_none() {
                match Applier::start(self.spares.clone()) {
                    Ok(applier) => inner.applier = Some(applier),
                    Err(e) => {
                        tracing::warn!(journal = %self.path.display(), error = %e, "no thread to write journaled files; writing them here");
                    }
                }
            }
            if let Some(applier) = &inner.applier {
                applier.push(ops);
                return Ok(());
            }
        }
        apply(ops, self.spares.as_deref())
    }

    /// Cuts the file to nothing when no epoch is begun and no chain attached.
    fn release_if_empty(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.len == 0 && inner.chains.is_empty() && inner.allocated > 0 {
            inner.file.set_len(0).map_err(|e| StoreError::io(&self.path, e))?;
            inner.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
            inner.allocated = 0;
        }
        Ok(())
    }

    /// [`Journal::checkpoint`] once the journal holds [`CHECKPOINT_BYTES`].
    pub fn checkpoint_if_large(&self) -> Result<(), StoreError> {
        if self.len() >= CHECKPOINT_BYTES { self.checkpoint() } else { Ok(()) }
    }

    /// Syncs, makes every file of the state's filesystem durable (`syncfs`), then empties
    /// the journal and attaches the chain files again at their lengths. With chains
    /// attached (a running job) the file keeps its space for a new epoch; without (a job
    /// closing) it is cut to nothing.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.len == 0 {
            return self.settle_locked(&mut inner);
        }
        self.sync_locked(&mut inner, Mode::Here)?;
        sync_filesystem(&inner.file).map_err(|e| StoreError::io(&self.path, e))?;
        inner.len = 0;
        inner.synced_len = 0;
        if inner.chains.is_empty() {
            inner.file.set_len(0).map_err(|e| StoreError::io(&self.path, e))?;
            inner.allocated = 0;
        } else {
            // The new epoch's frames (a few hundred bytes for a job's three logs) go over
            // the old epoch's first ones in one write within a sector, which a power loss
            // leaves old or new. Old, the earlier epoch is replayed again: every file it
            // names already holds its last frame, synced above.
            let nonce = self.begin(&mut inner)?;
            let mut buf = Vec::new();
            for (rel, chain) in &inner.chains {
                encode(&mut buf, nonce, Kind::Attach, rel, chain.len, b"")?;
            }
            self.write(&mut inner, &buf)?;
            self.flush(&mut inner)?;
        }
        // Also makes the cut durable when nothing is attached.
        inner.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
        inner.synced_len = inner.len;
        Ok(())
    }

    /// Brings the files in line with `parsed`; the checkpoint that follows ends the epoch,
    /// and with it whatever follows its last complete frame.
    fn replay(&self, bytes: &[u8], parsed: &Parsed<'_>) -> Result<JournalReplay, StoreError> {
        let frames = &parsed.frames;
        let mut report = JournalReplay {
            frames: frames.len() as u64,
            torn_bytes: parsed.torn_bytes(bytes),
            ..JournalReplay::default()
        };
        if report.torn_bytes > 0 {
            tracing::warn!(journal = %self.path.display(), bytes = report.torn_bytes, "torn journal frame ignored");
        }
        // The last frame naming each whole file decides it.
        let mut last: BTreeMap<&[u8], usize> = BTreeMap::new();
        for (i, f) in frames.iter().enumerate() {
            if matches!(f.kind, Kind::File | Kind::Link | Kind::Remove) {
                last.insert(f.path, i);
            }
        }
        let mut chains: BTreeMap<&[u8], ChainPlan<'_>> = BTreeMap::new();
        for (i, f) in frames.iter().enumerate() {
            let path = self.base.join(OsStr::from_bytes(f.path));
            match f.kind {
                Kind::Attach => {
                    chains.insert(f.path, ChainPlan { base_len: f.offset, appends: Vec::new() });
                }
                Kind::Append => {
                    let plan = chains
                        .entry(f.path)
                        .or_insert_with(|| ChainPlan { base_len: f.offset, appends: Vec::new() });
                    let end = plan.end();
                    if f.offset != end {
                        return Err(StoreError::corrupt(
                            &self.path,
                            format!(
                                "append to {} at {} does not follow the journaled end {end}",
                                path.display(),
                                f.offset
                            ),
                        ));
                    }
                    plan.appends.push((f.offset, f.data));
                }
                Kind::Epoch => {}
                Kind::File | Kind::Link | Kind::Remove if last.get(f.path) != Some(&i) => {}
                Kind::File => {
                    if restore_file(&path, f.data)? {
                        report.files_restored.push(String::from_utf8_lossy(f.path).into_owned());
                    }
                }
                Kind::Link => {
                    let source = self.base.join(OsStr::from_bytes(f.data));
                    let bytes = fs::read(&source).map_err(|e| StoreError::io(&source, e))?;
                    if restore_file(&path, &bytes)? {
                        report.files_restored.push(String::from_utf8_lossy(f.path).into_owned());
                    }
                }
                Kind::Remove => match fs::remove_file(&path) {
                    Ok(()) => report.files_restored.push(String::from_utf8_lossy(f.path).into_owned()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&path, e)),
                },
            }
        }
        for (rel, plan) in chains {
            let path = self.base.join(OsStr::from_bytes(rel));
            let (written, cut) = plan.restore(&path)?;
            let name = String::from_utf8_lossy(rel).into_owned();
            if written > 0 {
                report.chains_restored.push((name.clone(), written));
            }
            if cut > 0 {
                report.chains_cut.push((name, cut));
            }
        }
        if report.changed_files() || report.torn_bytes > 0 {
            tracing::warn!(journal = %self.path.display(), ?report, "journal replayed");
        }
        Ok(report)
    }
}

impl Drop for Journal {
    /// A journal dropped without a sync (an error path) still leaves its frames in the
    /// file for the next open to replay, as a crash after they were written would.
    /// What syncs handed to the journal's thread is written first.
    fn drop(&mut self) {
        let mut inner = self.lock();
        if let Err(e) = self.settle_locked(&mut inner) {
            tracing::warn!(journal = %self.path.display(), error = %e, "journaled files not written at close");
        }
        drop(inner.applier.take());
        if let Err(e) = self.flush(&mut inner) {
            tracing::warn!(journal = %self.path.display(), error = %e, "journal frames not written at close");
        }
    }
}

struct ChainPlan<'a> {
    base_len: u64,
    appends: Vec<(u64, &'a [u8])>,
}

impl ChainPlan<'_> {
    fn end(&self) -> u64 {
        self.appends.last().map_or(self.base_len, |(offset, data)| offset + data.len() as u64)
    }

    /// Writes back every journaled append the file lacks and cuts what follows the last
    /// one; returns (bytes written, bytes cut).
    fn restore(&self, path: &Path) -> Result<(u64, u64), StoreError> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let mut file = file.map_err(|e| StoreError::io(path, e))?;
        let mut have = Vec::new();
        file.read_to_end(&mut have).map_err(|e| StoreError::io(path, e))?;
        if (have.len() as u64) < self.base_len {
            return Err(StoreError::corrupt(
                path,
                format!(
                    "{} bytes, shorter than the {} bytes the journal found durable",
                    have.len(),
                    self.base_len
                ),
            ));
        }
        let mut written = 0u64;
        for (offset, data) in &self.appends {
            let at = *offset as usize;
            if have.get(at..at + data.len()) != Some(*data) {
                file.write_all_at(data, *offset).map_err(|e| StoreError::io(path, e))?;
                written += data.len() as u64;
            }
        }
        let end = self.end();
        let cut = (have.len() as u64).saturating_sub(end);
        if cut > 0 {
            file.set_len(end).map_err(|e| StoreError::io(path, e))?;
        }
        Ok((written, cut))
    }
}

/// Writes `bytes` at `path` (temp file and rename, unsynced: the checkpoint after a replay
/// syncs) unless the file already holds exactly them; `true` when it wrote.
fn restore_file(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    match fs::read(path) {
        Ok(have) if have == bytes => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(path, e)),
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    crate::fsutil::write_unsynced(path, bytes, None)?;
    Ok(true)
}

struct Frame<'a> {
    kind: Kind,
    path: &'a [u8],
    offset: u64,
    data: &'a [u8],
}

fn encode(
    buf: &mut Vec<u8>,
    nonce: u64,
    kind: Kind,
    path: &[u8],
    offset: u64,
    data: &[u8],
) -> Result<(), StoreError> {
    let Ok(data_len) = u32::try_from(data.len()) else {
        return Err(StoreError::invalid("journal frame", format!("{} bytes is over 4 GiB", data.len())));
    };
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.push(kind as u8);
    buf.extend_from_slice(&(path.len() as u16).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&data_len.to_le_bytes());
    buf.extend_from_slice(path);
    buf.extend_from_slice(data);
    let crc = checksum(nonce, &buf[start + MAGIC.len()..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn checksum(nonce: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&nonce.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// A random nonce for a new epoch.
fn fresh_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The complete frames of one epoch.
struct Parsed<'a> {
    /// After the epoch's own frame.
    frames: Vec<Frame<'a>>,
    /// Where the last complete frame ends (0: no epoch begun).
    end: usize,
    nonce: u64,
}

impl Parsed<'_> {
    /// What follows `end` that is not zeros.
    fn torn_bytes(&self, bytes: &[u8]) -> u64 {
        let rest = &bytes[self.end..];
        rest.iter().rposition(|b| *b != 0).map_or(0, |last| last as u64 + 1)
    }
}

/// The frames of the epoch `bytes` begin with. Parsing stops at the first frame that is
/// short, has no magic, fails its checksum (a torn tail, zeros, an earlier epoch's frame)
/// or begins another epoch.
fn parse(bytes: &[u8]) -> Parsed<'_> {
    let mut parsed = Parsed { frames: Vec::new(), end: 0, nonce: 0 };
    let mut at = 0usize;
    while bytes.len() - at >= HEAD + CRC {
        let head = &bytes[at..at + HEAD];
        if head[..4] != MAGIC {
            break;
        }
        let Some(kind) = Kind::from_u8(head[4]) else { break };
        let path_len = u16::from_le_bytes([head[5], head[6]]) as usize;
        let offset = u64::from_le_bytes(head[7..15].try_into().expect("8 bytes"));
        let data_len = u32::from_le_bytes(head[15..19].try_into().expect("4 bytes")) as usize;
        let end = at + HEAD + path_len + data_len + CRC;
        if end > bytes.len() {
            break;
        }
        // The first frame is the epoch's, checked with the nonce it carries.
        if (at == 0) != (kind == Kind::Epoch) {
            break;
        }
        let nonce = if at == 0 { offset } else { parsed.nonce };
        let body = &bytes[at + MAGIC.len()..end - CRC];
        let crc = u32::from_le_bytes(bytes[end - CRC..end].try_into().expect("4 bytes"));
        if checksum(nonce, body) != crc {
            break;
        }
        if at == 0 {
            parsed.nonce = nonce;
        } else {
            let path = &bytes[at + HEAD..at + HEAD + path_len];
            let data = &bytes[at + HEAD + path_len..end - CRC];
            parsed.frames.push(Frame { kind, path, offset, data });
        }
        at = end;
        parsed.end = at;
    }
    parsed
}

/// Flushes every file of the filesystem that holds `file` to stable storage.
#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a descriptor this function borrows for the call's duration.
    let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_file: &File) -> io::Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Map, Value, json};

    use super::*;
    use crate::chain::ChainFile;
    use crate::fsutil::{Content, WriteGroup};

    struct Fixture {
        _dir: tempfile::TempDir,
        base: PathBuf,
        job: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("state");
        let job = base.join("jobs/J1");
        fs::create_dir_all(&job).unwrap();
        Fixture { base, job, _dir: dir }
    }

    fn open(f: &Fixture) -> (Arc<Journal>, Option<JournalReplay>) {
        let (j, replay) = Journal::open(&f.job.join(JOURNAL_FILE), &f.base).unwrap();
        (Arc::new(j), replay)
    }

    fn body(n: u64) -> Map<String, Value> {
        json!({"n": n}).as_object().unwrap().clone()
    }

    fn commit(j: &Journal, files: &[(&Path, &[u8])]) {
        let mut group = WriteGroup::default();
        for (path, bytes) in files {
            group.add(path.parent().unwrap(), path.file_name().unwrap(), &Content::Bytes(bytes));
        }
        group.commit_in(Some(j)).unwrap();
    }

    #[test]
    fn a_group_is_journaled_before_its_files_appear_and_a_checkpoint_empties_the_journal() {
        let f = fixture();
        let (j, replay) = open(&f);
        assert!(replay.is_none(), "a new journal has nothing to replay");
        let a = f.job.join("step_outputs/K/prompt.txt");
        let blob = f.base.join("artifacts/sha256/ab/abc");
        commit(&j, &[(&blob, b"blob bytes"), (&a, b"prompt")]);
        let mut group = WriteGroup::default();
        group.add(a.parent().unwrap(), "response.txt", &Content::SameAs(&blob));
        group.commit_in(Some(&j)).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"prompt");
        assert_eq!(fs::read(a.with_file_name("response.txt")).unwrap(), b"blob bytes");
        let bytes = fs::read(j.path()).unwrap();
        let parsed = parse(&bytes);
        assert_eq!(parsed.frames.len(), 3);
        assert_eq!(parsed.end as u64, j.len());
        assert_eq!(bytes.len() as u64, ALLOC_STEP, "the file grows in steps of zeros");
        assert_eq!(parsed.torn_bytes(&bytes), 0, "zeros are not a torn frame");
        assert_eq!(parsed.frames[2].kind, Kind::Link);
        assert_eq!(parsed.frames[2].data, b"artifacts/sha256/ab/abc");
        j.checkpoint().unwrap();
        assert!(j.is_empty());
        assert_eq!(fs::metadata(j.path()).unwrap().len(), 0);
        let names: Vec<_> =
            fs::read_dir(a.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file is left behind: {names:?}");
    }

    /// What a power loss can leave: files of a group missing or torn, a chain file that lost
    /// its last journaled appends and holds bytes the journal never made durable.
    #[test]
    fn recovery_restores_lost_files_and_appends_and_cuts_what_the_journal_never_held() {
        let f = fixture();
        let events = f.job.join("events.jsonl");
        let (prompt, output) =
            (f.job.join("step_outputs/K/prompt.txt"), f.job.join("step_outputs/K/output.json"));
        {
            let (j, _) = open(&f);
            let mut chain = ChainFile::create(&events, u64::MAX, "events").unwrap();
            chain.append(body(1)).unwrap();
            chain.attach_journal(Arc::clone(&j)).unwrap();
            chain.append_deferred(body(2)).unwrap();
            commit(&j, &[(&prompt, b"prompt v1")]);
            commit(&j, &[(&prompt, b"prompt v2"), (&output, b"{\"done\":true}")]);
            chain.append_deferred(body(3)).unwrap();
            chain.sync().unwrap();
            // The process dies without a checkpoint (dropping a journal does not make one).
            drop(chain);
            drop(j);
        }
        let whole = fs::read(&events).unwrap();
        let first_line = whole.iter().position(|b| *b == b'\n').unwrap() + 1;
        // Lost: output.json; torn: prompt.txt; the last two events gone, garbage after.
        fs::remove_file(&output).unwrap();
        fs::write(&prompt, b"").unwrap();
        let mut shortened = whole[..first_line].to_vec();
        shortened.extend_from_slice(b"{\"seq\":9,\"never journaled\"}\n");
        fs::write(&events, &shortened).unwrap();

        let (j, replay) = open(&f);
        let replay = replay.expect("a non-empty journal is replayed");
        assert_eq!(fs::read(&prompt).unwrap(), b"prompt v2", "the last frame of a file decides it");
        assert_eq!(fs::read(&output).unwrap(), b"{\"done\":true}");
        assert_eq!(fs::read(&events).unwrap(), whole, "the events come back exactly");
        assert_eq!(
            replay.files_restored,
            vec![
                "jobs/J1/step_outputs/K/prompt.txt".to_string(),
                "jobs/J1/step_outputs/K/output.json".into()
            ]
        );
        assert_eq!(
            replay.chains_restored,
            vec![("jobs/J1/events.jsonl".to_string(), (whole.len() - first_line) as u64)]
        );
        assert!(replay.chains_cut.is_empty(), "{replay:?}");
        assert!(j.is_empty(), "recovery checkpoints");
        assert_eq!(fs::metadata(j.path()).unwrap().len(), 0, "and leaves the journal file empty");
        assert!(ChainFile::open(&events, u64::MAX, "events").is_ok(), "the chain verifies");
    }

    #[test]
    fn recovery_cuts_chain_bytes_that_no_durable_frame_holds() {
        let f = fixture();
        let ledger = f.job.join("run_ledger.jsonl");
        {
            let (j, _) = open(&f);
            let mut chain = ChainFile::create(&ledger, u64::MAX, "ledger").unwrap();
            chain.attach_journal(Arc::clone(&j)).unwrap();
            chain.append(body(1)).unwrap();
            drop(chain);
            drop(j);
        }
        let durable = fs::read(&ledger).unwrap();
        let mut longer = durable.clone();
        longer.extend_from_slice(b"{\"seq\":2,\"written back but never journaled\"}\n");
        fs::write(&ledger, &longer).unwrap();
        let (_, replay) = open(&f);
        assert_eq!(fs::read(&ledger).unwrap(), durable);
        assert_eq!(
            replay.unwrap().chains_cut,
            vec![("jobs/J1/run_ledger.jsonl".to_string(), (longer.len() - durable.len()) as u64)]
        );
    }

    #[test]
    fn a_chain_shorter_than_its_durable_length_is_state_corruption() {
        let f = fixture();
        let ledger = f.job.join("run_ledger.jsonl");
        {
            let (j, _) = open(&f);
            let mut chain = ChainFile::create(&ledger, u64::MAX, "ledger").unwrap();
            chain.append(body(1)).unwrap();
            chain.append(body(2)).unwrap();
            chain.attach_journal(Arc::clone(&j)).unwrap();
            drop(chain);
            drop(j);
        }
        fs::write(&ledger, b"").unwrap();
        let err = Journal::open(&f.job.join(JOURNAL_FILE), &f.base).unwrap_err();
        assert!(matches!(err, StoreError::StateCorruption { .. }), "{err}");
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_the_frames_before_it_are_replayed() {
        let f = fixture();
        let file = f.job.join("job.json");
        {
            let (j, _) = open(&f);
            commit(&j, &[(&file, b"{}")]);
            drop(j);
        }
        let bytes = fs::read(f.job.join(JOURNAL_FILE)).unwrap();
        let parsed = parse(&bytes);
        let mut frame = Vec::new();
        encode(&mut frame, parsed.nonce, Kind::File, b"jobs/J1/other.json", 0, b"never whole").unwrap();
        // Cut inside the data, so the torn frame ends in a byte that is not zero.
        let torn = &frame[..frame.len() - CRC - 1];
        let journal = OpenOptions::new().write(true).open(f.job.join(JOURNAL_FILE)).unwrap();
        journal.write_all_at(torn, parsed.end as u64).unwrap();
        fs::remove_file(&file).unwrap();
        let (j, replay) = open(&f);
        let replay = replay.unwrap();
        assert_eq!((replay.frames, replay.torn_bytes), (1, torn.len() as u64));
        assert_eq!(fs::read(&file).unwrap(), b"{}");
        assert!(!f.job.join("other.json").exists());
        assert_eq!(fs::metadata(j.path()).unwrap().len(), 0, "the recovery's checkpoint cuts the file");
    }

    /// A running job's checkpoint keeps the file's space and begins a new epoch over it:
    /// the earlier epoch's frames, still in the file further on, are never replayed.
    #[test]
    fn a_checkpoint_with_chains_attached_reuses_the_file_and_ignores_the_earlier_epoch() {
        let f = fixture();
        let events = f.job.join("events.jsonl");
        let (old, new) = (f.job.join("step_outputs/K/old.txt"), f.job.join("step_outputs/K/new.txt"));
        {
            let (j, _) = open(&f);
            let mut chain = ChainFile::create(&events, u64::MAX, "events").unwrap();
            chain.attach_journal(Arc::clone(&j)).unwrap();
            // Enough frames that the next epoch overwrites only the start of them.
            let filler = vec![b'x'; 64 << 10];
            for n in 0..4 {
                commit(&j, &[(&f.job.join(format!("filler{n}.bin")), &filler)]);
            }
            commit(&j, &[(&old, b"old epoch")]);
            let before = parse(&fs::read(j.path()).unwrap()).nonce;
            j.checkpoint().unwrap();
            let bytes = fs::read(j.path()).unwrap();
            assert_eq!(bytes.len() as u64, ALLOC_STEP, "the space is kept");
            let parsed = parse(&bytes);
            assert_ne!(parsed.nonce, before, "a new epoch");
            assert_eq!(parsed.frames.len(), 1, "the chain attached again, nothing else");
            assert_eq!(parsed.frames[0].kind, Kind::Attach);
            assert!(parsed.torn_bytes(&bytes) > 0, "the earlier epoch is still in the file");
            commit(&j, &[(&new, b"new epoch")]);
            chain.append_deferred(body(1)).unwrap();
            chain.sync().unwrap();
            drop(chain);
            drop(j);
        }
        fs::remove_file(&old).unwrap();
        fs::remove_file(&new).unwrap();
        let (_, replay) = open(&f);
        let replay = replay.unwrap();
        assert_eq!(replay.files_restored, vec!["jobs/J1/step_outputs/K/new.txt".to_string()]);
        assert_eq!(fs::read(&new).unwrap(), b"new epoch");
        assert!(!old.exists(), "a frame of an earlier epoch is not replayed");
        assert_eq!(ChainFile::open(&events, u64::MAX, "events").unwrap().1.lines.len(), 1);
    }

    #[test]
    fn a_removed_file_is_not_brought_back() {
        let f = fixture();
        let file = f.job.join("skip_requested.json");
        {
            let (j, _) = open(&f);
            commit(&j, &[(&file, b"{}")]);
            j.log_remove(&file).unwrap();
            fs::remove_file(&file).unwrap();
            j.sync().unwrap();
            drop(j);
        }
        open(&f);
        assert!(!file.exists());
    }

    #[test]
    fn a_second_writer_is_refused_and_paths_outside_the_state_are_not_journaled() {
        let f = fixture();
        let (j, _) = open(&f);
        let err = Journal::open(&f.job.join(JOURNAL_FILE), &f.base).unwrap_err();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        let outside = f.base.parent().unwrap().join("elsewhere.txt");
        let mut group = WriteGroup::default();
        group.add(outside.parent().unwrap(), "elsewhere.txt", &Content::Bytes(b"x"));
        let err = group.commit_in(Some(&j)).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(!outside.exists());
    }

    #[test]
    fn an_append_out_of_order_with_the_journal_is_refused() {
        let f = fixture();
        let (j, _) = open(&f);
        let path = f.job.join("plugin_inputs.jsonl");
        fs::write(&path, b"0123456789").unwrap();
        j.attach_chain(&path, 10).unwrap();
        let err = j.append_chain(&path, 4, b"x\n", None).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        j.append_chain(&path, 10, b"x\n", None).unwrap();
        j.append_chain(&path, 12, b"y\n", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"0123456789", "appends reach the file at the sync");
        j.sync().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"0123456789x\ny\n");
    }

    /// Staged groups and log appends reach their files only once the journal is synced, in
    /// the order journaled, so no file ever shows what a power loss could take back.
    #[test]
    fn staged_files_and_appends_appear_at_the_next_sync_in_order() {
        let f = fixture();
        let (j, _) = open(&f);
        let events = f.job.join("events.jsonl");
        let mut chain = ChainFile::create(&events, u64::MAX, "events").unwrap();
        chain.attach_journal(Arc::clone(&j)).unwrap();
        let blob = f.base.join("artifacts/sha256/ab/abc");
        let mut group = WriteGroup::default();
        group.add(blob.parent().unwrap(), "abc", &Content::Bytes(b"v1"));
        group.stage_in(Some(&j)).unwrap();
        chain.append_deferred(body(1)).unwrap();
        let mut group = WriteGroup::default();
        group.add(blob.parent().unwrap(), "abc", &Content::Bytes(b"v2"));
        group.add(&f.job.join("step_outputs/K"), "response.txt", &Content::SameAs(&blob));
        group.stage_in(Some(&j)).unwrap();
        assert!(!blob.exists(), "a staged file waits for the sync");
        assert_eq!(fs::metadata(&events).unwrap().len(), 0, "so does an append");
        assert_eq!(j.staged_bytes(&blob).unwrap().as_deref(), Some(&b"v2"[..]), "the latest staged bytes");
        // Committing another group syncs, which writes everything staged before it.
        commit(&j, &[(&f.job.join("job.json"), b"{}")]);
        assert_eq!(fs::read(&blob).unwrap(), b"v2");
        assert_eq!(fs::read(f.job.join("step_outputs/K/response.txt")).unwrap(), b"v2");
        assert_eq!(fs::read(f.job.join("job.json")).unwrap(), b"{}");
        assert!(fs::metadata(&events).unwrap().len() > 0);
        assert_eq!(j.staged_bytes(&blob).unwrap(), None);
        // A checkpoint writes what is staged before it empties the journal.
        chain.append_deferred(body(2)).unwrap();
        j.checkpoint().unwrap();
        drop(chain);
        assert!(ChainFile::open(&events, u64::MAX, "events").unwrap().1.lines.len() == 2);
    }

    /// A group committed behind is journaled at once and synced on the journal's thread;
    /// its files appear at the next sync, and a crash before that replays them.
    #[test]
    fn a_group_committed_behind_is_replayed_and_written_at_the_next_sync() {
        let f = fixture();
        let response = f.job.join("step_outputs/K/response.txt");
        {
            let (j, _) = open(&f);
            let mut group = WriteGroup::default();
            group.add(response.parent().unwrap(), "response.txt", &Content::Bytes(b"answer"));
            group.commit_behind(Some(&j)).unwrap();
            assert!(!response.exists(), "written at the next sync");
            j.sync().unwrap();
            assert_eq!(fs::read(&response).unwrap(), b"answer");
            let mut group = WriteGroup::default();
            group.add(response.parent().unwrap(), "response.txt", &Content::Bytes(b"second"));
            group.commit_behind(Some(&j)).unwrap();
            // The process dies here: the thread is stopped with the journal.
            drop(j);
        }
        assert_eq!(fs::read(&response).unwrap(), b"answer");
        let (_, replay) = open(&f);
        assert!(replay.unwrap().files_restored.contains(&"jobs/J1/step_outputs/K/response.txt".to_string()));
        assert_eq!(fs::read(&response).unwrap(), b"second");
    }

    /// A sync that applies behind makes its frames durable before it returns and leaves
    /// their files to the journal's thread; every later sync, `staged_bytes` and a settle
    /// wait for that thread first, so the files see the journal's order: a group staged
    /// after it replaces what it wrote, and a link of that group reads the later bytes.
    #[test]
    fn a_sync_applied_behind_is_durable_at_once_and_its_files_land_before_the_next_ones() {
        let f = fixture();
        let (j, _) = Journal::open(&f.job.join(JOURNAL_FILE), &f.base).unwrap();
        let j = Arc::new(j.with_spares(&f.base.join("spare/J1")));
        let events = f.job.join("events.jsonl");
        let mut chain = ChainFile::create(&events, u64::MAX, "events").unwrap();
        chain.attach_journal(Arc::clone(&j)).unwrap();
        let blob = f.base.join("artifacts/sha256/ab/abc");
        let response = f.job.join("step_outputs/K/response.txt");
        for round in 0..20u64 {
            let first = format!("first {round}");
            let mut group = WriteGroup::default();
            group.add(blob.parent().unwrap(), "abc", &Content::Bytes(first.as_bytes()));
            group.add(response.parent().unwrap(), "response.txt", &Content::SameAs(&blob));
            group.stage_in(Some(&j)).unwrap();
            chain.append_deferred(body(round)).unwrap();
            j.sync_apply_behind().unwrap();
            {
                let inner = j.lock();
                assert_eq!(inner.synced_len, inner.len, "round {round}: the frames are durable at return");
                assert!(inner.pending.is_empty(), "round {round}: handed to the journal's thread");
            }
            let second = format!("second {round}");
            let mut group = WriteGroup::default();
            group.add(blob.parent().unwrap(), "abc", &Content::Bytes(second.as_bytes()));
            group.add(response.parent().unwrap(), "response.txt", &Content::SameAs(&blob));
            group.stage_in(Some(&j)).unwrap();
            assert_eq!(j.staged_bytes(&blob).unwrap().as_deref(), Some(second.as_bytes()));
            assert_eq!(fs::read(&blob).unwrap(), first.as_bytes(), "round {round}: settled by staged_bytes");
            j.sync().unwrap();
            assert_eq!(fs::read(&blob).unwrap(), second.as_bytes(), "round {round}: the later group last");
            assert_eq!(fs::read(&response).unwrap(), second.as_bytes(), "round {round}: its link too");
        }
        chain.append_deferred(body(99)).unwrap();
        j.sync_apply_behind().unwrap();
        j.settle().unwrap();
        assert_eq!(fs::read_to_string(&events).unwrap().lines().count(), 21, "every append in place");
        // Dropped with a batch on its way: the thread writes it before it stops.
        let mut group = WriteGroup::default();
        group.add(&f.job, "job.json", &Content::Bytes(b"{}"));
        group.stage_in(Some(&j)).unwrap();
        j.sync_apply_behind().unwrap();
        drop(chain);
        drop(j);
        assert_eq!(fs::read(f.job.join("job.json")).unwrap(), b"{}");
    }

    /// A write that fails on the journal's thread is reported by the next settle with the
    /// path it failed on, the batches after it are not written, and the journal refuses
    /// every later use; the frames are durable, so the next open writes the files.
    #[test]
    fn a_write_that_fails_behind_breaks_the_journal_and_the_next_open_writes_the_files() {
        let f = fixture();
        let blocker = f.job.join("step_outputs");
        fs::write(&blocker, b"a file where a directory goes").unwrap();
        let (response, later) = (blocker.join("K/response.txt"), f.job.join("job.json"));
        {
            let (j, _) = open(&f);
            commit_behind_applied(&j, &response, b"answer");
            commit_behind_applied(&j, &later, b"{}");
            let err = j.settle().unwrap_err();
            assert!(err.to_string().contains("step_outputs"), "names where it failed: {err}");
            assert!(!later.exists(), "nothing after the failed write is written");
            assert!(j.settle().is_err(), "the journal stays broken");
            assert!(j.sync().is_err());
            let mut group = WriteGroup::default();
            group.add(&f.job, "other.json", &Content::Bytes(b"{}"));
            assert!(group.stage_in(Some(&j)).is_err(), "no frame is taken any more");
        }
        fs::remove_file(&blocker).unwrap();
        let (_, replay) = open(&f);
        let restored = replay.expect("the frames are replayed").files_restored;
        assert!(restored.contains(&"jobs/J1/step_outputs/K/response.txt".to_string()), "{restored:?}");
        assert_eq!(fs::read(&response).unwrap(), b"answer");
        assert_eq!(fs::read(&later).unwrap(), b"{}");
    }

    fn commit_behind_applied(j: &Journal, path: &Path, bytes: &[u8]) {
        let mut group = WriteGroup::default();
        group.add(path.parent().unwrap(), path.file_name().unwrap(), &Content::Bytes(bytes));
        group.stage_in(Some(j)).unwrap();
        j.sync_apply_behind().unwrap();
    }

    /// With a spare pool, a group's files are the pool's spares renamed into place: new
    /// files, files replaced, a new directory, and a link to a file of the same group; no
    /// temp name is left in a target directory, and the pool keeps nothing it handed out.
    #[test]
    fn a_group_written_from_spares_lands_whole_under_its_names() {
        let f = fixture();
        let spares = f.base.join("spare/J1");
        let (j, _) = Journal::open(&f.job.join(JOURNAL_FILE), &f.base).unwrap();
        let j = j.with_spares(&spares);
        assert!(j.spares.as_ref().unwrap().wait_for_files(8), "the pool fills");
        let step = f.job.join("step_outputs/K");
        let (response, copy) = (step.join("response.txt"), step.join("response.copy"));
        for round in [&b"first"[..], b"second"] {
            let mut group = WriteGroup::default();
            group.add(&step, "response.txt", &Content::Bytes(round));
            group.add(&step, "response.copy", &Content::SameAs(&response));
            group.add(&f.job, "output.json", &Content::Bytes(round));
            group.commit_in(Some(&j)).unwrap();
            j.sync().unwrap();
            assert_eq!(fs::read(&response).unwrap(), round);
            assert_eq!(fs::read(&copy).unwrap(), round);
            assert_eq!(fs::read(f.job.join("output.json")).unwrap(), round);
        }
        let mut names: Vec<_> = fs::read_dir(&step).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["response.copy", "response.txt"], "no temp name is left behind");
        drop(j);
        assert!(!spares.exists(), "the pool is gone with the journal");
        assert_eq!(fs::read(&response).unwrap(), b"second");
    }

    /// A journal whose first frame is torn holds no epoch: nothing is replayed, and the
    /// bytes are cut so the next open does not report them again.
    #[test]
    fn a_journal_without_a_whole_first_frame_is_emptied() {
        let f = fixture();
        fs::write(f.job.join(JOURNAL_FILE), b"MTXJ\x06 torn epoch frame").unwrap();
        let (j, replay) = open(&f);
        let replay = replay.expect("the bytes are reported");
        assert_eq!((replay.frames, replay.torn_bytes), (0, 22));
        assert_eq!(fs::metadata(j.path()).unwrap().len(), 0);
        drop(j);
        assert_eq!(Journal::recover(&f.job, &f.base).unwrap(), None);
    }

    #[test]
    fn recover_leaves_a_clean_job_alone() {
        let f = fixture();
        assert_eq!(Journal::recover(&f.job, &f.base).unwrap(), None);
        let (j, _) = open(&f);
        drop(j);
        assert_eq!(Journal::recover(&f.job, &f.base).unwrap(), None, "an empty journal");
    }
}
