//! Resume across runs: `kill -9` or Ctrl-C in the middle of a large layer,
//! then the same command again. The rerun continues from the state
//! directory (partial downloads) and from the upload session the registry
//! kept, and the source and target never carry the layer much more than
//! once. Byte counts come from fault proxies in front of each registry.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use mirror_tests::cli::{command, mirror};
use mirror_tests::images::{blob, client, image_from_layers, push_to, read_sized, repo, TestImage};
use mirror_tests::sandbox::private_mounts_possible;
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, FaultProxy, Registry, Rule};
use registry_client::{Descriptor, Digest, Repository};

const MIB: u64 = 1024 * 1024;

/// Response body bytes the proxy's upstream served for `digest`'s GETs.
fn served(proxy: &FaultProxy, digest: &Digest) -> u64 {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && r.path.contains(&format!("/blobs/{digest}")))
        .map(|r| r.response_body_bytes)
        .sum()
}

/// Request body bytes the proxy's upstream received in uploads.
fn uploaded(proxy: &FaultProxy) -> u64 {
    proxy
        .requests()
        .iter()
        .filter(|r| {
            (r.method == Method::PATCH || r.method == Method::PUT)
                && r.path.contains("/blobs/uploads/")
        })
        .map(|r| r.request_body_bytes)
        .sum()
}

/// Run `args` and SIGKILL it once `ready` holds; panics if it ends first.
async fn kill_when(args: &[&str], ready: impl Fn() -> bool) {
    let mut child = command(args, &[]).spawn().expect("spawning mirror");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mirror ended ({status}) before the moment to kill it");
        }
        assert!(tokio::time::Instant::now() < deadline, "never got there");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().await.unwrap();
}

/// The layer at the target, read back whole and verified against its digest.
async fn assert_landed(host: &str, name: &str, tag: &str, img: &TestImage) {
    let c = client(host, None);
    let r = repo(host, name);
    let m = c.get_manifest(&r.tag(tag).unwrap()).await.unwrap();
    assert_eq!(m.digest, img.digest, "the manifest landed as it was");
    let layer = &img.layers[0];
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

#[tokio::test]
async fn a_download_killed_half_way_continues_from_the_state_directory() {
    let size = 512 * MIB;
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image_from_layers(40, vec![blob(40, size as usize)], false);
    let layer = Digest::sha256_of(&img.layers[0]);
    push_to(&src.host(), "big/app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    let (from, to) = (
        format!("{}/big/app:v1", src_proxy.host()),
        format!("{}/big/app:v1", dst_proxy.host()),
    );
    let args = [
        "copy",
        "--progress",
        "none",
        "--state-dir",
        state.path().to_str().unwrap(),
        &from,
        &to,
    ];

    kill_when(&args, || uploaded(&dst_proxy) >= size / 2).await;
    let first = served(&src_proxy, &layer);
    let spooled: u64 = files_in(&state.path().join("downloads"), "data")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(
        spooled >= size / 4,
        "the partial download is on disk: {spooled}"
    );
    // Its lock file stays, but the kernel released the killed run's lock.
    let locks = files_in(&state.path().join("downloads"), "lock");
    assert_eq!(locks.len(), 1, "the spool's lock file");
    let lock = std::fs::File::open(&locks[0]).unwrap();
    lock.try_lock()
        .expect("the killed run's spool lock is free");
    drop(lock);

    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    let total = served(&src_proxy, &layer);
    println!(
        "download kill test: layer {} MiB; the source served {:.1} MiB before the kill, {:.1} MiB in all ({:.3}× the layer); the target received {:.1} MiB of uploads in all",
        size / MIB,
        first as f64 / MIB as f64,
        total as f64 / MIB as f64,
        total as f64 / size as f64,
        uploaded(&dst_proxy) as f64 / MIB as f64,
    );
    assert!(
        total as f64 <= size as f64 * 1.1,
        "the source served {total} bytes for a {size}-byte layer"
    );
    assert_landed(&dst.host(), "big/app", "v1", &img).await;
    for ext in ["data", "json", "lock"] {
        assert!(
            files_in(&state.path().join("downloads"), ext).is_empty(),
            "the spool's .{ext} is cleared once the layer is at the target"
        );
    }
}

/// An OCI layout at `dir` holding `img` as `name`.
async fn layout_with(dir: &Path, name: &str, img: &TestImage) {
    use mirror::store::layout::LayoutStore;
    use mirror::store::ImageTarget;
    let store = LayoutStore::create(dir).unwrap();
    for (media_type, data) in [("application/vnd.oci.image.config.v1+json", &img.config)]
        .into_iter()
        .chain(
            img.layers
                .iter()
                .map(|l| ("application/vnd.oci.image.layer.v1.tar+gzip", l)),
        )
    {
        let desc = Descriptor::new(media_type, Digest::sha256_of(data), data.len() as u64);
        let chunks: Vec<Result<Bytes, _>> = data
            .chunks(MIB as usize)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        store
            .write_blob(&desc, Box::pin(futures::stream::iter(chunks)))
            .await
            .unwrap();
    }
    let manifest = registry_client::Manifest {
        media_type: img.media_type.into(),
        digest: img.digest.clone(),
        bytes: img.manifest.clone(),
    };
    store.put_manifest(&manifest).await.unwrap();
    store.set_tag(name, &manifest).await.unwrap();
}

#[tokio::test]
async fn an_upload_killed_half_way_continues_from_the_offset_the_registry_confirms() {
    let size = 512 * MIB;
    let chunk = 16 * MIB;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image_from_layers(41, vec![blob(41, size as usize)], false);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    layout_with(&layout, "v1", &img).await;
    let state = work.path().join("state");

    // Hold the 17th chunk at the proxy: the registry has exactly 16 chunks
    // (256 MiB) when mirror dies, as after a kill between two chunks.
    dst_proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_secs(600)))
            .method(Method::PATCH)
            .nth(17),
    );
    let (from, to) = (
        format!("oci:{}:v1", layout.display()),
        format!("{}/big/app:v1", dst_proxy.host()),
    );
    let args = [
        "copy",
        "--progress",
        "none",
        "--chunk-threshold",
        "64M",
        "--chunk-size",
        "16M",
        "--state-dir",
        state.to_str().unwrap(),
        &from,
        &to,
    ];
    kill_when(&args, || {
        dst_proxy.count(&Method::PATCH, "/blobs/uploads/") >= 17
    })
    .await;
    let first = uploaded(&dst_proxy);
    assert_eq!(
        files_in(&state.join("uploads"), "json").len(),
        1,
        "the open session is recorded"
    );

    dst_proxy.clear_rules();
    let before_rerun = dst_proxy.requests().len();
    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    let total = uploaded(&dst_proxy);
    println!(
        "upload kill test: layer {} MiB in {} MiB chunks; the target received {:.1} MiB before the kill, {:.1} MiB in all ({:.3}× the layer)",
        size / MIB,
        chunk / MIB,
        first as f64 / MIB as f64,
        total as f64 / MIB as f64,
        total as f64 / size as f64,
    );
    let rerun_patches: Vec<_> = dst_proxy.requests()[before_rerun..]
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .cloned()
        .collect();
    assert_eq!(
        rerun_patches[0].headers["content-range"],
        format!("{}-{}", 16 * chunk, 17 * chunk - 1),
        "the rerun continues at the offset the registry confirmed"
    );
    assert!(
        total as f64 <= size as f64 * 1.1,
        "the target received {total} bytes for a {size}-byte layer"
    );
    assert_landed(&dst.host(), "big/app", "v1", &img).await;
    assert!(files_in(&state.join("uploads"), "json").is_empty());
}

#[tokio::test]
async fn ctrl_c_keeps_the_partial_download_and_exits_130() {
    let size = 96 * MIB;
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image_from_layers(42, vec![blob(42, size as usize)], false);
    let layer = Digest::sha256_of(&img.layers[0]);
    push_to(&src.host(), "app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    let (from, to) = (
        format!("{}/app:v1", src_proxy.host()),
        format!("{}/app:v1", dst_proxy.host()),
    );
    let args = [
        "copy",
        "--progress",
        "none",
        "--state-dir",
        state.path().to_str().unwrap(),
        &from,
        &to,
    ];
    // The source stalls half way, so the interrupt always lands mid-layer
    // however loaded the machine is.
    src_proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(size / 2))
            .method(Method::GET)
            .path_contains(&layer.to_string()),
    );
    let child = command(&args, &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    while uploaded(&dst_proxy) < size / 2 - 8 * MIB {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let signal = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");

    let checkpoints = files_in(&state.path().join("downloads"), "json");
    assert_eq!(checkpoints.len(), 1, "the partial download is recorded");
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoints[0]).unwrap()).unwrap();
    let kept = cp["offset"].as_u64().unwrap();
    assert!(kept >= size / 2 - 16 * MIB, "kept {kept} bytes");
    assert!(
        dst.count_requests("PUT", "/manifests/v1").eq(&0),
        "no tag moved"
    );

    src_proxy.clear_rules();
    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    // Re-read: what was in flight at the interrupt (socket buffers between
    // the proxy and mirror hold several MiB on loopback) and was never
    // received, so is not in the spool.
    let total = served(&src_proxy, &layer);
    assert!(
        total <= size + 16 * MIB,
        "the source served {total} bytes for a {size}-byte layer"
    );
    assert_landed(&dst.host(), "app", "v1", &img).await;
}

#[tokio::test]
async fn state_that_cannot_be_trusted_is_discarded_and_the_copy_lands() {
    let size = 40 * MIB;
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let img = image_from_layers(43, vec![blob(43, size as usize)], false);
    let layer = Digest::sha256_of(&img.layers[0]);
    push_to(&src.host(), "app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    {
        let dir = mirror::state::StateDir::open(state.path(), 1).unwrap();
        // A session the registry never opened (as after it expired).
        let target = Repository::parse(&format!("{}/app", dst.host())).unwrap();
        dir.uploads().save(&mirror::state::UploadRecord {
            repository: target.to_string(),
            digest: layer.clone(),
            size,
            location: format!(
                "{}/v2/app/blobs/uploads/0b3c5e0e-dead-beef-0000-000000000000?_state=bogus",
                dst.base_url()
            ),
            offset: 8 * MIB,
        });
        // A partial download recorded for another size.
        let stem = format!("sha256-{}", layer.hex());
        let downloads = state.path().join("downloads");
        std::fs::write(
            downloads.join(format!("{stem}.data")),
            vec![0u8; MIB as usize],
        )
        .unwrap();
        std::fs::write(
            downloads.join(format!("{stem}.json")),
            serde_json::to_vec(&serde_json::json!({
                "digest": layer.to_string(), "size": size + 1, "offset": MIB, "hasher": "00"
            }))
            .unwrap(),
        )
        .unwrap();
    }
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            "--chunk-threshold",
            "16M",
            "--spool-threshold",
            "16M",
            "--state-dir",
            state.path().to_str().unwrap(),
            &format!("{}/app:v1", src.host()),
            &format!("{}/app:v1", dst.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(0);
    assert_landed(&dst.host(), "app", "v1", &img).await;
    assert!(files_in(&state.path().join("uploads"), "json").is_empty());
    assert!(files_in(&state.path().join("downloads"), "data").is_empty());
}

#[tokio::test]
async fn another_run_does_not_stop_a_copy_but_an_earlier_mirror_locking_the_directory_whole_does() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let img = image_from_layers(44, vec![blob(44, 1000)], false);
    push_to(&src.host(), "app", "v1", &img).await;
    let state = tempfile::tempdir().unwrap();
    let args = [
        "copy",
        "--state-dir",
        state.path().to_str().unwrap(),
        &format!("{}/app:v1", src.host()),
        &format!("{}/app:v1", dst.host()),
    ];
    // Another run on the directory does not stop this one.
    let other_run = mirror::state::StateDir::open(state.path(), 1).unwrap();
    mirror(&args, &[])
        .await
        .assert_code_of("beside another run", 0);
    drop(other_run);
    // An earlier mirror locked the directory whole and knows no per-entry
    // locks: while one runs, this one stops at once, naming it.
    let mut earlier = std::fs::File::options()
        .write(true)
        .open(state.path().join("lock"))
        .unwrap();
    earlier.lock().unwrap();
    std::io::Write::write_all(&mut earlier, b"4242\n").unwrap();
    let puts = dst.count_requests("PUT", "/manifests/");
    let run = mirror(&args, &[]).await;
    run.assert_code(4);
    assert!(
        run.stderr.contains("earlier version")
            && run.stderr.contains("pid 4242")
            && run.stderr.contains(&state.path().display().to_string()),
        "{}",
        run.stderr
    );
    assert_eq!(
        dst.count_requests("PUT", "/manifests/"),
        puts,
        "nothing was copied"
    );
    drop(earlier);
    mirror(&args, &[]).await.assert_code(0);
}

#[tokio::test]
async fn a_full_disk_under_the_state_directory_only_turns_spooling_off() {
    // A 2 MiB tmpfs in a private mount namespace stands for a full disk.
    if !private_mounts_possible().await {
        return;
    }
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let img = image_from_layers(45, vec![blob(45, 8 * MIB as usize)], false);
    push_to(&src.host(), "app", "v1", &img).await;
    let work = tempfile::tempdir().unwrap();
    let mnt = work.path().join("state");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = r#"
mount -t tmpfs -o size=2m tmpfs "$MNT" || exit 90
"$MIRROR" copy --progress none --state-dir "$MNT/state" --spool-threshold 1M "$SRC/app:v1" "$DST/app:v1" 2>"$ERR"
"#;
    let err = work.path().join("stderr");
    let status = tokio::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("MNT", &mnt)
        .env("ERR", &err)
        .env("MIRROR", mirror_tests::cli::mirror_bin())
        .env("SRC", src.host())
        .env("DST", dst.host())
        .status()
        .await
        .unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("cannot keep a partial download") && stderr.contains("No space left"),
        "says why spooling stopped: {stderr}"
    );
    assert_landed(&dst.host(), "app", "v1", &img).await;
}
