//! `plugin_inputs.jsonl`: the canonical inputs of a job's plugin calls that are too large
//! to keep inline in the run ledger.
//!
//! The ledger records every plugin call with its input so `mtx replay` can re-run it
//! (MTX-SPEC 10.4), and 11.4 caps the ledger at 50 MB. An escalation policy's input carries
//! the MT's whole history, so inline inputs would fill the ledger long before a long job
//! ends. A large input goes here instead, one line of canonical JSON per call, and the
//! ledger record names its offset and length; the record's `input_hash` still covers the
//! bytes, so a reader checks what it reads.
//!
//! Appends are not synced one by one: the job syncs this file at each barrier, before the
//! ledger, so a ledger record that is durable never names input bytes that are not.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::journal::Journal;

/// File name of the pack in the job directory.
pub const INPUT_PACK_FILE: &str = "plugin_inputs.jsonl";

/// Where one input lives in the pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub file: String,
    pub offset: u64,
    pub bytes: u64,
}

/// The open pack of one job.
#[derive(Debug)]
pub struct InputPack {
    path: PathBuf,
    file: File,
    len: u64,
    dirty: bool,
    journal: Option<Arc<Journal>>,
}

impl InputPack {
    /// Opens (or creates) the pack in `job_root` for appending.
    pub fn open(job_root: &Path) -> Result<Self, StoreError> {
        let path = job_root.join(INPUT_PACK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        Ok(InputPack { path, file, len, dirty: false, journal: None })
    }

    /// Appends one canonical JSON input (which holds no raw newline) and returns where it is.
    pub fn append(&mut self, input: &str) -> Result<InputRef, StoreError> {
        let mut line = Vec::with_capacity(input.len() + 1);
        line.extend_from_slice(input.as_bytes());
        line.push(b'\n');
        match &self.journal {
            Some(journal) => journal.append_chain(&self.path, self.len, &line, None)?,
            None => self.file.write_all(&line).map_err(|e| StoreError::io(&self.path, e))?,
        }
        let at = InputRef { file: INPUT_PACK_FILE.into(), offset: self.len, bytes: input.len() as u64 };
        self.len += line.len() as u64;
        self.dirty = true;
        Ok(at)
    }

    /// Sends every later append through the job's journal (`crate::journal`).
    pub fn attach_journal(&mut self, journal: Arc<Journal>) -> Result<(), StoreError> {
        self.sync()?;
        journal.attach_chain(&self.path, self.len)?;
        self.journal = Some(journal);
        Ok(())
    }

    /// Makes every input so far durable and writes without the journal from here on.
    pub fn detach_journal(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        if let Some(journal) = self.journal.take() {
            journal.detach_chain(&self.path)?;
        }
        Ok(())
    }

    /// Makes every input appended so far durable (none to do when nothing is pending).
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
}

/// Reads the input `at` names from the pack of the job in `job_root`.
pub fn read_input(job_root: &Path, at: &InputRef) -> Result<String, StoreError> {
    if at.file != INPUT_PACK_FILE {
        return Err(StoreError::invalid("input reference", format!("unknown file {:?}", at.file)));
    }
    let path = job_root.join(INPUT_PACK_FILE);
    let mut file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
    if at.offset.checked_add(at.bytes).is_none_or(|end| end > len) {
        return Err(StoreError::corrupt(
            &path,
            format!("input at {}+{} is past the end ({len} bytes)", at.offset, at.bytes),
        ));
    }
    file.seek(SeekFrom::Start(at.offset)).map_err(|e| StoreError::io(&path, e))?;
    let mut buf = vec![0u8; at.bytes as usize];
    file.read_exact(&mut buf).map_err(|e| StoreError::io(&path, e))?;
    String::from_utf8(buf).map_err(|e| StoreError::corrupt(&path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_read_back_from_their_references_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut pack = InputPack::open(dir.path()).unwrap();
        let a = pack.append(r#"{"a":1}"#).unwrap();
        let b = pack.append(r#"{"history":["x\ny"]}"#).unwrap();
        pack.sync().unwrap();
        drop(pack);
        let mut pack = InputPack::open(dir.path()).unwrap();
        let c = pack.append(r#"{"c":3}"#).unwrap();
        assert_eq!(read_input(dir.path(), &a).unwrap(), r#"{"a":1}"#);
        assert_eq!(read_input(dir.path(), &b).unwrap(), r#"{"history":["x\ny"]}"#);
        assert_eq!(read_input(dir.path(), &c).unwrap(), r#"{"c":3}"#);
        assert_eq!(c.offset, a.bytes + 1 + b.bytes + 1);
        let past = InputRef { offset: c.offset, bytes: 100, ..c.clone() };
        assert!(matches!(read_input(dir.path(), &past), Err(StoreError::StateCorruption { .. })));
        let other = InputRef { file: "../job.json".into(), ..c };
        assert!(read_input(dir.path(), &other).is_err());
    }
}
