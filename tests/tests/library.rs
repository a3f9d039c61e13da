//! registry-client as a library others use: its example program
//! (`registry-client/examples/inspect.rs`), built as a user builds it and
//! run against a real registry with docker's credentials.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use mirror_tests::cli::example_bin;
use mirror_tests::images::{client, image, push_image, push_index, repo};
use mirror_tests::Registry;
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::Credential;

const PASSWORD: &str = "inspect-SECRET-pw";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The example with `args`, its credentials only from `home` (docker's
/// and podman's auth files there, nowhere else).
async fn inspect(args: &[&str], home: &Path) -> Run {
    let out = tokio::process::Command::new(example_bin("registry-client", "inspect"))
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running the inspect example");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker login` as alice: her `auth` in `home/.docker/config.json`.
fn docker_login(home: &Path, registry: &str) {
    let dir = home.join(".docker");
    std::fs::create_dir_all(&dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[tokio::test]
async fn the_inspect_example_shows_an_index_its_platforms_layers_and_tags() {
    let reg = Registry::start_htpasswd(&[("alice", PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let c = client(&host, Some(Credential::basic("alice", PASSWORD)));
    let r = repo(&host, "team/app");
    let amd64 = image(71, &[300, 500], false);
    let arm64 = image(72, &[400], false);
    let (_, index, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64")],
        false,
    )
    .await;
    push_image(&c, &r, "single", &amd64).await;
    let home = tempfile::tempdir().unwrap();
    docker_login(home.path(), &host);

    let run = inspect(&[&format!("{host}/team/app:v1")], home.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in\n{out}"))
            .to_string()
    };
    assert_eq!(
        line("reference:"),
        format!("reference:  {host}/team/app:v1")
    );
    assert_eq!(line("digest:"), format!("digest:     {index}"));
    assert_eq!(line("media type:"), format!("media type: {OCI_INDEX}"));
    assert_eq!(line("platforms:"), "platforms:  2");
    assert!(
        out.contains(&format!("  linux/amd64 {}\n", amd64.digest)),
        "{out}"
    );
    assert!(
        out.contains(&format!("  linux/arm64 {}\n", arm64.digest)),
        "{out}"
    );
    // Each platform's config and layers, by digest and size.
    for (img, layers) in [
        (&amd64, "layers: 2 (800 bytes)"),
        (&arm64, "layers: 1 (400 bytes)"),
    ] {
        let config = registry_client::Digest::sha256_of(&img.config);
        assert!(out.contains(&format!("    config: {config} ")), "{out}");
        assert!(out.contains(&format!("    {layers}\n")), "{out}");
        for l in &img.layers {
            let d = registry_client::Digest::sha256_of(l);
            assert!(
                out.contains(&format!(
                    "      {d} application/vnd.oci.image.layer.v1.tar+gzip {} bytes\n",
                    l.len()
                )),
                "{d} missing in\n{out}"
            );
        }
    }
    // Every tag (in whatever order the registry lists them); nothing
    // printed shows the password.
    let mut tags: Vec<String> = line("tags:")
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    tags.sort();
    assert_eq!(tags, ["single", "v1"], "{out}");
    assert!(!out.contains(PASSWORD) && !run.stderr.contains(PASSWORD));

    // A single image shows its layers without a platform list.
    let run = inspect(&[&format!("{host}/team/app:single")], home.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("digest:     {}\n", amd64.digest))
            && run
                .stdout
                .contains(&format!("media type: {OCI_MANIFEST}\n"))
            && run.stdout.contains("\nlayers: 2 (800 bytes)\n")
            && !run.stdout.contains("platforms:"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn the_inspect_example_fails_with_the_registrys_reasons_and_exit_codes() {
    let reg = Registry::start_htpasswd(&[("alice", PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let c = client(&host, Some(Credential::basic("alice", PASSWORD)));
    push_image(
        &c,
        &repo(&host, "team/app"),
        "v1",
        &image(73, &[100], false),
    )
    .await;
    let nobody = tempfile::tempdir().unwrap();
    let alice = tempfile::tempdir().unwrap();
    docker_login(alice.path(), &host);

    // No credentials: an auth error naming the registry, exit 3.
    let run = inspect(&[&format!("{host}/team/app:v1")], nobody.path()).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains(&format!("authentication to {host} failed")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // A tag that does not exist: the registry's code and the URL, exit 1.
    let run = inspect(&[&format!("{host}/team/app:nope")], alice.path()).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("MANIFEST_UNKNOWN")
            && run.stderr.contains("/v2/team/app/manifests/nope"),
        "{}",
        run.stderr
    );

    // Nothing listens: the cause, not only "error sending request", exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = inspect(&[&format!("{closed}/team/app:v1")], alice.path()).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );

    // A bad reference and a missing argument: usage errors, exit 2.
    let run = inspect(&["Team/App:v1"], alice.path()).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("invalid reference \"Team/App:v1\""),
        "{}",
        run.stderr
    );
    let run = inspect(&[], alice.path()).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("usage: inspect IMAGE"),
        "{}",
        run.stderr
    );
}
