//! `--shard I/N`: N workers (a Kubernetes Indexed Job, say) split the images
//! between them deterministically: each image belongs to exactly one shard,
//! by a hash of its source and target, whatever order tags are listed in.

use std::fmt;
use std::str::FromStr;

use registry_client::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based, like `JOB_COMPLETION_INDEX`.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the image with this key (source and target) is this shard's.
    pub fn owns(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }
}

/// The shard (of `count`) a key belongs to: the first 8 bytes of its
/// SHA-256, modulo `count`. Stable across runs, machines and versions.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let d = Digest::sha256_of(key.as_bytes());
    let n = u64::from_str_radix(&d.hex()[..16], 16).expect("hex digest");
    (n % u64::from(count.max(1))) as u32
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard {s:?} must be I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_cover_every_key_once() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut per = [0usize; 3];
        for k in 0..300 {
            let key = format!("src/app:{k} dst/app:{k}");
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(&key)).collect();
            assert_eq!(owners.len(), 1);
            per[owners[0].index as usize] += 1;
        }
        assert!(per.iter().all(|n| *n > 60), "{per:?}");
        assert_eq!(shard_of("x", 1), 0);
    }
}
