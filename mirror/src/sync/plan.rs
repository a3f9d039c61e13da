//! From a config to a plan: list the source repositories and their tags,
//! pick tags, name each image's target, and compare source and target
//! digests with HEAD requests only, so an unchanged image costs two
//! requests and moves nothing. A dry run also counts the blob bytes missing
//! at the target.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use registry_client::{Client, Descriptor, Digest, ErrorKind, Manifest, Repository};

use super::config::{check_tag, SourceSpec, SyncConfig, SyncEntry};
use super::shard::Shard;
use crate::plan::UploadOverride;
use crate::platform::PlatformFilter;
use crate::state::UploadJournal;
use crate::store::layout::LayoutStore;
use crate::store::registry::RegistryStore;
use crate::store::{ImageRef, ImageStore, StoreError};

/// One image of the plan: a source tag and where it goes.
#[derive(Debug, Clone)]
pub struct Item {
    /// `None` only for an image that failed while planning.
    pub source: Option<Arc<dyn ImageStore>>,
    pub source_ref: ImageRef,
    pub source_label: String,
    /// `None`: a layout that does not exist yet (a dry run creates nothing).
    pub target: Option<Arc<dyn ImageStore>>,
    /// The tag, or for a layout the full name (`repo:tag`).
    pub target_tag: String,
    pub target_label: String,
    pub platforms: Vec<PlatformFilter>,
    pub state: State,
}

#[derive(Debug, Clone)]
pub enum State {
    /// Not compared yet.
    Pending,
    /// The target already has what the source has.
    Current {
        digest: Digest,
    },
    /// The target lacks it or has something else.
    Copy {
        source_digest: Digest,
        /// What the target tag pointed at before, if anything.
        target_before: Option<Digest>,
        /// Blob bytes missing at the target (dry runs only).
        bytes_missing: Option<u64>,
    },
    Failed {
        error: String,
        kind: ErrorKind,
    },
}

/// Opens stores once each: registry repositories with their upload
/// settings, layouts shared by every image that uses them.
pub struct Stores {
    client: Client,
    uploads: HashMap<String, UploadOverride>,
    layouts: Mutex<HashMap<PathBuf, Arc<LayoutStore>>>,
    /// Create target layouts that do not exist (not in a dry run).
    create: bool,
    /// Where registry upload sessions are recorded for a rerun to continue.
    sessions: Option<UploadJournal>,
}

impl Stores {
    pub fn new(client: Client, config: &SyncConfig, create: bool) -> Self {
        let uploads = config
            .registries
            .iter()
            .map(|r| {
                (
                    r.host.clone(),
                    UploadOverride {
                        chunk_threshold: r.chunk_threshold,
                        chunk_size: r.chunk_size,
                    },
                )
            })
            .collect();
        Stores {
            client,
            uploads,
            layouts: Mutex::default(),
            create,
            sessions: None,
        }
    }

    /// Record registry upload sessions in a state directory's journal.
    pub fn with_sessions(mut self, sessions: UploadJournal) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn registry(&self, repo: &Repository) -> Arc<dyn ImageStore> {
        let policy = self
            .uploads
            .get(repo.registry())
            .copied()
            .unwrap_or_default()
            .apply(repo.registry());
        let mut store =
            RegistryStore::new(self.client.clone(), repo.clone()).with_upload_policy(policy);
        if let Some(s) = &self.sessions {
            store = store.with_sessions(s.clone());
        }
        Arc::new(store)
    }

    fn layout(&self, path: &Path, target: bool) -> Result<Option<Arc<LayoutStore>>, StoreError> {
        let mut layouts = self.layouts.lock().expect("layouts");
        if let Some(s) = layouts.get(path) {
            return Ok(Some(s.clone()));
        }
        let store = if target && self.create {
            LayoutStore::open_or_create(path)?
        } else if target && !path.join("index.json").exists() {
            return Ok(None);
        } else {
            LayoutStore::open(path)?
        };
        let store = Arc::new(store);
        layouts.insert(path.to_path_buf(), store.clone());
        Ok(Some(store))
    }
}

/// A failure found while planning (listing, naming), kept for the report.
fn failed(source_label: String, target_label: String, error: String, kind: ErrorKind) -> Item {
    Item {
        source: None,
        source_ref: ImageRef::Only,
        source_label,
        target: None,
        target_tag: String::new(),
        target_label,
        platforms: Vec::new(),
        state: State::Failed { error, kind },
    }
}

/// A repository's tags when its entry filters them (`None`: not listed).
type Listing = Result<Option<Vec<String>>, StoreError>;

/// A source repository found for an entry.
struct SourceRepo {
    store: Arc<dyn ImageStore>,
    /// Its path (`boot/linux`); `{repo}` in templates.
    repo: String,
    /// Below the entry's prefix; `{path}` in templates.
    path: String,
    /// How a tag of it is named in messages (`HOST/REPO`, `oci:DIR:REPO`).
    label: String,
    /// A layout source (its names are `repo:tag`).
    layout: Option<Arc<LayoutStore>>,
}

/// Every image the config asks for, not yet compared; failures to list or
/// name images come back as failed items. With a shard, only its images.
/// Entries are planned in order (one may create the layout the next reads);
/// within an entry, `jobs` tag listings at a time.
pub async fn expand(
    config: &SyncConfig,
    stores: &Stores,
    shard: Option<Shard>,
    jobs: usize,
) -> Vec<Item> {
    let mut items = Vec::new();
    for entry in &config.entries {
        expand_entry(entry, stores, jobs, &mut items).await;
    }
    // Two images for one target tag would overwrite each other: both fail.
    let mut by_target: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        if matches!(it.state, State::Pending) {
            by_target
                .entry(it.target_label.clone())
                .or_default()
                .push(i);
        }
    }
    for (target, idx) in by_target {
        if idx.len() > 1 {
            let sources: Vec<String> = idx.iter().map(|i| items[*i].source_label.clone()).collect();
            for i in idx {
                items[i].state = State::Failed {
                    error: format!(
                        "{} images would be written to {target}: {} (make the target or target_tag tell them apart)",
                        sources.len(),
                        sources.join(", ")
                    ),
                    kind: ErrorKind::InvalidInput,
                };
            }
        }
    }
    if let Some(s) = shard {
        items.retain(|it| s.owns(&shard_key(it)));
    }
    items
}

/// What decides an image's shard: where it comes from and goes to.
pub fn shard_key(item: &Item) -> String {
    format!("{} {}", item.source_label, item.target_label)
}

async fn expand_entry(entry: &SyncEntry, stores: &Stores, jobs: usize, items: &mut Vec<Item>) {
    let fail = |items: &mut Vec<Item>, msg: String, kind: ErrorKind| {
        items.push(failed(
            entry.source_text.clone(),
            entry.target.to_string(),
            msg,
            kind,
        ));
    };
    let repos = match source_repos(entry, stores).await {
        Ok(r) => r,
        Err(e) => {
            let kind = e.kind();
            fail(
                items,
                format!("listing the repositories of {}: {e}", entry.source_text),
                kind,
            );
            return;
        }
    };
    let prefix_source = !matches!(entry.source, SourceSpec::Registry(_))
        && !matches!(
            entry.source,
            SourceSpec::Layout {
                repository: Some(_),
                ..
            }
        );
    // Tag listings of a prefix's repositories go out `jobs` at a time; the
    // results keep the repositories' order, so plans read the same each run.
    let listings: Vec<(SourceRepo, Listing)> = stream::iter(repos)
        .map(|src| async move {
            let listed = if entry.selector.needs_listing() {
                list_tags(&src, stores).await.map(Some)
            } else {
                Ok(None)
            };
            (src, listed)
        })
        .buffered(jobs.max(1))
        .collect()
        .await;
    for (src, listed) in listings {
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                let kind = e.kind();
                fail(
                    items,
                    format!("listing the tags of {}: {e}", src.label),
                    kind,
                );
                continue;
            }
        };
        let selected = entry.selector.select(listed.as_deref());
        let mut values: BTreeMap<String, String> = entry.vars.clone();
        values.insert("repo".into(), src.repo.clone());
        values.insert(
            "name".into(),
            src.repo.rsplit('/').next().unwrap_or(&src.repo).to_string(),
        );
        values.insert("path".into(), src.path.clone());
        let target_text = match entry.target.render(&values) {
            Ok(t) if entry.target.has_placeholders() || !prefix_source => t,
            Ok(t) => join_target(&t, &src.path),
            Err(m) => {
                fail(items, m, ErrorKind::InvalidInput);
                continue;
            }
        };
        let target = match open_target(&target_text, &src, stores) {
            Ok(t) => t,
            Err(m) => {
                fail(
                    items,
                    format!("target {target_text}: {m}"),
                    ErrorKind::InvalidInput,
                );
                continue;
            }
        };
        for sel in selected {
            let source_label = format!("{}:{}", src.label, sel.tag);
            let mut tv = values.clone();
            tv.extend(sel.captures.clone());
            tv.insert("tag".into(), sel.tag.clone());
            let tag = match entry
                .target_tag
                .render(&tv)
                .and_then(|t| check_tag(&t).map(|_| t))
            {
                Ok(t) => t,
                Err(m) => {
                    items.push(failed(
                        source_label,
                        target.label.clone(),
                        format!("target tag: {m}"),
                        ErrorKind::InvalidInput,
                    ));
                    continue;
                }
            };
            let (target_tag, target_label) = match &target.layout_repo {
                Some(r) => (format!("{r}:{tag}"), format!("{}:{tag}", target.label)),
                None => (tag.clone(), format!("{}:{tag}", target.label)),
            };
            let source_ref = if src.layout.is_some() {
                ImageRef::Tag(format!("{}:{}", src.repo, sel.tag))
            } else {
                ImageRef::Tag(sel.tag.clone())
            };
            items.push(Item {
                source: Some(src.store.clone()),
                source_ref,
                source_label,
                target: target.store.clone(),
                target_tag,
                target_label,
                platforms: entry.platforms.clone(),
                state: State::Pending,
            });
        }
    }
}

/// `TARGET/PATH` for a prefix source whose target names no placeholder.
fn join_target(target: &str, path: &str) -> String {
    if target.starts_with("oci:") || path.is_empty() {
        return target.to_string();
    }
    format!("{}/{path}", target.trim_end_matches('/'))
}

struct Target {
    store: Option<Arc<dyn ImageStore>>,
    /// For a layout: the repository part of its names.
    layout_repo: Option<String>,
    label: String,
}

fn open_target(text: &str, src: &SourceRepo, stores: &Stores) -> Result<Target, String> {
    if let Some(rest) = text.strip_prefix("oci:") {
        let (path, repo) = match rest.split_once(':') {
            Some((p, r)) => (p, r.to_string()),
            None => (rest, src.repo.clone()),
        };
        if path.is_empty() {
            return Err("the layout path is empty".into());
        }
        let store = stores
            .layout(Path::new(path), true)
            .map_err(|e| e.to_string())?;
        return Ok(Target {
            store: store.map(|s| s as Arc<dyn ImageStore>),
            label: format!("oci:{path}:{repo}"),
            layout_repo: Some(repo),
        });
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    if last.contains(':') || last.contains('@') {
        return Err("a target is a repository; name its tag with target_tag:".into());
    }
    let repo = Repository::parse(text).map_err(|e| e.to_string())?;
    Ok(Target {
        store: Some(stores.registry(&repo)),
        layout_repo: None,
        label: repo.to_string(),
    })
}

async fn source_repos(entry: &SyncEntry, stores: &Stores) -> Result<Vec<SourceRepo>, StoreError> {
    match &entry.source {
        SourceSpec::Registry(repo) => Ok(vec![SourceRepo {
            store: stores.registry(repo),
            repo: repo.name().to_string(),
            path: repo.name().rsplit('/').next().unwrap_or("").to_string(),
            label: repo.to_string(),
            layout: None,
        }]),
        SourceSpec::RegistryPrefix { registry, prefix } => {
            let all = stores.client().list_repositories(registry).await?;
            let mut out = Vec::new();
            for name in all {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    match name
                        .strip_prefix(prefix.as_str())
                        .and_then(|r| r.strip_prefix('/'))
                    {
                        Some(p) => p.to_string(),
                        None => continue,
                    }
                };
                let repo = Repository::new(registry, &name)?;
                out.push(SourceRepo {
                    store: stores.registry(&repo),
                    label: repo.to_string(),
                    repo: name,
                    path,
                    layout: None,
                });
            }
            Ok(out)
        }
        SourceSpec::Layout { path, repository } => {
            let store = stores
                .layout(path, false)?
                .expect("a source layout is opened, never skipped");
            let repos: Vec<String> = match repository {
                Some(r) => vec![r.clone()],
                None => {
                    let mut names: Vec<String> = store
                        .names()
                        .await?
                        .into_iter()
                        .filter_map(|(n, _)| n.rsplit_once(':').map(|(r, _)| r.to_string()))
                        .collect();
                    names.sort();
                    names.dedup();
                    names
                }
            };
            Ok(repos
                .into_iter()
                .map(|r| SourceRepo {
                    store: store.clone() as Arc<dyn ImageStore>,
                    label: format!("oci:{}:{r}", path.display()),
                    path: if repository.is_some() {
                        r.rsplit('/').next().unwrap_or(&r).to_string()
                    } else {
                        r.clone()
                    },
                    repo: r,
                    layout: Some(store.clone()),
                })
                .collect())
        }
    }
}

async fn list_tags(src: &SourceRepo, stores: &Stores) -> Result<Vec<String>, StoreError> {
    if let Some(store) = &src.layout {
        let prefix = format!("{}:", src.repo);
        return Ok(store
            .names()
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.strip_prefix(&prefix).map(str::to_string))
            .filter(|t| !t.contains(':'))
            .collect());
    }
    let repo = src
        .store
        .repository()
        .expect("a registry source is a repository");
    Ok(stores.client().list_tags(repo, None).await?)
}

/// Compare every pending item's source and target digests, `jobs` at a
/// time: two HEAD requests each (a GET for the source when a platform
/// filter decides what the target holds). With `estimate`, also count the
/// blob bytes missing at the target for what would be copied.
pub async fn compare(items: &mut [Item], jobs: usize, estimate: bool) {
    // First one image per registry not seen before, then the rest: on a
    // token registry the first request meets the 401 challenge; once it is
    // known the others ask for their tokens up front (or find one cached)
    // instead of each meeting the challenge too.
    let mut seen = HashSet::new();
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..items.len())
        .filter(|i| matches!(items[*i].state, State::Pending))
        .partition(|i| {
            let it = &items[*i];
            let source = it.source.as_ref().map(|s| s.blob_domain());
            let target = it.target.as_ref().map(|t| t.blob_domain());
            // Both inserts run: `|` does not short-circuit.
            seen.insert((0, source)) | seen.insert((1, target))
        });
    for batch in [first, rest] {
        let shared: &[Item] = items;
        let results: Vec<(usize, State)> = stream::iter(batch)
            .map(|i| async move { (i, compare_one(&shared[i]).await) })
            .buffer_unordered(jobs.max(1))
            .collect()
            .await;
        for (i, s) in results {
            items[i].state = s;
        }
    }
    if estimate {
        let counted: Mutex<HashSet<(String, Digest)>> = Mutex::default();
        let results: Vec<(usize, Result<u64, StoreError>)> = stream::iter(items.iter().enumerate())
            .filter(|(_, it)| futures::future::ready(matches!(it.state, State::Copy { .. })))
            .map(|(i, it)| {
                let counted = &counted;
                async move { (i, missing_bytes(it, counted).await) }
            })
            .buffer_unordered(jobs.max(1))
            .collect()
            .await;
        for (i, r) in results {
            match r {
                Ok(n) => {
                    if let State::Copy { bytes_missing, .. } = &mut items[i].state {
                        *bytes_missing = Some(n);
                    }
                }
                Err(e) => {
                    items[i].state = State::Failed {
                        error: format!("reading {} to count its blobs: {e}", items[i].source_label),
                        kind: e.kind(),
                    }
                }
            }
        }
    }
}

async fn compare_one(it: &Item) -> State {
    let Some(source) = &it.source else {
        unreachable!("only planned items are compared")
    };
    let fail = |what: String, e: StoreError| State::Failed {
        error: format!("{what}: {e}"),
        kind: e.kind(),
    };
    let source = if it.platforms.is_empty() {
        match source.resolve_digest(&it.source_ref).await {
            Ok(Some(d)) => (d.clone(), d),
            Ok(None) => {
                return State::Failed {
                    error: format!("{} not found at the source", it.source_label),
                    kind: ErrorKind::NotFound,
                }
            }
            Err(e) => return fail(format!("reading {}", it.source_label), e),
        }
    } else {
        match source.resolve(&it.source_ref).await {
            Ok(m) => {
                let expected = filtered_digest(&m, &it.platforms).unwrap_or(m.digest.clone());
                (m.digest, expected)
            }
            Err(e) => return fail(format!("reading {}", it.source_label), e),
        }
    };
    let (source_digest, expected) = source;
    let target_before = match &it.target {
        None => None,
        Some(t) => match t
            .resolve_digest(&ImageRef::Tag(it.target_tag.clone()))
            .await
        {
            Ok(d) => d,
            Err(e) => return fail(format!("reading {}", it.target_label), e),
        },
    };
    if target_before.as_ref() == Some(&expected) {
        State::Current { digest: expected }
    } else {
        State::Copy {
            source_digest,
            target_before,
            bytes_missing: None,
        }
    }
}

/// The digest the engine gives an index after a platform filter (it
/// writes a new index only when the filter drops children).
fn filtered_digest(m: &Manifest, platforms: &[PlatformFilter]) -> Option<Digest> {
    if !m.is_index() {
        return None;
    }
    let content = m.content().ok()?;
    let all = content.manifests.len();
    let kept: Vec<Descriptor> = content
        .manifests
        .into_iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| platforms.iter().any(|f| f.matches(p)))
        })
        .collect();
    if kept.is_empty() || kept.len() == all {
        return None;
    }
    crate::transfer::filtered_index(m, &kept)
        .ok()
        .map(|f| f.digest)
}

/// Blob bytes of an image the target lacks, each blob counted once per
/// target blob domain in the whole plan.
async fn missing_bytes(
    it: &Item,
    counted: &Mutex<HashSet<(String, Digest)>>,
) -> Result<u64, StoreError> {
    let (State::Copy { source_digest, .. }, Some(source)) = (&it.state, &it.source) else {
        return Ok(0);
    };
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![(source.manifest(source_digest).await?, true)];
    while let Some((m, root)) = todo.pop() {
        let content = m.content().map_err(StoreError::from)?;
        if m.is_index() {
            for child in content.manifests {
                let keep = !root
                    || it.platforms.is_empty()
                    || child
                        .platform
                        .as_ref()
                        .is_some_and(|p| it.platforms.iter().any(|f| f.matches(p)));
                if keep && seen.insert(child.digest.clone()) {
                    todo.push((source.manifest(&child.digest).await?, false));
                }
            }
        } else {
            for d in content.config.into_iter().chain(content.layers) {
                let foreign = !d.urls.is_empty() || d.media_type.contains("nondistributable");
                if !foreign && seen.insert(d.digest.clone()) {
                    blobs.push(d);
                }
            }
        }
    }
    let domain = it
        .target
        .as_ref()
        .map(|t| t.blob_domain())
        .unwrap_or_default();
    let mut missing = 0;
    for b in blobs {
        let present = match &it.target {
            Some(t) => t.blob_size(&b.digest).await?.is_some(),
            None => false,
        };
        if !present
            && counted
                .lock()
                .expect("counted")
                .insert((domain.clone(), b.digest.clone()))
        {
            missing += b.size;
        }
    }
    Ok(missing)
}
