//! Referrers through registry-client: the tag schema against the real
//! registry (distribution 2.8 has no referrers API), the API against the
//! purpose-built [`ReferrersServer`] (no registry serving it can be
//! installed here).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use mirror_tests::images::{self, client, image, push_image, push_referrer, repo, TestImage};
use mirror_tests::setup::open_registry_with_repo;
use mirror_tests::{Fault, FaultProxy, ReferrersServer, ReferrersServerOptions, Registry, Rule};
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::{
    referrers_tag, Client, Descriptor, Digest, IndexUpdate, Manifest, ReferrersSource, Repository,
};

const SIG: &str = "application/vnd.example.signature.v1";
const SBOM: &str = "application/vnd.example.sbom.v1";

/// Push a referrer and list it in the tag-schema index, as a pusher to a
/// registry without the API must.
async fn push_and_index(
    c: &Client,
    r: &Repository,
    subject: &TestImage,
    artifact_type: &str,
    n: u64,
) -> Manifest {
    let (m, put) = push_referrer(c, r, &subject.descriptor(), artifact_type, n).await;
    assert_eq!(
        put.oci_subject, None,
        "distribution 2.8 has no referrers API"
    );
    let added = c
        .add_to_referrers_index(r, &subject.digest, &m.referrer_descriptor().unwrap())
        .await
        .unwrap();
    assert_eq!(added, IndexUpdate::Added);
    m
}

fn types(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn digests(descriptors: &[Descriptor]) -> Vec<Digest> {
    let mut d: Vec<Digest> = descriptors.iter().map(|d| d.digest.clone()).collect();
    d.sort();
    d
}

fn sorted(mut d: Vec<Digest>) -> Vec<Digest> {
    d.sort();
    d
}

// ---- the tag schema, on the real registry -------------------------------

#[tokio::test]
async fn tag_schema_lists_the_referrers_the_client_indexed() {
    let (_reg, c, r) = open_registry_with_repo("app/signed").await;
    let subject = image(1, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let sig = push_and_index(&c, &r, &subject, SIG, 1).await;
    let sbom = push_and_index(&c, &r, &subject, SBOM, 2).await;

    let index = c
        .get_manifest(&r.tag(&referrers_tag(&subject.digest)).unwrap())
        .await
        .unwrap();
    assert_eq!(index.media_type, OCI_INDEX);

    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::TagSchema);
    assert_eq!(
        digests(&listed.manifests),
        sorted(vec![sig.digest.clone(), sbom.digest.clone()])
    );
    for (m, t, n) in [(&sig, SIG, "1"), (&sbom, SBOM, "2")] {
        let d = listed
            .manifests
            .iter()
            .find(|d| d.digest == m.digest)
            .unwrap();
        assert_eq!(d.artifact_type.as_deref(), Some(t));
        assert_eq!(d.media_type, OCI_MANIFEST);
        assert_eq!(d.size, m.bytes.len() as u64);
        assert_eq!(
            d.annotations.get("org.example.n").map(String::as_str),
            Some(n)
        );
        assert!(d
            .annotations
            .contains_key("org.opencontainers.image.created"));
    }

    // Indexing one already listed writes nothing.
    let before = index.digest;
    let again = c
        .add_to_referrers_index(&r, &subject.digest, &sig.referrer_descriptor().unwrap())
        .await
        .unwrap();
    assert_eq!(again, IndexUpdate::AlreadyListed);
    let after = images::tag_digest(r.registry(), r.name(), &referrers_tag(&subject.digest)).await;
    assert_eq!(after, Some(before));
}

#[tokio::test]
async fn tag_schema_is_filtered_by_artifact_type_in_the_client() {
    let (_reg, c, r) = open_registry_with_repo("app/filtered").await;
    let subject = image(2, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let sig1 = push_and_index(&c, &r, &subject, SIG, 1).await;
    let sig2 = push_and_index(&c, &r, &subject, SIG, 2).await;
    let sbom = push_and_index(&c, &r, &subject, SBOM, 3).await;

    let list = |t: Vec<String>| {
        let (c, r, d) = (c.clone(), r.clone(), subject.digest.clone());
        async move { c.referrers(&r, &d, &t).await.unwrap().manifests }
    };
    assert_eq!(
        digests(&list(types(&[SIG])).await),
        sorted(vec![sig1.digest.clone(), sig2.digest.clone()])
    );
    assert_eq!(
        digests(&list(types(&[SBOM])).await),
        vec![sbom.digest.clone()]
    );
    assert_eq!(list(types(&[SIG, SBOM])).await.len(), 3);
    assert!(list(types(&["application/other"])).await.is_empty());
}

#[tokio::test]
async fn another_tools_entry_keeps_its_bytes_through_our_merge() {
    let (_reg, c, r) = open_registry_with_repo("app/shared-index").await;
    let subject = image(3, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    // Another tool's referrer, and the index it wrote: pretty-printed, keys
    // in its own order, fields of its own.
    let (theirs, _) = push_referrer(
        &c,
        &r,
        &subject.descriptor(),
        "application/vnd.other.tool",
        9,
    )
    .await;
    let their_entry = format!(
        r#"{{
      "digest": "{}",
      "size": {},
      "mediaType": "{OCI_MANIFEST}",
      "artifactType": "application/vnd.other.tool",
      "x-other-tool": {{"z": [1.50, true], "a": null}},
      "annotations": {{"zz.signed-by": "ci", "aa.note": "kept"}}
    }}"#,
        theirs.digest,
        theirs.bytes.len()
    );
    let their_index = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_INDEX}\",\n  \"x-written-by\": {{\"tool\": \"other\", \"version\": 3}},\n  \"manifests\": [\n    {their_entry}\n  ],\n  \"annotations\": {{\"b.first\": \"1\", \"a.second\": \"2\"}}\n}}\n"
    );
    let tag = referrers_tag(&subject.digest);
    c.put_manifest(&r, &tag, OCI_INDEX, Bytes::from(their_index.clone()))
        .await
        .unwrap();

    let ours = push_and_index(&c, &r, &subject, SIG, 1).await;

    let merged = c.get_manifest(&r.tag(&tag).unwrap()).await.unwrap();
    let text = std::str::from_utf8(&merged.bytes).unwrap();
    assert!(text.contains(&their_entry), "their entry changed:\n{text}");
    assert!(
        text.contains(r#""x-written-by":{"tool": "other", "version": 3}"#)
            && text.contains(r#""annotations":{"b.first": "1", "a.second": "2"}"#),
        "their index's own fields changed:\n{text}"
    );
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(
        digests(&listed.manifests),
        sorted(vec![theirs.digest.clone(), ours.digest.clone()])
    );
    let kept = listed
        .manifests
        .iter()
        .find(|d| d.digest == theirs.digest)
        .unwrap();
    assert_eq!(
        kept.annotations,
        BTreeMap::from([
            ("aa.note".to_string(), "kept".to_string()),
            ("zz.signed-by".to_string(), "ci".to_string())
        ])
    );
}

#[tokio::test]
async fn two_writers_racing_on_one_index_both_end_up_listed() {
    let (reg, c, r) = open_registry_with_repo("app/raced").await;
    let subject = image(4, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let (a, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    let (b, _) = push_referrer(&c, &r, &subject.descriptor(), SBOM, 2).await;

    // Two writers (two processes, each its own client) through their own
    // proxies, timed so both read the empty index, B writes first (at
    // 100 ms), A's write replaces B's (at 300 ms), and only then does B
    // read back (after 700 ms more).
    let index_path = format!("/manifests/{}", referrers_tag(&subject.digest));
    let proxy_a = FaultProxy::start(&reg.base_url()).await.unwrap();
    proxy_a.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(300)))
            .method(Method::PUT)
            .path_contains(&index_path)
            .nth(1),
    );
    let proxy_b = FaultProxy::start(&reg.base_url()).await.unwrap();
    proxy_b.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(100)))
            .method(Method::PUT)
            .path_contains(&index_path)
            .nth(1),
    );
    proxy_b.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(700)))
            .method(Method::GET)
            .path_contains(&index_path)
            .nth(2),
    );
    let (ca, ra) = (
        client(&proxy_a.host(), None),
        repo(&proxy_a.host(), r.name()),
    );
    let (cb, rb) = (
        client(&proxy_b.host(), None),
        repo(&proxy_b.host(), r.name()),
    );
    let (da, db) = (
        a.referrer_descriptor().unwrap(),
        b.referrer_descriptor().unwrap(),
    );
    let (got_a, got_b) = tokio::join!(
        ca.add_to_referrers_index(&ra, &subject.digest, &da),
        cb.add_to_referrers_index(&rb, &subject.digest, &db),
    );
    assert_eq!(got_a.unwrap(), IndexUpdate::Added);
    assert_eq!(got_b.unwrap(), IndexUpdate::Added);

    // B saw its entry gone and merged again.
    assert_eq!(proxy_b.count(&Method::PUT, &index_path), 2);
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(
        digests(&listed.manifests),
        sorted(vec![a.digest.clone(), b.digest.clone()])
    );
}

#[tokio::test]
async fn writers_in_one_client_take_turns_and_all_are_listed() {
    let (_reg, c, r) = open_registry_with_repo("app/many").await;
    let subject = image(5, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let mut pushed = Vec::new();
    for n in 0..6 {
        pushed.push(push_referrer(&c, &r, &subject.descriptor(), SIG, n).await.0);
    }
    let adds = pushed.iter().map(|m| {
        let (c, r, s) = (c.clone(), r.clone(), subject.digest.clone());
        let d = m.referrer_descriptor().unwrap();
        async move { c.add_to_referrers_index(&r, &s, &d).await }
    });
    for got in futures::future::join_all(adds).await {
        assert_eq!(got.unwrap(), IndexUpdate::Added);
    }
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(
        digests(&listed.manifests),
        sorted(pushed.iter().map(|m| m.digest.clone()).collect())
    );
}

#[tokio::test]
async fn a_registry_without_the_api_is_probed_once() {
    let (reg, c, r) = open_registry_with_repo("app/probed").await;
    let one = image(6, &[1000], false);
    let two = image(7, &[1000], false);
    push_image(&c, &r, "one", &one).await;
    push_image(&c, &r, "two", &two).await;
    assert_eq!(c.referrers_support(r.registry()), None);

    for subject in [&one, &two, &one] {
        let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
        assert_eq!(listed.source, ReferrersSource::TagSchema);
        assert!(listed.manifests.is_empty());
    }
    assert_eq!(reg.count_requests("GET", "/referrers/"), 1);
    assert_eq!(reg.count_requests("GET", "/manifests/sha256-"), 3);
    assert_eq!(
        c.referrers_support(r.registry()),
        Some(ReferrersSource::TagSchema)
    );
}

#[tokio::test]
async fn a_referrers_tag_that_holds_no_index_is_left_alone() {
    let (_reg, c, r) = open_registry_with_repo("app/squatted").await;
    let subject = image(8, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    // Someone tagged an image under the referrers tag.
    let squatter = image(9, &[500], false);
    let tag = referrers_tag(&subject.digest);
    push_image(&c, &r, &tag, &squatter).await;
    let (m, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;

    let err = c
        .add_to_referrers_index(&r, &subject.digest, &m.referrer_descriptor().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&tag) && err.contains("not an OCI index"),
        "{err}"
    );
    assert_eq!(
        images::tag_digest(r.registry(), r.name(), &tag).await,
        Some(squatter.digest.clone())
    );
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert!(listed.manifests.is_empty());
}

// ---- the API, on the purpose-built server --------------------------------

async fn api_server(options: ReferrersServerOptions) -> (ReferrersServer, Client, Repository) {
    let server = ReferrersServer::start_with(options).await.unwrap();
    let c = client(&server.host(), None);
    let r = repo(&server.host(), "app/api");
    (server, c, r)
}

#[tokio::test]
async fn api_lists_referrers_with_their_type_and_annotations() {
    let (server, c, r) = api_server(ReferrersServerOptions::default()).await;
    let subject = image(10, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let (sig, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    let (sbom, _) = push_referrer(&c, &r, &subject.descriptor(), SBOM, 2).await;
    server.clear_requests();

    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::Api);
    assert_eq!(
        digests(&listed.manifests),
        sorted(vec![sig.digest.clone(), sbom.digest.clone()])
    );
    for (m, t, n) in [(&sig, SIG, "1"), (&sbom, SBOM, "2")] {
        let d = listed
            .manifests
            .iter()
            .find(|d| d.digest == m.digest)
            .unwrap();
        assert_eq!(d.artifact_type.as_deref(), Some(t));
        assert_eq!(d.size, m.bytes.len() as u64);
        assert_eq!(
            d.annotations.get("org.example.n").map(String::as_str),
            Some(n)
        );
    }
    // The registry keeps the list: no tag-schema index read or written.
    assert_eq!(server.count("GET", "/referrers/"), 1);
    assert_eq!(server.requests().len(), 1);
    assert!(server.tags("app/api").iter().all(|t| t == "v1"));
}

#[tokio::test]
async fn api_listing_follows_link_over_three_pages() {
    let (server, c, r) = api_server(ReferrersServerOptions {
        page_size: 2,
        ..ReferrersServerOptions::default()
    })
    .await;
    let subject = image(11, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let mut pushed = Vec::new();
    for n in 0..5 {
        pushed.push(
            push_referrer(&c, &r, &subject.descriptor(), SIG, n)
                .await
                .0
                .digest,
        );
    }
    server.clear_requests();

    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::Api);
    assert_eq!(digests(&listed.manifests), sorted(pushed));
    assert_eq!(server.count("GET", "/referrers/"), 3);
}

#[tokio::test]
async fn api_filter_applied_by_the_registry_is_asked_for_and_trusted() {
    let (server, c, r) = api_server(ReferrersServerOptions::default()).await;
    let subject = image(12, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let (sig1, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    let (sig2, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 2).await;
    let (sbom, _) = push_referrer(&c, &r, &subject.descriptor(), SBOM, 3).await;
    server.clear_requests();

    let sigs = c
        .referrers(&r, &subject.digest, &types(&[SIG]))
        .await
        .unwrap();
    assert_eq!(
        digests(&sigs.manifests),
        sorted(vec![sig1.digest.clone(), sig2.digest.clone()])
    );
    let asked = server.requests();
    assert_eq!(asked.len(), 1);
    let query = asked[0].query.clone().unwrap_or_default();
    let sent: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(sent, [("artifactType".to_string(), SIG.to_string())]);

    // Two types: the API filters on one, so everything is asked for and
    // the client keeps both kinds.
    server.clear_requests();
    let both = c
        .referrers(&r, &subject.digest, &types(&[SIG, SBOM]))
        .await
        .unwrap();
    assert_eq!(both.manifests.len(), 3);
    assert!(digests(&both.manifests).contains(&sbom.digest));
    assert_eq!(server.requests()[0].query, None);
}

#[tokio::test]
async fn api_filter_the_registry_ignores_is_applied_by_the_client() {
    let (server, c, r) = api_server(ReferrersServerOptions {
        apply_filter: false,
        page_size: 2,
        ..ReferrersServerOptions::default()
    })
    .await;
    let subject = image(13, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let (sig, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    for n in 2..5 {
        push_referrer(&c, &r, &subject.descriptor(), SBOM, n).await;
    }
    server.clear_requests();

    let sigs = c
        .referrers(&r, &subject.digest, &types(&[SIG]))
        .await
        .unwrap();
    assert_eq!(sigs.source, ReferrersSource::Api);
    assert_eq!(digests(&sigs.manifests), vec![sig.digest.clone()]);
    // The server answered all four, over two pages, without the header.
    assert_eq!(server.count("GET", "/referrers/"), 2);
}

#[tokio::test]
async fn oci_subject_is_read_from_the_put_answer() {
    let (_server, c, r) = api_server(ReferrersServerOptions::default()).await;
    let subject = image(14, &[1000], false);
    push_image(&c, &r, "v1", &subject).await;
    let (_, put) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    assert_eq!(put.oci_subject, Some(subject.digest.clone()));
    // No subject, no header.
    let plain = image(15, &[1000], false);
    images::push_blob(&c, &r, plain.config.clone()).await;
    images::push_blob(&c, &r, plain.layers[0].clone()).await;
    let put = c
        .put_manifest_with_subject(&r, "plain", plain.media_type, plain.manifest.clone())
        .await
        .unwrap();
    assert_eq!((put.digest, put.oci_subject), (plain.digest.clone(), None));

    // A registry without the API does not answer it.
    let (_server, c, r) = api_server(ReferrersServerOptions {
        referrers_api: false,
        ..ReferrersServerOptions::default()
    })
    .await;
    push_image(&c, &r, "v1", &subject).await;
    let (_, put) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    assert_eq!(put.oci_subject, None);
}

#[tokio::test]
async fn the_probe_is_remembered_per_registry() {
    let subject = image(16, &[1000], false);
    // With the API: every listing is one API request, never a tag read.
    let (server, c, r) = api_server(ReferrersServerOptions::default()).await;
    push_image(&c, &r, "v1", &subject).await;
    server.clear_requests();
    for _ in 0..2 {
        let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
        assert_eq!(listed.source, ReferrersSource::Api);
    }
    assert_eq!(server.count("GET", "/referrers/"), 2);
    assert_eq!(server.count("GET", "/manifests/"), 0);
    assert_eq!(
        c.referrers_support(&server.host()),
        Some(ReferrersSource::Api)
    );

    // Without: the first listing probes, the second goes to the tag.
    let (server, c, r) = api_server(ReferrersServerOptions {
        referrers_api: false,
        ..ReferrersServerOptions::default()
    })
    .await;
    push_image(&c, &r, "v1", &subject).await;
    let (m, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    c.add_to_referrers_index(&r, &subject.digest, &m.referrer_descriptor().unwrap())
        .await
        .unwrap();
    server.clear_requests();
    for _ in 0..2 {
        let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
        assert_eq!(listed.source, ReferrersSource::TagSchema);
        assert_eq!(digests(&listed.manifests), vec![m.digest.clone()]);
    }
    assert_eq!(server.count("GET", "/referrers/"), 1);
    assert_eq!(server.count("GET", "/manifests/sha256-"), 2);
}

#[tokio::test]
async fn a_missing_repository_says_nothing_about_the_api() {
    let (server, c, r) = api_server(ReferrersServerOptions::default()).await;
    let subject = image(17, &[1000], false);
    // Nothing pushed yet: the API answers NAME_UNKNOWN, which is no answer
    // about the API, so nothing is remembered and nothing is listed.
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert!(listed.manifests.is_empty());
    assert_eq!(c.referrers_support(&server.host()), None);

    push_image(&c, &r, "v1", &subject).await;
    let (sig, _) = push_referrer(&c, &r, &subject.descriptor(), SIG, 1).await;
    let listed = c.referrers(&r, &subject.digest, &[]).await.unwrap();
    assert_eq!(listed.source, ReferrersSource::Api);
    assert_eq!(digests(&listed.manifests), vec![sig.digest.clone()]);
}

/// The real registry and the purpose-built server side by side, as the
/// engine tests will use them: one client learns each registry apart.
#[tokio::test]
async fn one_client_remembers_each_registry_apart() {
    let reg = Registry::start_open().await.unwrap();
    let server = ReferrersServer::start().await.unwrap();
    let c = client(&reg.host(), None);
    let subject = image(18, &[1000], false);
    let on_reg = repo(&reg.host(), "app/two");
    let on_server = repo(&server.host(), "app/two");
    push_image(&c, &on_reg, "v1", &subject).await;
    push_image(&c, &on_server, "v1", &subject).await;
    let a = c.referrers(&on_reg, &subject.digest, &[]).await.unwrap();
    let b = c.referrers(&on_server, &subject.digest, &[]).await.unwrap();
    assert_eq!(
        (a.source, b.source),
        (ReferrersSource::TagSchema, ReferrersSource::Api)
    );
}
