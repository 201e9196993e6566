//! Hash-chained, append-only JSON Lines: the on-disk mechanics shared by the run ledger
//! (MTX-SPEC 8.3) and the Flight Recorder (9.6 item 6).
//!
//! Every line is one compact JSON object whose first fields are `seq` (1-based,
//! consecutive) and `prev_hash` (lowercase hex SHA-256 of the previous line's bytes,
//! without its newline; 64 zeros for the first line), and whose last field is `hash`,
//! the SHA-256 of the line's own bytes with the `,"hash":"..."` member removed. The
//! self hash lets `verify` catch an edit of the final line, which no successor covers.
//!
//! An append is durable when it returns: the line and its newline go out in one
//! `write`, followed by `fdatasync`. A crash can therefore leave at most one torn final
//! line (no newline, or unparsable); `open` detects it and cuts it off, and the typed
//! layer above records the repair. Anything wrong before the last line is never repaired:
//! it is a broken chain. This module never rewrites or removes a complete record.
//!
//! A writer holds an exclusive `flock` on the file for as long as it is open, so a second
//! writer (say `mtx resume` while the job still runs) gets `Busy` instead of forking the
//! chain; the kernel drops the lock when a process dies. Readers take no lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtx_types::sha256_hex;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::failpoint::{failpoint, failpoint_with};
use crate::fsutil::sync_dir;
use crate::journal::Journal;

/// `prev_hash` of the first line.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One complete, verified line: `bytes[offset .. offset + len]` of the scanned buffer.
#[derive(Debug, Clone)]
pub struct ChainLine {
    pub seq: u64,
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// Length without the newline.
    pub len: usize,
    /// SHA-256 of the line bytes (what the next line's `prev_hash` names).
    pub line_hash: String,
}

impl ChainLine {
    pub fn bytes<'a>(&self, buffer: &'a [u8]) -> &'a [u8] {
        &buffer[self.offset as usize..self.offset as usize + self.len]
    }
}

/// A torn final line found and cut off by `open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub discarded_bytes: u64,
    pub discarded_sha256: String,
    pub reason: String,
}

/// The first defect of a chain, for `verify` and for the `ChainBroken` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDefect {
    /// 1-based line number.
    pub line: u64,
    /// The `seq` the line claims, when readable.
    pub seq: Option<u64>,
    pub message: String,
}

/// Result of reading a chain file without changing it.
#[derive(Debug, Default)]
pub struct ChainScan {
    pub lines: Vec<ChainLine>,
    pub torn: Option<TornTail>,
    pub defect: Option<ChainDefect>,
}

/// Checks every line of `bytes`; stops at the first defect.
///
/// The check is positional, without a JSON parse: `seal` always writes `seq` and
/// `prev_hash` first and `hash` last, and the self hash covers everything else, so any
/// change to a line's content shows up as a hash mismatch. The typed layers parse the
/// lines afterwards.
pub fn scan(bytes: &[u8]) -> ChainScan {
    let mut out = ChainScan::default();
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut offset = 0usize;
    let mut line_no = 0u64;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            out.torn = Some(torn(offset, rest, "final line has no newline"));
            return out;
        };
        let line = &rest[..nl];
        let is_last = offset + nl + 1 == bytes.len();
        match check_line(line, line_no, &prev_hash) {
            Ok(line_hash) => {
                out.lines.push(ChainLine {
                    seq: line_no,
                    offset: offset as u64,
                    len: nl,
                    line_hash: line_hash.clone(),
                });
                prev_hash = line_hash;
            }
            Err(LineError::Unparsable(msg)) if is_last => {
                out.torn = Some(torn(offset, &rest[..=nl], &format!("final line is unparsable: {msg}")));
                return out;
            }
            Err(LineError::Unparsable(message)) => {
                out.defect = Some(ChainDefect { line: line_no, seq: None, message });
                return out;
            }
            Err(LineError::Broken { seq, message }) => {
                out.defect = Some(ChainDefect { line: line_no, seq, message });
                return out;
            }
        }
        offset += nl + 1;
    }
    out
}

fn torn(offset: usize, bytes: &[u8], reason: &str) -> TornTail {
    TornTail {
        offset: offset as u64,
        discarded_bytes: bytes.len() as u64,
        discarded_sha256: sha256_hex(bytes),
        reason: reason.to_owned(),
    }
}

enum LineError {
    Unparsable(String),
    Broken { seq: Option<u64>, message: String },
}

fn is_hex64(b: &[u8]) -> bool {
    b.len() == 64 && b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Checks one line's framing, position and hashes; returns the line's hash.
fn check_line(line: &[u8], line_no: u64, prev_hash: &str) -> Result<String, LineError> {
    const SEQ: &[u8] = b"{\"seq\":";
    const PREV: &[u8] = b",\"prev_hash\":\"";
    const HASH: &[u8] = b",\"hash\":\"";
    let unparsable =
        |what: &str| LineError::Unparsable(format!("record does not have the chain framing ({what})"));
    let body = line.strip_prefix(SEQ).ok_or_else(|| unparsable("seq first"))?;
    let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq: u64 = std::str::from_utf8(&body[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| unparsable("seq is not a number"))?;
    let after_seq = body[digits..].strip_prefix(PREV).ok_or_else(|| unparsable("prev_hash second"))?;
    if after_seq.len() < 66 || !is_hex64(&after_seq[..64]) || after_seq[64] != b'"' {
        return Err(unparsable("prev_hash is not 64 hex characters"));
    }
    let stated_prev = &after_seq[..64];
    // `,"hash":"<64>"}` closes the line.
    let tail_len = HASH.len() + 64 + 2;
    if line.len() < tail_len || !line.ends_with(b"\"}") {
        return Err(unparsable("hash last"));
    }
    let tail = &line[line.len() - tail_len..];
    if !tail.starts_with(HASH) || !is_hex64(&tail[HASH.len()..HASH.len() + 64]) {
        return Err(unparsable("hash last"));
    }
    let stated = &tail[HASH.len()..HASH.len() + 64];
    let broken = |message: String| LineError::Broken { seq: Some(seq), message };
    if seq != line_no {
        return Err(broken(format!("seq is {seq}, expected {line_no}")));
    }
    if stated_prev != prev_hash.as_bytes() {
        return Err(broken(format!(
            "prev_hash {} does not match the previous record's hash {prev_hash}",
            String::from_utf8_lossy(stated_prev)
        )));
    }
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, &line[..line.len() - tail_len]);
    sha2::Digest::update(&mut hasher, b"}");
    let computed = hex::encode(sha2::Digest::finalize(hasher));
    if computed.as_bytes() != stated {
        return Err(broken(format!(
            "record content does not match its hash (stated {}, computed {computed})",
            String::from_utf8_lossy(stated)
        )));
    }
    Ok(sha256_hex(line))
}

/// The lines of a chain file, verified, as `open` returns them.
#[derive(Debug)]
pub struct OpenedChain {
    pub bytes: Vec<u8>,
    pub lines: Vec<ChainLine>,
    pub torn: Option<TornTail>,
}

/// Builds the line for `body` at position `seq` after `prev_hash`: its bytes, the record
/// they encode (the map a reader parses back from them, without parsing), and the SHA-256
/// of the whole line (the next line's `prev_hash`).
///
/// The record's `hash` covers the line without that member, and the next line's
/// `prev_hash` the line with it; both start with the same bytes (everything but the closing
/// brace), which are hashed once and the state copied for the two endings.
fn seal(seq: u64, prev_hash: &str, body: Map<String, Value>) -> (Vec<u8>, Map<String, Value>, String) {
    use sha2::{Digest, Sha256};
    let mut map = Map::with_capacity(body.len() + 3);
    map.insert("seq".into(), Value::from(seq));
    map.insert("prev_hash".into(), Value::from(prev_hash));
    for (k, v) in body {
        if k != "seq" && k != "prev_hash" && k != "hash" {
            map.insert(k, v);
        }
    }
    let mut line = Vec::with_capacity(1024);
    serde_json::to_writer(&mut line, &map).expect("JSON values serialise");
    line.pop(); // the closing brace; the hash member goes in its place
    let mut prefix = Sha256::new();
    prefix.update(&line);
    let hash = hex::encode(prefix.clone().chain_update(b"}").finalize());
    let start = line.len();
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    let line_hash = hex::encode(prefix.chain_update(&line[start..]).finalize());
    map.insert("hash".into(), Value::from(hash));
    (line, map, line_hash)
}

/// How long a writer waits for a lock held by someone else before reporting `Busy`.
///
/// A lock can outlive its writer for a moment: a process forked by another thread of the
/// same program (a verify command starting) shares the open file until it execs, and the
/// `flock` with it. A short wait tells that apart from a second writer that really runs.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        // SAFETY: flock on a file descriptor this function borrows for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(StoreError::io(path, err));
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Busy { path: path.to_owned() });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An open chain file positioned for appending.
#[derive(Debug)]
pub struct ChainFile {
    path: PathBuf,
    file: File,
    next_seq: u64,
    last_hash: String,
    len: u64,
    cap: u64,
    failpoint_prefix: &'static str,
    /// Bytes written by `append_all_deferred` and not yet synced.
    dirty: bool,
    /// The job's journal, once attached: appends go to it first and it is what a sync
    /// makes durable.
    journal: Option<Arc<Journal>>,
}

/// Where an appended line landed.
#[derive(Debug, Clone)]
pub struct Appended {
    pub seq: u64,
    pub offset: u64,
    /// The full record as written (with `seq`, `prev_hash` and `hash`).
    pub record: Map<String, Value>,
}

impl ChainFile {
    /// Creates a new, empty chain file; fails if it exists.
    pub fn create(path: &Path, cap: u64, failpoint_prefix: &'static str) -> Result<Self, StoreError> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        crate::fsutil::create_dir_durable(dir).map_err(|e| StoreError::io(dir, e))?;
        let file = OpenOptions::new().append(true).read(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::AlreadyExists { path: path.to_owned() }
            } else {
                StoreError::io(path, e)
            }
        })?;
        lock_exclusive(&file, path)?;
        // The new directory entry must survive a crash as well as the records.
        sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            next_seq: 1,
            last_hash: GENESIS_HASH.to_owned(),
            len: 0,
            cap,
            failpoint_prefix,
            dirty: false,
            journal: None,
        })
    }

    /// Opens an existing chain, verifies it, and cuts off a torn final line.
    pub fn open(
        path: &Path,
        cap: u64,
        failpoint_prefix: &'static str,
    ) -> Result<(Self, OpenedChain), StoreError> {
        let mut file =
            OpenOptions::new().append(true).read(true).open(path).map_err(|e| StoreError::io(path, e))?;
        lock_exclusive(&file, path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| StoreError::io(path, e))?;
        let scan = scan(&bytes);
        if let Some(d) = scan.defect {
            return Err(StoreError::ChainBroken { path: path.to_owned(), line: d.line, message: d.message });
        }
        let mut len = bytes.len() as u64;
        if let Some(t) = &scan.torn {
            file.set_len(t.offset).map_err(|e| StoreError::io(path, e))?;
            file.sync_all().map_err(|e| StoreError::io(path, e))?;
            len = t.offset;
        }
        let (next_seq, last_hash) = match scan.lines.last() {
            Some(l) => (l.seq + 1, l.line_hash.clone()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let chain = Self {
            path: path.to_owned(),
            file,
            next_seq,
            last_hash,
            len,
            cap,
            failpoint_prefix,
            dirty: false,
            journal: None,
        };
        Ok((chain, OpenedChain { bytes, lines: scan.lines, torn: scan.torn }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Makes everything written so far durable and writes without the journal from here on
    /// (its next checkpoint leaves this file out).
    pub fn detach_journal(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        if let Some(journal) = self.journal.take() {
            journal.detach_chain(&self.path)?;
        }
        Ok(())
    }

    /// Sends every later append through `journal` (see the journal's module documentation).
    /// Call it with everything written so far durable (right after `create` or `open`).
    pub fn attach_journal(&mut self, journal: Arc<Journal>) -> Result<(), StoreError> {
        self.sync()?;
        journal.attach_chain(&self.path, self.len)?;
        self.journal = Some(journal);
        Ok(())
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `body` as the next record and fsyncs it before returning.
    pub fn append(&mut self, body: Map<String, Value>) -> Result<Appended, StoreError> {
        let mut appended = self.append_all(vec![body])?;
        Ok(appended.pop().expect("one body gives one record"))
    }

    /// Appends several records with one write and one fsync; all or none are durable
    /// when it returns (a crash in between leaves whole records and at most one torn
    /// line, which `open` cuts off).
    pub fn append_all(&mut self, bodies: Vec<Map<String, Value>>) -> Result<Vec<Appended>, StoreError> {
        self.write_records(bodies, true)
    }

    /// Appends one record with one write and no fsync: it is visible to readers at once
    /// and durable at the next [`ChainFile::sync`] (or synced append). A crash of the
    /// process loses nothing; a power loss can lose the records written since the last
    /// sync, whole (the chain stays valid: at most a torn last line, cut on open).
    pub fn append_deferred(&mut self, body: Map<String, Value>) -> Result<Appended, StoreError> {
        let mut appended = self.write_records(vec![body], false)?;
        Ok(appended.pop().expect("one body gives one record"))
    }

    /// Makes every record written so far durable (one fdatasync, none when nothing is
    /// pending).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.dirty {
            match &self.journal {
                Some(journal) => journal.sync()?,
                None => self.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?,
            }
            self.dirty = false;
        }
        Ok(())
    }

    fn write_records(
        &mut self,
        bodies: Vec<Map<String, Value>>,
        sync: bool,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut buffer = Vec::new();
        let mut out = Vec::with_capacity(bodies.len());
        let mut last_hash = self.last_hash.clone();
        let count = bodies.len() as u64;
        for (i, body) in bodies.into_iter().enumerate() {
            let (line, record, line_hash) = seal(self.next_seq + i as u64, &last_hash, body);
            last_hash = line_hash;
            out.push(Appended {
                seq: self.next_seq + i as u64,
                offset: self.len + buffer.len() as u64,
                record,
            });
            buffer.extend_from_slice(&line);
            buffer.push(b'\n');
        }
        let new_len = self.len + buffer.len() as u64;
        if new_len > self.cap {
            return Err(StoreError::TooLarge { path: self.path.clone(), size: new_len, cap: self.cap });
        }
        let prefix = self.failpoint_prefix;
        failpoint(&format!("{prefix}.append.before"));
        let torn = format!("{prefix}.append.torn");
        if let Some(journal) = &self.journal {
            // The journal writes the file once the record is durable.
            journal.append_chain(&self.path, self.len, &buffer, Some(&torn))?;
            if sync {
                journal.sync()?;
            }
        } else {
            failpoint_with(&torn, || {
                let _ = self.file.write_all(&buffer[..buffer.len() / 2]);
                let _ = self.file.sync_data();
            });
            let written =
                self.file.write_all(&buffer).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
            if let Err(e) = written {
                // A partial write would leave a torn line that the next open cuts off; cut
                // it now so this handle stays consistent with the file.
                let _ = self.file.set_len(self.len);
                return Err(StoreError::io(&self.path, e));
            }
        }
        failpoint(&format!("{prefix}.append.after"));
        self.last_hash = last_hash;
        self.next_seq += count;
        self.len = new_len;
        self.dirty = !sync;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(n: u64) -> Map<String, Value> {
        json!({"kind": "test", "n": n}).as_object().unwrap().clone()
    }

    /// The two hashes `seal` derives from one pass are those of the two texts they name.
    #[test]
    fn a_sealed_line_carries_the_hash_of_itself_without_it_and_yields_its_own() {
        let long = "x".repeat(300);
        for (seq, prev) in [(0, String::new()), (7, "ab".repeat(32))] {
            let (line, record, line_hash) =
                seal(seq, &prev, json!({"k": long, "n": seq}).as_object().unwrap().clone());
            assert_eq!(line_hash, sha256_hex(&line));
            let hash = record["hash"].as_str().unwrap();
            let member = format!(",\"hash\":\"{hash}\"}}");
            let without = [&line[..line.len() - member.len()], b"}"].concat();
            assert_eq!(hash, sha256_hex(&without));
            let parsed: Map<String, Value> = serde_json::from_slice(&line).unwrap();
            assert_eq!(parsed, record);
        }
    }

    #[test]
    fn deferred_appends_are_visible_at_once_and_chain_with_synced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        c.append_deferred(body(1)).unwrap();
        assert!(c.dirty, "a deferred append waits for a sync");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1, "readers see it at once");
        c.append(body(2)).unwrap();
        assert!(!c.dirty, "a synced append syncs what was deferred before it");
        c.append_deferred(body(3)).unwrap();
        c.sync().unwrap();
        assert!(!c.dirty);
        drop(c);
        let (c, opened) = ChainFile::open(&path, u64::MAX, "test").unwrap();
        assert_eq!(opened.lines.len(), 3);
        assert_eq!(c.next_seq(), 4);
    }

    #[test]
    fn appended_lines_chain_and_reopen_at_the_next_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        let a = c.append(body(1)).unwrap();
        let b = c.append(body(2)).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.record["prev_hash"], GENESIS_HASH);
        let first_line = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
        assert_eq!(b.record["prev_hash"].as_str().unwrap(), sha256_hex(first_line.as_bytes()));
        assert_eq!(b.offset, first_line.len() as u64 + 1);
        drop(c);
        let (mut c, opened) = ChainFile::open(&path, u64::MAX, "test").unwrap();
        assert_eq!(opened.lines.len(), 2);
        assert!(opened.torn.is_none());
        let first: Value = serde_json::from_slice(opened.lines[0].bytes(&opened.bytes)).unwrap();
        assert_eq!(first["n"], 1);
        assert_eq!(c.append(body(3)).unwrap().seq, 3);
    }

    #[test]
    fn a_line_without_newline_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        c.append(body(1)).unwrap();
        let good_len = c.len();
        drop(c);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"prev").unwrap();
        let (_, opened) = ChainFile::open(&path, u64::MAX, "test").unwrap();
        assert_eq!(opened.lines.len(), 1);
        let torn = opened.torn.unwrap();
        assert_eq!(torn.offset, good_len);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn an_edited_middle_or_final_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        for n in 0..3 {
            c.append(body(n)).unwrap();
        }
        drop(c);
        let original = std::fs::read(&path).unwrap();
        for (needle, line) in [("\"n\":0", 1), ("\"n\":2", 3)] {
            let text =
                String::from_utf8(original.clone()).unwrap().replacen(needle, &needle.replace(':', ": "), 1);
            std::fs::write(&path, text).unwrap();
            match ChainFile::open(&path, u64::MAX, "test") {
                Err(StoreError::ChainBroken { line: l, .. }) => assert_eq!(l, line),
                other => panic!("expected a broken chain at line {line}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_returned_record_is_the_one_a_reader_parses_from_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        let body = json!({
            "kind": "test", "neg": -3, "big": u64::MAX, "float": 2.5, "whole": 2.0,
            "text": "é \u{1F600} \"quoted\"\n", "nested": {"b": [1, null, true], "a": {}},
            "seq": 99, "hash": "forged",
        });
        let appended = c.append(body.as_object().unwrap().clone()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let line = &bytes[appended.offset as usize..bytes.len() - 1];
        let parsed: Map<String, Value> = serde_json::from_slice(line).unwrap();
        assert_eq!(appended.record, parsed);
        assert_eq!(
            appended.record.keys().collect::<Vec<_>>(),
            parsed.keys().collect::<Vec<_>>(),
            "same member order"
        );
        assert_eq!(parsed["seq"], 1, "the chain's own members win over the body's");
        // The hash covers the line without its hash member: `,"hash":"<64 hex>"` is 74
        // bytes before the closing brace.
        let mut unsealed = line[..line.len() - 75].to_vec();
        unsealed.push(b'}');
        assert_eq!(parsed["hash"].as_str(), Some(sha256_hex(&unsealed).as_str()));
    }

    #[test]
    fn a_batch_is_chained_like_single_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        c.append(body(0)).unwrap();
        let batch = c.append_all(vec![body(1), body(2), body(3)]).unwrap();
        assert_eq!(batch.iter().map(|a| a.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(c.append(body(4)).unwrap().seq, 5);
        let s = scan(&std::fs::read(&path).unwrap());
        assert!(s.defect.is_none() && s.torn.is_none());
        assert_eq!(s.lines.len(), 5);
        assert_eq!(s.lines[2].offset, batch[1].offset);
    }

    #[test]
    fn a_second_writer_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let first = ChainFile::create(&path, u64::MAX, "test").unwrap();
        assert!(matches!(ChainFile::open(&path, u64::MAX, "test"), Err(StoreError::Busy { .. })));
        assert!(scan(&std::fs::read(&path).unwrap()).defect.is_none(), "readers need no lock");
        drop(first);
        ChainFile::open(&path, u64::MAX, "test").unwrap();
    }

    #[test]
    fn the_cap_refuses_an_append_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, 250, "test").unwrap();
        c.append(body(1)).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(c.append(body(2)), Err(StoreError::TooLarge { cap: 250, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
