//! The preset as a plan: which repositories, from where, to where, with
//! which tags. `mirror azureml sync` turns it into a sync config (so it is
//! concurrent, incremental and reported like any sync); `check` and
//! `export` walk its images.

use std::collections::BTreeMap;

use registry_client::Repository;

use super::images::{self, RUNTIME_REPOSITORIES};
use crate::sync::config::{RegistrySettings, SourceSpec, SyncConfig, SyncEntry};
use crate::sync::select::TagSelector;
use crate::sync::template::Template;

/// A registry and the path prefix its runtime repositories sit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub registry: String,
    pub prefix: Option<String>,
}

impl Location {
    /// `HOST` or `HOST/PREFIX` (`mcr.microsoft.com/azureml/runtime`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_end_matches('/');
        let text = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let (registry, prefix) = match text.split_once('/') {
            Some((r, p)) => (r, Some(p.trim_matches('/').to_string())),
            None => (text, None),
        };
        if registry.is_empty() || !registry.contains(['.', ':']) && registry != "localhost" {
            return Err(format!(
                "{text:?} does not start with a registry host (e.g. contoso.azurecr.io)"
            ));
        }
        Ok(Location {
            registry: registry.to_ascii_lowercase(),
            prefix: prefix.filter(|p| !p.is_empty()),
        })
    }

    /// The public Microsoft Container Registry: anonymous, with the
    /// repositories under `azureml/runtime`.
    pub fn mcr() -> Self {
        Location {
            registry: images::MCR_HOST.into(),
            prefix: Some(images::MCR_PREFIX.into()),
        }
    }

    /// The repository `repository` of the table, here.
    pub fn repository(&self, repository: &str) -> Result<Repository, String> {
        let path = images::under_prefix(self.prefix.as_deref(), repository);
        Repository::new(&self.registry, &path).map_err(|e| format!("{}/{path}: {e}", self.registry))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{}/{p}", self.registry),
            None => f.write_str(&self.registry),
        }
    }
}

/// One image of the preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetImage {
    /// The repository as the table names it (`cap/lifecycler/installed`).
    pub name: String,
    pub source: Repository,
    pub source_tag: String,
    pub target: Repository,
    pub target_tag: String,
}

/// What `mirror azureml sync|check` works on.
#[derive(Debug, Clone)]
pub struct Preset {
    /// A checked region name (`eastus`).
    pub region: String,
    pub source: Location,
    pub target: Location,
    /// Keep `{region}-stable` in the target instead of `stable`.
    pub regional_tags: bool,
    /// Repositories beyond the six (`--extra`), named as in the table.
    pub extra: Vec<String>,
    /// Copy (and check) each image's referrers: its signatures, SBOMs and
    /// attestations, of every type, so a signature policy at the target
    /// finds what the source has. On unless `--no-referrers`.
    pub referrers: bool,
}

impl Preset {
    /// The six runtime repositories and the extras, each once.
    pub fn repositories(&self) -> Vec<String> {
        let mut names: Vec<String> = RUNTIME_REPOSITORIES.iter().map(|r| r.to_string()).collect();
        for e in &self.extra {
            let e = e.trim_matches('/').to_string();
            if !names.contains(&e) {
                names.push(e);
            }
        }
        names
    }

    pub fn images(&self) -> Result<Vec<PresetImage>, String> {
        let source_tag = images::source_tag(&self.region);
        let target_tag = images::target_tag(&self.region, self.regional_tags);
        self.repositories()
            .into_iter()
            .map(|name| {
                Ok(PresetImage {
                    source: self.source.repository(&name)?,
                    target: self.target.repository(&name)?,
                    source_tag: source_tag.clone(),
                    target_tag: target_tag.clone(),
                    name,
                })
            })
            .collect()
    }

    /// A sync config with one entry per image: exactly the source tag,
    /// renamed to the target tag, with the image's referrers of every type
    /// unless they are turned off.
    pub fn sync_config(
        &self,
        registries: Vec<RegistrySettings>,
        jobs: Option<usize>,
    ) -> Result<SyncConfig, String> {
        let entries = self
            .images()?
            .into_iter()
            .map(|image| {
                let target = format!("{}/{}", image.target.registry(), image.target.name());
                Ok(SyncEntry {
                    line: 0,
                    source_text: format!("{}:{}", image.source, image.source_tag),
                    source: SourceSpec::Registry(image.source),
                    target: Template::parse(&target)?,
                    target_tag: Template::parse(&image.target_tag)?,
                    selector: TagSelector {
                        explicit: vec![image.source_tag],
                        ..TagSelector::default()
                    },
                    platforms: Vec::new(),
                    referrers: self.referrers.then(Vec::new),
                    cosign_tags: false,
                    vars: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SyncConfig {
            jobs,
            max_requests_per_host: None,
            read_timeout: None,
            http: registry_client::HttpVersion::default(),
            proxy: None,
            proxy_ca_files: Vec::new(),
            registries,
            entries,
            limits: crate::limits::Limits::default(),
            no_match: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(regional_tags: bool) -> Preset {
        Preset {
            region: "eastus".into(),
            source: Location::mcr(),
            target: Location::parse("contoso.azurecr.io/azureml").unwrap(),
            regional_tags,
            extra: vec![
                "cap/new-capability/installed".into(),
                RUNTIME_REPOSITORIES[0].into(),
            ],
            referrers: true,
        }
    }

    #[test]
    fn locations_parse_with_and_without_a_prefix() {
        assert_eq!(
            Location::parse("https://contoso.azurecr.io/").unwrap(),
            Location {
                registry: "contoso.azurecr.io".into(),
                prefix: None
            }
        );
        assert_eq!(
            Location::parse("mcr.microsoft.com/azureml/runtime").unwrap(),
            Location::mcr()
        );
        assert_eq!(
            Location::parse("127.0.0.1:5000/a/").unwrap().to_string(),
            "127.0.0.1:5000/a"
        );
        assert!(Location::parse("contoso")
            .unwrap_err()
            .contains("registry host"));
    }

    #[test]
    fn images_map_the_regional_tag_to_stable_under_the_prefix() {
        let images = preset(false).images().unwrap();
        assert_eq!(images.len(), 7, "six and one extra, the duplicate once");
        let boot = &images[0];
        assert_eq!(
            boot.source.to_string(),
            "mcr.microsoft.com/azureml/runtime/boot/vm-bootstrapper/binimage/linux"
        );
        assert_eq!(boot.source_tag, "eastus-stable");
        assert_eq!(
            boot.target.to_string(),
            "contoso.azurecr.io/azureml/boot/vm-bootstrapper/binimage/linux"
        );
        assert_eq!(boot.target_tag, "stable");
        assert_eq!(
            preset(true).images().unwrap()[0].target_tag,
            "eastus-stable"
        );
    }

    #[test]
    fn the_sync_config_selects_exactly_the_regional_tag() {
        let config = preset(false).sync_config(Vec::new(), Some(4)).unwrap();
        assert_eq!(config.entries.len(), 7);
        let e = &config.entries[2];
        assert_eq!(e.selector.explicit, vec!["eastus-stable".to_string()]);
        assert!(!e.selector.needs_listing());
        assert_eq!(e.target_tag.as_str(), "stable");
        assert_eq!(
            e.target.as_str(),
            "contoso.azurecr.io/azureml/cap/lifecycler/installed"
        );
    }

    #[test]
    fn the_sync_config_asks_for_every_referrer_unless_turned_off() {
        let config = preset(false).sync_config(Vec::new(), None).unwrap();
        assert!(config
            .entries
            .iter()
            .all(|e| e.referrers == Some(Vec::new())));
        let off = Preset {
            referrers: false,
            ..preset(false)
        };
        let config = off.sync_config(Vec::new(), None).unwrap();
        assert!(config.entries.iter().all(|e| e.referrers.is_none()));
    }
}
