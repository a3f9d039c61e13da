//! Local files another user (or a hostile input) controls: the state
//! directory, the sync lock, an OCI layout's files and the credential
//! helpers docker's config names. Each test runs the real binary.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mirror_tests::cli::{command, mirror, workspace_root, Run};
use mirror_tests::registry::Registry;
use sha2::{Digest as _, Sha256};

const FIXTURE: &str = "oci:fixtures/azureml:cap/lifecycler/installed:eastus-stable";
const USAGE: i32 = 2;

/// The uid of the user running the tests (the owner of what they create).
fn uid(dir: &Path) -> u32 {
    std::fs::metadata(dir).unwrap().uid()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Run `cmd` to the end.
async fn run(mut cmd: tokio::process::Command) -> Run {
    let out = cmd.output().await.expect("running mirror");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mirror ARGS` with no home, no XDG directories and no state directory
/// named, temporary files under `tmpdir` and an empty docker config: what
/// falls back to the shared temporary directory does so there.
fn homeless(args: &[&str], tmpdir: &Path, docker: &Path) -> tokio::process::Command {
    let mut cmd = command(args, &[]);
    for var in [
        "HOME",
        "XDG_STATE_HOME",
        "XDG_RUNTIME_DIR",
        "MIRROR_STATE_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("TMPDIR", tmpdir).env("DOCKER_CONFIG", docker);
    cmd
}

#[tokio::test]
async fn a_state_directory_others_can_write_to_is_refused_saying_how_to_choose_another() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = tmp.path().join("out");
    let target = format!("oci:{}", path_str(&out));
    let run = mirror(
        &["copy", "--progress", "none", FIXTURE, &target],
        &[("MIRROR_STATE_DIR", path_str(&shared))],
    )
    .await;
    run.assert_code(USAGE);
    let msg = &run.stderr;
    assert!(
        msg.contains(path_str(&shared))
            && msg.contains("mode 0777")
            && msg.contains("no one else can write")
            && msg.contains("--state-dir")
            && msg.contains("MIRROR_STATE_DIR"),
        "{msg}"
    );
    assert!(!shared.join("lock").exists(), "nothing written in it");
    assert!(!out.exists(), "nothing copied");
}

#[tokio::test]
async fn without_a_home_the_state_falls_back_to_a_directory_of_the_users_own_under_tmpdir() {
    let tmp = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let state = tmp.path().join(format!("mirror-state-{}", uid(tmp.path())));
    let out = tmp.path().join("out");
    let target = format!("oci:{}", path_str(&out));
    let args = ["copy", "--progress", "none", FIXTURE, &target];
    run(homeless(&args, tmp.path(), docker.path()))
        .await
        .assert_code_of("first copy", 0);
    assert_eq!(mode(&state), 0o700, "{}", state.display());
    assert!(state.join("lock").is_file());

    // Planted as a link (to a directory the planter can read): refused.
    std::fs::remove_dir_all(&state).unwrap();
    let planted = tmp.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(&planted, &state).unwrap();
    let again = run(homeless(&args, tmp.path(), docker.path())).await;
    again.assert_code_of("copy with a planted state link", USAGE);
    assert!(
        again.stderr.contains(path_str(&state)) && again.stderr.contains("symbolic link"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0);
}

#[tokio::test]
async fn the_default_sync_lock_is_in_a_directory_of_the_users_own() {
    let tmp = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sync.yaml");
    let layout = workspace_root().join("fixtures/azureml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  - source: oci:{}:cap/lifecycler/installed\n    target: 'oci:{}'\n    tags: [eastus-stable]\n",
            layout.display(),
            tmp.path().join("out").display()
        ),
    )
    .unwrap();
    let args = [
        "sync",
        "--progress",
        "none",
        "--changes-exit-code",
        "0",
        path_str(&config),
    ];
    run(homeless(&args, tmp.path(), docker.path()))
        .await
        .assert_code_of("first sync", 0);
    let locks = tmp.path().join(format!("mirror-locks-{}", uid(tmp.path())));
    assert_eq!(mode(&locks), 0o700);
    let held: Vec<_> = std::fs::read_dir(&locks).unwrap().collect();
    assert_eq!(held.len(), 1, "the config's lock is there");
    // No lock loose in the shared directory itself.
    let loose: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(loose.is_empty(), "{loose:?}");

    // A directory others can write to (made by someone else first): refused.
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let again = run(homeless(&args, tmp.path(), docker.path())).await;
    again.assert_code_of("sync with a shared lock directory", USAGE);
    assert!(
        again.stderr.contains(path_str(&locks))
            && again.stderr.contains("mode 0777")
            && again.stderr.contains("--lock-file"),
        "{}",
        again.stderr
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_layout_target_replaces_a_linked_or_wrong_blob_instead_of_trusting_its_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let to = |tag: &str| format!("oci:{}:{tag}", path_str(&out));
    mirror(&["copy", "--progress", "none", FIXTURE, &to("v1")], &[])
        .await
        .assert_code_of("first copy", 0);
    let blobs = out.join("blobs/sha256");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.metadata().unwrap().len(), e.path())
        })
        .collect();
    files.sort();
    let (_, linked) = files.pop().unwrap();
    let (_, wrong) = files.pop().unwrap();
    let linked_bytes = std::fs::read(&linked).unwrap();
    let wrong_bytes = std::fs::read(&wrong).unwrap();

    // One blob a link to a file outside the layout (with the right bytes,
    // even), one a file of the right size with other bytes.
    let outside = tmp.path().join("outside");
    std::fs::rename(&linked, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &linked).unwrap();
    let mut flipped = wrong_bytes.clone();
    flipped[0] ^= 0xff;
    std::fs::write(&wrong, &flipped).unwrap();

    // Another tag, so the image is not current and its blobs are checked.
    mirror(&["copy", "--progress", "none", FIXTURE, &to("v2")], &[])
        .await
        .assert_code_of("second copy", 0);
    let meta = std::fs::symlink_metadata(&linked).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the blob"
    );
    assert_eq!(std::fs::read(&linked).unwrap(), linked_bytes);
    assert_eq!(std::fs::read(&outside).unwrap(), linked_bytes);
    let now = std::fs::read(&wrong).unwrap();
    assert_eq!(
        sha256_hex(&now),
        wrong.file_name().unwrap().to_str().unwrap()
    );
}

#[tokio::test]
async fn a_layout_whose_index_is_a_device_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", layout.join("index.json")).unwrap();
    let out = tmp.path().join("out");
    mirror_tests::cli::mirror_bin(); // built before the clock starts
    let started = Instant::now();
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            &format!("oci:{}:x", path_str(&layout)),
            &format!("oci:{}", path_str(&out)),
        ],
        &[],
    )
    .await;
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("index.json") && all.contains("a device, not a regular file"),
        "{all}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A registry with basic auth, and a docker config naming `helper` as its
/// credential helper, found on `PATH` in `bin`.
async fn registry_with_helper(
    helper: &str,
    script: &str,
) -> (Registry, tempfile::TempDir, tempfile::TempDir) {
    let reg = Registry::start_htpasswd(&[("alice", "pw-for-alice")])
        .await
        .unwrap();
    let bin = tempfile::tempdir().unwrap();
    let program = bin.path().join(format!("docker-credential-{helper}"));
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        format!(r#"{{"credHelpers": {{"{}": "{helper}"}}}}"#, reg.host()),
    )
    .unwrap();
    (reg, bin, docker)
}

async fn copy_with_helper(reg: &Registry, bin: &Path, docker: &Path) -> (Run, Duration) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = format!("{}/app:v1", reg.host());
    mirror_tests::cli::mirror_bin(); // built before the clock starts
    let started = Instant::now();
    let run = mirror(
        &["copy", "--progress", "none", FIXTURE, &target],
        &[
            ("PATH", path.as_str()),
            ("DOCKER_CONFIG", path_str(docker)),
            ("MIRROR_CREDENTIAL_HELPER_TIMEOUT", "1s"),
        ],
    )
    .await;
    (run, started.elapsed())
}

#[tokio::test]
async fn a_credential_helper_that_never_answers_is_stopped_at_its_timeout() {
    let (reg, bin, docker) = registry_with_helper("hang", "#!/bin/sh\nexec sleep 600\n").await;
    let (run, took) = copy_with_helper(&reg, bin.path(), docker.path()).await;
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("docker-credential-hang")
            && all.contains("within 1s")
            && all.contains("MIRROR_CREDENTIAL_HELPER_TIMEOUT"),
        "{all}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    reg.assert_nothing_written();
}

#[tokio::test]
async fn a_credential_helper_that_prints_without_end_is_stopped_at_the_bound() {
    let (reg, bin, docker) = registry_with_helper(
        "chatty",
        "#!/bin/sh\nwhile :; do echo 'not-a-secret-but-endless-output-xxxxxxxxxxxxxxxxxxxxxxxxxxxx'; done\n",
    )
    .await;
    let (run, took) = copy_with_helper(&reg, bin.path(), docker.path()).await;
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("docker-credential-chatty") && all.contains("more than 1048576 bytes"),
        "{all}"
    );
    assert!(!all.contains("endless-output"), "{all}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    reg.assert_nothing_written();
}
