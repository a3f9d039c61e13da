//! An OCI Distribution API client: references, digests, auth, manifests,
//! blobs, uploads, tags and referrers, with retries. It knows nothing about
//! mirroring.

pub mod auth;
pub mod blob;
pub mod catalog;
pub mod client;
pub mod descriptor;
pub mod digest;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod host_limit;
pub mod limits;
pub mod manifest;
pub mod media_type;
pub mod reference;
pub mod referrers;
pub mod referrers_index;
pub mod retry;
pub mod secret;
pub mod tags;
pub mod upload;
mod watchdog;

pub use auth::{Credential, CredentialChain, CredentialStore, DockerConfig, StaticCredentials};
pub use blob::{BlobRead, BlobStream};
pub use client::{Client, ClientConfig, HttpVersion};
pub use descriptor::{Descriptor, ManifestContent, Platform};
pub use digest::{Algorithm, Digest, Hasher, SavedHasher, Verifier};
pub use error::{Error, ErrorKind};
pub use manifest::{Manifest, ManifestInfo, ManifestPut, MAX_MANIFEST_SIZE};
pub use reference::{Reference, Repository};
pub use referrers::{Referrers, ReferrersSource};
pub use referrers_index::{referrers_tag, IndexUpdate};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use tags::TagPage;
pub use upload::{MountOutcome, UploadSession};
pub use url::Url;
