//! Auth against the real registry: htpasswd basic, bearer tokens from a token
//! server the registry verifies, refresh tokens, ACR exchange, TLS, and no
//! secret in any output.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_tests::images::{blob, client, image, push_blob, push_image, repo};
use mirror_tests::{Grant, Registry, RegistryOptions, TestCa, TokenServerOptions};
use registry_client::{
    Client, ClientConfig, Credential, ErrorKind, MountOutcome, Secret, StaticCredentials,
};

const PASSWORD: &str = "pw-\"quoted\"-$ecret\\value";

/// A registry with token auth whose token server knows user `bob`.
async fn token_registry() -> (Registry, mirror_tests::TokenServer) {
    Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_user("bob", PASSWORD),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn htpasswd_basic_auth_pushes_and_pulls() {
    let reg = Registry::start_htpasswd(&[("alice", PASSWORD)])
        .await
        .unwrap();
    let c = client(&reg.host(), Some(Credential::basic("alice", PASSWORD)));
    let r = repo(&reg.host(), "team/app");
    let img = image(1, &[100], false);
    push_image(&c, &r, "v1", &img).await;
    let got = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap();
    assert_eq!(got.bytes, img.manifest);
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_naming_the_registry_without_a_retry_storm() {
    let reg = Registry::start_htpasswd(&[("alice", PASSWORD)])
        .await
        .unwrap();
    let c = client(
        &reg.host(),
        Some(Credential::basic("alice", "wrong-password-XYZ")),
    );
    let r = repo(&reg.host(), "team/app");
    let err = c
        .head_blob(&r, &registry_client::Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&reg.host()) && msg.contains("alice"), "{msg}");
    assert!(!msg.contains("wrong-password-XYZ"), "{msg}");
    // One anonymous try that learns the challenge, one with the password.
    assert_eq!(reg.count_requests("HEAD", "/v2/team/app/blobs/"), 2);
}

#[tokio::test]
async fn no_credentials_for_a_basic_registry_is_a_clear_auth_error() {
    let reg = Registry::start_htpasswd(&[("alice", PASSWORD)])
        .await
        .unwrap();
    let c = client(&reg.host(), None);
    let err = c.ping(&reg.host()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("anonymous"), "{err}");
}

#[tokio::test]
async fn bearer_tokens_escalate_from_pull_to_push_and_are_cached() {
    let (reg, tokens) = token_registry().await;
    let c = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    let r = repo(&reg.host(), "scoped/repo");
    let d = registry_client::Digest::sha256_of(b"nothing");
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), None);
    let pushed = push_blob(&c, &r, blob(2, 1000)).await;
    assert_eq!(c.head_blob(&r, &pushed).await.unwrap(), Some(1000));
    for _ in 0..5 {
        c.head_blob(&r, &pushed).await.unwrap();
    }
    let scopes: Vec<Vec<String>> = tokens
        .requests()
        .into_iter()
        .filter(|q| q.path == "/token")
        .map(|q| q.scopes)
        .collect();
    assert_eq!(
        scopes,
        vec![
            vec!["repository:scoped/repo:pull".to_string()],
            vec!["repository:scoped/repo:pull,push".to_string()],
        ],
        "one token for pull, one for push, each reused"
    );
    assert!(tokens
        .requests()
        .iter()
        .all(|q| q.username.as_deref() == Some("bob")));
}

#[tokio::test]
async fn a_mount_asks_for_pull_on_the_source_and_push_on_the_target() {
    let (reg, tokens) = token_registry().await;
    let c = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    let from = repo(&reg.host(), "source/base");
    let to = repo(&reg.host(), "target/app");
    let d = push_blob(&c, &from, blob(3, 500)).await;
    tokens.clear_requests();
    assert!(matches!(
        c.mount_blob(&to, &d, &from).await.unwrap(),
        MountOutcome::Mounted
    ));
    let asked: Vec<Vec<String>> = tokens.requests().into_iter().map(|q| q.scopes).collect();
    assert_eq!(
        asked,
        vec![vec![
            "repository:source/base:pull".to_string(),
            "repository:target/app:pull,push".to_string()
        ]]
    );
    assert_eq!(c.head_blob(&to, &d).await.unwrap(), Some(500));
}

#[tokio::test]
async fn a_user_without_push_gets_an_auth_error_not_a_loop() {
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_restricted_user(
            "reader",
            PASSWORD,
            vec![Grant::repository("ro/*", &["pull"])],
        ),
    )
    .await
    .unwrap();
    let c = client(&reg.host(), Some(Credential::basic("reader", PASSWORD)));
    let r = repo(&reg.host(), "ro/repo");
    assert_eq!(
        c.head_blob(&r, &registry_client::Digest::sha256_of(b"x"))
            .await
            .unwrap(),
        None
    );
    let err = c.start_upload(&r).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains(&reg.host()), "{err}");
    assert!(tokens.requests().len() <= 4, "{:?}", tokens.requests());
}

#[tokio::test]
async fn a_wrong_password_at_the_token_endpoint_names_the_registry() {
    let (reg, tokens) = token_registry().await;
    let c = client(
        &reg.host(),
        Some(Credential::basic("bob", "not-the-password-QQQ")),
    );
    let err = c.ping(&reg.host()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let msg = format!("{err} {err:?}");
    assert!(msg.contains(&reg.host()) && msg.contains("bob"), "{msg}");
    assert!(!msg.contains("not-the-password-QQQ"), "{msg}");
    assert_eq!(
        tokens.requests().len(),
        1,
        "no retry storm: {:?}",
        tokens.requests()
    );
}

#[tokio::test]
async fn tokens_are_fetched_again_after_they_expire() {
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default()
            .with_user("bob", PASSWORD)
            .with_expires_in(1),
    )
    .await
    .unwrap();
    let c = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    let r = repo(&reg.host(), "exp/repo");
    let d = registry_client::Digest::sha256_of(b"x");
    c.head_blob(&r, &d).await.unwrap();
    c.head_blob(&r, &d).await.unwrap();
    assert_eq!(tokens.tokens_issued(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.head_blob(&r, &d).await.unwrap();
    assert_eq!(tokens.tokens_issued(), 2);
}

#[tokio::test]
async fn anonymous_pull_gets_a_token_without_credentials() {
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default()
            .with_user("bob", PASSWORD)
            .with_anonymous_pull(true),
    )
    .await
    .unwrap();
    let pusher = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    let r = repo(&reg.host(), "public/img");
    let img = image(4, &[10], false);
    push_image(&pusher, &r, "v1", &img).await;
    tokens.clear_requests();
    let anon = client(&reg.host(), None);
    assert_eq!(
        anon.get_manifest(&r.tag("v1").unwrap())
            .await
            .unwrap()
            .bytes,
        img.manifest
    );
    assert!(tokens.requests().iter().all(|q| !q.has_authorization));
}

#[tokio::test]
async fn an_identity_token_uses_the_oauth2_refresh_grant() {
    let (reg, tokens) = token_registry().await;
    // Obtain a refresh token the way `docker login` does (password grant, offline).
    let form = [
        ("grant_type", "password"),
        ("username", "bob"),
        ("password", PASSWORD),
        ("service", tokens.service()),
        ("client_id", "test"),
        ("access_type", "offline"),
        ("scope", ""),
    ];
    let v: serde_json::Value = reqwest::Client::new()
        .post(tokens.realm())
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    tokens.clear_requests();

    let c = client(
        &reg.host(),
        Some(Credential::IdentityToken(Secret::new(refresh))),
    );
    let r = repo(&reg.host(), "idt/repo");
    push_blob(&c, &r, blob(5, 100)).await;
    let grants: Vec<Option<String>> = tokens
        .requests()
        .into_iter()
        .map(|q| q.grant_type)
        .collect();
    assert!(!grants.is_empty());
    assert!(
        grants.iter().all(|g| g.as_deref() == Some("refresh_token")),
        "{grants:?}"
    );

    let bad = client(
        &reg.host(),
        Some(Credential::IdentityToken(Secret::new(
            "not-a-refresh-token",
        ))),
    );
    let err = bad.ping(&reg.host()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[tokio::test]
async fn an_entra_token_is_exchanged_for_an_acr_refresh_token_once() {
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default().with_aad_token("aad-access-token-SECRET"),
    )
    .await
    .unwrap();
    let cred = Credential::AcrAccessToken {
        tenant: Some("tenant-1".into()),
        token: Secret::new("aad-access-token-SECRET"),
    };
    let c = client(&reg.host(), Some(cred));
    let r = repo(&reg.host(), "cap/lifecycler/installed");
    let img = image(6, &[10, 20], false);
    push_image(&c, &r, "stable", &img).await;
    let reqs = tokens.requests();
    let exchanges = reqs.iter().filter(|q| q.path == "/oauth2/exchange").count();
    assert_eq!(exchanges, 1, "{reqs:?}");
    assert!(reqs
        .iter()
        .filter(|q| q.path != "/oauth2/exchange")
        .all(|q| q.grant_type.as_deref() == Some("refresh_token")));

    let wrong = client(
        &reg.host(),
        Some(Credential::AcrAccessToken {
            tenant: None,
            token: Secret::new("expired-aad-token"),
        }),
    );
    let err = wrong.ping(&reg.host()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(
        err.to_string().contains("exchange") && err.to_string().contains(&reg.host()),
        "{err}"
    );
}

#[tokio::test]
async fn tls_registry_with_a_private_ca() {
    let ca = TestCa::new().unwrap();
    let reg = Registry::start(RegistryOptions {
        tls: Some(&ca),
        ..Default::default()
    })
    .await
    .unwrap();
    let config = |ca_files: Vec<std::path::PathBuf>| {
        ClientConfig::builder()
            .tls_registries([reg.host()])
            .ca_files(ca_files)
    };
    let c = Client::new(config(vec![ca.ca_pem_path().to_path_buf()]).build()).unwrap();
    // A loopback registry listed in tls_registries is spoken to over
    // https: the registry serves nothing else, so the ping below shows it.
    let count = |v: &str| reg.log().matches(v).count();
    // (The harness's readiness check may have spoken either.)
    let (h2, h1) = (count("HTTP/2.0"), count("HTTP/1.1"));
    c.ping(&reg.host()).await.unwrap();
    let r = repo(&reg.host(), "tls/img");
    push_blob(&c, &r, blob(7, 10)).await;
    // HTTP/1.1 by default, though the registry offers HTTP/2.
    assert_eq!(count("HTTP/2.0"), h2, "{}", reg.log());
    assert!(
        count("HTTP/1.1") >= h1 + 3,
        "ping, POST and PUT over HTTP/1.1"
    );
    // Allowed HTTP/2, the client takes it.
    let auto = Client::new(
        config(vec![ca.ca_pem_path().to_path_buf()])
            .http(registry_client::HttpVersion::Auto)
            .build(),
    )
    .unwrap();
    auto.ping(&reg.host()).await.unwrap();
    push_blob(&auto, &r, blob(8, 10)).await;
    assert!(
        count("HTTP/2.0") >= 3,
        "no HTTP/2 request in the access log"
    );

    let untrusting = Client::new(config(vec![]).build()).unwrap();
    let err = untrusting.ping(&reg.host()).await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
}

/// A writer that keeps everything logged, to search for secrets.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (reg, _tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default()
            .with_user("carol", "carol-password-SECRET1")
            .with_aad_token("aad-SECRET2"),
    )
    .await
    .unwrap();
    let store = StaticCredentials::new().with(
        &reg.host(),
        Credential::basic("carol", "carol-password-SECRET1"),
    );
    let config = ClientConfig::builder().credentials(Arc::new(store)).build();
    let c = Client::new(config.clone()).unwrap();
    let r = repo(&reg.host(), "secret/test");
    let img = image(8, &[10], false);
    push_image(&c, &r, "v1", &img).await;
    let mut shown = format!("{c:?} {config:?}");

    let wrong = client(
        &reg.host(),
        Some(Credential::basic("carol", "wrong-SECRET3")),
    );
    let e1 = wrong.ping(&reg.host()).await.unwrap_err();
    let acr = client(
        &reg.host(),
        Some(Credential::AcrAccessToken {
            tenant: None,
            token: Secret::new("bad-aad-SECRET4"),
        }),
    );
    let e2 = acr.ping(&reg.host()).await.unwrap_err();
    shown += &format!("{e1} {e1:?} {e2} {e2:?} {wrong:?} {acr:?}");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 100, "trace logging captured nothing");
    for text in [&shown, &logs] {
        assert!(
            !text.contains("SECRET"),
            "a secret leaked: {}",
            &text[text.find("SECRET").unwrap().saturating_sub(200)..]
        );
        assert!(!text.contains("Bearer ey"), "a token leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_asks_the_token_endpoint_once() {
    let (reg, tokens) = token_registry().await;
    let c = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    let r = repo(&reg.host(), "burst/repo");
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (c, r) = (c.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            c.head_blob(&r, &registry_client::Digest::sha256_of(&[i]))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), None);
    }
    assert_eq!(tokens.tokens_issued(), 1, "{:?}", tokens.requests());
}

/// HEADs of a blob in `repositories` repositories, two per repository,
/// all at once: each repository's first requests need a token of their own.
async fn heads_at_once(c: &Client, host: &str, repositories: usize) {
    let mut tasks = Vec::new();
    for i in 0..repositories * 2 {
        let (c, r) = (
            c.clone(),
            repo(host, &format!("burst/repo{}", i % repositories)),
        );
        tasks.push(tokio::spawn(async move {
            c.head_blob(&r, &registry_client::Digest::sha256_of(&[i as u8]))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_different_repositories_are_fetched_at_once_and_each_once() {
    // A token endpoint across a network takes a round trip: fetched one
    // after another, a run over 1,000 repositories waits 1,000 of them.
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default()
            .with_user("bob", PASSWORD)
            .with_answer_delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let c = client(&reg.host(), Some(Credential::basic("bob", PASSWORD)));
    heads_at_once(&c, &reg.host(), 4).await;
    assert_eq!(tokens.tokens_issued(), 4, "{:?}", tokens.requests());
    assert!(
        tokens.max_in_flight() >= 2,
        "token fetches for different repositories went one at a time: {:?}",
        tokens.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_token_is_exchanged_once_however_many_repositories_ask_at_once() {
    let (reg, tokens) = Registry::start_with_token_auth(
        RegistryOptions::default(),
        TokenServerOptions::default()
            .with_aad_token("aad-access-token-SECRET")
            .with_answer_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let cred = Credential::AcrAccessToken {
        tenant: None,
        token: Secret::new("aad-access-token-SECRET"),
    };
    let c = client(&reg.host(), Some(cred));
    heads_at_once(&c, &reg.host(), 4).await;
    let reqs = tokens.requests();
    let exchanges = reqs.iter().filter(|q| q.path == "/oauth2/exchange").count();
    assert_eq!(exchanges, 1, "{reqs:?}");
    assert_eq!(tokens.tokens_issued(), 4, "{reqs:?}");
}
