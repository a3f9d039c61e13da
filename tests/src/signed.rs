//! Images with referrers, for the referrer tests: a signature, an SBOM and
//! the SBOM's own signature, each listed as the registry needs, and what a
//! registry lists back.

use registry_client::{Client, Digest, Manifest, Repository};

use crate::images::{image, push_image, push_listed_referrer, TestImage};

/// A Notation signature's artifact type.
pub const SIG: &str = "application/vnd.cncf.notary.signature";
/// An SPDX SBOM's artifact type.
pub const SBOM: &str = "application/spdx+json";

/// An image at `v1` with a signature and an SBOM, and a signature of the
/// SBOM.
pub struct Signed {
    pub image: TestImage,
    pub sig: Manifest,
    pub sbom: Manifest,
    pub sbom_sig: Manifest,
}

impl Signed {
    /// Its three referrers: the image's two, then the SBOM's signature.
    pub fn referrers(&self) -> [&Manifest; 3] {
        [&self.sig, &self.sbom, &self.sbom_sig]
    }
}

/// Push a [`Signed`] image to `r`; `seed` makes it and its referrers unique.
pub async fn push_signed(c: &Client, r: &Repository, seed: u64) -> Signed {
    let img = image(seed, &[3000], false);
    push_image(c, r, "v1", &img).await;
    let subject = img.descriptor();
    let sig = push_listed_referrer(c, r, &subject, SIG, seed).await;
    let sbom = push_listed_referrer(c, r, &subject, SBOM, seed + 1).await;
    let sbom_desc = sbom.referrer_descriptor().expect("an SBOM's descriptor");
    let sbom_sig = push_listed_referrer(c, r, &sbom_desc, SIG, seed + 2).await;
    Signed {
        image: img,
        sig,
        sbom,
        sbom_sig,
    }
}

/// The digests that refer to `subject` at `r`, sorted.
pub async fn referrers_at(c: &Client, r: &Repository, subject: &Digest) -> Vec<Digest> {
    let listed = c
        .referrers(r, subject, &[])
        .await
        .expect("listing referrers");
    sorted(listed.manifests.into_iter().map(|d| d.digest).collect())
}

/// `d`, sorted: referrers are listed in no set order.
pub fn sorted(mut d: Vec<Digest>) -> Vec<Digest> {
    d.sort();
    d
}
