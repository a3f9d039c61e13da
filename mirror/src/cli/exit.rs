//! Exit codes, documented in the README so scripts can act on them.

/// Everything asked for was done.
pub const OK: i32 = 0;
/// Some images failed; the others were done.
pub const FAILED: i32 = 1;
/// Bad arguments, references or configuration; nothing was copied.
pub const USAGE: i32 = 2;
/// Authentication failed (credentials missing or refused).
pub const AUTH: i32 = 3;
/// Another run holds the lock (`copy`: the state directory; `sync`: the
/// config's lock or the state directory): nothing was done.
pub const LOCKED: i32 = 4;
/// `mirror sync --changes-exit-code 5`, the code the README suggests:
/// everything succeeded and something was copied (with `--dry-run`: would
/// be). Internally, the report's "changes made" before `--changes-exit-code`
/// maps it (default 0: a success is a success).
pub const CHANGED: i32 = 5;
/// Interrupted (Ctrl-C, SIGINT): stopped cleanly; nothing partial is visible.
pub const INTERRUPTED: i32 = 130;
