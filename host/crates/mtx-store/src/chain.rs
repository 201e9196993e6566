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

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mtx_types::sha256_hex;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::failpoint::{failpoint, failpoint_with};
use crate::fsutil::sync_dir;

/// `prev_hash` of the first line.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One complete, verified line.
#[derive(Debug, Clone)]
pub struct ChainLine {
    pub seq: u64,
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// SHA-256 of the line bytes (what the next line's `prev_hash` names).
    pub line_hash: String,
    pub value: Map<String, Value>,
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
            Ok(value) => {
                let line_hash = sha256_hex(line);
                out.lines.push(ChainLine {
                    seq: line_no,
                    offset: offset as u64,
                    line_hash: line_hash.clone(),
                    value,
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

fn check_line(line: &[u8], line_no: u64, prev_hash: &str) -> Result<Map<String, Value>, LineError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| LineError::Unparsable(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(LineError::Unparsable("record is not a JSON object".into()));
    };
    let seq = map.get("seq").and_then(Value::as_u64);
    let broken = |message: String| LineError::Broken { seq, message };
    if seq != Some(line_no) {
        return Err(broken(format!("seq is {seq:?}, expected {line_no}")));
    }
    match map.get("prev_hash").and_then(Value::as_str) {
        Some(p) if p == prev_hash => {}
        Some(p) => {
            return Err(broken(format!(
                "prev_hash {p} does not match the previous record's hash {prev_hash}"
            )));
        }
        None => return Err(broken("prev_hash is missing".into())),
    }
    let Some(stated) = map.get("hash").and_then(Value::as_str) else {
        return Err(broken("hash is missing".into()));
    };
    let suffix = format!(",\"hash\":\"{stated}\"}}");
    let computed = line
        .strip_suffix(suffix.as_bytes())
        .map(|body| {
            let mut unsealed = body.to_vec();
            unsealed.push(b'}');
            sha256_hex(&unsealed)
        })
        .ok_or_else(|| broken("hash is not the last member of the record".into()))?;
    if computed != stated {
        return Err(broken(format!(
            "record content does not match its hash (stated {stated}, computed {computed})"
        )));
    }
    Ok(map)
}

/// Builds the bytes of the line for `body` at position `seq` after `prev_hash`.
fn seal(seq: u64, prev_hash: &str, body: &Map<String, Value>) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("seq".into(), Value::from(seq));
    map.insert("prev_hash".into(), Value::from(prev_hash));
    for (k, v) in body {
        if k != "seq" && k != "prev_hash" && k != "hash" {
            map.insert(k.clone(), v.clone());
        }
    }
    let mut unsealed = serde_json::to_vec(&Value::Object(map)).expect("JSON values serialise");
    let hash = sha256_hex(&unsealed);
    unsealed.pop(); // the closing brace; the hash member goes in its place
    unsealed.extend_from_slice(format!(",\"hash\":\"{hash}\"}}").as_bytes());
    unsealed
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
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let file = OpenOptions::new().append(true).read(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::AlreadyExists { path: path.to_owned() }
            } else {
                StoreError::io(path, e)
            }
        })?;
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
        })
    }

    /// Opens an existing chain, verifies it, and cuts off a torn final line.
    pub fn open(
        path: &Path,
        cap: u64,
        failpoint_prefix: &'static str,
    ) -> Result<(Self, Vec<ChainLine>, Option<TornTail>), StoreError> {
        let mut file =
            OpenOptions::new().append(true).read(true).open(path).map_err(|e| StoreError::io(path, e))?;
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
        let chain = Self { path: path.to_owned(), file, next_seq, last_hash, len, cap, failpoint_prefix };
        Ok((chain, scan.lines, scan.torn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `body` as the next record and fsyncs it before returning.
    pub fn append(&mut self, body: &Map<String, Value>) -> Result<Appended, StoreError> {
        let mut line = seal(self.next_seq, &self.last_hash, body);
        line.push(b'\n');
        let new_len = self.len + line.len() as u64;
        if new_len > self.cap {
            return Err(StoreError::TooLarge { path: self.path.clone(), size: new_len, cap: self.cap });
        }
        let prefix = self.failpoint_prefix;
        failpoint(&format!("{prefix}.append.before"));
        failpoint_with(&format!("{prefix}.append.torn"), || {
            let _ = self.file.write_all(&line[..line.len() / 2]);
            let _ = self.file.sync_data();
        });
        let written = self.file.write_all(&line).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // A partial write would leave a torn line that the next open cuts off; cut it
            // now so this handle stays consistent with the file.
            let _ = self.file.set_len(self.len);
            return Err(StoreError::io(&self.path, e));
        }
        failpoint(&format!("{prefix}.append.after"));
        let record = match serde_json::from_slice(&line[..line.len() - 1]) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("a sealed record is a JSON object"),
        };
        let appended = Appended { seq: self.next_seq, offset: self.len, record };
        self.last_hash = sha256_hex(&line[..line.len() - 1]);
        self.next_seq += 1;
        self.len = new_len;
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(n: u64) -> Map<String, Value> {
        json!({"kind": "test", "n": n}).as_object().unwrap().clone()
    }

    #[test]
    fn appended_lines_chain_and_reopen_at_the_next_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        let a = c.append(&body(1)).unwrap();
        let b = c.append(&body(2)).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.record["prev_hash"], GENESIS_HASH);
        let first_line = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
        assert_eq!(b.record["prev_hash"].as_str().unwrap(), sha256_hex(first_line.as_bytes()));
        assert_eq!(b.offset, first_line.len() as u64 + 1);
        drop(c);
        let (mut c, lines, torn) = ChainFile::open(&path, u64::MAX, "test").unwrap();
        assert_eq!(lines.len(), 2);
        assert!(torn.is_none());
        assert_eq!(c.append(&body(3)).unwrap().seq, 3);
    }

    #[test]
    fn a_line_without_newline_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        c.append(&body(1)).unwrap();
        let good_len = c.len();
        drop(c);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"prev").unwrap();
        let (_, lines, torn) = ChainFile::open(&path, u64::MAX, "test").unwrap();
        assert_eq!(lines.len(), 1);
        let torn = torn.unwrap();
        assert_eq!(torn.offset, good_len);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn an_edited_middle_or_final_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, u64::MAX, "test").unwrap();
        for n in 0..3 {
            c.append(&body(n)).unwrap();
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
    fn the_cap_refuses_an_append_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut c = ChainFile::create(&path, 250, "test").unwrap();
        c.append(&body(1)).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(c.append(&body(2)), Err(StoreError::TooLarge { cap: 250, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
