//! Inspect an image: its digest and media type, the platforms of an index,
//! each image's config and layers, and the repository's tags, with the
//! credentials `docker login` (or `podman login`) stored.
//!
//! ```text
//! cargo run -p registry-client --example inspect -- docker.io/library/alpine:3.20
//! ```
//!
//! Exit codes: 0 shown, 1 the registry failed or has no such image, 2 a bad
//! argument, 3 credentials missing or refused.

use std::process::ExitCode;
use std::sync::Arc;

use registry_client::{
    Client, ClientConfig, CredentialChain, Descriptor, Error, ErrorKind, Manifest, Reference,
    StaticCredentials,
};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image] = args.as_slice() else {
        eprintln!("usage: inspect IMAGE (e.g. inspect docker.io/library/alpine:3.20)");
        return ExitCode::from(2);
    };
    match inspect(image).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message names the method, a redacted URL, the registry's
            // error codes and the whole cause chain.
            eprintln!("inspect: {e}");
            ExitCode::from(match e.kind() {
                ErrorKind::InvalidInput => 2,
                ErrorKind::Auth => 3,
                _ => 1,
            })
        }
    }
}

async fn inspect(image: &str) -> Result<(), Error> {
    let reference = Reference::parse(image)?;
    // Nothing given explicitly, then docker's config.json and its
    // credential helpers (and podman's auth.json).
    let credentials = CredentialChain::explicit_then_auth_files(StaticCredentials::new(), None)?;
    let client = Client::new(
        ClientConfig::builder()
            .credentials(Arc::new(credentials))
            .build(),
    )?;

    // Verified: by digest the bytes hash to it, by tag to the registry's
    // Docker-Content-Digest.
    let manifest = client.get_manifest(&reference).await?;
    println!("reference:  {reference}");
    println!("digest:     {}", manifest.digest);
    println!("media type: {}", manifest.media_type);
    if manifest.is_index() {
        let children = manifest.content()?.manifests;
        println!("platforms:  {}", children.len());
        for child in &children {
            println!("  {} {}", platform(child), child.digest);
            let image = reference.repository().digest(&child.digest);
            show_image(&client.get_manifest(&image).await?, "    ")?;
        }
    } else {
        show_image(&manifest, "")?;
    }
    let tags = client.list_tags(reference.repository(), None).await?;
    println!("tags:       {}", tags.join(" "));
    Ok(())
}

/// An image manifest's config and layers.
fn show_image(manifest: &Manifest, indent: &str) -> Result<(), Error> {
    if manifest.is_index() {
        println!("{indent}(an index within the index)");
        return Ok(());
    }
    let content = manifest.content()?;
    if let Some(config) = &content.config {
        println!("{indent}config: {}", describe(config));
    }
    let total: u64 = content.layers.iter().map(|l| l.size).sum();
    println!("{indent}layers: {} ({total} bytes)", content.layers.len());
    for layer in &content.layers {
        println!("{indent}  {}", describe(layer));
    }
    Ok(())
}

fn describe(d: &Descriptor) -> String {
    format!("{} {} {} bytes", d.digest, d.media_type, d.size)
}

/// `os/architecture[/variant]`, or `-` for an entry without a platform
/// (an attestation, say).
fn platform(d: &Descriptor) -> String {
    match &d.platform {
        Some(p) => {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s = format!("{s}/{v}");
            }
            s
        }
        None => "-".into(),
    }
}
