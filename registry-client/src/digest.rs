//! Content digests (`sha256:<hex>`, `sha512:<hex>`), a hasher whose state can
//! be saved and resumed, and the size-and-digest check every blob read ends with.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::Error;

/// The digest algorithms the OCI image spec registers. Anything else is
/// refused before it can become part of a path or URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the one every registry uses.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name as written in a digest (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: a known algorithm and lower-case hex of the right
/// length, so it is safe to put in a path or URL. Prints as it parses.
/// Clones share the hex: a run keeps a blob's digest in its ledger, its
/// tally and its reports, tens of thousands of them on a large sync.
///
/// ```
/// use registry_client::{Algorithm, Digest};
///
/// let d = Digest::sha256_of(b"abc");
/// assert_eq!(
///     d.to_string(),
///     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// assert_eq!(Digest::parse(&d.to_string())?, d);
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
///
/// // Upper-case hex, unknown algorithms and wrong lengths are refused.
/// assert!(Digest::parse("sha256:BA7816BF").is_err());
/// assert!(Digest::parse("md5:900150983cd24fb0d6963f7d28e17f72").is_err());
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: Arc<str>,
}

impl Digest {
    /// Parse `<algorithm>:<hex>`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDigest`], naming the input: no `:`, an algorithm
    /// other than `sha256` and `sha512`, hex of the wrong length or not
    /// lower-case.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected <algorithm>:<hex>"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(invalid("unsupported algorithm (only sha256 and sha512)")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(&format!(
                "{} needs {} hex characters, got {}",
                algorithm.name(),
                algorithm.hex_len(),
                hex.len()
            )));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("hex must be lower-case 0-9a-f"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.into(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, data)
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, after the `:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// An incremental hasher that counts bytes and can be saved mid-stream
/// ([`Hasher::save`]) so a resumed transfer need not re-read what it has.
///
/// ```
/// use registry_client::{Algorithm, Digest, Hasher, SavedHasher};
///
/// let mut h = Hasher::new(Algorithm::Sha256);
/// h.update(b"first half, ");
/// // Persist the state (a file next to the partial download), and later…
/// let text = h.save().to_hex();
/// let mut resumed = Hasher::restore(&SavedHasher::from_hex(&text)?)?;
/// resumed.update(b"second half");
/// assert_eq!(resumed.len(), 23);
/// assert_eq!(resumed.finish(), Digest::sha256_of(b"first half, second half"));
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Hasher {
    state: State,
    len: u64,
}

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        Hasher { state, len: 0 }
    }

    /// The algorithm it hashes with.
    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Hash more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
        self.len += data.len() as u64;
    }

    /// Hash everything `reader` yields, in 256 KiB reads.
    ///
    /// # Errors
    ///
    /// The reader's.
    pub fn update_from(&mut self, mut reader: impl std::io::Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(()),
                n => self.update(&buf[..n]),
            }
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has hashed nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of every byte hashed.
    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let bytes: Vec<u8> = match self.state {
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        };
        Digest {
            algorithm,
            hex: to_hex(&bytes).into(),
        }
    }

    /// The hasher's state as bytes: algorithm, length, and the inner state.
    pub fn save(&self) -> SavedHasher {
        let mut out = Vec::new();
        out.push(match self.state {
            State::Sha256(_) => 1u8,
            State::Sha512(_) => 2u8,
        });
        out.extend_from_slice(&self.len.to_le_bytes());
        match &self.state {
            State::Sha256(h) => out.extend_from_slice(&h.serialize()),
            State::Sha512(h) => out.extend_from_slice(&h.serialize()),
        }
        SavedHasher(out)
    }

    /// Restore a state made by [`Hasher::save`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHasherState`] for bytes that are not such a state
    /// (truncated, another version's, or counts that do not add up), so a
    /// damaged file is refused rather than finishing to a wrong digest.
    pub fn restore(saved: &SavedHasher) -> Result<Self, Error> {
        let bad = || Error::InvalidHasherState;
        let bytes = &saved.0;
        if bytes.len() < 9 {
            return Err(bad());
        }
        let len = u64::from_le_bytes(bytes[1..9].try_into().map_err(|_| bad())?);
        let inner = &bytes[9..];
        let state = match bytes[0] {
            1 => State::Sha256(
                Sha256::deserialize(inner.try_into().map_err(|_| bad())?).map_err(|_| bad())?,
            ),
            2 => State::Sha512(
                Sha512::deserialize(inner.try_into().map_err(|_| bad())?).map_err(|_| bad())?,
            ),
            _ => return Err(bad()),
        };
        // The inner state counts its own blocks and buffered bytes (sha2
        // 0.11: the words, the block count, then the buffer's position).
        // They must make `len`, and `len` must count in bits, or finishing
        // overflows (a panic in debug builds, a wrong digest in release).
        let (blocks, pos, block) = match bytes[0] {
            1 => (inner.get(32..40), inner.get(40), 64u128),
            _ => (inner.get(64..80), inner.get(80), 128u128),
        };
        let (blocks, pos) = blocks.zip(pos).ok_or_else(bad)?;
        let mut count = [0u8; 16];
        count[..blocks.len()].copy_from_slice(blocks);
        let counted = u128::from_le_bytes(count)
            .checked_mul(block)
            .and_then(|n| n.checked_add(u128::from(*pos)));
        if counted != Some(u128::from(len)) || len > u64::MAX / 8 {
            return Err(bad());
        }
        Ok(Hasher { state, len })
    }
}

/// A saved hasher state (see [`Hasher::save`]); opaque bytes to persist.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedHasher(
    /// The bytes: the algorithm, the length and the hash's inner state.
    /// [`Hasher::restore`] checks them.
    pub Vec<u8>,
);

impl SavedHasher {
    /// The state as lowercase hex, for text files.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Read a state written by [`SavedHasher::to_hex`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHasherState`] for text that is not hex.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let text = text.as_bytes();
        if !text.len().is_multiple_of(2) {
            return Err(Error::InvalidHasherState);
        }
        let nibble = |c: u8| (c as char).to_digit(16).ok_or(Error::InvalidHasherState);
        text.chunks(2)
            .map(|p| Ok((nibble(p[0])? << 4 | nibble(p[1])?) as u8))
            .collect::<Result<Vec<u8>, Error>>()
            .map(SavedHasher)
    }
}

impl fmt::Debug for SavedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SavedHasher({} bytes)", self.0.len())
    }
}

/// Checks a stream of bytes against an expected digest and (optional) size.
/// Feed it every chunk; it fails as soon as the size is exceeded and at the
/// end if the size or digest differ, naming both values.
///
/// ```
/// use registry_client::{Digest, ErrorKind, Verifier};
///
/// let blob = b"layer bytes";
/// let mut v = Verifier::new(Digest::sha256_of(blob), Some(blob.len() as u64));
/// v.update(&blob[..5])?;
/// v.update(&blob[5..])?;
/// assert_eq!(v.finish()?, Digest::sha256_of(blob));
///
/// // One byte too many fails at once, naming both sizes.
/// let mut v = Verifier::new(Digest::sha256_of(blob), Some(blob.len() as u64));
/// let err = v.update(b"layer bytes!").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Integrity);
/// assert!(err.to_string().contains("expected 11 bytes, got 12"));
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Hasher,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({}, {} bytes)", self.algorithm().name(), self.len)
    }
}

impl Verifier {
    /// A verifier of bytes that must hash to `expected` and, when given,
    /// be `expected_size` long.
    pub fn new(expected: Digest, expected_size: Option<u64>) -> Self {
        let hasher = Hasher::new(expected.algorithm());
        Verifier {
            expected,
            expected_size,
            hasher,
        }
    }

    /// Continue from a hasher that has already seen the first bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHasherState`] when the hasher's algorithm is not
    /// the digest's.
    pub fn resume(
        expected: Digest,
        expected_size: Option<u64>,
        hasher: Hasher,
    ) -> Result<Self, Error> {
        if hasher.algorithm() != expected.algorithm() {
            return Err(Error::InvalidHasherState);
        }
        Ok(Verifier {
            expected,
            expected_size,
            hasher,
        })
    }

    /// Hash more bytes. Fails as soon as the size is exceeded, and — when
    /// the size is known — at the last byte if the digest is wrong, so a
    /// consumer that stops reading at the expected length (an HTTP body of
    /// known length) still sees the error before it commits anything.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`] past the size, [`Error::DigestMismatch`] at
    /// its last byte.
    pub fn update(&mut self, data: &[u8]) -> Result<(), Error> {
        self.hasher.update(data);
        if let Some(size) = self.expected_size {
            let len = self.hasher.len();
            if len > size {
                return Err(Error::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: len,
                });
            }
            if len == size && !data.is_empty() {
                let actual = self.hasher.clone().finish();
                if actual != self.expected {
                    return Err(Error::DigestMismatch {
                        expected: self.expected.clone(),
                        actual,
                    });
                }
            }
        }
        Ok(())
    }

    /// Bytes seen so far.
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    /// The hasher as it stands, to save for a later resume.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The digest the bytes must hash to.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Check size and digest once every byte has been seen; the digest on
    /// success.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`] or [`Error::DigestMismatch`], naming the
    /// expected and the actual value.
    pub fn finish(self) -> Result<Digest, Error> {
        let len = self.hasher.len();
        if let Some(size) = self.expected_size {
            if len != size {
                return Err(Error::SizeMismatch {
                    digest: self.expected,
                    expected: size,
                    actual: len,
                });
            }
        }
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(actual)
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC256: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn saved_state_survives_hex() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"part of a blob");
        let text = h.save().to_hex();
        let back = Hasher::restore(&SavedHasher::from_hex(&text).unwrap()).unwrap();
        assert_eq!(back.finish(), h.finish());
        assert!(SavedHasher::from_hex("abc").is_err());
        assert!(SavedHasher::from_hex("zz").is_err());
    }

    #[test]
    fn parses_and_prints_sha256_and_sha512() {
        let d = Digest::parse(ABC256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), ABC256);
        assert_eq!(Digest::sha256_of(b"abc"), d);
        let d512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(&d512.to_string()).unwrap(), d512);
        assert!(d512.hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn clones_share_the_hex_and_still_compare_by_value() {
        let d = Digest::parse(ABC256).unwrap();
        let c = d.clone();
        assert_eq!(c.hex().as_ptr(), d.hex().as_ptr());
        // A digest parsed again is another allocation, equal and hashed alike.
        let again = Digest::parse(ABC256).unwrap();
        assert_ne!(again.hex().as_ptr(), d.hex().as_ptr());
        let set: std::collections::HashSet<Digest> = [d, again].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn refuses_unknown_algorithms_bad_hex_and_path_tricks() {
        for bad in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:ABC",
            "sha256:../../etc/passwd",
            &ABC256.to_uppercase(),
            "sha256",
            &format!("{ABC256}0"),
            "blake3:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    /// Found by fuzz/fuzz_targets/digest.rs: a state whose block count
    /// disagrees with its length (here: near u64::MAX blocks) restored,
    /// and finishing it overflowed inside sha2.
    #[test]
    fn a_saved_state_that_miscounts_is_refused() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = Hasher::new(alg);
            h.update(&[7u8; 300]);
            let good = h.save();
            assert!(Hasher::restore(&good).is_ok());
            let (at, width) = match alg {
                Algorithm::Sha256 => (9 + 32, 8),
                Algorithm::Sha512 => (9 + 64, 16),
            };
            let mut forged = good.0.clone();
            forged[at..at + width].fill(0xff);
            assert!(Hasher::restore(&SavedHasher(forged)).is_err());
            let mut longer = good.0.clone();
            longer[1..9].copy_from_slice(&301u64.to_le_bytes());
            assert!(Hasher::restore(&SavedHasher(longer)).is_err());
        }
        // The input the fuzzer found, as hex.
        let found = SavedHasher::from_hex(concat!(
            "0123456789a789abcdef0123228394abcd0123456789abcdef0123456789abcd",
            "ef0123456789abcdef0123456789abcdef000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000",
        ))
        .unwrap();
        assert!(Hasher::restore(&found).is_err());
    }

    #[test]
    fn saved_hasher_resumes_to_the_same_digest() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = Hasher::new(alg);
            h.update(b"hello ");
            let saved = h.save();
            let mut resumed = Hasher::restore(&saved).unwrap();
            assert_eq!(resumed.len(), 6);
            resumed.update(b"world");
            assert_eq!(resumed.finish(), Digest::of(alg, b"hello world"));
        }
        assert!(Hasher::restore(&SavedHasher(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn verifier_names_expected_and_actual_values() {
        let expected = Digest::sha256_of(b"abc");
        let mut v = Verifier::new(expected.clone(), Some(3));
        v.update(b"ab").unwrap();
        // The last byte brings the error, before the stream's end.
        let msg = v.update(b"d").unwrap_err().to_string();
        assert!(msg.contains(&expected.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::sha256_of(b"abd").to_string()),
            "{msg}"
        );

        let mut v = Verifier::new(expected.clone(), Some(3));
        let err = v.update(b"abcd").unwrap_err().to_string();
        assert!(err.contains("expected 3") && err.contains("4"), "{err}");

        let mut v = Verifier::new(expected.clone(), Some(3));
        v.update(b"ab").unwrap();
        let err = v.finish().unwrap_err().to_string();
        assert!(err.contains("expected 3") && err.contains("got 2"), "{err}");

        let mut v = Verifier::new(expected, Some(3));
        v.update(b"abc").unwrap();
        v.finish().unwrap();
    }
}
