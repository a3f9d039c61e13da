//! What a test finds on disk after `mirror` wrote there: the entries of a
//! tar, the files of a directory, the digests of a `.blobs` list.

use std::path::Path;

/// The entries of a tar, in order.
pub fn tar_entries(path: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// The names in a directory, sorted (not recursive).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The digests a `.blobs` list names, in its order.
pub fn listed_digests(list: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(list)
        .expect("reading a .blobs list")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}
