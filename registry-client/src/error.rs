//! Typed errors. Each has a [`ErrorKind`] the engine acts on (retry, stop,
//! report), and a message that names the method, a redacted URL and the
//! registry's own error codes.

use std::fmt;
use std::time::Duration;

use crate::digest::Digest;

/// What the caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the user: a reference, digest, config value.
    InvalidInput,
    /// A transient failure worth retrying: connection, timeout, 408, 429, 5xx.
    Retryable,
    /// Credentials missing or refused, or access denied.
    Auth,
    /// The manifest, blob, repository or upload session does not exist.
    NotFound,
    /// Bytes whose size or digest differ from what was expected.
    Integrity,
    /// The server answered something the protocol does not allow.
    Protocol,
    /// Larger than a limit (manifest cap, request body refused).
    TooLarge,
    /// A valid but unsupported thing (Docker schema 1).
    Unsupported,
    /// Local I/O or configuration.
    Local,
}

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The registry's error list, printed as `CODE: message; CODE: message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiErrors(pub Vec<ApiError>);

impl ApiErrors {
    pub(crate) fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<ApiError>,
        }
        ApiErrors(
            serde_json::from_slice::<Body>(body)
                .map(|b| b.errors)
                .unwrap_or_default(),
        )
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for ApiErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.code, e.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error("saved hasher state is unusable")]
    InvalidHasherState,

    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },

    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error("{method} {url}: HTTP {status}{}", codes_suffix(.codes))]
    Status {
        method: String,
        url: String,
        status: u16,
        codes: ApiErrors,
        retry_after: Option<Duration>,
    },

    #[error("authentication to {registry} failed: {reason} ({method} {url})")]
    Auth {
        registry: String,
        method: String,
        url: String,
        reason: String,
    },

    /// The message carries the cause chain: reqwest's own says only
    /// "error sending request", the cause says what was wrong (a closed
    /// connection, bytes that are not HTTP, a body cut short).
    #[error("{method} {url}: {}", with_causes(source))]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server said nothing for this long (see `ClientConfig::read_timeout`).
    #[error("{method} {url}: the server sent nothing for {after:?}")]
    Timeout {
        method: String,
        url: String,
        after: Duration,
    },

    #[error("{method} {url}: {reason}")]
    Protocol {
        method: String,
        url: String,
        reason: String,
    },

    #[error("{what} from {url} is larger than the {limit}-byte limit")]
    TooLarge {
        what: String,
        url: String,
        limit: u64,
    },

    /// A count a server controls went past a bound: `bound` names it and
    /// how to raise it ([`crate::limits::reached`]).
    #[error("{what} from {url}: {bound}")]
    Exceeded {
        what: String,
        url: String,
        bound: String,
    },

    #[error("{what}: {reason}")]
    Unsupported { what: String, reason: String },

    #[error("{context}: {reason}")]
    Config { context: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// `error` and each of its sources, `: `-separated, repeats left out.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
        next = cause.source();
    }
    out
}

fn codes_suffix(codes: &ApiErrors) -> String {
    if codes.0.is_empty() {
        String::new()
    } else {
        format!(" ({codes})")
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference { .. } | Error::InvalidDigest { .. } => ErrorKind::InvalidInput,
            Error::InvalidHasherState => ErrorKind::Local,
            Error::SizeMismatch { .. } | Error::DigestMismatch { .. } => ErrorKind::Integrity,
            Error::Status { status, .. } => kind_of_status(*status),
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Transport { source, .. } => {
                if source.is_builder() || source.is_redirect() {
                    ErrorKind::Protocol
                } else {
                    ErrorKind::Retryable
                }
            }
            Error::Timeout { .. } => ErrorKind::Retryable,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::TooLarge { .. } | Error::Exceeded { .. } => ErrorKind::TooLarge,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Config { .. } | Error::Io { .. } => ErrorKind::Local,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// The HTTP status, for errors that came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn config(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            context: context.into(),
            reason: reason.into(),
        }
    }
}

pub(crate) fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        408 | 429 | 500..=599 => ErrorKind::Retryable,
        413 => ErrorKind::TooLarge,
        _ => ErrorKind::Protocol,
    }
}

/// A URL safe to print: no user info, and query values replaced unless they
/// are known to be harmless (upload `_state`, storage signatures and tokens
/// are not).
pub fn redact_url(url: &url::Url) -> String {
    const SAFE: &[&str] = &[
        "digest",
        "mount",
        "from",
        "n",
        "last",
        "service",
        "scope",
        "artifactType",
    ];
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SAFE.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    "REDACTED".to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_and_secret_query_values() {
        let u = url::Url::parse(
            "https://user:pw@acct.blob.core.windows.net/x?sig=SECRETSIG&se=2026&digest=sha256:ab&_state=STATE",
        )
        .unwrap();
        let r = redact_url(&u);
        assert!(
            !r.contains("SECRETSIG") && !r.contains("STATE") && !r.contains("pw"),
            "{r}"
        );
        assert!(r.contains("digest=sha256%3Aab"), "{r}");
    }

    #[test]
    fn status_errors_carry_codes_and_kind() {
        let e = Error::Status {
            method: "GET".into(),
            url: "http://r/v2/x/manifests/t".into(),
            status: 404,
            codes: ApiErrors::parse(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            retry_after: None,
        };
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "GET http://r/v2/x/manifests/t: HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(kind_of_status(429), ErrorKind::Retryable);
        assert_eq!(kind_of_status(503), ErrorKind::Retryable);
        assert_eq!(kind_of_status(401), ErrorKind::Auth);
    }
}
