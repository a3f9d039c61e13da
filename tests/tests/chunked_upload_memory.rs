//! `mirror copy` with chunked uploads keeps its memory flat: each chunk's
//! body streams from the source instead of being held whole, so eight
//! uploads of 64 MiB chunks at once cost a few MiB, not eight chunks (of
//! 12 MiB layers here: the buffered uploads held all eight). A chunk cut on
//! the way is resumed in the same session and sent again from the resume
//! spool, not read from the source twice. The peak is the child's own
//! (`VmHWM`, sampled while it runs).

use std::process::Stdio;
use std::time::Duration;

use http::Method;
use mirror_tests::cli::{command, Run};
use mirror_tests::images::{has_blob, image, push_to, tag_digest};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, Rule};
use registry_client::Digest;

const MIB: usize = 1024 * 1024;
const LAYERS: usize = 8;
const LAYER: usize = 12 * MIB;
/// Measured in a debug build: streaming chunk bodies 34 MiB; buffering
/// each chunk whole (the code before) 123 MiB.
const PEAK_LIMIT_MIB: u64 = 80;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_uploads_of_64_mib_chunks_stay_in_flat_memory_even_when_a_chunk_is_sent_again() {
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let sizes: Vec<usize> = (0..LAYERS).map(|i| LAYER + i).collect();
    let img = image(41, &sizes, false);
    push_to(&src.host(), "flat/img", "v1", &img).await;
    // One chunk's connection dies after its headers: the registry holds
    // none of it, its status says so, and the chunk goes again.
    dst_proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(0))
            .method(Method::PATCH)
            .nth(3),
    );
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();

    let (run, peak_kib) = run_measured(&[
        "copy",
        "--output",
        "json",
        "--progress",
        "none",
        "--jobs",
        "8",
        "--chunk-threshold",
        "1M",
        "--chunk-size",
        "64M",
        "--spool-threshold",
        "1M",
        "--state-dir",
        state_dir,
        &format!("{}/flat/img:v1", src_proxy.host()),
        &format!("{}/flat/img", dst_proxy.host()),
    ])
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "flat/img", "v1").await,
        Some(img.digest.clone())
    );
    for layer in &img.layers {
        assert!(has_blob(&dst.host(), "flat/img", &Digest::sha256_of(layer)).await);
    }
    let patches = dst_proxy.count(&Method::PATCH, "/blobs/uploads/");
    assert_eq!(patches, LAYERS + 1, "one PATCH a layer, the cut one twice");
    let sessions = dst_proxy.count(&Method::POST, "/blobs/uploads/");
    assert_eq!(
        sessions,
        LAYERS + 1,
        "the config and each layer in one session: the cut chunk was resumed, not started again"
    );
    // Each blob read from its start once: the cut chunk came again from
    // the spool (and the source, with `Range`, for what the spool lacked).
    let whole_reads = src_proxy
        .requests()
        .iter()
        .filter(|q| q.method == Method::GET && q.path.contains("/blobs/sha256:"))
        .filter(|q| !q.headers.contains_key("range"))
        .count();
    assert_eq!(
        whole_reads,
        LAYERS + 1,
        "the config and each layer read once"
    );
    eprintln!(
        "peak RSS {} MiB copying {LAYERS} × {} MiB layers in 64 MiB chunks at 8 jobs",
        peak_kib >> 10,
        LAYER / MIB
    );
    assert!(
        peak_kib < PEAK_LIMIT_MIB * 1024,
        "peak RSS {} MiB, above {PEAK_LIMIT_MIB} MiB",
        peak_kib >> 10
    );
}

/// Run `mirror` to its end, sampling its peak resident memory (KiB).
async fn run_measured(args: &[&str]) -> (Run, u64) {
    let mut cmd = command(args, &[]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("starting mirror");
    let pid = child.id().expect("a running child has a pid");
    let mut done = tokio::spawn(child.wait_with_output());
    let mut peak_kib = 0;
    let out = loop {
        if let Some(kib) = mirror_tests::memory::peak_of(pid) {
            peak_kib = peak_kib.max(kib);
        }
        tokio::select! {
            out = &mut done => break out.unwrap().expect("waiting for mirror"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    };
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, peak_kib)
}
