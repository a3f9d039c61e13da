//! `mirror azureml check`: is every runtime image in the customer's
//! registry, is it the one the source has now, and can the job's
//! credentials pull it? HEAD requests only; nothing is written.

use futures::stream::{self, StreamExt};
use registry_client::{Client, Digest, Error, ErrorKind, Reference};
use serde::Serialize;

use super::preset::PresetImage;

/// One image's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The target tag holds what the source tag holds.
    Current,
    /// The target tag holds something else: sync again.
    Stale,
    /// The target has no such tag.
    Missing,
    /// The source has no such tag (a region without it, or a wrong source).
    NotAtSource,
    /// A registry could not be asked (see the error).
    Unknown,
}

/// Whether the job's credentials can pull the target image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pull {
    Allowed,
    Denied,
    /// No job credentials to try, or no image to try them on.
    NotChecked,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub image: String,
    pub source: String,
    pub target: String,
    pub standing: Standing,
    pub pull: Pull,
    pub source_digest: Option<Digest>,
    pub target_digest: Option<Digest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip)]
    pub auth_failure: bool,
}

impl CheckRow {
    /// Current and, when checked, pullable.
    pub fn ok(&self) -> bool {
        self.standing == Standing::Current && self.pull != Pull::Denied
    }
}

/// Checks every image: `client` asks as the operator, `job` (when given)
/// asks the target as the training job would.
pub async fn check(images: &[PresetImage], client: &Client, job: Option<&Client>) -> Vec<CheckRow> {
    stream::iter(images)
        .map(|image| check_one(image, client, job))
        .buffered(images.len().max(1))
        .collect()
        .await
}

async fn check_one(image: &PresetImage, client: &Client, job: Option<&Client>) -> CheckRow {
    let source_ref = image.source.tag(&image.source_tag);
    let target_ref = image.target.tag(&image.target_tag);
    let mut row = CheckRow {
        image: image.name.clone(),
        source: format!("{}:{}", image.source, image.source_tag),
        target: format!("{}:{}", image.target, image.target_tag),
        standing: Standing::Unknown,
        pull: Pull::NotChecked,
        source_digest: None,
        target_digest: None,
        errors: Vec::new(),
        auth_failure: false,
    };
    let (source_ref, target_ref) = match (source_ref, target_ref) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            row.errors.push(e.to_string());
            return row;
        }
    };
    let (source, target) = tokio::join!(
        client.head_manifest(&source_ref),
        client.head_manifest(&target_ref)
    );
    let mut note = |side: &str, e: Error| {
        row.auth_failure |= e.kind() == ErrorKind::Auth;
        row.errors.push(format!("{side}: {e}"));
    };
    let source = source.map_err(|e| note("source", e)).ok();
    let target = target.map_err(|e| note("target", e)).ok();
    row.source_digest = source.clone().flatten().map(|m| m.digest);
    row.target_digest = target.clone().flatten().map(|m| m.digest);
    row.standing = match (source, target) {
        (Some(None), _) => Standing::NotAtSource,
        (_, Some(None)) => Standing::Missing,
        (Some(Some(s)), Some(Some(t))) if s.digest == t.digest => Standing::Current,
        (Some(Some(_)), Some(Some(_))) => Standing::Stale,
        _ => Standing::Unknown,
    };
    if let (Some(job), Some(_)) = (job, &row.target_digest) {
        let (pull, cause) = try_pull(job, &target_ref).await;
        row.pull = pull;
        row.errors
            .extend(cause.map(|cause| format!("as the job: {cause}")));
    }
    row
}

/// The pull the runtime will make, tried with the job's client (which
/// holds only the job's credentials): a manifest HEAD of the target tag,
/// what a pull asks first. `Denied` when the registry refuses the job's
/// login or shows it no such tag; `NotChecked` when it could not be asked.
/// The string is the cause, for a person.
pub async fn try_pull(job: &Client, target: &Reference) -> (Pull, Option<String>) {
    match job.head_manifest(target).await {
        Ok(Some(_)) => (Pull::Allowed, None),
        Ok(None) => (
            Pull::Denied,
            Some("the registry shows these credentials no such tag".into()),
        ),
        Err(e) if e.kind() == ErrorKind::Auth => (Pull::Denied, Some(e.to_string())),
        Err(e) => (Pull::NotChecked, Some(e.to_string())),
    }
}
