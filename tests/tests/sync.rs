//! `mirror sync` end to end: the binary against real registries, with a
//! config file, counting requests in the registries' access logs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mirror_tests::cli::{images_with_status, mirror, Run};
use mirror_tests::images::{client, image, push_image, push_index, repo, tag_digest, TestImage};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, Registry, Rule};
use registry_client::Digest;
use serde_json::Value;

/// A scratch directory with an empty docker config, so no credentials of
/// the machine's user take part.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `mirror sync ARGS… --report REPORT`, with extra environment.
    async fn sync_env(&self, args: &[&str], env: &[(&str, &str)]) -> (Run, Value) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let docker = self.path("docker");
        let mut all: Vec<&str> = vec!["sync", "--progress", "none"];
        all.extend(args);
        all.extend(["--report", report.to_str().unwrap()]);
        let mut envs = vec![("DOCKER_CONFIG", docker.to_str().unwrap())];
        envs.extend(env);
        let run = mirror(&all, &envs).await;
        let json = std::fs::read_to_string(&report)
            .ok()
            .map(|s| serde_json::from_str(&s).expect("the report is JSON"))
            .unwrap_or(Value::Null);
        (run, json)
    }

    async fn sync(&self, args: &[&str]) -> (Run, Value) {
        self.sync_env(args, &[]).await
    }
}

/// (source, target) of the report's images with this status.
fn with_status(report: &Value, status: &str) -> BTreeSet<(String, String)> {
    images_with_status(report, status)
        .into_iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_string(),
                i["target"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Push one small image per tag (distinct digests); returns them.
async fn push_tags(reg: &Registry, name: &str, tags: &[&str], seed: u64) -> Vec<TestImage> {
    let c = client(&reg.host(), None);
    let r = repo(&reg.host(), name);
    let mut out = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let img = image(seed + i as u64, &[1500], false);
        push_image(&c, &r, t, &img).await;
        out.push(img);
    }
    out
}

fn pairs(list: &[(String, String)]) -> BTreeSet<(String, String)> {
    list.iter().cloned().collect()
}

#[tokio::test]
async fn regex_semver_and_latest_pick_exact_tags_then_reruns_are_cheap_and_incremental() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let (s, d) = (src.host(), dst.host());
    push_tags(
        &src,
        "apps/web",
        &["1.0.0", "1.1.0", "1.2.0", "2.0.0", "latest"],
        100,
    )
    .await;
    push_tags(
        &src,
        "apps/api",
        &["0.9.0", "1.0.0", "1.1.0", "2.0.0", "nightly"],
        200,
    )
    .await;
    push_tags(&src, "apps/db", &["1.0.0", "1.5.0", "1.9.1", "2.1.0"], 300).await;
    let boot = push_tags(&src, "boot/linux", &["eastus-stable", "westus-stable"], 400).await;

    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            r#"# three selections and a regional tag renamed
defaults:
  target: "{d}/mirror/{{repo}}"
sync:
  - source: {s}/apps/web
    include: ['^1\.']
    exclude: ['^1\.0\.']
  - source: {s}/apps/api
    latest: 2
  - source: {s}/apps/db
    semver: ">=1.5, <2"
  - source: {s}/boot/linux
    vars: {{region: eastus}}
    tags: ["{{region}}-stable"]
    target_tag: stable
  # without a value, {{region}} is a pattern capturing every region
  - source: {s}/boot/linux
    target: "{d}/regional/{{repo}}"
    tags: ["{{region}}-stable"]
    target_tag: "stable-{{region}}"
"#
        ),
    );
    let cfg = config.to_str().unwrap();
    let expected: Vec<(String, String)> = [
        ("apps/web", "1.1.0", "1.1.0"),
        ("apps/web", "1.2.0", "1.2.0"),
        ("apps/api", "1.1.0", "1.1.0"),
        ("apps/api", "2.0.0", "2.0.0"),
        ("apps/db", "1.5.0", "1.5.0"),
        ("apps/db", "1.9.1", "1.9.1"),
        ("boot/linux", "eastus-stable", "stable"),
    ]
    .iter()
    .map(|(r, t, tt)| (format!("{s}/{r}:{t}"), format!("{d}/mirror/{r}:{tt}")))
    .chain(["eastus", "westus"].map(|region| {
        (
            format!("{s}/boot/linux:{region}-stable"),
            format!("{d}/regional/boot/linux:stable-{region}"),
        )
    }))
    .collect();

    // First run: exactly the selected tags land; exit code "changes made".
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(with_status(&report, "copied"), pairs(&expected));
    assert_eq!(report["failed"], 0);
    let dc = client(&d, None);
    let mut web = dc
        .list_tags(&repo(&d, "mirror/apps/web"), None)
        .await
        .unwrap();
    web.sort();
    assert_eq!(web, vec!["1.1.0", "1.2.0"]);
    assert_eq!(
        tag_digest(&dst.host(), "mirror/boot/linux", "stable").await,
        Some(boot[0].digest.clone())
    );

    // Second run: nothing copied, about two requests per tag.
    let (src_before, dst_before) = (src.access_log().len(), dst.access_log().len());
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(with_status(&report, "current"), pairs(&expected));
    assert_eq!(report["bytes_copied"], 0);
    let src_log: Vec<_> = src.access_log().into_iter().skip(src_before).collect();
    let dst_log: Vec<_> = dst.access_log().into_iter().skip(dst_before).collect();
    let tags = expected.len();
    let heads = |log: &[mirror_tests::AccessLogEntry]| {
        log.iter()
            .filter(|e| e.method == "HEAD" && e.uri.contains("/manifests/"))
            .count()
    };
    assert_eq!(heads(&src_log), tags, "{src_log:#?}");
    assert_eq!(heads(&dst_log), tags, "{dst_log:#?}");
    let lists = src_log
        .iter()
        .filter(|e| e.uri.contains("/tags/list"))
        .count();
    assert_eq!(lists, 4, "one tag listing per filtered entry");
    assert!(
        src_log
            .iter()
            .chain(&dst_log)
            .all(|e| !e.uri.contains("/blobs/")),
        "no blob requests: {src_log:#?} {dst_log:#?}"
    );
    let total = src_log.len() + dst_log.len();
    assert!(
        total <= 2 * tags + lists + 2,
        "{total} requests for {tags} tags: {src_log:#?} {dst_log:#?}"
    );

    // Third run: an updated source tag is the only thing copied.
    let newer = push_tags(&src, "apps/db", &["1.9.1"], 900).await;
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    let changed = (
        format!("{s}/apps/db:1.9.1"),
        format!("{d}/mirror/apps/db:1.9.1"),
    );
    assert_eq!(with_status(&report, "copied"), BTreeSet::from([changed]));
    assert_eq!(with_status(&report, "current").len(), tags - 1);
    let img = images_with_status(&report, "copied")[0];
    assert_eq!(img["target_digest"], newer[0].digest.to_string());
    assert_ne!(img["previous_target_digest"], img["target_digest"]);
    assert_eq!(
        tag_digest(&dst.host(), "mirror/apps/db", "1.9.1").await,
        Some(newer[0].digest.clone())
    );
    assert!(run.stdout.contains("1 copied"), "{}", run.stdout);
}

#[tokio::test]
async fn a_corrupted_source_image_fails_alone_and_the_report_names_it() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    push_tags(&src, "good/img", &["v1", "v2"], 10).await;
    let bad = push_tags(&src, "bad/img", &["v1"], 20).await;
    let layer = Digest::sha256_of(&bad[0].layers[0]);
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(100)).path_contains(&format!("/blobs/{layer}")),
    );

    let scratch = Scratch::new();
    let (p, d) = (proxy.host(), dst.host());
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - {{source: {p}/good/img, target: {d}/good/img, tags: [v1, v2]}}\n  - {{source: {p}/bad/img, target: {d}/bad/img, tags: [v1]}}\n  - {{source: {p}/missing/img, target: {d}/missing/img, tags: [v1]}}\n"
        ),
    );
    let (run, report) = scratch.sync(&[config.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "some failed: {}{}", run.stdout, run.stderr);
    assert_eq!(report["copied"], 2);
    assert_eq!(report["failed"], 2);
    let failed = images_with_status(&report, "failed");
    assert_eq!(failed[0]["source"], format!("{p}/bad/img:v1"));
    let err = failed[0]["error"].as_str().unwrap();
    assert!(err.contains(&layer.to_string()), "{err}");
    assert!(failed[1]["error"].as_str().unwrap().contains("not found"));
    assert!(run.stdout.contains("FAILED") && run.stdout.contains("bad/img"));
    assert_eq!(tag_digest(&dst.host(), "bad/img", "v1").await, None);
    assert!(tag_digest(&dst.host(), "good/img", "v2").await.is_some());
}

#[tokio::test]
async fn overlapping_runs_of_one_config_are_refused() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        "sync:\n  - {source: 127.0.0.1:1/a, target: 127.0.0.1:1/b, tags: [v1]}\n",
    );
    // Another run holds the config's default lock.
    let held = mirror::sync::lock::RunLock::acquire(&mirror::sync::lock::default_lock_path(
        &config, None, None,
    ))
    .unwrap();
    let (run, _) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(4);
    assert!(
        run.stderr.contains("another mirror sync run")
            && run.stderr.contains(&held.path.display().to_string()),
        "{}",
        run.stderr
    );
    // An explicit lock file works the same way.
    let lock = scratch.path("explicit.lock");
    let _held2 = mirror::sync::lock::RunLock::acquire(&lock).unwrap();
    let (run, _) = scratch
        .sync(&[
            config.to_str().unwrap(),
            "--lock-file",
            lock.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    drop(held);
    // Free again: this run starts (and fails to reach the registry instead).
    let (run, _) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(1);
}

#[tokio::test]
async fn shard_workers_together_cover_every_image_exactly_once() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let tags = ["t1", "t2", "t3", "t4", "t5", "t6", "t7"];
    push_tags(&src, "one", &tags, 50).await;
    push_tags(&src, "two", &tags[..5], 60).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "defaults:\n  target: '{}/{{repo}}'\nsync:\n  - source: {}/one\n  - source: {}/two\n",
            dst.host(),
            src.host(),
            src.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let mut seen: Vec<String> = Vec::new();
    let workers = (0..3).map(|i| {
        let report = scratch.path(&format!("shard-{i}.json"));
        let shard = format!("{i}/3");
        let docker = scratch.path("docker");
        async move {
            let run = mirror(
                &[
                    "sync",
                    cfg,
                    "--shard",
                    &shard,
                    "--progress",
                    "none",
                    "--report",
                    report.to_str().unwrap(),
                ],
                &[("DOCKER_CONFIG", docker.to_str().unwrap())],
            )
            .await;
            (run, report)
        }
    });
    for (run, report) in futures::future::join_all(workers).await {
        assert!(matches!(run.code, 0 | 5), "{}{}", run.stdout, run.stderr);
        let report: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
        for i in report["images"].as_array().unwrap() {
            assert_eq!(i["status"], "copied");
            seen.push(i["source"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    let mut all: Vec<String> = tags
        .iter()
        .map(|t| format!("{}/one:{t}", src.host()))
        .chain(tags[..5].iter().map(|t| format!("{}/two:{t}", src.host())))
        .collect();
    all.sort();
    assert_eq!(seen, all, "every image once, by one shard");
    // Together they did the whole job.
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 12);
}

#[tokio::test]
async fn a_skopeo_sync_file_gives_the_same_result_as_the_native_config() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let (s, d) = (src.host(), dst.host());
    push_tags(&src, "library/busybox", &["1.36", "latest"], 1).await;
    push_tags(&src, "team/redis", &["1.0", "2.0", "3.0"], 10).await;
    push_tags(
        &src,
        "nginx",
        &[
            "1.13.1-alpine-perl",
            "1.13.2-alpine-perl",
            "1.13.3-alpine-perl",
            "1.14.0",
        ],
        20,
    )
    .await;
    push_tags(&src, "alpine", &["3.11.0", "3.12.0", "3.13.1", "edge"], 30).await;

    let scratch = Scratch::new();
    let skopeo = scratch.write(
        "skopeo.yaml",
        &format!(
            r#"{s}:
  images:
    library/busybox: []
    team/redis:
      - "1.0"
      - "2.0"
  images-by-tag-regex:
    nginx: ^1\.13\.[12]-alpine-perl$
  images-by-semver:
    alpine: ">= 3.12.0"
  tls-verify: false
"#
        ),
    );
    let native = scratch.write(
        "native.yaml",
        &format!(
            r#"registries:
  - host: {s}
    tls: {{insecure: true}}
defaults:
  target: "{d}/native/{{name}}"
sync:
  - source: {s}/library/busybox
  - source: {s}/team/redis
    tags: ["1.0", "2.0"]
  - source: {s}/nginx
    include: ['^1\.13\.[12]-alpine-perl$']
  - source: {s}/alpine
    semver: ">= 3.12.0"
"#
        ),
    );
    let (run, from_skopeo) = scratch
        .sync(&[
            "--from-skopeo",
            skopeo.to_str().unwrap(),
            "--target",
            &format!("{d}/skopeo"),
        ])
        .await;
    run.assert_code(0);
    let (run, from_native) = scratch.sync(&[native.to_str().unwrap()]).await;
    run.assert_code(0);

    // (target without its prefix, digest) for each image.
    let landed = |report: &Value, prefix: &str| -> BTreeSet<(String, String)> {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                assert_eq!(i["status"], "copied", "{i}");
                (
                    i["target"]
                        .as_str()
                        .unwrap()
                        .strip_prefix(&format!("{d}/{prefix}/"))
                        .unwrap()
                        .to_string(),
                    i["target_digest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let a = landed(&from_skopeo, "skopeo");
    assert_eq!(a, landed(&from_native, "native"));
    let names: BTreeSet<&str> = a.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "busybox:1.36",
            "busybox:latest",
            "redis:1.0",
            "redis:2.0",
            "nginx:1.13.1-alpine-perl",
            "nginx:1.13.2-alpine-perl",
            "alpine:3.12.0",
            "alpine:3.13.1",
        ])
    );
}

#[tokio::test]
async fn config_errors_name_their_line_and_exit_with_the_usage_code() {
    let scratch = Scratch::new();
    for (text, line) in [
        ("sync:\n  - source: a.io/x\n    target: b.io/x\n    tagz: [v1]\n", 4),
        ("sync:\n  - source: a.io/x\n    target: b.io/x\n    include: ['(']\n", 4),
        ("sync:\n  - source: a.io/x\n    target: 'b.io/{oops'\n", 3),
        ("registries:\n  - host: b.io\n    credentials:\n      username: u\n      password: ${MIRROR_SYNC_TEST_UNSET_VAR}\nsync:\n  - {source: a.io/x, target: b.io/x}\n", 5),
    ] {
        let config = scratch.write("bad.yaml", text);
        let (run, report) = scratch.sync(&[config.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{text}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!("bad.yaml:{line}: ")),
            "{text}: {}",
            run.stderr
        );
        assert!(report.is_null(), "no report for a config error");
    }
    let (run, _) = scratch
        .sync(&[scratch.path("absent.yaml").to_str().unwrap()])
        .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("absent.yaml"), "{}", run.stderr);
}

#[tokio::test]
async fn secrets_from_the_environment_never_appear_even_when_refused() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_htpasswd(&[("alice", "right-pw")])
        .await
        .unwrap();
    push_tags(&src, "app", &["v1"], 7).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - host: {}\n    credentials:\n      username: alice\n      password: ${{MIRROR_SYNC_TEST_PW}}\nsync:\n  - {{source: {}/app, target: {}/app, tags: [v1]}}\n",
            dst.host(),
            src.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let secret = "wrong-SECRET-pw";
    for args in [
        vec![cfg],
        vec![cfg, "--dry-run"],
        vec![cfg, "--output", "json"],
    ] {
        let (run, report) = scratch
            .sync_env(
                &args,
                &[("MIRROR_SYNC_TEST_PW", secret), ("MIRROR_LOG", "trace")],
            )
            .await;
        assert_eq!(run.code, 3, "auth failure: {}{}", run.stdout, run.stderr);
        let report = report.to_string();
        for shown in [&run.stdout, &run.stderr, &report] {
            assert!(!shown.contains("SECRET"), "the secret leaked: {shown}");
        }
        assert!(
            report.contains("alice"),
            "the error names the user: {report}"
        );
    }
    // The right password, from a file, works.
    scratch.write("pw", "right-pw\n");
    let config = scratch.write(
        "sync.yaml",
        &std::fs::read_to_string(&config)
            .unwrap()
            .replace("password: ${MIRROR_SYNC_TEST_PW}", "password_file: pw"),
    );
    let (run, _) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(0);
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_and_the_missing_bytes_and_copies_nothing() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let imgs = push_tags(&src, "app", &["v1", "v2"], 70).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - {{host: '{d}', chunk_threshold: 1K, chunk_size: 1K}}\nsync:\n  - {{source: {}/app, target: {d}/app}}\n",
            src.host(),
            d = dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let (run, report) = scratch.sync(&[cfg, "--dry-run"]).await;
    assert_eq!(
        run.code, 0,
        "a plan made is a success: {}{}",
        run.stdout, run.stderr
    );
    assert_eq!(report["would_copy"], 2);
    let bytes: u64 = imgs
        .iter()
        .map(|i| (i.config.len() + i.layers[0].len()) as u64)
        .sum();
    assert_eq!(report["bytes_missing"], bytes);
    assert!(run.stdout.contains("would copy"), "{}", run.stdout);
    assert!(
        dst.access_log()
            .iter()
            .all(|e| e.method == "HEAD" || e.method == "GET" && e.uri == "/v2/"),
        "a dry run only looks: {:#?}",
        dst.access_log()
    );
    assert_eq!(tag_digest(&dst.host(), "app", "v1").await, None);
    // After a real run (in chunks, as the registry's settings say) the
    // plan is empty.
    let (run, _) = scratch.sync(&[cfg]).await;
    assert_eq!(run.code, 0);
    assert!(dst.count_requests("PATCH", "/blobs/uploads/") >= 4);
    let (run, report) = scratch.sync(&[cfg, "--dry-run"]).await;
    run.assert_code(0);
    assert_eq!(report["bytes_missing"], 0);
}

#[tokio::test]
async fn a_registry_prefix_syncs_into_a_layout_and_a_layout_back_into_a_registry() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    push_tags(&src, "team/a", &["v1", "v2"], 80).await;
    push_tags(&src, "team/sub/b", &["v1"], 90).await;
    push_tags(&src, "other/c", &["v1"], 95).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - {{source: '{}/team/*', target: 'oci:layout'}}\n  - {{source: 'oci:layout', target: '{}/copy'}}\n",
            src.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    // Entries are planned in order, before anything is copied: on the first
    // run the layout the first entry creates is still empty for the second.
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    let layout = scratch.path("layout");
    let l = layout.display();
    assert_eq!(
        with_status(&report, "copied"),
        BTreeSet::from([
            (
                format!("{}/team/a:v1", src.host()),
                format!("oci:{l}:team/a:v1")
            ),
            (
                format!("{}/team/a:v2", src.host()),
                format!("oci:{l}:team/a:v2")
            ),
            (
                format!("{}/team/sub/b:v1", src.host()),
                format!("oci:{l}:team/sub/b:v1")
            ),
        ])
    );
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 3);
    assert_eq!(report["copied"], 3);
    assert!(tag_digest(&dst.host(), "copy/team/sub/b", "v1")
        .await
        .is_some());
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 6);
}

#[tokio::test]
async fn the_demo_config_keeps_the_fixture_images_current_in_a_layout() {
    let scratch = Scratch::new();
    let root = mirror_tests::cli::workspace_root();
    let out = scratch.path("demo");
    let text = std::fs::read_to_string(root.join("examples/sync-demo.yaml"))
        .unwrap()
        .replace(
            "oci:../fixtures/azureml",
            &format!("oci:{}", root.join("fixtures/azureml").display()),
        )
        .replace("oci:../mirror-demo-sync", &format!("oci:{}", out.display()));
    let config = scratch.write("demo.yaml", &text);
    let cfg = config.to_str().unwrap();
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["copied"], 6);
    let o = out.display();
    assert!(
        with_status(&report, "copied").contains(&(
            format!(
                "oci:{}:cap/lifecycler/installed:eastus-stable",
                root.join("fixtures/azureml").display()
            ),
            format!("oci:{o}:cap/lifecycler/installed:stable"),
        )),
        "{report}"
    );
    // Nothing changed: 0 too; a scheduler that wants to tell a run that
    // changed something apart asks for its own code.
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 6);
    let (run, _) = scratch
        .sync(&[cfg, "--changes-exit-code", "5", "--dry-run"])
        .await;
    assert_eq!(run.code, 0, "a dry run with nothing to copy is 0");
    std::fs::remove_dir_all(&out).unwrap();
    let (run, _) = scratch
        .sync(&[cfg, "--changes-exit-code", "5", "--dry-run"])
        .await;
    assert_eq!(run.code, 5, "would copy, reported as 5 when asked");
    let (run, _) = scratch.sync(&[cfg, "--dry-run"]).await;
    assert_eq!(run.code, 0, "a dry run that would copy is a success");
    let (run, _) = scratch.sync(&[cfg, "--changes-exit-code", "5"]).await;
    assert_eq!(run.code, 5, "changes made, reported as 5 when asked");
}

#[tokio::test]
async fn a_platform_filtered_index_is_current_on_the_next_run() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "multi");
    let (amd, arm) = (image(501, &[900], false), image(502, &[800], false));
    let (_, idx_digest, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&amd, "linux/amd64"), (&arm, "linux/arm64")],
        false,
    )
    .await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - source: {}/multi\n    target: {}/multi\n    tags: [v1]\n    platforms: [linux/amd64]\n",
            src.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    let img = &report["images"][0];
    assert_eq!(img["source_digest"], idx_digest.to_string());
    assert_ne!(img["target_digest"], idx_digest.to_string());
    assert!(img["digest_changed"]
        .as_str()
        .unwrap()
        .contains("linux/amd64"));
    // The new index is what the target should hold: nothing to do now.
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 1);
}

#[tokio::test]
async fn an_unchanged_run_against_a_token_registry_asks_a_token_per_repository_not_per_tag() {
    let src = Registry::start_open().await.unwrap();
    let (dst, tokens) = mirror_tests::Registry::start_with_token_auth(
        Default::default(),
        mirror_tests::TokenServerOptions::default().with_user("syncer", "token-pw"),
    )
    .await
    .unwrap();
    let tags = ["a", "b", "c", "d"];
    for name in ["one", "two", "three"] {
        push_tags(&src, name, &tags, 600).await;
    }
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - host: {d}\n    credentials: {{username: syncer, password: '${{MIRROR_SYNC_TOKEN_PW}}'}}\ndefaults:\n  target: '{d}/{{repo}}'\n  tags: [a, b, c, d]\nsync:\n  - source: {s}/one\n  - source: {s}/two\n  - source: {s}/three\n",
            d = dst.host(),
            s = src.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let env = [("MIRROR_SYNC_TOKEN_PW", "token-pw")];
    let (run, _) = scratch.sync_env(&[cfg], &env).await;
    run.assert_code(0);

    tokens.clear_requests();
    let before = dst.access_log().len();
    let (run, report) = scratch.sync_env(&[cfg], &env).await;
    run.assert_code(0);
    assert_eq!(report["current"], 12);
    let log: Vec<_> = dst.access_log().into_iter().skip(before).collect();
    let answered = log.iter().filter(|e| e.status == 200).count();
    assert_eq!(answered, 12, "one HEAD per tag: {log:#?}");
    assert!(
        tokens.requests().len() <= 3,
        "a token per repository at most: {:?}",
        tokens.requests()
    );
    assert!(
        log.len() <= 12 + 3,
        "a 401 challenge once per repository at most: {log:#?}"
    );
}

#[tokio::test]
async fn a_state_directory_is_used_when_given_and_shared_with_another_run() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    push_tags(&src, "app", &["v1"], 33).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - {{source: {}/app, target: {}/app, tags: [v1]}}\n",
            src.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let state = scratch.path("state");
    let state_arg = state.to_str().unwrap();
    // Another run (a `mirror copy`, say) uses the state directory: the
    // runs share it (each blob's spool is locked on its own).
    let other_run = mirror::state::StateDir::open(&state, 1024).unwrap();
    let (run, report) = scratch
        .sync(&[cfg, "--state-dir", state_arg, "--spool-threshold", "1K"])
        .await;
    run.assert_code(0);
    assert_eq!(report["copied"], 1);
    assert!(
        state.join("downloads").is_dir(),
        "the state directory given"
    );
    drop(other_run);
}

#[tokio::test]
async fn a_tls_registry_is_reached_with_the_ca_file_of_the_config() {
    let src = Registry::start_open().await.unwrap();
    let ca = mirror_tests::TestCa::new().unwrap();
    let dst = Registry::start(mirror_tests::RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    push_tags(&src, "app", &["v1"], 44).await;
    let scratch = Scratch::new();
    std::fs::copy(ca.ca_pem_path(), scratch.path("ca.pem")).unwrap();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - host: '{d}'\n    tls: {{ca_file: ca.pem}}\nsync:\n  - {{source: {}/app, target: {d}/app, tags: [v1]}}\n",
            src.host(),
            d = dst.host()
        ),
    );
    let (run, report) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(0);
    assert_eq!(report["copied"], 1);
    // Without the CA the registry's certificate is refused.
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - host: '{d}'\n    tls: {{}}\nsync:\n  - {{source: {}/app, target: {d}/app, tags: [v1]}}\n",
            src.host(),
            d = dst.host()
        ),
    );
    let (run, report) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(1);
    assert_eq!(report["failed"], 1);
}

#[tokio::test]
async fn an_entra_token_from_a_file_is_exchanged_like_acr_wants() {
    let src = Registry::start_open().await.unwrap();
    let (dst, tokens) = mirror_tests::Registry::start_with_token_auth(
        Default::default(),
        mirror_tests::TokenServerOptions::default().with_aad_token("aad-token-SECRET"),
    )
    .await
    .unwrap();
    push_tags(&src, "cap/lifecycler/installed", &["eastus-stable"], 77).await;
    let scratch = Scratch::new();
    scratch.write("aad-token", "aad-token-SECRET\n");
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "registries:\n  - host: {d}\n    credentials: {{acr_token_file: aad-token, tenant: t-1}}\nsync:\n  - source: {s}/cap/lifecycler/installed\n    target: {d}/cap/lifecycler/installed\n    tags: ['{{region}}-stable']\n    vars: {{region: eastus}}\n    target_tag: stable\n",
            d = dst.host(),
            s = src.host()
        ),
    );
    let (run, report) = scratch
        .sync_env(&[config.to_str().unwrap()], &[("MIRROR_LOG", "trace")])
        .await;
    run.assert_code(0);
    assert_eq!(report["copied"], 1);
    let exchanges = tokens
        .requests()
        .iter()
        .filter(|q| q.path == "/oauth2/exchange")
        .count();
    assert_eq!(exchanges, 1, "{:?}", tokens.requests());
    for shown in [&run.stdout, &run.stderr, &report.to_string()] {
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

#[tokio::test]
async fn the_configs_request_limit_caps_requests_in_flight_to_a_registry() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let tags = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    push_tags(&src, "app", &tags, 120).await;
    // Every source HEAD takes a while, so concurrent ones overlap.
    proxy.add_rule(
        Rule::new(Fault::Delay(std::time::Duration::from_millis(150))).method(http::Method::HEAD),
    );
    let scratch = Scratch::new();
    let config_with = |limit: &str| {
        format!(
            "{limit}jobs: 8\nsync:\n  - {{source: {}/app, target: {}/app, tags: [{}]}}\n",
            proxy.host(),
            dst.host(),
            tags.join(", ")
        )
    };
    let config = scratch.write("limited.yaml", &config_with("max_requests_per_host: 2\n"));
    let (run, _) = scratch.sync(&[config.to_str().unwrap(), "--dry-run"]).await;
    run.assert_code(0);
    assert!(proxy.max_in_flight() <= 2, "{}", proxy.max_in_flight());
    // Without the limit the same plan overlaps more: the cap did it.
    proxy.reset_max_in_flight();
    let config = scratch.write("free.yaml", &config_with(""));
    let (run, _) = scratch.sync(&[config.to_str().unwrap(), "--dry-run"]).await;
    run.assert_code(0);
    assert!(proxy.max_in_flight() > 2, "{}", proxy.max_in_flight());
    // A registry's own limit replaces the top-level one for that host.
    proxy.reset_max_in_flight();
    let own = format!(
        "max_requests_per_host: 8
registries:
  - host: {}
    max_requests_per_host: 1
",
        proxy.host()
    );
    let config = scratch.write("own.yaml", &config_with(&own));
    let (run, _) = scratch.sync(&[config.to_str().unwrap(), "--dry-run"]).await;
    run.assert_code(0);
    assert_eq!(proxy.max_in_flight(), 1);
}

#[tokio::test]
async fn a_filter_that_matches_no_tag_warns_naming_its_entry_and_can_be_an_error() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    push_tags(&src, "app", &["1.0", "1.1"], 610).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - source: {src}/app\n    target: {dst}/app\n    include: ['^v?1\\.1$']\n  - source: {src}/app\n    target: {dst}/typo\n    include: ['^v?9\\.']\n",
            src = src.host(),
            dst = dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    // Warned by default: the run did its job, so it exits 0, but says which
    // entry picked nothing, in the report and on standard error.
    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    assert_eq!(report["copied"], 1);
    let warnings = report["warnings"]
        .as_array()
        .expect("warnings in the report");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("line 5")
            && w.contains("include ['^v?9\\.']")
            && w.contains("none of the 2 tags"),
        "{w}"
    );
    assert!(
        run.stderr.contains(&format!("warning: {w}")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 warning"), "{}", run.stdout);

    // `--no-match error` (or the config's `no_match: error`) makes it a
    // failure; the other entry is still kept current.
    let (run, report) = scratch.sync(&[cfg, "--no-match", "error"]).await;
    run.assert_code(1);
    let failed = images_with_status(&report, "failed");
    assert_eq!(failed.len(), 1, "{report}");
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("include ['^v?9\\.']"));
    assert_eq!(report["current"], 1);
    let strict = scratch.write(
        "strict.yaml",
        &format!(
            "no_match: error\n{}",
            std::fs::read_to_string(&config).unwrap()
        ),
    );
    let (run, _) = scratch.sync(&[strict.to_str().unwrap()]).await;
    run.assert_code(1);
    let (run, _) = scratch
        .sync(&[strict.to_str().unwrap(), "--no-match", "warn"])
        .await;
    run.assert_code(0);
}

#[tokio::test]
async fn a_platform_a_single_platform_image_is_not_warns_or_fails() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    // The fixture images are linux/amd64.
    push_tags(&src, "amd", &["v1"], 620).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "sync.yaml",
        &format!(
            "sync:\n  - source: {}/amd\n    target: {}/amd\n    tags: [v1]\n    platforms: [linux/arm64]\n",
            src.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();
    let (run, report) = scratch.sync(&[cfg, "--no-match", "error"]).await;
    run.assert_code(1);
    let err = report["images"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(tag_digest(&dst.host(), "amd", "v1").await.is_none());

    let (run, report) = scratch.sync(&[cfg]).await;
    run.assert_code(0);
    let img = &report["images"][0];
    assert_eq!(img["status"], "copied");
    let w = img["warnings"][0].as_str().unwrap();
    assert!(w.contains("single-platform image for linux/amd64"), "{w}");
    assert!(run.stderr.contains(w), "{}", run.stderr);

    // `mirror copy --platform` says the same.
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            "--platform",
            "linux/arm64",
            &format!("{}/amd:v1", src.host()),
            &format!("{}/amd2:v1", dst.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("single-platform image for linux/amd64"),
        "{}",
        run.stderr
    );
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            "--no-match",
            "error",
            "--platform",
            "linux/arm64",
            &format!("{}/amd:v1", src.host()),
            &format!("{}/amd3:v1", dst.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(1);
    assert!(tag_digest(&dst.host(), "amd3", "v1").await.is_none());
    // A matching filter says nothing.
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            "--no-match",
            "error",
            "--platform",
            "linux/amd64",
            &format!("{}/amd:v1", src.host()),
            &format!("{}/amd4:v1", dst.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(0);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[tokio::test]
async fn the_help_gives_the_spool_threshold_the_code_uses() {
    let default = format!(
        "(default {}M)",
        mirror::state::DEFAULT_SPOOL_THRESHOLD >> 20
    );
    for command in ["copy", "sync"] {
        let run = mirror(&[command, "--help"], &[]).await;
        run.assert_code(0);
        let help: String = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        let at = help
            .find("--spool-threshold")
            .expect("the option is listed");
        // Its own description, not a later option's.
        let described: String = help[at..].chars().take(160).collect();
        assert!(described.contains(&default), "{command}: {described}");
    }
}

/// An unchanged image's two HEADs go at once: the target's is asked while
/// the source's answer is still held back (one round trip, not two, on a
/// link with latency).
#[tokio::test]
async fn the_source_and_target_heads_of_a_tag_go_at_once() {
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    push_tags(&src, "app/img", &["v1"], 30).await;
    push_tags(&dst, "app/img", &["v1"], 30).await;
    let hold = std::time::Duration::from_millis(1500);
    src_proxy.add_rule(
        Rule::new(Fault::Delay(hold))
            .method(http::Method::HEAD)
            .path_contains("/manifests/"),
    );
    let scratch = Scratch::new();
    let (p, d) = (src_proxy.host(), dst_proxy.host());
    let config = scratch.write(
        "sync.yaml",
        &format!("sync:\n  - {{source: {p}/app/img, target: {d}/app/img, tags: [v1]}}\n"),
    );
    let (run, report) = scratch.sync(&[config.to_str().unwrap()]).await;
    run.assert_code(0);
    assert_eq!(report["current"], 1, "{report:#}");
    let heads =
        |proxy: &mirror_tests::FaultProxy| proxy.arrivals(&http::Method::HEAD, "/manifests/");
    let (source, target) = (heads(&src_proxy), heads(&dst_proxy));
    assert_eq!((source.len(), target.len()), (1, 1));
    // Asked before the source could have answered.
    assert!(
        target[0] < source[0] + hold,
        "the target's HEAD waited for the source's answer"
    );
}
