//! Logins as skopeo and podman take them, against real registries with
//! htpasswd and token auth: `--src-*`/`--dest-*` (a password from a
//! variable or standard input, a bearer token from a variable, an auth
//! file), `--authfile`, the auth files podman, skopeo and docker write, in
//! their order; each side's login sent to its own registries only; a
//! refused or missing login saying how to log in, with no secret in any
//! output.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use mirror_tests::cli::{command, Run};
use mirror_tests::images::{client, image, push_image, repo};
use mirror_tests::{Registry, RegistryOptions, TokenServer, TokenServerOptions};
use registry_client::{Credential, Reference};
use tokio::io::AsyncWriteExt;

const FIXTURE: &str = "oci:fixtures/azureml:cap/lifecycler/installed:eastus-stable";
const SRC_PASSWORD: &str = "src-pw-Kq7#";
const DEST_PASSWORD: &str = "dest-pw-Zx9$";

/// `mirror ARGS` in a home of its own: `HOME`, `XDG_RUNTIME_DIR` and the
/// state directory inside `home`, no `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`
/// or `XDG_CONFIG_HOME` of the machine's user; `env` on top, `stdin` on
/// standard input.
async fn run_in(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = command(args, &[]);
    for var in ["REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"] {
        cmd.env_remove(var);
    }
    let runtime = home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    cmd.env("HOME", home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("MIRROR_STATE_DIR", home.join("state"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut input = child.stdin.take().unwrap();
        input.write_all(text.as_bytes()).await.unwrap();
        drop(input);
    }
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An auth file's text: `user:password` for each host.
fn auth_file(entries: &[(&str, &str, &str)]) -> String {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(host, user, password)| {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (host.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    serde_json::json!({ "auths": auths }).to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The digest `host/name:tag` names, asked as `user`.
async fn digest_as(
    host: &str,
    user: &str,
    password: &str,
    name: &str,
    tag: &str,
) -> Option<String> {
    let r = Reference::parse(&format!("{host}/{name}:{tag}")).unwrap();
    client(host, Some(Credential::basic(user, password)))
        .head_manifest(&r)
        .await
        .unwrap()
        .map(|i| i.digest.to_string())
}

/// Two htpasswd registries, alice's and bob's, the source holding
/// `src/app:v1`; returns them and the image's digest.
async fn two_registries() -> (Registry, Registry, String) {
    let src = Registry::start_htpasswd(&[("alice", SRC_PASSWORD)])
        .await
        .unwrap();
    let dest = Registry::start_htpasswd(&[("bob", DEST_PASSWORD)])
        .await
        .unwrap();
    let img = image(7, &[300, 200], false);
    let c = client(&src.host(), Some(Credential::basic("alice", SRC_PASSWORD)));
    let digest = push_image(&c, &repo(&src.host(), "src/app"), "v1", &img).await;
    (src, dest, digest.to_string())
}

/// Everything a run printed.
fn all(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

#[tokio::test]
async fn copy_takes_the_source_password_from_a_variable_and_the_destination_s_from_standard_input()
{
    let (src, dest, digest) = two_registries().await;
    let home = tempfile::tempdir().unwrap();
    let from = format!("{}/src/app:v1", src.host());
    let to = format!("{}/dst/app:v1", dest.host());
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            "--src-username",
            "alice",
            "--src-password-env",
            "SRC_PW",
            "--dest-username",
            "bob",
            "--dest-password-stdin",
            &from,
            &to,
        ],
        &[("SRC_PW", SRC_PASSWORD)],
        Some(&format!("{DEST_PASSWORD}\n")),
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        digest_as(&dest.host(), "bob", DEST_PASSWORD, "dst/app", "v1").await,
        Some(digest)
    );
    assert!(!all(&run).contains(SRC_PASSWORD) && !all(&run).contains(DEST_PASSWORD));
}

#[tokio::test]
async fn the_destination_s_login_is_never_sent_to_the_source_registry_nor_the_source_s_to_the_destination(
) {
    let (src, src_tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_user("alice", SRC_PASSWORD),
    )
    .await
    .unwrap();
    let (dest, dest_tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_user("bob", DEST_PASSWORD),
    )
    .await
    .unwrap();
    let img = image(8, &[400], false);
    let c = client(&src.host(), Some(Credential::basic("alice", SRC_PASSWORD)));
    push_image(&c, &repo(&src.host(), "src/app"), "v1", &img).await;
    src_tokens.clear_requests();
    let home = tempfile::tempdir().unwrap();
    let from = format!("{}/src/app:v1", src.host());
    let to = format!("{}/dst/app:v1", dest.host());
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            "--src-username",
            "alice",
            "--src-password-stdin",
            "--dest-username",
            "bob",
            "--dest-password-env",
            "DEST_PW",
            &from,
            &to,
        ],
        &[("DEST_PW", DEST_PASSWORD), ("MIRROR_LOG", "debug")],
        Some(&format!("{SRC_PASSWORD}\n")),
    )
    .await;
    run.assert_code(0);
    let users = |t: &TokenServer| -> Vec<Option<String>> {
        t.requests().into_iter().map(|r| r.username).collect()
    };
    let (at_src, at_dest) = (users(&src_tokens), users(&dest_tokens));
    assert!(at_src.contains(&Some("alice".into())), "{at_src:?}");
    assert!(at_dest.contains(&Some("bob".into())), "{at_dest:?}");
    assert!(!at_src.contains(&Some("bob".into())), "{at_src:?}");
    assert!(!at_dest.contains(&Some("alice".into())), "{at_dest:?}");
    assert!(!all(&run).contains(SRC_PASSWORD) && !all(&run).contains(DEST_PASSWORD));
}

#[tokio::test]
async fn export_logs_in_with_src_flags_and_import_with_dest_flags() {
    let (src, dest, digest) = two_registries().await;
    let home = tempfile::tempdir().unwrap();
    let bundle = home.path().join("bundle.tar");
    let from = format!("{}/src/app:v1", src.host());
    let run = run_in(
        home.path(),
        &[
            "export",
            "--progress",
            "none",
            "--src-username",
            "alice",
            "--src-password-env",
            "SRC_PW",
            &from,
            "--to",
            s(&bundle),
        ],
        &[("SRC_PW", SRC_PASSWORD)],
        None,
    )
    .await;
    run.assert_code_of("export", 0);
    let run = run_in(
        home.path(),
        &[
            "import",
            "--progress",
            "none",
            "--dest-username",
            "bob",
            "--dest-password-stdin",
            s(&bundle),
            "--to",
            &format!("{}/mirrored", dest.host()),
        ],
        &[],
        Some(&format!("{DEST_PASSWORD}\n")),
    )
    .await;
    run.assert_code_of("import", 0);
    assert_eq!(
        digest_as(&dest.host(), "bob", DEST_PASSWORD, "mirrored/src/app", "v1").await,
        Some(digest)
    );
}

/// A token for `scope` from `tokens`, asked as `user`.
async fn token_for(tokens: &TokenServer, user: &str, password: &str, scope: &str) -> String {
    let resp = reqwest::Client::new()
        .get(tokens.realm())
        .query(&[("service", tokens.service()), ("scope", scope)])
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_bearer_token_from_a_variable_is_sent_as_it_is_to_its_side_only() {
    let (src, src_tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_user("alice", SRC_PASSWORD),
    )
    .await
    .unwrap();
    let (dest, dest_tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_user("bob", DEST_PASSWORD),
    )
    .await
    .unwrap();
    let img = image(9, &[500], false);
    let c = client(&src.host(), Some(Credential::basic("alice", SRC_PASSWORD)));
    let digest = push_image(&c, &repo(&src.host(), "src/app"), "v1", &img).await;
    let pull = token_for(
        &src_tokens,
        "alice",
        SRC_PASSWORD,
        "repository:src/app:pull",
    )
    .await;
    let push = token_for(
        &dest_tokens,
        "bob",
        DEST_PASSWORD,
        "repository:dst/app:pull,push",
    )
    .await;
    src_tokens.clear_requests();
    dest_tokens.clear_requests();
    let home = tempfile::tempdir().unwrap();
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            "--src-registry-token-env",
            "SRC_TOKEN",
            "--dest-registry-token-env",
            "DEST_TOKEN",
            &format!("{}/src/app:v1", src.host()),
            &format!("{}/dst/app:v1", dest.host()),
        ],
        &[
            ("SRC_TOKEN", pull.as_str()),
            ("DEST_TOKEN", push.as_str()),
            ("MIRROR_LOG", "debug"),
        ],
        None,
    )
    .await;
    run.assert_code(0);
    // Used as given: neither token server was asked for another.
    assert_eq!(src_tokens.requests(), vec![]);
    assert_eq!(dest_tokens.requests(), vec![]);
    assert_eq!(
        digest_as(&dest.host(), "bob", DEST_PASSWORD, "dst/app", "v1").await,
        Some(digest.to_string())
    );
    assert!(!all(&run).contains(&pull) && !all(&run).contains(&push));
}

#[tokio::test]
async fn authfile_is_read_alone_and_each_side_may_have_its_own() {
    let (src, dest, digest) = two_registries().await;
    let home = tempfile::tempdir().unwrap();
    let from = format!("{}/src/app:v1", src.host());
    let to = format!("{}/dst/app:v1", dest.host());
    // Docker's config has both logins; --authfile names a file with the
    // source's alone: the destination gets none, as skopeo reads it.
    write(
        &home.path().join(".docker/config.json"),
        &auth_file(&[
            (&src.host(), "alice", SRC_PASSWORD),
            (&dest.host(), "bob", DEST_PASSWORD),
        ]),
    );
    let src_only = home.path().join("src-auth.json");
    write(
        &src_only,
        &auth_file(&[(&src.host(), "alice", SRC_PASSWORD)]),
    );
    let dest_only = home.path().join("dest-auth.json");
    write(
        &dest_only,
        &auth_file(&[(&dest.host(), "bob", DEST_PASSWORD)]),
    );
    let args = [
        "copy",
        "--progress",
        "none",
        "--authfile",
        s(&src_only),
        &from,
        &to,
    ];
    let run = run_in(home.path(), &args, &[], None).await;
    run.assert_code_of("--authfile with the source's login alone", 3);
    assert!(
        run.stderr.contains("--authfile PATH") || run.stderr.contains("--dest-authfile PATH"),
        "{}",
        run.stderr
    );

    std::fs::remove_file(home.path().join(".docker/config.json")).unwrap();
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            "--src-authfile",
            s(&src_only),
            "--dest-authfile",
            s(&dest_only),
            &from,
            &to,
        ],
        &[],
        None,
    )
    .await;
    run.assert_code_of("--src-authfile and --dest-authfile", 0);
    assert_eq!(
        digest_as(&dest.host(), "bob", DEST_PASSWORD, "dst/app", "v1").await,
        Some(digest)
    );

    // A named file that is not there is an error naming it, not no login.
    let missing = home.path().join("nope.json");
    let run = run_in(
        home.path(),
        &["copy", "--authfile", s(&missing), &from, &to],
        &[],
        None,
    )
    .await;
    run.assert_code_of("a missing --authfile", 2);
    assert!(run.stderr.contains(s(&missing)), "{}", run.stderr);
}

#[tokio::test]
async fn auth_files_are_read_in_podman_s_order_the_first_holding_the_registry_winning() {
    let reg = Registry::start_htpasswd(&[("alice", SRC_PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let registry_auth_file = h.join("elsewhere/auth.json");
    // podman's and skopeo's order, then docker's.
    let levels = [
        h.join("elsewhere/auth.json"),
        h.join("run/containers/auth.json"),
        h.join(".config/containers/auth.json"),
        h.join(".docker/config.json"),
    ];
    let right = auth_file(&[(&host, "alice", SRC_PASSWORD)]);
    let wrong = auth_file(&[(&host, "alice", "not-the-password-W1")]);
    let other = auth_file(&[("other.example", "x", "y")]);
    let (host, registry_auth_file) = (&host, &registry_auth_file);
    let copy = |tag: String| async move {
        let to = format!("{host}/app:{tag}");
        let env: Vec<(&str, &str)> = if registry_auth_file.exists() {
            vec![("REGISTRY_AUTH_FILE", s(registry_auth_file))]
        } else {
            vec![]
        };
        run_in(h, &["copy", "--progress", "none", FIXTURE, &to], &env, None).await
    };
    for (k, level) in levels.iter().enumerate() {
        for l in &levels {
            let _ = std::fs::remove_file(l);
        }
        // This level holds the right login, every later one a wrong one:
        // it wins over them.
        write(level, &right);
        for later in &levels[k + 1..] {
            write(later, &wrong);
        }
        let run = copy(format!("beats{k}")).await;
        run.assert_code_of(&format!("right login in {}", level.display()), 0);
        // A file that holds other registries only is passed over (except
        // $REGISTRY_AUTH_FILE, read alone as podman reads it).
        if k + 1 < levels.len() && k > 0 {
            write(level, &other);
            write(&levels[k + 1], &right);
            let run = copy(format!("passes{k}")).await;
            run.assert_code_of(&format!("{} holds another registry", level.display()), 0);
        }
    }
    // $REGISTRY_AUTH_FILE without the registry: no other file is asked.
    for l in &levels {
        let _ = std::fs::remove_file(l);
    }
    write(&levels[0], &other);
    write(&levels[3], &right);
    let run = copy("alone".into()).await;
    run.assert_code_of("$REGISTRY_AUTH_FILE is read alone", 3);
}

#[tokio::test]
async fn a_wrong_password_fails_with_the_login_hint_and_the_password_appears_nowhere() {
    let reg = Registry::start_htpasswd(&[("alice", SRC_PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let to = format!("{host}/app:v1");
    let wrong = "wrong-pw-NEVER-SHOWN-31";
    for output in ["text", "json"] {
        let run = run_in(
            home.path(),
            &[
                "copy",
                "--progress",
                "plain",
                "--output",
                output,
                "--dest-username",
                "alice",
                "--dest-password-env",
                "PW",
                FIXTURE,
                &to,
            ],
            &[("PW", wrong), ("MIRROR_LOG", "trace")],
            None,
        )
        .await;
        run.assert_code(3);
        let printed = all(&run);
        // Nor as it goes on the wire, in a Basic header.
        let header = base64::engine::general_purpose::STANDARD.encode(format!("alice:{wrong}"));
        assert!(
            !printed.contains(wrong) && !printed.contains(&header),
            "{printed}"
        );
        assert!(
            run.stderr
                .contains(&format!("hint: {host} refused the login"))
                && run.stderr.contains(&format!("`docker login {host}`"))
                && run
                    .stderr
                    .contains("--dest-username NAME with --dest-password-env VAR"),
            "{}",
            run.stderr
        );
    }
    // The same from an auth file: the hint, and no password.
    write(
        &home.path().join(".docker/config.json"),
        &auth_file(&[(&host, "alice", wrong)]),
    );
    let run = run_in(
        home.path(),
        &["copy", "--progress", "none", FIXTURE, &to],
        &[("MIRROR_LOG", "debug")],
        None,
    )
    .await;
    run.assert_code(3);
    assert!(!all(&run).contains(wrong), "{}", all(&run));
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
}

#[tokio::test]
async fn no_login_for_a_registry_that_needs_one_says_how_to_log_in() {
    let reg = Registry::start_htpasswd(&[("alice", SRC_PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            FIXTURE,
            &format!("{host}/app:v1"),
        ],
        &[],
        None,
    )
    .await;
    run.assert_code(3);
    assert!(
        run.stderr.contains(&format!(
            "hint: {host} asks for a login and none was found for it: log in with `docker login {host}` or `podman login {host}`"
        )) && run.stderr.contains("--dest-username"),
        "{}",
        run.stderr
    );
    // The source's flags for a source that needs a login.
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            &format!("{host}/app:v1"),
            &format!("oci:{}", s(&out)),
        ],
        &[],
        None,
    )
    .await;
    run.assert_code(3);
    assert!(
        run.stderr
            .contains(&format!("hint: {host} asks for a login"))
            && run
                .stderr
                .contains("--src-username NAME with --src-password-env VAR"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_password_or_token_given_as_an_argument_is_refused_and_not_repeated() {
    let home = tempfile::tempdir().unwrap();
    let secret = "argv-SECRET-value-77";
    let creds = format!("alice:{secret}");
    for (flag, value, says) in [
        ("--src-password", secret, "--src-password-env VAR"),
        ("--dest-password", secret, "--dest-password-stdin"),
        ("--src-creds", creds.as_str(), "--src-username USER"),
        ("--dest-creds", creds.as_str(), "--dest-password-env VAR"),
        (
            "--src-registry-token",
            secret,
            "--src-registry-token-env VAR",
        ),
        (
            "--dest-registry-token",
            secret,
            "--dest-registry-token-env VAR",
        ),
    ] {
        let run = run_in(
            home.path(),
            &["copy", flag, value, "127.0.0.1:1/a:v1", "127.0.0.1:2/b:v1"],
            &[],
            None,
        )
        .await;
        run.assert_code_of(flag, 2);
        assert!(!all(&run).contains(secret), "{flag}: {}", all(&run));
        assert!(
            run.stderr.contains("never taken as an argument") && run.stderr.contains(says),
            "{flag}: {}",
            run.stderr
        );
    }
    // Standard input holds one password.
    let run = run_in(
        home.path(),
        &[
            "copy",
            "--src-username",
            "a",
            "--src-password-stdin",
            "--dest-username",
            "b",
            "--dest-password-stdin",
            "127.0.0.1:1/a:v1",
            "127.0.0.1:2/b:v1",
        ],
        &[],
        Some("one\ntwo\n"),
    )
    .await;
    run.assert_code_of("two --*-password-stdin", 2);
    assert!(run.stderr.contains("one password"), "{}", run.stderr);
}

#[tokio::test]
async fn a_sync_whose_login_is_refused_says_how_to_log_in_naming_the_config() {
    let reg = Registry::start_htpasswd(&[("alice", SRC_PASSWORD)])
        .await
        .unwrap();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let src = Registry::start_open().await.unwrap();
    let src_host = src.host();
    let seeded = run_in(
        home.path(),
        &[
            "copy",
            "--progress",
            "none",
            FIXTURE,
            &format!("{src_host}/app:v1"),
        ],
        &[],
        None,
    )
    .await;
    seeded.assert_code(0);
    let wrong = "wrong-sync-pw-NEVER-SHOWN-7";
    let config = home.path().join("sync.yaml");
    write(
        &config,
        &format!(
            "registries:\n  - host: \"{host}\"\n    credentials:\n      username: alice\n      password: \"{wrong}\"\nsync:\n  - source: \"{src_host}/app\"\n    tags: [v1]\n    target: \"{host}/app\"\n"
        ),
    );
    let run = run_in(
        home.path(),
        &["sync", config.to_str().unwrap(), "--progress", "none"],
        &[("MIRROR_LOG", "debug")],
        None,
    )
    .await;
    run.assert_code(3);
    assert!(!all(&run).contains(wrong), "{}", all(&run));
    assert!(
        run.stderr
            .contains(&format!("hint: {host} refused the login"))
            && run.stderr.contains("registries[].credentials")
            && run.stderr.contains("--authfile PATH"),
        "{}",
        run.stderr
    );
}
