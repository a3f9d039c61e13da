//! `--progress` end to end: what `mirror copy` prints on standard error
//! while it runs, with standard error a pipe (as in CI).

use std::time::Instant;

use bytes::Bytes;
use mirror_tests::cli::{mirror, Run};
use mirror_tests::images::{blob, image_from_layers, push_to};
use mirror_tests::Registry;
use serde_json::Value;

/// The `progress:` lines a run printed.
fn progress_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("progress: ") && l.contains(" moved"))
        .collect()
}

/// `DONE of TOTAL` from a progress line, as printed.
fn done_and_total(line: &str) -> (String, String) {
    let moved = line
        .split(", ")
        .find(|part| part.contains(" of ") && part.ends_with(" moved"))
        .unwrap_or_else(|| panic!("no `DONE of TOTAL moved` in {line:?}"));
    let (done, total) = moved.trim_end_matches(" moved").split_once(" of ").unwrap();
    (done.to_string(), total.to_string())
}

/// Bytes as mirror prints them (1024-based, one decimal): what the report
/// counts, written the way a progress line would.
fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Two images in `src` that share a large base layer, each with a small
/// layer of its own; returns their references.
async fn two_images_sharing_a_layer(src: &Registry, base: &Bytes) -> [String; 2] {
    let mut refs = Vec::new();
    for (i, name) in ["progress/one", "progress/two"].iter().enumerate() {
        let img = image_from_layers(
            900 + i as u64,
            vec![base.clone(), blob(910 + i as u64, 20_000)],
            false,
        );
        push_to(&src.host(), name, "v1", &img).await;
        refs.push(format!("{}/{name}:v1", src.host()));
    }
    [refs[0].clone(), refs[1].clone()]
}

fn copy_args<'a>(progress: &'a str, pairs: &'a [(String, String)]) -> Vec<&'a str> {
    let mut args = vec!["copy", "--output", "json", "--progress", progress];
    for (s, d) in pairs {
        args.push(s);
        args.push(d);
    }
    args
}

#[tokio::test]
async fn bars_off_a_terminal_fall_back_to_plain_lines_and_say_so() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let base = blob(950, 100_000);
    let [one, _] = two_images_sharing_a_layer(&src, &base).await;
    let pairs = [(one, format!("{}/copied/one:v1", dst.host()))];
    // `mirror` pipes standard error: it is not a terminal.
    let run = mirror(&copy_args("bars", &pairs), &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("not a terminal") && run.stderr.contains("plain lines"),
        "the fallback is announced: {:?}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("not a terminal").count(),
        1,
        "once: {:?}",
        run.stderr
    );
    assert!(
        !progress_lines(&run).is_empty(),
        "plain progress lines: {:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains("done: "),
        "each image's line: {:?}",
        run.stderr
    );
}

#[tokio::test]
async fn the_total_counts_a_shared_blob_once_and_equals_the_bytes_moved() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let base = blob(960, 300_000);
    let [one, two] = two_images_sharing_a_layer(&src, &base).await;
    let pairs = [
        (one, format!("{}/copied/one:v1", dst.host())),
        (two, format!("{}/copied/two:v1", dst.host())),
    ];
    let run = mirror(&copy_args("plain", &pairs), &[]).await;
    run.assert_code(0);
    let report: Value = run.json();
    let moved = report["bytes_copied"].as_u64().unwrap();
    assert!(
        moved < 2 * base.len() as u64,
        "the shared layer moved once: {moved}"
    );
    let lines = progress_lines(&run);
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no progress line: {:?}", run.stderr));
    let (done, total) = done_and_total(last);
    assert_eq!(
        total,
        human(moved),
        "the last line's total is the report's bytes moved, not each image's sum: {last:?}"
    );
    assert_eq!(done, total, "all of it moved: {last:?}");
    // Two configs, two layers of their own and the shared one.
    assert!(last.contains("5/5 blobs"), "{last:?}");
}

#[tokio::test]
async fn plain_lines_show_a_total_a_rate_and_an_eta_a_few_at_a_time() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    // Large enough to stream in many chunks: still a handful of lines.
    let base = blob(970, 4 * 1024 * 1024);
    let [one, two] = two_images_sharing_a_layer(&src, &base).await;
    let pairs = [
        (one, format!("{}/copied/one:v1", dst.host())),
        (two, format!("{}/copied/two:v1", dst.host())),
    ];
    let started = Instant::now();
    let run = mirror(&copy_args("plain", &pairs), &[]).await;
    let seconds = started.elapsed().as_secs();
    run.assert_code(0);
    let lines = progress_lines(&run);
    assert!(!lines.is_empty(), "progress lines: {:?}", run.stderr);
    for line in &lines {
        let (_, total) = done_and_total(line);
        assert!(!total.is_empty(), "a total: {line:?}");
        assert!(line.contains("/s, ETA "), "a rate and an ETA: {line:?}");
    }
    assert!(
        lines.last().unwrap().ends_with("ETA 0s"),
        "nothing left at the end: {lines:?}"
    );
    // One every five seconds, and the last: never one per chunk.
    assert!(
        lines.len() as u64 <= seconds / 5 + 2,
        "{} lines in {seconds}s: {lines:?}",
        lines.len()
    );
}
