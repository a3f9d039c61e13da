//! `mirror verify BUNDLE`: check a bundle offline and print what it holds.

use clap::Args;

use super::error::{CommandResult, Failure};
use super::render::human_bytes;
use super::{exit, OutputFormat};
use mirror::bundle::Bundle;
use mirror::verify::{verify, BundleReport};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle: an archive (`oci-archive:PATH` or PATH) or a layout
    /// directory (`oci:DIR` or DIR).
    #[arg(value_name = "BUNDLE")]
    bundle: String,
    /// What it holds and what is wrong: text or JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: VerifyArgs) -> CommandResult {
    // Opening an archive indexes it and refuses hostile entries by name.
    // A bundle refused when opened (missing, malformed, hostile) exits 2,
    // as it does for `mirror copy`.
    let bundle = Bundle::open(&args.bundle).await.map_err(Failure::usage)?;
    let report = verify(bundle.store.as_ref(), &bundle.names, &bundle.omitted).await;
    super::out::report(args.output, &report, summary)?;
    if report.ok() {
        Ok(exit::OK)
    } else {
        Err(Failure::failed(report.problems.join("\nerror: ")))
    }
}

fn summary(r: &BundleReport) -> String {
    let mut out = String::new();
    for i in &r.images {
        let platforms = if i.platforms.is_empty() {
            String::new()
        } else {
            format!("  [{}]", i.platforms.join(", "))
        };
        let from = i
            .reference
            .as_deref()
            .map(|s| format!("  from {s}"))
            .unwrap_or_default();
        out += &format!(
            "{}  {}  {}{platforms}{from}\n",
            i.name,
            i.digest,
            human_bytes(i.size)
        );
        for r in &i.referrers {
            // A referrer of the image itself goes without saying.
            let of = if r.subject == i.digest {
                String::new()
            } else {
                format!("  (of {})", r.subject)
            };
            out += &format!(
                "  referrer {}  {}  {}{of}\n",
                r.artifact_type.as_deref().unwrap_or(&r.media_type),
                r.digest,
                human_bytes(r.size)
            );
        }
    }
    if !r.omitted.is_empty() {
        let bytes: u64 = r.omitted.iter().map(|o| o.size).sum();
        out += &format!(
            "left out (a delta: the target must already hold them): {} blobs, {}\n",
            r.omitted.len(),
            human_bytes(bytes)
        );
        for o in &r.omitted {
            out += &format!("  {} {}\n", o.digest, human_bytes(o.size));
        }
    }
    let referrers = match r.referrers {
        0 => String::new(),
        n => format!(" ({n} referrers)"),
    };
    out += &format!(
        "{}: {} images, {} manifests{referrers}, {} blobs ({}) checked; {}\n",
        r.bundle,
        r.images.len(),
        r.manifests,
        r.blobs,
        human_bytes(r.blob_bytes),
        if r.ok() {
            "every digest and size matches".to_string()
        } else {
            format!("{} problem(s)", r.problems.len())
        }
    );
    out
}
