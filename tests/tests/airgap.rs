//! The air-gap workflow end to end against real registries: `mirror
//! export` (references, a sync config, the AzureML preset) → `mirror
//! verify` → `mirror import`, byte for byte; delta bundles; peers reading
//! what export writes and export/import reading what peers write.

use bytes::Bytes;
use mirror_tests::cli::{mirror, quiet, Run};
use mirror_tests::files::{listed_digests, listing, tar_entries};
use mirror_tests::fixtures::{AZUREML_REPOSITORIES, FIXTURE_REGION};
use mirror_tests::images::{
    blob, client, image_from_layers, push_image, push_index, push_to, repo,
};
use mirror_tests::peers::{
    skopeo_copy_from_registry, skopeo_copy_to_registry, skopeo_exists, skopeo_raw, umoci_ls,
};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::Registry;
use registry_client::Digest;

async fn export(args: &[&str]) -> Run {
    quiet("export", args).await
}

async fn import(bundle: &str, to: &str) -> Run {
    quiet("import", &[bundle, "--to", to]).await
}

fn blob_entry(data: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::sha256_of(data).hex())
}

/// Push the six AzureML fixture images into `registry` under `prefix`.
async fn push_azureml_fixture(registry: &Registry, prefix: &str) {
    let layout = mirror_tests::cli::workspace_root().join("fixtures/azureml");
    let mut args = Vec::new();
    for r in AZUREML_REPOSITORIES {
        let name = format!("{r}:{FIXTURE_REGION}-stable");
        args.push(format!("oci:{}:{name}", layout.display()));
        args.push(format!("{}/{prefix}/{name}", registry.host()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    quiet("copy", &args)
        .await
        .assert_code_of("pushing the fixture", 0);
}

#[tokio::test]
async fn azureml_preset_round_trip_restores_repositories_and_tags_byte_for_byte() {
    let src = Registry::start_open().await.unwrap();
    push_azureml_fixture(&src, "azureml/runtime").await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("runtime.tar");
    let bundle_s = bundle.to_str().unwrap();
    let source = format!("{}/azureml/runtime", src.host());
    let run = export(&[
        "--azureml-region",
        FIXTURE_REGION,
        "--source",
        &source,
        "--to",
        bundle_s,
    ])
    .await;
    run.assert_code_of("export", 0);
    assert!(run.stdout.contains("6 images: 6 done"), "{}", run.stdout);
    // The blob list for the next --since sits beside it.
    assert!(tmp.path().join("runtime.tar.blobs").is_file());

    // verify: every image, its original reference, all good.
    let run = mirror(&["verify", bundle_s], &[]).await;
    run.assert_code_of("verify", 0);
    for r in AZUREML_REPOSITORIES {
        assert!(
            run.stdout
                .contains(&format!("from {source}/{r}:{FIXTURE_REGION}-stable")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("every digest and size matches"),
        "{}",
        run.stdout
    );
    let json = mirror(&["verify", "--output", "json", bundle_s], &[]).await;
    json.assert_code_of("verify --output json", 0);
    let report = json.json();
    assert_eq!(report["images"].as_array().unwrap().len(), 6);
    assert!(report["problems"].as_array().unwrap().is_empty());

    // Without a prefix: the original repositories and tags.
    let dst = Registry::start_open().await.unwrap();
    import(bundle_s, &dst.host())
        .await
        .assert_code_of("import", 0);
    // Under a prefix.
    let run = import(
        &format!("oci-archive:{bundle_s}"),
        &format!("{}/dmz/", dst.host()),
    )
    .await;
    run.assert_code_of("import under a prefix", 0);
    assert!(run.stdout.contains("6 images: 6 done"), "{}", run.stdout);
    for r in AZUREML_REPOSITORIES {
        let path = format!("azureml/runtime/{r}:{FIXTURE_REGION}-stable");
        let original = skopeo_raw(&format!("docker://{}/{path}", src.host()));
        assert_eq!(
            original,
            skopeo_raw(&format!("docker://{}/{path}", dst.host())),
            "{path}"
        );
        assert_eq!(
            original,
            skopeo_raw(&format!("docker://{}/dmz/{path}", dst.host())),
            "{path} under the prefix"
        );
    }

    // Inside, the preset takes the imported images as its source: a copy
    // within one registry, so every blob is mounted and none moves; the
    // images land as `stable` and the job variables come out.
    let report = tmp.path().join("azureml-report.json");
    let run = mirror(
        &[
            "azureml",
            "sync",
            "--region",
            FIXTURE_REGION,
            "--source",
            &format!("{}/azureml/runtime", dst.host()),
            "--target",
            &dst.host(),
            "--pull-username",
            "puller",
            "--pull-password-env",
            "PULL_PW",
            "--format",
            "json",
            "--progress",
            "none",
            "--report",
            report.to_str().unwrap(),
        ],
        &[("PULL_PW", "pull-pw")],
    )
    .await;
    run.assert_code_of("azureml sync from the imported images", 0);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["copied"], 6, "{report:#}");
    assert_eq!(report["bytes_copied"], 0, "every blob mounted: {report:#}");
    let vars: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
        .as_str()
        .unwrap()
        .contains(&dst.host()));
    for r in AZUREML_REPOSITORIES {
        assert_eq!(
            skopeo_raw(&format!("docker://{}/{r}:stable", dst.host())),
            skopeo_raw(&format!(
                "docker://{}/azureml/runtime/{r}:{FIXTURE_REGION}-stable",
                src.host()
            )),
            "{r}"
        );
    }

    // skopeo copies an image out of what export wrote.
    let name = format!("{}:{FIXTURE_REGION}-stable", AZUREML_REPOSITORIES[2]);
    let peer_target = format!("docker://{}/peer/lifecycler:v1", dst.host());
    skopeo_copy_to_registry(
        &format!("oci-archive:{bundle_s}:azureml/runtime/{name}"),
        &peer_target,
    );
    assert_eq!(
        skopeo_raw(&peer_target),
        skopeo_raw(&format!("docker://{}/azureml/runtime/{name}", src.host()))
    );
}

#[tokio::test]
async fn export_from_a_config_and_references_into_a_layout_peers_read() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let a = image_from_layers(1, vec![blob(1, 20_000)], false);
    let b = image_from_layers(2, vec![blob(2, 30_000)], false);
    let old = image_from_layers(3, vec![blob(3, 10_000)], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &a).await;
    push_image(&c, &repo(&src.host(), "team/app"), "v2", &b).await;
    push_image(&c, &repo(&src.host(), "team/app"), "old", &old).await;
    // tools/cli:1.0 is a multi-platform index.
    let cli = repo(&src.host(), "tools/cli");
    let arm = image_from_layers(4, vec![blob(4, 8_000)], false);
    let (idx, _, _) = push_index(
        &c,
        &cli,
        "1.0",
        &[(&a, "linux/amd64"), (&arm, "linux/arm64")],
        false,
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sync.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  - source: {}/team/app\n    target: unused.example/app\n    include: ['^v']\n",
            src.host()
        ),
    )
    .unwrap();
    let layout = tmp.path().join("bundle");
    let to = format!("oci:{}", layout.display());
    let tools = format!("{}/tools/cli:1.0", src.host());
    let run = export(&["--config", config.to_str().unwrap(), &tools, "--to", &to]).await;
    run.assert_code_of("export", 0);
    // Run again into the same layout: every blob is there, verified when
    // it was written, so nothing is read again.
    let again = export(&[
        "--config",
        config.to_str().unwrap(),
        &tools,
        "--to",
        &to,
        "--output",
        "json",
    ])
    .await;
    again.assert_code_of("export again", 0);
    assert_eq!(again.json()["bytes_copied"], 0, "{}", again.stdout);
    // The config selected v1 and v2 (not `old`); the argument added tools/cli.
    let listed = umoci_ls(&layout);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["team/app:v1", "team/app:v2", "tools/cli:1.0"]);
    assert_eq!(
        skopeo_raw(&format!("oci:{}:team/app:v2", layout.display())),
        b.manifest
    );
    // A layout bundle verifies (platforms listed) and imports the same way.
    let run = mirror(
        &["verify", "--output", "json", layout.to_str().unwrap()],
        &[],
    )
    .await;
    run.assert_code_of("verify", 0);
    let report = run.json();
    let cli_image = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "tools/cli:1.0")
        .unwrap()
        .clone();
    assert_eq!(
        cli_image["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // v1, v2, the index and its arm64 child (its amd64 child is v1).
    assert_eq!(report["manifests"], 4, "{report}");
    let dst = Registry::start_open().await.unwrap();
    import(layout.to_str().unwrap(), &dst.host())
        .await
        .assert_code_of("import", 0);
    assert_eq!(
        skopeo_raw(&format!("docker://{}/team/app:v1", dst.host())),
        a.manifest
    );
    assert!(!skopeo_exists(&format!(
        "docker://{}/team/app:old",
        dst.host()
    )));
    assert_eq!(
        skopeo_raw(&format!("docker://{}/tools/cli:1.0", dst.host())),
        idx
    );

    // Entries keeping different platforms export in one run, each image
    // with its own entry's platforms.
    let mixed = tmp.path().join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "sync:\n  - source: {h}/team/app\n    target: unused.example/app\n    tags: [v1]\n  - source: {h}/tools/cli\n    target: unused.example/cli\n    tags: ['1.0']\n    platforms: [linux/arm64]\n",
            h = src.host()
        ),
    )
    .unwrap();
    let mixed_out = tmp.path().join("mixed.tar");
    let run = export(&[
        "--config",
        mixed.to_str().unwrap(),
        "--to",
        mixed_out.to_str().unwrap(),
    ])
    .await;
    run.assert_code(0);
    let run = mirror(
        &["verify", "--output", "json", mixed_out.to_str().unwrap()],
        &[],
    )
    .await;
    run.assert_code(0);
    let report = run.json();
    let platforms = |name: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))["platforms"]
            .clone()
    };
    assert_eq!(
        platforms("tools/cli:1.0"),
        serde_json::json!(["linux/arm64"])
    );
    assert_eq!(platforms("team/app:v1"), serde_json::json!([]));

    // Two sources one name in the bundle would overwrite each other.
    let other = Registry::start_open().await.unwrap();
    push_to(&other.host(), "tools/cli", "1.0", &b).await;
    let run = export(&[
        &tools,
        &format!("{}/tools/cli:1.0", other.host()),
        "--to",
        tmp.path().join("clash.tar").to_str().unwrap(),
    ])
    .await;
    run.assert_code(2);
    assert!(run.stderr.contains("tools/cli:1.0"), "{}", run.stderr);
    assert!(!tmp.path().join("clash.tar").exists());
}

#[tokio::test]
async fn verify_and_import_name_a_corrupted_blob_and_import_nothing() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let layer = blob(11, 50_000);
    let img = image_from_layers(11, vec![layer.clone()], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar");
    let bundle_s = bundle.to_str().unwrap();
    export(&[&format!("{}/team/app:v1", src.host()), "--to", bundle_s])
        .await
        .assert_code_of("export", 0);
    // One byte in the middle of the layer flipped on the way.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &layer[..64])
        .expect("the layer is in the bundle")
        + 25_000;
    bytes[at] ^= 0xff;
    std::fs::write(&bundle, &bytes).unwrap();

    let run = mirror(&["verify", bundle_s], &[]).await;
    run.assert_code(1);
    let digest = Digest::sha256_of(&layer).to_string();
    assert!(run.stderr.contains(&digest), "{}", run.stderr);
    assert!(run.stderr.contains(&blob_entry(&layer)), "{}", run.stderr);
    assert!(run.stderr.contains("team/app:v1"), "{}", run.stderr);
    let json = mirror(&["verify", "--output", "json", bundle_s], &[]).await;
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["problems"].as_array().unwrap().len(), 1);

    let dst = Registry::start_open().await.unwrap();
    let run = import(bundle_s, &dst.host()).await;
    run.assert_code(1);
    assert!(run.stdout.contains(&digest), "{}", run.stdout);
    assert!(!skopeo_exists(&format!(
        "docker://{}/team/app:v1",
        dst.host()
    )));
}

#[tokio::test]
async fn delta_bundles_leave_out_what_the_receiver_holds_and_import_checks_it_first() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let base = blob(21, 400_000);
    let week1 = image_from_layers(21, vec![base.clone(), blob(22, 20_000)], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &week1).await;
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("week1.tar");
    let app = format!("{}/team/app", src.host());
    export(&[&format!("{app}:v1"), "--to", full.to_str().unwrap()])
        .await
        .assert_code_of("week 1", 0);

    // Week 2: a new version on the same base, the old one again, and a new
    // repository on the same base (its import links the base from team/app).
    let new_layer = blob(23, 30_000);
    let week2 = image_from_layers(23, vec![base.clone(), new_layer.clone()], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v2", &week2).await;
    let other = image_from_layers(24, vec![base.clone(), blob(24, 10_000)], false);
    push_image(&c, &repo(&src.host(), "team/other"), "v1", &other).await;
    let other_ref = format!("{}/team/other:v1", src.host());
    let list = tmp.path().join("week1.tar.blobs");
    let delta = tmp.path().join("week2.tar");
    let delta_s = delta.to_str().unwrap();
    let run = export(&[
        &format!("{app}:v1"),
        &format!("{app}:v2"),
        &other_ref,
        "--since",
        list.to_str().unwrap(),
        "--to",
        delta_s,
    ])
    .await;
    run.assert_code_of("week 2 delta", 0);
    let listed = tar_entries(&delta);
    assert!(!listed.contains(&blob_entry(&base)), "{listed:?}");
    assert!(listed.contains(&blob_entry(&new_layer)), "{listed:?}");
    let delta_size = std::fs::metadata(&delta).unwrap().len();
    assert!(
        delta_size < std::fs::metadata(&full).unwrap().len() / 4,
        "{delta_size}"
    );
    // The old bundle itself works as --since too, and gives the same entries.
    let delta2 = tmp.path().join("week2-from-bundle.tar");
    export(&[
        &format!("{app}:v1"),
        &format!("{app}:v2"),
        &other_ref,
        "--since",
        full.to_str().unwrap(),
        "--to",
        delta2.to_str().unwrap(),
    ])
    .await
    .assert_code_of("delta from the old bundle", 0);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(tar_entries(&delta2)), sorted(listed.clone()));

    // verify lists the left-out blobs as such, not as errors.
    let run = mirror(&["verify", "--output", "json", delta_s], &[]).await;
    run.assert_code_of("verify the delta", 0);
    let report = run.json();
    let omitted: Vec<&str> = report["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["digest"].as_str().unwrap())
        .collect();
    assert!(omitted.contains(&Digest::sha256_of(&base).to_string().as_str()));

    // Into a registry that never saw week 1: refused before anything moves.
    let fresh = Registry::start_open().await.unwrap();
    let run = import(delta_s, &fresh.host()).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains(&Digest::sha256_of(&base).to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    fresh.assert_nothing_written();
    assert!(!skopeo_exists(&format!(
        "docker://{}/team/app:v1",
        fresh.host()
    )));

    // After week 1, the delta imports and both versions are whole.
    import(full.to_str().unwrap(), &fresh.host())
        .await
        .assert_code_of("week 1 import", 0);
    import(delta_s, &fresh.host())
        .await
        .assert_code_of("week 2 import", 0);
    for (name, img) in [
        ("team/app:v1", &week1),
        ("team/app:v2", &week2),
        ("team/other:v1", &other),
    ] {
        assert_eq!(
            skopeo_raw(&format!("docker://{}/{name}", fresh.host())),
            img.manifest
        );
    }
    // The base crossed once, in week 1; team/other got it by a mount.
    let base_pushes = fresh.count_requests("PUT", Digest::sha256_of(&base).hex());
    assert_eq!(base_pushes, 1);
    // Week 3's list covers what week 2 left out as well.
    let list2 = std::fs::read_to_string(tmp.path().join("week2.tar.blobs")).unwrap();
    assert!(
        list2.contains(&Digest::sha256_of(&base).to_string()),
        "{list2}"
    );
    assert!(list2.contains(&Digest::sha256_of(&new_layer).to_string()));
}

#[tokio::test]
async fn weekly_lists_are_cumulative_so_a_rollback_sends_nothing_again() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let app_repo = repo(&src.host(), "team/app");
    let app = format!("{}/team/app:stable", src.host());
    // Version A, then B (all new layers), then A again: a rollback.
    let a = image_from_layers(31, vec![blob(31, 300_000), blob(32, 20_000)], false);
    let b = image_from_layers(33, vec![blob(33, 300_000), blob(34, 20_000)], false);
    let blobs_of = |img: &mirror_tests::images::TestImage| {
        let mut v = vec![Digest::sha256_of(&img.config).to_string()];
        v.extend(img.layers.iter().map(|l| Digest::sha256_of(l).to_string()));
        v
    };
    let tmp = tempfile::tempdir().unwrap();
    let week = |n: u32| tmp.path().join(format!("week{n}.tar"));
    let list = |n: u32| tmp.path().join(format!("week{n}.tar.blobs"));

    push_image(&c, &app_repo, "stable", &a).await;
    export(&[&app, "--to", week(1).to_str().unwrap()])
        .await
        .assert_code_of("week 1", 0);
    push_image(&c, &app_repo, "stable", &b).await;
    export(&[
        &app,
        "--since",
        list(1).to_str().unwrap(),
        "--to",
        week(2).to_str().unwrap(),
    ])
    .await
    .assert_code_of("week 2", 0);
    push_image(&c, &app_repo, "stable", &a).await;
    export(&[
        &app,
        "--since",
        list(2).to_str().unwrap(),
        "--to",
        week(3).to_str().unwrap(),
    ])
    .await
    .assert_code_of("week 3", 0);

    // Week 2 carried B's layers; week 3 carries A's manifest and nothing
    // else: A's config and layers crossed in week 1.
    let week2 = tar_entries(&week(2));
    for l in &b.layers {
        assert!(week2.contains(&blob_entry(l)), "{week2:?}");
    }
    let week3 = tar_entries(&week(3));
    assert!(week3.contains(&blob_entry(&a.manifest)), "{week3:?}");
    assert!(!week3.contains(&blob_entry(&a.config)), "{week3:?}");
    for l in &a.layers {
        assert!(!week3.contains(&blob_entry(l)), "{week3:?}");
    }

    // Each list holds the one before it, sorted, each blob once; week 3's
    // names A's and B's blobs alike.
    let lists: Vec<Vec<String>> = (1..=3).map(|n| listed_digests(&list(n))).collect();
    for (n, l) in lists.iter().enumerate() {
        let mut sorted = l.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            &sorted,
            l,
            "week{}.tar.blobs is sorted, each blob once",
            n + 1
        );
    }
    for pair in lists.windows(2) {
        for d in &pair[0] {
            assert!(pair[1].contains(d), "{d} dropped from a later list");
        }
    }
    for d in blobs_of(&a).into_iter().chain(blobs_of(&b)) {
        assert!(lists[2].contains(&d), "week3.tar.blobs lacks {d}");
    }

    // Imported in order into a registry that saw nothing, the tag ends at
    // A, and A's layers crossed once (week 1).
    let fresh = Registry::start_open().await.unwrap();
    for n in 1..=3 {
        import(week(n).to_str().unwrap(), &fresh.host())
            .await
            .assert_code_of(&format!("week {n} import"), 0);
    }
    assert_eq!(
        skopeo_raw(&format!("docker://{}/team/app:stable", fresh.host())),
        a.manifest
    );
    for l in &a.layers {
        let pushes = fresh.count_requests("PUT", Digest::sha256_of(l).hex());
        assert_eq!(pushes, 1, "A's layer {}", Digest::sha256_of(l));
    }
}

#[tokio::test]
async fn layouts_and_archives_skopeo_writes_import_with_mirror() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image_from_layers(
        31,
        vec![Bytes::from(vec![7u8; 9000]), blob(32, 12_000)],
        false,
    );
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("skopeo-layout");
    let archive = tmp.path().join("skopeo.tar");
    for dest in [
        format!("oci:{}:team/app:v1", dir.display()),
        format!("oci-archive:{}:team/app:v1", archive.display()),
    ] {
        skopeo_copy_from_registry(&format!("docker://{}/team/app:v1", src.host()), &dest);
    }
    let dst = Registry::start_open().await.unwrap();
    // No recorded reference: the name in the bundle gives repository and tag.
    import(
        &format!("oci:{}", dir.display()),
        &format!("{}/from-layout", dst.host()),
    )
    .await
    .assert_code_of("import a skopeo layout", 0);
    mirror(&["verify", archive.to_str().unwrap()], &[])
        .await
        .assert_code_of("verify a skopeo archive", 0);
    import(
        archive.to_str().unwrap(),
        &format!("{}/from-archive", dst.host()),
    )
    .await
    .assert_code_of("import a skopeo archive", 0);
    let theirs = skopeo_raw(&format!("oci:{}:team/app:v1", dir.display()));
    for prefix in ["from-layout", "from-archive"] {
        assert_eq!(
            skopeo_raw(&format!("docker://{}/{prefix}/team/app:v1", dst.host())),
            theirs,
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn a_killed_tar_export_continues_from_its_last_whole_entry() {
    use mirror_tests::{Fault, Rule};
    let (src, proxy) = open_registry_behind_proxy().await;
    let c = client(&src.host(), None);
    let first = blob(41, 1_500_000);
    let second = blob(42, 16_000_000);
    let img = image_from_layers(41, vec![first.clone(), second.clone()], false);
    push_image(&c, &repo(&src.host(), "team/big"), "v1", &img).await;
    let stalled = Digest::sha256_of(&second);
    proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(12_000_000))
            .path_contains(&format!("/blobs/{stalled}")),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let bundle = out.join("b.tar");
    let state = tmp.path().join("state");
    let args = [
        "export",
        "--progress",
        "none",
        "-j",
        "1",
        "--state-dir",
        state.to_str().unwrap(),
        "--spool-threshold",
        "1M",
    ];
    let image_ref = format!("{}/team/big:v1", proxy.host());
    let mut all: Vec<&str> = args.to_vec();
    all.extend([image_ref.as_str(), "--to", bundle.to_str().unwrap()]);

    // Killed while the second layer stalls: only the temporary file is left.
    let mut child = mirror_tests::cli::command(&all, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = out.join("b.tar.partial");
    let started = std::time::Instant::now();
    loop {
        let sent: u64 = proxy
            .requests()
            .iter()
            .filter(|r| r.path.contains(&format!("/blobs/{stalled}")))
            .map(|r| r.response_body_bytes)
            .sum();
        let written = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if sent >= 12_000_000 && written > first.len() as u64 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the export never reached the second layer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Let the spool checkpoint what arrived.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(!bundle.exists());
    assert!(partial.exists());

    // The rerun continues: the first layer is not read again, the second
    // continues, and the bundle verifies.
    proxy.clear_rules();
    let run = mirror(&all, &[]).await;
    run.assert_code_of("the rerun", 0);
    assert_eq!(
        listing(&out),
        vec!["b.tar".to_string(), "b.tar.blobs".to_string()]
    );
    let first_gets = proxy
        .requests()
        .iter()
        .filter(|r| {
            r.path
                .contains(&format!("/blobs/{}", Digest::sha256_of(&first)))
        })
        .count();
    assert_eq!(first_gets, 1, "the first layer was read again");
    let read: u64 = proxy
        .requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .map(|r| r.response_body_bytes)
        .sum();
    // At most what the spool had not checkpointed yet is read twice: the
    // rerun continues the second layer instead of starting it over.
    let total = (first.len() + second.len() + img.config.len()) as u64;
    let checkpoint = mirror::state::spool::CHECKPOINT;
    assert!(
        read <= total + checkpoint,
        "read {read} source bytes across both runs for {total}"
    );
    mirror(&["verify", bundle.to_str().unwrap()], &[])
        .await
        .assert_code_of("verify", 0);
    assert_eq!(
        skopeo_raw(&format!("oci-archive:{}:team/big:v1", bundle.display())),
        img.manifest
    );
}

#[tokio::test]
async fn verify_and_import_refuse_a_hostile_bundle_naming_the_entry() {
    let src = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image_from_layers(51, vec![blob(51, 5000)], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tar");
    export(&[
        &format!("{}/team/app:v1", src.host()),
        "--to",
        good.to_str().unwrap(),
    ])
    .await
    .assert_code_of("export", 0);
    // The same bundle with an entry that climbs out put in front.
    let mut h = tar::Header::new_gnu();
    let name = b"../../etc/cron.d/evil";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(4);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(b"evil");
    bytes.resize(1024, 0);
    bytes.extend_from_slice(&std::fs::read(&good).unwrap());
    let hostile = tmp.path().join("hostile.tar");
    std::fs::write(&hostile, bytes).unwrap();

    let run = mirror(&["verify", hostile.to_str().unwrap()], &[]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("../../etc/cron.d/evil"),
        "{}",
        run.stderr
    );
    let dst = Registry::start_open().await.unwrap();
    let run = import(hostile.to_str().unwrap(), &dst.host()).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("../../etc/cron.d/evil"),
        "{}",
        run.stderr
    );
    dst.assert_nothing_written();
    assert!(!tmp.path().join("etc").exists());
}
