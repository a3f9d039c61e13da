//! One run per config at a time: an exclusive file lock, held for the whole
//! run and released by the OS when the process ends, however it ends. The
//! file is left in place: removing it would let two runs lock two files.
//!
//! By default the lock lives in a directory of the user's own (see
//! [`default_lock_dir`]), checked as the state directory is: not a link,
//! not another user's, writable by no one else. A lock with a predictable
//! name in a shared `/tmp` let another user hold it (no sync would run) or
//! plant a link there (mirror opened what it pointed at). The file itself
//! is opened without following links, wherever it is.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use registry_client::Digest;

use crate::state::private::{ensure_private_dir, open_regular, PrivateDirError, UnsafeDir};

use super::shard::Shard;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another mirror sync run of this config holds the lock {}; not starting a second one (it ends when that run ends)", path.display())]
    Held { path: PathBuf },
    #[error("opening the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The default lock directory is a link, another user's, or writable
    /// by others.
    #[error(transparent)]
    Unsafe(#[from] UnsafeDir),
}

impl RunLock {
    /// Take the lock at `path` now, or fail at once if another run has it.
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if dir == default_lock_dir() {
                ensure_private_dir(dir, "the directory of sync locks", CHOOSE_LOCK).map_err(
                    |e| match e {
                        PrivateDirError::Unsafe(u) => LockError::Unsafe(u),
                        PrivateDirError::Io { source, .. } => io(source),
                    },
                )?;
            } else {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
        }
        let file = open_regular(
            path,
            OpenOptions::new().create(true).truncate(false).write(true),
        )
        .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock {
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                path: path.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// How a user picks another lock, for the messages.
const CHOOSE_LOCK: &str = "Choose another lock with --lock-file PATH";

/// The directory of default sync locks: `$XDG_RUNTIME_DIR/mirror` (the
/// user's own by definition), else `mirror-locks-<uid>` in the temporary
/// directory, made with mode 0700 and refused when it is a link, another
/// user's or writable by others. Not in the state directory: a CronJob's
/// home is often read-only while its `/tmp` is not, and a lock of one
/// config must not wait on a state directory another command holds.
pub fn default_lock_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
    {
        Some(dir) => dir.join("mirror"),
        None => std::env::temp_dir().join(crate::state::shared_name("mirror-locks")),
    }
}

/// Where a config's lock lives by default: in [`default_lock_dir`], named
/// after the config's absolute path and the shard, so shards of one config run side by side and a read-only config
/// directory (a mounted ConfigMap) is no obstacle. `variant` tells apart
/// runs of one file with different meanings (a skopeo file synced to two
/// destinations).
pub fn default_lock_path(config: &Path, variant: Option<&str>, shard: Option<Shard>) -> PathBuf {
    let absolute = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let mut key = absolute.to_string_lossy().into_owned();
    if let Some(v) = variant {
        key = format!("{key}\n{v}");
    }
    let id = Digest::sha256_of(key.as_bytes());
    let mut name = format!("mirror-sync-{}", &id.hex()[..16]);
    if let Some(s) = shard {
        name += &format!("-shard-{}-of-{}", s.index, s.count);
    }
    name += ".lock";
    default_lock_dir().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.lock");
        let first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }));
        assert!(err.to_string().contains("x.lock"), "{err}");
        drop(first);
        RunLock::acquire(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn default_locks_are_in_a_directory_of_the_users_own() {
        let a = default_lock_path(Path::new("/nonexistent/a.yaml"), None, None);
        let dir = a.parent().unwrap();
        assert_eq!(dir, default_lock_dir());
        assert_ne!(dir, std::env::temp_dir(), "not loose in a shared directory");
        let lock = RunLock::acquire(&a).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), crate::state::private::euid());
        assert_eq!(
            meta.permissions().mode() & 0o022,
            0,
            "no one else writes there"
        );
        drop(lock);
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_planted_as_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("symbolic link"),
            "{err}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn lock_paths_differ_by_config_and_shard() {
        let a = default_lock_path(Path::new("/nonexistent/a.yaml"), None, None);
        let b = default_lock_path(Path::new("/nonexistent/b.yaml"), None, None);
        let a0 = default_lock_path(
            Path::new("/nonexistent/a.yaml"),
            None,
            Some(Shard { index: 0, count: 2 }),
        );
        let ax = default_lock_path(Path::new("/nonexistent/a.yaml"), Some("x"), None);
        assert_ne!(a, b);
        assert_ne!(a, a0);
        assert_ne!(a, ax);
        assert!(a0.to_string_lossy().ends_with("-shard-0-of-2.lock"));
    }
}
