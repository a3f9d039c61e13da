//! One run per config at a time: an exclusive file lock, held for the whole
//! run and released by the OS when the process ends, however it ends. The
//! file is left in place: removing it would let two runs lock two files.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use registry_client::Digest;

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
}

impl RunLock {
    /// Take the lock at `path` now, or fail at once if another run has it.
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
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

/// Where a config's lock lives by default: `$XDG_RUNTIME_DIR` (or the
/// temporary directory), named after the config's absolute path and the
/// shard, so shards of one config run side by side and a read-only config
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
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(name)
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
