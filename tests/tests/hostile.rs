//! Input written to do harm: what a file or a server controls must never
//! take mirror outside what it was asked to write.

use mirror_tests::cli::{sync_json, workspace_root};
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
