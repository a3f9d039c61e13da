//! The AzureML preset with referrers: `azureml sync` carries each runtime
//! image's signatures (and any SBOM or attestation) into the customer's
//! registry, so a signature policy there finds them, and `azureml check`
//! counts them: listed by the source image's digest at the source, by the
//! target tag's digest at the target. Real registries (docker-registry,
//! which lists referrers through the tag schema) stand in for MCR and ACR.

use mirror_tests::cli::{mirror, Run};
use mirror_tests::fixtures::{self, azureml_images, GeneratedImage, Scale};
use mirror_tests::images::{client, push_listed_referrer, repo};
use mirror_tests::signed::{referrers_at, sorted, SBOM, SIG};
use mirror_tests::Registry;
use registry_client::{Descriptor, Digest, Manifest};
use serde_json::Value;

const RUNTIME: [&str; 6] = mirror::azureml::images::RUNTIME_REPOSITORIES;

/// An open source with the six `eastus-stable` images, and an open target.
async fn source_and_target() -> (Registry, Registry, Vec<GeneratedImage>) {
    let source = Registry::start_open().await.unwrap();
    let images = fixtures::generate_all(&azureml_images("eastus", Scale::Fixture));
    fixtures::push(&client(&source.host(), None), &source.host(), &images)
        .await
        .expect("push");
    let target = Registry::start_open().await.unwrap();
    (source, target, images)
}

fn subject(img: &GeneratedImage) -> Descriptor {
    Descriptor::new(
        img.media_type,
        img.manifest_digest.clone(),
        img.manifest.len() as u64,
    )
}

/// A referrer of `img` of `artifact_type` at `reg`, listed there (in the
/// tag-schema index: docker-registry has no referrers API).
async fn sign(reg: &Registry, img: &GeneratedImage, artifact_type: &str, n: u64) -> Manifest {
    let host = reg.host();
    push_listed_referrer(
        &client(&host, None),
        &repo(&host, &img.spec.repository),
        &subject(img),
        artifact_type,
        n,
    )
    .await
}

/// The digests `reg` lists as referring to `subject` in `name`, sorted.
async fn listed(reg: &Registry, name: &str, subject: &Digest) -> Vec<Digest> {
    let host = reg.host();
    referrers_at(&client(&host, None), &repo(&host, name), subject).await
}

fn preset_args<'a>(command: &'a str, source: &'a str, target: &'a str) -> Vec<&'a str> {
    vec![
        "azureml", command, "--region", "eastus", "--source", source, "--target", target,
    ]
}

async fn sync(source: &str, target: &str, extra: &[&str]) -> Run {
    let mut args = preset_args("sync", source, target);
    args.extend(["--progress", "none"]);
    args.extend_from_slice(extra);
    mirror(&args, &[]).await
}

/// `azureml check` as text and as JSON rows.
async fn check(source: &str, target: &str, extra: &[&str]) -> (Run, Vec<Value>) {
    let mut args = preset_args("check", source, target);
    args.extend_from_slice(extra);
    let text = mirror(&args, &[]).await;
    args.extend(["--output", "json"]);
    let json = mirror(&args, &[]).await;
    assert_eq!(json.code, text.code, "{}\n{}", json.stderr, text.stderr);
    let rows = match serde_json::from_str::<Value>(&json.stdout) {
        Ok(Value::Array(rows)) => rows,
        _ => panic!("check prints JSON rows: {}{}", json.stdout, json.stderr),
    };
    (text, rows)
}

fn row<'a>(rows: &'a [Value], image: &str) -> &'a Value {
    rows.iter().find(|r| r["image"] == image).unwrap()
}

/// The table's line for `image`.
fn line<'a>(run: &'a Run, image: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{image} ")))
        .unwrap_or_else(|| panic!("no line for {image}: {}", run.stdout))
}

/// The SIGNATURES cell of `image`'s line: the third column.
fn signatures_cell(run: &Run, image: &str) -> String {
    let header = run.stdout.lines().next().unwrap();
    let (from, to) = (
        header.find("SIGNATURES").unwrap(),
        header.find("JOB PULL").unwrap(),
    );
    line(run, image)[from..to].trim().to_string()
}

/// Requests that listed referrers: the API probe and the tag-schema index
/// reads (`GET …/manifests/sha256-<hex>`).
fn listings(reg: &Registry, skip: usize) -> (usize, usize) {
    let log = &reg.access_log()[skip..];
    let probes = log.iter().filter(|e| e.uri.contains("/referrers/")).count();
    let reads = log
        .iter()
        .filter(|e| e.method == "GET" && e.uri.contains("/manifests/sha256-"))
        .count();
    (probes, reads)
}

#[tokio::test]
async fn sync_carries_the_signatures_and_check_counts_them_per_image() {
    let (source, target, images) = source_and_target().await;
    let (s, t) = (source.host(), target.host());
    // The bootstrapper is signed; the wrapper signed and with an SBOM; the
    // other four have no referrers.
    let boot_sig = sign(&source, &images[0], SIG, 1).await;
    let wrapper_sig = sign(&source, &images[1], SIG, 2).await;
    let wrapper_sbom = sign(&source, &images[1], SBOM, 3).await;

    let before = source.access_log().len();
    let run = sync(&s, &t, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("mirroring 6 runtime images and their referrers for eastus"),
        "{}",
        run.stderr
    );
    // Listed at the target by the image's digest, byte for byte.
    assert_eq!(
        listed(&target, RUNTIME[0], &images[0].manifest_digest).await,
        vec![boot_sig.digest.clone()]
    );
    assert_eq!(
        listed(&target, RUNTIME[1], &images[1].manifest_digest).await,
        sorted(vec![
            wrapper_sig.digest.clone(),
            wrapper_sbom.digest.clone()
        ])
    );
    let tc = client(&t, None);
    let fetched = tc
        .get_manifest(&repo(&t, RUNTIME[0]).digest(&boot_sig.digest))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, boot_sig.bytes);
    // The cost at the source: one listing per manifest walked (six images
    // and three referrers), each one read of a tag-schema index, and the
    // API probed at most once per image (until one answer is learnt).
    let (probes, reads) = listings(&source, before);
    assert_eq!(reads, 9, "{:#?}", &source.access_log()[before..]);
    assert!((1..=6).contains(&probes), "{probes} probes");

    // Every referrer there: `1/1`, `2/2`, `-` for the unsigned; exit 0.
    let (table, rows) = check(&s, &t, &[]).await;
    table.assert_code(0);
    assert_eq!(
        signatures_cell(&table, RUNTIME[0]),
        "1/1",
        "{}",
        table.stdout
    );
    assert_eq!(
        signatures_cell(&table, RUNTIME[1]),
        "2/2",
        "{}",
        table.stdout
    );
    for repo in &RUNTIME[2..] {
        assert_eq!(signatures_cell(&table, repo), "-", "{}", table.stdout);
    }
    assert!(
        table.stdout.contains(
            "6 images: 6 current, 0 stale, 0 missing; \
             signatures: 2 complete, 0 missing, 4 none at source"
        ),
        "{}",
        table.stdout
    );
    let boot = &row(&rows, RUNTIME[0])["signatures"];
    assert_eq!(boot["state"], "complete", "{boot}");
    assert_eq!(boot["at_source"], 1);
    assert_eq!(boot["at_target"], 1);
    assert!(boot.get("missing").is_none(), "{boot}");
    assert_eq!(row(&rows, RUNTIME[1])["signatures"]["at_target"], 2);
    assert_eq!(row(&rows, RUNTIME[3])["signatures"]["state"], "none");
    assert_eq!(row(&rows, RUNTIME[3])["signatures"]["at_source"], 0);

    // New signatures at the source after the sync: the bootstrapper gets a
    // second, the lifecycler its first. The images are unchanged (current),
    // but the target lacks those: MISSING, and exit 1.
    let boot_sig2 = sign(&source, &images[0], SIG, 4).await;
    let lifecycler_sig = sign(&source, &images[2], SIG, 5).await;
    let (table, rows) = check(&s, &t, &[]).await;
    table.assert_code(1);
    assert_eq!(
        signatures_cell(&table, RUNTIME[0]),
        "1/2 MISSING",
        "{}",
        table.stdout
    );
    assert_eq!(
        signatures_cell(&table, RUNTIME[2]),
        "0/1 MISSING",
        "{}",
        table.stdout
    );
    assert!(line(&table, RUNTIME[2]).contains("current"));
    assert!(
        table.stdout.contains(
            "6 images: 6 current, 0 stale, 0 missing; \
             signatures: 1 complete, 2 missing, 3 none at source"
        ),
        "{}",
        table.stdout
    );
    for (image, sig, at_source, at_target) in [
        (RUNTIME[0], &boot_sig2, 2, 1),
        (RUNTIME[2], &lifecycler_sig, 1, 0),
    ] {
        let r = row(&rows, image);
        assert_eq!(r["standing"], "current");
        let got = &r["signatures"];
        assert_eq!(got["state"], "missing", "{got}");
        assert_eq!(got["at_source"], at_source, "{got}");
        assert_eq!(got["at_target"], at_target, "{got}");
        assert_eq!(got["missing"], serde_json::json!([sig.digest.to_string()]));
    }

    // The next sync brings them (sync compares an unchanged image's
    // referrers too) and check passes again.
    sync(&s, &t, &[]).await.assert_code(0);
    assert_eq!(
        listed(&target, RUNTIME[0], &images[0].manifest_digest).await,
        sorted(vec![boot_sig.digest.clone(), boot_sig2.digest.clone()])
    );
    let (table, _) = check(&s, &t, &[]).await;
    table.assert_code(0);
    assert_eq!(
        signatures_cell(&table, RUNTIME[0]),
        "2/2",
        "{}",
        table.stdout
    );
    assert_eq!(
        signatures_cell(&table, RUNTIME[2]),
        "1/1",
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("signatures: 3 complete, 0 missing, 3 none at source"),
        "{}",
        table.stdout
    );

    // Not counted with --no-referrers: the images alone decide (exit 0).
    let (table, rows) = check(&s, &t, &["--no-referrers"]).await;
    table.assert_code(0);
    assert!(
        table.stdout.contains(
            "6 images: 6 current, 0 stale, 0 missing; signatures not checked (--no-referrers)"
        ),
        "{}",
        table.stdout
    );
    assert_eq!(signatures_cell(&table, RUNTIME[0]), "-");
    assert!(rows
        .iter()
        .all(|r| r["signatures"]["state"] == "not_checked"));
}

#[tokio::test]
async fn no_referrers_copies_none_and_check_then_finds_the_signature_missing() {
    let (source, target, images) = source_and_target().await;
    let (s, t) = (source.host(), target.host());
    let sig = sign(&source, &images[0], SIG, 10).await;

    let before = source.access_log().len();
    let run = sync(&s, &t, &["--no-referrers"]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("mirroring 6 runtime images for eastus"),
        "{}",
        run.stderr
    );
    assert_eq!(listings(&source, before), (0, 0), "no listing asked for");
    assert!(listed(&target, RUNTIME[0], &images[0].manifest_digest)
        .await
        .is_empty());
    let absent = client(&t, None)
        .head_manifest(&repo(&t, RUNTIME[0]).digest(&sig.digest))
        .await
        .unwrap();
    assert!(absent.is_none(), "the signature was not copied");

    // The image is current, its signature is not at the target: exit 1.
    let (table, rows) = check(&s, &t, &[]).await;
    table.assert_code(1);
    assert_eq!(
        signatures_cell(&table, RUNTIME[0]),
        "0/1 MISSING",
        "{}",
        table.stdout
    );
    let boot = row(&rows, RUNTIME[0]);
    assert_eq!(boot["standing"], "current");
    assert_eq!(boot["signatures"]["state"], "missing");
    assert_eq!(
        boot["signatures"]["missing"],
        serde_json::json!([sig.digest.to_string()])
    );

    // A signed image the target lacks altogether: its signature is missing
    // too. One the source lacks: nothing to count.
    let mut spec = azureml_images("eastus", Scale::Fixture).remove(0);
    spec.repository = "cap/extra-capability/installed".into();
    let extra = fixtures::generate_all(&[spec]);
    fixtures::push(&client(&s, None), &s, &extra)
        .await
        .expect("push");
    let extra_sig = sign(&source, &extra[0], SIG, 11).await;
    let (table, rows) = check(
        &s,
        &t,
        &[
            "--extra",
            "cap/extra-capability/installed",
            "--extra",
            "cap/nowhere/installed",
        ],
    )
    .await;
    table.assert_code(1);
    let lacking = row(&rows, "cap/extra-capability/installed");
    assert_eq!(lacking["standing"], "missing");
    assert_eq!(lacking["signatures"]["state"], "missing");
    assert_eq!(
        lacking["signatures"]["missing"],
        serde_json::json!([extra_sig.digest.to_string()])
    );
    assert_eq!(
        signatures_cell(&table, "cap/extra-capability/installed"),
        "0/1 MISSING"
    );
    let nowhere = row(&rows, "cap/nowhere/installed");
    assert_eq!(nowhere["standing"], "not_at_source");
    assert_eq!(nowhere["signatures"]["state"], "not_checked");
    assert_eq!(signatures_cell(&table, "cap/nowhere/installed"), "-");
    assert!(
        table.stdout.contains(
            "8 images: 6 current, 0 stale, 1 missing, 1 not at source; \
             signatures: 0 complete, 2 missing, 5 none at source"
        ),
        "{}",
        table.stdout
    );
}
