//! The benchmark scenarios, generated deterministically by the project's
//! fixture generator into OCI layouts cached on disk, pushed to a source
//! registry once (its storage is cached too, see `seed.rs`), and described
//! as what a copy must move.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mirror_tests::fixtures::{self, ImageSpec, IndexSpec, LayerSpec};
use registry_client::Digest;

/// A benchmark image set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The six AzureML repositories × two region tags (~940 MiB unique).
    Azureml,
    /// A two-platform index of a 1 GiB and four 64 MiB layers each (~2.5 GiB).
    Big,
    /// 40 repositories × 3 tags of small shared layers (~180 MiB, 294 blobs).
    Many,
    /// 10,000 tags over 1,000 repositories of small images sharing layers
    /// (~60 MiB); `--huge-tags` copies the first repositories only.
    Huge,
    /// One image of one 8 GiB layer.
    Big8g,
}

/// Repositories of `huge`, and tags in each.
pub const HUGE_REPOSITORIES: usize = 1000;
pub const HUGE_TAGS_PER_REPOSITORY: usize = 10;

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Azureml => "azureml",
            Scenario::Big => "big",
            Scenario::Many => "many",
            Scenario::Huge => "huge",
            Scenario::Big8g => "big8g",
        }
    }

    fn specs(self) -> (Vec<ImageSpec>, Vec<IndexSpec>) {
        match self {
            Scenario::Azureml => (fixtures::azureml(), Vec::new()),
            Scenario::Big => (Vec::new(), vec![fixtures::big_index()]),
            Scenario::Many => (fixtures::many(), Vec::new()),
            Scenario::Huge => (huge(|_, _| false), Vec::new()),
            Scenario::Big8g => (vec![big8g()], Vec::new()),
        }
    }
}

const KIB: usize = 1024;

/// `huge`: `huge/r-0000` … `huge/r-0999`, tags `t0` … `t9`, three layers
/// each: a base (one of 16, 96 KiB), one per repository (16 KiB), one per
/// tag (4 KiB). `changed(r, t)` gives that tag a different own layer.
fn huge(changed: impl Fn(usize, usize) -> bool) -> Vec<ImageSpec> {
    let mut out = Vec::with_capacity(HUGE_REPOSITORIES * HUGE_TAGS_PER_REPOSITORY);
    for r in 0..HUGE_REPOSITORIES {
        for t in 0..HUGE_TAGS_PER_REPOSITORY {
            out.push(huge_image(r, t, changed(r, t)));
        }
    }
    out
}

fn huge_image(r: usize, t: usize, changed: bool) -> ImageSpec {
    let (r64, t64) = (r as u64, t as u64);
    let own = 0x4E6E_2000_0000 + r64 * 16 + t64 + if changed { 0x1_0000_0000 } else { 0 };
    ImageSpec::new(
        &format!("huge/r-{r:04}"),
        &format!("t{t}"),
        vec![
            LayerSpec {
                seed: 0x4E6E_0000 + r64 % 16,
                size: 96 * KIB,
            },
            LayerSpec {
                seed: 0x4E6E_1000_0000 + r64,
                size: 16 * KIB,
            },
            LayerSpec {
                seed: own,
                size: 4 * KIB,
            },
        ],
    )
}

/// The one percent of `huge` that the update phase changes: tag `t0` of
/// every tenth repository (so also one percent of any first `10 × n`
/// repositories' tags).
fn huge_changed(r: usize, t: usize) -> bool {
    r.is_multiple_of(10) && t == 0
}

/// `big8g`: `big8g/layer:latest`, one 8 GiB layer (generated streaming).
fn big8g() -> ImageSpec {
    ImageSpec::new(
        "big8g/layer",
        "latest",
        vec![LayerSpec {
            seed: 0xB18_0000,
            size: 8 << 30,
        }],
    )
}

/// A generated scenario on disk: its layout and what it holds.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub layout: PathBuf,
    pub images: Vec<Image>,
}

/// One tagged image (or index) of a scenario, with what a copy moves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    /// Manifests in push order (children first), as `(digest, media type)`.
    pub manifests: Vec<(Digest, String)>,
    /// Blobs (configs and layers) with their sizes.
    pub blobs: Vec<(Digest, u64)>,
}

impl Prepared {
    /// The name it is cached under.
    pub fn name(&self) -> String {
        self.layout
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Only the images of the first `n` repositories (in name order).
    pub fn first_repositories(&self, n: usize) -> Prepared {
        let keep: HashSet<String> = self.repositories().into_iter().take(n).collect();
        Prepared {
            layout: self.layout.clone(),
            images: self
                .images
                .iter()
                .filter(|i| keep.contains(&i.repository))
                .cloned()
                .collect(),
        }
    }

    pub fn repositories(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<_> =
            self.images.iter().map(|i| i.repository.clone()).collect();
        set.into_iter().collect()
    }

    /// Unique blob bytes.
    pub fn unique_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        self.images
            .iter()
            .flat_map(|i| &i.blobs)
            .filter(|(d, _)| seen.insert(d.clone()))
            .map(|(_, s)| s)
            .sum()
    }
}

/// Generate `scenario` under `cache`, once: a complete layout already there
/// is reused.
pub fn prepare(cache: &Path, scenario: Scenario) -> anyhow::Result<Prepared> {
    let (images, indexes) = scenario.specs();
    let writer = match scenario {
        Scenario::Huge => Writer::Many,
        _ => Writer::Streaming,
    };
    prepare_specs(cache, scenario.name(), &images, &indexes, writer)
}

/// What the update phase changes: `changed` is pushed to the source, and
/// `restore` puts the source back as it was before.
pub struct Update {
    pub changed: Prepared,
    pub restore: PathBuf,
}

/// The update phase of a scenario that has one: for `azureml` the one tag
/// that gains a 20 MiB layer; for `huge` one percent of the tags, each
/// with a new own layer.
pub fn prepare_update(cache: &Path, scenario: Scenario) -> anyhow::Result<Option<Update>> {
    Ok(match scenario {
        Scenario::Azureml => Some(Update {
            changed: prepare_specs(
                cache,
                "update",
                &[fixtures::update()],
                &[],
                Writer::Streaming,
            )?,
            restore: prepare(cache, scenario)?.layout,
        }),
        Scenario::Huge => {
            let pick = |changed: bool| {
                huge(|_, _| changed)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        huge_changed(i / HUGE_TAGS_PER_REPOSITORY, i % HUGE_TAGS_PER_REPOSITORY)
                    })
                    .map(|(_, s)| s)
                    .collect::<Vec<_>>()
            };
            Some(Update {
                changed: prepare_specs(cache, "huge-1pct", &pick(true), &[], Writer::Many)?,
                restore: prepare_specs(cache, "huge-1pct-before", &pick(false), &[], Writer::Many)?
                    .layout,
            })
        }
        Scenario::Big | Scenario::Many | Scenario::Big8g => None,
    })
}

/// How a layout is written: streaming each layer into its file (big
/// layers), or many small images generated in memory a batch at a time
/// and written without a sync per file (the cache is complete only once
/// its directory is renamed into place).
#[derive(Clone, Copy)]
enum Writer {
    Streaming,
    Many,
}

fn prepare_specs(
    cache: &Path,
    name: &str,
    images: &[ImageSpec],
    indexes: &[IndexSpec],
    writer: Writer,
) -> anyhow::Result<Prepared> {
    let layout = cache.join(name);
    if !layout.join("index.json").exists() {
        eprintln!("generating the {name} scenario in {}", layout.display());
        let started = std::time::Instant::now();
        let partial = cache.join(format!("{name}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        match writer {
            Writer::Streaming => {
                fixtures::write_layout_streaming(&partial, images, indexes).map(|_| ())
            }
            Writer::Many => write_many(&partial, images),
        }
        .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &layout)?;
        eprintln!("  generated in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(Prepared {
        images: read_images(&layout)?,
        layout,
    })
}

/// The layout `write_layout_streaming` writes, for many small images.
fn write_many(dir: &Path, specs: &[ImageSpec]) -> std::io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written = HashSet::new();
    let mut entries = Vec::with_capacity(specs.len());
    for batch in specs.chunks(500) {
        for img in fixtures::generate_all(batch) {
            let manifest = (img.manifest_digest.clone(), img.manifest.clone());
            for (digest, data) in img.blobs().into_iter().chain([manifest]) {
                if written.insert(digest.clone()) {
                    std::fs::write(blobs.join(digest.hex()), &data)?;
                }
            }
            entries.push(serde_json::json!({
                "mediaType": img.media_type,
                "digest": img.manifest_digest.to_string(),
                "size": img.manifest.len(),
                "annotations": {fixtures::REF_NAME_ANNOTATION: img.ref_name()},
            }));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)
}

/// A source registry's storage holding `layout`, made once under
/// `cache/NAME.registry` by pushing the layout to a registry of its own
/// (several repositories at once when there are many); a run clones it
/// into its source (see `seed.rs`).
pub async fn source_storage(cache: &Path, prepared: &Prepared) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("{}.registry", prepared.name()));
    if dir.exists() {
        return Ok(dir);
    }
    eprintln!(
        "pushing {} to a registry, kept in {}",
        prepared.name(),
        dir.display()
    );
    let started = std::time::Instant::now();
    let registry = mirror_tests::Registry::start_open().await?;
    push_layout_at_once(&registry.host(), &prepared.layout, 8).await?;
    let partial = cache.join(format!("{}.registry.partial", prepared.name()));
    let _ = std::fs::remove_dir_all(&partial);
    crate::seed::clone_storage(registry.storage_dir(), &partial, None)?;
    std::fs::rename(&partial, &dir)?;
    eprintln!("  pushed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(dir)
}

/// `push_layout` over `shards` groups of repositories at once: each group
/// gets a layout of its own whose `blobs` is the original's.
pub async fn push_layout_at_once(host: &str, layout: &Path, shards: usize) -> anyhow::Result<()> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifests = index["manifests"]
        .as_array()
        .context("index.json without manifests")?;
    let mut groups: Vec<Vec<serde_json::Value>> = vec![Vec::new(); shards.max(1)];
    let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
    for m in manifests {
        let name = m["annotations"][fixtures::REF_NAME_ANNOTATION]
            .as_str()
            .unwrap_or_default();
        let repo = name.rsplit_once(':').map(|(r, _)| r).unwrap_or(name);
        let next = shard_of.len() % groups.len();
        let shard = *shard_of.entry(repo.to_string()).or_insert(next);
        groups[shard].push(m.clone());
    }
    let work = tempfile::tempdir()?;
    let blobs = std::fs::canonicalize(layout.join("blobs"))?;
    let mut dirs = Vec::new();
    for (i, group) in groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
    {
        let dir = work.path().join(format!("shard-{i}"));
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::symlink(&blobs, dir.join("blobs"))?;
        let mut shard = index.clone();
        shard["manifests"] = serde_json::Value::Array(group);
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&shard)?)?;
        dirs.push(dir);
    }
    let client = mirror_tests::images::client(host, None);
    futures::future::try_join_all(dirs.iter().map(|d| fixtures::push_layout(&client, host, d)))
        .await?;
    Ok(())
}

/// The named images of a layout written by the fixture generator (names
/// are `repository:tag`).
fn read_images(layout: &Path) -> anyhow::Result<Vec<Image>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let mut out = Vec::new();
    for desc in index["manifests"]
        .as_array()
        .context("index.json without manifests")?
    {
        let name = desc["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .context("an unnamed image")?;
        let (repository, tag) = name.rsplit_once(':').context("a name without a tag")?;
        let mut image = Image {
            repository: repository.into(),
            tag: tag.into(),
            manifests: Vec::new(),
            blobs: Vec::new(),
        };
        let digest: Digest = desc["digest"].as_str().context("no digest")?.parse()?;
        let media_type = desc["mediaType"].as_str().unwrap_or_default().to_string();
        walk(layout, &digest, &media_type, &mut image)?;
        out.push(image);
    }
    Ok(out)
}

fn walk(layout: &Path, digest: &Digest, media_type: &str, image: &mut Image) -> anyhow::Result<()> {
    let path = layout
        .join("blobs")
        .join(digest.algorithm().name())
        .join(digest.hex());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    if let Some(children) = json["manifests"].as_array() {
        for c in children {
            let d: Digest = c["digest"].as_str().context("no digest")?.parse()?;
            walk(
                layout,
                &d,
                c["mediaType"].as_str().unwrap_or_default(),
                image,
            )?;
        }
    } else {
        let mut blobs: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
        for d in
            std::iter::once(&json["config"]).chain(json["layers"].as_array().into_iter().flatten())
        {
            let digest: Digest = d["digest"].as_str().context("no digest")?.parse()?;
            let size = d["size"].as_u64().context("no size")?;
            blobs.insert(digest.to_string(), (digest, size));
        }
        image.blobs.extend(blobs.into_values());
    }
    image
        .manifests
        .push((digest.clone(), media_type.to_string()));
    Ok(())
}
