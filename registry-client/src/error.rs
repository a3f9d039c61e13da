//! Typed errors. Each has a [`ErrorKind`] the engine acts on (retry, stop,
//! report), and a message that names the method, a redacted URL and the
//! registry's own error codes.

use std::fmt;
use std::time::Duration;

use crate::digest::Digest;

/// What the caller can do about an error: the one question most callers
/// ask of it ([`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// An error code of the OCI distribution spec, as a registry sends it in
/// the `code` member of an error body (`{"errors": [{"code": …}]}`).
///
/// Codes the spec does not list (`TAG_INVALID`, a registry's own) are
/// kept as [`ErrorCode::Other`]; [`ErrorCode::as_str`] and `Display` give
/// back the text as the registry wrote it.
///
/// ```
/// use registry_client::ErrorCode;
///
/// assert_eq!(ErrorCode::parse("MANIFEST_UNKNOWN"), ErrorCode::ManifestUnknown);
/// assert_eq!(ErrorCode::parse("TAG_INVALID"), ErrorCode::Other("TAG_INVALID".into()));
/// assert_eq!(ErrorCode::TooManyRequests.to_string(), "TOOMANYREQUESTS");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: the blob is not in the repository.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`: the upload failed or its chunks were out of order.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`: no such upload session (expired or cancelled).
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: the content does not match the digest given.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`: a manifest references a blob the
    /// repository does not have.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`: the manifest failed the registry's validation.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`: no manifest under that tag or digest.
    ManifestUnknown,
    /// `NAME_INVALID`: the repository name is not valid.
    NameInvalid,
    /// `NAME_UNKNOWN`: the repository is not known to the registry.
    NameUnknown,
    /// `SIZE_INVALID`: the content length does not match the size given.
    SizeInvalid,
    /// `UNAUTHORIZED`: authentication required.
    Unauthorized,
    /// `DENIED`: access to the resource denied.
    Denied,
    /// `UNSUPPORTED`: the operation is not supported.
    Unsupported,
    /// `TOOMANYREQUESTS`: rate limited.
    TooManyRequests,
    /// Any other code, as the registry wrote it.
    Other(String),
}

impl ErrorCode {
    /// The code for the text a registry sent. Exact, as the spec writes
    /// codes: `manifest_unknown` is [`ErrorCode::Other`].
    pub fn parse(code: &str) -> Self {
        match code {
            "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => ErrorCode::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => ErrorCode::BlobUploadUnknown,
            "DIGEST_INVALID" => ErrorCode::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ErrorCode::ManifestBlobUnknown,
            "MANIFEST_INVALID" => ErrorCode::ManifestInvalid,
            "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
            "NAME_INVALID" => ErrorCode::NameInvalid,
            "NAME_UNKNOWN" => ErrorCode::NameUnknown,
            "SIZE_INVALID" => ErrorCode::SizeInvalid,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "DENIED" => ErrorCode::Denied,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            "TOOMANYREQUESTS" => ErrorCode::TooManyRequests,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The code as it goes on the wire (`MANIFEST_UNKNOWN`).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

impl Default for ErrorCode {
    /// An error entry without a `code` member.
    fn default() -> Self {
        ErrorCode::Other(String::new())
    }
}

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiError {
    /// What went wrong, as a spec code.
    #[serde(default)]
    pub code: ErrorCode,
    /// The registry's own words (free text; may be empty).
    #[serde(default)]
    pub message: String,
}

/// The registry's error list, printed as `CODE: message; CODE: message`.
/// Read from at most [`crate::limits::MAX_ERROR_BODY`] bytes of the
/// answer; a body that is not such a list gives an empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiErrors(Vec<ApiError>);

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

    /// Whether the registry sent `code`.
    pub fn contains(&self, code: &ErrorCode) -> bool {
        self.0.iter().any(|e| &e.code == code)
    }

    /// The entries, in the order the registry sent them.
    pub fn iter(&self) -> std::slice::Iter<'_, ApiError> {
        self.0.iter()
    }

    /// Whether the registry sent no (readable) error entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ApiErrors {
    type Item = &'a ApiError;
    type IntoIter = std::slice::Iter<'a, ApiError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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

/// A failure below HTTP: the connection (refused, reset, closed early),
/// DNS, TLS, or a body cut short. Its `Display` is the HTTP library's
/// summary and [`source`](std::error::Error::source) continues with the
/// causes, which say what was wrong; [`Error`]'s message prints them all.
///
/// The HTTP library's error type stays private, so it can change without
/// changing this crate's API.
pub struct TransportError {
    inner: reqwest::Error,
}

impl TransportError {
    /// The URL is left out: [`Error`] prints a redacted one itself.
    pub(crate) fn new(e: reqwest::Error) -> Self {
        TransportError {
            inner: e.without_url(),
        }
    }

    /// Whether connecting failed (refused, DNS, TLS handshake).
    pub fn is_connect(&self) -> bool {
        self.inner.is_connect()
    }

    /// Whether the HTTP library's own timeout ran out (the connect
    /// timeout; silence is [`Error::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.inner.is_timeout()
    }

    /// A request that could not be built, a redirect policy refusal, or a
    /// server certificate that does not verify: not transient, so not
    /// retried.
    fn is_permanent(&self) -> bool {
        self.inner.is_builder() || self.inner.is_redirect() || self.is_certificate_refused()
    }

    /// Whether TLS refused the server's certificate (unknown issuer, wrong
    /// name, expired): asking again gets the same certificate.
    fn is_certificate_refused(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&self.inner);
        while let Some(e) = cause {
            if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref() {
                return true;
            }
            // An io::Error hides what it wraps from `source()`: look inside.
            cause = match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        false
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportError({})", with_causes(self))
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.inner)
    }
}

/// Everything that can go wrong, with a message naming what and where:
/// the input, or the method and a redacted URL (no user info, no secret
/// query values), and the registry's own error codes. Ask
/// [`Error::kind`] what to do about it.
///
/// ```
/// use registry_client::{ErrorKind, Reference};
///
/// let err = Reference::parse("Registry.io/UPPER").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert!(err.to_string().starts_with("invalid reference \"Registry.io/UPPER\""));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference (or repository, tag, host) that is not valid.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A digest that is not valid or of an unsupported algorithm.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A saved hasher state ([`crate::SavedHasher`]) that cannot be
    /// restored, or one of another algorithm than the digest's.
    #[error("saved hasher state is unusable")]
    InvalidHasherState,

    /// A blob longer or shorter than its descriptor says.
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size expected.
        expected: u64,
        /// The size (so far, when past the expected one) of what arrived.
        actual: u64,
    },

    /// Bytes whose digest is not the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },

    /// The registry answered with an error status (after retries, for a
    /// transient one).
    #[error("{method} {url}: HTTP {status}{}", codes_suffix(.codes))]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error codes of the answer's body.
        codes: ApiErrors,
        /// The `Retry-After` the answer carried.
        retry_after: Option<Duration>,
    },

    /// Credentials missing or refused, or a challenge that cannot be
    /// answered. Never retried: a wrong password stays wrong.
    #[error("authentication to {registry} failed: {reason} ({method} {url})")]
    Auth {
        /// The registry, as written in references.
        registry: String,
        /// The HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// Why, naming the credential (never the secret).
        reason: String,
    },

    /// The request did not get an answer: the connection, DNS, TLS, or a
    /// body cut short. The message carries the cause chain: the HTTP
    /// library's own says only "error sending request", the cause says
    /// what was wrong (a refused or closed connection, bytes that are not
    /// HTTP, a body cut short).
    #[error("{method} {url}: {}", with_causes(source))]
    Transport {
        /// The HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// What failed.
        #[source]
        source: TransportError,
    },

    /// The server said nothing for this long (see
    /// [`ClientConfig::read_timeout`](crate::ClientConfig)).
    #[error("{method} {url}: the server sent nothing for {after:?}")]
    Timeout {
        /// The HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// The read timeout that ran out.
        after: Duration,
    },

    /// The server answered something the protocol does not allow (or a
    /// document could not be parsed).
    #[error("{method} {url}: {reason}")]
    Protocol {
        /// The HTTP method (or `parse`, for a document read).
        method: String,
        /// The URL, redacted (or what was parsed).
        url: String,
        /// What was wrong.
        reason: String,
    },

    /// A body larger than a fixed limit ([`crate::limits`]).
    #[error("{what} from {url} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was read or written.
        what: String,
        /// Where, redacted.
        url: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// A count a server controls went past a bound: `bound` names it and
    /// how to raise it ([`crate::limits::reached`]).
    #[error("{what} from {url}: {bound}")]
    Exceeded {
        /// What went past it.
        what: String,
        /// Where, redacted.
        url: String,
        /// The bound and how to raise it.
        bound: String,
    },

    /// A valid but unsupported thing (Docker schema 1).
    #[error("{what}: {reason}")]
    Unsupported {
        /// What it is.
        what: String,
        /// Why it is not supported, and what to do instead.
        reason: String,
    },

    /// Local configuration that cannot be used (a CA file, credentials).
    #[error("{context}: {reason}")]
    Config {
        /// What was being configured.
        context: String,
        /// What is wrong.
        reason: String,
    },

    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The I/O error.
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
    if codes.is_empty() {
        String::new()
    } else {
        format!(" ({codes})")
    }
}

impl Error {
    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference { .. } | Error::InvalidDigest { .. } => ErrorKind::InvalidInput,
            Error::InvalidHasherState => ErrorKind::Local,
            Error::SizeMismatch { .. } | Error::DigestMismatch { .. } => ErrorKind::Integrity,
            Error::Status { status, .. } => kind_of_status(*status),
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Transport { source, .. } => {
                if source.is_permanent() {
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

    /// Whether it is transient ([`ErrorKind::Retryable`]). The client has
    /// retried already, as its [`crate::RetryPolicy`] says.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// Whether the thing asked for does not exist ([`ErrorKind::NotFound`]).
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

    /// The registry's error codes, for errors that came from an answer
    /// (none for others).
    pub fn codes(&self) -> Option<&ApiErrors> {
        match self {
            Error::Status { codes, .. } => Some(codes),
            _ => None,
        }
    }

    /// Whether the registry answered with `code`.
    ///
    /// ```
    /// # use registry_client::{Error, ErrorCode};
    /// # fn retry_or_fail(e: &Error) -> bool {
    /// e.has_code(&ErrorCode::BlobUploadUnknown) // the session expired: start a new one
    /// # }
    /// ```
    pub fn has_code(&self, code: &ErrorCode) -> bool {
        self.codes().is_some_and(|c| c.contains(code))
    }

    pub(crate) fn transport(method: &str, url: &url::Url, e: reqwest::Error) -> Self {
        Error::Transport {
            method: method.to_string(),
            url: redact_url(url),
            source: TransportError::new(e),
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
pub(crate) fn redact_url(url: &url::Url) -> String {
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
        assert!(e.has_code(&ErrorCode::ManifestUnknown));
        assert!(!e.has_code(&ErrorCode::NameUnknown));
        assert_eq!(kind_of_status(429), ErrorKind::Retryable);
        assert_eq!(kind_of_status(503), ErrorKind::Retryable);
        assert_eq!(kind_of_status(401), ErrorKind::Auth);
    }

    #[test]
    fn every_spec_code_parses_and_prints_as_sent() {
        for code in [
            "BLOB_UNKNOWN",
            "BLOB_UPLOAD_INVALID",
            "BLOB_UPLOAD_UNKNOWN",
            "DIGEST_INVALID",
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_INVALID",
            "MANIFEST_UNKNOWN",
            "NAME_INVALID",
            "NAME_UNKNOWN",
            "SIZE_INVALID",
            "UNAUTHORIZED",
            "DENIED",
            "UNSUPPORTED",
            "TOOMANYREQUESTS",
        ] {
            let parsed = ErrorCode::parse(code);
            assert!(!matches!(parsed, ErrorCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        // Another code, a code in the wrong case and a missing one are
        // kept as they were sent.
        let codes = ApiErrors::parse(
            br#"{"errors":[{"code":"TAG_INVALID","message":"bad tag"},{"code":"name_unknown"},{"message":"no code"}]}"#,
        );
        let got: Vec<_> = codes.iter().map(|e| e.code.clone()).collect();
        assert_eq!(
            got,
            [
                ErrorCode::Other("TAG_INVALID".into()),
                ErrorCode::Other("name_unknown".into()),
                ErrorCode::Other(String::new()),
            ]
        );
        assert!(!codes.contains(&ErrorCode::NameUnknown));
        assert_eq!(
            codes.to_string(),
            "TAG_INVALID: bad tag; name_unknown: ; : no code"
        );
        // What is not an error list is none.
        assert!(ApiErrors::parse(b"<html>503</html>").is_empty());
        assert!(ApiErrors::parse(br#"{"errors": "no"}"#).is_empty());
    }

    #[tokio::test]
    async fn a_transport_error_keeps_its_causes() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url =
            url::Url::parse(&format!("http://user:pw@127.0.0.1:{port}/v2/?sig=SECRET")).unwrap();
        let e = reqwest::get(url.clone()).await.unwrap_err();
        let err = Error::transport("GET", &url, e);
        assert_eq!(err.kind(), ErrorKind::Retryable);
        let Error::Transport { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(source.is_connect(), "{source:?}");
        assert!(std::error::Error::source(source).is_some(), "{source:?}");
        let text = err.to_string().to_lowercase();
        assert!(text.contains("connection refused"), "{text}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains("SECRET") && !shown.contains("pw"),
                "{shown}"
            );
        }
    }
}
