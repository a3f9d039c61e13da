//! `mirror import BUNDLE --to HOST[/PREFIX]`: every image of a bundle back
//! into a registry under its original repository and tag (from the
//! `io.containerd.image.name` annotation, else its name in the bundle),
//! through the copy engine: each blob verified before it is committed.
//! A delta bundle is imported only when the target already holds every
//! blob it left out, in the image's repository or another this import
//! writes to (then it is mounted from there); that is checked, by HEAD
//! requests only, before anything is written.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Args;
use registry_client::{Descriptor, Digest, Reference, Repository};

use super::bundle::Bundle;
use super::error::{CommandResult, Failure};
use super::run::{exit_code, open_state, run_jobs, Show};
use super::{OutputFormat, ProgressMode, RegistryArgs, StateArgs};
use mirror::azureml::images::under_prefix;
use mirror::endpoint::Endpoint;
use mirror::graph::Selection;
use mirror::plan::{Job, Stores};
use mirror::store::archive::IMAGE_NAME;
use mirror::store::ImageStore;
use mirror::transfer::CopyOptions;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle: an archive (`oci-archive:PATH` or PATH) or a layout
    /// directory (`oci:DIR` or DIR).
    #[arg(value_name = "BUNDLE")]
    bundle: String,
    /// The registry, and a path prefix to put every repository under.
    #[arg(long, value_name = "HOST[/PREFIX]")]
    to: String,
    /// Requests and blob streams in flight at once, across all images.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// The repository path and tag an image returns to: from its recorded
/// reference (`HOST/REPO:TAG`), else from its name (`REPO:TAG`, or `REPO`
/// meaning `REPO:latest`).
pub fn original_place(name: &str, desc: &Descriptor) -> Result<(String, String), String> {
    let from_name = || -> (String, String) {
        match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') && !repo.is_empty() => {
                (repo.to_string(), tag.to_string())
            }
            _ => (name.to_string(), "latest".to_string()),
        }
    };
    match desc.annotations.get(IMAGE_NAME) {
        Some(full) => {
            let r = Reference::parse(full)
                .map_err(|e| format!("image {name:?}: its {IMAGE_NAME} {full:?}: {e}"))?;
            // Recorded by digest only: the name gives the tag.
            let written_tag = {
                let last = full.rsplit('/').next().unwrap_or(full);
                last.split('@').next().unwrap_or(last).contains(':')
            };
            let tag = match (written_tag, r.tag()) {
                (true, Some(t)) => t.to_string(),
                _ => from_name().1,
            };
            Ok((r.repository().name().to_string(), tag))
        }
        None => Ok(from_name()),
    }
}

/// `HOST[/PREFIX]` → the registry and the prefix.
fn split_target(to: &str) -> Result<(String, Option<String>), String> {
    let to = to.trim_end_matches('/');
    if to.contains("://") {
        return Err(format!("--to {to}: write the registry without a scheme"));
    }
    let (host, prefix) = match to.split_once('/') {
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (to.to_string(), None),
    };
    // Checks the host (and the prefix) by building a repository of them.
    Repository::new(&host, &under_prefix(prefix.as_deref(), "x"))
        .map_err(|e| format!("--to {to}: {e}"))?;
    Ok((host, prefix))
}

pub async fn run(args: ImportArgs) -> CommandResult {
    let (host, prefix) = split_target(&args.to).map_err(Failure::usage)?;
    // A bundle refused when opened (missing, malformed, hostile) exits 2,
    // as it does for `mirror copy`.
    let bundle = Bundle::open(&args.bundle).await.map_err(Failure::usage)?;
    if bundle.names.is_empty() {
        return Err(Failure::failed(format!(
            "{}: names no image to import",
            args.bundle
        )));
    }
    let client = args.registry.client(args.jobs).map_err(Failure::setup)?;
    let state = open_state(&args.state)?;
    let stores = Stores::new(client)
        .with_uploads(args.registry.uploads())
        .with_sessions(state.uploads().clone());
    let mut jobs = Vec::new();
    for (name, desc) in &bundle.names {
        let (repo, tag) = original_place(name, desc)
            .map_err(|e| Failure::failed(format!("{}: {e}", args.bundle)))?;
        let repository = Repository::new(&host, &under_prefix(prefix.as_deref(), &repo))
            .map_err(|e| Failure::failed(format!("image {name:?} of {}: {e}", args.bundle)))?;
        let target = Endpoint::Registry {
            repository,
            tag: Some(tag),
            digest: None,
        };
        let job = stores
            .job(&bundle.endpoint(name), &target, Selection::default())
            .map_err(Failure::usage)?;
        jobs.push((job, desc.clone()));
    }
    if !bundle.omitted.is_empty() {
        let mounts = match place_omitted(&bundle, &jobs).await {
            Ok(m) => m,
            Err(missing) => {
                return Err(Failure::failed(format!(
                    "{} is a delta bundle and the target lacks {} blob(s) it leaves out; nothing was imported (import the bundle it was made --since first, or export a whole bundle):\n  {}",
                    args.bundle,
                    missing.len(),
                    missing.join("\n  ")
                )));
            }
        };
        // Every left-out blob is in the registry; link the ones another
        // repository holds into the repository that needs them.
        for m in mounts {
            let linked = m.target.mount_blob(&m.desc, &m.from).await;
            if !matches!(linked, Ok(true)) {
                let why = match linked {
                    Err(e) => e.to_string(),
                    _ => "the registry did not mount it".into(),
                };
                return Err(Failure::failed(format!(
                    "linking left-out blob {} into {} from {}: {why}",
                    m.desc.digest,
                    m.target.describe(),
                    m.from
                )));
            }
        }
    }
    let options = CopyOptions {
        jobs: args.jobs as usize,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let show = Show {
        progress: args.progress,
        output: args.output,
    };
    let jobs: Vec<Job> = jobs.into_iter().map(|(j, _)| j).collect();
    let report = run_jobs(&jobs, options, &show, &state).await?;
    Ok(exit_code(&report))
}

/// A left-out blob one repository lacks and another of this import holds.
struct Mount {
    target: Arc<dyn ImageStore>,
    desc: Descriptor,
    from: Repository,
}

/// Where each blob the bundle leaves out is found at the target: in the
/// repository of the image that needs it, or in another repository this
/// import writes to (to be mounted from there). Asks only (HEAD); the
/// `Err` describes each blob found nowhere.
async fn place_omitted(
    bundle: &Bundle,
    jobs: &[(Job, Descriptor)],
) -> Result<Vec<Mount>, Vec<String>> {
    let mut missing = Vec::new();
    let mut mounts: Vec<Mount> = Vec::new();
    let mut known: HashMap<(String, Digest), bool> = HashMap::new();
    async fn holds(
        known: &mut HashMap<(String, Digest), bool>,
        store: &Arc<dyn ImageStore>,
        desc: &Descriptor,
    ) -> Result<bool, String> {
        let key = (store.describe(), desc.digest.clone());
        if let Some(v) = known.get(&key) {
            return Ok(*v);
        }
        let v = store
            .blob_size(&desc.digest)
            .await
            .map_err(|e| format!("asking {} for blob {}: {e}", store.describe(), desc.digest))?
            .is_some();
        known.insert(key, v);
        Ok(v)
    }
    for (job, root) in jobs {
        let Some(target) = &job.target else {
            continue;
        };
        let graph = match mirror::verify::image_graph(bundle.store.as_ref(), root).await {
            Ok(g) => g,
            Err(e) => {
                missing.push(format!("{}: {e}", job.source_label));
                continue;
            }
        };
        for b in graph.blobs {
            if !bundle.omitted.contains(&b.digest) {
                continue;
            }
            match holds(&mut known, target, &b).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    missing.push(e);
                    continue;
                }
            }
            let mut from = None;
            for (other, _) in jobs {
                let Some(other_target) = &other.target else {
                    continue;
                };
                let Some(repo) = other_target.repository() else {
                    continue;
                };
                if other_target.blob_domain() != target.blob_domain()
                    || other_target.describe() == target.describe()
                {
                    continue;
                }
                if let Ok(true) = holds(&mut known, other_target, &b).await {
                    from = Some(repo.clone());
                    break;
                }
            }
            match from {
                Some(from) => {
                    let name = target.describe();
                    if !mounts
                        .iter()
                        .any(|m| m.target.describe() == name && m.desc.digest == b.digest)
                    {
                        mounts.push(Mount {
                            target: target.clone(),
                            desc: b,
                            from,
                        });
                    }
                }
                None => missing.push(format!(
                    "blob {} ({} bytes) of {} is not in {} (nor in any repository this import writes to)",
                    b.digest,
                    b.size,
                    job.source_label,
                    target.describe()
                )),
            }
        }
    }
    if missing.is_empty() {
        Ok(mounts)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(annotation: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            Digest::sha256_of(b"m"),
            1,
        );
        if let Some(a) = annotation {
            d.annotations.insert(IMAGE_NAME.into(), a.into());
        }
        d
    }

    #[test]
    fn places_come_from_the_recorded_reference_else_the_name() {
        assert_eq!(
            original_place("a/b:v1", &desc(Some("reg.example:5000/team/a/b:v2"))).unwrap(),
            ("team/a/b".into(), "v2".into())
        );
        assert_eq!(
            original_place("app:v1", &desc(None)).unwrap(),
            ("app".into(), "v1".into())
        );
        assert_eq!(
            original_place("app", &desc(None)).unwrap(),
            ("app".into(), "latest".into())
        );
        let d = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            original_place("x:keep", &desc(Some(&format!("reg.example/x@{d}")))).unwrap(),
            ("x".into(), "keep".into())
        );
        let err = original_place("x", &desc(Some("Not A Ref"))).unwrap_err();
        assert!(err.contains("Not A Ref"), "{err}");
        assert_eq!(
            split_target("acr.example/mirror/").unwrap(),
            ("acr.example".into(), Some("mirror".into()))
        );
        assert!(split_target("https://acr.example").is_err());
    }
}
