//! Opening a file that must be a regular file. A layout, a bundle's
//! `.partial` or the state directory may hold a device, a named pipe or a
//! symbolic link planted under a name mirror reads or writes: reading
//! `/dev/zero` never ends, opening a pipe waits for a writer, and writing
//! through a link changes another file. Every such open goes through here.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Whether the last component of a path may be a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (a layout read as a source: Nix-built layouts link their
    /// blobs, and every byte read is verified anyway).
    Follow,
    /// Refuse it: where mirror writes, or keeps what it trusts.
    Refuse,
}

/// Open `path` with `opts`; an error naming the file when it is a link
/// (with [`Links::Refuse`]) or not a regular file. Opening a named pipe
/// does not block. Every error names the file and keeps its kind
/// (`NotFound` for a missing file).
pub fn open(path: &Path, opts: &OpenOptions, links: Links) -> io::Result<File> {
    let mut opts = opts.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let follow = match links {
            Links::Follow => 0,
            Links::Refuse => libc::O_NOFOLLOW,
        };
        opts.custom_flags(libc::O_NONBLOCK | follow);
    }
    let file = opts.open(path).map_err(|e| {
        if links == Links::Refuse && is_link_error(&e) {
            io::Error::new(
                e.kind(),
                format!("{} is a symbolic link; not following it", path.display()),
            )
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {}, not a regular file",
                path.display(),
                kind(&meta.file_type())
            ),
        ));
    }
    clear_nonblocking(&file)?;
    Ok(file)
}

/// What a file is, in words, for messages.
pub fn kind(ty: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return "a named pipe";
        }
        if ty.is_socket() {
            return "a socket";
        }
        if ty.is_char_device() || ty.is_block_device() {
            return "a device";
        }
    }
    if ty.is_symlink() {
        "a symbolic link"
    } else if ty.is_dir() {
        "a directory"
    } else if ty.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// O_NONBLOCK only kept a named pipe from blocking the open; a regular
/// file ignores it, but nothing should inherit a surprise.
#[cfg(unix)]
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns, with
    // integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn clear_nonblocking(_: &File) -> io::Result<()> {
    Ok(())
}

/// `open(O_NOFOLLOW)` on a symbolic link fails with ELOOP (Linux, BSDs)
/// or EMLINK (FreeBSD, older macOS).
fn is_link_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EMLINK))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}
