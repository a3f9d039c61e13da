//! OCI archives (`oci-archive:PATH[:NAME]`): a tar of an OCI image layout
//! holding one or many images, for carrying images across an air gap.
//!
//! Format: tar entries `blobs/<alg>/<hex>` (each blob once, however many
//! images share it), then `oci-layout` and `index.json`. Each `index.json`
//! entry names its image with `org.opencontainers.image.ref.name` (the NAME,
//! as `oci:` does) and, when the image came from a registry, records the
//! source's full `HOST/REPO:TAG` in `io.containerd.image.name`: the
//! annotation containerd's `ctr export` writes and `ctr import` reads to
//! restore names, so peers understand it and our import can restore
//! repositories and tags from it. Referrers (signatures, SBOMs,
//! attestations) have entries without a name (see
//! [`oci_index`](crate::store::oci_index)): peers looking images up by
//! name pass over them, and the reader lists them as the referrers of
//! their subject.
//!
//! With `--format docker` ([`ArchiveWriter::docker_loadable`]) the archive
//! also holds a `manifest.json` naming each image's config and layers by
//! their `blobs/` entries: the tar is then what `docker load` and `podman
//! load` take as well, one platform per image (see `docker.rs`).
//!
//! Writing ([`ArchiveWriter`]): a tar is sequential, the engine is not. Each
//! blob becomes one entry, appended under a lock: the entry header carries
//! the descriptor's size, the bytes go straight from the source into the
//! file (one chunk in memory) and are hashed on the way. A stream that fails
//! or does not match cuts the file back to the end of the last whole entry,
//! so the tar never holds a partial or wrong entry. Writers of other blobs
//! wait for the lock, and a writer opens its source only once it holds the
//! lock (an opened but idle download would time out). Tags are kept in
//! memory; [`ImageTarget::finish`](crate::store::ImageTarget::finish) writes `oci-layout`, `index.json` and the
//! end of the archive, fsyncs, and renames the temporary file
//! (`PATH.partial`, beside `PATH`) to `PATH`. Until then nothing is under
//! `PATH`. The temporary file is locked while written (a second run on the
//! same bundle is refused); one left by a killed or interrupted run is
//! continued: its blob entries are read back, each checked against the
//! header this writer writes and against its digest, the file is cut back
//! after the last whole, verified one, and those blobs count as written.
//! A writer dropped before writing a whole entry removes its file.
//! `finish` runs after every image of the run, failed ones included: the
//! bundle holds the images that succeeded (entries sorted by name; blobs of
//! failed images may remain, unnamed) and the run still exits non-zero. A
//! bundle whose every image failed is not written at all.
//!
//! Reading ([`ArchiveReader`]): the tar is indexed once when opened, and
//! hostile or malformed content is refused then, naming the entry: absolute
//! paths, `..`, links, devices, names that are not `index.json`,
//! `oci-layout`, `blobs/<alg>/<hex>` or docker's `manifest.json` and
//! `repositories`, a `manifest.json` naming a blob the archive does not
//! hold, duplicate names with different
//! content, entries that claim more bytes than the file holds, more than a
//! little data after the last entry, and an `index.json` naming a manifest
//! the archive does not hold. Blobs are then served by seeking to their
//! entry, verified against their digest and size as they stream; an entry
//! whose size differs from the descriptor's is refused before any byte.

mod docker;
mod reader;
mod tar;
#[cfg(test)]
mod testing;
mod writer;

pub use reader::{omitted_blobs, ArchiveReader};
pub use writer::ArchiveWriter;

/// The annotation holding an image's original full reference.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// The `index.json` annotation of a delta bundle: the blobs it leaves out
/// because the receiver already holds them (digests, space-separated).
/// Readers of plain OCI ignore it; `mirror import` checks the target holds
/// each, and `mirror verify` lists them as left out, not missing.
pub const OMITTED_BLOBS: &str = "dev.mirror.bundle.omitted-blobs";
