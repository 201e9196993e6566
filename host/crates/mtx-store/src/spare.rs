//! Spare inodes: empty files and directories a thread of their own makes ahead of time.
//!
//! Creating a file or a directory is the dearest thing an iteration asks of the filesystem:
//! on this project's CI machines (ext4 on a virtual disk) 0.3 to 0.9 ms of kernel time each,
//! against 20 to 50 us for a rename, a hard link or the overwrite of an existing file, and
//! an iteration creates about ten (three artifacts with their sidecars, the step directory
//! and its files). A running job's journal takes its new files and directories from a pool
//! instead: a spare file comes open, is written through its handle where it lies and renamed
//! straight to its final name (one rename, no open, no temp name in the target directory); a
//! spare directory is renamed to the directory's name. The pool's thread makes new ones while
//! the loop waits for the model, off the loop's path. (PostgreSQL recycles its WAL segment
//! files for the same reason.) An empty pool is never an error: the writer creates the file
//! itself, as it would without one.
//!
//! Spares are named by nothing outside the pool's directory; whatever a crash leaves there (an
//! empty spare, or one written but not yet renamed) is removed when the next pool starts
//! there, and a pool removes its directory (and an empty parent) when it stops.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Spare files a pool keeps ready.
const FILES: usize = 32;
/// Spare directories a pool keeps ready.
const DIRS: usize = 4;
/// Where the pool's thread makes a spare before it moves it among the ready ones.
const MAKING: &str = ".making";

/// A pool of spare inodes in one directory (on the filesystem of the files it serves).
#[derive(Debug)]
pub struct SparePool {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: Mutex<Spares>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Spares {
    files: Vec<SpareFile>,
    dirs: Vec<PathBuf>,
    next: u64,
    stop: bool,
}

/// An empty file of the pool, open for writing; [`SpareFile::install`] gives it its name.
#[derive(Debug)]
pub struct SpareFile {
    file: File,
    path: PathBuf,
}

impl SpareFile {
    /// Writes `bytes` and renames the file to `to` (replacing what is there), unsynced. On
    /// an error the spare is removed and nothing under `to` changed.
    pub fn install(mut self, to: &Path, bytes: &[u8]) -> io::Result<()> {
        let written = self.file.write_all(bytes);
        drop(self.file);
        let result = written.and_then(|()| fs::rename(&self.path, to));
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Spares> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SparePool {
    /// Starts a pool in `dir` (created if missing, emptied of what an earlier pool left).
    pub fn start(dir: &Path) -> io::Result<SparePool> {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(dir.join(MAKING))?;
        let shared = Arc::new(Shared { dir: dir.to_owned(), state: Mutex::default(), wake: Condvar::new() });
        let filler = Arc::clone(&shared);
        let worker =
            std::thread::Builder::new().name("mtx-spare-inodes".into()).spawn(move || fill(&filler))?;
        Ok(SparePool { shared, worker: Some(worker) })
    }

    /// A spare empty file, open for writing, on the filesystem of the pool's directory;
    /// `None` when there is none to give.
    pub fn take_file(&self) -> Option<SpareFile> {
        let spare = self.shared.lock().files.pop();
        self.shared.wake.notify_one();
        spare
    }

    /// Waits (up to five seconds) until the pool holds `files` spare files.
    #[cfg(test)]
    pub(crate) fn wait_for_files(&self, files: usize) -> bool {
        for _ in 0..500 {
            if self.shared.lock().files.len() >= files {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// Whether `e`, from moving a spare where it was wanted, says the filesystem refuses
    /// such moves (no `RENAME_NOREPLACE`, another device); if so the pool stops making
    /// spares, since it will not take the next one either.
    pub fn refused(&self, e: &io::Error) -> bool {
        let refused = matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EXDEV));
        if refused {
            self.shared.lock().stop = true;
            self.shared.wake.notify_one();
        }
        refused
    }

    /// Moves a spare empty directory to `to` (whose parent exists); `false` when there is
    /// none to give, `to` exists, or it cannot move there.
    pub fn take_dir(&self, to: &Path) -> bool {
        let Some(spare) = self.shared.lock().dirs.pop() else { return false };
        match crate::fsutil::rename_noreplace(&spare, to) {
            Ok(()) => {
                self.shared.wake.notify_one();
                true
            }
            // `to` exists: the spare stays for the next taker.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.shared.lock().dirs.push(spare);
                false
            }
            Err(e) => {
                tracing::debug!(to = %to.display(), error = %e, "spare directory not used");
                let _ = fs::remove_dir(&spare);
                self.refused(&e);
                self.shared.wake.notify_one();
                false
            }
        }
    }
}

/// The pool's thread: keeps [`FILES`] files and [`DIRS`] directories ready until stopped.
fn fill(shared: &Shared) {
    loop {
        let (want_dir, n) = {
            let mut s = shared.lock();
            while !s.stop && s.files.len() >= FILES && s.dirs.len() >= DIRS {
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.next += 1;
            (s.dirs.len() < DIRS, s.next)
        };
        // Made in a directory of its own, then moved among the ready ones: a creation holds
        // its directory's lock for as long as it takes, and a taker must not wait for it.
        let name = format!("{}{n}", if want_dir { "d" } else { "f" });
        let (new, path) = (shared.dir.join(MAKING).join(&name), shared.dir.join(&name));
        let made = if want_dir {
            fs::create_dir(&new).map(|()| None)
        } else {
            fs::OpenOptions::new().write(true).create_new(true).open(&new).map(Some)
        };
        let made = made.and_then(|file| fs::rename(&new, &path).map(|()| file));
        let file = match made {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "spare inode pool stops");
                return;
            }
        };
        let mut s = shared.lock();
        match file {
            Some(file) => s.files.push(SpareFile { file, path }),
            None => s.dirs.push(path),
        }
    }
}

impl Drop for SparePool {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        if let Err(e) = fs::remove_dir_all(&self.shared.dir) {
            tracing::debug!(dir = %self.shared.dir.display(), error = %e, "spare inode pool not removed");
        }
        // `spare/` itself goes with the last pool (another job's keeps it).
        if let Some(parent) = self.shared.dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(pool: &SparePool, files: usize, dirs: usize) {
        for _ in 0..500 {
            let s = pool.shared.lock();
            if s.files.len() >= files && s.dirs.len() >= dirs {
                return;
            }
            drop(s);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the pool never filled");
    }

    #[test]
    fn spares_move_into_place_empty_and_the_pool_refills_and_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let spares = root.path().join("spare/J1");
        std::fs::create_dir_all(&spares).unwrap();
        std::fs::write(spares.join("f7"), b"left by a crash").unwrap();
        let pool = SparePool::start(&spares).unwrap();
        wait_for(&pool, FILES, DIRS);
        assert!(!spares.join("f7").exists() || std::fs::read(spares.join("f7")).unwrap().is_empty());

        let file = root.path().join("out/x.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let spare = pool.take_file().expect("a spare file");
        assert_eq!(std::fs::read(&spare.path).unwrap(), b"", "a spare file is empty");
        spare.install(&file, b"first").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"first");
        pool.take_file().unwrap().install(&file, b"second").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"second", "an existing file is replaced whole");
        let spare = pool.take_file().unwrap();
        let left = spare.path.clone();
        let err = spare.install(&root.path().join("missing/x.json"), b"lost").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(!left.exists(), "a spare that could not be installed is removed");
        assert_eq!(std::fs::read(&file).unwrap(), b"second");
        let dir = root.path().join("out/step");
        assert!(pool.take_dir(&dir));
        assert!(dir.is_dir() && std::fs::read_dir(&dir).unwrap().next().is_none());
        assert!(!pool.take_dir(&dir), "an existing name is never replaced");
        assert!(dir.is_dir());
        wait_for(&pool, FILES, DIRS);

        drop(pool);
        assert!(!spares.exists(), "a stopped pool removes its directory");
        assert!(!root.path().join("spare").exists(), "and the empty directory of pools");
        assert!(file.is_file() && dir.is_dir(), "what was taken stays");
    }
}
