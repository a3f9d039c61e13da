//! The transfer engine: copies images between stores with one global
//! concurrency budget, each unique blob moved at most once per run, every
//! byte verified as it streams, children pushed before parents and tags
//! moved last. It reports through events and never prints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use registry_client::limits::MAX_MANIFEST_SIZE;
use registry_client::{Descriptor, Digest, ErrorCode, ErrorKind, Manifest};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::graph::{self, Bounds, ManifestReader, Selection};
use crate::ledger::{BlobHome, Ledger, Placed};
use crate::no_match::NoMatch;
use crate::progress::{Event, Progress};
use crate::report::{BlobOutcome, ImageReport, RunReport};
use crate::state::Spools;
use crate::store::{
    BlobFeed, BlobStream, DirectFeed, ImageRef, ImageSource, ImageTarget, StoreError,
};

/// One image to copy.
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub source: Arc<dyn ImageSource>,
    pub source_ref: ImageRef,
    pub target: Arc<dyn ImageTarget>,
    /// The tag (a layout's name) to set last; `None` pushes by digest only.
    pub target_tag: Option<String>,
    /// The digest the destination names: nothing is written unless the
    /// image to write has it.
    pub target_digest: Option<Digest>,
    /// What of the image to take (platforms, foreign layers): per image,
    /// so one run mixes images with different selections.
    pub selection: Selection,
    /// How the user named each side, for the report.
    pub source_label: String,
    pub target_label: String,
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blob streams in flight at once, across all images, a small blob
    /// taking a share of one (`stream_share`); small requests (manifests,
    /// HEADs, mounts, tags) get `request_budget(jobs)`.
    pub jobs: usize,
    /// How large one image's graph may be.
    pub bounds: Bounds,
    /// Tries per blob when a transfer breaks in a way worth retrying (a
    /// dropped connection, a server error, a lost upload session).
    pub blob_attempts: u32,
    /// Blob retries allowed in the whole run, so a failing registry ends
    /// the run instead of retrying every blob.
    pub run_retries: u32,
    /// Where large blobs read from a registry are kept while they stream
    /// (the state directory's), so a broken try or a rerun continues them
    /// instead of reading them again. `None` keeps nothing.
    pub spools: Option<Spools>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            jobs: 8,
            bounds: crate::limits::get().graph,
            blob_attempts: 3,
            run_retries: 50,
            spools: None,
        }
    }
}

/// An error while copying one image, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct CopyError {
    pub context: String,
    #[source]
    pub source: StoreError,
}

impl CopyError {
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

trait Context<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, CopyError>;
}

impl<T, E: Into<StoreError>> Context<T> for Result<T, E> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, CopyError> {
        self.map_err(|e| CopyError {
            context: f(),
            source: e.into(),
        })
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    options: CopyOptions,
    progress: Arc<dyn Progress>,
    ledger: Ledger,
    /// Blob streams in flight, in quarters of a stream (see
    /// [`stream_share`]): what costs memory and link.
    streams: Semaphore,
    /// Small requests in flight: what a round trip costs.
    requests: Semaphore,
    next_mover: AtomicU64,
    retries_left: AtomicU32,
    /// Every target of the runs so far: where a blob the source lacks
    /// (one a delta bundle left out) may be mounted from.
    targets: std::sync::RwLock<Vec<Arc<dyn ImageTarget>>>,
}

impl Engine {
    pub fn new(options: CopyOptions, progress: Arc<dyn Progress>) -> Self {
        let streams = Semaphore::new(options.jobs.max(1) * SHARES_PER_STREAM as usize);
        let requests = Semaphore::new(request_budget(options.jobs));
        let retries_left = AtomicU32::new(options.run_retries);
        Engine {
            inner: Arc::new(Inner {
                options,
                progress,
                ledger: Ledger::default(),
                streams,
                requests,
                next_mover: AtomicU64::new(1),
                retries_left,
                targets: Default::default(),
            }),
        }
    }

    /// Copy every job, all at once within the concurrency budget. One
    /// image's failure is recorded in its report and stops no other.
    pub async fn run(&self, jobs: Vec<CopyJob>) -> RunReport {
        let started = Instant::now();
        // Each distinct target is finished once at the end (an archive is
        // written out then); which image went to which target, for errors.
        let mut target_index: HashMap<String, usize> = HashMap::new();
        let mut targets: Vec<Arc<dyn ImageTarget>> = Vec::new();
        let target_of: Vec<usize> = jobs
            .iter()
            .map(|j| {
                *target_index.entry(j.target.describe()).or_insert_with(|| {
                    targets.push(j.target.clone());
                    targets.len() - 1
                })
            })
            .collect();
        self.inner
            .targets
            .write()
            .expect("targets lock")
            .extend(targets.iter().cloned());
        // A bounded window of images in flight, enough to keep every
        // request permit busy: each one holds its manifests and blob tasks,
        // so 10,000 started at once held them all (181 MiB on `huge`).
        let window = images_in_flight(self.inner.options.jobs);
        let mut pending = jobs.into_iter().enumerate();
        let mut set = JoinSet::new();
        // Each report goes straight to its image's slot: one vector for the
        // run, in order, however the images finish.
        let mut images = vec![ImageReport::default(); target_of.len()];
        loop {
            while set.len() < window {
                let Some((i, job)) = pending.next() else {
                    break;
                };
                let engine = self.clone();
                set.spawn(async move { (i, engine.copy_image(i, job).await) });
            }
            match set.join_next().await {
                Some(Ok((i, report))) => images[i] = report,
                Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                None => break,
            }
        }
        for (t, target) in targets.into_iter().enumerate() {
            let name = target.describe();
            if let Err(e) = target.finish().await {
                // The images bound for it are not where they were meant to be.
                for (i, report) in images.iter_mut().enumerate() {
                    if target_of[i] == t && report.error.is_none() {
                        report.error = Some(format!("finishing {name}: {e}"));
                        report.error_kind = Some(e.kind());
                        report.target_digest = None;
                    }
                }
            }
        }
        RunReport::new(images, started.elapsed())
    }

    fn emit(&self, event: Event) {
        self.inner.progress.event(event);
    }

    async fn copy_image(&self, image: usize, job: CopyJob) -> ImageReport {
        let started = Instant::now();
        let mut report = ImageReport {
            source: job.source_label.clone(),
            target: job.target_label.clone(),
            ..ImageReport::default()
        };
        self.emit(Event::ImageStarted {
            image,
            source: job.source_label.clone(),
            target: job.target_label.clone(),
        });
        if let Err(e) = self.copy_image_inner(image, &job, &mut report).await {
            tracing::debug!(image = %job.source_label, error = %e, "image failed");
            report.error = Some(e.to_string());
            report.error_kind = Some(e.kind());
        }
        report.seconds = started.elapsed().as_secs_f64();
        self.emit(Event::ImageFinished {
            image,
            report: Box::new(report.clone()),
        });
        report
    }

    async fn copy_image_inner(
        &self,
        image: usize,
        job: &CopyJob,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        let root = {
            let _p = self.permit().await;
            job.source
                .resolve(&job.source_ref)
                .await
                .context(|| format!("reading manifest {}", job.source_label))?
        };
        report.source_digest = Some(root.digest.clone());

        let reader = PermittedReader {
            engine: self,
            source: job.source.as_ref(),
        };
        let graph = graph::walk(
            &reader,
            root,
            &job.selection,
            &self.inner.options.bounds,
            self.inner.options.jobs,
        )
        .await
        .map_err(|e| graph_error(e, &job.source_label))?;
        report.digest_changed = graph.digest_changed.clone();
        report.referrers = graph.referrers;
        let root = graph.root.clone();
        if let Some(want) = job.target_digest.as_ref().filter(|w| **w != root.digest) {
            return Err(CopyError {
                context: format!("copying {} to {}", job.source_label, job.target_label),
                source: StoreError::invalid(
                    job.target_label.clone(),
                    format!(
                        "the image to write is {} ({}), not the digest the destination names ({want}); nothing was written",
                        root.digest,
                        graph
                            .digest_changed
                            .as_deref()
                            .unwrap_or("the source's digest"),
                    ),
                ),
            });
        }
        if let Some(unmatched) = self.unmatched_platform(job, &root).await {
            match job.selection.no_match {
                NoMatch::Warn => report
                    .warnings
                    .push(format!("{unmatched}; copied as it is")),
                NoMatch::Error => {
                    return Err(CopyError {
                        context: format!("copying {}", job.source_label),
                        source: StoreError::invalid(
                            job.source_label.clone(),
                            format!("{unmatched} (no-match: error)"),
                        ),
                    })
                }
            }
        }
        self.emit(Event::ImagePlanned {
            image,
            blobs: graph.blobs.len(),
            bytes: graph.blob_bytes(),
            sizes: graph
                .blobs
                .iter()
                .map(|d| (d.digest.clone(), d.size))
                .collect(),
        });

        let mut set = JoinSet::new();
        for desc in graph.blobs {
            let engine = self.clone();
            let (source, target) = (job.source.clone(), job.target.clone());
            set.spawn(async move {
                let size = desc.size;
                let outcome = engine.transfer_blob(image, &desc, &source, &target).await;
                (outcome, size)
            });
        }
        // Every blob task runs to its end even after one fails: another
        // image may be waiting on a transfer this image started.
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            let (outcome, size) = match joined {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            match outcome {
                Ok(o) => report.count(o, size),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        // Children first, so every manifest finds what it references. One
        // manifest write at a time per target (see `settled`).
        let writes = self.inner.ledger.manifest_writes(&job.target.describe());
        // The tag push stores the root where it can (one request, not two),
        // unless referrers of it come after it.
        let tag_stores_root =
            job.target_tag.is_some() && job.target.tag_stores_manifest() && graph.referrers == 0;
        for m in &graph.manifests {
            if tag_stores_root && m.digest == root.digest {
                continue;
            }
            let cell = self
                .inner
                .ledger
                .manifest_cell(&job.target.describe(), &m.digest);
            cell.get_or_try_init(|| async {
                let _p = self.permit().await;
                let _w = writes.lock().await;
                settled(&m.digest, || job.target.put_manifest(m))
                    .await
                    .context(|| {
                        format!("pushing manifest {} to {}", m.digest, job.target.describe())
                    })
            })
            .await?;
        }
        for (tag, m) in &graph.cosign_tags {
            let tag = cosign_tag_at(job, tag);
            let _p = self.permit().await;
            let _w = writes.lock().await;
            settled(&m.digest, || job.target.set_tag(&tag, m))
                .await
                .context(|| {
                    format!("tagging {} as {tag} in {}", m.digest, job.target.describe())
                })?;
        }
        if let Some(tag) = &job.target_tag {
            let _p = self.permit().await;
            let _w = writes.lock().await;
            settled(&root.digest, || job.target.set_tag(tag, &root))
                .await
                .context(|| {
                    format!(
                        "tagging {} as {tag} in {}",
                        root.digest,
                        job.target.describe()
                    )
                })?;
        }
        report.target_digest = Some(root.digest.clone());
        Ok(())
    }

    /// For a single-platform image and a platform filter, what its config
    /// says it runs on when no filter names that (an index is filtered by
    /// its children's platforms instead). `None` when it matches, or is not
    /// an image whose config says (an artifact, an unreadable config).
    async fn unmatched_platform(&self, job: &CopyJob, root: &Manifest) -> Option<String> {
        let filters = &job.selection.platforms;
        if filters.is_empty() || root.is_index() {
            return None;
        }
        let config = root.content().ok()?.config?;
        if !crate::platform::is_image_config(&config.media_type) || config.size > MAX_MANIFEST_SIZE
        {
            return None;
        }
        let bytes = {
            let _p = self.permit().await;
            let mut stream = job.source.read_blob(&config).await.ok()?;
            let mut out = Vec::new();
            while let Some(chunk) = stream.try_next().await.ok()? {
                out.extend_from_slice(&chunk);
                if out.len() as u64 > config.size {
                    return None;
                }
            }
            out
        };
        if Digest::of(config.digest.algorithm(), &bytes) != config.digest {
            return None;
        }
        let platform = crate::platform::of_config(&bytes)?;
        if filters.iter().any(|f| f.matches(&platform)) {
            return None;
        }
        let wanted: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        Some(format!(
            "{} is a single-platform image for {}, which the platform filter ({}) does not name",
            job.source_label,
            crate::platform::describe(&platform),
            wanted.join(", ")
        ))
    }

    /// A permit for one small request (a manifest, a HEAD, a mount, a tag).
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .requests
            .acquire()
            .await
            .expect("semaphore never closed")
    }

    /// A permit for one blob stream, held while its bytes move: the share
    /// of a stream that a blob of this size takes.
    async fn stream_permit(&self, size: u64) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .streams
            .acquire_many(stream_share(size))
            .await
            .expect("semaphore never closed")
    }

    /// Make one blob present at the target: found there, mounted from a
    /// repository that has it, or streamed from the source — the last at
    /// most once per blob domain in this run.
    async fn transfer_blob(
        &self,
        image: usize,
        desc: &Descriptor,
        source: &Arc<dyn ImageSource>,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<BlobOutcome, CopyError> {
        let outcome = self.place_blob(image, desc, source, target).await?;
        self.emit(Event::BlobFinished {
            image,
            digest: desc.digest.clone(),
            size: desc.size,
            outcome,
        });
        Ok(outcome)
    }

    /// One task per blob domain asks the target and moves the blob if
    /// needed; the others wait for it, asking nothing, and then take the
    /// blob from where it was put: the same repository (present), another
    /// one (mount), or, if that fails, the source again.
    async fn place_blob(
        &self,
        image: usize,
        desc: &Descriptor,
        source: &Arc<dyn ImageSource>,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<BlobOutcome, CopyError> {
        let digest = &desc.digest;
        let domain = target.blob_domain();
        let here = BlobHome {
            repository: target.repository().cloned(),
        };
        let ctx = || {
            format!(
                "blob {digest} ({} bytes) for {}",
                desc.size,
                target.describe()
            )
        };
        let me = self.inner.next_mover.fetch_add(1, Ordering::Relaxed);
        let cell = self.inner.ledger.cell(&domain, digest);
        let placed = cell
            .get_or_try_init(|| async {
                let placed = |outcome| Placed {
                    home: here.clone(),
                    mover: me,
                    outcome,
                };
                {
                    let _p = self.permit().await;
                    if self.present_at(desc, target).await.context(ctx)? {
                        return Ok(placed(BlobOutcome::Present));
                    }
                    // Within one registry, a mount moves no bytes.
                    if let Some(from) = source.repository() {
                        if source.blob_domain() == domain
                            && target.mount_blob(desc, from).await.context(ctx)?
                        {
                            return Ok(placed(BlobOutcome::Mounted));
                        }
                    }
                }
                match self.stream_blob(image, desc, source, target).await {
                    Ok(()) => Ok::<_, CopyError>(placed(BlobOutcome::Copied)),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        let _p = self.permit().await;
                        if self.mount_from_sibling(desc, target).await.context(ctx)? {
                            Ok(placed(BlobOutcome::Mounted))
                        } else {
                            Err(e)
                        }
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if placed.mover == me {
            return Ok(placed.outcome);
        }
        let from = match &placed.home.repository {
            // A layout's blobs serve every name in it.
            None => return Ok(BlobOutcome::Present),
            Some(r) if Some(r) == target.repository() => return Ok(BlobOutcome::Present),
            Some(from) => from.clone(),
        };
        {
            let _p = self.permit().await;
            // Found rather than moved by this run: it may be here too.
            if placed.outcome == BlobOutcome::Present
                && self.present_at(desc, target).await.context(ctx)?
            {
                return Ok(BlobOutcome::Present);
            }
            if target.mount_blob(desc, &from).await.context(ctx)? {
                return Ok(BlobOutcome::Mounted);
            }
        }
        self.stream_blob(image, desc, source, target).await?;
        Ok(BlobOutcome::Copied)
    }

    /// A blob the source lacks (a delta bundle leaves out what the
    /// receiver holds): mount it from another repository this engine
    /// writes to that holds it. `false` when none does.
    async fn mount_from_sibling(
        &self,
        desc: &Descriptor,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<bool, StoreError> {
        let siblings: Vec<Arc<dyn ImageTarget>> = self
            .inner
            .targets
            .read()
            .expect("targets lock")
            .iter()
            .filter(|t| {
                t.blob_domain() == target.blob_domain() && t.repository() != target.repository()
            })
            .cloned()
            .collect();
        for sibling in siblings {
            let Some(from) = sibling.repository() else {
                continue;
            };
            if self.present_at(desc, &sibling).await? && target.mount_blob(desc, from).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the target holds the blob; one it holds with another size is
    /// an error (a corrupted store, or a digest collision).
    async fn present_at(
        &self,
        desc: &Descriptor,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<bool, StoreError> {
        match target.blob_size(&desc.digest).await? {
            None => Ok(false),
            Some(size) if size == desc.size => Ok(true),
            Some(size) => Err(StoreError::invalid(
                target.describe(),
                format!(
                    "holds {} with {size} bytes, the manifest says {}",
                    desc.digest, desc.size
                ),
            )),
        }
    }

    /// Stream a blob from source to target, starting again (for this blob
    /// only) when the transfer breaks in a way worth retrying, within the
    /// per-blob and per-run limits.
    async fn stream_blob(
        &self,
        image: usize,
        desc: &Descriptor,
        source: &Arc<dyn ImageSource>,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<(), CopyError> {
        let attempts = self.inner.options.blob_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.stream_blob_once(image, desc, source, target).await {
                Err(e) if attempt < attempts && worth_retrying(&e.source) && self.take_retry() => {
                    tracing::debug!(digest = %desc.digest, attempt, error = %e, "blob transfer broke; starting it again");
                    tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
                Err(e) if attempt > 1 => {
                    return Err(CopyError {
                        context: format!("{} (attempt {attempt} of {attempts})", e.context),
                        source: e.source,
                    })
                }
                other => return other,
            }
        }
    }

    /// Take one retry from the run's budget; false when it is spent.
    fn take_retry(&self) -> bool {
        self.inner
            .retries_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn stream_blob_once(
        &self,
        image: usize,
        desc: &Descriptor,
        source: &Arc<dyn ImageSource>,
        target: &Arc<dyn ImageTarget>,
    ) -> Result<(), CopyError> {
        let ctx = || {
            format!(
                "copying blob {} ({} bytes) from {} to {}",
                desc.digest,
                desc.size,
                source.describe(),
                target.describe()
            )
        };
        let _s = self.stream_permit(desc.size).await;
        self.emit(Event::BlobStarted {
            image,
            digest: desc.digest.clone(),
            size: desc.size,
        });
        // Large blobs from a registry go through a spool on disk; the
        // rest straight from the source (a layout is re-read cheaply).
        let spool = match (&self.inner.options.spools, source.repository()) {
            (Some(spools), Some(_)) => spools.claim(desc),
            _ => None,
        };
        let inner: Box<dyn BlobFeed> = match &spool {
            Some(s) => Box::new(s.feed(source.clone())),
            None => Box::new(DirectFeed {
                source: source.clone(),
                desc: desc.clone(),
            }),
        };
        let feed = CountedFeed {
            inner,
            engine: self.clone(),
            image,
            digest: desc.digest.clone(),
        };
        target.write_blob_from(desc, &feed).await.context(ctx)?;
        if let Some(s) = spool {
            s.finish();
        }
        Ok(())
    }
}

/// A feed whose bytes are reported as progress as the target takes them.
struct CountedFeed {
    inner: Box<dyn BlobFeed>,
    engine: Engine,
    image: usize,
    digest: Digest,
}

#[async_trait::async_trait]
impl BlobFeed for CountedFeed {
    async fn open(&self, offset: u64) -> Result<BlobStream, StoreError> {
        let stream = self.inner.open(offset).await?;
        let (engine, image, digest) = (self.engine.clone(), self.image, self.digest.clone());
        Ok(Box::pin(stream.inspect_ok(move |chunk: &Bytes| {
            engine.emit(Event::BlobProgress {
                image,
                digest: digest.clone(),
                bytes: chunk.len() as u64,
            })
        })))
    }
}

/// Transient failures, and an upload session the registry dropped (as
/// distribution does after a broken PATCH), are worth a fresh start; bad
/// content, refused credentials and missing sources are not.
/// A cosign tag as the target names it: a layout's or archive's names
/// carry the image's repository (`repo:sha256-….sig`), a registry's do not.
fn cosign_tag_at(job: &CopyJob, tag: &str) -> String {
    match job.target_tag.as_deref().and_then(|t| t.rsplit_once(':')) {
        Some((repo, _)) if job.target.repository().is_none() => format!("{repo}:{tag}"),
        _ => tag.to_string(),
    }
}

fn worth_retrying(e: &StoreError) -> bool {
    e.kind() == ErrorKind::Retryable
        || e.has_registry_code(&ErrorCode::BlobUploadInvalid)
        || e.has_registry_code(&ErrorCode::BlobUploadUnknown)
}

/// Small requests (manifests, HEADs, mounts, tags) in flight for `jobs`
/// blob streams. Across a network each one costs a round trip, not memory:
/// `many` at 100 ms took 26.5 s with 8 in flight, 10.9 s with 32.
pub fn request_budget(jobs: usize) -> usize {
    jobs.max(1) * REQUESTS_PER_STREAM
}

const REQUESTS_PER_STREAM: usize = 4;

/// How much of a blob stream a blob of `size` bytes takes, in quarters (a
/// whole one above 3 MiB). What a stream costs is its HTTP buffers, which a
/// small blob never fills, and round trips, which every blob pays alike:
/// so `--jobs 8` streams up to 32 blobs of 1 MiB, or 8 large ones.
fn stream_share(size: u64) -> u32 {
    size.div_ceil(STREAM_SHARE_BYTES)
        .clamp(1, u64::from(SHARES_PER_STREAM)) as u32
}

const SHARES_PER_STREAM: u32 = 4;
const STREAM_SHARE_BYTES: u64 = 1024 * 1024;

/// Images started and not finished at once: twice the request budget, so
/// every permit has work waiting while memory stays flat in the tag count.
fn images_in_flight(jobs: usize) -> usize {
    2 * request_budget(jobs)
}

/// How often a manifest write is tried when the registry still calls a
/// child unknown.
const SETTLE_TRIES: u32 = 4;

/// A manifest write (push or tag) whose children this run has already
/// pushed. distribution 2.8 rewrites a manifest's revision link in place
/// whenever the manifest is pushed again (as tagging does), so for a moment
/// a parent can find that child "unknown". The engine serialises its own
/// manifest writes per target; this covers other writers. Any other error
/// is returned at once.
async fn settled<F, Fut>(digest: &Digest, mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut tries = 1;
    loop {
        match write().await {
            Err(e)
                if e.has_registry_code(&ErrorCode::ManifestBlobUnknown) && tries < SETTLE_TRIES =>
            {
                tracing::debug!(%digest, tries, "a child manifest reads as unknown; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(tries))).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// A graph walk's failure as an image's error, naming the image.
fn graph_error(e: graph::GraphError, label: &str) -> CopyError {
    use graph::GraphError;
    match e {
        GraphError::Read { digest, source } => CopyError {
            context: format!("reading manifest {digest} of {label}"),
            source,
        },
        GraphError::NoPlatform { wanted } => CopyError {
            context: format!("filtering {label}"),
            source: StoreError::NotFound(format!("a manifest for platform {wanted}")),
        },
        other => CopyError {
            context: format!("reading the manifests of {label}"),
            source: StoreError::invalid(label, other.to_string()),
        },
    }
}

/// Reads manifests for the graph walk within the run's concurrency budget.
struct PermittedReader<'a> {
    engine: &'a Engine,
    source: &'a dyn ImageSource,
}

#[async_trait::async_trait]
impl ManifestReader for PermittedReader<'_> {
    async fn read_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let _p = self.engine.permit().await;
        self.source.manifest(digest).await
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        let _p = self.engine.permit().await;
        self.source.referrers(subject, artifact_types).await
    }

    async fn tagged(&self, tag: &str) -> Result<Option<Manifest>, StoreError> {
        let _p = self.engine.permit().await;
        graph::tagged_in(self.source, tag).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_takes_a_quarter_of_a_stream_per_mib_and_a_whole_one_above_3_mib() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(stream_share(0), 1);
        assert_eq!(stream_share(MIB), 1);
        assert_eq!(stream_share(MIB + 1), 2);
        assert_eq!(stream_share(3 * MIB), 3);
        assert_eq!(stream_share(3 * MIB + 1), SHARES_PER_STREAM);
        assert_eq!(stream_share(u64::MAX), SHARES_PER_STREAM);
    }
}
