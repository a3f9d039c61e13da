//! Bounds on what a registry or token server can ask of the client. Each
//! is a value a hostile or broken server controls; past it the client
//! clamps (a lifetime) or refuses with an error naming the bound. The
//! constants are fixed (no valid answer comes near them); [`Limits`] holds
//! those a user may raise, by name (`mirror --limit list-entries=N`).

use std::time::Duration;

/// The longest a token is kept, whatever `expires_in` or a JWT's `exp`
/// says: a day, the longest any registry hands out (ACR's refresh tokens
/// last about 3 hours). A larger value would also overflow `Instant`.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The largest `OCI-Chunk-Min-Length` a chunked upload honours. A chunk is
/// held in memory while it is sent, so a registry asking for more (up to
/// `u64::MAX`) is refused rather than allowed to make the client hold a
/// whole blob, or overflow an allocation.
pub const MAX_SERVER_CHUNK: u64 = 256 * 1024 * 1024;

/// The largest manifest or index read or written: distribution's own
/// limit, which registries enforce on push.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// The largest error body read (for its `errors` codes); the rest is
/// not read.
pub const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The largest token endpoint answer read.
pub const MAX_TOKEN_BODY: u64 = 1024 * 1024;

/// The largest page of a tag or catalog listing read.
pub const MAX_LIST_PAGE_BODY: u64 = 16 * 1024 * 1024;

/// The longest `Retry-After` obeyed (delta-seconds or an HTTP date). A
/// 429 or 503 asking for longer fails the request at once, naming the
/// wait and this bound, and pauses nobody: a registry saying "come back
/// in a year" must not hold the run, or the other requests to that host,
/// for as long as it asks.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// Pages a tag or catalog listing follows by default. A registry that
/// sends a new `Link` every time would otherwise be followed forever.
pub const MAX_LIST_PAGES: usize = 10_000;

/// Entries (tags, repositories) one listing collects by default.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

/// The bounds of the client a user may change. A large catalog (a
/// registry of millions of repositories) is the one legitimate reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `list-pages`: pages one tag or catalog listing follows.
    pub list_pages: usize,
    /// `list-entries`: entries one tag or catalog listing collects.
    pub list_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            list_pages: MAX_LIST_PAGES,
            list_entries: MAX_LIST_ENTRIES,
        }
    }
}

/// How an error names a bound that was reached: its name and value, and
/// how to raise it (in the words of the `mirror` command line, whose
/// `--limit` sets [`Limits`]; the engine names its own bounds the same way).
pub fn reached(name: &str, value: impl std::fmt::Display) -> String {
    format!("the limit {name} is {value}; raise it with --limit {name}=N if this is expected")
}
