//! Runs the `mirror` binary as users do, for tests of the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The `mirror` binary, built once per test process (the tests crate
/// cannot name another package's binary directly).
pub fn mirror_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_executable(&["-p", "mirror", "--bin", "mirror"], "mirror"))
        .clone()
}

/// An example of a workspace package (`registry-client`'s `inspect`),
/// built once per test process: `cargo test -p mirror-tests` builds no
/// other package's examples.
pub fn example_bin(package: &str, example: &str) -> PathBuf {
    static BINS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut bins = BINS.lock().unwrap_or_else(|e| e.into_inner());
    bins.entry(format!("{package}/{example}"))
        .or_insert_with(|| build_executable(&["-p", package, "--example", example], example))
        .clone()
}

/// `cargo build --quiet ARGS`, and the executable cargo reports for `name`.
fn build_executable(args: &[&str], name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--message-format", "json"])
        .args(args)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(out.status.success(), "cargo build {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `mirror` with arguments and environment, ready to spawn (for tests that
/// signal or kill it).
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(mirror_bin());
    cmd.args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// What a run of `mirror` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON report (`--output json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Panics unless `mirror` exited with `code`, showing all it printed:
    /// the code alone rarely says why.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{}{}", self.stdout, self.stderr);
        self
    }

    /// [`Run::assert_code`] for a test that runs `mirror` several times:
    /// `what` says which run it was.
    #[track_caller]
    pub fn assert_code_of(&self, what: &str, code: i32) -> &Self {
        assert_eq!(self.code, code, "{what}: {}{}", self.stdout, self.stderr);
        self
    }
}

/// Run `mirror` with arguments and extra environment variables. Each run
/// gets a state directory of its own (tests in parallel would otherwise
/// share the user's, and one would meet another's state) unless the
/// arguments or the environment name one.
pub async fn mirror(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command(args, env);
    let own_state = tempfile::tempdir().expect("state directory");
    let named = args.iter().any(|a| a.starts_with("--state-dir"))
        || env.iter().any(|(k, _)| *k == "MIRROR_STATE_DIR");
    if !named {
        cmd.env("MIRROR_STATE_DIR", own_state.path());
    }
    let out = cmd.output().await.expect("running mirror");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mirror SUBCOMMAND --progress none ARGS…`: without progress lines a
/// failure's message shows the error alone.
pub async fn quiet(subcommand: &str, args: &[&str]) -> Run {
    let mut all = vec![subcommand, "--progress", "none"];
    all.extend_from_slice(args);
    mirror(&all, &[]).await
}

/// `mirror copy ARGS…`, which must succeed.
pub async fn copy_ok(args: &[&str]) {
    quiet("copy", args)
        .await
        .assert_code_of(&format!("copy {args:?}"), 0);
}

/// `mirror sync --progress none --output json CONFIG` with an empty docker
/// config, so no credentials of the machine's user take part.
pub async fn sync_json(config: &std::path::Path) -> Run {
    let docker = tempfile::tempdir().expect("docker config directory");
    let args = ["sync", "--progress", "none", "--output", "json"];
    let config = config.to_str().expect("a UTF-8 config path");
    let mut all = args.to_vec();
    all.push(config);
    let docker_dir = docker.path().to_str().expect("a UTF-8 temporary path");
    mirror(&all, &[("DOCKER_CONFIG", docker_dir)]).await
}

/// `mirror copy --output json ARGS…`, for tests that read the report.
pub async fn copy_json<S: AsRef<str>>(args: &[S]) -> Run {
    let mut all = vec!["--output", "json"];
    all.extend(args.iter().map(AsRef::as_ref));
    quiet("copy", &all).await
}

/// Run `mirror` with `stdin_text` on standard input (the `--…-stdin`
/// options), in a state directory of its own.
pub async fn mirror_with_stdin(args: &[&str], env: &[(&str, &str)], stdin_text: &str) -> Run {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = command(args, env);
    cmd.env("MIRROR_STATE_DIR", state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(stdin_text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The images of a JSON report (`copy`, `sync`, `azureml sync`) with this
/// `status`, in report order.
pub fn images_with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a Value> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == status)
        .collect()
}
