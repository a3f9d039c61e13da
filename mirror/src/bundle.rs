//! A bundle (what `export` writes, `import` and `verify` read): an archive
//! or a layout directory, opened for reading with its named images, the
//! blobs a delta bundle leaves out, and whether it keeps referrers
//! (signatures, SBOMs, attestations: entries without a name whose manifest
//! has a subject).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use registry_client::{Descriptor, Digest};

use crate::endpoint::{split_file, Endpoint, FileKind};
use crate::plan::FileSource;
use crate::store::ImageSource;

/// A bundle opened for reading, as a store with its named images.
pub struct Bundle {
    pub path: PathBuf,
    pub kind: FileKind,
    pub store: Arc<dyn ImageSource>,
    pub names: Vec<(String, Descriptor)>,
    pub omitted: BTreeSet<Digest>,
    /// Whether it keeps referrers (or could not tell: an unnamed entry it
    /// could not read), so import takes them as export put them in; the
    /// walk then names what is wrong, per image.
    pub holds_referrers: bool,
}

impl Bundle {
    /// `oci-archive:PATH`, `oci:DIR`, or a path: a directory is a layout,
    /// a file an archive.
    pub async fn open(text: &str) -> Result<Bundle, String> {
        let (path, kind) = match split_file(text) {
            Some(file) => {
                let (kind, path, _) = file?;
                (PathBuf::from(path), kind)
            }
            None => {
                let p = PathBuf::from(text);
                let kind = if p.is_dir() {
                    FileKind::Layout
                } else {
                    FileKind::Archive
                };
                (p, kind)
            }
        };
        let files = FileSource::open(kind, &path).map_err(|e| e.to_string())?;
        let names = files.names().await.map_err(|e| e.to_string())?;
        let referrers = match &files {
            FileSource::Layout(s) => s.referrer_entries().await,
            FileSource::Archive(s) => s.referrer_entries().await,
        };
        let holds_referrers = referrers.map_or(true, |r| !r.is_empty());
        let (store, omitted) = (files.store(), files.omitted());
        Ok(Bundle {
            path,
            kind,
            store,
            names,
            omitted,
            holds_referrers,
        })
    }

    /// The location of one named image in it.
    pub fn image(&self, name: &str) -> Endpoint {
        Endpoint::file(self.kind, self.path.clone(), Some(name.to_string()))
    }
}
