//! Input written to do harm: what a file or a server controls must never
//! take mirror outside what it was asked to write.

use mirror_tests::cli::{mirror, quiet, sync_json, workspace_root};
use serde_json::Value;

/// Copy a directory tree (the committed fixture layout).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_layout_name_that_climbs_out_cannot_name_a_sync_target() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let layout = work.join("layout");
    copy_tree(&workspace_root().join("fixtures/azureml"), &layout);
    // The same image under a hostile name beside its own.
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut evil = index["manifests"][0].clone();
    evil["annotations"]["org.opencontainers.image.ref.name"] = "../../evil:v1".into();
    index["manifests"].as_array_mut().unwrap().push(evil);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let config = work.join("sync.yaml");
    std::fs::write(
        &config,
        "sync:\n  - source: oci:layout\n    target: 'oci:out/{repo}'\n",
    )
    .unwrap();
    let run = sync_json(&config).await;
    run.assert_code(1);
    let report = run.json();
    let failed: Vec<&Value> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("../../evil") && error.contains("not a repository name"),
        "{error}"
    );
    // The six good images landed; nothing was made outside `out`.
    assert_eq!(report["copied"], 6, "{report}");
    for outside in [
        tmp.path().join("evil"),
        work.join("evil"),
        tmp.path().join("evil:v1"),
    ] {
        assert!(!outside.exists(), "{} was created", outside.display());
    }
    let mut top: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["layout", "out", "sync.yaml"]);
}

/// A fixture image, copied from the committed layout.
const FIXTURE: &str = "oci:fixtures/azureml:cap/lifecycler/installed:eastus-stable";

/// `mirror copy` of the fixture image into a new layout in `dir`, with
/// standard output given by the test.
fn copy_to(dir: &std::path::Path, stdout: std::process::Stdio) -> tokio::process::Command {
    let target = format!("oci:{}:x", dir.join("out").display());
    let mut cmd = mirror_tests::cli::command(
        &[
            "copy",
            "--progress",
            "none",
            "--output",
            "json",
            FIXTURE,
            &target,
        ],
        &[],
    );
    cmd.env("MIRROR_STATE_DIR", dir.join("state"))
        .stdout(stdout)
        .stderr(std::process::Stdio::piped());
    cmd
}

#[tokio::test]
async fn a_report_to_a_full_device_is_an_error_naming_it_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = copy_to(tmp.path(), full.into()).spawn().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: writing the report to standard output")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The copy itself was done: the image is in the layout.
    assert!(tmp.path().join("out/index.json").exists());
}

#[tokio::test]
async fn a_report_to_a_closed_pipe_is_an_error_naming_it_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = copy_to(tmp.path(), std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the report is written (`| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing the report to standard output") && stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_bound_reached_names_itself_and_the_flag_or_config_key_raises_it() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("oci:{}:x", tmp.path().join("out").display());
    // The image has a config and layers: more than one blob.
    let run = quiet("copy", &["--limit", "image-blobs=1", FIXTURE, &target]).await;
    run.assert_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("more than 1 blobs") && said.contains("--limit image-blobs=N"),
        "{said}"
    );
    let index = std::fs::read_to_string(tmp.path().join("out/index.json")).unwrap_or_default();
    assert!(!index.contains("\"x\""), "nothing is tagged: {index}");
    // The JSON report says so: an error, and no target digest at all.
    let run = mirror_tests::cli::copy_json(&["--limit", "image-blobs=1", FIXTURE, &target]).await;
    run.assert_code(1);
    let image = &run.json()["images"][0];
    assert!(
        image["error"].as_str().unwrap().contains("image-blobs"),
        "{image}"
    );
    assert!(image.get("target_digest").is_none(), "{image}");

    // In a sync config, `limits:`; the command line wins over it.
    let config = tmp.path().join("sync.yaml");
    let layout = workspace_root().join("fixtures/azureml");
    std::fs::write(
        &config,
        format!(
            "limits:\n  image-blobs: 1\nsync:\n  - source: oci:{}:cap/lifecycler/installed\n    target: 'oci:{}/synced'\n",
            layout.display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let run = sync_json(&config).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains("--limit image-blobs=N"),
        "{}",
        run.stdout
    );
    let config_arg = config.to_str().unwrap();
    let run = mirror(
        &[
            "sync",
            "--progress",
            "none",
            "--limit",
            "image-blobs=100",
            config_arg,
        ],
        &[],
    )
    .await;
    assert_ne!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(tmp.path().join("synced/index.json").exists());

    // A name that is no limit is a usage error listing the names.
    let run = quiet("copy", &["--limit", "image-blob=5", FIXTURE, &target]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("image-manifests"), "{}", run.stderr);
}

#[tokio::test]
async fn a_config_file_that_never_ends_is_refused_at_its_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sync.yaml");
    std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
    let run = sync_json(&config).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("larger than 1M") && run.stderr.contains("--limit config-bytes=N"),
        "{}",
        run.stderr
    );
    // A secret file likewise (a fixed bound).
    std::fs::remove_file(&config).unwrap();
    std::fs::write(
        &config,
        "registries:\n  - host: r.example\n    credentials:\n      username: u\n      password_file: /dev/zero\nsync:\n  - source: r.example/a\n    target: oci:out\n",
    )
    .unwrap();
    let run = sync_json(&config).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("secret file /dev/zero")
            && run
                .stderr
                .contains("the fixed limit secret-file-bytes is 64K"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_refused_connection_names_its_cause_and_logs_to_a_pipe_are_plain_text() {
    // A port nothing listens on.
    let port = mirror_tests::free_port();
    let source = format!("127.0.0.1:{port}/cap/l:e");
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("oci:{}:x", tmp.path().join("out").display());
    let run = mirror(
        &["copy", "--progress", "none", &source, &target],
        &[("MIRROR_LOG", "debug")],
    )
    .await;
    run.assert_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("Connection refused"), "{said}");
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no ANSI colour codes when standard error is not a terminal: {}",
        run.stderr
    );
}
