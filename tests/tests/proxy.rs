//! HTTP(S) proxies, through a real one (tinyproxy): plain-HTTP registries
//! forwarded, TLS registries through CONNECT, NO_PROXY, the `--proxy` flag
//! and the sync config's `proxy:` key, credentials, a proxy that closes
//! connections and one that refuses.

use std::time::{Duration, Instant};

use mirror_tests::cli::{mirror, mirror_bin, Run};
use mirror_tests::images::{blob, client, image, push_blob, push_to, repo, tag_digest};
use mirror_tests::proxy::{Tinyproxy, TinyproxyOptions};
use mirror_tests::tls_front::TlsFront;
use mirror_tests::{free_port, Registry, RegistryOptions, TestCa, TokenServerOptions};
use registry_client::{Client, ClientConfig, Proxy, ProxyUrl};

/// `mirror copy --progress none ARGS` with `env`.
async fn copy(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["copy", "--progress", "none"];
    all.extend_from_slice(args);
    mirror(&all, env).await
}

/// A source registry holding `app/one:v1` (three layers), and an empty
/// target.
async fn two_registries() -> (Registry, Registry, registry_client::Digest) {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let img = image(11, &[3000, 70_000, 5], false);
    let digest = push_to(&src.host(), "app/one", "v1", &img).await;
    (src, dst, digest)
}

/// What a run printed, for the password checks.
fn printed(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

/// Asserts that every request of a copy between `src` and `dst` went
/// through `proxy`, the uploads' PUTs included.
#[track_caller]
fn assert_copied_through(proxy: &Tinyproxy, src: &Registry, dst: &Registry) {
    let log = proxy.log();
    let read = |method| proxy.count(method, &format!("{}/v2/app/one/manifests/", src.host()));
    assert!(read("GET") + read("HEAD") >= 1, "{log}");
    assert!(
        proxy.count("GET", &format!("{}/v2/app/one/blobs/", src.host())) >= 4,
        "{log}"
    );
    // Config and three layers: four uploads finished by a PUT each.
    assert_eq!(
        proxy.count(
            "PUT",
            &format!("{}/v2/copied/one/blobs/uploads/", dst.host())
        ),
        4,
        "{log}"
    );
    assert_eq!(
        proxy.count("PUT", &format!("{}/v2/copied/one/manifests/v1", dst.host())),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn plain_http_registries_through_http_proxy_copy_blobs_and_manifests() {
    // tinyproxy closes the connection after each answer without saying so;
    // a PUT sent on a pooled connection at that moment failed ("connection
    // closed before message completed", three times: 8 runs in 20).
    // Several runs, so a race would show.
    for round in 0..3 {
        let (src, dst, digest) = two_registries().await;
        let proxy = Tinyproxy::start_open().await.unwrap();
        let from = format!("{}/app/one:v1", src.host());
        let to = format!("{}/copied/one:v1", dst.host());
        let run = copy(&[&from, &to], &[("HTTP_PROXY", &proxy.url())]).await;
        run.assert_code_of(&format!("round {round}"), 0);
        assert_eq!(
            tag_digest(&dst.host(), "copied/one", "v1").await,
            Some(digest)
        );
        assert_copied_through(&proxy, &src, &dst);
    }
}

#[tokio::test]
async fn the_proxy_flag_wins_over_the_environment() {
    let (src, dst, digest) = two_registries().await;
    let proxy = Tinyproxy::start_open().await.unwrap();
    let nothing_there = format!("http://127.0.0.1:{}", free_port());
    let from = format!("{}/app/one:v1", src.host());
    let to = format!("{}/copied/one:v1", dst.host());
    let run = copy(
        &["--proxy", &proxy.url(), &from, &to],
        &[
            ("HTTP_PROXY", &nothing_there),
            ("http_proxy", &nothing_there),
        ],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest)
    );
    assert_copied_through(&proxy, &src, &dst);

    // `--proxy none`: direct, whatever the environment says.
    let run = copy(
        &[
            "--proxy",
            "none",
            &from,
            &format!("{}/direct/one:v1", dst.host()),
        ],
        &[("HTTP_PROXY", &proxy.url())],
    )
    .await;
    run.assert_code(0);
    assert_eq!(proxy.count("GET", "/direct/"), 0);
    assert_eq!(proxy.count("PUT", "/direct/"), 0);
}

#[tokio::test]
async fn a_tls_registry_is_reached_through_connect_with_https_proxy() {
    let src = Registry::start_open().await.unwrap();
    let ca = TestCa::new().unwrap();
    let dst = Registry::start(RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = Tinyproxy::start_open().await.unwrap();
    let img = image(12, &[4000, 50_000], false);
    let digest = push_to(&src.host(), "app/one", "v1", &img).await;
    let ca_file = ca.ca_pem_path().to_str().unwrap();
    let run = copy(
        &[
            "--tls-registry",
            &dst.host(),
            "--ca-file",
            ca_file,
            &format!("{}/app/one:v1", src.host()),
            &format!("{}/copied/one:v1", dst.host()),
        ],
        &[("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    run.assert_code(0);
    // The TLS registry through CONNECT tunnels; the plain-HTTP source,
    // which HTTPS_PROXY does not cover, direct.
    assert!(proxy.count("CONNECT", &dst.host()) >= 1, "{}", proxy.log());
    assert_eq!(proxy.count("GET", &src.host()), 0, "{}", proxy.log());
    let tls = Client::new(
        ClientConfig::builder()
            .tls_registries([dst.host()])
            .ca_files([ca.ca_pem_path()])
            .proxy(Proxy::none())
            .build(),
    )
    .unwrap();
    let r = registry_client::Reference::parse(&format!("{}/copied/one:v1", dst.host())).unwrap();
    assert_eq!(tls.head_manifest(&r).await.unwrap().unwrap().digest, digest);
}

#[tokio::test]
async fn no_proxy_hosts_go_direct() {
    let (src, dst, digest) = two_registries().await;
    let proxy = Tinyproxy::start_open().await.unwrap();
    let from = format!("{}/app/one:v1", src.host());
    let to = format!("{}/copied/one:v1", dst.host());
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "*"] {
        let run = copy(
            &[&from, &to],
            &[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", no_proxy)],
        )
        .await;
        run.assert_code_of(no_proxy, 0);
    }
    // With --proxy too, as curl does.
    let run = copy(
        &["--proxy", &proxy.url(), &from, &to],
        &[("no_proxy", &format!("{},{}", src.host(), dst.host()))],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest)
    );
    assert_eq!(proxy.requests(), vec![], "{}", proxy.log());
}

const PROXY_PASSWORD: &str = "pr0xy-s3cret-PW";

#[tokio::test]
async fn proxy_credentials_work_and_wrong_ones_fail_clearly_without_showing_the_password() {
    let (src, dst, digest) = two_registries().await;
    let proxy = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some(("squid".into(), PROXY_PASSWORD.into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let from = format!("{}/app/one:v1", src.host());
    let to = format!("{}/copied/one:v1", dst.host());
    let debug = [("MIRROR_LOG", "debug")];

    let right = proxy.url_with("squid", PROXY_PASSWORD);
    let run = copy(&["--output", "json", "--proxy", &right, &from, &to], &debug).await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest)
    );
    assert_copied_through(&proxy, &src, &dst);
    assert!(!printed(&run).contains(PROXY_PASSWORD), "{}", printed(&run));
    // The debug log says which proxy a host goes through, password hidden.
    assert!(
        run.stderr
            .contains(&format!("http://squid:***@{}", proxy.host())),
        "{}",
        run.stderr
    );

    // The same through the environment.
    let to_env = format!("{}/env/one:v1", dst.host());
    let run = copy(&[&from, &to_env], &[("HTTP_PROXY", &right), debug[0]]).await;
    run.assert_code(0);
    assert!(!printed(&run).contains(PROXY_PASSWORD), "{}", printed(&run));

    mirror_bin();
    let started = Instant::now();
    for (what, url) in [
        ("no credentials", proxy.url()),
        ("a wrong password", proxy.url_with("squid", "wrong-pw-1")),
    ] {
        let to = format!("{}/refused/one:v1", dst.host());
        let run = copy(&["--output", "json", "--proxy", &url, &from, &to], &debug).await;
        assert_ne!(run.code, 0, "{what}: {}", printed(&run));
        let all = printed(&run);
        assert!(all.contains(&proxy.host()), "{what}: {all}");
        if what == "no credentials" {
            assert!(
                all.contains("asked for credentials (HTTP 407)")
                    && all.contains("in the proxy URL"),
                "{all}"
            );
        } else {
            // tinyproxy answers wrong proxy credentials with 401 and a
            // Basic challenge, as a registry would: the error says the
            // proxy may be the one refusing.
            assert!(
                all.contains("which may have refused the credentials in its URL"),
                "{all}"
            );
            assert!(!all.contains("wrong-pw-1"), "{all}");
        }
        assert!(!all.contains(PROXY_PASSWORD), "{all}");
    }
    // A 407 is not retried over and over.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.count("PUT", "/refused/"), 0);
}

#[tokio::test]
async fn a_tls_registry_behind_a_proxy_with_credentials_through_connect() {
    let src = Registry::start_open().await.unwrap();
    let ca = TestCa::new().unwrap();
    let dst = Registry::start(RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some(("squid".into(), PROXY_PASSWORD.into())),
        ..Default::default()
    })
    .await
    .unwrap();
    push_to(&src.host(), "app/one", "v1", &image(13, &[999], false)).await;
    let ca_file = ca.ca_pem_path().to_str().unwrap();
    let from = format!("{}/app/one:v1", src.host());
    let to = format!("{}/copied/one:v1", dst.host());
    let args = |_: ()| {
        vec![
            "--tls-registry".to_string(),
            dst.host(),
            "--ca-file".into(),
            ca_file.into(),
            from.clone(),
            to.clone(),
        ]
    };
    let run_with = |env: Vec<(&'static str, String)>| {
        let a = args(());
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            copy(&a, &e).await
        }
    };
    let run = run_with(vec![
        ("HTTPS_PROXY", proxy.url_with("squid", PROXY_PASSWORD)),
        ("MIRROR_LOG", "debug".into()),
    ])
    .await;
    run.assert_code(0);
    assert!(proxy.count("CONNECT", &dst.host()) >= 1, "{}", proxy.log());
    assert!(!printed(&run).contains(PROXY_PASSWORD));

    mirror_bin();
    let started = Instant::now();
    let run = run_with(vec![
        ("HTTPS_PROXY", proxy.url()),
        ("MIRROR_LOG", "debug".into()),
    ])
    .await;
    assert_ne!(run.code, 0);
    let all = printed(&run);
    assert!(all.contains("asked for credentials (HTTP 407)"), "{all}");
    assert!(all.contains(&proxy.host()), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_proxy_that_is_not_there_fails_quickly_naming_it() {
    let (src, dst, _) = two_registries().await;
    let port = free_port();
    let proxy = format!("http://alice:{PROXY_PASSWORD}@127.0.0.1:{port}");
    mirror_bin();
    let started = Instant::now();
    let run = copy(
        &[
            "--proxy",
            &proxy,
            &format!("{}/app/one:v1", src.host()),
            &format!("{}/copied/one:v1", dst.host()),
        ],
        &[("MIRROR_LOG", "debug")],
    )
    .await;
    assert_ne!(run.code, 0);
    let all = printed(&run);
    assert!(
        all.contains(&format!(
            "through the proxy http://alice:***@127.0.0.1:{port}"
        )),
        "{all}"
    );
    assert!(all.to_lowercase().contains("connection refused"), "{all}");
    assert!(!all.contains(PROXY_PASSWORD), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    dst.assert_nothing_written();
}

#[tokio::test]
async fn a_proxy_that_denies_the_destination_fails_quickly_naming_it() {
    let ca = TestCa::new().unwrap();
    let tls = Registry::start(RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let (src, dst, _) = two_registries().await;
    let proxy = Tinyproxy::start(TinyproxyOptions {
        deny_all: true,
        ..Default::default()
    })
    .await
    .unwrap();

    // A TLS registry: the CONNECT is refused.
    mirror_bin();
    let started = Instant::now();
    let run = copy(
        &[
            "--tls-registry",
            &tls.host(),
            "--ca-file",
            ca.ca_pem_path().to_str().unwrap(),
            &format!("{}/app/one:v1", tls.host()),
            &format!("oci:{}", tempfile::tempdir().unwrap().path().display()),
        ],
        &[("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    assert_ne!(run.code, 0);
    let all = printed(&run);
    assert!(
        all.contains(&format!(
            "the proxy {} refused to open a tunnel (CONNECT) to {}",
            proxy.url(),
            tls.host()
        )),
        "{all}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.count("CONNECT", &tls.host()) >= 1, "{}", proxy.log());

    // A plain-HTTP registry: the proxy answers 403 itself.
    let asked_before = src.access_log().len();
    mirror_bin();
    let started = Instant::now();
    let run = copy(
        &[
            &format!("{}/app/one:v1", src.host()),
            &format!("{}/copied/one:v1", dst.host()),
        ],
        &[("HTTP_PROXY", &proxy.url())],
    )
    .await;
    assert_ne!(run.code, 0);
    let all = printed(&run);
    assert!(
        all.contains(&format!("(through the proxy {})", proxy.url())) && all.contains("403"),
        "{all}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Nothing reached the registries.
    assert_eq!(src.access_log().len(), asked_before);
    dst.assert_nothing_written();
}

/// The client through a proxy that closes connections idle for a second:
/// requests after a pause longer than that open new ones, through CONNECT
/// tunnels and forwarded alike.
#[tokio::test]
async fn a_proxy_that_closes_idle_connections_is_met_with_new_ones() {
    let ca = TestCa::new().unwrap();
    let tls = Registry::start(RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let plain = Registry::start_open().await.unwrap();
    let proxy = Tinyproxy::start(TinyproxyOptions {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new(
        ClientConfig::builder()
            .tls_registries([tls.host()])
            .ca_files([ca.ca_pem_path()])
            .proxy(Proxy::all(ProxyUrl::parse(&proxy.url()).unwrap()))
            .build(),
    )
    .unwrap();
    for host in [tls.host(), plain.host()] {
        let r = repo(&host, "idle/app");
        for round in 0..3 {
            let data = blob(40 + round, 200_000);
            let d = push_blob(&c, &r, data.clone()).await;
            assert!(c.head_blob(&r, &d).await.unwrap().is_some());
            // Longer than the proxy's Timeout: it closes what we keep.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
    }
    assert!(proxy.count("CONNECT", &tls.host()) >= 1, "{}", proxy.log());
    assert!(proxy.count("PUT", &plain.host()) >= 3, "{}", proxy.log());
    assert!(
        proxy.log().contains("Idle Timeout") || proxy.log().contains("Closed connection"),
        "{}",
        proxy.log()
    );
    // The harness's own client never went through it.
    let _ = client(&plain.host(), None);
}

#[tokio::test]
async fn the_sync_config_proxy_key_is_used_and_none_turns_the_environment_off() {
    let (src, dst, digest) = two_registries().await;
    let proxy = Tinyproxy::start_open().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.yaml");
    let write = |proxy_line: &str, target: &str| {
        std::fs::write(
            &config,
            format!(
                "{proxy_line}sync:\n  - {{source: {}/app/one, target: {}/{target}, tags: [v1]}}\n",
                src.host(),
                dst.host()
            ),
        )
        .unwrap();
    };
    let sync = |env: Vec<(&'static str, String)>| {
        let config = config.clone();
        let state = dir.path().join("state");
        async move {
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut e = e;
            let state = state.to_str().unwrap().to_string();
            e.push(("MIRROR_STATE_DIR", &state));
            mirror(
                &[
                    "sync",
                    "--progress",
                    "none",
                    "--output",
                    "json",
                    config.to_str().unwrap(),
                ],
                &e,
            )
            .await
        }
    };
    let nothing_there = format!("http://127.0.0.1:{}", free_port());

    // `proxy:` wins over the environment.
    write(&format!("proxy: {}\n", proxy.url()), "copied/one");
    let run = sync(vec![("HTTP_PROXY", nothing_there.clone())]).await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest)
    );
    assert_copied_through(&proxy, &src, &dst);

    // `proxy: none`: direct, the environment's proxy unused.
    write("proxy: none\n", "direct/one");
    let run = sync(vec![("HTTP_PROXY", nothing_there.clone())]).await;
    run.assert_code(0);
    assert_eq!(proxy.count("PUT", "/direct/"), 0);

    // Without the key, the environment's.
    write("", "env/one");
    let run = sync(vec![("HTTP_PROXY", proxy.url())]).await;
    run.assert_code(0);
    assert_eq!(
        proxy.count("PUT", "/env/one/manifests/v1"),
        1,
        "{}",
        proxy.log()
    );

    // A bad value names the line, not the password.
    write("proxy: socks5://u:hunter2@p:1080\n", "bad/one");
    let run = sync(vec![]).await;
    assert_eq!(run.code, 2, "{}", printed(&run));
    assert!(printed(&run).contains("sync.yaml:1"), "{}", printed(&run));
    assert!(!printed(&run).contains("hunter2"), "{}", printed(&run));
}

#[tokio::test]
async fn a_bad_proxy_flag_is_refused_without_echoing_its_password() {
    let run = copy(
        &[
            "--proxy",
            "socks5://u:hunter2@p:1080",
            "a.io/x:1",
            "b.io/x:1",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", printed(&run));
    assert!(printed(&run).contains("--proxy"), "{}", printed(&run));
    assert!(printed(&run).contains("socks5"), "{}", printed(&run));
    assert!(!printed(&run).contains("hunter2"), "{}", printed(&run));
}

/// Each streamed upload right after the POST that opened it, through a
/// proxy that closes every connection after its answer: on a pooled
/// connection most failed ("connection closed before message
/// completed"), and a streamed body cannot be sent again.
#[tokio::test]
async fn streamed_uploads_through_a_closing_proxy_each_get_a_connection() {
    let reg = Registry::start_open().await.unwrap();
    let proxy = Tinyproxy::start_open().await.unwrap();
    let c = Client::new(
        ClientConfig::builder()
            .proxy(Proxy::all(ProxyUrl::parse(&proxy.url()).unwrap()))
            .build(),
    )
    .unwrap();
    let r = repo(&reg.host(), "streamed/app");
    // Eight at once, as a copy runs them: a connection one finished with
    // is at once another's.
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (c, r) = (c.clone(), r.clone());
            tokio::spawn(async move {
                for i in 0..8u64 {
                    push_blob(&c, &r, blob(100 + t * 8 + i, 2_000 + i as usize)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("every streamed upload succeeds");
    }
    assert_eq!(proxy.count("PUT", &reg.host()), 64, "{}", proxy.log());
}

/// tinyproxy behind a TLS front whose certificate a fresh CA issued: an
/// `https://` proxy. Returns the CA too, to trust or not.
async fn https_proxy() -> (Tinyproxy, TlsFront, TestCa) {
    let proxy = Tinyproxy::start_open().await.unwrap();
    let ca = TestCa::new().unwrap();
    let front = TlsFront::start(&ca, &proxy.host()).await.unwrap();
    (proxy, front, ca)
}

#[tokio::test]
async fn an_https_proxy_is_reached_over_tls_trusting_its_ca_from_either_flag() {
    for flag in ["--proxy-ca-file", "--ca-file"] {
        let (src, dst, digest) = two_registries().await;
        let (proxy, front, proxy_ca) = https_proxy().await;
        let from = format!("{}/app/one:v1", src.host());
        let to = format!("{}/copied/one:v1", dst.host());
        let ca_file = proxy_ca.ca_pem_path().to_str().unwrap();
        let run = copy(&["--proxy", &front.url(), flag, ca_file, &from, &to], &[]).await;
        run.assert_code_of(flag, 0);
        assert_eq!(
            tag_digest(&dst.host(), "copied/one", "v1").await,
            Some(digest),
            "{flag}"
        );
        // Every request through the proxy, over TLS to it.
        assert_copied_through(&proxy, &src, &dst);
        assert!(front.handshakes() >= 1, "{flag}");
        assert_eq!(front.failed_handshakes(), 0, "{flag}");
    }
}

#[tokio::test]
async fn a_tls_registry_through_an_https_proxy_from_the_environment() {
    // TLS inside TLS: the CONNECT tunnel runs over the TLS connection to
    // the proxy, the registry's own TLS inside it; each side's CA apart.
    let src = Registry::start_open().await.unwrap();
    let registry_ca = TestCa::new().unwrap();
    let dst = Registry::start(RegistryOptions {
        tls: Some(&registry_ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let (proxy, front, proxy_ca) = https_proxy().await;
    let img = image(14, &[4000, 50_000], false);
    let digest = push_to(&src.host(), "app/one", "v1", &img).await;
    let run = copy(
        &[
            "--tls-registry",
            &dst.host(),
            "--ca-file",
            registry_ca.ca_pem_path().to_str().unwrap(),
            "--proxy-ca-file",
            proxy_ca.ca_pem_path().to_str().unwrap(),
            &format!("{}/app/one:v1", src.host()),
            &format!("{}/copied/one:v1", dst.host()),
        ],
        &[
            ("HTTPS_PROXY", &front.url_with("squid", PROXY_PASSWORD)),
            ("MIRROR_LOG", "debug"),
        ],
    )
    .await;
    run.assert_code(0);
    assert!(proxy.count("CONNECT", &dst.host()) >= 1, "{}", proxy.log());
    assert!(front.handshakes() >= 1);
    // The plain-HTTP source, which HTTPS_PROXY does not cover, direct.
    assert_eq!(proxy.count("GET", &src.host()), 0, "{}", proxy.log());
    assert!(!printed(&run).contains(PROXY_PASSWORD), "{}", printed(&run));
    let tls = Client::new(
        ClientConfig::builder()
            .tls_registries([dst.host()])
            .ca_files([registry_ca.ca_pem_path()])
            .proxy(Proxy::none())
            .build(),
    )
    .unwrap();
    let r = registry_client::Reference::parse(&format!("{}/copied/one:v1", dst.host())).unwrap();
    assert_eq!(tls.head_manifest(&r).await.unwrap().unwrap().digest, digest);
}

#[tokio::test]
async fn an_https_proxy_whose_ca_is_not_trusted_fails_quickly_naming_it() {
    let (src, dst, _) = two_registries().await;
    let (proxy, front, _untrusted) = https_proxy().await;
    let url = front.url_with("squid", PROXY_PASSWORD);
    mirror_bin();
    let started = Instant::now();
    let run = copy(
        &[
            "--proxy",
            &url,
            &format!("{}/app/one:v1", src.host()),
            &format!("{}/copied/one:v1", dst.host()),
        ],
        &[("MIRROR_LOG", "debug")],
    )
    .await;
    assert_ne!(run.code, 0, "{}", printed(&run));
    let all = printed(&run);
    assert!(
        all.contains(&format!(
            "through the proxy https://squid:***@{}",
            front.host()
        )),
        "{all}"
    );
    assert!(all.contains("UnknownIssuer"), "{all}");
    assert!(!all.contains(PROXY_PASSWORD), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The client broke off the handshake, once a host and not again (a
    // certificate that does not verify will not verify on a retry):
    // nothing reached the proxy.
    let failed = front.failed_handshakes();
    assert!((1..=2).contains(&failed), "{failed} failed handshakes");
    assert_eq!(front.handshakes(), 0);
    assert_eq!(proxy.requests(), vec![], "{}", proxy.log());
    dst.assert_nothing_written();
}

/// `mirror sync CONFIG ARGS` with its own state directory and `env`.
async fn sync_run(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let mut all = vec!["sync", "--progress", "none", "--output", "json"];
    all.extend_from_slice(args);
    all.push(config.to_str().unwrap());
    let mut env = env.to_vec();
    env.push(("MIRROR_STATE_DIR", state_dir));
    mirror(&all, &env).await
}

/// A sync config copying `src`'s `app/one:v1` to `dst`'s `target`, with
/// `head` (top-level keys) first.
fn write_sync_config(
    path: &std::path::Path,
    head: &str,
    src: &Registry,
    dst: &Registry,
    target: &str,
) {
    std::fs::write(
        path,
        format!(
            "{head}sync:\n  - {{source: {}/app/one, target: {}/{target}, tags: [v1]}}\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn the_sync_proxy_flag_wins_over_the_config_key() {
    let (src, dst, digest) = two_registries().await;
    let proxy = Tinyproxy::start_open().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.yaml");
    let nothing_there = format!("http://127.0.0.1:{}", free_port());

    // `--proxy` over `proxy:` (and the environment).
    write_sync_config(
        &config,
        &format!("proxy: {nothing_there}\n"),
        &src,
        &dst,
        "copied/one",
    );
    let run = sync_run(
        &config,
        &["--proxy", &proxy.url()],
        &[("HTTP_PROXY", &nothing_there)],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest.clone())
    );
    assert_copied_through(&proxy, &src, &dst);

    // `--proxy none` over a `proxy:` that names a working proxy: direct.
    write_sync_config(
        &config,
        &format!("proxy: {}\n", proxy.url()),
        &src,
        &dst,
        "direct/one",
    );
    let run = sync_run(&config, &["--proxy", "none"], &[]).await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "direct/one", "v1").await,
        Some(digest)
    );
    assert_eq!(proxy.count("GET", "/direct/"), 0, "{}", proxy.log());
    assert_eq!(proxy.count("PUT", "/direct/"), 0, "{}", proxy.log());

    // A bad flag is refused without echoing its password.
    let run = sync_run(&config, &["--proxy", "socks5://u:hunter2@p:1080"], &[]).await;
    assert_eq!(run.code, 2, "{}", printed(&run));
    assert!(printed(&run).contains("--proxy"), "{}", printed(&run));
    assert!(!printed(&run).contains("hunter2"), "{}", printed(&run));
}

#[tokio::test]
async fn an_https_proxy_for_sync_from_the_config_or_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.yaml");

    // `proxy:` and `proxy_ca_file:` (relative to the config's directory).
    let (src, dst, digest) = two_registries().await;
    let (proxy, front, ca) = https_proxy().await;
    std::fs::copy(ca.ca_pem_path(), dir.path().join("proxy-ca.pem")).unwrap();
    write_sync_config(
        &config,
        &format!("proxy: {}\nproxy_ca_file: proxy-ca.pem\n", front.url()),
        &src,
        &dst,
        "copied/one",
    );
    let run = sync_run(&config, &[], &[]).await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest.clone())
    );
    assert_copied_through(&proxy, &src, &dst);
    assert!(front.handshakes() >= 1);

    // Without the CA, the same config fails naming the certificate cause.
    write_sync_config(
        &config,
        &format!("proxy: {}\n", front.url()),
        &src,
        &dst,
        "untrusted/one",
    );
    let run = sync_run(&config, &[], &[]).await;
    assert_ne!(run.code, 0, "{}", printed(&run));
    assert!(printed(&run).contains("UnknownIssuer"), "{}", printed(&run));
    assert_eq!(proxy.count("PUT", "/untrusted/"), 0);

    // The flags over a config without proxy keys.
    let (src, dst, digest) = two_registries().await;
    let (proxy, front, ca) = https_proxy().await;
    write_sync_config(&config, "", &src, &dst, "copied/one");
    let run = sync_run(
        &config,
        &[
            "--proxy",
            &front.url(),
            "--proxy-ca-file",
            ca.ca_pem_path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "copied/one", "v1").await,
        Some(digest)
    );
    assert_copied_through(&proxy, &src, &dst);
    assert!(front.handshakes() >= 1);
}

/// `--proxy` on an azureml command reaches the Azure SDK's token request
/// too (here a managed identity endpoint, as App Service has one), not
/// only the registries: the proxy logs the token request, then the ACR
/// exchange.
#[tokio::test]
async fn the_azureml_proxy_flag_carries_the_entra_token_request() {
    const AAD_TOKEN: &str = "aad-SECRET-proxy";
    // Through tinyproxy as it is, then behind a TLS front whose CA
    // --proxy-ca-file names (the SDK's HTTP client trusts it too).
    for https in [false, true] {
        let source = Registry::start_open().await.unwrap();
        let (customer, tokens) = Registry::start_with_token_auth(
            Default::default(),
            TokenServerOptions::default()
                .with_aad_token(AAD_TOKEN)
                .with_managed_identity("msi-SECRET-proxy"),
        )
        .await
        .unwrap();
        let (proxy, front, ca) = https_proxy().await;
        let endpoint = tokens.managed_identity_endpoint();
        let source_arg = format!("{}/azureml/runtime", source.host());
        let target_arg = customer.host();
        let proxy_url = if https { front.url() } else { proxy.url() };
        let mut args = vec![
            "azureml",
            "check",
            "--region",
            "eastus",
            "--source",
            &source_arg,
            "--target",
            &target_arg,
            "--entra-token",
            "azure-sdk",
            "--proxy",
            &proxy_url,
        ];
        if https {
            args.extend(["--proxy-ca-file", ca.ca_pem_path().to_str().unwrap()]);
        }
        let env = [
            ("IDENTITY_ENDPOINT", endpoint.as_str()),
            ("IDENTITY_HEADER", "msi-SECRET-proxy"),
        ];
        let run = mirror(&args, &env).await;
        // The images are not there (exit 1); the login worked.
        run.assert_code_of(&format!("https {https}"), 1);
        let msi = tokens
            .requests()
            .into_iter()
            .filter(|q| q.path == "/msi/token")
            .count();
        assert_eq!(msi, 1, "{:?}", tokens.requests());
        assert_eq!(proxy.count("GET", &endpoint), 1, "{}", proxy.log());
        assert!(
            proxy.count("POST", &format!("{}/oauth2/exchange", tokens.base_url())) >= 1,
            "{}",
            proxy.log()
        );
        assert_eq!(front.handshakes() > 0, https);
        assert!(!printed(&run).contains(AAD_TOKEN), "{}", printed(&run));
    }
}

/// The Azure CLI makes its own requests: `--proxy` goes into its
/// environment (`HTTPS_PROXY`, `HTTP_PROXY`), `--proxy none` clears it,
/// and without the flag it gets the environment's (the one mirror uses,
/// both cases set). A stand-in `az` on
/// PATH records what it was given.
#[tokio::test]
async fn the_azure_cli_is_given_the_proxy_flag_in_its_environment() {
    const AAD_TOKEN: &str = "aad-SECRET-cli";
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("az.log");
    let script = bin.path().join("az");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"https=$HTTPS_PROXY|$https_proxy http=$HTTP_PROXY|$http_proxy\" >> '{}'\nprintf '{{\"accessToken\": \"{AAD_TOKEN}\", \"expires_on\": %s, \"tokenType\": \"Bearer\"}}' $(( $(date +%s) + 3600 ))\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let proxy = Tinyproxy::start_open().await.unwrap();
    let elsewhere = format!("http://env-proxy.invalid:{}", free_port());
    let with_password = proxy.url_with("squid", PROXY_PASSWORD);

    for (flag, env_proxy, az_sees) in [
        (Some(with_password.as_str()), Some(elsewhere.as_str()), {
            let p = with_password.clone();
            format!("https={p}|{p} http={p}|{p}")
        }),
        (
            Some("none"),
            Some(elsewhere.as_str()),
            "https=| http=|".into(),
        ),
        (
            None,
            Some(elsewhere.as_str()),
            format!("https={elsewhere}|{elsewhere} http=|"),
        ),
    ] {
        let source = Registry::start_open().await.unwrap();
        let (customer, _tokens) = Registry::start_with_token_auth(
            Default::default(),
            TokenServerOptions::default().with_aad_token(AAD_TOKEN),
        )
        .await
        .unwrap();
        let source_arg = format!("{}/azureml/runtime", source.host());
        let target_arg = customer.host();
        let mut args = vec![
            "azureml",
            "check",
            "--region",
            "eastus",
            "--source",
            &source_arg,
            "--target",
            &target_arg,
            "--entra-token",
            "azure-cli",
        ];
        if let Some(f) = flag {
            args.extend(["--proxy", f]);
        }
        let mut env = vec![("PATH", path.as_str())];
        if let Some(e) = env_proxy {
            // Only HTTPS_PROXY: the registries here are plain HTTP.
            env.push(("HTTPS_PROXY", e));
        }
        let _ = std::fs::remove_file(&log);
        let run = mirror(&args, &env).await;
        // The images are not there (exit 1); the login worked.
        run.assert_code_of(&format!("{flag:?}"), 1);
        let seen = std::fs::read_to_string(&log).unwrap();
        assert_eq!(seen.trim(), az_sees, "{flag:?}");
        assert!(!printed(&run).contains(PROXY_PASSWORD), "{}", printed(&run));
        assert!(!printed(&run).contains(AAD_TOKEN), "{}", printed(&run));
    }
}
