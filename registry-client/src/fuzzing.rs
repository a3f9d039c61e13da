//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`;
//! not part of the API). Each takes the raw bytes a registry, a user or a
//! file could hand us, feeds them to the parser the client uses, and
//! asserts what must hold beyond "no panic". Nothing here touches the
//! network.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::auth::{Challenge, CredentialStore, DockerConfig, Scopes};
use crate::digest::{Digest, Hasher, SavedHasher};
use crate::reference::{Reference, Repository};
use crate::retry::{parse_retry_after, RetryPolicy};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Image references: a reference that parses prints as one that parses to
/// the same thing, and so does a repository.
pub fn reference(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let shown = r.to_string();
        let again = Reference::parse(&shown)
            .unwrap_or_else(|e| panic!("{s:?} parsed, but its display {shown:?} does not: {e}"));
        assert_eq!(r, again, "{s:?} → {shown:?} parses to another reference");
        let _ = (r.manifest_ref(), r.repository().api_host());
    }
    if let Ok(repo) = Repository::parse(s) {
        let shown = repo.to_string();
        let again = Repository::parse(&shown)
            .unwrap_or_else(|e| panic!("{s:?} parsed, but its display {shown:?} does not: {e}"));
        assert_eq!(
            repo, again,
            "{s:?} → {shown:?} parses to another repository"
        );
    }
}

/// Digests print exactly as written (the grammar admits one spelling),
/// and a saved hasher state (a spool's) restores or fails cleanly.
pub fn digest(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s, "a digest prints as it was written");
        assert_eq!(Digest::parse(&d.to_string()).ok(), Some(d));
    }
    if let Ok(saved) = SavedHasher::from_hex(s.trim()) {
        if let Ok(h) = Hasher::restore(&saved) {
            let _ = h.finish();
        }
    }
    let _ = Hasher::restore(&SavedHasher(data.to_vec())).map(Hasher::finish);
}

/// `WWW-Authenticate`, and the scopes a Bearer challenge asks for: the
/// scopes print as items that parse back to the same items.
pub fn challenge(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Some(Challenge::Bearer { realm, scope, .. }) = Challenge::parse(s) {
        let _ = Url::parse(&realm);
        if let Some(scope) = scope {
            let scopes = Scopes::parse(&scope);
            let items = scopes.items();
            assert_eq!(
                Scopes::parse(&items.join(" ")).items(),
                items,
                "scopes {scope:?} do not survive printing"
            );
        }
    }
}

/// A blob GET's `Content-Range` and an upload status's `Range`.
pub fn content_range(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Some(start) = crate::blob::parse_content_range_start(s) {
        // `bytes START-END/TOTAL`: a range accepted as starting at START
        // must not end before it.
        let rest = s.trim().strip_prefix("bytes").unwrap_or(s).trim();
        if let Some(end) = rest
            .split_once('-')
            .and_then(|(_, e)| e.split('/').next())
            .and_then(|e| e.trim().parse::<u64>().ok())
        {
            assert!(
                start <= end,
                "{s:?} accepted as starting at {start}, after its end {end}"
            );
        }
    }
    if let Some(held) = crate::upload::parse_range_end(s) {
        // What the session holds continues the upload at `held`.
        let _ = held;
    }
}

/// A listing's `Link` header, joined to the page URL as the pager does.
pub fn link(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Some(next) = crate::tags::next_link(s) {
        assert!(s.contains(&next));
        let base = Url::parse("https://r.example/v2/a/tags/list?n=100").expect("a URL");
        let _ = base.join(&next);
    }
}

/// `Retry-After` in both forms; the pause it sets is clamped the way the
/// client clamps it, so it cannot overflow an `Instant`.
pub fn retry_after(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let policy = RetryPolicy::default();
    for now in [
        SystemTime::now(),
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(1 << 40),
    ] {
        if let Some(wait) = parse_retry_after(s, now) {
            let _ = Instant::now() + wait.min(policy.max_retry_after);
        }
    }
}

/// Docker's `config.json`, and the credential it gives each registry it
/// names. Credential helpers are looked for in a directory that does not
/// exist, so none runs.
pub fn docker_config(data: &[u8]) {
    let Ok(config) = DockerConfig::parse(Path::new("/nonexistent/config.json"), data) else {
        return;
    };
    let config = config.with_helper_dir("/nonexistent/mirror-fuzz-helpers");
    let mut registries = vec![
        "docker.io".to_string(),
        "r.example".to_string(),
        "localhost:5000".to_string(),
    ];
    if let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(data) {
        for key in ["auths", "credHelpers"] {
            if let Some(serde_json::Value::Object(map)) = top.get(key) {
                registries.extend(map.keys().take(8).cloned());
            }
        }
    }
    for r in registries {
        let _ = config.credential(&r).map(|c| c.describe());
    }
}
