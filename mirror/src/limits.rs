//! Every bound on what comes from outside, in one place. A registry, a
//! bundle, a layout or a config file controls sizes, counts and times;
//! each has a bound here (or, for the HTTP client, in
//! [`registry_client::limits`], listed here too), and reaching one is an
//! error that names it and how to raise it, never a hang, a panic or
//! memory that grows with the input.
//!
//! Some bounds a user may raise (`--limit NAME=VALUE`, or `limits:` in a
//! sync config): real inputs can be large there (a registry of millions
//! of repositories, an image of tens of thousands of layers). The others
//! are fixed, far above any valid input. [`table`] lists them all, for
//! the README and `--help`.
//!
//! The bounds a user may raise are a property of the run: the command
//! line sets them once with [`set`] before any work starts, and the
//! library reads them with [`get`] wherever it has no explicit value (a
//! caller of the library may pass [`crate::graph::Bounds`] itself).

use std::sync::RwLock;
use std::time::Duration;

use registry_client::limits as client;

use crate::graph::Bounds;

/// The largest `index.json` or `oci-layout` read from a layout or bundle
/// (about 250,000 images).
pub const MAX_INDEX_JSON: u64 = 64 * 1024 * 1024;
/// The longest GNU long name in a bundle's tar (blob names are ~140 bytes).
pub const MAX_TAR_LONG_NAME: u64 = 4096;
/// The largest PAX extended header in a bundle's tar.
pub const MAX_TAR_PAX_HEADER: u64 = 64 * 1024;
/// Bytes allowed after a bundle's last entry: the end-of-archive blocks
/// and a tar writer's padding to its record size (GNU tar: 10 KiB).
pub const MAX_TAR_TAIL: u64 = 64 * 1024;
/// The largest file a `password_file:` of a sync config names.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The bounds a user may raise, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `index-depth`, `image-manifests`, `image-blobs`, `blob-bytes`.
    pub graph: Bounds,
    /// `list-pages`, `list-entries`.
    pub client: client::Limits,
    /// `archive-entries`: tar entries a bundle may hold (GNU long-name and
    /// PAX headers counted), since its index is held in memory.
    pub archive_entries: usize,
    /// `config-bytes`: the largest sync config or skopeo sync file read.
    pub config_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            graph: Bounds::default(),
            client: client::Limits::default(),
            archive_entries: 1_000_000,
            config_bytes: 1024 * 1024,
        }
    }
}

static RUN: RwLock<Option<Limits>> = RwLock::new(None);

/// The run's limits: those [`set`] gave, else the defaults.
pub fn get() -> Limits {
    RUN.read()
        .map(|l| *l)
        .unwrap_or_else(|p| *p.into_inner())
        .unwrap_or_default()
}

/// Set the run's limits, before its work starts (the command line sets
/// them from its flags, `mirror sync` again once its config is read).
pub fn set(limits: Limits) {
    match RUN.write() {
        Ok(mut l) => *l = Some(limits),
        Err(p) => *p.into_inner() = Some(limits),
    }
}

/// The names [`Limits::set`] takes.
pub const NAMES: &[&str] = &[
    "index-depth",
    "image-manifests",
    "image-blobs",
    "blob-bytes",
    "list-pages",
    "list-entries",
    "archive-entries",
    "config-bytes",
];

impl Limits {
    /// Apply one `NAME=VALUE` (a count, or a size such as `8M` for
    /// `config-bytes`).
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting:?} is not NAME=VALUE (e.g. image-blobs=200000)"))?;
        self.set(name.trim(), value.trim())
    }

    /// Set the bound `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let bytes = match name {
            "config-bytes" => Some(&mut self.config_bytes),
            "blob-bytes" => Some(&mut self.graph.blob_bytes),
            _ => None,
        };
        if let Some(slot) = bytes {
            *slot =
                crate::units::parse_size(value).map_err(|e| format!("the limit {name}: {e}"))?;
            return Ok(());
        }
        let n: usize = value
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("the limit {name}: {value:?} is not a positive count"))?;
        let slot = match name {
            "index-depth" => &mut self.graph.depth,
            "image-manifests" => &mut self.graph.manifests,
            "image-blobs" => &mut self.graph.blobs,
            "list-pages" => &mut self.client.list_pages,
            "list-entries" => &mut self.client.list_entries,
            "archive-entries" => &mut self.archive_entries,
            _ => {
                return Err(format!(
                    "no limit is named {name:?} (limits: {})",
                    NAMES.join(", ")
                ))
            }
        };
        *slot = n;
        Ok(())
    }

    /// The value of the bound `name`, as [`Limits::set`] takes it.
    pub fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "index-depth" => self.graph.depth.to_string(),
            "image-manifests" => self.graph.manifests.to_string(),
            "image-blobs" => self.graph.blobs.to_string(),
            "list-pages" => self.client.list_pages.to_string(),
            "list-entries" => self.client.list_entries.to_string(),
            "archive-entries" => self.archive_entries.to_string(),
            "config-bytes" => size(self.config_bytes),
            "blob-bytes" => size(self.graph.blob_bytes),
            _ => return None,
        })
    }
}

/// How an error names the bound `name` it reached: with how to raise it
/// when a user may.
pub fn named(name: &str, value: impl std::fmt::Display) -> String {
    if NAMES.contains(&name) {
        client::reached(name, value)
    } else {
        format!("the fixed limit {name} is {value}")
    }
}

/// A small text file read whole, refused past `max` bytes (`limit` names
/// the bound in the error) without reading more than that: a config that
/// is a symlink to `/dev/zero` ends at the bound.
pub fn read_text(path: &std::path::Path, max: u64, limit: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "larger than {} bytes ({})",
            size(max),
            named(limit, size(max))
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// One bound as the README's table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The name `--limit` takes, or a short label for a fixed bound.
    pub name: &'static str,
    pub default: String,
    /// What is bounded.
    pub what: &'static str,
    /// How to change it.
    pub change: &'static str,
}

/// Every bound, those a user may raise first.
pub fn table() -> Vec<Bound> {
    let d = Limits::default();
    let settable = |name: &'static str, what: &'static str| Bound {
        name,
        default: d.value(name).unwrap_or_default(),
        what,
        change: "--limit, limits:",
    };
    let fixed = |name: &'static str, default: String, what: &'static str| Bound {
        name,
        default,
        what,
        change: "fixed",
    };
    let retry = registry_client::RetryPolicy::default();
    vec![
        settable("index-depth", "indexes nested in indexes"),
        settable("image-manifests", "manifests and indexes in one image"),
        settable("image-blobs", "configs and layers in one image"),
        settable(
            "blob-bytes",
            "the size one config or layer descriptor may claim",
        ),
        settable("list-pages", "pages of one tag or catalog listing"),
        settable("list-entries", "tags or repositories in one listing"),
        settable(
            "archive-entries",
            "tar entries in a bundle (long-name and PAX headers counted); blobs in a .blobs list",
        ),
        Bound {
            change: "--limit",
            ..settable("config-bytes", "a sync config or skopeo sync file")
        },
        fixed(
            "manifest-bytes",
            size(client::MAX_MANIFEST_SIZE),
            "one manifest or index (distribution's own limit)",
        ),
        fixed(
            "index-json-bytes",
            size(MAX_INDEX_JSON),
            "a layout's or bundle's index.json and oci-layout",
        ),
        fixed(
            "list-page-bytes",
            size(client::MAX_LIST_PAGE_BODY),
            "one page of a tag or catalog listing",
        ),
        fixed(
            "token-bytes",
            size(client::MAX_TOKEN_BODY),
            "a token endpoint's answer",
        ),
        fixed(
            "error-body-bytes",
            size(client::MAX_ERROR_BODY),
            "an error answer's body (read for its codes; the rest is not read)",
        ),
        fixed(
            "token-lifetime",
            duration(client::MAX_TOKEN_LIFETIME),
            "a token's expires_in or JWT exp (clamped, not refused)",
        ),
        fixed(
            "retry-after",
            duration(retry.max_retry_after),
            "a Retry-After obeyed; a longer one fails the request",
        ),
        fixed(
            "server-chunk",
            size(client::MAX_SERVER_CHUNK),
            "an OCI-Chunk-Min-Length honoured (a chunk is held in memory)",
        ),
        fixed(
            "redirects",
            client::MAX_REDIRECTS.to_string(),
            "redirects followed for one request",
        ),
        fixed(
            "tar-long-name",
            size(MAX_TAR_LONG_NAME),
            "a GNU long name in a bundle",
        ),
        fixed(
            "tar-pax-header",
            size(MAX_TAR_PAX_HEADER),
            "a PAX extended header in a bundle",
        ),
        fixed(
            "tar-tail",
            size(MAX_TAR_TAIL),
            "zero padding after a bundle's last entry",
        ),
        fixed(
            "secret-file-bytes",
            size(MAX_SECRET_FILE),
            "a password_file: of a sync config",
        ),
        Bound {
            change: "--read-timeout",
            ..fixed(
                "read-timeout",
                duration(registry_client::ClientConfig::default().read_timeout),
                "silence from a server (no answer, no body byte)",
            )
        },
    ]
}

/// A size as `--limit` and the table write it (`4M`, `64K`).
pub fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 40 && n % (1 << 40) == 0 => format!("{}T", n >> 40),
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

fn duration(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_change_their_bound_and_bad_ones_are_named() {
        let mut l = Limits::default();
        l.apply("image-blobs=200000").unwrap();
        l.apply("config-bytes=8M").unwrap();
        assert_eq!(l.graph.blobs, 200_000);
        assert_eq!(l.config_bytes, 8 << 20);
        let err = l.apply("image-blob=1").unwrap_err();
        assert!(
            err.contains("image-blob") && err.contains("image-blobs"),
            "{err}"
        );
        assert!(l.apply("list-pages=0").unwrap_err().contains("positive"));
        assert!(l.apply("list-pages").unwrap_err().contains("NAME=VALUE"));
    }

    #[test]
    fn every_settable_name_reads_back_and_is_in_the_table() {
        let l = Limits::default();
        let table = table();
        for name in NAMES {
            let mut copy = l;
            copy.set(name, &l.value(name).unwrap()).unwrap();
            assert_eq!(copy, l, "{name} reads back as it is set");
            assert!(table.iter().any(|b| b.name == *name), "{name} in the table");
        }
    }

    #[test]
    fn the_readme_table_shows_every_bound_with_its_default() {
        let readme = include_str!("../../README.md");
        for b in table() {
            let row = format!("| `{}` | {} |", b.name, b.default);
            assert!(readme.contains(&row), "README lacks the row {row:?}");
        }
    }
}
