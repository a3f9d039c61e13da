//! Deployment as the README gives it: `examples/cronjob.yaml` runs — its
//! config, args, environment and mounts, shard by shard, against real
//! registries — and `scripts/image.sh` builds a static image of mirror that
//! runs on its own and that mirror pushes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mirror_tests::cli::{command, workspace_root, Run};
use mirror_tests::images::client;
use mirror_tests::peers::{run_peer, skopeo_raw, umoci_ls};
use mirror_tests::podman::Podman;
use mirror_tests::Registry;
use registry_client::{Credential, Reference};
use serde_json::Value;

/// The YAML documents of a file, read by PyYAML (a parser of its own).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = run_peer(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
            path.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out).expect("PyYAML's JSON")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the example");
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Kubernetes' `$(VAR)` expansion of an argument: a variable the
/// container's environment defines is replaced, `$$` is a `$`, anything
/// else is left as written.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some((name, after)) = tail
            .strip_prefix("$(")
            .and_then(|t| t.split_once(')'))
            .filter(|(name, _)| env.contains_key(*name))
        {
            out.push_str(&env[name]);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Where a pod's mounts are on this machine: each mount path (the longest
/// first) and its directory.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    /// A path in the container, as a path here (unchanged outside mounts).
    fn local(&self, path: &str) -> String {
        for (mount, dir) in &self.0 {
            if path == mount {
                return dir.display().to_string();
            }
            if let Some(rest) = path.strip_prefix(&format!("{mount}/")) {
                return dir.join(rest).display().to_string();
            }
        }
        path.to_string()
    }

    /// `text` with every path value (`key: /path`) under a mount made local.
    fn localise_text(&self, text: &str) -> String {
        text.lines()
            .map(|line| match line.split_once(": /") {
                Some((key, path)) => format!("{key}: {}", self.local(&format!("/{path}"))),
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const ACR: &str = "myacr.azurecr.io";
const MCR: &str = "mcr.microsoft.com/azureml/runtime";
const PASSWORD: &str = "s3cret-acr-token-password";

#[tokio::test]
async fn the_cronjob_example_keeps_the_images_current_shard_by_shard() {
    let root = workspace_root();
    let example = root.join("examples/cronjob.yaml");
    let docs = yaml_documents(&example);
    let config_map = of_kind(&docs, "ConfigMap");
    let claim = of_kind(&docs, "PersistentVolumeClaim");
    let cron = of_kind(&docs, "CronJob");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    let pod = &job["template"]["spec"];

    // The shape the README promises.
    assert_eq!(job["completionMode"], "Indexed");
    let workers = job["completions"].as_u64().expect("completions");
    assert_eq!(job["parallelism"].as_u64(), Some(workers));
    assert_eq!(
        pod["restartPolicy"], "Never",
        "a failed pod must stay failed, not restart in place"
    );
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        str_of(&container["image"]),
        format!("{ACR}/mirror:{}", env!("CARGO_PKG_VERSION")),
        "the image scripts/image.sh builds, under the tag it gives"
    );
    assert_eq!(
        pod["securityContext"]["runAsUser"], 65532,
        "the image's user"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let after = |flag: &str| {
        let at = args.iter().position(|a| *a == flag);
        args[at.unwrap_or_else(|| panic!("{flag} in {args:?}")) + 1]
    };
    assert_eq!(args[0], "sync");
    assert_eq!(
        after("--shard"),
        format!("$(JOB_COMPLETION_INDEX)/{workers}")
    );
    assert!(
        after("--report").contains("$(JOB_COMPLETION_INDEX)"),
        "one report per worker"
    );

    // A small kubelet: each volume as a directory, the claim shared by
    // every pod, the rest each pod's own.
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_htpasswd(&[("mirror-sync", PASSWORD)])
        .await
        .unwrap();
    mirror_tests::fixtures::push_layout(
        &client(&src.host(), None),
        &src.host(),
        &root.join("fixtures/azureml"),
    )
    .await
    .unwrap();
    let cluster = tempfile::tempdir().unwrap();
    let claim_dir = cluster.path().join("claim");
    std::fs::create_dir(&claim_dir).unwrap();
    let volumes: BTreeMap<String, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (str_of(&v["name"]).to_string(), v))
        .collect();

    let run_pods = |round: &'static str| {
        let pods = (0..workers).map(|index| {
            let pod_dir = cluster.path().join(format!("{round}-pod-{index}"));
            let mut mounts = Vec::new();
            for m in container["volumeMounts"].as_array().unwrap() {
                let name = str_of(&m["name"]);
                let volume = volumes[name];
                let dir = if let Some(c) = volume.get("persistentVolumeClaim") {
                    assert_eq!(c["claimName"], claim["metadata"]["name"]);
                    claim_dir.clone()
                } else {
                    pod_dir.join(name)
                };
                std::fs::create_dir_all(&dir).unwrap();
                mounts.push((str_of(&m["mountPath"]).to_string(), dir));
            }
            mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
            let mounts = Mounts(mounts);
            for m in container["volumeMounts"].as_array().unwrap() {
                let volume = volumes[str_of(&m["name"])];
                let dir = PathBuf::from(mounts.local(str_of(&m["mountPath"])));
                if let Some(c) = volume.get("configMap") {
                    assert_eq!(c["name"], config_map["metadata"]["name"]);
                    for (file, text) in config_map["data"].as_object().unwrap() {
                        let text = mounts
                            .localise_text(str_of(text))
                            .replace(MCR, &src.host())
                            .replace(ACR, &dst.host());
                        std::fs::write(dir.join(file), text).unwrap();
                    }
                }
                if volume.get("secret").is_some() {
                    std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
                }
            }
            let mut env = BTreeMap::new();
            // The Job controller's variable for an Indexed Job.
            env.insert("JOB_COMPLETION_INDEX".to_string(), index.to_string());
            for e in container["env"].as_array().into_iter().flatten() {
                assert!(e.get("value").is_some(), "only literal env here: {e}");
                env.insert(str_of(&e["name"]).into(), str_of(&e["value"]).into());
            }
            let argv: Vec<String> = args
                .iter()
                .map(|a| mounts.local(&expand(a, &env)))
                .collect();
            let report = PathBuf::from(mounts.local(&expand(after("--report"), &env)));
            let tmp = mounts.local("/tmp");
            let home = pod_dir.join("home");
            std::fs::create_dir_all(&home).unwrap();
            async move {
                let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                let mut cmd = command(&refs, &[]);
                // The image's environment, and nothing of this machine's.
                cmd.env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("HOME", &home)
                    .env("TMPDIR", &tmp)
                    .envs(&env);
                let out = cmd.output().await.expect("running mirror");
                let run = Run {
                    code: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                };
                (index, run, report)
            }
        });
        futures::future::join_all(pods)
    };

    let mut sources = BTreeSet::new();
    for (index, run, report_path) in run_pods("first").await {
        run.assert_code_of(&format!("worker {index}"), 0);
        let text = std::fs::read_to_string(&report_path)
            .unwrap_or_else(|e| panic!("worker {index}'s report {report_path:?}: {e}"));
        for shown in [&text, &run.stdout, &run.stderr] {
            assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
        }
        let report: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["failed"], 0, "{report}");
        assert!(
            report["shard"].to_string().contains(&index.to_string()),
            "{report}"
        );
        for image in report["images"].as_array().unwrap() {
            assert_eq!(image["status"], "copied", "{image}");
            assert!(
                sources.insert(str_of(&image["source"]).to_string()),
                "twice: {image}"
            );
        }
    }
    let repositories = mirror::azureml::images::RUNTIME_REPOSITORIES;
    let expected: BTreeSet<String> = repositories
        .iter()
        .map(|r| format!("{}/{r}:eastus-stable", src.host()))
        .collect();
    assert_eq!(
        sources, expected,
        "the workers together took every image once"
    );
    let pusher = client(
        &dst.host(),
        Some(Credential::basic("mirror-sync", PASSWORD)),
    );
    let anonymous = client(&src.host(), None);
    for r in repositories {
        let at = |host: String, tag: &str| Reference::parse(&format!("{host}/{r}:{tag}")).unwrap();
        let want = anonymous
            .head_manifest(&at(src.host(), "eastus-stable"))
            .await
            .unwrap();
        let got = pusher
            .head_manifest(&at(dst.host(), "stable"))
            .await
            .unwrap();
        assert_eq!(got.map(|i| i.digest), want.map(|i| i.digest), "{r}:stable");
    }

    // The next scheduled run finds everything current: exit 0 again.
    for (index, run, report_path) in run_pods("second").await {
        run.assert_code_of(&format!("worker {index}, second run"), 0);
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        assert_eq!(report["copied"], 0, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
}

/// The example against Kubernetes' own schemas (unknown or misplaced
/// fields), with `kubernetes-validate` where it is installed.
#[test]
fn the_cronjob_example_passes_the_kubernetes_schemas() {
    let example = workspace_root().join("examples/cronjob.yaml");
    let Ok(out) = Command::new("kubernetes-validate")
        .args(["--strict", example.to_str().unwrap()])
        .output()
    else {
        println!("SKIPPED: kubernetes-validate is not installed (pip install kubernetes-validate)");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `podman run --rm ARGS…` with the harness's isolated podman, which must
/// succeed: its standard output.
///
/// Also what lets a container start in a sandbox like this one's (root
/// without CAP_SYS_RESOURCE, cgroup v1 beside a cgroup2 mount): limits
/// lowered rather than raised to podman's defaults, which crun may not
/// set; no cgroups of the container's own; and, in a private mount
/// namespace, the cgroup2 mount out of the way, as crun refuses such a
/// hybrid. Anywhere else these change nothing the test looks at.
fn run_container(podman: &Podman, args: &[&str]) -> String {
    let mut all = vec![
        "run",
        "--rm",
        "--network",
        "host",
        "--cgroups",
        "disabled",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
    ];
    all.extend(args);
    let inner = podman.command(&all);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"",
    ])
    .arg(inner.get_program())
    .args(inner.get_args())
    .env_clear()
    .stdin(Stdio::null());
    for (name, value) in inner.get_envs() {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    let out = cmd.output().expect("running unshare and podman");
    assert!(
        out.status.success(),
        "podman {}: {}{}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_image_script_builds_a_static_image_that_runs_and_that_mirror_pushes() {
    let root = workspace_root();
    let dst = Registry::start_open().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let image = format!("{}/mirror:test", dst.host());
    // The dev profile keeps this test's build to a few minutes on a small
    // machine (README, "Install"); the release build is the same script.
    let out = Command::new(root.join("scripts/image.sh"))
        .arg(&image)
        .env("PROFILE", "dev")
        .env("OUT", &layout)
        // Less to compile, link and compress: this test's build only.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("running scripts/image.sh");
    assert!(
        out.status.success(),
        "scripts/image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(umoci_ls(&layout).trim(), version);

    // What mirror pushed is the layout's manifest, byte for byte.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = str_of(&index["manifests"][0]["digest"]).to_string();
    let blob =
        |d: &str| std::fs::read(layout.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap();
    let manifest = blob(&digest);
    assert_eq!(skopeo_raw(&format!("docker://{image}")), manifest);
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(str_of(&manifest["config"]["digest"]))).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/mirror");
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into()));

    // The same source gives the same image (fixed times, owners, order).
    let again = work.path().join("again");
    let out = Command::new(root.join("scripts/image.sh"))
        .env("PROFILE", "dev")
        .env("OUT", &again)
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index_again = std::fs::read(again.join("index.json")).unwrap();
    assert_eq!(
        index_again,
        std::fs::read(layout.join("index.json")).unwrap(),
        "reproducible"
    );

    // The rootfs: the binary and nothing it would need to load.
    let bundle = work.path().join("bundle");
    run_peer(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{version}", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    let binary = rootfs.join("usr/local/bin/mirror");
    let dynamic =
        String::from_utf8(run_peer("readelf", &["-d", binary.to_str().unwrap()])).unwrap();
    assert!(!dynamic.contains("NEEDED"), "a dynamic binary: {dynamic}");
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .contains("mirror:x:65532:65532:"));
    assert!(
        std::fs::metadata(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
            .unwrap()
            .len()
            > 1000
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(rootfs.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );

    // A real runtime pulls what mirror pushed and runs it: its version,
    // then a copy of itself out of the registry by the name `localhost`,
    // which static glibc resolves through /etc/hosts, keeping its resume
    // state in the home directory the image gives its user.
    let podman = Podman::new();
    podman
        .pull(&image, None)
        .expect("podman pulls what mirror pushed");
    let shown = run_container(&podman, &[&image, "--version"]);
    assert_eq!(shown.trim(), format!("mirror {version}"));
    let volume = work.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o777)).unwrap();
    let by_name = format!("localhost:{}/mirror:test", dst.port());
    let copied = run_container(
        &podman,
        &[
            "-v",
            &format!("{}:/out", volume.display()),
            &image,
            "copy",
            "--progress",
            "none",
            &by_name,
            "oci:/out/copy",
        ],
    );
    let copy_index: Value =
        serde_json::from_slice(&std::fs::read(volume.join("copy/index.json")).unwrap()).unwrap();
    assert_eq!(
        copy_index["manifests"][0]["digest"],
        digest.as_str(),
        "{copied}"
    );
}
