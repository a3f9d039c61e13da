//! An OCI Distribution API client: references, digests, auth, manifests,
//! blobs, uploads, tags and referrers, with retries. It knows nothing about
//! mirroring.
//!
//! One [`Client`] holds the connection pool, the tokens and each host's
//! pauses; clones share them. Every call takes a [`Reference`] or a
//! [`Repository`] and returns typed values or an [`Error`] whose
//! [`kind`](Error::kind) says what to do about it and whose message names
//! the method, a redacted URL and the registry's [`ErrorCode`]s.
//!
//! ```no_run
//! use registry_client::{Client, ClientConfig, CredentialChain, Reference, StaticCredentials};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), registry_client::Error> {
//! // Credentials as docker and podman store them (auth files, credential helpers).
//! let credentials = CredentialChain::explicit_then_auth_files(StaticCredentials::new(), None)?;
//! let client = Client::new(ClientConfig::builder().credentials(Arc::new(credentials)).build())?;
//!
//! let reference = Reference::parse("ghcr.io/oras-project/oras:v1.2.0")?;
//! let manifest = client.get_manifest(&reference).await?;
//! println!("{} is {} ({})", reference, manifest.digest, manifest.media_type);
//! for child in manifest.content()?.manifests {
//!     if let Some(p) = child.platform {
//!         println!("  {}/{}: {}", p.os, p.architecture, child.digest);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What it guarantees:
//!
//! - **Bytes are verified.** A manifest read by digest hashes to it; by tag,
//!   to the registry's `Docker-Content-Digest`. A [`BlobStream`] ends with an
//!   error instead of its end when the size or digest is wrong.
//! - **Bytes are never re-serialised.** Manifests go in and out as the exact
//!   bytes ([`Manifest::bytes`]); [`Manifest::content`] parses only to read.
//! - **What a server controls is bounded**: body sizes, listing pages,
//!   `Retry-After`, token lifetimes ([`limits`]).
//! - **Secrets stay secret.** A [`Secret`] prints `<redacted>`; credentials
//!   never go to a host they do not belong to (a redirect to blob storage
//!   gets no `Authorization`), nor in clear to a registry reached over TLS.
//!
//! The API uses a few types of other crates: [`Url`] (re-exported: a tag
//! page's next link, an upload session's location), [`bytes::Bytes`] for
//! bodies, [`futures::Stream`] for blob streams and upload sources, and
//! serde's traits on [`Descriptor`] and [`Digest`]. The HTTP library is not
//! among them: its errors are wrapped in [`TransportError`].

#![deny(missing_docs)]

pub mod auth;
mod blob;
mod catalog;
mod client;
mod descriptor;
mod digest;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod host_limit;
pub mod limits;
mod manifest;
pub mod media_type;
pub mod proxy;
mod reference;
mod referrers;
mod referrers_index;
mod retry;
mod secret;
mod tags;
mod upload;
mod watchdog;

pub use auth::{Credential, CredentialChain, CredentialStore, DockerConfig, StaticCredentials};
pub use blob::{BlobRead, BlobStream};
pub use client::{Client, ClientConfig, ClientConfigBuilder, HttpVersion};
pub use descriptor::{Descriptor, ManifestContent, Platform};
pub use digest::{Algorithm, Digest, Hasher, SavedHasher, Verifier};
pub use error::{ApiError, ApiErrors, Error, ErrorCode, ErrorKind, TransportError};
pub use limits::{Limits, MAX_MANIFEST_SIZE};
pub use manifest::{Manifest, ManifestInfo, ManifestPut};
pub use proxy::{NoProxy, Proxy, ProxyUrl};
pub use reference::{Reference, Repository};
pub use referrers::{Referrers, ReferrersSource};
pub use referrers_index::{referrers_tag, IndexUpdate};
pub use retry::{parse_retry_after, RetryPolicy};
pub use secret::Secret;
pub use tags::TagPage;
pub use upload::{MountOutcome, UploadSession};
/// Re-exported because the API takes and returns it (a tag page's next
/// link, an upload session's location), so callers need not pin the same
/// `url` version themselves.
pub use url::Url;
