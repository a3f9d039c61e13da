//! Where images come from and go to, as users write them on the command line:
//! `HOST/REPO[:TAG|@DIGEST]`, `oci:PATH[:NAME]` or `oci-archive:PATH[:NAME]`.

use std::fmt;
use std::path::PathBuf;

use registry_client::{Digest, Reference, Repository};

/// The two kinds of image store kept in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// An OCI image layout directory (`oci:`).
    Layout,
    /// A tar of one (`oci-archive:`).
    Archive,
}

impl FileKind {
    pub fn scheme(self) -> &'static str {
        match self {
            FileKind::Layout => "oci",
            FileKind::Archive => "oci-archive",
        }
    }

    /// What messages call it.
    pub fn noun(self) -> &'static str {
        match self {
            FileKind::Layout => "layout",
            FileKind::Archive => "archive",
        }
    }
}

/// A file location as written: its kind, path and name.
pub type FileParts<'a> = (FileKind, &'a str, Option<&'a str>);

/// The one reader of the `oci:` and `oci-archive:` prefixes:
/// `oci:PATH[:NAME]` → the kind, the path and the name as written; `None`
/// for anything else (a registry reference). An empty path is an error.
pub fn split_file(text: &str) -> Option<Result<FileParts<'_>, String>> {
    let (kind, rest) = if let Some(r) = text.strip_prefix("oci:") {
        (FileKind::Layout, r)
    } else if let Some(r) = text.strip_prefix("oci-archive:") {
        (FileKind::Archive, r)
    } else {
        return None;
    };
    let (path, name) = match rest.split_once(':') {
        Some((p, n)) => (p, Some(n)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Some(Err(format!("the {} path is empty", kind.noun())));
    }
    Some(Ok((kind, path, name)))
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Registry {
        repository: Repository,
        tag: Option<String>,
        digest: Option<Digest>,
    },
    /// An image in a layout directory or an archive (see `store::archive`):
    /// by name, or the only one.
    File {
        kind: FileKind,
        path: PathBuf,
        name: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image location {input:?}: {reason}")]
pub struct EndpointError {
    pub input: String,
    pub reason: String,
}

impl Endpoint {
    pub fn parse(input: &str) -> Result<Self, EndpointError> {
        let err = |reason: String| EndpointError {
            input: input.to_string(),
            reason,
        };
        if let Some(file) = split_file(input) {
            let (kind, path, name) = file.map_err(err)?;
            if let Some(n) = name {
                validate_ref_name(n).map_err(err)?;
            }
            return Ok(Endpoint::file(
                kind,
                PathBuf::from(path),
                name.map(str::to_string),
            ));
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(err(format!(
                "write references without a scheme ({scheme}:// is not needed)"
            )));
        }
        let reference = Reference::parse(input).map_err(|e| err(e.to_string()))?;
        // Reference::parse adds `latest` when neither tag nor digest is
        // written; here "no tag" means "keep the source's".
        let last = input.rsplit('/').next().unwrap_or(input);
        let tag_written = last.split('@').next().unwrap_or(last).contains(':');
        Ok(Endpoint::Registry {
            repository: reference.repository().clone(),
            tag: if tag_written {
                reference.tag().map(str::to_string)
            } else {
                None
            },
            digest: reference.digest().cloned(),
        })
    }

    /// A file location's kind; `None` for a registry.
    pub fn file_kind(&self) -> Option<FileKind> {
        match self {
            Endpoint::Registry { .. } => None,
            Endpoint::File { kind, .. } => Some(*kind),
        }
    }

    /// A file location of `kind`.
    pub fn file(kind: FileKind, path: PathBuf, name: Option<String>) -> Self {
        Endpoint::File { kind, path, name }
    }

    /// The tag or name written, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Endpoint::Registry { tag, .. } => tag.as_deref(),
            Endpoint::File { name, .. } => name.as_deref(),
        }
    }

    /// The tag an image has when it lands elsewhere: a registry tag as is;
    /// a layout name `repo/path:tag` gives `tag`.
    pub fn portable_tag(&self) -> Option<String> {
        match self {
            Endpoint::Registry { tag, .. } => tag.clone(),
            Endpoint::File { name, .. } => name
                .as_deref()
                .map(|n| n.rsplit_once(':').map_or(n, |(_, t)| t).to_string()),
        }
    }

    /// The name an image gets in a layout when none is written:
    /// `repo/path:tag` from a registry source, the same name from a layout.
    pub fn layout_name(&self) -> Option<String> {
        match self {
            Endpoint::Registry {
                repository, tag, ..
            } => tag.as_ref().map(|t| format!("{}:{t}", repository.name())),
            Endpoint::File { name, .. } => name.clone(),
        }
    }

    /// The full reference to record for an image written into an archive
    /// (`HOST/REPO:TAG`, or `HOST/REPO@DIGEST`): only a registry source has one.
    pub fn full_reference(&self) -> Option<String> {
        match self {
            Endpoint::Registry {
                repository,
                tag,
                digest,
            } => match (tag, digest) {
                (Some(t), _) => Some(format!("{repository}:{t}")),
                (None, Some(d)) => Some(format!("{repository}@{d}")),
                (None, None) => Some(format!("{repository}:latest")),
            },
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Registry {
                repository,
                tag,
                digest,
            } => {
                write!(f, "{repository}")?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            Endpoint::File { kind, path, name } => {
                write!(f, "{}:{}", kind.scheme(), path.display())?;
                if let Some(n) = name {
                    write!(f, ":{n}")?;
                }
                Ok(())
            }
        }
    }
}

/// `org.opencontainers.image.ref.name` grammar: components of alphanumerics
/// joined by `-._:@+` (and `--`), separated by `/`.
pub fn validate_ref_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_alphanumeric())
                && c.chars()
                    .last()
                    .is_some_and(|ch| ch.is_ascii_alphanumeric())
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-._:@+".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "layout name {name:?} is not a valid reference name (letters, digits and -._:@+ between '/')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_with_and_without_names() {
        assert_eq!(
            Endpoint::parse("oci:/tmp/x:boot/vm-bootstrapper/binimage/linux:eastus-stable")
                .unwrap(),
            Endpoint::File {
                kind: FileKind::Layout,
                path: "/tmp/x".into(),
                name: Some("boot/vm-bootstrapper/binimage/linux:eastus-stable".into())
            }
        );
        let e = Endpoint::parse("oci:out").unwrap();
        assert_eq!(e.tag(), None);
        let e =
            Endpoint::parse("oci:fixtures/azureml:cap/lifecycler/installed:eastus-stable").unwrap();
        assert_eq!(e.portable_tag().as_deref(), Some("eastus-stable"));
        assert!(Endpoint::parse("oci::x").is_err());
        let err = Endpoint::parse("oci:/x:../etc").unwrap_err().to_string();
        assert!(err.contains("../etc"), "{err}");
    }

    #[test]
    fn archives_with_and_without_names() {
        let e = Endpoint::parse("oci-archive:/tmp/b.tar:cap/lifecycler/installed:stable").unwrap();
        assert_eq!(
            e,
            Endpoint::File {
                kind: FileKind::Archive,
                path: "/tmp/b.tar".into(),
                name: Some("cap/lifecycler/installed:stable".into())
            }
        );
        assert_eq!(e.portable_tag().as_deref(), Some("stable"));
        assert_eq!(
            e.to_string(),
            "oci-archive:/tmp/b.tar:cap/lifecycler/installed:stable"
        );
        let e = Endpoint::parse("oci-archive:b.tar").unwrap();
        assert_eq!(e.tag(), None);
        assert_eq!(e.full_reference(), None);
        assert!(Endpoint::parse("oci-archive::x").is_err());
        let err = Endpoint::parse("oci-archive:/x:../etc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("../etc"), "{err}");
        let e = Endpoint::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(e.full_reference().as_deref(), Some("127.0.0.1:5000/a/b:v1"));
    }

    #[test]
    fn registry_references_keep_whether_a_tag_was_written() {
        let e = Endpoint::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(e.tag(), None);
        let e = Endpoint::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(e.tag(), Some("v1"));
        assert_eq!(e.layout_name().as_deref(), Some("app:v1"));
        let d = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let e = Endpoint::parse(&format!("reg.io/a/b@{d}")).unwrap();
        assert_eq!(e.tag(), None);
        assert_eq!(e.to_string(), format!("reg.io/a/b@{d}"));
        let err = Endpoint::parse("docker://reg.io/a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker://reg.io/a"), "{err}");
        assert!(Endpoint::parse("Reg.io/A").is_err());
    }
}
