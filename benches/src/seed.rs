//! Registry storage cloned from one distribution registry into another,
//! so that a source is filled, or a target made as a cold copy leaves it,
//! in a moment instead of by pushing every image again.
//!
//! Blob data is hard-linked: the filesystem driver commits a blob by
//! renaming its upload into place and never writes it again. Everything
//! else (repositories' links, tags) is copied, because the driver rewrites
//! those files in place.

use std::io;
use std::path::Path;

/// Below a registry's root directory.
const V2: &str = "docker/registry/v2";

/// Clone the storage under `from` into `to` (both a registry's root
/// directory): every blob, and the repositories named (all when `None`).
pub fn clone_storage(from: &Path, to: &Path, repositories: Option<&[String]>) -> io::Result<()> {
    let (from, to) = (from.join(V2), to.join(V2));
    link_tree(&from.join("blobs"), &to.join("blobs"))?;
    let (src, dst) = (from.join("repositories"), to.join("repositories"));
    match repositories {
        None => copy_tree(&src, &dst),
        Some(names) => {
            for name in names {
                copy_tree(&src.join(name), &dst.join(name))?;
            }
            Ok(())
        }
    }
}

fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    walk(from, to, &|a, b| match std::fs::hard_link(a, b) {
        // Another filesystem: copy instead.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => std::fs::copy(a, b).map(|_| ()),
        r => r,
    })
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    walk(from, to, &|a, b| std::fs::copy(a, b).map(|_| ()))
}

fn walk(from: &Path, to: &Path, file: &dyn Fn(&Path, &Path) -> io::Result<()>) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (a, b) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&a, &b, file)?;
        } else if kind.is_file() {
            match file(&a, &b) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn blobs_are_linked_and_repositories_copied() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let v2 = a.path().join(V2);
        let blob = v2.join("blobs/sha256/ab/abcd/data");
        let tag = v2.join("repositories/x/y/_manifests/tags/t/current/link");
        let other = v2.join("repositories/z/_manifests/tags/t/current/link");
        for f in [&blob, &tag, &other] {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "sha256:abcd").unwrap();
        }
        clone_storage(a.path(), b.path(), Some(&["x/y".to_string()])).unwrap();
        let w2 = b.path().join(V2);
        let linked = w2.join("blobs/sha256/ab/abcd/data");
        assert_eq!(
            std::fs::metadata(&linked).unwrap().ino(),
            std::fs::metadata(&blob).unwrap().ino()
        );
        let copied = w2.join("repositories/x/y/_manifests/tags/t/current/link");
        assert_ne!(
            std::fs::metadata(&copied).unwrap().ino(),
            std::fs::metadata(&tag).unwrap().ino()
        );
        // Rewriting the clone's tag leaves the original alone.
        std::fs::write(&copied, "sha256:ffff").unwrap();
        assert_eq!(std::fs::read_to_string(&tag).unwrap(), "sha256:abcd");
        assert!(!w2.join("repositories/z").exists());
        // Cloning again over the same target is harmless.
        clone_storage(a.path(), b.path(), None).unwrap();
        assert!(w2.join("repositories/z").exists());
    }
}
