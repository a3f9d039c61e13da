//! Exporting into a bundle: each image named after its source
//! (`REPO:TAG`, its full reference recorded), as jobs for the one planner;
//! and, once written, the list of blobs the receiver will hold, for the
//! next delta's `--since` (cumulative: what it held before, and more).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use registry_client::Digest;

use crate::endpoint::{Endpoint, FileKind};
use crate::graph::Selection;
use crate::plan::{Job, Stores};
use crate::store::StoreError;

/// The jobs that write every source into the bundle at `path`. The same
/// source twice is written once; two sources that would get one name are
/// refused (one would overwrite the other).
pub fn jobs(
    stores: &Stores,
    sources: &[(Endpoint, Selection)],
    kind: FileKind,
    path: &Path,
) -> Result<Vec<Job>, String> {
    let mut named: HashMap<String, String> = HashMap::new();
    let mut jobs = Vec::new();
    for (source, selection) in sources {
        let name = source.layout_name();
        if let Some(n) = &name {
            let label = source.to_string();
            if let Some(other) = named.insert(n.clone(), label.clone()) {
                if other == label {
                    continue;
                }
                return Err(format!(
                    "{other} and {label} would both be named {n:?} in the bundle"
                ));
            }
        }
        let target = Endpoint::file(kind, path.to_path_buf(), name);
        jobs.push(
            stores
                .job(source, &target, selection.clone())
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(jobs)
}

/// Write `BUNDLE.blobs` beside every archive `stores` wrote: what a
/// registry holds once it has imported it. With `since` (what `--since`
/// said the receiver held before), the list is cumulative: those blobs and
/// every blob the bundle's images use, so an image that goes back to an
/// earlier version next week sends nothing again.
pub async fn write_blob_lists(
    stores: &Stores,
    since: Option<&HashMap<Digest, u64>>,
) -> Vec<Result<PathBuf, StoreError>> {
    let mut out = Vec::new();
    for path in stores.archive_paths() {
        let written = match crate::delta::receiver_holds(&path).await {
            Ok(brought) => match since {
                Some(before) => crate::delta::cumulative_list(&path, before, brought),
                None => Ok(brought),
            }
            .and_then(|held| crate::delta::write_list(&path, &held)),
            Err(e) => Err(StoreError::invalid(
                format!("listing the blobs of {}", path.display()),
                e.to_string(),
            )),
        };
        out.push(written);
    }
    out
}
