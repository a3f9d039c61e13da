//! Bounds on what a registry or token server can ask of the client. Each
//! is a value a hostile or broken server controls; past it the client
//! clamps (a lifetime) or refuses with an error naming the bound.

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

/// Pages a tag or catalog listing follows. A registry that sends a new
/// `Link` every time would otherwise be followed forever.
pub const MAX_LIST_PAGES: usize = 10_000;

/// Entries (tags, repositories) one listing collects.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;
