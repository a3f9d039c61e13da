//! Server-side copies: the customer's registry imports each runtime image
//! itself (ACR `importImage`, what `az acr import` does), so the machine
//! running mirror needs to reach only Azure Resource Manager and the
//! target, not the source. Every image is asked for at once under the
//! concurrency budget, each followed to its end under its own deadline;
//! then the data plane is asked (a manifest HEAD at each side) whether each
//! target tag holds the source's digest.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use registry_client::{Client, Digest, ErrorKind, Secret};
use serde::Serialize;

use super::arm::{
    ArmClient, ArmError, ArmErrorKind, Finished, ImportFrom, ImportMode, ImportRequest, ResourceId,
};
use super::preset::PresetImage;

/// How the imports are made.
#[derive(Debug, Clone)]
pub struct ServerSideOptions {
    /// Imports in flight at once (at least one).
    pub jobs: usize,
    /// How long each image may take, from its request to its end.
    pub deadline: Duration,
    pub mode: ImportMode,
    /// For a private source by address: what the registry logs in with
    /// (the workspace's system-registry user, say).
    pub source_credentials: Option<(String, Secret)>,
    /// The source as an Azure Container Registry ARM knows (then no
    /// credentials are sent: the caller's rights on it are used).
    pub source_resource_id: Option<ResourceId>,
}

impl Default for ServerSideOptions {
    fn default() -> Self {
        ServerSideOptions {
            jobs: 6,
            deadline: Duration::from_secs(15 * 60),
            mode: ImportMode::Force,
            source_credentials: None,
            source_resource_id: None,
        }
    }
}

/// The import request for one image of the preset, checked against the
/// registry that will make it (`login_server`): the target must be there.
pub fn import_request(
    image: &PresetImage,
    login_server: &str,
    options: &ServerSideOptions,
) -> Result<ImportRequest, String> {
    if !image.target.registry().eq_ignore_ascii_case(login_server) {
        return Err(format!(
            "{}: its target {} is not in the importing registry {login_server}",
            image.name, image.target
        ));
    }
    let from = match &options.source_resource_id {
        Some(id) => ImportFrom::ResourceId(id.clone()),
        None => ImportFrom::RegistryUri(image.source.registry().to_string()),
    };
    Ok(ImportRequest {
        from,
        source_image: format!("{}:{}", image.source.name(), image.source_tag),
        credentials: match options.source_resource_id {
            Some(_) => None,
            None => options.source_credentials.clone(),
        },
        target_tags: vec![format!("{}:{}", image.target.name(), image.target_tag)],
        mode: options.mode,
    })
}

/// One image's import.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The repository as the table names it.
    pub image: String,
    /// `source:tag`, `target:tag`.
    pub source: String,
    pub target: String,
    pub result: Result<Finished, ArmError>,
    pub elapsed: Duration,
}

impl ImportOutcome {
    /// `cap/lifecycler/installed: importing …: the operation ended Failed (Code): message`.
    pub fn error_line(&self) -> Option<String> {
        self.result
            .as_ref()
            .err()
            .map(|e| format!("{}: {e}", self.image))
    }
}

/// Asks `registry` (whose login server is `login_server`) to import every
/// image, `options.jobs` at a time, each under `options.deadline`. One
/// outcome per image, in order; a failed image does not stop the others.
pub async fn import_all(
    arm: &ArmClient,
    registry: &ResourceId,
    login_server: &str,
    images: &[PresetImage],
    options: &ServerSideOptions,
) -> Vec<ImportOutcome> {
    let jobs = options.jobs.max(1);
    stream::iter(images)
        .map(|image| import_one(arm, registry, login_server, image, options))
        .buffered(jobs)
        .collect()
        .await
}

async fn import_one(
    arm: &ArmClient,
    registry: &ResourceId,
    login_server: &str,
    image: &PresetImage,
    options: &ServerSideOptions,
) -> ImportOutcome {
    let started = Instant::now();
    let deadline = started + options.deadline;
    let result = match import_request(image, login_server, options) {
        Err(e) => Err(ArmError::new(
            format!("importing {}", image.name),
            ArmErrorKind::BadAnswer,
            e,
        )),
        Ok(request) => arm.import(registry, &request, deadline).await,
    };
    // ARM could echo what it was sent; the password never goes further.
    let result = match (&options.source_credentials, result) {
        (Some((_, password)), Err(e)) => Err(e.redacting(password)),
        (_, r) => r,
    };
    ImportOutcome {
        image: image.name.clone(),
        source: format!("{}:{}", image.source, image.source_tag),
        target: format!("{}:{}", image.target, image.target_tag),
        result,
        elapsed: started.elapsed(),
    }
}

/// Whether the source side is asked in [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSide {
    /// HEAD at the source too; when it cannot be reached from here, noted
    /// and skipped.
    Ask,
    /// This machine cannot reach the source (the reason to copy
    /// server-side): only the target is asked.
    Skip,
}

/// What the data plane says about one imported image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Landed {
    /// The target tag holds the source tag's digest.
    Same,
    /// The target tag holds another digest than the source's.
    Differs,
    /// The target has no such tag.
    Missing,
    /// The target has the tag; the source was not asked or not reachable.
    TargetOnly,
    /// The target could not be asked.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub image: String,
    pub target: String,
    pub landed: Landed,
    pub source_digest: Option<Digest>,
    pub target_digest: Option<Digest>,
    /// Why the source side was skipped, or what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Verification {
    /// In place as far as can be told: the same digest, or the target's
    /// alone when the source could not be asked.
    pub fn ok(&self) -> bool {
        matches!(self.landed, Landed::Same | Landed::TargetOnly)
    }
}

/// After the imports: a manifest HEAD of each target tag (and of each
/// source tag, unless skipped), all at once up to `jobs`.
pub async fn verify(
    images: &[PresetImage],
    client: &Client,
    source: SourceSide,
    jobs: usize,
) -> Vec<Verification> {
    stream::iter(images)
        .map(|image| verify_one(image, client, source))
        .buffered(jobs.max(1))
        .collect()
        .await
}

async fn verify_one(image: &PresetImage, client: &Client, side: SourceSide) -> Verification {
    let mut v = Verification {
        image: image.name.clone(),
        target: format!("{}:{}", image.target, image.target_tag),
        landed: Landed::Unknown,
        source_digest: None,
        target_digest: None,
        note: None,
    };
    let (source_ref, target_ref) = match (
        image.source.tag(&image.source_tag),
        image.target.tag(&image.target_tag),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            v.note = Some(e.to_string());
            return v;
        }
    };
    let source_head = async {
        match side {
            SourceSide::Ask => Some(client.head_manifest(&source_ref).await),
            SourceSide::Skip => None,
        }
    };
    let (target, source) = tokio::join!(client.head_manifest(&target_ref), source_head);
    let target = match target {
        Ok(Some(t)) => t.digest,
        Ok(None) => {
            v.landed = Landed::Missing;
            v.note = Some(format!(
                "{} has no such tag after the import",
                image.target.registry()
            ));
            return v;
        }
        Err(e) => {
            v.note = Some(format!("target: {e}"));
            return v;
        }
    };
    v.target_digest = Some(target.clone());
    match source {
        None => {
            v.landed = Landed::TargetOnly;
            v.note = Some(format!(
                "source not asked: this machine does not reach {}",
                image.source.registry()
            ));
        }
        Some(Err(e)) if e.kind() == ErrorKind::Retryable => {
            v.landed = Landed::TargetOnly;
            v.note = Some(format!(
                "source not reachable from here, only the target checked: {e}"
            ));
        }
        Some(Err(e)) => {
            v.landed = Landed::TargetOnly;
            v.note = Some(format!(
                "source could not be asked, only the target checked: {e}"
            ));
        }
        Some(Ok(None)) => {
            v.landed = Landed::TargetOnly;
            v.note = Some(format!(
                "the source no longer shows {}:{}; only the target checked",
                image.source, image.source_tag
            ));
        }
        Some(Ok(Some(s))) => {
            v.landed = if s.digest == target {
                Landed::Same
            } else {
                Landed::Differs
            };
            if v.landed == Landed::Differs {
                v.note = Some(format!(
                    "the target holds {target}, the source {} (the source moved during the import, or the import wrote something else)",
                    s.digest
                ));
            }
            v.source_digest = Some(s.digest);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azureml::preset::{Location, Preset};

    fn images() -> Vec<PresetImage> {
        Preset {
            region: "eastus".into(),
            source: Location::mcr(),
            target: Location::parse("contoso.azurecr.io/azureml").unwrap(),
            regional_tags: false,
            extra: Vec::new(),
            referrers: true,
        }
        .images()
        .unwrap()
    }

    #[test]
    fn each_preset_image_becomes_the_import_the_old_script_made() {
        let image = &images()[0];
        let req =
            import_request(image, "Contoso.azurecr.io", &ServerSideOptions::default()).unwrap();
        assert_eq!(
            req.from,
            ImportFrom::RegistryUri("mcr.microsoft.com".into())
        );
        assert_eq!(
            req.source_image,
            "azureml/runtime/boot/vm-bootstrapper/binimage/linux:eastus-stable"
        );
        assert_eq!(
            req.target_tags,
            vec!["azureml/boot/vm-bootstrapper/binimage/linux:stable".to_string()]
        );
        assert_eq!(req.mode, ImportMode::Force);
        assert!(req.credentials.is_none());
    }

    #[test]
    fn a_target_in_another_registry_is_refused_before_any_request() {
        let err = import_request(
            &images()[1],
            "fabrikam.azurecr.io",
            &ServerSideOptions::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("not in the importing registry fabrikam.azurecr.io"),
            "{err}"
        );
    }

    #[test]
    fn a_source_by_resource_id_sends_no_credentials() {
        let options = ServerSideOptions {
            source_credentials: Some(("u".into(), Secret::new("p"))),
            source_resource_id: Some(ResourceId::registry("s", "rg", "system")),
            ..ServerSideOptions::default()
        };
        let req = import_request(&images()[2], "contoso.azurecr.io", &options).unwrap();
        assert!(matches!(req.from, ImportFrom::ResourceId(_)));
        assert!(req.credentials.is_none());
    }
}
