//! The state directory: what lets a rerun continue where a crash, `kill -9`
//! or Ctrl-C stopped. It holds partial downloads (their bytes, verified
//! offset and hash state) and open upload sessions, under a lock so that two
//! runs never share it.
//!
//! ```text
//! STATE_DIR/
//!   lock                      flock held for the run; holds the owner's pid
//!   downloads/<alg>-<hex>.data, .json   partial downloads (see spool.rs)
//!   uploads/<key>.json        open upload sessions (see uploads.rs)
//! ```

pub mod spool;
pub mod uploads;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

pub use spool::{Spool, Spools};
pub use uploads::{UploadJournal, UploadRecord};

/// Blobs at least this large are kept on disk while they stream, so a
/// rerun need not fetch them again; smaller ones just start over.
pub const DEFAULT_SPOOL_THRESHOLD: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state directory {} is in use by another mirror run{holder}; wait for it to finish, or give this run its own --state-dir",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },

    #[error("state directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An open, locked state directory. The lock is released on drop (and by
/// the kernel when the process dies, so a `kill -9` leaves no stale lock).
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    _lock: File,
    spools: Spools,
    uploads: UploadJournal,
}

impl StateDir {
    /// Open (creating it) and lock the directory; fails at once with
    /// [`StateError::Locked`] when another run holds it.
    pub fn open(root: &Path, spool_threshold: u64) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: root.to_path_buf(),
            source,
        };
        create_private_dir(root).map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join("lock"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                let holder = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(StateError::Locked {
                    path: root.to_path_buf(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;

        let downloads = root.join("downloads");
        let uploads = root.join("uploads");
        create_private_dir(&downloads).map_err(io)?;
        create_private_dir(&uploads).map_err(io)?;
        prune(&downloads);
        prune(&uploads);
        Ok(StateDir {
            root: root.to_path_buf(),
            _lock: lock,
            spools: Spools::new(downloads, spool_threshold),
            uploads: UploadJournal::new(uploads),
        })
    }

    /// `$XDG_STATE_HOME/mirror`, else `~/.local/state/mirror`, else a
    /// directory under the system's temporary directory.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir).join("mirror");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/state/mirror");
        }
        std::env::temp_dir().join("mirror-state")
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn spools(&self) -> &Spools {
        &self.spools
    }

    pub fn uploads(&self) -> &UploadJournal {
        &self.uploads
    }
}

/// State untouched this long belongs to a run nobody repeated: a partial
/// download of an image no longer wanted, a session the registry has long
/// expired. It is removed when a directory is opened.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            tracing::info!(path = %entry.path().display(), "removing stale state");
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The state holds upload locations and image bytes: the owner's only.
fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Replace `path` with `bytes` atomically (write a sibling, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_naming_the_directory_and_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap();
        let err = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).expect("free again after drop");
    }

    #[test]
    fn state_untouched_for_a_week_is_pruned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        let old = dir.path().join("downloads/sha256-old.data");
        let fresh = dir.path().join("downloads/sha256-fresh.data");
        fs::write(&old, b"x").unwrap();
        fs::write(&fresh, b"x").unwrap();
        let long_ago = std::time::SystemTime::now() - STALE_AFTER * 2;
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        assert!(!old.exists());
        assert!(fresh.exists());
    }
}
