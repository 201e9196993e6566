//! Content-addressed artifact store (MTX-SPEC 10.7, 8.1).
//!
//! Blobs live at `sha256/<hh>/<hash>` with a sidecar `<hash>.meta.json`. Blobs are
//! write-once: a second `put` of the same bytes returns a handle to the existing blob.
//! The store never deletes or rewrites a blob.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtx_types::{ArtifactHandle, now_rfc3339, sha256_hex};
use serde::{Deserialize, Serialize};

pub use crate::error::StoreError;
use crate::fsutil::{Content, WriteGroup};
use crate::journal::Journal;

/// Sidecar metadata of an artifact (MTX-SPEC 10.7 item 3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// What the bytes are: `prompt`, `model_response`, `stdout`, `stderr`,
    /// `terminal_output`, `context_snapshot`, `escalation_record`, ...
    pub kind: String,
    /// Who produced it: `host`, `engine.shell`, a plugin name, ...
    pub producer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    #[serde(default)]
    pub input_hashes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determinism: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Filled by the store.
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub artifact_id: String,
}

/// A content-addressed store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    /// The running job's journal: `put` goes through it (`crate::journal`).
    journal: Option<Arc<Journal>>,
}

impl ArtifactStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("sha256")).map_err(|e| StoreError::io(root, e))?;
        Ok(Self { root: root.to_owned(), journal: None })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This store with `put` going through `journal`.
    pub fn with_journal(mut self, journal: Option<Arc<Journal>>) -> Self {
        self.journal = journal;
        self
    }

    fn rel_path(hash: &str) -> String {
        format!("sha256/{}/{}", &hash[..2], hash)
    }

    /// Stores `bytes` (write-once) and its sidecar; returns the handle.
    pub fn put(&self, bytes: &[u8], meta: ArtifactMeta) -> Result<ArtifactHandle, StoreError> {
        let mut group = WriteGroup::default();
        let handle = self.stage(&mut group, bytes, meta)?;
        group.commit_in(self.journal.as_deref())?;
        Ok(handle)
    }

    /// Adds `bytes` and its sidecar to `group` (nothing when the store or the group already
    /// holds them) and returns the handle they will have once the group is committed. The
    /// caller commits the group before anything durable names the handle.
    pub fn stage(
        &self,
        group: &mut WriteGroup,
        bytes: &[u8],
        mut meta: ArtifactMeta,
    ) -> Result<ArtifactHandle, StoreError> {
        let hash = sha256_hex(bytes);
        let rel = Self::rel_path(&hash);
        let blob = self.root.join(&rel);
        let sidecar = self.root.join(format!("{rel}.meta.json"));
        let mut staged = group.bytes_of(&sidecar).map(<[u8]>::to_vec);
        if let (None, Some(journal)) = (&staged, &self.journal) {
            // Or a group the journal holds until its next sync (and the files of earlier
            // syncs in place, for the reads below).
            staged = journal.staged_bytes(&sidecar)?;
        }
        if let Some(staged) = staged.as_deref() {
            let existing: ArtifactMeta = serde_json::from_slice(staged)
                .map_err(|e| StoreError::BadMeta { path: rel.clone(), message: e.to_string() })?;
            return Ok(handle_from_meta(&rel, &existing));
        }
        // The blob goes in before its sidecar: without the blob there is no sidecar to
        // read (a new artifact, the common case, costs one lookup).
        let blob_exists = blob.exists();
        if blob_exists && let Some(existing) = self.read_meta_if_present(&rel)? {
            // Same bytes already stored: content addressing makes the first sidecar
            // authoritative; the handle keeps its original artifact id.
            return Ok(handle_from_meta(&rel, &existing));
        }
        meta.sha256 = hash;
        meta.size_bytes = bytes.len() as u64;
        meta.created_at = now_rfc3339();
        meta.artifact_id = uuid::Uuid::now_v7().to_string();
        let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
        // The blob first, then its sidecar; a crash in between leaves a blob without a
        // sidecar, which the next put completes.
        let dir = blob.parent().unwrap_or(&self.root);
        if !blob_exists {
            group.add(dir, file_name_of(&blob), &Content::Bytes(bytes));
        }
        group.add(dir, file_name_of(&sidecar), &Content::Bytes(&json));
        Ok(handle_from_meta(&rel, &meta))
    }

    fn read_meta_if_present(&self, rel: &str) -> Result<Option<ArtifactMeta>, StoreError> {
        let sidecar = self.root.join(format!("{rel}.meta.json"));
        match fs::read(&sidecar) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::BadMeta { path: rel.to_owned(), message: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&sidecar, e)),
        }
    }

    fn checked_path(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let ok = rel.starts_with("sha256/")
            && !rel.split('/').any(|c| c == ".." || c.is_empty())
            && !rel.contains('\\');
        if !ok {
            return Err(StoreError::BadPath(rel.to_owned()));
        }
        Ok(self.root.join(rel))
    }

    /// Where the blob of `handle` lives (for linking it into a step directory).
    pub fn blob_path(&self, handle: &ArtifactHandle) -> Result<PathBuf, StoreError> {
        self.checked_path(&handle.path)
    }

    /// Waits until the files the journal holds for this store are in place
    /// ([`Journal::settle`]); a store without a journal has nothing to wait for.
    fn settled(&self) -> Result<(), StoreError> {
        self.journal.as_deref().map_or(Ok(()), Journal::settle)
    }

    /// Reads an artifact and checks its bytes against the handle's hash.
    pub fn get(&self, handle: &ArtifactHandle) -> Result<Vec<u8>, StoreError> {
        let path = self.checked_path(&handle.path)?;
        self.settled()?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(handle.path.clone()));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != handle.sha256 {
            return Err(StoreError::HashMismatch {
                path: handle.path.clone(),
                expected: handle.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The sidecar metadata of an artifact.
    pub fn meta(&self, handle: &ArtifactHandle) -> Result<ArtifactMeta, StoreError> {
        self.checked_path(&handle.path)?;
        self.settled()?;
        self.read_meta_if_present(&handle.path)?
            .ok_or_else(|| StoreError::Missing(format!("{}.meta.json", handle.path)))
    }

    /// Re-hashes the blob behind `handle` and checks the sidecar agrees with it.
    pub fn verify(&self, handle: &ArtifactHandle) -> Result<(), StoreError> {
        self.get(handle)?;
        let meta = self.meta(handle)?;
        if meta.sha256 != handle.sha256 {
            return Err(StoreError::BadMeta {
                path: handle.path.clone(),
                message: format!(
                    "sidecar names sha256 {} but the handle names {}",
                    meta.sha256, handle.sha256
                ),
            });
        }
        Ok(())
    }

    /// Every stored blob, re-hashed; returns the paths whose bytes no longer match their name.
    pub fn verify_all(&self) -> Result<Vec<String>, StoreError> {
        let mut bad = Vec::new();
        let base = self.root.join("sha256");
        let Ok(dirs) = fs::read_dir(&base) else { return Ok(bad) };
        for dir in dirs.flatten() {
            let Ok(files) = fs::read_dir(dir.path()) else { continue };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".meta.json") || name.starts_with('.') {
                    continue;
                }
                let bytes = fs::read(file.path()).map_err(|e| StoreError::io(&file.path(), e))?;
                if sha256_hex(&bytes) != name {
                    bad.push(Self::rel_path(&name));
                }
            }
        }
        bad.sort();
        Ok(bad)
    }
}

fn handle_from_meta(rel: &str, meta: &ArtifactMeta) -> ArtifactHandle {
    ArtifactHandle {
        artifact_id: meta.artifact_id.clone(),
        path: rel.to_owned(),
        sha256: meta.sha256.clone(),
        size_bytes: Some(meta.size_bytes),
        media_type: meta.media_type.clone(),
    }
}

/// The last component of a path inside the store (always a plain file name).
fn file_name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str) -> ArtifactMeta {
        ArtifactMeta { kind: kind.into(), producer: "test".into(), ..Default::default() }
    }

    #[test]
    fn put_then_get_round_trips_and_is_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let a = store.put(b"hello", meta("stdout")).unwrap();
        let b = store.put(b"hello", meta("stdout")).unwrap();
        assert_eq!(a, b, "same bytes give the same handle");
        assert_eq!(store.get(&a).unwrap(), b"hello");
        assert_eq!(a.sha256, sha256_hex(b"hello"));
        assert_eq!(store.meta(&a).unwrap().kind, "stdout");
        store.verify(&a).unwrap();
    }

    #[test]
    fn a_staged_artifact_appears_only_when_its_group_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut group = WriteGroup::default();
        let a = store.stage(&mut group, b"response text", meta("model_response")).unwrap();
        // The same bytes again in the same group: the same handle, one blob.
        let again = store.stage(&mut group, b"response text", meta("model_response")).unwrap();
        assert_eq!(a, again);
        assert!(matches!(store.get(&a), Err(StoreError::Missing(_))), "nothing is visible before the commit");
        // A step file in another directory shares the staged blob's bytes.
        let step = dir.path().join("step");
        group.add(&step, "response.txt", &Content::SameAs(&store.blob_path(&a).unwrap()));
        group.commit().unwrap();
        assert_eq!(store.get(&a).unwrap(), b"response text");
        assert_eq!(store.meta(&a).unwrap().artifact_id, a.artifact_id);
        assert_eq!(std::fs::read(step.join("response.txt")).unwrap(), b"response text");
        // Stored bytes staged in a later group are not written again.
        let mut later = WriteGroup::default();
        assert_eq!(store.stage(&mut later, b"response text", meta("other")).unwrap(), a);
        assert!(later.is_empty());
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let h = store.put(b"evidence", meta("stdout")).unwrap();
        std::fs::write(dir.path().join(&h.path), b"evidencf").unwrap();
        assert!(matches!(store.get(&h), Err(StoreError::HashMismatch { .. })));
        assert_eq!(store.verify_all().unwrap(), vec![h.path.clone()]);
    }

    #[test]
    fn handles_with_escaping_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let h = ArtifactHandle {
            artifact_id: "x".into(),
            path: "sha256/../../etc/passwd".into(),
            sha256: "0".repeat(64),
            size_bytes: None,
            media_type: None,
        };
        assert!(matches!(store.get(&h), Err(StoreError::BadPath(_))));
    }
}
