//! From a config to a plan: list the source repositories and their tags,
//! pick tags with the entry's selector, name each image's target with the
//! entry's templates, and keep this shard's images. The jobs are then
//! compared and run by the one planner (`crate::plan`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use registry_client::{ErrorKind, Repository};

use super::config::{check_tag, SourceSpec, SyncConfig, SyncEntry};
use super::shard::Shard;
use crate::endpoint::split_file;
use crate::graph::Selection;
use crate::no_match::NoMatch;
use crate::plan::{FileSource, Job, State, Stores};
use crate::store::{ImageRef, ImageSource, ImageTarget, StoreError};

/// The factory for a config: its registries' upload settings over the
/// defaults; with `create` false (a dry run), nothing is created.
pub fn stores(client: registry_client::Client, config: &SyncConfig, create: bool) -> Stores {
    let mut stores = Stores::new(client);
    for r in &config.registries {
        stores = stores.with_registry_uploads(
            &r.host,
            crate::plan::UploadOverride {
                chunk_threshold: r.chunk_threshold,
                chunk_size: r.chunk_size,
            },
        );
    }
    if create {
        stores
    } else {
        stores.read_only()
    }
}

/// A repository's tags when its entry filters them (`None`: not listed).
type Listing = Result<Option<Vec<String>>, StoreError>;

/// A source repository found for an entry.
struct SourceRepo {
    store: Arc<dyn ImageSource>,
    /// Its path (`boot/linux`); `{repo}` in templates.
    repo: String,
    /// Below the entry's prefix; `{path}` in templates.
    path: String,
    /// How a tag of it is named in messages (`HOST/REPO`, `oci:DIR:REPO`).
    label: String,
    /// A layout or archive source (its names are `repo:tag`).
    files: Option<FileSource>,
}

/// What a config asks for: its images, and what deserves a word though
/// nothing failed (an entry whose filters matched no tag).
#[derive(Debug, Default)]
pub struct Expansion {
    pub jobs: Vec<Job>,
    pub warnings: Vec<String>,
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
) -> Expansion {
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for entry in &config.entries {
        let before = items.len();
        let listed = expand_entry(entry, stores, jobs, config.no_match, &mut items).await;
        // Nothing failed and nothing was picked: a filter matched no tag.
        if items.len() == before {
            let message = format!(
                "entry at line {} ({}): {} matched none of the {listed} tags listed",
                entry.line,
                entry.source_text,
                entry.selector.describe()
            );
            match config.no_match {
                NoMatch::Warn => warnings.push(message),
                NoMatch::Error => items.push(Job::failed(
                    entry.source_text.clone(),
                    entry.target.to_string(),
                    format!("{message} (no_match: error)"),
                    ErrorKind::InvalidInput,
                )),
            }
        }
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
    // The plan lives for the whole run: not the room doubling left.
    items.shrink_to_fit();
    Expansion {
        jobs: items,
        warnings,
    }
}

/// What decides an image's shard: where it comes from and goes to.
pub fn shard_key(item: &Job) -> String {
    format!("{} {}", item.source_label, item.target_label)
}

/// Adds the entry's images (and failures) to `items`; returns how many tags
/// were listed.
async fn expand_entry(
    entry: &SyncEntry,
    stores: &Stores,
    jobs: usize,
    no_match: NoMatch,
    items: &mut Vec<Job>,
) -> usize {
    let fail = |items: &mut Vec<Job>, msg: String, kind: ErrorKind| {
        items.push(Job::failed(
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
            return 0;
        }
    };
    let prefix_source = !matches!(entry.source, SourceSpec::Registry(_))
        && !matches!(
            entry.source,
            SourceSpec::Files {
                repository: Some(_),
                ..
            }
        );
    // Tag listings of a prefix's repositories go out `jobs` at a time; the
    // results keep the repositories' order, so plans read the same each run.
    let listings: Vec<(SourceRepo, Listing)> = stream::iter(repos)
        .map(|src| async move {
            let listed = if entry.selector.needs_listing() {
                list_tags(&src).await.map(Some)
            } else {
                Ok(None)
            };
            (src, listed)
        })
        .buffered(jobs.max(1))
        .collect()
        .await;
    let mut listed_tags = 0;
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
        // A layout's or archive's names come from a file: one that is not a
        // repository name (`../../x`) would put `{repo}`, `{path}` and
        // `{name}` outside the target.
        if src.files.is_some() {
            if let Err(e) = Repository::new("localhost", &src.repo) {
                fail(
                    items,
                    format!(
                        "{}: the image name {:?} is not a repository name, so it cannot name a target: {e}",
                        src.label, src.repo
                    ),
                    ErrorKind::InvalidInput,
                );
                continue;
            }
        }
        listed_tags += listed.as_ref().map_or(0, Vec::len);
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
                    items.push(Job::failed(
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
            let source_ref = if src.files.is_some() {
                ImageRef::Tag(format!("{}:{}", src.repo, sel.tag))
            } else {
                ImageRef::Tag(sel.tag.clone())
            };
            items.push(Job {
                source: Some(src.store.clone()),
                source_ref,
                source_label,
                target: target.store.clone(),
                target_tag: Some(target_tag),
                target_digest: None,
                target_label,
                selection: Selection {
                    platforms: entry.platforms.clone(),
                    include_foreign: false,
                    no_match,
                    referrers: entry.referrers.clone(),
                    cosign_tags: entry.cosign_tags,
                },
                state: State::Pending,
            });
        }
    }
    listed_tags
}

/// `TARGET/PATH` for a prefix source whose target names no placeholder.
fn join_target(target: &str, path: &str) -> String {
    if split_file(target).is_some() || path.is_empty() {
        return target.to_string();
    }
    format!("{}/{path}", target.trim_end_matches('/'))
}

struct Target {
    store: Option<Arc<dyn ImageTarget>>,
    /// For a layout or archive: the repository part of its names.
    layout_repo: Option<String>,
    label: String,
}

fn open_target(text: &str, src: &SourceRepo, stores: &Stores) -> Result<Target, String> {
    if let Some(file) = split_file(text) {
        let (kind, path, repo) = file?;
        let repo = repo.map_or_else(|| src.repo.clone(), str::to_string);
        let store = stores
            .file_target(kind, std::path::Path::new(path))
            .map_err(|e| e.to_string())?;
        return Ok(Target {
            store: store.map(|s| s.store()),
            label: format!("{}:{path}:{repo}", kind.scheme()),
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
            files: None,
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
                    files: None,
                });
            }
            Ok(out)
        }
        SourceSpec::Files {
            kind,
            path,
            repository,
        } => {
            let files = stores.file_source(*kind, path)?;
            let store = files.store();
            let repos: Vec<String> = match repository {
                Some(r) => vec![r.clone()],
                None => {
                    let mut names: Vec<String> = files
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
                    store: store.clone(),
                    label: format!("{}:{}:{r}", kind.scheme(), path.display()),
                    path: if repository.is_some() {
                        r.rsplit('/').next().unwrap_or(&r).to_string()
                    } else {
                        r.clone()
                    },
                    repo: r,
                    files: Some(files.clone()),
                })
                .collect())
        }
    }
}

async fn list_tags(src: &SourceRepo) -> Result<Vec<String>, StoreError> {
    if let Some(store) = &src.files {
        let prefix = format!("{}:", src.repo);
        return Ok(store
            .names()
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.strip_prefix(&prefix).map(str::to_string))
            .filter(|t| !t.contains(':'))
            .collect());
    }
    src.store.list_tags().await
}
