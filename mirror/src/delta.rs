//! Delta bundles: the blobs a receiver already holds, so a new bundle can
//! leave them out.
//!
//! `mirror export --since OLD` takes OLD as a previous bundle (an archive or
//! a layout directory), or as the blob list export writes beside each
//! archive (`PATH.blobs`: one `DIGEST SIZE` per line, `#` comments). The
//! list of a delta bundle is cumulative: what `--since` said the receiver
//! held, and every blob the new bundle's images use (written or left out).
//! So each week's list describes everything the receiver holds after
//! importing it, an image that goes back to an old version sends nothing
//! again, and the connected side need keep only the newest small list.
//!
//! A list (read or written) holds at most the run's `archive-entries`
//! blobs, the bound on a bundle's entries: the set is held in memory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use registry_client::Digest;

use crate::store::archive::ArchiveReader;
use crate::store::StoreError;

/// The first line of a blob list.
const HEADER: &str = "# mirror bundle blob list v1";

/// The blob list written beside an archive: `PATH.blobs`.
pub fn list_path(bundle: &Path) -> PathBuf {
    let mut p = bundle.as_os_str().to_owned();
    p.push(".blobs");
    PathBuf::from(p)
}

/// The most blobs a list read or written in this run may hold.
fn max_blobs() -> usize {
    crate::limits::get().archive_entries
}

/// The error for a set of blobs past the bound `max`.
fn too_many(context: String, max: usize) -> StoreError {
    StoreError::invalid(
        context,
        format!(
            "holds more than {max} blobs ({})",
            crate::limits::named("archive-entries", max)
        ),
    )
}

/// The bytes a blob list of `max` entries may take: an entry line is at
/// most 157 bytes (`sha512:`, 128 hex digits, a 20-digit size), and the
/// rest leaves room for comments.
fn max_list_bytes(max: usize) -> u64 {
    (max as u64).saturating_add(16).saturating_mul(256)
}

/// The blobs (digest and size) a receiver of `base` holds: read from a
/// blob list, an archive, or a layout directory.
pub async fn load(base: &Path) -> Result<HashMap<Digest, u64>, StoreError> {
    load_bounded(base, max_blobs()).await
}

async fn load_bounded(base: &Path, max: usize) -> Result<HashMap<Digest, u64>, StoreError> {
    if base.is_dir() {
        return layout_blobs(base, max);
    }
    // Opened as a regular file only: a named pipe would block the probe.
    let mut head = [0u8; HEADER.len()];
    let is_list = open_regular(base)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == *HEADER.as_bytes();
    if !is_list {
        // Bounded by archive-entries as it opens.
        return Ok(receiver_holds(base).await?.into_iter().collect());
    }
    read_list(base, max)
}

/// `path` opened for reading if it is a regular file (a link to one is
/// followed: the user named it).
fn open_regular(path: &Path) -> std::io::Result<fs::File> {
    crate::regular_file::open(
        path,
        fs::OpenOptions::new().read(true),
        crate::regular_file::Links::Follow,
    )
}

/// A blob list, read a line at a time: no more than [`max_list_bytes`]
/// bytes and `max` entries, and only from a regular file (a pipe or a
/// device planted under the name would never end).
fn read_list(path: &Path, max: usize) -> Result<HashMap<Digest, u64>, StoreError> {
    use std::io::{BufRead, Read};
    let label = path.display().to_string();
    let file = open_regular(path).map_err(|e| StoreError::io(format!("reading {label}"), e))?;
    let budget = max_list_bytes(max);
    let mut reader = std::io::BufReader::new(file).take(budget.saturating_add(1));
    let mut held = HashMap::new();
    let mut bytes = Vec::new();
    let mut read = 0u64;
    for n in 1.. {
        bytes.clear();
        let got = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| StoreError::io(format!("reading {label}"), e))?;
        if got == 0 {
            break;
        }
        read += got as u64;
        if read > budget {
            return Err(StoreError::invalid(
                label,
                format!(
                    "is larger than {} bytes, more than a list of {max} blobs takes ({})",
                    budget,
                    crate::limits::named("archive-entries", max)
                ),
            ));
        }
        let at = || format!("{label}:{n}");
        let line =
            std::str::from_utf8(&bytes).map_err(|_| StoreError::invalid(at(), "not UTF-8 text"))?;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (digest, size) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| StoreError::invalid(at(), "expected `DIGEST SIZE`"))?;
        let digest =
            Digest::parse(digest.trim()).map_err(|e| StoreError::invalid(at(), e.to_string()))?;
        let size: u64 = size
            .trim()
            .parse()
            .map_err(|_| StoreError::invalid(at(), format!("{size:?} is not a size")))?;
        held.insert(digest, size);
        if held.len() > max {
            return Err(too_many(label, max));
        }
    }
    Ok(held)
}

/// What a receiver holds after importing a bundle whose images use
/// `brought`, when it held `before`: both together, sorted, each blob once.
/// Where both name a blob, the bundle's size wins (export read it from the
/// image just now). More than `max` blobs is an error, named for `bundle`.
pub fn cumulative(
    bundle: &Path,
    before: &HashMap<Digest, u64>,
    brought: BTreeMap<Digest, u64>,
    max: usize,
) -> Result<BTreeMap<Digest, u64>, StoreError> {
    let mut held = brought;
    for (digest, size) in before {
        held.entry(digest.clone()).or_insert(*size);
    }
    if held.len() > max {
        return Err(too_many(
            format!("the blob list of {}", bundle.display()),
            max,
        ));
    }
    Ok(held)
}

/// [`cumulative`], bounded by the run's `archive-entries`.
pub fn cumulative_list(
    bundle: &Path,
    before: &HashMap<Digest, u64>,
    brought: BTreeMap<Digest, u64>,
) -> Result<BTreeMap<Digest, u64>, StoreError> {
    cumulative(bundle, before, brought, max_blobs())
}

/// What a registry holds once it has imported the archive at `bundle`:
/// the manifests and blobs of its named images, the ones a delta left out
/// included (they were there before). Blobs in the tar that no image uses
/// (those of an image that failed) are not counted: import does not push them.
pub async fn receiver_holds(bundle: &Path) -> Result<BTreeMap<Digest, u64>, StoreError> {
    let reader = ArchiveReader::open(bundle)?;
    let mut held = BTreeMap::new();
    for (_, desc) in reader.names() {
        let graph = crate::verify::image_graph(&reader, &desc)
            .await
            .map_err(|e| StoreError::invalid(bundle.display().to_string(), e))?;
        for m in graph.manifests {
            held.insert(m.digest, m.bytes.len() as u64);
        }
        for b in graph.blobs {
            held.insert(b.digest, b.size);
        }
    }
    Ok(held)
}

/// The blob files of a layout directory, with their sizes: at most `max`.
fn layout_blobs(dir: &Path, max: usize) -> Result<HashMap<Digest, u64>, StoreError> {
    let mut held = HashMap::new();
    let blobs = dir.join("blobs");
    let io = |p: &Path, e| StoreError::io(format!("listing {}", p.display()), e);
    for alg in fs::read_dir(&blobs).map_err(|e| io(&blobs, e))? {
        let alg = alg.map_err(|e| io(&blobs, e))?;
        for file in fs::read_dir(alg.path()).map_err(|e| io(&alg.path(), e))? {
            let file = file.map_err(|e| io(&alg.path(), e))?;
            let name = format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            // Temporary files of an interrupted write are no blobs.
            let Ok(digest) = Digest::parse(&name) else {
                continue;
            };
            let meta = file.metadata().map_err(|e| io(&file.path(), e))?;
            if meta.is_file() {
                held.insert(digest, meta.len());
                if held.len() > max {
                    return Err(too_many(dir.display().to_string(), max));
                }
            }
        }
    }
    Ok(held)
}

/// Write the blob list for `bundle` beside it (whole, under a temporary
/// name first).
pub fn write_list(bundle: &Path, blobs: &BTreeMap<Digest, u64>) -> Result<PathBuf, StoreError> {
    let path = list_path(bundle);
    let mut text = format!(
        "{HEADER}\n# the blobs a registry holds after importing {}; give this file to `mirror export --since`\n",
        bundle.file_name().unwrap_or_default().to_string_lossy()
    );
    for (d, n) in blobs {
        text += &format!("{d} {n}\n");
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    crate::store::layout::write_atomic_sync(dir, &name, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_list_reads_back_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("week1.tar");
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"bb");
        let blobs = [(a.clone(), 1), (b.clone(), 2)].into_iter().collect();
        let list = write_list(&bundle, &blobs).unwrap();
        assert_eq!(list, dir.path().join("week1.tar.blobs"));
        let held = load(&list).await.unwrap();
        assert_eq!(held.len(), 2);
        assert_eq!(held[&b], 2);
        fs::write(&list, format!("{HEADER}\n{a} 1\nsha256:zz 3\n")).unwrap();
        let err = load(&list).await.unwrap_err().to_string();
        assert!(err.contains("week1.tar.blobs:3"), "{err}");
    }

    #[test]
    fn a_cumulative_list_keeps_what_the_receiver_held_and_adds_what_it_brought() {
        let bundle = Path::new("week3.tar");
        let (a, b, c) = (
            Digest::sha256_of(b"a"),
            Digest::sha256_of(b"b"),
            Digest::sha256_of(b"c"),
        );
        // Held since week 1 and 2 (a, b); week 3 uses b again and brings c.
        let before: HashMap<_, _> = [(a.clone(), 1), (b.clone(), 2)].into_iter().collect();
        let brought: BTreeMap<_, _> = [(b.clone(), 2), (c.clone(), 3)].into_iter().collect();
        let held = cumulative(bundle, &before, brought.clone(), 3).unwrap();
        let want: Vec<_> = {
            let mut v = vec![(a, 1), (b, 2), (c, 3)];
            v.sort();
            v
        };
        assert_eq!(held.into_iter().collect::<Vec<_>>(), want);
        // Past the bound: an error naming it and the list, nothing merged.
        let err = cumulative(bundle, &before, brought, 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("week3.tar") && err.contains("--limit archive-entries=N"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_list_past_the_bound_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("week1.tar");
        let blobs = (0..5u8)
            .map(|i| (Digest::sha256_of(&[i]), 1))
            .collect::<BTreeMap<_, _>>();
        let list = write_list(&bundle, &blobs).unwrap();
        assert_eq!(load_bounded(&list, 5).await.unwrap().len(), 5);
        let err = load_bounded(&list, 4).await.unwrap_err().to_string();
        assert!(
            err.contains("week1.tar.blobs") && err.contains("--limit archive-entries=N"),
            "{err}"
        );
        // One endless line ends at the byte bound, not at memory's end.
        let mut long = format!("{HEADER}\n# ").into_bytes();
        long.resize(max_list_bytes(1) as usize + 10, b'x');
        fs::write(&list, long).unwrap();
        let err = load_bounded(&list, 1).await.unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }
}
