//! The benchmark scenarios, generated deterministically by the project's
//! fixture generator into OCI layouts cached on disk, pushed to the source
//! registry, and described as what a copy must move.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mirror_tests::fixtures::{self, ImageSpec, IndexSpec};
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
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Azureml => "azureml",
            Scenario::Big => "big",
            Scenario::Many => "many",
        }
    }

    fn specs(self) -> (Vec<ImageSpec>, Vec<IndexSpec>) {
        match self {
            Scenario::Azureml => (fixtures::azureml(), Vec::new()),
            Scenario::Big => (Vec::new(), vec![fixtures::big_index()]),
            Scenario::Many => (fixtures::many(), Vec::new()),
        }
    }
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
    prepare_specs(cache, scenario.name(), &images, &indexes)
}

/// The `update` scenario: the one `azureml` tag that gains a 20 MiB layer.
pub fn prepare_update(cache: &Path) -> anyhow::Result<Prepared> {
    prepare_specs(cache, "update", &[fixtures::update()], &[])
}

fn prepare_specs(
    cache: &Path,
    name: &str,
    images: &[ImageSpec],
    indexes: &[IndexSpec],
) -> anyhow::Result<Prepared> {
    let layout = cache.join(name);
    if !layout.join("index.json").exists() {
        eprintln!("generating the {name} scenario in {}", layout.display());
        let partial = cache.join(format!("{name}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        fixtures::write_layout_streaming(&partial, images, indexes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &layout)?;
    }
    Ok(Prepared {
        images: read_images(&layout)?,
        layout,
    })
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
