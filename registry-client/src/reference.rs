//! Image references in the Docker grammar: `[host[:port]/]path[:tag][@digest]`,
//! with Docker Hub's defaults (`ubuntu` → `docker.io/library/ubuntu:latest`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's API.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A repository in a registry: `registry` is the host (with port), `name` the path.
/// Prints as `registry/name`.
///
/// ```
/// use registry_client::Repository;
///
/// let repo = Repository::parse("ubuntu")?;
/// assert_eq!(repo.to_string(), "docker.io/library/ubuntu");
/// assert_eq!(repo.api_host(), "registry-1.docker.io");
/// assert_eq!(repo.tag("24.04")?.to_string(), "docker.io/library/ubuntu:24.04");
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    name: String,
}

impl Repository {
    /// Parse `host/path` or a bare path (Docker Hub), without tag or digest.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReference`], naming the input and what is wrong.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let r = Reference::parse_inner(input, false)?;
        Ok(r.repository)
    }

    /// The repository `name` in `registry`, validated as [`Repository::parse`] does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReference`].
    pub fn new(registry: &str, name: &str) -> Result<Self, Error> {
        Repository::parse(&format!("{registry}/{name}"))
    }

    /// The registry as users write it (`docker.io`, `myacr.azurecr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to send API requests to (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path (`library/ubuntu`, `boot/vm-bootstrapper/binimage/linux`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reference to `tag` in this repository.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReference`] for a tag that is not valid
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
    pub fn tag(&self, tag: &str) -> Result<Reference, Error> {
        Reference::parse(&format!("{self}:{tag}"))
    }

    /// The reference to `digest` in this repository.
    pub fn digest(&self, digest: &Digest) -> Reference {
        Reference {
            repository: self.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }
}

/// The API host of a registry name.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({self})")
    }
}

/// A fully qualified image reference. At least one of tag and digest is set:
/// a reference with neither gets the tag `latest`, as Docker does.
///
/// ```
/// use registry_client::Reference;
///
/// let r = Reference::parse("ubuntu")?;
/// assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
///
/// let r = Reference::parse("localhost:5000/team/app:v1.2")?;
/// assert_eq!(r.registry(), "localhost:5000");
/// assert_eq!(r.repository().name(), "team/app");
/// assert_eq!(r.tag(), Some("v1.2"));
/// assert_eq!(r.manifest_ref(), "v1.2");
///
/// // A digest pins the content: it is what the registry is asked for.
/// let pinned = Reference::parse(
///     "ghcr.io/org/tool:1@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
/// )?;
/// assert_eq!(pinned.manifest_ref(), pinned.digest().unwrap().to_string());
///
/// // Errors name the input and what is wrong with it.
/// let err = Reference::parse("r.io/app:bad tag").unwrap_err();
/// assert!(err.to_string().contains("\"r.io/app:bad tag\""));
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    repository: Repository,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse `[host[:port]/]path[:tag][@digest]` with Docker's rules: the
    /// first component is a registry when it has a `.` or `:` or is
    /// `localhost`; without one it is Docker Hub (`docker.io`, and
    /// `library/` before a one-component path).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReference`], naming the input and what is wrong
    /// (an empty or over-long name, upper case in the path, a bad tag,
    /// host or digest).
    pub fn parse(input: &str) -> Result<Self, Error> {
        Self::parse_inner(input, true)
    }

    fn parse_inner(input: &str, allow_tag_digest: bool) -> Result<Self, Error> {
        let err = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference".into()));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace or control characters".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| err(format!("bad digest: {e}")))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before
        // it belongs to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if !allow_tag_digest && (tag.is_some() || digest.is_some()) {
            return Err(err("a repository takes no tag or digest".into()));
        }
        if let Some(t) = &tag {
            validate_tag(t).map_err(err)?;
        }
        let (registry, path) = split_registry(name);
        if let Some(host) = &registry {
            validate_host(host).map_err(err)?;
        }
        let mut registry = registry.unwrap_or_else(|| DOCKER_HUB.to_string());
        if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            registry = DOCKER_HUB.to_string();
        }
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        validate_path(&path).map_err(err)?;
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(err(format!("name longer than {MAX_NAME_LEN} characters")));
        }
        let tag = if tag.is_none() && digest.is_none() && allow_tag_digest {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            repository: Repository {
                registry,
                name: path,
            },
            tag,
            digest,
        })
    }

    /// The repository it is in.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The registry, as users write it (see [`Repository::registry`]).
    pub fn registry(&self) -> &str {
        self.repository.registry()
    }

    /// The tag, if it has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if it has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes in `/v2/<name>/manifests/<here>`: the digest when there is
    /// one (it pins the content), otherwise the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same reference pinned to `digest` (the tag is kept, for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference with `tag` in place of its tag.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReference`] for a tag that is not valid.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            input: tag.to_string(),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

/// Docker's rule: the first component names a registry when it has a '.' or
/// ':' , is `localhost`, or has upper-case letters (which paths cannot have).
fn split_registry(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first.to_string()), rest)
        }
        _ => (None, name),
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_' and be at most {MAX_TAG_LEN} characters"
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("tag {tag:?} contains {c:?}"));
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {host:?} has an unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {host:?} is not a valid IPv6 address"));
        }
        return match after {
            "" => Ok(()),
            p if p.starts_with(':') => validate_port(host, &p[1..]),
            _ => Err(format!("registry {host:?} is malformed")),
        };
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        validate_port(host, p)?;
    }
    let ok_component = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if !name.split('.').all(ok_component) {
        return Err(format!("registry {host:?} is not a valid host name"));
    }
    Ok(())
}

fn validate_port(host: &str, port: &str) -> Result<(), String> {
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err(format!("registry {host:?} has an invalid port"));
    }
    Ok(())
}

/// Path components are lower-case alphanumerics joined by `.`, `_`, `__` or
/// runs of `-`, separated by `/`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("repository name is empty".into());
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository name {path:?} must be lower-case"));
    }
    for component in path.split('/') {
        if !valid_component(component) {
            return Err(format!(
                "repository path component {component:?} is invalid (lower-case letters and digits, separated by '.', '_', '__' or '-')"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap();
        (
            r.registry().to_string(),
            r.repository().name().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(|d| d.to_string()),
        )
    }

    const D: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("ubuntu").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(r.repository().api_host(), "registry-1.docker.io");
        assert_eq!(parts("bitnami/redis:7").1, "bitnami/redis");
        assert_eq!(parts("index.docker.io/library/busybox").0, "docker.io");
        assert_eq!(parts("docker.io/busybox").1, "library/busybox");
    }

    #[test]
    fn hosts_ports_nested_paths_tags_and_digests() {
        assert_eq!(
            parts("localhost:5000/a/b/c:v1.2"),
            (
                "localhost:5000".into(),
                "a/b/c".into(),
                Some("v1.2".into()),
                None
            )
        );
        assert_eq!(
            parts(&format!(
                "myacr.azurecr.io/boot/vm-bootstrapper/binimage/linux@{D}"
            )),
            (
                "myacr.azurecr.io".into(),
                "boot/vm-bootstrapper/binimage/linux".into(),
                None,
                Some(D.into())
            )
        );
        assert_eq!(
            parts(&format!("127.0.0.1:5000/x:eastus-stable@{D}")),
            (
                "127.0.0.1:5000".into(),
                "x".into(),
                Some("eastus-stable".into()),
                Some(D.into())
            )
        );
        assert_eq!(parts("localhost/foo").0, "localhost");
        assert_eq!(parts("[::1]:5000/foo:t").0, "[::1]:5000");
        assert_eq!(parts("a__b/c-d--e/f.g_h").1, "a__b/c-d--e/f.g_h");
        let r = Reference::parse(&format!("reg.io/x:t@{D}")).unwrap();
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn errors_name_the_input_and_the_problem() {
        for (input, needle) in [
            ("", "empty"),
            ("Reg.io/Foo", "lower-case"),
            ("reg.io/foo:", "tag"),
            ("reg.io/foo:-x", "tag"),
            ("reg.io/foo bar", "whitespace"),
            ("reg.io/foo@sha256:abc", "digest"),
            (
                "reg.io/foo@md5:d41d8cd98f00b204e9800998ecf8427e",
                "algorithm",
            ),
            ("reg.io//foo", "component"),
            ("reg.io/foo_", "component"),
            ("reg.io/-foo", "component"),
            ("reg.io/a...b", "component"),
            ("reg.io:99999/foo", "port"),
            ("re_g.io/foo", "host"),
            ("reg.io/../etc", "component"),
        ] {
            let msg = Reference::parse(input).unwrap_err().to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains(needle), "{input}: {msg}");
        }
        let long = format!("reg.io/{}", "a".repeat(300));
        assert!(Reference::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("255"));
        let long_tag = format!("reg.io/a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }

    #[test]
    fn repository_takes_no_tag() {
        assert_eq!(Repository::parse("reg.io/a/b").unwrap().name(), "a/b");
        assert!(Repository::parse("reg.io/a/b:t").is_err());
        assert_eq!(
            Repository::new("127.0.0.1:1234", "x/y")
                .unwrap()
                .to_string(),
            "127.0.0.1:1234/x/y"
        );
    }
}
