//! Importing a bundle: every image back into a registry under its
//! original repository and tag (from the `io.containerd.image.name`
//! annotation, else its name in the bundle), as jobs for the one planner.
//! The referrers a bundle keeps (export --referrers put them there) go
//! with their images, every one of them: what was exported is imported,
//! with no flag to remember on the other side of the air gap.
//! A delta bundle is imported only when the target already holds every
//! blob it left out, in the image's repository or another this import
//! writes to (the engine then mounts it from there); that is checked, by
//! HEAD requests only, before anything is written.

use std::collections::HashMap;
use std::sync::Arc;

use registry_client::{Descriptor, Digest, Reference, Repository};

use crate::azureml::images::under_prefix;
use crate::bundle::Bundle;
use crate::endpoint::Endpoint;
use crate::graph::Selection;
use crate::plan::{Job, Stores};
use crate::store::archive::IMAGE_NAME;
use crate::store::ImageTarget;

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

/// The jobs that put every image of `bundle` into `host` (under
/// `prefix`), each with its descriptor in the bundle.
pub fn jobs(
    bundle: &Bundle,
    host: &str,
    prefix: Option<&str>,
    stores: &Stores,
) -> Result<Vec<(Job, Descriptor)>, String> {
    let mut jobs = Vec::new();
    for (name, desc) in &bundle.names {
        let (repo, tag) = original_place(name, desc)?;
        let repository = Repository::new(host, &under_prefix(prefix, &repo))
            .map_err(|e| format!("image {name:?}: {e}"))?;
        let target = Endpoint::Registry {
            repository,
            tag: Some(tag),
            digest: None,
        };
        let selection = Selection {
            referrers: bundle.holds_referrers.then(Vec::new),
            ..Selection::default()
        };
        let job = stores
            .job(&bundle.image(name), &target, selection)
            .map_err(|e| e.to_string())?;
        jobs.push((job, desc.clone()));
    }
    Ok(jobs)
}

/// Whether the target holds every blob the bundle leaves out, in the
/// repository of the image that needs it or another this import writes
/// to. Asks only (HEAD); the `Err` describes each blob found nowhere.
pub async fn check_omitted(bundle: &Bundle, jobs: &[(Job, Descriptor)]) -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    let mut known: HashMap<(String, Digest), bool> = HashMap::new();
    async fn holds(
        known: &mut HashMap<(String, Digest), bool>,
        store: &Arc<dyn ImageTarget>,
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
    let targets: Vec<&Arc<dyn ImageTarget>> =
        jobs.iter().filter_map(|(j, _)| j.target.as_ref()).collect();
    for (job, root) in jobs {
        let Some(target) = &job.target else {
            continue;
        };
        let graph = match crate::verify::image_graph(bundle.store.as_ref(), root).await {
            Ok(g) => g,
            Err(e) => {
                missing.push(format!("{}: {e}", job.source_label));
                continue;
            }
        };
        'blobs: for b in graph.blobs {
            if !bundle.omitted.contains(&b.digest) {
                continue;
            }
            for store in std::iter::once(target).chain(
                targets
                    .iter()
                    .copied()
                    .filter(|t| t.blob_domain() == target.blob_domain()),
            ) {
                match holds(&mut known, store, &b).await {
                    Ok(true) => continue 'blobs,
                    Ok(false) => {}
                    Err(e) => {
                        missing.push(e);
                        continue 'blobs;
                    }
                }
            }
            missing.push(format!(
                "blob {} ({} bytes) of {} is not in {} (nor in any repository this import writes to)",
                b.digest,
                b.size,
                job.source_label,
                target.describe()
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
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
    }
}
