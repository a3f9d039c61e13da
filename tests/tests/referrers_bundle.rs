//! Referrers across an air gap, end to end against the real registry (the
//! tag schema: distribution 2.8 has no referrers API): `mirror export
//! --referrers` keeps a signature, an SBOM and the SBOM's signature as
//! `index.json` entries without a name (peers still read the image),
//! `mirror verify` lists them under their image, `mirror import` restores
//! them by digest; a delta bundle counts their blobs like any others.

use std::io::Read;
use std::path::Path;

use mirror_tests::cli::{mirror, quiet, Run};
use mirror_tests::files::{listed_digests, tar_entries};
use mirror_tests::images::{client, image, push_image, push_listed_referrer, repo, tag_digest};
use mirror_tests::peers::{skopeo_raw, umoci_ls};
use mirror_tests::signed::{push_signed, referrers_at, sorted, Signed, SBOM, SIG};
use mirror_tests::Registry;
use registry_client::Digest;
use serde_json::Value;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

async fn export(args: &[&str]) -> Run {
    quiet("export", args).await
}

async fn import(bundle: &str, to: &str) -> Run {
    quiet("import", &[bundle, "--to", to]).await
}

async fn verify_json(bundle: &str) -> Value {
    let run = mirror(&["verify", "--output", "json", bundle], &[]).await;
    run.assert_code_of("verify --output json", 0);
    run.json()
}

/// The `index.json` of an archive.
fn archive_index(path: &Path) -> Value {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("index.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return serde_json::from_str(&text).unwrap();
        }
    }
    panic!("no index.json in {}", path.display())
}

/// The entries of an `index.json` without a name, by digest, sorted.
fn unnamed(index: &Value) -> Vec<Digest> {
    sorted(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["annotations"].get(REF_NAME).is_none())
            .map(|e| Digest::parse(e["digest"].as_str().unwrap()).unwrap())
            .collect(),
    )
}

/// The digests the report lists under its one image, sorted.
fn reported_referrers(report: &Value) -> Vec<Digest> {
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{report}");
    sorted(
        images[0]["referrers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Digest::parse(r["digest"].as_str().unwrap()).unwrap())
            .collect(),
    )
}

/// What `import` restored in `r`: the image at v1 and its referrers.
async fn assert_restored(dst: &Registry, name: &str, s: &Signed) {
    let c = client(&dst.host(), None);
    let r = repo(&dst.host(), name);
    assert_eq!(
        tag_digest(&dst.host(), name, "v1").await,
        Some(s.image.digest.clone()),
        "{name}:v1"
    );
    assert_eq!(
        referrers_at(&c, &r, &s.image.digest).await,
        sorted(vec![s.sig.digest.clone(), s.sbom.digest.clone()]),
        "{name}"
    );
    assert_eq!(
        referrers_at(&c, &r, &s.sbom.digest).await,
        vec![s.sbom_sig.digest.clone()],
        "{name}"
    );
    for m in s.referrers() {
        assert_eq!(
            skopeo_raw(&format!("docker://{}/{name}@{}", dst.host(), m.digest)),
            m.bytes.to_vec(),
            "{name}@{}",
            m.digest
        );
    }
}

#[tokio::test]
async fn export_referrers_into_an_archive_verify_lists_them_and_import_restores_them() {
    let src = Registry::start_open().await.unwrap();
    let (sc, sr) = (client(&src.host(), None), repo(&src.host(), "signed/app"));
    let s = push_signed(&sc, &sr, 800).await;
    let from = format!("{}/signed/app:v1", src.host());
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("signed.tar");
    let bundle_s = bundle.to_str().unwrap();

    let run = export(&["--referrers", &from, "--to", bundle_s, "--output", "json"]).await;
    run.assert_code_of("export --referrers", 0);
    assert_eq!(run.json()["images"][0]["referrers"], 3, "{}", run.stdout);
    // Each referrer is a manifest entry, named by no name in index.json.
    let entries = tar_entries(&bundle);
    for m in s.referrers() {
        assert!(
            entries.contains(&format!("blobs/sha256/{}", m.digest.hex())),
            "{entries:?}"
        );
    }
    let index = archive_index(&bundle);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4, "{index}");
    assert_eq!(
        unnamed(&index),
        sorted(s.referrers().map(|m| m.digest.clone()).to_vec())
    );
    let sig_entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["digest"] == s.sig.digest.to_string())
        .unwrap();
    assert_eq!(sig_entry["artifactType"], SIG, "{sig_entry}");
    assert_eq!(sig_entry["size"], s.sig.bytes.len());
    // A plain OCI reader still finds the image by its name.
    assert_eq!(
        skopeo_raw(&format!("oci-archive:{bundle_s}:signed/app:v1")),
        s.image.manifest.to_vec()
    );

    // verify lists the three under their image, checked like it.
    let run = mirror(&["verify", bundle_s], &[]).await;
    run.assert_code_of("verify", 0);
    let text = &run.stdout;
    for m in s.referrers() {
        assert!(text.contains(&m.digest.to_string()), "{text}");
    }
    assert!(
        text.contains(&format!("  referrer {SIG}  {}", s.sig.digest)),
        "{text}"
    );
    assert!(
        text.contains(&format!("  referrer {SBOM}  {}", s.sbom.digest)),
        "{text}"
    );
    assert!(
        text.contains(&format!("(of {})", s.sbom.digest)),
        "the SBOM's signature names its subject: {text}"
    );
    assert!(text.contains("(3 referrers)"), "{text}");
    let report = verify_json(bundle_s).await;
    assert_eq!(
        reported_referrers(&report),
        sorted(s.referrers().map(|m| m.digest.clone()).to_vec())
    );
    assert_eq!(report["referrers"], 3, "{report}");
    let of_sbom = report["images"][0]["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["digest"] == s.sbom_sig.digest.to_string())
        .unwrap()
        .clone();
    assert_eq!(of_sbom["subject"], s.sbom.digest.to_string());
    assert_eq!(of_sbom["artifact_type"], SIG);
    // The image's manifest, config and layer, and the three referrers'
    // manifests; their shared empty config and three payloads.
    assert_eq!(report["manifests"], 4, "{report}");
    assert_eq!(report["blobs"], 2 + 1 + 3, "{report}");

    // import restores them by digest (no flag: the bundle holds them).
    let dst = Registry::start_open().await.unwrap();
    import(bundle_s, &dst.host())
        .await
        .assert_code_of("import", 0);
    assert_restored(&dst, "signed/app", &s).await;

    // A corrupted referrer payload fails verify and its image's import.
    let payload = format!("payload {} of {SBOM}", 801);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(payload.len())
        .position(|w| w == payload.as_bytes())
        .expect("the SBOM's payload is in the bundle");
    bytes[at] ^= 0x20;
    let bad = tmp.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let run = mirror(&["verify", bad.to_str().unwrap()], &[]).await;
    run.assert_code(1);
    let payload_digest = Digest::sha256_of(payload.as_bytes()).to_string();
    assert!(run.stderr.contains(&payload_digest), "{}", run.stderr);
    let fresh = Registry::start_open().await.unwrap();
    let run = import(bad.to_str().unwrap(), &fresh.host()).await;
    run.assert_code(1);
    assert!(tag_digest(&fresh.host(), "signed/app", "v1")
        .await
        .is_none());
}

#[tokio::test]
async fn a_layout_bundle_keeps_referrers_peers_pass_over_and_without_the_flag_holds_none() {
    let src = Registry::start_open().await.unwrap();
    let (sc, sr) = (client(&src.host(), None), repo(&src.host(), "signed/app"));
    let s = push_signed(&sc, &sr, 810).await;
    let from = format!("{}/signed/app:v1", src.host());
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("bundle");
    let to = format!("oci:{}", layout.display());

    export(&["--referrers", &from, "--to", &to])
        .await
        .assert_code_of("export --referrers to a layout", 0);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        unnamed(&index),
        sorted(s.referrers().map(|m| m.digest.clone()).to_vec())
    );
    // umoci lists the one name; skopeo reads the image by it.
    assert_eq!(umoci_ls(&layout).trim(), "signed/app:v1");
    assert_eq!(
        skopeo_raw(&format!("oci:{}:signed/app:v1", layout.display())),
        s.image.manifest.to_vec()
    );
    // Exported again: the same entries, none twice.
    export(&["--referrers", &from, "--to", &to])
        .await
        .assert_code_of("export again", 0);
    let again: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(again["manifests"].as_array().unwrap().len(), 4, "{again}");

    let report = verify_json(layout.to_str().unwrap()).await;
    assert_eq!(
        reported_referrers(&report),
        sorted(s.referrers().map(|m| m.digest.clone()).to_vec())
    );
    let dst = Registry::start_open().await.unwrap();
    import(layout.to_str().unwrap(), &format!("{}/dmz", dst.host()))
        .await
        .assert_code_of("import the layout", 0);
    assert_restored(&dst, "dmz/signed/app", &s).await;

    // Only signatures: the image's, not the SBOM (nor so its signature).
    let sigs = tmp.path().join("sigs.tar");
    export(&[
        "--referrers",
        "--referrers-type",
        SIG,
        &from,
        "--to",
        sigs.to_str().unwrap(),
    ])
    .await
    .assert_code_of("export --referrers-type", 0);
    assert_eq!(unnamed(&archive_index(&sigs)), vec![s.sig.digest.clone()]);

    // Without --referrers the bundle holds none, and import brings none.
    let plain = tmp.path().join("plain.tar");
    let plain_s = plain.to_str().unwrap();
    export(&[&from, "--to", plain_s])
        .await
        .assert_code_of("export without --referrers", 0);
    let index = archive_index(&plain);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    for m in s.referrers() {
        assert!(!tar_entries(&plain).contains(&format!("blobs/sha256/{}", m.digest.hex())));
    }
    let report = verify_json(plain_s).await;
    assert!(reported_referrers(&report).is_empty(), "{report}");
    let run = mirror(&["verify", plain_s], &[]).await;
    assert!(!run.stdout.contains("referrer"), "{}", run.stdout);
    let fresh = Registry::start_open().await.unwrap();
    import(plain_s, &fresh.host())
        .await
        .assert_code_of("import a bundle without referrers", 0);
    let fc = client(&fresh.host(), None);
    let fr = repo(&fresh.host(), "signed/app");
    assert!(referrers_at(&fc, &fr, &s.image.digest).await.is_empty());
    assert_eq!(
        tag_digest(&fresh.host(), "signed/app", "v1").await,
        Some(s.image.digest.clone())
    );
}

#[tokio::test]
async fn a_config_entrys_referrers_are_exported() {
    let src = Registry::start_open().await.unwrap();
    let (sc, sr) = (client(&src.host(), None), repo(&src.host(), "signed/app"));
    let s = push_signed(&sc, &sr, 820).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sync.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  - source: {}/signed/app\n    target: unused.example/app\n    tags: [v1]\n    referrers: [{SBOM}]\n",
            src.host()
        ),
    )
    .unwrap();
    let bundle = tmp.path().join("from-config.tar");
    export(&[
        "--config",
        config.to_str().unwrap(),
        "--to",
        bundle.to_str().unwrap(),
    ])
    .await
    .assert_code_of("export --config", 0);
    // The entry asked for SBOMs: the SBOM, not the signatures.
    assert_eq!(
        unnamed(&archive_index(&bundle)),
        vec![s.sbom.digest.clone()]
    );
}

/// The digests a `.blobs` list names.

#[tokio::test]
async fn a_delta_bundle_carries_new_referrers_and_counts_their_blobs() {
    let src = Registry::start_open().await.unwrap();
    let (sc, sr) = (client(&src.host(), None), repo(&src.host(), "signed/app"));
    // Week 1: the image and its signature.
    let img = image(830, &[200_000], false);
    push_image(&sc, &sr, "v1", &img).await;
    let sig = push_listed_referrer(&sc, &sr, &img.descriptor(), SIG, 830).await;
    let from = format!("{}/signed/app:v1", src.host());
    let tmp = tempfile::tempdir().unwrap();
    let week1 = tmp.path().join("week1.tar");
    export(&["--referrers", &from, "--to", week1.to_str().unwrap()])
        .await
        .assert_code_of("week 1", 0);
    // Its list holds the referrer and what it names, as the image's blobs.
    let list1 = tmp.path().join("week1.tar.blobs");
    let held = listed_digests(&list1);
    let empty = Digest::sha256_of(b"{}").to_string();
    let sig_payload = Digest::sha256_of(format!("payload 830 of {SIG}").as_bytes()).to_string();
    for d in [&sig.digest.to_string(), &empty, &sig_payload] {
        assert!(held.contains(d), "{d} not in {held:?}");
    }

    // Week 2: an SBOM is added to the same image.
    let sbom = push_listed_referrer(&sc, &sr, &img.descriptor(), SBOM, 831).await;
    let week2 = tmp.path().join("week2.tar");
    let week2_s = week2.to_str().unwrap();
    export(&[
        "--referrers",
        &from,
        "--since",
        list1.to_str().unwrap(),
        "--to",
        week2_s,
    ])
    .await
    .assert_code_of("week 2 delta", 0);
    let entries = tar_entries(&week2);
    let entry = |d: &str| format!("blobs/sha256/{}", d.split_once(':').unwrap().1);
    // The layer and the referrers' shared empty config stay behind; the
    // SBOM's manifest and payload cross.
    let layer = Digest::sha256_of(&img.layers[0]).to_string();
    assert!(!entries.contains(&entry(&layer)), "{entries:?}");
    assert!(!entries.contains(&entry(&empty)), "{entries:?}");
    let sbom_payload = Digest::sha256_of(format!("payload 831 of {SBOM}").as_bytes()).to_string();
    assert!(entries.contains(&entry(&sbom_payload)), "{entries:?}");
    assert!(
        entries.contains(&entry(&sbom.digest.to_string())),
        "{entries:?}"
    );
    let report = verify_json(week2_s).await;
    assert_eq!(
        reported_referrers(&report),
        sorted(vec![sig.digest.clone(), sbom.digest.clone()])
    );
    let omitted: Vec<&str> = report["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["digest"].as_str().unwrap())
        .collect();
    assert!(omitted.contains(&empty.as_str()), "{report}");
    assert!(omitted.contains(&sig_payload.as_str()), "{report}");
    // Week 2's list is cumulative and holds the SBOM's blobs too.
    let held2 = listed_digests(&tmp.path().join("week2.tar.blobs"));
    for d in [&sbom.digest.to_string(), &sbom_payload, &empty, &layer] {
        assert!(held2.contains(d), "{d} not in {held2:?}");
    }

    // Into a registry that never saw week 1: refused, naming a referrer's
    // left-out blob as well as the image's.
    let fresh = Registry::start_open().await.unwrap();
    let run = import(week2_s, &fresh.host()).await;
    run.assert_code(1);
    assert!(run.stderr.contains(&sig_payload), "{}", run.stderr);
    fresh.assert_nothing_written();

    // After week 1, week 2 imports and the image has both referrers.
    import(week1.to_str().unwrap(), &fresh.host())
        .await
        .assert_code_of("week 1 import", 0);
    let fc = client(&fresh.host(), None);
    let fr = repo(&fresh.host(), "signed/app");
    assert_eq!(
        referrers_at(&fc, &fr, &img.digest).await,
        vec![sig.digest.clone()]
    );
    import(week2_s, &fresh.host())
        .await
        .assert_code_of("week 2 import", 0);
    assert_eq!(
        referrers_at(&fc, &fr, &img.digest).await,
        sorted(vec![sig.digest.clone(), sbom.digest.clone()])
    );
    assert_eq!(
        skopeo_raw(&format!(
            "docker://{}/signed/app@{}",
            fresh.host(),
            sbom.digest
        )),
        sbom.bytes.to_vec()
    );
}
