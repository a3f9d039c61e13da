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
//!
//! The directory and its parts must be the user's own: a real directory
//! (no symbolic link), owned by the user running mirror and writable by no
//! one else; mirror creates them with mode 0700 and refuses others. Its
//! files are opened without following symbolic links (see private.rs).

pub mod private;
pub mod spool;
pub mod uploads;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

pub use private::UnsafeDir;
use private::{ensure_private_dir, PrivateDirError};
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

    /// A link, another user's directory, or one others can write to.
    #[error(transparent)]
    Unsafe(#[from] UnsafeDir),
}

/// How a user picks another state directory, for the messages.
pub const CHOOSE_STATE_DIR: &str = "Choose another with --state-dir DIR (mirror copy, export and import also read MIRROR_STATE_DIR)";

/// A directory of the state, made private or refused.
fn private_dir(path: &Path) -> Result<(), StateError> {
    ensure_private_dir(path, "the state directory", CHOOSE_STATE_DIR).map_err(|e| match e {
        PrivateDirError::Unsafe(u) => StateError::Unsafe(u),
        PrivateDirError::Io { path, source } => StateError::Io { path, source },
    })
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
    /// Open (creating it, mode 0700) and lock the directory; fails at once
    /// with [`StateError::Locked`] when another run holds it, and with
    /// [`StateError::Unsafe`] when it is a symbolic link, another user's, or
    /// writable by group or others.
    pub fn open(root: &Path, spool_threshold: u64) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: root.to_path_buf(),
            source,
        };
        private_dir(root)?;
        let lock_path = root.join("lock");
        let mut lock = private::open_regular(
            &lock_path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
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
        private_dir(&downloads)?;
        private_dir(&uploads)?;
        prune(&downloads);
        prune(&uploads);
        Ok(StateDir {
            root: root.to_path_buf(),
            _lock: lock,
            spools: Spools::new(downloads, spool_threshold),
            uploads: UploadJournal::new(uploads),
        })
    }

    /// `$XDG_STATE_HOME/mirror`, else `~/.local/state/mirror`, else
    /// `mirror-state-<uid>` under the system's temporary directory: one per
    /// user, since that one is shared ([`StateDir::open`] makes it 0700 and
    /// refuses one another user made first).
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir).join("mirror");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/state/mirror");
        }
        std::env::temp_dir().join(shared_name("mirror-state"))
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

/// `stem-<uid>`: a name of this user's own in a directory all users share.
pub fn shared_name(stem: &str) -> String {
    #[cfg(unix)]
    {
        format!("{stem}-{}", private::euid())
    }
    #[cfg(not(unix))]
    {
        stem.to_string()
    }
}

/// State files are small; a larger one is not ours.
const MAX_RECORD_SIZE: u64 = 64 * 1024;

/// A small state file (a checkpoint, an upload record), `None` when absent
/// or unusable: a link, not a regular file, too large.
fn read_record(path: &Path) -> Option<Vec<u8>> {
    match private::read_small(path, MAX_RECORD_SIZE) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a state file");
            None
        }
    }
}

/// Replace `path` with `bytes` atomically (write a sibling, then rename;
/// neither follows a symbolic link).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    // One a crashed run of the same pid left (removing a link removes only
    // the link), so the create below can insist on a new file.
    let _ = fs::remove_file(&tmp);
    let mut file = private::create_new(&tmp)?;
    file.write_all(bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", tmp.display())))?;
    drop(file);
    fs::rename(&tmp, path)
        .map_err(|e| io::Error::new(e.kind(), format!("renaming {}: {e}", tmp.display())))
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

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_state_directory_and_its_parts_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/state");
        drop(StateDir::open(&root, DEFAULT_SPOOL_THRESHOLD).unwrap());
        for p in [
            "new",
            "new/state",
            "new/state/downloads",
            "new/state/uploads",
        ] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_or_linked_state_directory_is_refused_saying_how_to_choose_another() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = StateDir::open(&shared, DEFAULT_SPOOL_THRESHOLD).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Unsafe(_)), "{msg}");
        assert!(
            msg.contains(&shared.display().to_string())
                && msg.contains("mode 1777")
                && msg.contains("no one else can write")
                && msg.contains("--state-dir")
                && msg.contains("MIRROR_STATE_DIR"),
            "{msg}"
        );
        assert!(!shared.join("lock").exists(), "nothing is written there");

        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let msg = StateDir::open(&link, DEFAULT_SPOOL_THRESHOLD)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("symbolic link"), "{msg}");

        // A part planted as a link to somewhere else is refused too.
        let planted = dir.path().join("planted");
        fs::create_dir(&planted).unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&real, planted.join("downloads")).unwrap();
        let msg = StateDir::open(&planted, DEFAULT_SPOOL_THRESHOLD)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("downloads") && msg.contains("symbolic link"),
            "{msg}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn another_users_state_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        let theirs = if private::euid() == 0 {
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            theirs
        } else {
            PathBuf::from("/")
        };
        let msg = StateDir::open(&theirs, DEFAULT_SPOOL_THRESHOLD)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("another user's") && msg.contains(&format!("uid {}", private::euid())),
            "{msg}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_planted_as_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let root = dir.path().join("state");
        drop(StateDir::open(&root, DEFAULT_SPOOL_THRESHOLD).unwrap());
        fs::remove_file(root.join("lock")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("lock")).unwrap();
        let msg = StateDir::open(&root, DEFAULT_SPOOL_THRESHOLD)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&root.join("lock").display().to_string()) && msg.contains("symbolic link"),
            "{msg}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn records_written_atomically_replace_a_planted_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let record = dir.path().join("r.json");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &record).unwrap();
        // The temporary name too: a run of the same pid may find a link there.
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            &victim,
            record.with_extension(format!("tmp.{}", std::process::id())),
        )
        .unwrap();
        write_atomic(&record, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&record).unwrap(), b"{}");
        assert!(!fs::symlink_metadata(&record)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn the_fallback_under_the_shared_temporary_directory_is_per_user() {
        let name = shared_name("mirror-state");
        #[cfg(unix)]
        assert_eq!(name, format!("mirror-state-{}", private::euid()));
        assert!(name.starts_with("mirror-state"));
    }
}
