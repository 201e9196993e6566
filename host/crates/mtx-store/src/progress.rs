//! The progress artifact store (MTX-SPEC 8.2): `progress_artifact.json`, the single
//! source of truth for loop state.
//!
//! `load` validates on every read: a parse or validation failure is a typed
//! `StateCorruption` error, which the loop answers with the 8.6 rebuild. `save` refreshes
//! `updated_at` and the aggregates through the document's hook, refuses documents over
//! the 10 MB cap of 11.4, and replaces the file atomically, so a crash leaves the old or
//! the new file, never a torn one: the new bytes are written over the previous copy and
//! synced, the two names are exchanged, and the directory is synced (see
//! `fsutil::rewrite_previous` and `fsutil::swap_in`).
//!
//! A running job saves at every iteration, so the save keeps its syncs off the loop's
//! path where order allows ([`ProgressStore::save_after`]): the previous copy is written
//! and synced on the store's own thread while the caller's barrier (the journal's
//! fdatasync) runs; once the barrier is done the save returns, and that thread exchanges
//! the names as soon as its copy is synced, then syncs the directory. The next save, a
//! read of the document through the store, [`ProgressStore::flush`] and
//! [`ProgressStore::settle`] wait for that exchange and report its failure. Until the
//! directory sync is done a power loss may leave the names as they were, each file whole:
//! the job resumes from the document before, as after a crash just before the exchange. The file
//! is padded with spaces to a multiple of [`PAD_BYTES`], so its size, and with it the
//! inode a data sync would also write, changes once in many saves.
//!
//! Every saved document carries `content_sha256` \[D\], so an edit of the file is caught on
//! load and by `mtx verify` (the spec keeps unknown fields, so older readers ignore it). It
//! is the SHA-256 of the document's canonical JSON without that member, where each element
//! of `micro_tasks` stands as the SHA-256 of its own canonical JSON: a save hashes the
//! entries that changed, not the whole job (see [`integrity_digest`]). A file without the
//! member still loads; a file whose member disagrees is `StateCorruption`.
//! The store is generic over the document so its mechanics can be tested on their own;
//! mtx stores `mtx_types::progress::ProgressArtifact`. It never writes anything else.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use mtx_types::progress::{
    ARCHIVE_DIR, ArchiveChunk, DetachedHistory, MTProgressEntry, MicroTasks, ProgressArtifact,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::failpoint::failpoint;
use crate::fsutil::{KnownFile, parent_dir, rewrite_previous, swap_in, sync_dir};

/// Maximum size of a progress artifact (MTX-SPEC 11.4).
pub const PROGRESS_CAP_BYTES: u64 = 10 * 1024 * 1024;

/// The saved file is padded with spaces (JSON whitespace) to a multiple of this.
pub const PAD_BYTES: usize = 16 << 10;

/// A document the progress store can hold.
///
/// A document may keep old history in chunk files next to it (11.4): in memory it holds
/// everything, the saved form leaves the archived part out and names the chunks. The
/// hooks for that default to a document without chunks.
pub trait ProgressDocument: Serialize + DeserializeOwned {
    /// Schema rules serde cannot check, on the in-memory form; each string names one problem.
    fn validate(&self) -> Result<(), Vec<String>>;
    /// Called by `save` before writing: refresh `updated_at` and the aggregates (8.2 item 4).
    fn refresh(&mut self);
    /// New chunks to write before this save; nothing is recorded until they are adopted.
    fn cut_chunks(&self) -> Vec<ArchiveChunk> {
        Vec::new()
    }
    /// Records chunks whose files are durable.
    fn adopt_chunks(&mut self, _chunks: Vec<ArchiveChunk>) {}
    /// Takes the archived history out (in-memory form to saved form).
    fn detach(&mut self) -> DetachedHistory {
        DetachedHistory::default()
    }
    /// Puts back what `detach` took.
    fn restore(&mut self, _detached: DetachedHistory) {}
    /// `refresh` on the saved form.
    fn refresh_saved(&mut self) {
        self.refresh()
    }
    /// `validate` on the saved form.
    fn validate_saved(&self) -> Result<(), Vec<String>> {
        self.validate()
    }
    /// Reads the archived history back (saved form to in-memory form); `read` returns a
    /// chunk's bytes by its path relative to the document's directory.
    fn attach(&mut self, _read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>) -> Result<(), String> {
        Ok(())
    }
    /// The file bytes of the saved form (integrity member and final newline included),
    /// reusing `cache`; `None` for the plain encoding.
    fn encode_saved(&mut self, _cache: &mut EntryCache) -> Option<Vec<u8>> {
        None
    }
}

/// Serialised forms of progress entries from earlier saves by the same store, reused while
/// an entry is unchanged. A finished MT's entry does not change again, so a save does not
/// serialise the job's whole past (the saved document still holds every entry).
///
/// Which entries changed comes from the document's own record ([`MicroTasks::take_changes`])
/// when the cache last saw the same instance; for any other (the first save, a document
/// loaded or cloned since) every entry is encoded and compared with its cached bytes.
#[derive(Debug)]
pub struct EntryCache {
    entries: Vec<Option<CachedEntry>>,
    /// The lineage of the entries the cache mirrors (0: none yet).
    lineage: u64,
    /// This cache as a taker of a document's change record.
    id: u64,
    /// The entries' digests as the integrity digest streams them in: `"<hex>",` per entry,
    /// the last comma included; a save patches the changed entries' places.
    digests: Vec<u8>,
    /// The buffer of the file the store no longer needs (the one a save compared the
    /// previous copy with), for the next save to encode into: a long job's file is large,
    /// and a fresh buffer of that size costs a page fault per 4 KiB at every save.
    spare: Vec<u8>,
}

impl Default for EntryCache {
    fn default() -> Self {
        EntryCache {
            entries: Vec::new(),
            lineage: 0,
            id: mtx_types::progress::next_id(),
            digests: Vec::new(),
            spare: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct CachedEntry {
    /// SHA-256 of the entry's canonical JSON.
    digest: String,
    /// The entry as it stands in the file.
    encoded: Vec<u8>,
}

impl CachedEntry {
    fn of(entry: &MTProgressEntry) -> CachedEntry {
        CachedEntry::encoded(entry, encode_entry(entry))
    }

    fn encoded(entry: &MTProgressEntry, encoded: Vec<u8>) -> CachedEntry {
        CachedEntry { digest: mtx_types::sha256_hex(&mtx_types::canonical_json(entry)), encoded }
    }
}

fn encode_entry(entry: &MTProgressEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("progress entries serialise")
}

impl EntryCache {
    /// An empty buffer for a save's bytes.
    fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.spare);
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` for the next save's bytes (the larger of it and the one kept).
    fn recycle(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() > self.spare.capacity() {
            self.spare = buffer;
        }
    }

    /// The encoded form of every entry, in order, and their digests as `"<hex>","<hex>"`.
    fn forms(&mut self, entries: &mut MicroTasks) -> (Vec<&[u8]>, &[u8]) {
        let changes = entries.take_changes(self.id);
        let known = self.lineage == changes.lineage && self.entries.len() <= entries.len();
        self.lineage = changes.lineage;
        let cached = self.entries.len();
        self.entries.resize_with(entries.len(), || None);
        match changes.indexes {
            Some(indexes) if known && self.digests.len() == cached * DIGEST_SLOT => {
                for i in indexes.into_iter().filter(|&i| i < cached) {
                    let entry = CachedEntry::of(&entries[i]);
                    put_digest(&mut self.digests[i * DIGEST_SLOT..(i + 1) * DIGEST_SLOT], &entry.digest);
                    self.entries[i] = Some(entry);
                }
                for (slot, entry) in self.entries.iter_mut().zip(entries.iter()).skip(cached) {
                    let entry = CachedEntry::of(entry);
                    let at = self.digests.len();
                    self.digests.resize(at + DIGEST_SLOT, 0);
                    put_digest(&mut self.digests[at..], &entry.digest);
                    *slot = Some(entry);
                }
            }
            // The entry's bytes decide: equal bytes are an equal entry in the file, and
            // the digest is a function of them.
            _ => {
                self.digests.clear();
                self.digests.resize(entries.len() * DIGEST_SLOT, 0);
                for (i, (slot, entry)) in self.entries.iter_mut().zip(entries.iter()).enumerate() {
                    let encoded = encode_entry(entry);
                    if slot.as_ref().is_none_or(|c| c.encoded != encoded) {
                        *slot = Some(CachedEntry::encoded(entry, encoded));
                    }
                    let digest = &slot.as_ref().expect("filled above").digest;
                    put_digest(&mut self.digests[i * DIGEST_SLOT..(i + 1) * DIGEST_SLOT], digest);
                }
            }
        }
        let encoded =
            self.entries.iter().map(|c| c.as_ref().expect("filled above").encoded.as_slice()).collect();
        // Without the last entry's comma.
        (encoded, &self.digests[..self.digests.len().saturating_sub(1)])
    }
}

/// Bytes per entry in [`EntryCache::digests`]: a quoted SHA-256 in hex and a comma.
const DIGEST_SLOT: usize = 64 + 3;

/// Writes `"<digest>",` into a slot of [`EntryCache::digests`].
fn put_digest(slot: &mut [u8], digest: &str) {
    debug_assert_eq!(digest.len(), 64, "a SHA-256 in hex");
    slot[0] = b'"';
    slot[1..65].copy_from_slice(digest.as_bytes());
    slot[65] = b'"';
    slot[66] = b',';
}

/// Where the one occurrence of `needle` in `text` starts; `None` unless there is exactly one.
fn find_once(text: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut found = None;
    let mut from = 0;
    // Candidates start with the needle's first byte (a quote); only those are compared.
    while let Some(offset) = text[from..].iter().position(|b| *b == first) {
        let at = from + offset;
        if text[at..].starts_with(needle) {
            if found.is_some() {
                return None;
            }
            found = Some(at);
        }
        from = at + 1;
    }
    found
}

/// The empty `micro_tasks` array of an outline, where a save puts the entries.
const EMPTY: &[u8] = b"[]";

/// `encode` of the document with `micro_tasks` empty (the entries are put back).
fn outline<R>(doc: &mut ProgressArtifact, encode: impl FnOnce(&ProgressArtifact) -> R) -> R {
    let entries = std::mem::take(&mut doc.micro_tasks);
    let encoded = encode(doc);
    doc.micro_tasks = entries;
    encoded
}

impl ProgressDocument for ProgressArtifact {
    fn validate(&self) -> Result<(), Vec<String>> {
        ProgressArtifact::validate(self)
    }

    fn refresh(&mut self) {
        self.updated_at = mtx_types::now_rfc3339();
        self.recompute_aggregate_stats();
    }

    fn cut_chunks(&self) -> Vec<ArchiveChunk> {
        self.cut_archive_chunks()
    }

    fn adopt_chunks(&mut self, chunks: Vec<ArchiveChunk>) {
        self.adopt_archive_chunks(chunks)
    }

    fn detach(&mut self) -> DetachedHistory {
        self.detach_archived()
    }

    fn restore(&mut self, detached: DetachedHistory) {
        self.restore_archived(detached)
    }

    fn refresh_saved(&mut self) {
        self.updated_at = mtx_types::now_rfc3339();
        self.recompute_aggregate_stats_saved();
    }

    fn validate_saved(&self) -> Result<(), Vec<String>> {
        ProgressArtifact::validate_saved(self)
    }

    fn attach(&mut self, read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>) -> Result<(), String> {
        self.attach_archived(read)
    }

    /// The document without its entries is encoded straight from its fields, and the
    /// entries' cached forms are spliced in where its empty `micro_tasks` stands: the same
    /// bytes as the plain encoding. The integrity digest hashes the outline's canonical
    /// form with the entries' cached digests streamed in at the same place, so no save
    /// builds a JSON tree. The buffer is sized for the padding [`ProgressStore`] adds.
    fn encode_saved(&mut self, cache: &mut EntryCache) -> Option<Vec<u8>> {
        use sha2::{Digest, Sha256};
        // The outline is the document with no entries (`"micro_tasks":[]`) and no integrity
        // member, encoded straight from its fields, like `encode_plain` orders them.
        let stale = self.extra.remove(INTEGRITY_MEMBER);
        let canonical = outline(self, mtx_types::canonical_json);
        let mut bytes = cache.buffer();
        let (forms, digests) = cache.forms(&mut self.micro_tasks);
        let needle = b"\"micro_tasks\":[]";
        let encoded = find_once(&canonical, needle).map(|at| {
            // Where the empty array stands, and the digests streamed in its place.
            let at = at + needle.len() - EMPTY.len();
            let mut hasher = Sha256::new();
            hasher.update(&canonical[..at]);
            hasher.update(b"[");
            hasher.update(digests);
            hasher.update(b"]");
            hasher.update(&canonical[at + EMPTY.len()..]);
            hex::encode(hasher.finalize())
        });
        let bytes = encoded.and_then(|digest| {
            self.extra.insert(INTEGRITY_MEMBER.into(), serde_json::Value::from(digest));
            let plain = outline(self, serde_json::to_vec);
            self.extra.remove(INTEGRITY_MEMBER);
            let outline = plain.ok()?;
            let at = find_once(&outline, needle)?;
            let size = outline.len() + forms.iter().map(|encoded| encoded.len() + 1).sum::<usize>() + 2;
            bytes.reserve(size.div_ceil(PAD_BYTES) * PAD_BYTES);
            bytes.extend_from_slice(&outline[..at]);
            bytes.extend_from_slice(b"\"micro_tasks\":[");
            for (i, encoded) in forms.iter().enumerate() {
                if i > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(encoded);
            }
            bytes.push(b']');
            bytes.extend_from_slice(&outline[at + needle.len()..]);
            bytes.push(b'\n');
            Some(bytes)
        });
        if let Some(stale) = stale {
            self.extra.insert(INTEGRITY_MEMBER.into(), stale);
        }
        bytes
    }
}

/// The progress artifact of one job.
#[derive(Debug, Clone)]
pub struct ProgressStore {
    path: PathBuf,
    cap: u64,
    cache: Arc<Mutex<EntryCache>>,
    /// What the last two saves wrote: the older is what the previous copy holds at the
    /// next save, so only the pages that changed since are written.
    written: Arc<Mutex<[Option<KnownFile>; 2]>>,
    /// The thread that writes the previous copy and syncs the directory.
    worker: Arc<Mutex<Option<Worker>>>,
    /// Held through a save, so saves through clones of the store run one at a time.
    saving: Arc<Mutex<()>>,
}

/// A thread of the store's own. It takes tasks in order, so the directory sync of one
/// save is done before the next save writes the file that sync moved.
#[derive(Debug)]
struct Worker {
    tasks: mpsc::Sender<Task>,
    done: mpsc::Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// An `Install` was sent and its answer not taken yet.
    pending: bool,
}

enum Task {
    /// `fsutil::rewrite_previous`; its result waits for the `Install` that follows.
    Rewrite { path: PathBuf, previous: PathBuf, bytes: Vec<u8>, known: Option<KnownFile> },
    /// After the caller's barrier: when it held (`barrier_held`) and the rewrite before
    /// succeeded, exchanges the names (`fsutil::swap_in`), answers, then syncs the
    /// directory (a failure of that sync is the answer to the next `Install` or `Flush`).
    /// When the barrier failed, empties the previous copy, which must not stand for a
    /// document whose barrier never completed, and answers.
    Install { path: PathBuf, previous: PathBuf, barrier_held: bool },
    /// Answered once every task before it is done.
    Flush,
}

/// The answer to a task: for an installed save, the file now at the document's path (what
/// the previous copy will hold at the save after next), and the buffer of the file the
/// rewrite compared with (empty when there was none), for the next save to encode into.
struct Done {
    result: io::Result<()>,
    installed: Option<KnownFile>,
    spare: Vec<u8>,
}

impl Worker {
    fn start() -> io::Result<Worker> {
        let (tasks, inbox) = mpsc::channel::<Task>();
        let (outbox, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("mtx-progress".into()).spawn(move || {
            // A failed directory sync, reported with the next answer.
            let mut failed: Option<io::Error> = None;
            // The last rewrite: its result, its bytes and the buffer it compared with.
            let mut staged: Option<(io::Result<()>, Vec<u8>, Vec<u8>)> = None;
            for task in inbox {
                let mut sync_after = None;
                let done = match task {
                    Task::Rewrite { path, previous, bytes, known } => {
                        let result = rewrite_previous(&path, &bytes, &previous, known.as_ref());
                        staged = Some((result, bytes, known.map(|k| k.bytes).unwrap_or_default()));
                        continue;
                    }
                    Task::Install { path, previous, barrier_held } => {
                        let (rewritten, bytes, spare) = staged.take().unwrap_or_else(|| {
                            (Err(io::Error::other("no rewrite before the install")), Vec::new(), Vec::new())
                        });
                        let result = if barrier_held {
                            failed.take().map_or(rewritten, Err).and_then(|()| install(&path, &previous, bytes))
                        } else {
                            let cut = std::fs::OpenOptions::new().write(true).open(&previous).and_then(|f| f.set_len(0));
                            if let Err(e) = cut {
                                tracing::warn!(path = %previous.display(), error = %e, "previous progress copy not emptied");
                            }
                            Err(io::Error::other("the barrier failed"))
                        };
                        match result {
                            Ok((installed, exchanged)) => {
                                sync_after = exchanged.then(|| parent_dir(&path).to_owned());
                                Done { result: Ok(()), installed: Some(installed), spare }
                            }
                            Err(e) => Done { result: Err(e), installed: None, spare },
                        }
                    }
                    Task::Flush => Done { result: failed.take().map_or(Ok(()), Err), installed: None, spare: Vec::new() },
                };
                if outbox.send(done).is_err() {
                    return;
                }
                if let Some(dir) = sync_after
                    && let Err(e) = sync_dir(&dir)
                {
                    failed.get_or_insert(e);
                }
            }
        })?;
        Ok(Worker { tasks, done, thread: Some(thread), pending: false })
    }

    fn send(&self, task: Task) -> bool {
        self.tasks.send(task).is_ok()
    }

    /// The answer to the oldest task sent and not yet answered.
    fn answer(&self) -> Done {
        self.done.recv().unwrap_or_else(|_| Done::stopped())
    }

    /// Runs `task` and waits for its answer.
    fn ask(&self, task: Task) -> Done {
        if self.send(task) { self.answer() } else { Done::stopped() }
    }
}

impl Done {
    fn stopped() -> Done {
        Done {
            result: Err(io::Error::other("the progress store's thread stopped")),
            installed: None,
            spare: Vec::new(),
        }
    }
}

/// Puts the synced previous copy in place at `path` (on the store's thread, after the
/// caller's barrier). Returns the file now at `path` and whether the names were exchanged
/// (then the directory sync may follow later); a first save, renamed rather than
/// exchanged, syncs the directory before it counts as done.
fn install(path: &Path, previous: &Path, bytes: Vec<u8>) -> io::Result<(KnownFile, bool)> {
    failpoint("progress.rename.before");
    let exchanged = swap_in(path, previous)?;
    if !exchanged {
        sync_dir(parent_dir(path))?;
    }
    failpoint("progress.rename.after");
    Ok((KnownFile::now_at(path, bytes)?, exchanged))
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::mem::take(&mut self.pending)
            && let Err(e) = self.answer().result
        {
            tracing::error!(error = %e, "progress artifact: the last save was not put in place");
        }
        let Done { result, .. } = self.ask(Task::Flush);
        if let Err(e) = result {
            tracing::error!(error = %e, "progress artifact: directory sync failed");
        }
        // Dropping the only sender closes the channel, which ends the thread.
        self.tasks = mpsc::channel().0;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ProgressStore {
    pub fn new(path: &Path) -> Self {
        ProgressStore::with_cap(path, PROGRESS_CAP_BYTES)
    }

    /// A store with another cap (tests of the cap path, small deployments).
    pub fn with_cap(path: &Path, cap: u64) -> Self {
        ProgressStore {
            path: path.to_owned(),
            cap,
            cache: Arc::default(),
            written: Arc::default(),
            worker: Arc::default(),
            saving: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        lock(&self.worker).as_ref().is_some_and(|w| w.pending) || self.path.exists()
    }

    /// Reads, parses and validates the document.
    pub fn load<T: ProgressDocument>(&self) -> Result<T, StoreError> {
        self.load_from(&self.path)
    }

    fn load_from<T: ProgressDocument>(&self, path: &Path) -> Result<T, StoreError> {
        self.settle()?;
        let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
        if bytes.len() as u64 > self.cap {
            return Err(StoreError::corrupt(
                path,
                format!("file is {} bytes, over the {} byte cap", bytes.len(), self.cap),
            ));
        }
        parse_and_validate(path, &bytes)
    }

    /// Where the document replaced by the last save is kept
    /// (`progress_artifact.prev.json` next to `progress_artifact.json`).
    pub fn previous_path(&self) -> PathBuf {
        let name = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.path.with_file_name(format!("{name}.prev.json"))
    }

    /// Reads, parses and validates the document the last save replaced: what a job falls
    /// back to when the current document is corrupt (8.6).
    pub fn load_previous<T: ProgressDocument>(&self) -> Result<T, StoreError> {
        self.load_from(&self.previous_path())
    }

    /// Refreshes, validates and atomically replaces the document; returns the document's
    /// size (without the padding).
    /// The replaced document stays readable through [`ProgressStore::load_previous`].
    ///
    /// History the document archives (11.4) is written to its chunk files first, so the
    /// saved document never names a chunk that is not durable; the document's size, and
    /// so the cost of a save, stays bounded however long the job runs.
    /// The file is in place when it returns.
    pub fn save<T: ProgressDocument>(&self, doc: &mut T) -> Result<u64, StoreError> {
        let size = self.save_after(doc, || Ok(()))?;
        self.settle()?;
        Ok(size)
    }

    /// [`ProgressStore::save`], but only once `barrier` (run on this thread) succeeds:
    /// what a barrier makes durable is durable before the saved document names it. The
    /// previous copy is written and synced meanwhile, on a thread of its own, which
    /// exchanges the names after both; the call returns once the barrier is done, and
    /// [`ProgressStore::settle`] (which every later save, load and flush runs first) waits
    /// for the exchange and reports its failure. A failed barrier leaves `path` as it was
    /// and the previous copy empty: it must not stand for a document whose barrier never
    /// completed.
    pub fn save_after<T: ProgressDocument>(
        &self,
        doc: &mut T,
        barrier: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let _saving = lock(&self.saving);
        self.settle()?;
        let chunks = doc.cut_chunks();
        if !chunks.is_empty() {
            self.write_chunks(&chunks)?;
            doc.adopt_chunks(chunks);
        }
        let detached = doc.detach();
        let written = self.write_saved(doc, barrier);
        doc.restore(detached);
        written
    }

    /// Waits for the directory sync of the last save: from here on its exchange survives
    /// a power loss.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.settle()?;
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        match lock(&self.worker).as_ref() {
            Some(worker) => worker.ask(Task::Flush).result.map_err(|e| StoreError::io(dir, e)),
            None => Ok(()),
        }
    }

    /// Waits until the last save's document is in place at the path (a save returns once
    /// its barrier is done; the store's thread exchanges the names when its copy is synced)
    /// and reports a failure to put it there. Every save, load and flush does it first; a
    /// caller about to act on the saved state (the loop, before a model call) may call it
    /// to learn of a failed save at once rather than at the next save.
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut worker = lock(&self.worker);
        let Some(worker) = worker.as_mut().filter(|w| w.pending) else { return Ok(()) };
        worker.pending = false;
        let Done { result, installed, spare } = worker.answer();
        lock(&self.cache).recycle(spare);
        let mut written = lock(&self.written);
        match result {
            Ok(()) => {
                *written = [written[1].take(), installed];
                Ok(())
            }
            Err(e) => {
                *written = [None, None];
                Err(StoreError::io(&self.path, e))
            }
        }
    }

    /// Chunk files go in with one directory fsync; an existing chunk is replaced by the
    /// same bytes (chunks depend only on their records), which a save repeated after a
    /// crash relies on.
    fn write_chunks(&self, chunks: &[ArchiveChunk]) -> Result<(), StoreError> {
        let root = self.path.parent().unwrap_or_else(|| Path::new("."));
        let dir = root.join(ARCHIVE_DIR);
        let mut files = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            chunk.reference.check_path().map_err(|problem| StoreError::invalid("archive chunk", problem))?;
            let name = chunk.reference.path.strip_prefix(&format!("{ARCHIVE_DIR}/")).unwrap_or_default();
            files.push((name, chunk.bytes.as_slice()));
        }
        crate::fsutil::atomic_write_all(&dir, &files)
    }

    /// Writes `doc`, already in its saved form.
    fn write_saved<T: ProgressDocument>(
        &self,
        doc: &mut T,
        barrier: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        doc.refresh_saved();
        if let Err(problems) = doc.validate_saved() {
            return Err(StoreError::invalid("progress artifact", problems.join("; ")));
        }
        let cached = doc.encode_saved(&mut lock(&self.cache));
        let mut bytes = match cached {
            Some(bytes) => bytes,
            None => encode_plain(&*doc)?,
        };
        let size = bytes.len() as u64;
        if size > self.cap {
            return Err(StoreError::TooLarge { path: self.path.clone(), size, cap: self.cap });
        }
        let padded = bytes.len().div_ceil(PAD_BYTES) * PAD_BYTES;
        if padded as u64 <= self.cap {
            bytes.resize(padded, b' ');
        }
        let previous = self.previous_path();
        let stopped = || StoreError::io(&self.path, io::Error::other("the progress store's thread stopped"));
        {
            let mut worker = lock(&self.worker);
            if worker.is_none() {
                *worker = Some(Worker::start().map_err(|e| StoreError::io(&self.path, e))?);
            }
            let worker = worker.as_mut().expect("started above");
            let known = lock(&self.written)[0].take();
            let rewrite = Task::Rewrite { path: self.path.clone(), previous: previous.clone(), bytes, known };
            // The store's thread rewrites the previous copy (after the directory sync of the
            // last save, which moved it there) while the barrier runs here.
            if !worker.send(rewrite) {
                *lock(&self.written) = [None, None];
                return Err(stopped());
            }
        }
        // Not under the worker's lock: a barrier may read the document (the current one).
        let barrier = barrier();
        {
            let mut worker = lock(&self.worker);
            let worker = worker.as_mut().expect("started above");
            let install = Task::Install { path: self.path.clone(), previous, barrier_held: barrier.is_ok() };
            if !worker.send(install) {
                *lock(&self.written) = [None, None];
                return Err(stopped());
            }
            worker.pending = true;
        }
        if let Err(e) = barrier {
            // The previous copy is emptied and the document stays as it was.
            let _ = self.settle();
            return Err(e);
        }
        Ok(size)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The saved file's bytes: compact JSON with the integrity member, then a newline. (Compact
/// because a long job's file is rewritten at every iteration: indentation was half of it.)
fn encode_plain<T: Serialize>(doc: &T) -> Result<Vec<u8>, StoreError> {
    let mut value =
        serde_json::to_value(doc).map_err(|e| StoreError::invalid("progress artifact", e.to_string()))?;
    let Some(map) = value.as_object_mut() else {
        return Err(StoreError::invalid("progress artifact", "document is not a JSON object"));
    };
    map.remove(INTEGRITY_MEMBER);
    let digest = integrity_digest(map);
    map.insert(INTEGRITY_MEMBER.into(), serde_json::Value::from(digest));
    let mut bytes = serde_json::to_vec(&map).expect("JSON values serialise");
    bytes.push(b'\n');
    Ok(bytes)
}

/// The member holding the document's own hash.
pub const INTEGRITY_MEMBER: &str = "content_sha256";

/// The member whose elements [`integrity_digest`] hashes one by one.
const ENTRIES_MEMBER: &str = "micro_tasks";

/// The `content_sha256` of a document (given without that member): the SHA-256 of its
/// canonical JSON in which each element of `micro_tasks` is replaced by the SHA-256 (hex)
/// of the element's own canonical JSON. A change anywhere changes the digest, and a save
/// that reuses the digests of unchanged entries hashes only what changed.
pub fn integrity_digest(doc: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    let mut outline = serde_json::Map::with_capacity(doc.len());
    for (key, value) in doc {
        let value = match value {
            Value::Array(entries) if key == ENTRIES_MEMBER => Value::Array(
                entries
                    .iter()
                    .map(|e| Value::from(mtx_types::sha256_hex(&mtx_types::canonical_json_value(e))))
                    .collect(),
            ),
            other => other.clone(),
        };
        outline.insert(key.clone(), value);
    }
    mtx_types::sha256_hex(&mtx_types::canonical_json_value(&Value::Object(outline)))
}

/// Parses, checks the integrity member of, and validates progress bytes; failures are
/// `StateCorruption` naming `path`.
pub fn parse_and_validate<T: ProgressDocument>(path: &Path, bytes: &[u8]) -> Result<T, StoreError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    let Some(map) = value.as_object_mut() else {
        return Err(StoreError::corrupt(path, "document is not a JSON object"));
    };
    if let Some(stated) = map.remove(INTEGRITY_MEMBER) {
        let computed = integrity_digest(map);
        // Files saved before entries were hashed one by one hold the digest of the whole
        // canonical JSON; a job paused then still resumes.
        let legacy = || mtx_types::sha256_hex(&mtx_types::canonical_json_value(&value));
        if stated.as_str() != Some(computed.as_str()) && stated.as_str() != Some(legacy().as_str()) {
            return Err(StoreError::corrupt(
                path,
                format!(
                    "content does not match its {INTEGRITY_MEMBER} (stated {stated}, computed {computed})"
                ),
            ));
        }
    }
    let mut doc: T = serde_json::from_value(value).map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    let root = path.parent().unwrap_or_else(|| Path::new("."));
    doc.attach(&mut |rel| std::fs::read(root.join(rel)).map_err(|e| format!("archive chunk {rel}: {e}")))
        .map_err(|problem| StoreError::corrupt(path, problem))?;
    doc.validate().map_err(|problems| StoreError::corrupt(path, problems.join("; ")))?;
    Ok(doc)
}

/// The few fields the startup scan needs, read without the full schema so a scan never
/// fails on one bad job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ProgressHeader {
    pub job_id: String,
    pub wp_id: String,
    pub status: String,
    pub updated_at: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Doc {
        n: u32,
        updated_at: String,
        total: u32,
    }

    impl ProgressDocument for Doc {
        fn validate(&self) -> Result<(), Vec<String>> {
            if self.n > 100 { Err(vec![format!("n {} is over 100", self.n)]) } else { Ok(()) }
        }
        fn refresh(&mut self) {
            self.updated_at = "refreshed".into();
            self.total = self.n * 2;
        }
    }

    #[test]
    fn the_entries_placeholder_is_found_only_when_it_occurs_once() {
        let needle = b"\"micro_tasks\":\"@\"";
        assert_eq!(find_once(b"{\"a\":1,\"micro_tasks\":\"@\",\"b\":\"x\"}", needle), Some(7));
        assert_eq!(find_once(b"{\"micro_tasks\":\"@\",\"c\":{\"micro_tasks\":\"@\"}}", needle), None);
        assert_eq!(find_once(b"{\"micro_tasks\":[]}", needle), None);
        assert_eq!(find_once(b"aaa", b"aa"), None, "overlapping occurrences count twice");
        assert_eq!(find_once(b"abc", b""), None);
        assert_eq!(find_once(b"ab", b"abc"), None);
    }

    #[test]
    fn save_refreshes_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProgressStore::new(&dir.path().join("progress_artifact.json"));
        let mut doc = Doc { n: 3, updated_at: "old".into(), total: 0 };
        store.save(&mut doc).unwrap();
        assert_eq!(doc.updated_at, "refreshed");
        assert_eq!(store.load::<Doc>().unwrap(), Doc { n: 3, updated_at: "refreshed".into(), total: 6 });
    }

    /// The saved file is whole JSON padded with spaces to a multiple of `PAD_BYTES`; the
    /// barrier runs before the new file is in place, and a failed one leaves the current
    /// file as it was.
    #[test]
    fn a_save_after_a_barrier_is_padded_and_a_failed_barrier_keeps_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        let mut doc = Doc { n: 1, updated_at: "old".into(), total: 0 };
        store.save(&mut doc).unwrap();
        let first = std::fs::read(&path).unwrap();
        assert_eq!(first.len(), PAD_BYTES, "padded");
        assert!(first.starts_with(b"{") && first[first.len() - 1] == b' ');
        doc.n = 2;
        let mut seen = None;
        store
            .save_after(&mut doc, || {
                seen = Some(store.load::<Doc>().unwrap().n);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, Some(1), "the barrier runs before the new file is in place");
        assert_eq!(store.load::<Doc>().unwrap().n, 2);
        doc.n = 3;
        let err = store
            .save_after(&mut doc, || Err(StoreError::invalid("barrier", "the journal cannot sync")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert_eq!(store.load::<Doc>().unwrap().n, 2, "the current file is untouched");
        assert!(store.load_previous::<Doc>().is_err(), "no fallback to a document past a failed barrier");
        // The previous copy was written meanwhile; the next save does not trust it.
        doc.n = 4;
        store.save(&mut doc).unwrap();
        store.flush().unwrap();
        assert_eq!((store.load::<Doc>().unwrap().n, store.load_previous::<Doc>().unwrap().n), (4, 2));
    }

    /// A save returns after its barrier and the document is put in place behind it; a
    /// failure there is reported by the next settle (or save), and the current file stays
    /// as it was.
    #[test]
    fn a_save_is_put_in_place_behind_the_barrier_and_a_failure_there_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        store.save(&mut Doc { n: 1, updated_at: String::new(), total: 0 }).unwrap();
        // A directory where the previous copy goes: the copy cannot be written.
        std::fs::create_dir(store.previous_path()).unwrap();
        std::fs::write(store.previous_path().join("keep"), b"x").unwrap();
        store.save_after(&mut Doc { n: 2, updated_at: String::new(), total: 0 }, || Ok(())).unwrap();
        assert!(matches!(store.settle(), Err(StoreError::Io { .. })));
        store.settle().unwrap();
        assert_eq!(store.load::<Doc>().unwrap().n, 1, "the current file is untouched");
        // The same failure, met by the next save instead of a settle.
        store.save_after(&mut Doc { n: 3, updated_at: String::new(), total: 0 }, || Ok(())).unwrap();
        assert!(store.save(&mut Doc { n: 4, updated_at: String::new(), total: 0 }).is_err());
        std::fs::remove_dir_all(store.previous_path()).unwrap();
        store.save_after(&mut Doc { n: 5, updated_at: String::new(), total: 0 }, || Ok(())).unwrap();
        store.settle().unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), PAD_BYTES, "in place once settled");
        assert_eq!(store.load::<Doc>().unwrap().n, 5);
    }

    #[test]
    fn the_replaced_document_stays_readable_as_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProgressStore::new(&dir.path().join("progress_artifact.json"));
        assert!(store.load_previous::<Doc>().is_err(), "nothing replaced yet");
        store.save(&mut Doc { n: 1, updated_at: String::new(), total: 0 }).unwrap();
        store.save(&mut Doc { n: 2, updated_at: String::new(), total: 0 }).unwrap();
        assert_eq!(store.previous_path(), dir.path().join("progress_artifact.prev.json"));
        assert_eq!(store.load::<Doc>().unwrap().n, 2);
        assert_eq!(store.load_previous::<Doc>().unwrap().n, 1);
        // A corrupted current document leaves the previous one intact.
        std::fs::write(store.path(), b"{garbage").unwrap();
        assert!(store.load::<Doc>().is_err());
        assert_eq!(store.load_previous::<Doc>().unwrap().n, 1);
    }

    #[test]
    fn unparsable_or_invalid_files_are_state_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        std::fs::write(&path, b"{\"n\": 3, \"updated_").unwrap();
        assert!(matches!(store.load::<Doc>(), Err(StoreError::StateCorruption { .. })));
        std::fs::write(&path, br#"{"n": 300, "updated_at": "x", "total": 0}"#).unwrap();
        let err = store.load::<Doc>().unwrap_err();
        assert!(matches!(err, StoreError::StateCorruption { .. }) && err.to_string().contains("over 100"));
    }

    #[test]
    fn an_invalid_or_oversized_document_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::with_cap(&path, 400);
        store.save(&mut Doc { n: 1, updated_at: String::new(), total: 0 }).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            store.save(&mut Doc { n: 101, updated_at: String::new(), total: 0 }),
            Err(StoreError::Invalid { .. })
        ));
        let mut big = Doc { n: 1, updated_at: "x".repeat(100), total: 0 };
        big.refresh();
        let small = ProgressStore::with_cap(&path, 10);
        assert!(matches!(small.save(&mut big), Err(StoreError::TooLarge { cap: 10, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_real_progress_artifact_validates_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        let mut doc = crate::rebuild::tests::sample_progress();
        store.save(&mut doc).unwrap();
        let loaded: ProgressArtifact = store.load().unwrap();
        assert_eq!(loaded.aggregate_stats.total_mts, 2);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"schema_version\":\"1.0\"", "\"schema_version\":\"2.0\"");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(store.load::<ProgressArtifact>(), Err(StoreError::StateCorruption { .. })));
    }

    #[test]
    fn an_edit_that_still_validates_is_caught_by_the_content_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        store.save(&mut Doc { n: 3, updated_at: String::new(), total: 0 }).unwrap();
        let text = std::fs::read_to_string(&path).unwrap().replace("\"n\":3", "\"n\":4");
        std::fs::write(&path, text).unwrap();
        let err = store.load::<Doc>().unwrap_err();
        assert!(err.to_string().contains("content_sha256"), "{err}");
    }

    /// The sample artifact with `n` iterations of MT-001, all at level 0.
    fn long_progress(n: u32) -> ProgressArtifact {
        let mut doc = crate::rebuild::tests::sample_progress();
        doc.micro_tasks[0].status = mtx_types::progress::MTStatus::InProgress;
        doc.micro_tasks[0].iterations = (1..=n)
            .map(|i| {
                crate::rebuild::tests::record(
                    &mtx_types::step_id("MT-001", i),
                    i,
                    mtx_types::progress::IterationOutcome::Retry,
                )
            })
            .collect();
        doc
    }

    #[test]
    fn a_long_history_is_saved_in_chunks_and_loads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        let mut doc = long_progress(40);
        store.save(&mut doc).unwrap();
        assert!(!dir.path().join(ARCHIVE_DIR).exists(), "a short history stays inline");
        let small = std::fs::metadata(&path).unwrap().len();

        let mut doc = long_progress(1000);
        store.save(&mut doc).unwrap();
        assert_eq!(doc.micro_tasks[0].iterations.len(), 1000, "the caller's document keeps every record");
        assert_eq!(doc.micro_tasks[0].archived_iterations.len(), 30);
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["micro_tasks"][0]["iterations"].as_array().unwrap().len(), 40);
        assert_eq!(saved["aggregate_stats"]["total_iterations"], 1000);
        assert!(std::fs::metadata(&path).unwrap().len() < small * 3, "the saved form stays small");
        assert_eq!(std::fs::read_dir(dir.path().join(ARCHIVE_DIR)).unwrap().count(), 30);

        let loaded: ProgressArtifact = store.load().unwrap();
        assert_eq!(loaded, doc);
        assert_eq!(loaded.aggregate_stats.total_iterations, 1000);

        // Later saves add chunks; earlier ones are not rewritten.
        let first = dir.path().join(ARCHIVE_DIR).join("MT-001_00001.json");
        let before = std::fs::metadata(&first).unwrap().modified().unwrap();
        let mut more = doc.clone();
        let extra = long_progress(1100).micro_tasks[0].iterations.split_off(1000);
        more.micro_tasks[0].iterations.extend(extra);
        store.save(&mut more).unwrap();
        assert_eq!(more.micro_tasks[0].archived_iterations.len(), 33);
        assert_eq!(std::fs::metadata(&first).unwrap().modified().unwrap(), before);
        assert_eq!(store.load::<ProgressArtifact>().unwrap(), more);
    }

    #[test]
    fn a_missing_or_edited_archive_chunk_is_state_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress_artifact.json");
        let store = ProgressStore::new(&path);
        store.save(&mut long_progress(200)).unwrap();
        let chunk = dir.path().join(ARCHIVE_DIR).join("MT-001_00033.json");
        let good = std::fs::read(&chunk).unwrap();

        std::fs::write(
            &chunk,
            String::from_utf8(good.clone()).unwrap().replacen(
                "\"tokens_prompt\":10",
                "\"tokens_prompt\":11",
                1,
            ),
        )
        .unwrap();
        let err = store.load::<ProgressArtifact>().unwrap_err();
        assert!(matches!(err, StoreError::StateCorruption { .. }), "{err}");
        assert!(err.to_string().contains("MT-001_00033.json"), "{err}");

        std::fs::remove_file(&chunk).unwrap();
        let err = store.load::<ProgressArtifact>().unwrap_err();
        assert!(
            matches!(err, StoreError::StateCorruption { .. })
                && err.to_string().contains("MT-001_00033.json")
        );

        std::fs::write(&chunk, good).unwrap();
        assert_eq!(store.load::<ProgressArtifact>().unwrap().micro_tasks[0].iterations.len(), 200);
    }

    #[test]
    fn the_integrity_digest_hashes_each_entry_and_catches_an_edit_of_one() {
        use serde_json::{Value, json};
        let doc = json!({"job_id": "j", "micro_tasks": [{"mt_id": "MT-001"}, {"mt_id": "MT-002"}]});
        let Value::Object(map) = &doc else { unreachable!() };
        let outline = json!({"job_id": "j", "micro_tasks": [
            mtx_types::sha256_hex(br#"{"mt_id":"MT-001"}"#),
            mtx_types::sha256_hex(br#"{"mt_id":"MT-002"}"#),
        ]});
        assert_eq!(integrity_digest(map), mtx_types::sha256_hex(&mtx_types::canonical_json_value(&outline)));

        let dir = tempfile::tempdir().unwrap();
        let store = ProgressStore::new(&dir.path().join("progress_artifact.json"));
        let mut saved = long_progress(3);
        store.save(&mut saved).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        std::fs::write(store.path(), text.replacen("\"MT-002\"", "\"MT-00X\"", 1)).unwrap();
        let err = store.load::<ProgressArtifact>().unwrap_err();
        assert!(err.to_string().contains(INTEGRITY_MEMBER), "{err}");

        // A file with the digest of its whole canonical JSON (saved by an earlier mtx) loads.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        let map = value.as_object_mut().unwrap();
        map.remove(INTEGRITY_MEMBER);
        let whole = mtx_types::sha256_hex(&mtx_types::canonical_json_value(&Value::Object(map.clone())));
        map.insert(INTEGRITY_MEMBER.into(), Value::from(whole));
        std::fs::write(store.path(), serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        assert_eq!(store.load::<ProgressArtifact>().unwrap(), saved);
    }

    #[test]
    fn the_cached_encoding_is_byte_for_byte_the_plain_one_and_follows_changes() {
        let mut cache = EntryCache::default();
        let mut doc = long_progress(10);
        doc.micro_tasks[1].status = mtx_types::progress::MTStatus::Completed;
        // A stale integrity member ahead of another unknown member: both encodings drop it
        // the same way, and the document keeps it.
        doc.extra.insert(INTEGRITY_MEMBER.into(), serde_json::json!("stale"));
        doc.extra.insert("x_ext".into(), serde_json::json!({"micro_tasks": "not the entries", "n": [1, 2]}));
        let extra = doc.extra.clone();
        for round in 0..3 {
            if round == 2 {
                // An entry that changes is encoded again, not taken from the cache.
                doc.micro_tasks[0].iterations.pop();
                doc.micro_tasks[1].name = "renamed".into();
            }
            let cached = doc.encode_saved(&mut cache).expect("the cached encoding applies");
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                String::from_utf8(encode_plain(&doc).unwrap()).unwrap()
            );
            assert_eq!(doc.extra, extra);
        }
        let mut empty = crate::rebuild::tests::sample_progress();
        empty.micro_tasks.clear();
        let cached = empty.encode_saved(&mut EntryCache::default()).unwrap();
        assert_eq!(cached, encode_plain(&empty).unwrap());

        // Through the store: saves reuse the cache and loads check the content hash.
        let dir = tempfile::tempdir().unwrap();
        let store = ProgressStore::new(&dir.path().join("progress_artifact.json"));
        let mut doc = long_progress(150);
        store.save(&mut doc).unwrap();
        doc.micro_tasks[1].status = mtx_types::progress::MTStatus::Skipped;
        store.save(&mut doc).unwrap();
        assert_eq!(store.load::<ProgressArtifact>().unwrap(), doc);
    }

    /// The change record decides what a save encodes again; whatever path a change takes
    /// (an index, `get_mut`, `push`, `iter_mut`, a clone saved in between, another cache
    /// taking the record), the bytes equal the plain encoding.
    #[test]
    fn the_cached_encoding_follows_the_change_record_through_clones_and_other_caches() {
        use mtx_types::progress::MTStatus;
        let check = |doc: &mut ProgressArtifact, cache: &mut EntryCache| {
            let cached = doc.encode_saved(cache).expect("the cached encoding applies");
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                String::from_utf8(encode_plain(&*doc).unwrap()).unwrap()
            );
        };
        let (mut cache, mut other) = (EntryCache::default(), EntryCache::default());
        let mut doc = long_progress(4);
        doc.micro_tasks.push(mtx_types::MTProgressEntry::pending("MT-003", "three"));
        doc.micro_tasks.push(mtx_types::MTProgressEntry::pending("MT-004", "four"));
        check(&mut doc, &mut cache);
        doc.micro_tasks[0].status = MTStatus::Completed;
        check(&mut doc, &mut cache);
        doc.micro_tasks.get_mut(1).unwrap().name = "by get_mut".into();
        check(&mut doc, &mut cache);
        doc.micro_tasks.push(mtx_types::MTProgressEntry::pending("MT-005", "pushed"));
        check(&mut doc, &mut cache);
        for entry in &mut doc.micro_tasks {
            entry.name.push('!');
        }
        check(&mut doc, &mut cache);

        // A clone changed and saved through the same cache, then the original again.
        let mut copy = doc.clone();
        copy.micro_tasks[1].name = "only in the copy".into();
        check(&mut copy, &mut cache);
        check(&mut doc, &mut cache);

        // Another cache takes the record between two saves through the first.
        doc.micro_tasks[2].status = MTStatus::Skipped;
        check(&mut doc, &mut other);
        doc.micro_tasks[3].status = MTStatus::Failed;
        check(&mut doc, &mut cache);
        check(&mut doc, &mut other);

        // Fewer entries than the cache holds.
        doc.micro_tasks.truncate(1);
        check(&mut doc, &mut cache);
    }
}
