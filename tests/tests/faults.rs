//! Faults between the client and a real registry, injected by the scripted
//! proxy: cut uploads, cut and corrupted downloads, throttling, redirects to
//! a storage host, oversized and obsolete manifests.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::Method;
use mirror_tests::images::{
    blob, client, image, push_blob, push_image, read_all, read_resuming, repo,
};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, FaultProxy, Registry, Rule, StorageHost};
use registry_client::{BlobRead, Client, ClientConfig, Credential, Digest, ErrorKind, RetryPolicy};

fn fast_retries(attempts: u32) -> Client {
    Client::new(
        ClientConfig::builder()
            .retry(RetryPolicy {
                max_attempts: attempts,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                ..RetryPolicy::default()
            })
            .build(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_chunked_upload_cut_mid_patch_resumes_from_the_upload_status() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "resume/upload");
    let data = blob(1, 3 * 1024 * 1024 + 5);
    let d = Digest::sha256_of(&data);
    // The second chunk's connection dies after its headers, before any of
    // its body is stored.
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(0))
            .method(Method::PATCH)
            .nth(2),
    );

    let mut s = c.start_upload(&r).await.unwrap();
    let body = stream::iter([Ok::<_, registry_client::Error>(data.clone())]);
    s.upload_chunked(body, 1024 * 1024).await.unwrap();
    s.finish(&d).await.unwrap();

    let reqs = proxy.requests();
    let patches: Vec<_> = reqs.iter().filter(|q| q.method == Method::PATCH).collect();
    assert_eq!(patches.len(), 5, "four chunks, one of them twice");
    assert!(patches[1].fault.is_some(), "the cut happened");
    let status_gets = reqs
        .iter()
        .filter(|q| q.method == Method::GET && q.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(status_gets, 1, "one status request after the cut");
    let resumed_from = patches[2]
        .headers
        .get("content-range")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        resumed_from, "1048576-2097151",
        "continued from the offset the registry confirmed"
    );
    let back = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back, data);
}

#[tokio::test]
async fn a_session_the_registry_drops_after_a_partial_chunk_is_a_clear_error() {
    // distribution 2.8 stores the bytes of a broken PATCH, then refuses the
    // session because its size no longer matches the signed `_state`: the
    // client must say so rather than loop or commit something wrong.
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "resume/dropped");
    let data = blob(11, 3 * 1024 * 1024);
    let d = Digest::sha256_of(&data);
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(300_000))
            .method(Method::PATCH)
            .nth(2),
    );
    let mut s = c.start_upload(&r).await.unwrap();
    let body = stream::iter([Ok::<_, registry_client::Error>(data.clone())]);
    let err = s.upload_chunked(body, 1024 * 1024).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("BLOB_UPLOAD_INVALID"), "{err}");
    assert_eq!(
        c.head_blob(&r, &d).await.unwrap(),
        None,
        "nothing committed"
    );
}

#[tokio::test]
async fn a_download_cut_mid_stream_continues_from_the_verified_offset() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "resume/download");
    let data = blob(2, 2 * 1024 * 1024);
    let d = push_blob(&c, &r, data.clone()).await;
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(700_000))
            .method(Method::GET)
            .path_contains("/blobs/sha256")
            .nth(1),
    );

    let size = Some(data.len() as u64);
    let mut s = c
        .get_blob(&r, &d, BlobRead { size, resume: None })
        .await
        .unwrap();
    let mut got = Vec::new();
    let err = loop {
        match s.next().await {
            Some(Ok(b)) => got.extend_from_slice(&b),
            Some(Err(e)) => break e,
            None => panic!("the stream should have been cut"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert_eq!(s.offset(), got.len() as u64);
    let resumed = c
        .get_blob(
            &r,
            &d,
            BlobRead {
                size,
                resume: s.hasher(),
            },
        )
        .await
        .unwrap();
    got.extend(read_all(resumed).await.unwrap());
    assert_eq!(got, data.to_vec());
    let served: u64 = proxy
        .requests()
        .iter()
        .filter(|q| q.method == Method::GET)
        .map(|q| q.response_body_bytes)
        .sum();
    assert!(
        served < data.len() as u64 + 100_000,
        "served {served} bytes"
    );
}

#[tokio::test]
async fn a_corrupted_blob_fails_naming_expected_and_actual_digests() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "corrupt/blob");
    let data = blob(3, 100_000);
    let d = push_blob(&c, &r, data.clone()).await;
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(5000))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    let err = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    let mut bad = data.to_vec();
    bad[5000] ^= 0xff;
    let msg = err.to_string();
    assert!(
        msg.contains(&d.to_string()) && msg.contains(&Digest::sha256_of(&bad).to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn a_corrupted_manifest_by_digest_is_refused() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "corrupt/manifest");
    let img = image(4, &[10], false);
    let d = push_image(&c, &r, "v1", &img).await;
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(10))
            .method(Method::GET)
            .path_contains("/manifests/"),
    );
    let err = c.get_manifest(&r.digest(&d)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let err = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Integrity,
        "by tag, checked against Docker-Content-Digest: {err}"
    );
}

#[tokio::test]
async fn blob_redirects_to_another_host_carry_no_authorization() {
    let reg = Registry::start_htpasswd(&[("alice", "alice-pw")])
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.base_url()).await.unwrap();
    let storage = StorageHost::start().await.unwrap();
    let c = client(&proxy.host(), Some(Credential::basic("alice", "alice-pw")));
    let r = repo(&proxy.host(), "redirected/blob");
    let data = blob(5, 1_000_000);
    let d = push_blob(&c, &r, data.clone()).await;
    storage.put(&format!("/v2/redirected/blob/blobs/{d}"), data.clone());
    proxy.add_rule(
        Rule::new(Fault::RedirectTo(storage.base_url()))
            .method(Method::GET)
            .path_contains("/blobs/sha256"),
    );

    let got = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got, data.to_vec());
    // Resuming follows the redirect with Range, still without credentials.
    let held = read_resuming(&d, 1_000_000, &data[..400_000]);
    let rest = read_all(c.get_blob(&r, &d, held).await.unwrap())
        .await
        .unwrap();
    assert_eq!(rest, data[400_000..].to_vec());

    let seen = storage.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|q| q.authorization.is_none()), "{seen:?}");
    assert_eq!(seen[1].range.as_deref(), Some("bytes=400000-"));
    let registry_side: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.path.contains("/blobs/sha256"))
        .collect();
    assert!(registry_side.iter().all(|q| q.has_authorization));
}

#[tokio::test]
async fn retry_after_is_obeyed_and_then_the_request_succeeds() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = fast_retries(3);
    let r = repo(&proxy.host(), "throttled/img");
    let img = image(6, &[10], false);
    push_image(&c, &r, "v1", &img).await;
    proxy.clear_requests();
    proxy.add_rule(
        Rule::new(Fault::throttle(1))
            .method(Method::GET)
            .path_contains("/manifests/")
            .nth(1),
    );
    let started = Instant::now();
    let got = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap();
    assert_eq!(got.bytes, img.manifest);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was not obeyed"
    );
    assert_eq!(proxy.count(&Method::GET, "/manifests/"), 2);
}

/// Push two blobs, make the first HEAD of one answer `fault`, and time how
/// long a HEAD of the other, sent `after` the first, takes to come back.
async fn second_request_wait(
    c: &Client,
    proxy: &FaultProxy,
    name: &str,
    fault: Fault,
    after: Duration,
) -> Duration {
    let r = repo(&proxy.host(), name);
    let a = push_blob(c, &r, blob(7, 10)).await;
    let b = push_blob(c, &r, blob(8, 10)).await;
    proxy.add_rule(
        Rule::new(fault)
            .method(Method::HEAD)
            .path_contains(&a.to_string())
            .nth(1),
    );
    let started = Instant::now();
    let first = {
        let (c, r, a) = (c.clone(), r.clone(), a.clone());
        tokio::spawn(async move { c.head_blob(&r, &a).await })
    };
    tokio::time::sleep(after).await;
    c.head_blob(&r, &b).await.unwrap().unwrap();
    let second_done = started.elapsed();
    first.await.unwrap().unwrap().unwrap();
    second_done
}

#[tokio::test]
async fn a_throttled_host_pauses_every_request_to_it() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = fast_retries(3);
    let waited = second_request_wait(
        &c,
        &proxy,
        "paused/host",
        Fault::throttle(2),
        Duration::from_millis(300),
    )
    .await;
    assert!(
        waited >= Duration::from_millis(1800),
        "a request to the throttled host went out after {waited:?}, before the pause ended"
    );
}

#[tokio::test]
async fn persistent_server_errors_fail_after_the_configured_attempts() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = fast_retries(4);
    let r = repo(&proxy.host(), "broken/server");
    proxy.add_rule(Rule::new(Fault::status(503)).path_contains("/manifests/"));
    let err = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable);
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(proxy.count(&Method::GET, "/manifests/"), 4);

    // A 4xx other than 408/429 is not retried.
    proxy.clear_rules();
    proxy.clear_requests();
    proxy.add_rule(Rule::new(Fault::status(400)).path_contains("/manifests/"));
    let err = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert_eq!(proxy.count(&Method::GET, "/manifests/"), 1);
}

#[tokio::test]
async fn oversized_and_schema1_manifests_are_refused_clearly() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "odd/manifests");
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: Bytes::from(vec![b' '; 5 * 1024 * 1024]),
        })
        .path_contains("/manifests/huge"),
    );
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            )],
            body: Bytes::from_static(
                br#"{"schemaVersion":1,"name":"odd/manifests","tag":"old","fsLayers":[]}"#,
            ),
        })
        .path_contains("/manifests/old"),
    );
    let err = c.get_manifest(&r.tag("huge").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains("4194304"), "{err}");
    let err = c.get_manifest(&r.tag("old").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("schema 1"), "{err}");
}

#[tokio::test]
async fn tag_listing_follows_link_pagination() {
    // distribution 2.8.2 ignores `n` and sends no Link header, so the pages
    // are scripted at the proxy; the real registry answers the rest.
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "paged/tags");
    let page = |tags: &[&str], next: Option<&str>| {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(n) = next {
            headers.push(("Link".to_string(), format!("<{n}>; rel=\"next\"")));
        }
        Fault::Respond {
            status: 200,
            headers,
            body: Bytes::from(
                serde_json::to_vec(&serde_json::json!({"name": "paged/tags", "tags": tags}))
                    .unwrap(),
            ),
        }
    };
    let base = "/v2/paged/tags/tags/list";
    proxy.add_rule(
        Rule::new(page(&["t0", "t1"], Some(&format!("{base}?n=2&last=t1"))))
            .path_contains("list?n=2")
            .nth(1),
    );
    proxy.add_rule(
        Rule::new(page(&["t2", "t3"], Some(&format!("{base}?n=2&last=t3"))))
            .path_contains("last=t1"),
    );
    proxy.add_rule(
        Rule::new(page(&["t4", "t5"], Some(&format!("{base}?n=2&last=t5"))))
            .path_contains("last=t3"),
    );
    proxy.add_rule(Rule::new(page(&["t6"], None)).path_contains("last=t5"));
    let tags = c.list_tags(&r, Some(2)).await.unwrap();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]);
    assert_eq!(proxy.count(&Method::GET, "/tags/list"), 4);
}

#[tokio::test]
async fn chunks_respect_the_registry_minimum_and_requests_name_mirror() {
    let (reg, proxy) = open_registry_behind_proxy().await;
    let r = repo(&proxy.host(), "min/chunk");
    // A real session, announced through the proxy with a 2 MiB minimum.
    let direct = client(&reg.host(), None);
    let real = direct
        .start_upload(&repo(&reg.host(), "min/chunk"))
        .await
        .unwrap();
    let mut location = real.location().clone();
    location
        .set_port(Some(
            proxy.host().rsplit(':').next().unwrap().parse().unwrap(),
        ))
        .unwrap();
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 202,
            headers: vec![
                ("Location".into(), location.to_string()),
                ("OCI-Chunk-Min-Length".into(), "2097152".into()),
                ("Range".into(), "0-0".into()),
            ],
            body: Bytes::new(),
        })
        .method(Method::POST)
        .nth(1),
    );
    let c = client(&proxy.host(), None);
    let mut s = c.start_upload(&r).await.unwrap();
    assert_eq!(s.min_chunk_size(), Some(2 * 1024 * 1024));
    let data = blob(12, 5 * 1024 * 1024);
    let d = Digest::sha256_of(&data);
    s.upload_chunked(
        stream::iter([Ok::<_, registry_client::Error>(data.clone())]),
        1024 * 1024,
    )
    .await
    .unwrap();
    s.finish(&d).await.unwrap();
    let patches: Vec<u64> = proxy
        .requests()
        .iter()
        .filter(|q| q.method == Method::PATCH)
        .map(|q| q.request_body_bytes)
        .collect();
    assert_eq!(patches, vec![2 * 1024 * 1024, 2 * 1024 * 1024, 1024 * 1024]);
    for q in proxy.requests() {
        let ua = q
            .headers
            .get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(ua, format!("mirror/{}", env!("CARGO_PKG_VERSION")));
    }
}

#[tokio::test]
async fn a_server_that_ignores_range_is_coped_with() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let storage = StorageHost::start().await.unwrap();
    storage.ignore_range(true);
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "no/range");
    let data = blob(13, 500_000);
    let d = push_blob(&c, &r, data.clone()).await;
    storage.put(&format!("/v2/no/range/blobs/{d}"), data.clone());
    proxy.add_rule(
        Rule::new(Fault::RedirectTo(storage.base_url()))
            .method(Method::GET)
            .path_contains("/blobs/sha256"),
    );
    let held = read_resuming(&d, 500_000, &data[..123_456]);
    let rest = read_all(c.get_blob(&r, &d, held).await.unwrap())
        .await
        .unwrap();
    assert_eq!(rest, data[123_456..].to_vec());
    assert_eq!(storage.requests()[0].status, 200);
}

#[tokio::test]
async fn a_stalled_response_hits_the_read_timeout_and_is_retryable() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = Client::new(
        ClientConfig::builder()
            .read_timeout(Duration::from_millis(300))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build(),
    )
    .unwrap();
    let r = repo(&proxy.host(), "stalled/repo");
    proxy.add_rule(Rule::new(Fault::Delay(Duration::from_secs(3))).path_contains("/manifests/"));
    let started = Instant::now();
    let err = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the read timeout did not fire"
    );
}

#[tokio::test]
async fn credentials_never_follow_a_link_to_another_host() {
    let reg = Registry::start_htpasswd(&[("alice", "alice-pw")])
        .await
        .unwrap();
    // The registry as the client knows it, and another origin in front of
    // the same registry that will challenge too.
    let home = FaultProxy::start(&reg.base_url()).await.unwrap();
    let elsewhere = FaultProxy::start(&reg.base_url()).await.unwrap();
    let c = client(&home.host(), Some(Credential::basic("alice", "alice-pw")));
    c.ping(&home.host()).await.unwrap();
    home.add_rule(
        Rule::new(Fault::Respond {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                (
                    "Link".into(),
                    format!(
                        "<{}/v2/x/tags/list?last=a>; rel=\"next\"",
                        elsewhere.base_url()
                    ),
                ),
            ],
            body: Bytes::from_static(br#"{"name":"x","tags":["a"]}"#),
        })
        .path_contains("/tags/list")
        .nth(1),
    );
    let err = c
        .list_tags(&repo(&home.host(), "x"), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let seen = elsewhere.requests();
    assert_eq!(
        seen.len(),
        1,
        "the challenge from another host is not answered"
    );
    assert!(!seen[0].has_authorization);
}

#[tokio::test]
async fn an_insufficient_scope_challenge_is_answered_with_a_wider_token() {
    let (reg, tokens) = mirror_tests::Registry::start_with_token_auth(
        mirror_tests::RegistryOptions::default(),
        mirror_tests::TokenServerOptions::default().with_user("bob", "bob-pw"),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(&reg.base_url()).await.unwrap();
    let c = client(&proxy.host(), Some(Credential::basic("bob", "bob-pw")));
    let r = repo(&proxy.host(), "app");
    let img = image(20, &[10], false);
    push_image(&c, &r, "v1", &img).await;
    c.get_manifest(&r.tag("v1").unwrap()).await.unwrap();
    let challenge = format!(
        "Bearer realm=\"{}\",service=\"{}\",scope=\"repository:app:pull repository:other:pull\",error=\"insufficient_scope\"",
        tokens.realm(),
        tokens.service()
    );
    proxy.clear_requests();
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), challenge)],
            body: Bytes::new(),
        })
        .method(Method::GET)
        .path_contains("/manifests/")
        .nth(1),
    );
    let got = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap();
    assert_eq!(got.bytes, img.manifest);
    let asked: Vec<Vec<String>> = tokens.requests().into_iter().map(|q| q.scopes).collect();
    assert!(
        asked.contains(&vec![
            "repository:app:pull".to_string(),
            "repository:other:pull".to_string()
        ]),
        "{asked:?}"
    );
    let reqs = proxy.requests();
    let auth = |i: usize| reqs[i].headers.get("authorization").cloned();
    assert_eq!(reqs.len(), 2);
    assert_ne!(auth(0), auth(1), "the retry carries the new, wider token");
}

#[tokio::test]
async fn backoff_after_a_server_error_holds_every_request_to_that_host() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = Client::new(
        ClientConfig::builder()
            .retry(RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(1),
                ..RetryPolicy::default()
            })
            .build(),
    )
    .unwrap();
    let waited = second_request_wait(
        &c,
        &proxy,
        "backoff/host",
        Fault::status(503),
        Duration::from_millis(100),
    )
    .await;
    // The backoff after the 503 is at least half of the 1 s base (jitter).
    assert!(
        waited >= Duration::from_millis(450),
        "went out after {waited:?}, inside the backoff"
    );
}

#[tokio::test]
async fn an_upload_longer_than_the_read_timeout_is_not_cut() {
    // reqwest's read timeout runs from the start of a request to its
    // answer, so it cut streamed uploads that took longer; ours is reset by
    // every chunk and stops while the body waits on its source.
    let reg = Registry::start_open().await.unwrap();
    let c = Client::new(
        ClientConfig::builder()
            .read_timeout(Duration::from_millis(300))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build(),
    )
    .unwrap();
    let r = repo(&reg.host(), "slow/upload");
    let data = blob(31, 500_000);
    let d = Digest::sha256_of(&data);
    let chunks: Vec<Bytes> = data.chunks(50_000).map(Bytes::copy_from_slice).collect();
    let body = stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(chunk)
    });
    let started = Instant::now();
    let session = c.start_upload(&r).await.unwrap();
    session
        .put_whole(Box::pin(body), data.len() as u64, &d)
        .await
        .unwrap();
    assert!(started.elapsed() > Duration::from_millis(900));
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), Some(500_000));
}

#[tokio::test]
async fn a_body_that_stalls_midway_hits_the_read_timeout_and_is_retryable() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = Client::new(
        ClientConfig::builder()
            .read_timeout(Duration::from_millis(300))
            .build(),
    )
    .unwrap();
    let r = repo(&proxy.host(), "stalled/body");
    let data = blob(32, 400_000);
    let d = push_blob(&c, &r, data.clone()).await;
    proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(100_000))
            .method(Method::GET)
            .path_contains("/blobs/sha256"),
    );
    let started = Instant::now();
    let err = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
