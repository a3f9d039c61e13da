//! A bundle given on the command line (`import`, `verify`): an archive or a
//! layout directory, opened for reading with its named images.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use registry_client::{Descriptor, Digest};

use mirror::endpoint::{split_file, Endpoint, FileKind};
use mirror::store::archive::ArchiveReader;
use mirror::store::layout::LayoutStore;
use mirror::store::ImageStore;

/// A bundle opened for reading, as a store with its named images.
pub struct Bundle {
    pub endpoint_path: PathBuf,
    pub archive: bool,
    pub store: Arc<dyn ImageStore>,
    pub names: Vec<(String, Descriptor)>,
    pub omitted: BTreeSet<Digest>,
}

impl Bundle {
    /// `oci-archive:PATH`, `oci:DIR`, or a path: a directory is a layout,
    /// a file an archive.
    pub async fn open(text: &str) -> Result<Bundle, String> {
        let (path, archive) = match split_file(text) {
            Some(file) => {
                let (kind, path, _) = file?;
                (PathBuf::from(path), kind == FileKind::Archive)
            }
            None => {
                let p = PathBuf::from(text);
                let dir = p.is_dir();
                (p, !dir)
            }
        };
        if archive {
            let reader = ArchiveReader::open(&path).map_err(|e| e.to_string())?;
            let names = reader.names();
            let omitted = reader.omitted().clone();
            Ok(Bundle {
                endpoint_path: path,
                archive,
                store: Arc::new(reader),
                names,
                omitted,
            })
        } else {
            let layout = LayoutStore::open(&path).map_err(|e| e.to_string())?;
            let names = layout.names().await.map_err(|e| e.to_string())?;
            Ok(Bundle {
                endpoint_path: path,
                archive,
                store: Arc::new(layout),
                names,
                omitted: BTreeSet::new(),
            })
        }
    }

    /// The endpoint of one named image in it.
    pub fn endpoint(&self, name: &str) -> Endpoint {
        let (path, name) = (self.endpoint_path.clone(), Some(name.to_string()));
        if self.archive {
            Endpoint::Archive { path, name }
        } else {
            Endpoint::Layout { path, name }
        }
    }
}
