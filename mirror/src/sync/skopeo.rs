//! A skopeo sync YAML file (`skopeo sync --src yaml`) as a native config,
//! so users can switch without rewriting:
//!
//! ```yaml
//! registry.example.com:
//!   images:
//!     busybox: []            # every tag
//!     redis: ["1.0", "2.0"]
//!   images-by-tag-regex:
//!     nginx: ^1\.13\.[12]-alpine-perl$
//!   images-by-semver:
//!     alpine: ">= 3.12.0"
//!   credentials: {username: john, password: "${PASSWORD}"}
//!   tls-verify: false        # plain HTTP here
//!   cert-dir: /etc/certs     # its *.crt files are trusted
//! ```
//!
//! Like skopeo, an image lands under the destination with the last
//! component of its repository (`a/b/c` → `DEST/c`).

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use registry_client::{Credential, Repository};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::config::{
    check_tag, expand_env, one_line, parse_yaml, ConfigError, Cx, RegistrySettings, SourceSpec,
    SyncConfig, SyncEntry,
};
use super::select::TagSelector;
use super::template::Template;

type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    images: BTreeMap<String, Spanned<Vec<S>>>,
    #[serde(default, rename = "images-by-tag-regex")]
    images_by_tag_regex: BTreeMap<String, S>,
    #[serde(default, rename = "images-by-semver")]
    images_by_semver: BTreeMap<String, S>,
    /// Read only to say it is not supported (rather than "unknown").
    #[serde(rename = "images-by-digest")]
    images_by_digest: Option<Spanned<BTreeMap<String, Vec<S>>>>,
    credentials: Option<RawCredentials>,
    #[serde(rename = "tls-verify")]
    tls_verify: Option<bool>,
    #[serde(rename = "cert-dir")]
    cert_dir: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: S,
    password: S,
}

/// Read a skopeo sync file; every image goes under `target` (a registry
/// repository prefix `HOST/PATH`, or `oci:DIR`).
pub fn load(path: &Path, target: &str) -> Result<SyncConfig, ConfigError> {
    let max = crate::limits::get().config_bytes;
    let text = crate::limits::read_text(path, max, "config-bytes").map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        message: format!("reading it: {e}"),
    })?;
    parse(&text, path, target)
}

pub fn parse(text: &str, path: &Path, target: &str) -> Result<SyncConfig, ConfigError> {
    let cx = Cx::new(path);
    let raw: BTreeMap<String, RawRegistry> = parse_yaml(text, &cx)?;
    let target = target.trim_end_matches('/');
    let mut registries = Vec::new();
    let mut entries = Vec::new();
    for (host, reg) in raw {
        if let Some(d) = &reg.images_by_digest {
            return Err(cx.at(
                d,
                format!("{host}: images-by-digest is not supported; list the tags under images"),
            ));
        }
        let mut settings = RegistrySettings {
            host: host.clone(),
            insecure: reg.tls_verify == Some(false),
            ..RegistrySettings::default()
        };
        if let Some(c) = &reg.credentials {
            let user = cx.expand(&c.username)?;
            let password = cx.expand(&c.password)?;
            settings.credential = Some(Credential::basic(user, password));
        }
        if let Some(dir) = &reg.cert_dir {
            let dir_path = cx.path(&expand_env(&dir.value).map_err(|m| cx.at(dir, m))?);
            let list = std::fs::read_dir(&dir_path)
                .map_err(|e| cx.at(dir, format!("reading cert-dir {}: {e}", dir_path.display())))?;
            for f in list.flatten() {
                if f.path().extension().is_some_and(|x| x == "crt") {
                    settings.ca_files.push(f.path());
                }
            }
        }
        registries.push(settings);

        let mut add = |repo: &str, line: u64, selector: TagSelector| -> Result<(), ConfigError> {
            let repository = Repository::new(&host, repo)
                .map_err(|e| cx.error(Some(line), format!("{host}/{repo}: {e}")))?;
            let name = repo.rsplit('/').next().unwrap_or(repo);
            let target_text = if crate::endpoint::split_file(target).is_some() {
                format!("{target}:{name}")
            } else {
                format!("{target}/{name}")
            };
            entries.push(SyncEntry {
                line,
                source: SourceSpec::Registry(repository.clone()),
                source_text: repository.to_string(),
                target: Template::parse(&target_text).map_err(|m| cx.error(None, m))?,
                target_tag: Template::parse("{tag}").expect("static template"),
                selector,
                platforms: Vec::new(),
                referrers: None,
                cosign_tags: false,
                vars: BTreeMap::new(),
            });
            Ok(())
        };
        for (repo, tags) in &reg.images {
            let mut explicit = Vec::new();
            for t in &tags.value {
                if t.value.contains(':') {
                    return Err(cx.at(
                        t,
                        format!(
                            "{repo}: {:?}: images by digest are not supported; list tags",
                            t.value
                        ),
                    ));
                }
                check_tag(&t.value).map_err(|m| cx.at(t, m))?;
                explicit.push(t.value.clone());
            }
            add(
                repo,
                tags.referenced.line(),
                TagSelector {
                    explicit,
                    ..TagSelector::default()
                },
            )?;
        }
        for (repo, re) in &reg.images_by_tag_regex {
            let regex = Regex::new(&re.value).map_err(|e| {
                cx.at(
                    re,
                    format!(
                        "bad regular expression {:?}: {}",
                        re.value,
                        one_line(&e.to_string())
                    ),
                )
            })?;
            add(
                repo,
                re.referenced.line(),
                TagSelector {
                    include: vec![regex],
                    ..TagSelector::default()
                },
            )?;
        }
        for (repo, range) in &reg.images_by_semver {
            let req = semver::VersionReq::parse(&range.value)
                .map_err(|e| cx.at(range, format!("bad semver range {:?}: {e}", range.value)))?;
            add(
                repo,
                range.referenced.line(),
                TagSelector {
                    semver: Some(req),
                    ..TagSelector::default()
                },
            )?;
        }
    }
    if entries.is_empty() {
        return Err(cx.error(None, "no images: nothing to keep current"));
    }
    Ok(SyncConfig {
        jobs: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skopeo_file_becomes_entries_under_the_destination() {
        let text = r#"
src.io:
  images:
    library/busybox: []
    team/redis: ["1.0", "2.0"]
  images-by-tag-regex:
    nginx: ^1\.13\.
  images-by-semver:
    alpine: ">= 3.12.0"
  credentials: {username: john, password: secret-pw}
  tls-verify: false
"#;
        let c = parse(text, Path::new("skopeo.yaml"), "dst.io/mirror").unwrap();
        assert_eq!(c.entries.len(), 4);
        let r = &c.registries[0];
        assert!(r.insecure);
        assert_eq!(r.credential, Some(Credential::basic("john", "secret-pw")));
        let busybox = &c.entries[0];
        assert_eq!(busybox.source_text, "src.io/library/busybox");
        assert_eq!(busybox.target.as_str(), "dst.io/mirror/busybox");
        assert!(busybox.selector.explicit.is_empty() && busybox.selector.needs_listing());
        assert_eq!(c.entries[1].selector.explicit, vec!["1.0", "2.0"]);
        assert_eq!(c.entries[1].line, 5);
        assert_eq!(c.entries[2].selector.include.len(), 1);
        assert!(c.entries[3].selector.semver.is_some());
    }

    #[test]
    fn skopeo_file_errors_name_their_line() {
        for (text, line) in [
            ("src.io:\n  images-by-tag-regex:\n    nginx: '(('\n", 3),
            ("src.io:\n  images-by-semver:\n    alpine: 'x y z'\n", 3),
            ("src.io:\n  imagez:\n    a: []\n", 2),
            ("src.io:\n  images:\n    a: ['sha256:abc']\n", 3),
            ("src.io:\n  images-by-digest:\n    a: ['sha256:abc']\n", 3),
        ] {
            let e = parse(text, Path::new("s.yaml"), "dst.io/m").unwrap_err();
            assert_eq!(e.line, Some(line), "{text} → {e}");
            if text.contains("by-digest") {
                assert!(e.message.contains("not supported"), "{e}");
            }
        }
    }
}
