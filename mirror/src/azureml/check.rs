//! `mirror azureml check`: is every runtime image in the customer's
//! registry, is it the one the source has now, are the source image's
//! signatures (its referrers) listed there too, and can the job's
//! credentials pull it? HEAD requests and referrers listings only; nothing
//! is written.

use std::collections::HashSet;

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

/// Whether the referrers of the source image (its signatures, SBOMs,
/// attestations: every manifest whose `subject` is it) are listed at the
/// target for the target's image, as a signature policy there looks them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Every one of them is.
    Complete,
    /// Some are not (or the target has no such image): sync again.
    Missing,
    /// The source image has none: nothing to carry.
    None,
    /// Not counted: turned off (`--no-referrers`), or the source has no
    /// such image.
    NotChecked,
    /// A registry could not be asked (see the errors).
    Unknown,
}

/// The source image's referrers and how many of them the target lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signatures {
    pub state: SignatureState,
    /// How many refer to the source image (of every artifact type).
    pub at_source: Option<usize>,
    /// How many of those the target lists for its image.
    pub at_target: Option<usize>,
    /// The digests of those it does not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Digest>,
}

impl Signatures {
    fn of(state: SignatureState) -> Self {
        Signatures {
            state,
            at_source: None,
            at_target: None,
            missing: Vec::new(),
        }
    }

    /// Not `Missing` and not `Unknown`: nothing a signature policy at the
    /// target would find lacking, as far as can be told.
    pub fn ok(&self) -> bool {
        !matches!(
            self.state,
            SignatureState::Missing | SignatureState::Unknown
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub image: String,
    pub source: String,
    pub target: String,
    pub standing: Standing,
    pub signatures: Signatures,
    pub pull: Pull,
    pub source_digest: Option<Digest>,
    pub target_digest: Option<Digest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip)]
    pub auth_failure: bool,
}

impl CheckRow {
    /// Current, with the source's referrers at the target (when they are
    /// counted) and, when checked, pullable.
    pub fn ok(&self) -> bool {
        self.standing == Standing::Current && self.signatures.ok() && self.pull != Pull::Denied
    }
}

/// Checks every image: `client` asks as the operator, `job` (when given)
/// asks the target as the training job would. With `referrers`, each
/// image's referrers are listed at both sides (one listing each).
///
/// The first image is checked alone, then the rest at once: the first
/// meets each registry's 401 challenge and learns whether it has the
/// referrers API, so the others neither meet the challenge nor probe the
/// API again.
pub async fn check(
    images: &[PresetImage],
    client: &Client,
    job: Option<&Client>,
    referrers: bool,
) -> Vec<CheckRow> {
    let Some((first, rest)) = images.split_first() else {
        return Vec::new();
    };
    let mut rows = vec![check_one(first, client, job, referrers).await];
    let others: Vec<CheckRow> = stream::iter(rest)
        .map(|image| check_one(image, client, job, referrers))
        .buffered(rest.len().max(1))
        .collect()
        .await;
    rows.extend(others);
    rows
}

async fn check_one(
    image: &PresetImage,
    client: &Client,
    job: Option<&Client>,
    referrers: bool,
) -> CheckRow {
    let source_ref = image.source.tag(&image.source_tag);
    let target_ref = image.target.tag(&image.target_tag);
    let mut row = CheckRow {
        image: image.name.clone(),
        source: format!("{}:{}", image.source, image.source_tag),
        target: format!("{}:{}", image.target, image.target_tag),
        standing: Standing::Unknown,
        signatures: Signatures::of(SignatureState::NotChecked),
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
    row.standing = match (&source, &target) {
        (Some(None), _) => Standing::NotAtSource,
        (_, Some(None)) => Standing::Missing,
        (Some(Some(s)), Some(Some(t))) if s.digest == t.digest => Standing::Current,
        (Some(Some(_)), Some(Some(_))) => Standing::Stale,
        _ => Standing::Unknown,
    };
    if referrers {
        row.signatures = match (source, target) {
            (Some(None), _) => Signatures::of(SignatureState::NotChecked),
            (Some(Some(s)), Some(t)) => {
                let t = t.map(|t| t.digest);
                signatures(client, image, &s.digest, t.as_ref(), &mut row).await
            }
            _ => Signatures::of(SignatureState::Unknown),
        };
    }
    if let (Some(job), Some(_)) = (job, &row.target_digest) {
        let (pull, cause) = try_pull(job, &target_ref).await;
        row.pull = pull;
        row.errors
            .extend(cause.map(|cause| format!("as the job: {cause}")));
    }
    row
}

/// The referrers of the source image at the source, and which of them the
/// target lists for `target` (its tag's digest; `None`: no such tag, so
/// none). A listing that fails is noted in the row and leaves the state
/// unknown.
async fn signatures(
    client: &Client,
    image: &PresetImage,
    source: &Digest,
    target: Option<&Digest>,
    row: &mut CheckRow,
) -> Signatures {
    let at_target = async {
        match target {
            Some(t) => client
                .referrers(&image.target, t, &[])
                .await
                .map(|r| r.manifests),
            None => Ok(Vec::new()),
        }
    };
    let (at_source, at_target) =
        tokio::join!(client.referrers(&image.source, source, &[]), at_target);
    let mut note = |side: &str, e: Error| {
        row.auth_failure |= e.kind() == ErrorKind::Auth;
        row.errors.push(format!("{side} referrers: {e}"));
    };
    let at_source = at_source.map_err(|e| note("source", e)).ok();
    let at_target = at_target.map_err(|e| note("target", e)).ok();
    let (Some(at_source), Some(at_target)) = (at_source, at_target) else {
        return Signatures::of(SignatureState::Unknown);
    };
    let held: HashSet<&Digest> = at_target.iter().map(|d| &d.digest).collect();
    let mut wanted: Vec<&Digest> = at_source.manifests.iter().map(|d| &d.digest).collect();
    wanted.sort();
    wanted.dedup();
    let missing: Vec<Digest> = wanted
        .iter()
        .filter(|d| !held.contains(*d))
        .map(|d| (*d).clone())
        .collect();
    let state = if wanted.is_empty() {
        SignatureState::None
    } else if missing.is_empty() {
        SignatureState::Complete
    } else {
        SignatureState::Missing
    };
    Signatures {
        state,
        at_source: Some(wanted.len()),
        at_target: Some(wanted.len() - missing.len()),
        missing,
    }
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
