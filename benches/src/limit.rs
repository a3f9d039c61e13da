//! The raw limit: what a copier that trusted everything would do. Each
//! unique blob is streamed once from source to target (GET piped into one
//! monolithic PUT) over `streams` keep-alive connections, nothing is
//! verified, blobs shared by several repositories are mounted, and every
//! manifest is copied as bytes. For an unchanged re-run, the bound is one
//! HEAD per tag at each side.
//!
//! On a WAN profile the limit is a bound, not a run: the slower of the link
//! (each unique byte once, at the rate: down from the source and up to the
//! target overlap) and this machine (the raw limit measured on loopback),
//! plus the fewest round trips the work needs one after another.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use registry_client::Digest;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::scenario::Image;
use crate::shaper::WanProfile;

/// What the limit process is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub source: String,
    pub target: String,
    pub streams: usize,
    /// `copy`, or `heads` (the unchanged re-run bound).
    pub mode: String,
    pub images: Vec<Image>,
}

pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.streams)
        .build()?;
    let plan = Arc::new(plan);
    let permits = Arc::new(Semaphore::new(plan.streams));
    match plan.mode.as_str() {
        "heads" => heads(&http, &plan, &permits).await,
        "copy" => copy(&http, &plan, &permits).await,
        other => bail!("unknown limit mode {other}"),
    }
}

async fn heads(
    http: &reqwest::Client,
    plan: &Arc<Plan>,
    permits: &Arc<Semaphore>,
) -> anyhow::Result<()> {
    let tasks = plan.images.iter().flat_map(|img| {
        [&plan.source, &plan.target].map(|host| {
            let url = format!("http://{host}/v2/{}/manifests/{}", img.repository, img.tag);
            let (http, permits) = (http.clone(), permits.clone());
            async move {
                let _p = permits.acquire().await?;
                let r = http.head(&url).header("Accept", ACCEPT).send().await?;
                anyhow::ensure!(r.status().is_success(), "HEAD {url}: {}", r.status());
                Ok::<_, anyhow::Error>(())
            }
        })
    });
    futures::future::try_join_all(tasks).await?;
    Ok(())
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

async fn copy(
    http: &reqwest::Client,
    plan: &Arc<Plan>,
    permits: &Arc<Semaphore>,
) -> anyhow::Result<()> {
    // The first repository to hold each blob receives its bytes; the others
    // mount it from there.
    let mut home: HashMap<Digest, (String, u64)> = HashMap::new();
    let mut mounts = Vec::new();
    for img in &plan.images {
        for (d, size) in &img.blobs {
            match home.get(d) {
                None => {
                    home.insert(d.clone(), (img.repository.clone(), *size));
                }
                Some((repo, _)) if repo != &img.repository => {
                    mounts.push((d.clone(), repo.clone(), img.repository.clone()))
                }
                Some(_) => {}
            }
        }
    }
    mounts.sort();
    mounts.dedup();
    let moves = home.into_iter().map(|(d, (repo, size))| {
        let (http, permits, plan) = (http.clone(), permits.clone(), plan.clone());
        async move {
            let _p = permits.acquire().await?;
            pipe_blob(&http, &plan, &repo, &d, size).await
        }
    });
    futures::future::try_join_all(moves).await?;
    let mounts = mounts.into_iter().map(|(d, from, to)| {
        let (http, permits, plan) = (http.clone(), permits.clone(), plan.clone());
        async move {
            let _p = permits.acquire().await?;
            let url = format!(
                "http://{}/v2/{to}/blobs/uploads/?mount={d}&from={from}",
                plan.target
            );
            let r = http.post(&url).send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "mount {url}: {}", r.status());
            Ok::<_, anyhow::Error>(())
        }
    });
    futures::future::try_join_all(mounts).await?;
    let manifests = plan.images.iter().map(|img| {
        let (http, permits, plan) = (http.clone(), permits.clone(), plan.clone());
        async move {
            let last = img.manifests.len() - 1;
            for (i, (d, media_type)) in img.manifests.iter().enumerate() {
                let _p = permits.acquire().await?;
                let src = format!("http://{}/v2/{}/manifests/{d}", plan.source, img.repository);
                let body = http
                    .get(&src)
                    .header("Accept", ACCEPT)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let reference = if i == last {
                    img.tag.clone()
                } else {
                    d.to_string()
                };
                let dst = format!(
                    "http://{}/v2/{}/manifests/{reference}",
                    plan.target, img.repository
                );
                let r = http
                    .put(&dst)
                    .header("Content-Type", media_type)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "PUT {dst}: {}", r.status());
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    futures::future::try_join_all(manifests).await?;
    Ok(())
}

/// GET from the source piped into one PUT at the target.
async fn pipe_blob(
    http: &reqwest::Client,
    plan: &Plan,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> anyhow::Result<()> {
    let get = format!("http://{}/v2/{repo}/blobs/{digest}", plan.source);
    let body = http
        .get(&get)
        .send()
        .await?
        .error_for_status()?
        .bytes_stream();
    let start = format!("http://{}/v2/{repo}/blobs/uploads/", plan.target);
    let r = http.post(&start).send().await?.error_for_status()?;
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("no upload Location")?
        .to_string();
    let mut put = reqwest::Url::parse(&start)?.join(&location)?;
    put.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let r = http
        .put(put)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", size)
        .body(reqwest::Body::wrap_stream(
            body.map_err(std::io::Error::other).boxed(),
        ))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "PUT {digest}: {}", r.status());
    Ok(())
}

/// The fewest round trips one after another that the work needs, with as
/// much concurrency as it likes: a connection, then for a copy the tag's
/// manifest (and an index's children), a blob's GET with its upload
/// streamed behind it (the upload's session opened meanwhile), and the
/// manifests pushed, children first; for an unchanged re-run one HEAD at
/// each side at once.
pub fn round_trips(images: &[Image], heads_only: bool) -> u32 {
    if heads_only {
        return 2;
    }
    let depth = images
        .iter()
        .map(|i| i.manifests.len().clamp(1, 2) as u32)
        .max()
        .unwrap_or(1);
    let blobs = if images.iter().any(|i| !i.blobs.is_empty()) {
        2
    } else {
        0
    };
    1 + depth + blobs + depth
}

/// Blob bytes of the images, each unique blob once.
pub fn unique_bytes(images: &[Image]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    images
        .iter()
        .flat_map(|i| &i.blobs)
        .filter(|(d, _)| seen.insert(d.clone()))
        .map(|(_, s)| s)
        .sum()
}

/// The limit on a WAN profile (see the module's comment).
pub fn wan_bound(
    loopback: std::time::Duration,
    bytes: u64,
    profile: &WanProfile,
    round_trips: u32,
) -> std::time::Duration {
    loopback.max(profile.transfer_time(bytes)) + profile.rtt * round_trips
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn image(manifests: usize, blobs: &[u64]) -> Image {
        let d = |i: u64| Digest::sha256_of(&i.to_le_bytes());
        Image {
            repository: "r".into(),
            tag: "t".into(),
            manifests: (0..manifests as u64)
                .map(|i| (d(100 + i), "m".into()))
                .collect(),
            blobs: blobs.iter().map(|&s| (d(s), s)).collect(),
        }
    }

    #[test]
    fn the_wan_bound_adds_round_trips_to_the_slower_of_link_and_machine() {
        let p: WanProfile = "40ms,200mbit".parse().unwrap();
        // An image: connect, manifest, blob GET, upload, manifest PUT.
        let single = [image(1, &[25_000_000, 25_000_000])];
        assert_eq!(round_trips(&single, false), 5);
        // The two blobs are one (same size, same digest): 25 MB at 25 MB/s.
        assert_eq!(unique_bytes(&single), 25_000_000);
        let b = wan_bound(Duration::from_millis(300), 25_000_000, &p, 5);
        assert_eq!(b, Duration::from_millis(1200));
        // A machine slower than the link decides.
        let b = wan_bound(Duration::from_secs(3), 25_000_000, &p, 5);
        assert_eq!(b, Duration::from_millis(3200));
        // An index: its children's manifests are one more level each way.
        assert_eq!(round_trips(&[image(3, &[1])], false), 7);
        // An unchanged re-run: connect, then HEAD at both sides at once.
        assert_eq!(round_trips(&single, true), 2);
    }
}
