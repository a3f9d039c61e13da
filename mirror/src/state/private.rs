//! Directories only their owner can change, and files opened in them
//! without following symbolic links.
//!
//! The state directory and the default sync locks hold upload locations,
//! image bytes and locks. Another user who could write to them, or plant a
//! symbolic link where mirror writes, could make mirror write through it
//! (to a file of the victim's), feed it bytes, or hold its lock. So a
//! directory is used only when it is a real directory (not a link), owned
//! by the user running mirror, and writable by nobody else; one mirror
//! creates gets mode 0700. Files in it are opened with `O_NOFOLLOW` and
//! must be regular files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

#[cfg(unix)]
use std::os::unix::fs::MetadataExt;

/// Why a directory may not hold mirror's state.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to use {} as {role}: {problem}; it must be a directory (not a symbolic link) owned by you{you} that no one else can write to (mirror creates it with mode 0700). {choose}",
    path.display()
)]
pub struct UnsafeDir {
    pub path: PathBuf,
    /// What the directory is for (`the state directory`).
    pub role: &'static str,
    /// What was found: the owner and mode, or the kind of file.
    pub problem: String,
    /// ` (uid N)`: who "you" are.
    pub you: String,
    /// How to choose another one.
    pub choose: &'static str,
}

/// Either the directory is not safe, or it could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error(transparent)]
    Unsafe(#[from] UnsafeDir),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The effective user id of this process.
#[cfg(unix)]
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Make `path` (and missing parents, each mode 0700) unless it exists, then
/// check that it is a directory of this user's that nobody else can write
/// to and that is no symbolic link.
pub fn ensure_private_dir(
    path: &Path,
    role: &'static str,
    choose: &'static str,
) -> Result<(), PrivateDirError> {
    let io = |source| PrivateDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(path).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    // Looked at again after creating: another process may have made it
    // first, and what counts is what is there now.
    let meta = fs::symlink_metadata(path).map_err(io)?;
    match problem(path, &meta) {
        None => Ok(()),
        Some(problem) => Err(UnsafeDir {
            path: path.to_path_buf(),
            role,
            problem,
            you: you(),
            choose,
        }
        .into()),
    }
}

#[cfg(unix)]
fn you() -> String {
    format!(" (uid {})", euid())
}

#[cfg(not(unix))]
fn you() -> String {
    String::new()
}

/// What is wrong with a directory, or `None`.
#[cfg(unix)]
fn problem(path: &Path, meta: &fs::Metadata) -> Option<String> {
    let ty = meta.file_type();
    let mode = meta.mode() & 0o7777;
    if ty.is_symlink() {
        let to = fs::read_link(path)
            .map(|t| format!(" to {}", t.display()))
            .unwrap_or_default();
        return Some(format!("it is a symbolic link{to}"));
    }
    if !ty.is_dir() {
        return Some(format!("it is {}, not a directory", kind(&ty)));
    }
    let found = format!("owned by uid {} with mode {mode:04o}", meta.uid());
    if meta.uid() != euid() {
        return Some(format!("it is {found}, another user's"));
    }
    if mode & 0o022 != 0 {
        return Some(format!("it is {found}: group or others can write to it"));
    }
    None
}

#[cfg(not(unix))]
fn problem(_: &Path, meta: &fs::Metadata) -> Option<String> {
    (!meta.is_dir()).then(|| "it is not a directory".to_string())
}

pub use crate::regular_file::kind;

/// Open with `opts`, never through a symbolic link, and only a regular
/// file. The error names the file and the cause ("is a symbolic link").
pub fn open_regular(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    crate::regular_file::open(path, opts, crate::regular_file::Links::Refuse)
}

/// A small file read whole: `None` when absent, an error when it is a link,
/// not a regular file, or longer than `limit` bytes.
pub fn read_small(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_regular(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

/// Create `path`, which must not exist (not even as a link), for writing.
pub fn create_new(path: &Path) -> io::Result<File> {
    open_regular(path, OpenOptions::new().write(true).create_new(true))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CHOOSE: &str = "choose another";

    fn check(path: &Path) -> Result<(), PrivateDirError> {
        ensure_private_dir(path, "the test directory", CHOOSE)
    }

    #[test]
    fn a_new_directory_is_made_for_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        check(&path).unwrap();
        for p in [dir.path().join("a"), path.clone()] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
        check(&path).expect("an existing private directory is fine");
    }

    #[test]
    fn links_files_and_writable_directories_are_refused_naming_what_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = check(&link).unwrap_err().to_string();
        assert!(
            err.contains(&link.display().to_string())
                && err.contains("symbolic link")
                && err.contains(CHOOSE),
            "{err}"
        );

        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = check(&file).unwrap_err().to_string();
        assert!(err.contains("a regular file, not a directory"), "{err}");

        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&real).unwrap_err().to_string();
        assert!(
            err.contains("mode 0777")
                && err.contains("others can write")
                && err.contains(&format!("uid {}", euid())),
            "{err}"
        );
        fs::set_permissions(&real, fs::Permissions::from_mode(0o1770)).unwrap();
        assert!(check(&real).is_err(), "group-writable, sticky or not");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        check(&real).expect("readable by others is the owner's choice");
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        // `/` belongs to root: another user's unless the tests run as root.
        if euid() == 0 {
            return;
        }
        let err = check(Path::new("/")).unwrap_err().to_string();
        assert!(
            err.contains("owned by uid 0") && err.contains("another user's"),
            "{err}"
        );
    }

    #[test]
    fn opens_refuse_links_and_special_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"victim").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_small(&link, 100).unwrap_err().to_string();
        assert!(
            err.contains(&link.display().to_string()) && err.contains("symbolic link"),
            "{err}"
        );
        let err = create_new(&link).unwrap_err().to_string();
        assert!(err.contains("link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"victim");

        let err = read_small(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a device, not a regular file"), "{err}");
        assert!(read_small(&dir.path().join("absent"), 100)
            .unwrap()
            .is_none());
        let err = read_small(&target, 3).unwrap_err().to_string();
        assert!(err.contains("larger than 3 bytes"), "{err}");
        assert_eq!(read_small(&target, 6).unwrap().unwrap(), b"victim");

        // A named pipe with no writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_small(&fifo, 100).unwrap_err().to_string();
        assert!(err.contains("a named pipe, not a regular file"), "{err}");
    }
}
