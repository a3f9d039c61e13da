//! The state directory: what lets a rerun continue where a crash, `kill -9`
//! or Ctrl-C stopped. It holds partial downloads (their bytes, verified
//! offset and hash state) and open upload sessions. Runs share it: each
//! partial download and each upload session is locked on its own, for as
//! long as one run writes it, so no two runs write one spool or one session
//! while runs copying other blobs (or the same blob, one of them without
//! the spool) go on side by side.
//!
//! ```text
//! STATE_DIR/
//!   lock                      shared flock held for the run (see below)
//!   downloads/<alg>-<hex>.data, .json   partial downloads (see spool.rs)
//!   downloads/<alg>-<hex>.lock          flock of the run writing them
//!   uploads/<key>.json        open upload sessions (see uploads.rs)
//!   uploads/<key>.lock        flock of the run that owns the session
//! ```
//!
//! Every lock is an `flock` on an open file, so the kernel releases it when
//! the process dies, `kill -9` included. `DIR/lock` is taken shared by
//! every run. Earlier versions of mirror took it exclusively (one run per
//! directory), so a run of one of them, which knows no per-entry locks,
//! and a run of this one never use a directory at once.
//!
//! The directory and its parts must be the user's own: a real directory
//! (no symbolic link), owned by the user running mirror and writable by no
//! one else; mirror creates them with mode 0700 and refuses others. Its
//! files are opened without following symbolic links (see private.rs).

pub mod private;
pub mod spool;
pub mod uploads;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
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
    /// A run of an earlier version of mirror, which locks the directory
    /// whole, is using it.
    #[error(
        "the state directory {} is locked whole by a mirror run of an earlier version{holder}, which allows one run per directory; wait for it to finish, or give this run its own --state-dir",
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

/// An open state directory, shared with any other run using it. Its shared
/// lock is released on drop (and by the kernel when the process dies).
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    _lock: File,
    spools: Spools,
    uploads: UploadJournal,
}

impl StateDir {
    /// Open (creating it, mode 0700) the directory, taking its shared lock,
    /// and remove state untouched for [`STALE_AFTER`] that no run holds.
    /// Fails with [`StateError::Locked`] when a run of an earlier mirror
    /// holds the directory whole, and with [`StateError::Unsafe`] when it
    /// is a symbolic link, another user's, or writable by group or others.
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
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                // An earlier mirror writes its pid there once it has it.
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
        // A pid an earlier mirror left there names no holder now (and
        // several runs hold the lock at once).
        lock.set_len(0).map_err(io)?;

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
/// expired. It is removed when a directory is opened, unless a run holds it.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The entry a state file belongs to: its name up to the first dot
/// (`<alg>-<hex>` of `.data`, `.json`, `.lock`, `.tmp.<pid>`).
fn entry_of(name: &std::ffi::OsStr) -> Option<String> {
    let name = name.to_str()?;
    let stem = name.split('.').next()?;
    (!stem.is_empty()).then(|| stem.to_string())
}

/// The files of each entry in `dir`, by entry.
fn entries(dir: &Path) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    let mut by_entry = std::collections::BTreeMap::<String, Vec<PathBuf>>::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return by_entry;
    };
    for e in listing.filter_map(Result::ok) {
        if let Some(entry) = entry_of(&e.file_name()) {
            by_entry.entry(entry).or_default().push(e.path());
        }
    }
    by_entry
}

/// Whether every file of an entry is older than [`STALE_AFTER`] (a file
/// gone since counts as old; one that cannot be looked at, as fresh).
fn all_stale(files: &[PathBuf]) -> bool {
    files.iter().all(|p| match fs::symlink_metadata(p) {
        Ok(m) => m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    })
}

/// Whether an entry is stale: its state files are, or, when only its lock
/// file is left (a run killed before it wrote anything), that one is. (A
/// lock file's time is when it was made, not when it was last held.)
fn stale_entry(files: &[PathBuf], lock: &Path) -> bool {
    let state: Vec<PathBuf> = files.iter().filter(|p| *p != lock).cloned().collect();
    if state.is_empty() {
        all_stale(files)
    } else {
        all_stale(&state)
    }
}

/// Remove the entries of `dir` untouched for [`STALE_AFTER`], each under
/// its own lock: an entry another run holds (it may be resuming it right
/// now) is left alone.
fn prune(dir: &Path) {
    for (entry, files) in entries(dir) {
        let lock_path = dir.join(format!("{entry}.lock"));
        if !stale_entry(&files, &lock_path) {
            continue;
        }
        let lock = match EntryLock::try_acquire(&lock_path) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!(entry, "stale state in use by another run; leaving it");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot lock stale state; leaving it");
                continue;
            }
        };
        // Looked at again under the lock: a run may have used it between.
        let files: Vec<PathBuf> = entries(dir).remove(&entry).unwrap_or_default();
        if !stale_entry(&files, &lock_path) {
            continue;
        }
        for path in files.iter().filter(|p| **p != lock.path) {
            tracing::info!(path = %path.display(), "removing stale state");
            let _ = fs::remove_file(path);
        }
        lock.remove();
    }
}

/// One run's hold on one entry of the state directory (a partial download,
/// an upload session): an `flock` on `<entry>.lock`, released when this is
/// dropped or the process dies. Whoever removes the entry removes the lock
/// file while holding it; a run that locked a file removed meanwhile sees
/// that the name no longer leads to it, and tries again.
#[derive(Debug)]
pub(crate) struct EntryLock {
    path: PathBuf,
    _file: File,
}

impl EntryLock {
    /// The lock, or `None` at once when another run (or another open of
    /// this process) holds it.
    pub(crate) fn try_acquire(path: &Path) -> io::Result<Option<EntryLock>> {
        for _ in 0..8 {
            let file = private::open_regular(
                path,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false),
            )?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("locking {}: {e}", path.display()),
                    ))
                }
            }
            if names(path, &file)? {
                return Ok(Some(EntryLock {
                    path: path.to_path_buf(),
                    _file: file,
                }));
            }
        }
        Err(io::Error::other(format!(
            "{} keeps being removed while it is locked",
            path.display()
        )))
    }

    /// The entry is gone: remove the lock file, then release it.
    pub(crate) fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether `path` still leads to `file` (and not to nothing, or to a file
/// made since under the same name).
fn names(path: &Path, file: &File) -> io::Result<bool> {
    let now = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let held = file.metadata()?;
        Ok(now.dev() == held.dev() && now.ino() == held.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(now.is_file())
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
    fn runs_share_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap();
        let second = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).expect("shared");
        drop(first);
        drop(second);
    }

    #[test]
    fn a_directory_an_earlier_mirror_holds_whole_is_refused_naming_it_and_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        // What an earlier mirror did: an exclusive lock, and its pid.
        let mut old = File::options()
            .write(true)
            .open(dir.path().join("lock"))
            .unwrap();
        old.lock().unwrap();
        writeln!(old, "4242").unwrap();
        let err = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&dir.path().display().to_string())
                && msg.contains("pid 4242")
                && msg.contains("earlier version"),
            "{msg}"
        );
        drop(old);
        let open = StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).expect("free again");
        assert_eq!(
            fs::read(dir.path().join("lock")).unwrap(),
            b"",
            "the stale pid is gone"
        );
        drop(open);
    }

    fn age(path: &Path) {
        let long_ago = std::time::SystemTime::now() - STALE_AFTER * 2;
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }

    #[test]
    fn state_untouched_for_a_week_is_pruned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        let downloads = dir.path().join("downloads");
        let old = downloads.join("sha256-old.data");
        let old_checkpoint = downloads.join("sha256-old.json");
        let old_lock = downloads.join("sha256-old.lock");
        let fresh = downloads.join("sha256-fresh.data");
        let lone_lock = downloads.join("sha256-killed.lock");
        let session = dir.path().join("uploads/0123.json");
        for p in [
            &old,
            &old_checkpoint,
            &old_lock,
            &fresh,
            &lone_lock,
            &session,
        ] {
            fs::write(p, b"x").unwrap();
        }
        for p in [&old, &old_checkpoint, &lone_lock, &session] {
            age(p);
        }
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        for p in [&old, &old_checkpoint, &old_lock, &lone_lock, &session] {
            assert!(!p.exists(), "{} is removed", p.display());
        }
        assert!(fresh.exists());
    }

    #[test]
    fn stale_state_another_run_holds_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        let downloads = dir.path().join("downloads");
        let data = downloads.join("sha256-held.data");
        fs::write(&data, b"x").unwrap();
        age(&data);
        // Another run holds the entry (a separate open: flock locks are
        // per open file, so this process stands for another run).
        let held = EntryLock::try_acquire(&downloads.join("sha256-held.lock"))
            .unwrap()
            .unwrap();
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        assert!(data.exists(), "a held entry is not swept");
        drop(held);
        drop(StateDir::open(dir.path(), DEFAULT_SPOOL_THRESHOLD).unwrap());
        assert!(!data.exists(), "swept once free");
        assert!(!downloads.join("sha256-held.lock").exists());
    }

    #[test]
    fn an_entry_lock_is_one_holders_and_survives_its_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.lock");
        let first = EntryLock::try_acquire(&path).unwrap().unwrap();
        assert!(EntryLock::try_acquire(&path).unwrap().is_none(), "held");
        // One that opened the file before its holder removed it locks a
        // file no name leads to: it sees that, and takes a new one.
        let early = File::options().read(true).open(&path).unwrap();
        first.remove();
        early.try_lock().unwrap();
        assert!(!names(&path, &early).unwrap());
        let second = EntryLock::try_acquire(&path).unwrap().unwrap();
        assert!(path.exists());
        assert!(EntryLock::try_acquire(&path).unwrap().is_none());
        drop(second);
        assert!(
            EntryLock::try_acquire(&path).unwrap().is_some(),
            "released on drop"
        );
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
