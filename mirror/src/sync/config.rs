//! The sync config file (YAML): registries, sync entries and defaults.
//! Unknown keys, bad regular expressions, bad templates and bad values are
//! errors naming the file and line. Values from the environment
//! (`${VAR}`) and from files (`password_file:`) are secrets: they are
//! wrapped at once and never appear in an error.
//!
//! See the README's "mirror sync" section for every key, and
//! `examples/sync.yaml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use registry_client::{Credential, Repository, Secret};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::select::TagSelector;
use super::template::Template;
use crate::endpoint::{split_file, FileKind};
use crate::platform::PlatformFilter;

/// A config that could not be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` when the problem is the whole file.
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A whole config, checked and resolved.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Requests and blob streams in flight at once, across all images.
    pub jobs: Option<usize>,
    /// Requests in flight at once to one registry host (the client's
    /// default when `None`).
    pub max_requests_per_host: Option<usize>,
    /// Give up on a response silent for this long (the client's default
    /// when `None`).
    pub read_timeout: Option<std::time::Duration>,
    /// `http: auto` lets TLS registries offer HTTP/2; HTTP/1.1 otherwise.
    pub http: registry_client::HttpVersion,
    /// `proxy: URL` (or `none`); `None`: the environment's.
    pub proxy: Option<registry_client::Proxy>,
    /// `proxy_ca_file: PATH`: trust this CA (PEM) for an `https://` proxy.
    pub proxy_ca_files: Vec<PathBuf>,
    pub registries: Vec<RegistrySettings>,
    pub entries: Vec<SyncEntry>,
    /// The bounds, with the config's `limits:` applied.
    pub limits: crate::limits::Limits,
    /// An entry whose filters match no tag, or a single-platform image its
    /// `platforms:` do not name: a warning, or (`no_match: error`) a failure.
    pub no_match: crate::no_match::NoMatch,
}

impl SyncConfig {
    /// How to reach its registries, as the one client builder takes it.
    pub fn client_settings(&self) -> crate::settings::ClientSettings {
        crate::settings::ClientSettings {
            registries: self.registries.clone(),
            max_requests_per_host: self.max_requests_per_host,
            read_timeout: self.read_timeout,
            http: self.http,
            proxy: self.proxy.clone(),
            proxy_ca_files: self.proxy_ca_files.clone(),
        }
    }
}

pub use crate::settings::RegistrySettings;

/// Where an entry's images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// One registry repository.
    Registry(Repository),
    /// Every repository of a registry under a path prefix (`HOST/PREFIX/*`).
    RegistryPrefix { registry: String, prefix: String },
    /// An OCI layout or archive: one repository of its names
    /// (`oci:PATH:REPO` — names `REPO:TAG`), or all of them (`oci:PATH`);
    /// `oci-archive:` likewise.
    Files {
        kind: FileKind,
        path: PathBuf,
        repository: Option<String>,
    },
}

/// One `sync:` entry with the defaults applied.
#[derive(Debug, Clone)]
pub struct SyncEntry {
    /// The line of its `source:`, for messages.
    pub line: u64,
    pub source: SourceSpec,
    /// The source as written, for messages.
    pub source_text: String,
    /// The target repository: `HOST/REPO`, `oci:PATH[:REPO]`, with
    /// `{repo}`, `{name}`, `{path}` and variables.
    pub target: Template,
    pub target_tag: Template,
    pub selector: TagSelector,
    pub platforms: Vec<PlatformFilter>,
    /// Copy each image's referrers (`referrers: true`, or the artifact
    /// types to keep: `referrers: [application/vnd.cncf.notary.signature]`).
    pub referrers: Option<Vec<String>>,
    /// Copy cosign's legacy `sha256-<hex>.sig`/`.att`/`.sbom` tags too.
    pub cosign_tags: bool,
    pub vars: BTreeMap<String, String>,
}

// ---- the file as written ----

type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    jobs: Option<Spanned<u16>>,
    max_requests_per_host: Option<Spanned<u16>>,
    read_timeout: Option<S>,
    http: Option<S>,
    proxy: Option<S>,
    proxy_ca_file: Option<S>,
    defaults: Option<RawSelection>,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    sync: Vec<RawEntry>,
    /// Bounds raised for this config (`--limit` on the command line wins).
    #[serde(default)]
    limits: BTreeMap<String, Spanned<RawScalar>>,
    no_match: Option<S>,
}

/// `referrers: true`, or the artifact types to copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawReferrers {
    All(bool),
    Types(Vec<String>),
}

/// A value written as a number or a string (`200000`, `8M`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawScalar {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    host: S,
    credentials: Option<RawCredentials>,
    tls: Option<RawTls>,
    chunk_threshold: Option<S>,
    chunk_size: Option<S>,
    max_requests_per_host: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: Option<S>,
    password: Option<S>,
    password_file: Option<S>,
    /// A Microsoft Entra access token, exchanged at ACR's `/oauth2/exchange`.
    acr_token: Option<S>,
    acr_token_file: Option<S>,
    tenant: Option<S>,
    /// An OAuth2 refresh token (docker's `identitytoken`).
    identity_token: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<S>,
    insecure: Option<bool>,
}

/// What `defaults:` may set; an entry's own value wins field by field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelection {
    target: Option<S>,
    tags: Option<Vec<S>>,
    include: Option<Vec<S>>,
    exclude: Option<Vec<S>>,
    semver: Option<S>,
    latest: Option<Spanned<usize>>,
    target_tag: Option<S>,
    platforms: Option<Vec<S>>,
    referrers: Option<RawReferrers>,
    cosign_tags: Option<bool>,
    vars: Option<BTreeMap<String, S>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    source: S,
    target: Option<S>,
    tags: Option<Vec<S>>,
    include: Option<Vec<S>>,
    exclude: Option<Vec<S>>,
    semver: Option<S>,
    latest: Option<Spanned<usize>>,
    target_tag: Option<S>,
    platforms: Option<Vec<S>>,
    referrers: Option<RawReferrers>,
    cosign_tags: Option<bool>,
    vars: Option<BTreeMap<String, S>>,
}

/// Reads and checks a config file. Relative paths in it (CA files,
/// password files, layouts) are relative to the file's directory.
pub fn load(path: &Path) -> Result<SyncConfig, ConfigError> {
    let max = crate::limits::get().config_bytes;
    let text = crate::limits::read_text(path, max, "config-bytes").map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        message: format!("reading it: {e}"),
    })?;
    parse(&text, path)
}

/// Parses config text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<SyncConfig, ConfigError> {
    let cx = Cx::new(path);
    let raw: RawConfig = parse_yaml(text, &cx)?;
    let mut registries: Vec<RegistrySettings> = Vec::new();
    for r in raw.registries {
        let line = line_of(&r.host);
        let settings = cx.registry(r)?;
        if registries.iter().any(|x| x.host == settings.host) {
            return Err(cx.error(line, format!("registry {} is listed twice", settings.host)));
        }
        registries.push(settings);
    }
    let defaults = raw.defaults.unwrap_or_default();
    if raw.sync.is_empty() {
        return Err(cx.error(None, "no `sync:` entries: nothing to keep current"));
    }
    let mut entries = Vec::new();
    for e in raw.sync {
        entries.push(cx.entry(e, &defaults)?);
    }
    let jobs = match raw.jobs {
        Some(j) if j.value == 0 => return Err(cx.at(&j, "jobs must be at least 1")),
        Some(j) => Some(j.value as usize),
        None => None,
    };
    let max_requests_per_host = match raw.max_requests_per_host {
        Some(n) if n.value == 0 => {
            return Err(cx.at(&n, "max_requests_per_host must be at least 1"))
        }
        Some(n) => Some(n.value as usize),
        None => None,
    };
    let read_timeout = match &raw.read_timeout {
        Some(t) => Some(crate::units::parse_duration(&t.value).map_err(|m| cx.at(t, m))?),
        None => None,
    };
    let http = match &raw.http {
        Some(h) => h
            .value
            .parse::<registry_client::HttpVersion>()
            .map_err(|m| cx.at(h, m))?,
        None => registry_client::HttpVersion::default(),
    };
    let proxy = match &raw.proxy {
        // The message shows the URL without its password.
        Some(p) => Some(
            registry_client::Proxy::from_setting(&p.value).map_err(|e| cx.at(p, e.to_string()))?,
        ),
        None => None,
    };
    let proxy_ca_files = match &raw.proxy_ca_file {
        Some(p) => vec![cx.path(&cx.expand(p)?)],
        None => Vec::new(),
    };
    let mut limits = crate::limits::Limits::default();
    for (name, value) in &raw.limits {
        let text = match &value.value {
            RawScalar::Number(n) => n.to_string(),
            RawScalar::Text(t) => t.clone(),
        };
        limits
            .set(name, &text)
            .map_err(|m| cx.at(value, format!("limits: {m}")))?;
    }
    let no_match = match &raw.no_match {
        Some(n) => n.value.parse().map_err(|m: String| cx.at(n, m))?,
        None => Default::default(),
    };
    Ok(SyncConfig {
        jobs,
        max_requests_per_host,
        read_timeout,
        http,
        proxy,
        proxy_ca_files,
        registries,
        entries,
        limits,
        no_match,
    })
}

/// YAML into `T`, with the parser's error turned into file:line: message.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    cx: &Cx,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
        let message = e.without_snippet().to_string();
        // The line leads the message already; the parser's own " at line
        // L, column C" would say it twice.
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => &message[..i],
            _ => &message,
        };
        cx.error(line, message.trim())
    })
}

/// What errors need: the file's name and directory.
pub(crate) struct Cx {
    file: String,
    dir: PathBuf,
}

impl Cx {
    pub(crate) fn new(path: &Path) -> Self {
        Cx {
            file: path.display().to_string(),
            dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }

    pub(crate) fn error(&self, line: Option<u64>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn at<T>(&self, v: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(line_of(v), message)
    }

    /// A path as written, relative to the config's directory.
    pub(crate) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// `${VAR}` replaced by the environment's value. The error names the
    /// variable, never a value.
    pub(crate) fn expand(&self, v: &S) -> Result<String, ConfigError> {
        expand_env(&v.value).map_err(|m| self.at(v, m))
    }

    /// A secret: expanded from the environment, never shown.
    fn secret(&self, v: &S) -> Result<Secret, ConfigError> {
        Ok(Secret::new(self.expand(v)?))
    }

    /// The first line of a file, as a secret; errors name the file only.
    fn secret_file(&self, v: &S) -> Result<Secret, ConfigError> {
        let path = self.path(&self.expand(v)?);
        let text =
            crate::limits::read_text(&path, crate::limits::MAX_SECRET_FILE, "secret-file-bytes")
                .map_err(|e| self.at(v, format!("reading secret file {}: {e}", path.display())))?;
        let value = text.lines().next().unwrap_or("").trim_end();
        if value.is_empty() {
            return Err(self.at(v, format!("secret file {} is empty", path.display())));
        }
        Ok(Secret::new(value))
    }

    fn size(&self, v: &S) -> Result<u64, ConfigError> {
        crate::units::parse_size(&v.value).map_err(|m| self.at(v, m))
    }

    fn registry(&self, r: RawRegistry) -> Result<RegistrySettings, ConfigError> {
        let host = r.host.value.trim().to_string();
        if host.is_empty() || host.contains('/') || host.contains("://") {
            return Err(self.at(
                &r.host,
                format!("host {host:?} must be a registry host name (host or host:port, no scheme or path)"),
            ));
        }
        let credential = match r.credentials {
            Some(c) => Some(self.credentials(c, &r.host)?),
            None => None,
        };
        let tls = r.tls.is_some();
        let (ca_files, insecure) = match r.tls {
            Some(t) => (
                match t.ca_file {
                    Some(p) => vec![self.path(&self.expand(&p)?)],
                    None => Vec::new(),
                },
                t.insecure.unwrap_or(false),
            ),
            None => (Vec::new(), false),
        };
        let max_requests_per_host = match &r.max_requests_per_host {
            Some(n) if n.value == 0 => {
                return Err(self.at(n, "max_requests_per_host must be at least 1"))
            }
            Some(n) => Some(n.value as usize),
            None => None,
        };
        Ok(RegistrySettings {
            host,
            credential,
            max_requests_per_host,
            ca_files,
            insecure,
            tls: tls && !insecure,
            chunk_threshold: r
                .chunk_threshold
                .as_ref()
                .map(|v| self.size(v))
                .transpose()?,
            chunk_size: r
                .chunk_size
                .as_ref()
                .map(|v| self.size(v).map(|n| n as usize))
                .transpose()?,
        })
    }

    fn credentials(&self, c: RawCredentials, host: &S) -> Result<Credential, ConfigError> {
        let password = match (&c.password, &c.password_file) {
            (Some(_), Some(f)) => {
                return Err(self.at(f, "give either password or password_file, not both"))
            }
            (Some(p), None) => Some(self.secret(p)?),
            (None, Some(f)) => Some(self.secret_file(f)?),
            (None, None) => None,
        };
        let acr = match (&c.acr_token, &c.acr_token_file) {
            (Some(_), Some(f)) => {
                return Err(self.at(f, "give either acr_token or acr_token_file, not both"))
            }
            (Some(t), None) => Some(self.secret(t)?),
            (None, Some(f)) => Some(self.secret_file(f)?),
            (None, None) => None,
        };
        let kinds = [
            password.is_some(),
            acr.is_some(),
            c.identity_token.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds > 1 {
            return Err(self.at(
                host,
                "credentials take one of password, acr_token or identity_token",
            ));
        }
        if let Some(token) = acr {
            return Ok(Credential::AcrAccessToken {
                tenant: c.tenant.as_ref().map(|t| self.expand(t)).transpose()?,
                token,
            });
        }
        if let Some(t) = &c.tenant {
            return Err(self.at(t, "tenant goes with acr_token"));
        }
        if let Some(t) = &c.identity_token {
            return Ok(Credential::IdentityToken(self.secret(t)?));
        }
        match (c.username, password) {
            (Some(u), Some(p)) => Ok(Credential::Basic {
                username: self.expand(&u)?,
                password: p,
            }),
            (Some(u), None) => Err(self.at(&u, "username needs password or password_file")),
            (None, Some(_)) => Err(self.at(host, "password needs a username")),
            (None, None) => Err(self.at(
                host,
                "credentials need username and password (or password_file), acr_token or identity_token",
            )),
        }
    }

    fn entry(&self, e: RawEntry, d: &RawSelection) -> Result<SyncEntry, ConfigError> {
        let line = line_of(&e.source).unwrap_or(0);
        let source_text = e.source.value.trim().to_string();
        let source = self.source(&e.source)?;

        let mut vars = BTreeMap::new();
        for map in [&d.vars, &e.vars].into_iter().flatten() {
            for (k, v) in map {
                if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.is_empty() {
                    return Err(
                        self.at(v, format!("variable name {k:?}: use letters, digits and _"))
                    );
                }
                if RESERVED.contains(&k.as_str()) {
                    return Err(self.at(v, format!("variable name {k:?} is reserved")));
                }
                vars.insert(k.clone(), self.expand(v)?);
            }
        }
        let var_names: Vec<&str> = vars.keys().map(String::as_str).collect();

        let target_raw = e.target.as_ref().or(d.target.as_ref()).ok_or_else(|| {
            self.error(
                Some(line),
                "this entry has no target (give target: here or in defaults:)",
            )
        })?;
        let target = self.target(target_raw)?;
        let mut known: Vec<&str> = vec!["repo", "name", "path"];
        known.extend(&var_names);
        target.check(&known).map_err(|m| self.at(target_raw, m))?;

        let mut selector = TagSelector::default();
        for t in e.tags.as_ref().or(d.tags.as_ref()).into_iter().flatten() {
            let tmpl = self.template(t)?;
            if tmpl.placeholders().all(|p| vars.contains_key(p)) {
                let tag = tmpl.render(&vars).map_err(|m| self.at(t, m))?;
                check_tag(&tag).map_err(|m| self.at(t, m))?;
                selector.explicit.push(tag);
            } else {
                // A placeholder without a value makes it a pattern over the
                // listed tags, capturing what the placeholder stands for.
                let pattern = tmpl.to_regex(&vars);
                let regex = Regex::new(&pattern).map_err(|err| {
                    self.at(
                        t,
                        format!("tag pattern {:?}: {}", t.value, one_line(&err.to_string())),
                    )
                })?;
                selector.include.push(regex);
            }
        }
        for r in e
            .include
            .as_ref()
            .or(d.include.as_ref())
            .into_iter()
            .flatten()
        {
            selector.include.push(self.regex(r)?);
        }
        for r in e
            .exclude
            .as_ref()
            .or(d.exclude.as_ref())
            .into_iter()
            .flatten()
        {
            selector.exclude.push(self.regex(r)?);
        }
        if let Some(s) = e.semver.as_ref().or(d.semver.as_ref()) {
            selector.semver = Some(
                semver::VersionReq::parse(&s.value)
                    .map_err(|err| self.at(s, format!("bad semver range {:?}: {err}", s.value)))?,
            );
        }
        if let Some(n) = e.latest.as_ref().or(d.latest.as_ref()) {
            if n.value == 0 {
                return Err(self.at(n, "latest must be at least 1"));
            }
            selector.latest = Some(n.value);
        }

        let target_tag = match e.target_tag.as_ref().or(d.target_tag.as_ref()) {
            Some(t) => {
                let tmpl = self.template(t)?;
                let captures = selector.capture_names();
                let mut known: Vec<&str> = vec!["tag"];
                known.extend(&var_names);
                known.extend(captures.iter().map(String::as_str));
                tmpl.check(&known).map_err(|m| self.at(t, m))?;
                tmpl
            }
            None => Template::parse("{tag}").expect("static template"),
        };

        let mut platforms = Vec::new();
        for p in e
            .platforms
            .as_ref()
            .or(d.platforms.as_ref())
            .into_iter()
            .flatten()
        {
            platforms.push(
                p.value
                    .parse::<PlatformFilter>()
                    .map_err(|m| self.at(p, m))?,
            );
        }

        let referrers = match e.referrers.as_ref().or(d.referrers.as_ref()) {
            None | Some(RawReferrers::All(false)) => None,
            Some(RawReferrers::All(true)) => Some(Vec::new()),
            Some(RawReferrers::Types(types)) => Some(types.clone()),
        };

        Ok(SyncEntry {
            line,
            source,
            source_text,
            target,
            target_tag,
            selector,
            platforms,
            referrers,
            cosign_tags: e.cosign_tags.or(d.cosign_tags).unwrap_or(false),
            vars,
        })
    }

    fn source(&self, s: &S) -> Result<SourceSpec, ConfigError> {
        let text = s.value.trim();
        if let Some(file) = split_file(text) {
            let (kind, path, repository) = file.map_err(|m| self.at(s, m))?;
            if let Some(r) = repository {
                if r.contains(':') || r.contains('@') {
                    return Err(self.at(
                        s,
                        format!("source {text:?}: name a repository of the {} ({}:PATH:REPO), and its tags under tags:", kind.noun(), kind.scheme()),
                    ));
                }
            }
            return Ok(SourceSpec::Files {
                kind,
                path: self.path(path),
                repository: repository.map(str::to_string),
            });
        }
        if let Some(prefix) = text.strip_suffix("/*") {
            let (registry, prefix) = prefix.split_once('/').unwrap_or((prefix, ""));
            Repository::new(registry, if prefix.is_empty() { "x" } else { prefix })
                .map_err(|e| self.at(s, format!("source {text:?}: {e}")))?;
            return Ok(SourceSpec::RegistryPrefix {
                registry: registry.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let last = text.rsplit('/').next().unwrap_or(text);
        if last.contains(':') || last.contains('@') {
            return Err(self.at(
                s,
                format!("source {text:?} names a tag or digest: give the repository, and its tags under tags:"),
            ));
        }
        let repo = Repository::parse(text).map_err(|e| self.at(s, format!("source: {e}")))?;
        Ok(SourceSpec::Registry(repo))
    }

    /// A target template; a relative layout path is taken from the
    /// config's directory, like every path in the file.
    fn target(&self, t: &S) -> Result<Template, ConfigError> {
        let text = t.value.trim();
        let text = match split_file(text) {
            Some(file) => {
                let (kind, path, name) = file.map_err(|m| self.at(t, m))?;
                let mut s = format!("{}:{}", kind.scheme(), self.path(path).display());
                if let Some(n) = name {
                    s = format!("{s}:{n}");
                }
                s
            }
            None => text.to_string(),
        };
        Template::parse(&text).map_err(|m| self.at(t, m))
    }

    fn template(&self, t: &S) -> Result<Template, ConfigError> {
        Template::parse(&t.value).map_err(|m| self.at(t, m))
    }

    fn regex(&self, r: &S) -> Result<Regex, ConfigError> {
        Regex::new(&r.value).map_err(|e| {
            // The regex crate's message spans lines; one line reads better.
            let msg = one_line(&e.to_string());
            self.at(r, format!("bad regular expression {:?}: {msg}", r.value))
        })
    }
}

/// A multi-line message (the regex crate's, with a caret under the
/// problem) on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Placeholder names with a meaning of their own.
const RESERVED: &[&str] = &["tag", "repo", "name", "path"];

fn line_of<T>(v: &Spanned<T>) -> Option<u64> {
    Some(v.referenced.line()).filter(|l| *l > 0)
}

/// The tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a valid tag (letters, digits, _ . -; at most 128)"
        ))
    }
}

/// `${NAME}` replaced by the environment's value.
pub(crate) fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "a `${` is never closed".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("${{{name}}} is not an environment variable name"));
        }
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(format!("environment variable ${name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<SyncConfig, ConfigError> {
        parse(text, Path::new("/etc/mirror/sync.yaml"))
    }

    fn line_of_error(text: &str) -> (Option<u64>, String) {
        let e = parse_str(text).unwrap_err();
        (e.line, e.to_string())
    }

    const GOOD: &str = r#"
jobs: 4
max_requests_per_host: 6
read_timeout: 30s
defaults:
  target: "dst.io/mirror/{repo}"
  vars: {region: eastus}
registries:
  - host: dst.io
    credentials:
      username: svc
      password: literal-pw
    tls: {ca_file: ca.pem}
    chunk_threshold: 16M
sync:
  - source: src.io/boot/linux
    tags: ["{region}-stable"]
    target_tag: stable
  - source: src.io/app
    include: ['^(?P<v>\d+\.\d+)$']
    exclude: ['^0\.']
    target_tag: "{v}-mirrored"
  - source: src.io/lib
    semver: ">=1.2, <2"
    latest: 2
    platforms: [linux/amd64]
    target: oci:out
  - source: oci:layout:cap/x
  - source: src.io/team/*
"#;

    #[test]
    fn a_full_config_resolves_with_defaults_applied() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.jobs, Some(4));
        assert_eq!(c.max_requests_per_host, Some(6));
        assert_eq!(c.read_timeout, Some(std::time::Duration::from_secs(30)));
        let r = &c.registries[0];
        assert_eq!(r.host, "dst.io");
        assert_eq!(r.credential, Some(Credential::basic("svc", "literal-pw")));
        assert_eq!(r.ca_files, vec![PathBuf::from("/etc/mirror/ca.pem")]);
        assert_eq!(r.chunk_threshold, Some(16 * 1024 * 1024));
        let e = &c.entries;
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].line, 16);
        assert_eq!(e[0].selector.explicit, vec!["eastus-stable"]);
        assert_eq!(e[0].target_tag.as_str(), "stable");
        assert_eq!(e[0].target.as_str(), "dst.io/mirror/{repo}");
        assert_eq!(e[1].selector.include.len(), 1);
        assert_eq!(e[2].selector.latest, Some(2));
        assert_eq!(e[2].target.as_str(), "oci:/etc/mirror/out");
        assert_eq!(e[2].platforms.len(), 1);
        assert_eq!(
            e[3].source,
            SourceSpec::Files {
                kind: FileKind::Layout,
                path: "/etc/mirror/layout".into(),
                repository: Some("cap/x".into())
            }
        );
        assert_eq!(
            e[4].source,
            SourceSpec::RegistryPrefix {
                registry: "src.io".into(),
                prefix: "team".into()
            }
        );
    }

    #[test]
    fn every_config_error_names_its_line() {
        let cases: &[(&str, u64, &str)] = &[
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    tagz: [1]\n", 4, "tagz"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    include: ['(']\n", 4, "regular expression"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    exclude: ['ok', '[z-a]']\n", 4, "regular expression"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    target_tag: '{oops'\n", 4, "never closed"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    target_tag: '{region}'\n", 4, "{region}"),
            ("sync:\n  - source: a.io/x\n    target: 'b.io/{nope}'\n", 3, "{nope}"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    tags: ['{region}-stable']\n    target_tag: '{regoin}'\n", 5, "{regoin}"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    tags: ['{region']\n", 4, "never closed"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    semver: 'not a range'\n", 4, "semver"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    latest: 0\n", 4, "latest"),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n    platforms: [linux]\n", 4, "platform"),
            ("sync:\n  - source: a.io/x:tag\n    target: b.io/x\n", 2, "tags:"),
            ("sync:\n  - source: a.io/x\n", 2, "no target"),
            ("registries:\n  - host: b.io\n    credentials:\n      username: u\n      pasword: p\nsync: []\n", 5, "pasword"),
            ("registries:\n  - host: b.io\n    credentials:\n      username: u\n      password: ${MIRROR_TEST_SURELY_UNSET}\nsync: []\n", 5, "MIRROR_TEST_SURELY_UNSET"),
            ("registries:\n  - host: https://b.io\nsync: []\n", 2, "host"),
            ("registries:\n  - host: b.io\n    chunk_size: 8Q\nsync: []\n", 3, "8Q"),
            ("defaults:\n  latest: many\nsync: []\n", 2, ""),
            ("sync:\n  - source: a.io/x\n    target: b.io/x\n  tags: [a]\n", 4, ""),
            ("jobs: 2\nextra: 1\nsync: []\n", 2, "extra"),
            ("max_requests_per_host: 0\nsync: [{source: a.io/x, target: b.io/x}]\n", 1, "at least 1"),
            ("read_timeout: soon\nsync: [{source: a.io/x, target: b.io/x}]\n", 1, "soon"),
            ("registries:\n  - host: b.io\n  - host: b.io\nsync: []\n", 3, "twice"),
        ];
        for (text, line, needle) in cases {
            let (got, msg) = line_of_error(text);
            assert_eq!(got, Some(*line), "{text}\n→ {msg}");
            assert!(msg.contains(needle), "{text}\n→ {msg}");
            assert!(
                msg.starts_with(&format!("/etc/mirror/sync.yaml:{line}: ")),
                "{msg}"
            );
        }
    }

    #[test]
    fn secrets_from_the_environment_and_files_are_never_shown() {
        std::env::set_var("MIRROR_TEST_CFG_PW", "env-SECRET-value");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "file-SECRET-value\n").unwrap();
        let text = "registries:\n  - host: a.io\n    credentials: {username: u, password: '${MIRROR_TEST_CFG_PW}'}\n  - host: b.io\n    credentials: {username: u, password_file: pw}\n  - host: c.io\n    credentials: {acr_token: '${MIRROR_TEST_CFG_PW}', tenant: t}\nsync:\n  - {source: a.io/x, target: b.io/x}\n";
        let c = parse(text, &dir.path().join("sync.yaml")).unwrap();
        assert_eq!(
            c.registries[0].credential,
            Some(Credential::basic("u", "env-SECRET-value"))
        );
        assert_eq!(
            c.registries[1].credential,
            Some(Credential::basic("u", "file-SECRET-value"))
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn a_tag_with_a_free_placeholder_is_a_pattern_whose_capture_names_the_target() {
        let c = parse_str(
            "sync:\n  - source: a.io/x\n    target: b.io/x\n    tags: ['{region}-stable', 'v1']\n    target_tag: '{region}'\n",
        )
        .unwrap();
        let sel = &c.entries[0].selector;
        assert_eq!(sel.explicit, vec!["v1"]);
        assert_eq!(sel.include.len(), 1);
        let picked = sel.select(Some(&["eastus-stable".to_string(), "beta".to_string()]));
        assert_eq!(picked.len(), 2);
        assert_eq!(picked[0].captures["region"], "eastus");
    }

    #[test]
    fn the_examples_parse() {
        std::env::set_var("ACR_PASSWORD", "example-SECRET");
        std::env::set_var("DOCKERHUB_TOKEN", "example-SECRET");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let c = load(&root.join("sync.yaml")).unwrap();
        assert_eq!(c.entries.len(), 8);
        assert_eq!(c.no_match, crate::no_match::NoMatch::Error);
        assert!(!format!("{c:?}").contains("SECRET"));
        let c = load(&root.join("sync-demo.yaml")).unwrap();
        assert_eq!(c.entries[0].selector.explicit, vec!["eastus-stable"]);
        let c = super::super::skopeo::load(&root.join("skopeo-sync.yaml"), "dst.io/m").unwrap();
        assert_eq!(c.entries.len(), 5);
    }

    #[test]
    fn environment_expansion() {
        std::env::set_var("MIRROR_TEST_CFG_X", "xx");
        assert_eq!(expand_env("a${MIRROR_TEST_CFG_X}b").unwrap(), "axxb");
        assert_eq!(expand_env("plain").unwrap(), "plain");
        assert!(expand_env("${MIRROR_TEST_CFG_NOPE}")
            .unwrap_err()
            .contains("NOPE"));
        assert!(expand_env("${oops").is_err());
    }

    #[test]
    fn the_proxy_keys_reach_the_client_settings() {
        let c = parse_str(
            "proxy: https://u:pw-9@proxy.corp:3129\nproxy_ca_file: certs/proxy.pem\nsync:\n  - {source: a.io/x, target: b.io/x}\n",
        )
        .unwrap();
        assert_eq!(
            c.proxy_ca_files,
            vec![PathBuf::from("/etc/mirror/certs/proxy.pem")]
        );
        let settings = c.client_settings();
        assert_eq!(settings.proxy_ca_files, c.proxy_ca_files);
        let proxy = settings.proxy().unwrap();
        assert_eq!(
            proxy.ca_files().collect::<Vec<_>>(),
            vec![Path::new("/etc/mirror/certs/proxy.pem")]
        );
        assert_eq!(proxy.to_string(), "https://u:***@proxy.corp:3129");
        // Without `proxy:`, the CA still goes with the environment's proxy.
        let c = parse_str("proxy_ca_file: /p.pem\nsync:\n  - {source: a.io/x, target: b.io/x}\n")
            .unwrap();
        assert_eq!(c.proxy, None);
        assert_eq!(
            c.client_settings().proxy_ca_files,
            vec![PathBuf::from("/p.pem")]
        );
    }
}
