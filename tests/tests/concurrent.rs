//! Runs at once on one state directory, as two terminals, two cron entries
//! or a copy during a sync make them: they share the directory and each
//! succeeds. What they share is locked one entry at a time — a blob's
//! partial download, a recorded upload session — so no two runs ever write
//! one spool or one session: a run that finds one in use goes on without
//! it (and says so at `MIRROR_LOG=info`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use http::Method;
use mirror_tests::cli::{command, Run};
use mirror_tests::images::{blob, client, image_from_layers, push_to, read_sized, repo, TestImage};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, FaultProxy, Registry, Rule};
use registry_client::Digest;

const MIB: u64 = 1024 * 1024;

/// What the spool lock says in the log when another run holds it.
const SPOOL_IN_USE: &str = "partial download of this blob is in use by another mirror run";
/// The same for an upload session.
const SESSION_IN_USE: &str = "upload session of this blob is in use by another mirror run";

/// `mirror ARGS` spawned with exactly this environment for its state
/// directory (no `MIRROR_STATE_DIR` of the harness's), logging at info.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = command(args, env);
    cmd.env_remove("MIRROR_STATE_DIR")
        .env("MIRROR_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawning mirror")
}

async fn finished(child: tokio::process::Child) -> Run {
    let out = child.wait_with_output().await.expect("waiting for mirror");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The image at the target: its manifest as it was, every layer read back
/// whole and verified against its digest.
async fn assert_landed(host: &str, name: &str, tag: &str, img: &TestImage) {
    let c = client(host, None);
    let r = repo(host, name);
    let m = c.get_manifest(&r.tag(tag).unwrap()).await.unwrap();
    assert_eq!(m.digest, img.digest, "{host}/{name}: the manifest landed");
    for layer in &img.layers {
        let mut stream = c
            .get_blob(
                &r,
                &Digest::sha256_of(layer),
                read_sized(layer.len() as u64),
            )
            .await
            .unwrap();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            n += chunk.expect("the target's layer verifies").len() as u64;
        }
        assert_eq!(n, layer.len() as u64);
    }
}

/// Response body bytes the proxy's upstream served for `digest`'s GETs.
fn served(proxy: &FaultProxy, digest: &Digest) -> u64 {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && r.path.contains(&format!("/blobs/{digest}")))
        .map(|r| r.response_body_bytes)
        .sum()
}

fn files_in(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until `ready` holds; panics after a while, or when `child` ends.
async fn wait_for(child: &mut tokio::process::Child, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mirror ended ({status}) before the moment waited for");
        }
        assert!(tokio::time::Instant::now() < deadline, "never got there");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two copies of two images, started together with one state directory
/// (named by `env` and `dir_args`); both succeed and both images land.
async fn two_copies_at_once(seed: u64, dir_args: &[&str], env: &[(&str, &str)]) {
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let one = image_from_layers(seed, vec![blob(seed, 300_000), blob(seed + 1, 5000)], false);
    let two = image_from_layers(seed + 2, vec![blob(seed + 2, 300_000)], false);
    push_to(&src.host(), "one", "v1", &one).await;
    push_to(&src.host(), "two", "v1", &two).await;
    // Each blob read takes a second, so the runs surely overlap.
    src_proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_secs(1)))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    let args = |name: &str| {
        let mut a: Vec<String> = ["copy", "--progress", "none", "--spool-threshold", "1K"]
            .map(String::from)
            .to_vec();
        a.extend(dir_args.iter().map(|s| s.to_string()));
        a.push(format!("{}/{name}:v1", src_proxy.host()));
        a.push(format!("{}/{name}:v1", dst.host()));
        a
    };
    let (a, b) = (args("one"), args("two"));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let first = spawn(&a, env);
    let second = spawn(&b, env);
    let (first, second) = tokio::join!(finished(first), finished(second));
    first.assert_code_of("the first run", 0);
    second.assert_code_of("the second run, started with it", 0);
    assert_landed(&dst.host(), "one", "v1", &one).await;
    assert_landed(&dst.host(), "two", "v1", &two).await;
}

#[tokio::test]
async fn two_copies_at_once_share_a_state_directory_given_with_state_dir() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    two_copies_at_once(60, &["--state-dir", dir], &[]).await;
    assert!(
        files_in(&state.path().join("downloads"), "data").is_empty(),
        "each run cleared its own spools"
    );
}

#[tokio::test]
async fn two_copies_at_once_share_the_default_state_directory() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().to_str().unwrap();
    two_copies_at_once(
        70,
        &[],
        &[("XDG_STATE_HOME", xdg), ("HOME", "/nonexistent")],
    )
    .await;
    assert!(
        home.path().join("mirror/downloads").is_dir(),
        "the runs used $XDG_STATE_HOME/mirror"
    );
}

#[tokio::test]
async fn two_copies_of_one_large_blob_at_once_spool_it_once() {
    let size = 96 * MIB;
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst2) = (
        Registry::start_open().await.unwrap(),
        Registry::start_open().await.unwrap(),
    );
    let img = image_from_layers(61, vec![blob(61, size as usize)], false);
    let layer = Digest::sha256_of(&img.layers[0]);
    push_to(&src.host(), "big/app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    let downloads = state.path().join("downloads");
    // The first read of the layer stalls half way; the run that made it
    // holds the spool, half written, until its read timeout gives up on
    // the stalled connection and it continues from the verified offset.
    src_proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(size / 2))
            .method(Method::GET)
            .path_contains(&layer.to_string())
            .first(1),
    );
    let from = format!("{}/big/app:v1", src_proxy.host());
    let dir = state.path().to_str().unwrap();
    let copy = |to: String, read_timeout: &str| {
        [
            "copy",
            "--progress",
            "none",
            "--spool-threshold",
            "16M",
            "--read-timeout",
            read_timeout,
            "--state-dir",
            dir,
            &from,
            &to,
        ]
        .map(String::from)
    };
    let a = copy(format!("{}/big/app:v1", dst.host()), "10s");
    let mut first = spawn(&a.each_ref().map(String::as_str), &[]);
    wait_for(&mut first, || served(&src_proxy, &layer) >= size / 2).await;
    let spool = downloads.join(format!("sha256-{}.data", layer.hex()));
    assert!(spool.exists(), "the first run spools the layer");

    let b = copy(format!("{}/big/app:v1", dst2.host()), "60s");
    let second = finished(spawn(&b.each_ref().map(String::as_str), &[])).await;
    second.assert_code_of("the second run", 0);
    assert!(
        second.stderr.contains(SPOOL_IN_USE),
        "the second run says the spool is another run's: {}",
        second.stderr
    );
    assert_landed(&dst2.host(), "big/app", "v1", &img).await;

    let first = finished(first).await;
    first.assert_code_of("the first run", 0);
    assert!(!first.stderr.contains(SPOOL_IN_USE), "{}", first.stderr);
    assert_landed(&dst.host(), "big/app", "v1", &img).await;
    // Half, the rest after the stall (from the verified offset), and the
    // second run's whole read: the spool the first run kept was not
    // thrown away or started over.
    let total = served(&src_proxy, &layer);
    assert!(
        total <= 2 * size + 16 * MIB,
        "the source served {total} bytes for two copies of a {size}-byte layer"
    );
    for ext in ["data", "json", "lock"] {
        assert!(
            files_in(&downloads, ext).is_empty(),
            "the spool's .{ext} is gone once the layer is at the target"
        );
    }
}

#[tokio::test]
async fn two_uploads_of_one_blob_at_once_record_one_session() {
    let size = 64 * MIB;
    let src = Registry::start_open().await.unwrap();
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image_from_layers(62, vec![blob(62, size as usize)], false);
    push_to(&src.host(), "app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    let uploads = state.path().join("uploads");
    // The first run's third chunk waits at the proxy: its session is open
    // and recorded meanwhile.
    dst_proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_secs(8)))
            .method(Method::PATCH)
            .nth(3),
    );
    let (from, to) = (
        format!("{}/app:v1", src.host()),
        format!("{}/app:v1", dst_proxy.host()),
    );
    let args = [
        "copy",
        "--progress",
        "none",
        "--spool-threshold",
        "1T",
        "--chunk-threshold",
        "16M",
        "--chunk-size",
        "8M",
        "--state-dir",
        state.path().to_str().unwrap(),
        &from,
        &to,
    ];
    let mut first = spawn(&args, &[]);
    wait_for(&mut first, || {
        dst_proxy.count(&Method::PATCH, "/blobs/uploads/") >= 3
    })
    .await;
    let recorded = files_in(&uploads, "json");
    assert_eq!(recorded.len(), 1, "the first run's session is recorded");
    let record = std::fs::read(&recorded[0]).unwrap();

    let second = finished(spawn(&args, &[])).await;
    second.assert_code_of("the second run", 0);
    assert!(
        second.stderr.contains(SESSION_IN_USE),
        "the second run says the session is another run's: {}",
        second.stderr
    );
    assert_eq!(
        std::fs::read(&recorded[0]).unwrap(),
        record,
        "the second run did not write the first one's record"
    );

    let first = finished(first).await;
    first.assert_code_of("the first run", 0);
    assert!(!first.stderr.contains(SESSION_IN_USE), "{}", first.stderr);
    assert_landed(&dst.host(), "app", "v1", &img).await;
    assert!(files_in(&uploads, "json").is_empty());
    assert!(files_in(&uploads, "lock").is_empty());
}
