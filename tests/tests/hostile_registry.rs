//! The hostile registry's catalogue, one test per misbehaviour: the real
//! `mirror` binary copies two images, one from (or to) the misbehaving
//! repository and one that behaves, and each run must end in time, without
//! a panic, with memory bounded, with the hostile image failed under a
//! clear error (or, where the misbehaviour is harmless, copied) and nothing
//! of it under a final name, and with the good image copied.
//!
//! The cases are one table: [`Case`] values built by the `hostile!` macro,
//! each its own `#[test]`. `tests/HOSTILE-CATALOGUE.md` is the same table
//! in prose.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Method;
use mirror_tests::cli::command;
use mirror_tests::hostile_registry::{HostileRegistry, Misbehaviour, EVIL, GOOD, TAG};
use registry_client::Digest;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// Any run slower than this is a hang.
const RUN_LIMIT: Duration = Duration::from_secs(45);
/// The most resident memory a run may reach (debug build).
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// How mirror meets the hostile repository.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `mirror copy` from `evil:v1` (and from `good:v1`) into OCI layouts.
    Source,
    /// `mirror copy` from `good:v1` into `evil:v1` (and into a layout).
    Target,
    /// `mirror sync` listing `evil`'s tags (and `good:v1` by name).
    Sync,
}

/// What credentials mirror has for the hostile registry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Creds {
    None,
    /// A user name and password (docker config `auth`).
    Basic,
    /// An OAuth2 refresh token (docker config `identitytoken`).
    Refresh,
}

/// How the run must end.
#[derive(Clone, Copy)]
enum Expect {
    /// The hostile image fails with this exit code and an error holding
    /// every substring; the good image is copied.
    Fails(i32, &'static [&'static str]),
    /// The misbehaviour is harmless: both images are copied.
    Copied,
}

/// One row of the catalogue.
#[derive(Clone, Copy)]
struct Case {
    misbehaviour: Misbehaviour,
    way: Way,
    expect: Expect,
    creds: Creds,
    /// The good image comes from a second, well-behaved registry (where the
    /// misbehaviour takes the whole host: its token realm).
    good_elsewhere: bool,
    /// Extra arguments for `mirror`.
    args: &'static [&'static str],
    /// A check of what the server saw.
    check: fn(&HostileRegistry, &Outcome),
}

const CASE: Case = Case {
    misbehaviour: Misbehaviour::None,
    way: Way::Source,
    expect: Expect::Copied,
    creds: Creds::None,
    good_elsewhere: false,
    args: &[],
    check: |_, _| {},
};

/// What a run of mirror did.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    peak_kib: u64,
    elapsed: Duration,
}

macro_rules! hostile {
    ($($(#[$doc:meta])* $name:ident: $case:expr;)*) => {
        $(
            $(#[$doc])*
            #[tokio::test]
            async fn $name() {
                run_case($case).await;
            }
        )*
    };
}

fn fails(code: i32, says: &'static [&'static str]) -> Expect {
    Expect::Fails(code, says)
}

/// No request reached the foreign listener.
fn nothing_elsewhere(reg: &HostileRegistry, _: &Outcome) {
    let seen = reg.seen_elsewhere();
    assert!(seen.is_empty(), "requests went elsewhere: {seen:#?}");
}

/// The run did not wait out the server's pause.
fn quick(_: &HostileRegistry, out: &Outcome) {
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
}

hostile! {
    // ---- digests and sizes ----
    docker_content_digest_that_lies: Case {
        misbehaviour: Misbehaviour::DigestHeaderLies,
        expect: fails(1, &["digest mismatch", "expected sha256:"]),
        ..CASE
    };
    blob_longer_than_its_descriptor: Case {
        misbehaviour: Misbehaviour::BlobLonger,
        expect: fails(1, &["size mismatch", "expected 20000 bytes"]),
        ..CASE
    };
    blob_shorter_than_its_descriptor: Case {
        misbehaviour: Misbehaviour::BlobShorter,
        expect: fails(1, &["size mismatch", "expected 20000 bytes, got 19900"]),
        ..CASE
    };
    content_range_that_starts_elsewhere: Case {
        misbehaviour: Misbehaviour::ContentRangeElsewhere,
        expect: fails(1, &["asked for bytes from 102400", "Content-Range starting at"]),
        args: &["--spool-threshold", "1K"],
        ..CASE
    };
    layer_size_of_u64_max: Case {
        misbehaviour: Misbehaviour::HugeSize,
        expect: fails(
            1,
            &["claims 18446744073709551615 bytes, more than 1T", "--limit blob-bytes=N"],
        ),
        ..CASE
    };
    manifest_content_length_that_lies: Case {
        misbehaviour: Misbehaviour::ManifestLengthLies,
        expect: fails(1, &["/v2/evil/manifests/", "end of file before message length reached"]),
        ..CASE
    };
    // ---- redirects ----
    redirect_loop: Case {
        misbehaviour: Misbehaviour::RedirectLoop,
        expect: fails(1, &["more than 10 redirects"]),
        ..CASE
    };
    redirect_from_https_to_http: Case {
        misbehaviour: Misbehaviour::RedirectHttpsToHttp,
        expect: fails(1, &["redirect from https to plain http"]),
        check: nothing_elsewhere,
        ..CASE
    };
    // ---- auth ----
    unauthorized_loop_with_changing_challenges: Case {
        misbehaviour: Misbehaviour::UnauthorizedLoop,
        expect: fails(3, &["authentication to", "refused"]),
        check: |reg, _| {
            let evil = reg.seen().iter().filter(|s| s.uri.contains("/v2/evil/")).count();
            assert!(evil <= 12, "{evil} requests to evil");
        },
        ..CASE
    };
    token_endpoint_that_never_answers: Case {
        misbehaviour: Misbehaviour::TokenNeverAnswers,
        expect: fails(1, &["/token"]),
        ..CASE
    };
    token_with_huge_expires_in: Case {
        misbehaviour: Misbehaviour::TokenHugeExpiry,
        ..CASE
    };
    token_answer_too_large: Case {
        misbehaviour: Misbehaviour::TokenHugeAnswer,
        expect: fails(1, &["token answer", "larger than the 1048576-byte limit"]),
        ..CASE
    };
    http_realm_gets_no_password_from_a_tls_registry: Case {
        misbehaviour: Misbehaviour::HttpRealm,
        creds: Creds::Basic,
        good_elsewhere: true,
        expect: fails(3, &["token realm", "http://127.0.0.1:", "in clear", "user \"alice\""]),
        check: nothing_elsewhere,
        ..CASE
    };
    http_realm_gets_no_refresh_token_from_a_tls_registry: Case {
        misbehaviour: Misbehaviour::HttpRealm,
        creds: Creds::Refresh,
        good_elsewhere: true,
        expect: fails(3, &["token realm", "in clear", "refresh"]),
        check: nothing_elsewhere,
        ..CASE
    };
    https_realm_on_another_host_is_allowed: Case {
        misbehaviour: Misbehaviour::OtherHostRealm,
        creds: Creds::Basic,
        check: |reg, _| {
            let basic = reg
                .seen()
                .iter()
                .filter(|s| s.uri.starts_with("/token"))
                .any(|s| s.authorization.as_deref().is_some_and(|a| a.starts_with("Basic ")));
            assert!(basic, "the https realm got the password: {:#?}", reg.seen());
        },
        ..CASE
    };
    // ---- endless and slow answers ----
    endless_manifest_body: Case {
        misbehaviour: Misbehaviour::EndlessManifest,
        expect: fails(1, &["manifest", "larger than the 4194304-byte limit"]),
        ..CASE
    };
    endless_blob_body: Case {
        misbehaviour: Misbehaviour::EndlessBlob,
        expect: fails(1, &["size mismatch", "expected 20000 bytes"]),
        ..CASE
    };
    slow_manifest_body: Case {
        misbehaviour: Misbehaviour::SlowManifestBody,
        expect: fails(1, &["/v2/evil/manifests/", "did not arrive whole within 2s"]),
        ..CASE
    };
    slow_loris_headers: Case {
        misbehaviour: Misbehaviour::SlowHeaders,
        expect: fails(1, &["manifests/v1", "sent nothing for 2s"]),
        ..CASE
    };
    bytes_that_are_not_http: Case {
        misbehaviour: Misbehaviour::NotHttp,
        expect: fails(1, &["manifests/v1", "invalid HTTP"]),
        ..CASE
    };
    server_error_forever: Case {
        misbehaviour: Misbehaviour::ServerErrorForever,
        expect: fails(1, &["HTTP 503"]),
        ..CASE
    };
    huge_retry_after: Case {
        misbehaviour: Misbehaviour::HugeRetryAfter,
        expect: fails(1, &["HTTP 429", "Retry-After", "9999999999s", "300s"]),
        check: quick,
        ..CASE
    };
    // ---- listings ----
    tag_list_of_a_million_entries: Case {
        misbehaviour: Misbehaviour::MillionTags,
        way: Way::Sync,
        expect: fails(1, &["tag list", "1000000"]),
        ..CASE
    };
    duplicate_tags: Case {
        misbehaviour: Misbehaviour::DuplicateTags,
        way: Way::Sync,
        check: |_, out| {
            let report: Value = serde_json::from_str(&out.stdout).unwrap();
            let evil = report["images"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["source"].as_str().unwrap_or_default().contains("/evil"))
                .count();
            assert_eq!(evil, 1, "one job for the tag listed 1000 times: {report:#}");
        },
        ..CASE
    };
    pagination_with_a_new_link_every_time: Case {
        misbehaviour: Misbehaviour::NewLinkEveryPage,
        way: Way::Sync,
        // A lower bound than the default 10,000 keeps the test short.
        expect: fails(1, &["tag list", "more than 200 pages", "--limit list-pages=N"]),
        args: &["--limit", "list-pages=200"],
        ..CASE
    };
    // ---- manifest JSON ----
    malformed_json_at_the_top_level: Case {
        misbehaviour: Misbehaviour::MalformedTopLevel,
        expect: fails(1, &["manifest is not valid JSON", "EOF"]),
        ..CASE
    };
    malformed_config_descriptor: Case {
        misbehaviour: Misbehaviour::MalformedConfig,
        expect: fails(1, &["manifest is not valid JSON", "invalid type: integer"]),
        ..CASE
    };
    malformed_layers_array: Case {
        misbehaviour: Misbehaviour::MalformedLayers,
        expect: fails(1, &["manifest is not valid JSON", "expected a sequence"]),
        ..CASE
    };
    malformed_layer_descriptor: Case {
        misbehaviour: Misbehaviour::MalformedLayer,
        expect: fails(1, &["manifest is not valid JSON", "missing field `digest`"]),
        ..CASE
    };
    malformed_index_entry: Case {
        misbehaviour: Misbehaviour::MalformedIndexEntry,
        expect: fails(1, &["manifest is not valid JSON", "invalid type: string"]),
        ..CASE
    };
    malformed_platform: Case {
        misbehaviour: Misbehaviour::MalformedPlatform,
        expect: fails(1, &["manifest is not valid JSON", "expected struct Platform"]),
        ..CASE
    };
    invalid_digest_in_a_descriptor: Case {
        misbehaviour: Misbehaviour::InvalidDigest,
        expect: fails(1, &["manifest is not valid JSON", "sha256:not-hex"]),
        ..CASE
    };
    negative_size_in_a_descriptor: Case {
        misbehaviour: Misbehaviour::NegativeSize,
        expect: fails(1, &["manifest is not valid JSON", "invalid value: integer `-1`"]),
        ..CASE
    };
    content_type_that_contradicts_the_manifest: Case {
        misbehaviour: Misbehaviour::WrongContentType,
        expect: fails(1, &["Content-Type", "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"]),
        ..CASE
    };
    html_page_instead_of_a_manifest: Case {
        misbehaviour: Misbehaviour::HtmlPage,
        expect: fails(1, &["text/html"]),
        ..CASE
    };
    // ---- graphs ----
    index_that_names_itself: Case {
        misbehaviour: Misbehaviour::IndexNamesItself,
        expect: fails(1, &["digest mismatch"]),
        ..CASE
    };
    chain_of_a_thousand_nested_indexes: Case {
        misbehaviour: Misbehaviour::NestedIndexes,
        expect: fails(1, &["more than 8 levels of nested indexes"]),
        ..CASE
    };
    index_of_twenty_thousand_children: Case {
        misbehaviour: Misbehaviour::TooManyChildren,
        expect: fails(1, &["more than 10000 manifests"]),
        ..CASE
    };
    // ---- uploads ----
    upload_location_on_another_host: Case {
        misbehaviour: Misbehaviour::UploadElsewhere,
        way: Way::Target,
        expect: fails(1, &["upload Location", "another host", "http://127.0.0.1:"]),
        check: nothing_elsewhere,
        ..CASE
    };
    huge_oci_chunk_min_length: Case {
        misbehaviour: Misbehaviour::HugeChunkMinLength,
        way: Way::Target,
        args: &["--chunk-threshold", "1"],
        expect: fails(1, &["OCI-Chunk-Min-Length 18446744073709551615", "268435456"]),
        ..CASE
    };
    upload_answered_with_another_digest: Case {
        misbehaviour: Misbehaviour::UploadDigestLies,
        way: Way::Target,
        expect: fails(1, &["the registry committed sha256:"]),
        ..CASE
    };
}

/// The catalogue has at least 25 misbehaviours.
#[test]
fn the_catalogue_is_large() {
    let source = include_str!("hostile_registry.rs");
    let cases = source.matches("misbehaviour: Misbehaviour::").count();
    assert!(cases >= 25, "{cases} cases");
}

async fn run_case(case: Case) {
    mirror_tests::init_tracing();
    let reg = HostileRegistry::start(case.misbehaviour).await.unwrap();
    let other = if case.good_elsewhere {
        Some(HostileRegistry::start(Misbehaviour::None).await.unwrap())
    } else {
        None
    };
    let good_from = other.as_ref().unwrap_or(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    write_docker_config(&docker, &reg.host(), case.creds);

    let mut args: Vec<String> = Vec::new();
    let layout = |name: &str| format!("oci:{}", out.join(name).display());
    match case.way {
        Way::Source | Way::Target => {
            args.extend(["copy", "--output", "json"].map(String::from));
        }
        Way::Sync => {
            let config = tmp.path().join("sync.yaml");
            std::fs::write(
                &config,
                format!(
                    "read_timeout: 2s\nsync:\n  - source: {}/{EVIL}\n    target: '{}'\n    include: ['^{TAG}$']\n  - source: {}/{GOOD}\n    target: '{}'\n    tags: [{TAG}]\n",
                    reg.evil_host(),
                    layout(EVIL),
                    good_from.host(),
                    layout(GOOD),
                ),
            )
            .unwrap();
            args.extend(["sync", "--output", "json", "--changes-exit-code", "0"].map(String::from));
            args.push(config.display().to_string());
        }
    }
    args.extend(["--progress", "none"].map(String::from));
    if case.way != Way::Sync {
        args.extend(["--read-timeout", "2s"].map(String::from));
    }
    if let Some(ca) = reg.ca() {
        args.extend([
            "--tls-registry".into(),
            reg.host(),
            "--ca-file".into(),
            ca.ca_pem_path().display().to_string(),
        ]);
    }
    args.extend(case.args.iter().map(|a| a.to_string()));
    match case.way {
        Way::Source => args.extend([
            reg.evil_ref(),
            layout(EVIL),
            good_from.good_ref(),
            layout(GOOD),
        ]),
        Way::Target => args.extend([
            reg.good_ref(),
            format!("{}/{EVIL}:{TAG}", reg.host()),
            good_from.good_ref(),
            layout(GOOD),
        ]),
        Way::Sync => {}
    }
    let state = tmp.path().join("state");
    let env = [
        ("DOCKER_CONFIG", docker.display().to_string()),
        ("MIRROR_STATE_DIR", state.display().to_string()),
    ];
    let outcome = run_bounded(&args, &env).await;
    println!("{:?}: {:?}", case.misbehaviour, outcome.elapsed);
    let shown = format!(
        "{:?}: exit {}, {:?}, peak {} KiB\nstdout: {}\nstderr: {}",
        case.misbehaviour,
        outcome.code,
        outcome.elapsed,
        outcome.peak_kib,
        outcome.stdout,
        outcome.stderr
    );

    // No panic, bounded memory.
    assert_ne!(outcome.code, 101, "{shown}");
    assert!(!outcome.stderr.contains("panicked"), "{shown}");
    assert!(outcome.peak_kib < RSS_LIMIT_KIB, "{shown}");

    let report: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {shown}"));
    let status_of = |needle: &str| -> Vec<(String, String)> {
        report["images"]
            .as_array()
            .unwrap_or_else(|| panic!("no images: {shown}"))
            .iter()
            .filter(|i| {
                let target = i["target"].as_str().unwrap_or_default();
                target.contains(needle)
            })
            .map(|i| {
                let error = i["error"].as_str().unwrap_or_default().to_string();
                // sync reports say it; copy reports have an error or not.
                let status = match i["status"].as_str() {
                    Some(s) => s.to_string(),
                    None if error.is_empty() => "copied".to_string(),
                    None => "failed".to_string(),
                };
                (status, error)
            })
            .collect()
    };
    // The good image is copied whatever happened to the other.
    let good = status_of(&format!("out/{GOOD}"));
    assert_eq!(good.len(), 1, "{shown}");
    assert_eq!(good[0].0, "copied", "{shown}");
    assert_eq!(layout_refs(&out.join(GOOD)).len(), 1, "{shown}");
    let evil_target = match case.way {
        Way::Target => format!("{}/{EVIL}:{TAG}", reg.host()),
        _ => format!("out/{EVIL}"),
    };
    let evil = status_of(&evil_target);
    match case.expect {
        Expect::Copied => {
            assert_eq!(outcome.code, 0, "{shown}");
            assert!(!evil.is_empty(), "{shown}");
            assert!(evil.iter().all(|(s, _)| s == "copied"), "{shown}");
        }
        Expect::Fails(code, says) => {
            assert_eq!(outcome.code, code, "{shown}");
            assert_eq!(evil.len(), 1, "{shown}");
            let (status, error) = &evil[0];
            assert_eq!(status, "failed", "{shown}");
            for s in says {
                assert!(
                    error.contains(s),
                    "the error does not say {s:?}: {error}\n{shown}"
                );
            }
            // Nothing of the hostile image under a final name.
            match case.way {
                Way::Target => {
                    let pushed: Vec<_> = reg
                        .seen()
                        .into_iter()
                        .filter(|s| {
                            s.method == Method::PUT
                                && s.uri.starts_with(&format!("/v2/{EVIL}/manifests/"))
                        })
                        .collect();
                    assert!(pushed.is_empty(), "manifests pushed to evil: {pushed:?}");
                }
                _ => assert!(layout_refs(&out.join(EVIL)).is_empty(), "{shown}"),
            }
        }
    }
    // Whatever a layout holds is whole: every blob file is its digest.
    for name in [EVIL, GOOD] {
        blobs_are_whole(&out.join(name));
    }
    (case.check)(&reg, &outcome);
    drop(other);
}

/// `config.json` giving mirror `case.creds` for `host`.
fn write_docker_config(dir: &Path, host: &str, creds: Creds) {
    let auth = match creds {
        Creds::None => serde_json::json!({}),
        Creds::Basic => serde_json::json!({
            host: {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret-password")}
        }),
        Creds::Refresh => serde_json::json!({
            host: {
                "auth": base64::engine::general_purpose::STANDARD.encode("<token>:"),
                "identitytoken": "refresh-s3cret"
            }
        }),
    };
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&serde_json::json!({"auths": auth})).unwrap(),
    )
    .unwrap();
}

/// Run mirror, failing the test if it outlives [`RUN_LIMIT`] (it is
/// killed), and sampling its peak resident memory while it runs.
async fn run_bounded(args: &[String], env: &[(&str, String)]) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cmd = command(&args, &env);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting mirror");
    let pid = child.id().expect("a running child has a pid");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = mirror_tests::memory::peak_of(pid) {
            peak_kib = peak_kib.max(kib);
        }
        match tokio::time::timeout(Duration::from_millis(20), child.wait()).await {
            Ok(status) => break status.expect("waiting for mirror"),
            Err(_) if started.elapsed() > RUN_LIMIT => {
                let _ = child.kill().await;
                let stderr = read_err.await.unwrap_or_default();
                panic!("mirror {args:?} did not finish within {RUN_LIMIT:?}\nstderr: {stderr}");
            }
            Err(_) => {}
        }
    };
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: read_out.await.unwrap_or_default(),
        stderr: read_err.await.unwrap_or_default(),
        peak_kib,
        elapsed: started.elapsed(),
    }
}

/// The names `index.json` of a layout gives its images (none when there
/// is no layout).
fn layout_refs(layout: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(layout.join("index.json")) else {
        return Vec::new();
    };
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Every file under `blobs/sha256/` hashes to its name.
fn blobs_are_whole(layout: &Path) {
    let dir: PathBuf = layout.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            Digest::sha256_of(&bytes).to_string(),
            format!("sha256:{name}"),
            "{} is not what its name says",
            path.display()
        );
    }
}
