//! The tar format as archives use it: 512-byte blocks, the GNU header this
//! crate writes (with a GNU long-name entry before names over 100 bytes,
//! which sha512 blobs have), and the entry names an OCI layout allows.
//! Nothing here knows about images.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};

use ::tar::{EntryType, Header};
use registry_client::{Digest, Hasher};

/// A tar block: headers and every entry's data are padded to it.
pub(super) const BLOCK: u64 = 512;
/// What ends an archive: two zero blocks.
pub(super) const END_OF_ARCHIVE: [u8; 2 * BLOCK as usize] = [0; 2 * BLOCK as usize];
pub(super) use crate::limits::{
    MAX_TAR_LONG_NAME as MAX_LONG_NAME, MAX_TAR_PAX_HEADER as MAX_PAX_HEADER,
};

/// `n` rounded up to whole blocks (saturating: a size from outside near
/// `u64::MAX` is refused by the caller, never wrapped).
pub(super) fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// What a PAX extended header says about the entry after it: the path
/// that replaces the header's name and the size that replaces its size.
/// Keys a reader of OCI layouts needs no other; sparse files are refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PaxOverrides {
    pub path: Option<Vec<u8>>,
    pub size: Option<u64>,
}

/// Parse the records (`LEN KEY=VALUE\n`) of a PAX extended header.
pub(super) fn pax_overrides(data: &[u8]) -> Result<PaxOverrides, String> {
    let mut out = PaxOverrides::default();
    for record in ::tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| format!("a malformed PAX header: {e}"))?;
        let key = record
            .key()
            .map_err(|_| "a PAX header key that is not UTF-8".to_string())?;
        match key {
            "path" => out.path = Some(record.value_bytes().to_vec()),
            "size" => {
                let size = record
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| "a PAX header whose size is not a number".to_string())?;
                out.size = Some(size);
            }
            k if k.starts_with("GNU.sparse.") => {
                return Err("a sparse file (PAX GNU.sparse); archives hold plain files".into())
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The zeros that pad `size` bytes of data to whole blocks.
pub(super) fn padding(size: u64) -> &'static [u8] {
    &[0u8; BLOCK as usize][..(round_up(size) - size) as usize]
}

/// The entry name a blob is stored under.
pub(super) fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// The digest a `blobs/<alg>/<hex>` name stands for.
pub(super) fn blob_digest(clean: &str) -> Option<Digest> {
    let rest = clean.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    let d = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    (d.hex() == hex).then_some(d)
}

/// An entry name without a leading `./`; absolute names, `..` and empty
/// components are refused.
pub(super) fn clean_name(name: &str) -> Result<String, String> {
    if name.starts_with('/') {
        return Err("has an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            ".." => return Err("climbs out with \"..\"".into()),
            "." | "" => {}
            p => parts.push(p),
        }
    }
    if name.contains('\\') {
        return Err("has a backslash in its name".into());
    }
    Ok(parts.join("/"))
}

/// The tar header (GNU format) for a regular file `name` of `size` bytes,
/// preceded by a GNU long-name entry when the name needs more than 100
/// bytes (sha512 blobs).
pub(super) fn header_bytes(name: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    let plain = |h: &mut Header| {
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
    };
    if name.len() > 100 {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        plain(&mut h);
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(name.len() as u64 + 1);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(round_up(out.len() as u64) as usize, 0);
    }
    let mut h = Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name.as_bytes()[..n]);
    plain(&mut h);
    h.set_entry_type(EntryType::Regular);
    h.set_size(size);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out
}

/// A regular file's header as read back: its name, the size of its data,
/// and how many bytes the header takes (with a long-name entry before it).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EntryHeader {
    pub name: String,
    pub size: u64,
    pub len: u64,
}

/// The header of a regular file at `pos` of a file of `len` bytes, read
/// the way [`header_bytes`] writes it; `None` when there is none whole
/// there (the end, a cut header, another kind of entry).
pub(super) fn read_header(
    file: &mut fs::File,
    pos: u64,
    len: u64,
) -> io::Result<Option<EntryHeader>> {
    if pos + BLOCK > len {
        return Ok(None);
    }
    let mut block = [0u8; BLOCK as usize];
    file.seek(SeekFrom::Start(pos))?;
    file.read_exact(&mut block)?;
    let header = Header::from_byte_slice(&block);
    match header.entry_type() {
        EntryType::GNULongName => {
            let Ok(n) = header.size() else {
                return Ok(None);
            };
            if n > MAX_LONG_NAME || pos + BLOCK + round_up(n) + BLOCK > len {
                return Ok(None);
            }
            let mut name = vec![0u8; n as usize];
            file.read_exact(&mut name)?;
            let header_len = BLOCK + round_up(n) + BLOCK;
            file.seek(SeekFrom::Start(pos + header_len - BLOCK))?;
            file.read_exact(&mut block)?;
            let Ok(size) = Header::from_byte_slice(&block).size() else {
                return Ok(None);
            };
            let name = String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(&name));
            Ok(Some(EntryHeader {
                name: name.into_owned(),
                size,
                len: header_len,
            }))
        }
        EntryType::Regular => {
            let Ok(size) = header.size() else {
                return Ok(None);
            };
            Ok(Some(EntryHeader {
                name: String::from_utf8_lossy(&header.path_bytes()).into_owned(),
                size,
                len: BLOCK,
            }))
        }
        _ => Ok(None),
    }
}

/// Where an entry's data lies in the tar.
#[derive(Debug, Clone)]
pub(super) struct Span {
    /// The name as the tar gives it, for messages.
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

impl Span {
    /// The entry's data, whole (for small entries).
    pub fn read(&self, file: &mut fs::File) -> io::Result<Vec<u8>> {
        file.seek(SeekFrom::Start(self.offset))?;
        let mut out = Vec::with_capacity(self.size as usize);
        file.take(self.size).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The sha256 of the entry's data, to compare two entries.
    pub fn hash(&self, file: &mut fs::File) -> io::Result<Digest> {
        file.seek(SeekFrom::Start(self.offset))?;
        let mut hasher = Hasher::new(registry_client::Algorithm::Sha256);
        hasher.update_from(file.take(self.size))?;
        Ok(hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn headers_read_back_as_written_long_names_included() {
        let short = blob_name(&Digest::sha256_of(b"a"));
        let long = blob_name(&Digest::of(registry_client::Algorithm::Sha512, b"a"));
        assert!(long.len() > 100);
        let mut f = tempfile::tempfile().unwrap();
        let mut at = Vec::new();
        for (name, size) in [(&short, 3u64), (&long, 700)] {
            at.push(f.stream_position().unwrap());
            f.write_all(&header_bytes(name, size)).unwrap();
            f.write_all(&vec![1u8; size as usize]).unwrap();
            f.write_all(padding(size)).unwrap();
        }
        let len = f.stream_position().unwrap();
        assert_eq!(len % BLOCK, 0);
        let first = read_header(&mut f, at[0], len).unwrap().unwrap();
        assert_eq!(
            first,
            EntryHeader {
                name: short,
                size: 3,
                len: BLOCK
            }
        );
        let second = read_header(&mut f, at[1], len).unwrap().unwrap();
        assert_eq!((second.name.as_str(), second.size), (long.as_str(), 700));
        assert_eq!(second.len, header_bytes(&long, 700).len() as u64);
        assert_eq!(at[1] + second.len + round_up(700), len);
        // The end, and a header cut short, are no headers.
        assert_eq!(read_header(&mut f, len, len).unwrap(), None);
        assert_eq!(
            read_header(&mut f, at[1], at[1] + BLOCK + 10).unwrap(),
            None
        );
    }

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean_name("./blobs/sha256/ab").unwrap(), "blobs/sha256/ab");
        assert_eq!(clean_name("index.json").unwrap(), "index.json");
        assert!(clean_name("/etc/x").unwrap_err().contains("absolute"));
        assert!(clean_name("blobs/../../x").unwrap_err().contains(".."));
        assert!(clean_name("a\\b").unwrap_err().contains("backslash"));
        let d = Digest::sha256_of(b"x");
        assert_eq!(blob_digest(&blob_name(&d)), Some(d.clone()));
        assert_eq!(
            blob_digest(&format!("blobs/sha256/{}", d.hex().to_uppercase())),
            None
        );
        assert_eq!(blob_digest("blobs/md5/00"), None);
        assert_eq!(padding(0).len(), 0);
        assert_eq!(padding(1).len(), 511);
    }
}
