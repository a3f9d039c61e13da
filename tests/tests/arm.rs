//! The AzureML preset through Azure Resource Manager, against the ARM
//! stand-in (`mirror_tests::arm_server`) and real docker-registry servers:
//! the workspace names the region and the registry; the registry imports
//! each runtime image itself (importImage, followed as ARM's long-running
//! operations are), copying for real between the local registries; then a
//! HEAD at each side says the digests landed. Driven through the library
//! (the CLI flags come in a later step).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror::azureml::arm::{
    default_http_client, ArmClient, ArmErrorKind, ArmLimits, Cloud, ResourceId, StaticToken,
    TokenProvider,
};
use mirror::azureml::preset::{Location, Preset, PresetImage};
use mirror::azureml::server_side::{
    import_all, verify, ImportOutcome, Landed, ServerSideOptions, SourceSide,
};
use mirror::azureml::workspace::{resolve, workspace_id};
use mirror_tests::arm_server::{ArmRequest, ArmServer, PollHeaders};
use mirror_tests::fixtures::{self, azureml_images, push_as, GeneratedImage, Scale};
use mirror_tests::images::{client, digest_as};
use mirror_tests::{Fault, FaultProxy, Registry, Rule};
use registry_client::{Credential, Secret};

const SUB: &str = "00000000-1111-2222-3333-444444444444";
const RG: &str = "ml-rg";
const ARM_TOKEN: &str = "arm-SECRET-token-1";
const SOURCE_PASSWORD: &str = "source-SECRET-2";

/// MCR's layout: the six runtime images under `azureml/runtime`, tagged
/// `eastus-stable`.
fn runtime_images() -> Vec<GeneratedImage> {
    let mut specs = azureml_images("eastus", Scale::Fixture);
    for s in &mut specs {
        s.repository = format!("azureml/runtime/{}", s.repository);
    }
    fixtures::generate_all(&specs)
}

/// A source standing in for MCR, the customer's registry (empty), and
/// ARM knowing a workspace `ws` with that registry attached (`contoso`)
/// and a workspace `bare` without one.
struct World {
    source: Registry,
    target: Registry,
    arm: ArmServer,
    registry_id: ResourceId,
}

async fn world() -> World {
    let source = Registry::start_open().await.unwrap();
    push_as(&source, None, &runtime_images()).await;
    world_with(source).await
}

async fn world_with(source: Registry) -> World {
    let target = Registry::start_open().await.unwrap();
    let arm = ArmServer::start(ARM_TOKEN).await.unwrap();
    let id = arm.add_contoso_workspaces(SUB, RG, &target.host());
    World {
        source,
        target,
        arm,
        registry_id: ResourceId::parse(&id).unwrap(),
    }
}

/// Waits short enough for tests: the stand-in's `Retry-After` (1 s unless
/// told otherwise) is obeyed; without one, 100 ms.
fn fast() -> ArmLimits {
    ArmLimits {
        min_poll: Duration::from_millis(100),
        default_poll: Duration::from_millis(100),
        request_deadline: Duration::from_secs(30),
        ..ArmLimits::default()
    }
}

fn arm_client(arm: &ArmServer, token: &str) -> ArmClient {
    let cloud: Cloud = arm.endpoint().parse().unwrap();
    ArmClient::new(
        default_http_client().unwrap(),
        &cloud,
        Arc::new(StaticToken(Secret::new(token))),
    )
    .with_limits(fast())
}

fn preset(w: &World) -> Vec<PresetImage> {
    Preset {
        region: "eastus".into(),
        source: Location {
            registry: w.source.host(),
            prefix: Some("azureml/runtime".into()),
        },
        target: Location::parse(&w.target.host()).unwrap(),
        regional_tags: false,
        extra: Vec::new(),
        referrers: true,
    }
    .images()
    .unwrap()
}

/// A token provider that counts its calls and keeps the scopes asked for.
struct Counting(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl TokenProvider for Counting {
    async fn token(&self, scope: &str) -> Result<Secret, String> {
        self.0.lock().unwrap().push(scope.to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Secret::new(ARM_TOKEN))
    }
}

fn options(deadline: Duration) -> ServerSideOptions {
    ServerSideOptions {
        deadline,
        ..ServerSideOptions::default()
    }
}

/// Every text a person could see from these outcomes.
fn shown(outcomes: &[ImportOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| format!("{o:?}\n{}\n", o.error_line().unwrap_or_default()))
        .collect()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET"), "a secret was shown: {text}");
}

fn polls(requests: &[ArmRequest]) -> Vec<&ArmRequest> {
    requests
        .iter()
        .filter(|r| r.path.contains("/operationStatuses/") || r.path.contains("/operationResults/"))
        .collect()
}

#[tokio::test]
async fn the_workspace_names_the_region_and_the_registry_to_mirror_into() {
    let w = world().await;
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let id = workspace_id(SUB, RG, "ws").unwrap();
    let target = resolve(&arm, &id).await.unwrap();
    assert_eq!(target.region, "eastus", "\"East US\" is eastus");
    assert_eq!(target.registry.login_server, w.target.host());
    assert_eq!(target.registry.id.name, "contoso");
    // The stand-in writes the id in lower case, as the Azure CLI shows it.
    assert_eq!(
        target.workspace.container_registry.as_ref().unwrap().name,
        "contoso"
    );
    assert!(target
        .agrees_with(Some("eastus"), Some(&w.target.host()))
        .is_ok());

    let requests = w.arm.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[0]
        .path
        .ends_with("/providers/Microsoft.MachineLearningServices/workspaces/ws"));
    assert_eq!(requests[0].query, "api-version=2024-04-01");
    assert!(requests[1]
        .path
        .ends_with("/providers/Microsoft.ContainerRegistry/registries/contoso"));
    assert_eq!(requests[1].query, "api-version=2023-07-01");
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {ARM_TOKEN}"))
        );
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn a_region_or_target_that_disagrees_with_the_workspace_is_refused() {
    let w = world().await;
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let target = resolve(&arm, &workspace_id(SUB, RG, "ws").unwrap())
        .await
        .unwrap();
    let err = target.agrees_with(Some("westus"), None).unwrap_err();
    assert!(
        err.contains("disagrees with workspace ws") && err.contains("which is in eastus"),
        "{err}"
    );
    let err = target
        .agrees_with(None, Some("fabrikam.azurecr.io"))
        .unwrap_err();
    assert!(
        err.contains(&format!("whose registry is {}", w.target.host())),
        "{err}"
    );
}

#[tokio::test]
async fn a_workspace_without_a_registry_or_that_does_not_exist_is_a_clear_error() {
    let w = world().await;
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let err = resolve(&arm, &workspace_id(SUB, RG, "bare").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::NoRegistry);
    assert_eq!(
        err.to_string(),
        format!("workspace bare in resource group {RG}, subscription {SUB}: it has no container registry attached (properties.containerRegistry is empty), so it names no registry to mirror into")
    );
    assert_eq!(w.arm.requests().len(), 1, "no registry asked for");

    let err = resolve(&arm, &workspace_id(SUB, RG, "nope").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::NotFound);
    assert_eq!(err.code.as_deref(), Some("ResourceNotFound"));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("workspace nope in resource group {RG}, subscription {SUB}: not found (404 ResourceNotFound)")),
        "{text}"
    );
}

#[tokio::test]
async fn six_server_side_imports_land_with_the_source_digests() {
    let w = world().await;
    let tokens = Arc::new(Counting(Default::default()));
    let cloud: Cloud = w.arm.endpoint().parse().unwrap();
    let arm =
        ArmClient::new(default_http_client().unwrap(), &cloud, tokens.clone()).with_limits(fast());
    let images = preset(&w);
    assert_eq!(images.len(), 6);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images,
        &options(Duration::from_secs(60)),
    )
    .await;
    for o in &outcomes {
        let done = o
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", o.image));
        assert!(done
            .operation
            .as_deref()
            .unwrap()
            .starts_with("registries-"));
        assert!(done.polls >= 1);
    }
    for image in &images {
        let source = digest_as(
            &w.source.host(),
            None,
            &format!("{}:{}", image.source, image.source_tag),
        )
        .await;
        let target = digest_as(&w.target.host(), None, &format!("{}:stable", image.target)).await;
        assert!(source.is_some());
        assert_eq!(target, source, "{}", image.name);
    }
    let checks = verify(&images, &client(&w.target.host(), None), SourceSide::Ask, 6).await;
    assert!(
        checks.iter().all(|c| c.landed == Landed::Same && c.ok()),
        "{checks:#?}"
    );

    // One token for the whole run, for the endpoint's scope.
    assert_eq!(
        *tokens.0.lock().unwrap(),
        vec![format!("{}/.default", w.arm.endpoint())]
    );
    // All six were asked for before any was polled: at once, not in turn.
    let requests = w.arm.requests();
    let posts: Vec<&ArmRequest> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 6);
    let first_poll = polls(&requests)[0].at;
    assert!(posts.iter().all(|p| p.at < first_poll));
    // Each body is the spec's shape.
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["mode"], "Force");
    assert_eq!(body["source"]["registryUri"], w.source.host().as_str());
    assert!(body["source"]["sourceImage"]
        .as_str()
        .unwrap()
        .ends_with(":eastus-stable"));
    assert!(body["targetTags"][0].as_str().unwrap().ends_with(":stable"));
    // With both headers, Azure-AsyncOperation is the one polled.
    assert!(polls(&requests)
        .iter()
        .all(|r| r.path.contains("/operationStatuses/")));
}

#[tokio::test]
async fn one_failed_import_is_named_with_arm_s_code_while_the_others_land() {
    let w = world().await;
    w.arm.script(|s| {
        s.fail.push((
            "cap/data-capability".into(),
            "ImportImageFailed".into(),
            "Source image not found: eastus-stable".into(),
        ))
    });
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images,
        &options(Duration::from_secs(60)),
    )
    .await;
    let failed: Vec<&ImportOutcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    assert_eq!(failed.len(), 1, "{}", shown(&outcomes));
    let f = failed[0];
    assert_eq!(f.image, "cap/data-capability/installed");
    let err = f.result.as_ref().unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::OperationFailed);
    assert_eq!(err.code.as_deref(), Some("ImportImageFailed"));
    let line = f.error_line().unwrap();
    assert!(
        line.starts_with("cap/data-capability/installed: importing ")
            && line.ends_with("the operation ended Failed (ImportImageFailed): Source image not found: eastus-stable"),
        "{line}"
    );
    let checks = verify(&images, &client(&w.target.host(), None), SourceSide::Ask, 6).await;
    for c in &checks {
        let want = if c.image == f.image {
            Landed::Missing
        } else {
            Landed::Same
        };
        assert_eq!(c.landed, want, "{c:?}");
    }
}

#[tokio::test]
async fn polling_waits_as_retry_after_says_and_a_throttled_poll_waits_longer() {
    let w = world().await;
    // Each 202 and running status says 1 s; two polls are throttled with 2 s.
    w.arm.script(|s| {
        s.retry_after = 1;
        s.throttle = 2;
        s.throttle_retry_after = 2;
        s.throttle_path = "/operationStatuses/".into();
    });
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images[..1],
        &options(Duration::from_secs(60)),
    )
    .await;
    assert!(outcomes[0].result.is_ok(), "{}", shown(&outcomes));

    let requests = w.arm.requests();
    let post = requests.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.status, 202);
    assert_eq!(post.retry_after, Some(1));
    let polls = polls(&requests);
    assert!(
        polls.len() >= 3,
        "two throttled polls and a good one: {polls:#?}"
    );
    assert_eq!(polls[0].status, 429);
    assert_eq!(polls[1].status, 429);
    let slack = Duration::from_millis(50);
    assert!(
        polls[0].at - post.at + slack >= Duration::from_secs(1),
        "the first poll after Retry-After 1"
    );
    assert!(
        polls[1].at - polls[0].at + slack >= Duration::from_secs(2),
        "after a 429 with Retry-After 2"
    );
    assert!(polls[2].at - polls[1].at + slack >= Duration::from_secs(2));
    for pair in polls[2..].windows(2) {
        assert!(pair[1].at - pair[0].at + slack >= Duration::from_secs(1));
    }
}

#[tokio::test]
async fn polling_by_location_alone_follows_202_until_200() {
    let w = world().await;
    w.arm.script(|s| {
        s.headers = PollHeaders::LocationOnly;
        s.retry_after = 0;
    });
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images[..2],
        &options(Duration::from_secs(60)),
    )
    .await;
    assert!(
        outcomes.iter().all(|o| o.result.is_ok()),
        "{}",
        shown(&outcomes)
    );
    let requests = w.arm.requests();
    let polls = polls(&requests);
    assert!(polls.iter().all(|r| r.path.contains("/operationResults/")));
    assert!(polls.iter().any(|r| r.status == 202) || polls.iter().all(|r| r.status == 200));
    assert!(polls.iter().filter(|r| r.status == 200).count() == 2);
    let checks = verify(
        &images[..2],
        &client(&w.target.host(), None),
        SourceSide::Ask,
        2,
    )
    .await;
    assert!(
        checks.iter().all(|c| c.landed == Landed::Same),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn an_import_that_never_finishes_meets_its_deadline_named_and_the_others_land() {
    let w = world().await;
    w.arm.script(|s| {
        s.never_finish.push("cap/lifecycler".into());
        s.retry_after = 0;
    });
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let started = Instant::now();
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images,
        &options(Duration::from_secs(4)),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the deadline"
    );
    let stuck = outcomes
        .iter()
        .find(|o| o.image == "cap/lifecycler/installed")
        .unwrap();
    let err = stuck.result.as_ref().unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::Deadline);
    let line = stuck.error_line().unwrap();
    assert!(
        line.starts_with("cap/lifecycler/installed: importing ")
            && line.contains("still InProgress at the deadline"),
        "{line}"
    );
    assert!(
        !line.contains("SIGNATURE"),
        "the status URL is shown without its query: {line}"
    );
    assert!(
        stuck.elapsed <= Duration::from_secs(5),
        "{:?}",
        stuck.elapsed
    );
    assert_eq!(
        outcomes.iter().filter(|o| o.result.is_ok()).count(),
        5,
        "{}",
        shown(&outcomes)
    );
}

#[tokio::test]
async fn a_dropped_poll_is_asked_again_but_a_dropped_import_request_is_not() {
    let w = world().await;
    // ARM behind a proxy that drops connections; its polling URLs lead
    // through the proxy too.
    let proxy = FaultProxy::start(&w.arm.endpoint()).await.unwrap();
    let through = proxy.base_url();
    w.arm.script(|s| {
        s.retry_after = 0;
        s.foreign_polling_base = Some(through.clone());
    });
    let cloud: Cloud = through.parse().unwrap();
    let arm = ArmClient::new(
        default_http_client().unwrap(),
        &cloud,
        Arc::new(StaticToken(Secret::new(ARM_TOKEN))),
    )
    .with_limits(fast());
    let images = preset(&w);
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(0))
            .path_contains("/operationStatuses/")
            .first(2),
    );
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(0))
            .path_contains("/workspaces/")
            .first(1),
    );
    resolve(&arm, &workspace_id(SUB, RG, "ws").unwrap())
        .await
        .expect("the lookup asked again");
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images[..1],
        &options(Duration::from_secs(60)),
    )
    .await;
    assert!(outcomes[0].result.is_ok(), "{}", shown(&outcomes));

    // A POST whose connection drops may have been taken: not sent again.
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(5))
            .method(http::Method::POST)
            .first(1),
    );
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images[1..2],
        &options(Duration::from_secs(60)),
    )
    .await;
    let err = outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::Transport, "{err}");
    let requests = proxy.requests();
    let posts = requests
        .iter()
        .filter(|r| r.method == http::Method::POST)
        .count();
    assert_eq!(posts, 2, "the first import's, and this one's once");
    let polls = requests
        .iter()
        .filter(|r| r.path.contains("/operationStatuses/"))
        .count();
    assert!(polls >= 3, "two dropped polls asked again: {polls}");
}

#[tokio::test]
async fn a_refused_token_is_named_with_arm_s_code() {
    let w = world().await;
    let id = workspace_id(SUB, RG, "ws").unwrap();

    let wrong = arm_client(&w.arm, "wrong-SECRET-3");
    let err = resolve(&wrong, &id).await.unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::Auth);
    assert_eq!(err.status, Some(401));
    assert_eq!(err.code.as_deref(), Some("InvalidAuthenticationToken"));
    assert!(
        err.to_string()
            .contains("the token was refused (401 InvalidAuthenticationToken)"),
        "{err}"
    );
    assert_no_secret(&format!("{err} {err:?} {wrong:?}"));

    w.arm.script(|s| s.reject = Some(403));
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let err = resolve(&arm, &id).await.unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::Auth);
    assert_eq!(err.code.as_deref(), Some("AuthorizationFailed"));
    assert!(
        err.to_string()
            .contains("not authorized (403 AuthorizationFailed): The client 'mirror-test'"),
        "{err}"
    );
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &preset(&w)[..1],
        &options(Duration::from_secs(30)),
    )
    .await;
    let err = outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::Auth);
    assert!(
        err.to_string().contains("registries/importImage/action"),
        "{err}"
    );
    assert_no_secret(&shown(&outcomes));
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_once() {
    let w = world().await;
    let tokens = Arc::new(Counting(Default::default()));
    let cloud: Cloud = w.arm.endpoint().parse().unwrap();
    let arm =
        ArmClient::new(default_http_client().unwrap(), &cloud, tokens.clone()).with_limits(fast());
    let id = workspace_id(SUB, RG, "ws").unwrap();
    w.arm.script(|s| s.expire = 1);
    resolve(&arm, &id).await.unwrap();
    assert_eq!(
        tokens.0.lock().unwrap().len(),
        2,
        "fetched, then again after the 401"
    );
    // Expired again straight after a new token: not a loop, an error.
    w.arm.script(|s| s.expire = 2);
    let err = resolve(&arm, &id).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("ExpiredAuthenticationToken"));
    assert_eq!(tokens.0.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_polling_url_on_another_host_gets_no_token() {
    let w = world().await;
    let elsewhere = ArmServer::start("other").await.unwrap();
    let base = elsewhere.endpoint();
    w.arm.script(|s| s.foreign_polling_base = Some(base));
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &preset(&w)[..1],
        &options(Duration::from_secs(30)),
    )
    .await;
    let err = outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind, ArmErrorKind::BadAnswer);
    assert!(
        err.to_string().contains("not sending the token there"),
        "{err}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "nothing went to the other host"
    );
}

#[tokio::test]
async fn a_private_source_is_read_with_its_credentials_and_no_secret_is_shown() {
    let source = Registry::start_htpasswd(&[("workspace", SOURCE_PASSWORD)])
        .await
        .unwrap();
    push_as(
        &source,
        Some(Credential::basic("workspace", SOURCE_PASSWORD)),
        &runtime_images(),
    )
    .await;
    let w = world_with(source).await;
    // An operation whose message echoes the password it was given.
    w.arm.script(|s| {
        s.retry_after = 0;
        s.fail.push((
            "cap/cs-capability".into(),
            "InvalidCredentials".into(),
            format!("login as workspace with {SOURCE_PASSWORD} refused"),
        ))
    });
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let options = ServerSideOptions {
        source_credentials: Some(("workspace".into(), Secret::new(SOURCE_PASSWORD))),
        ..options(Duration::from_secs(60))
    };
    let outcomes = import_all(&arm, &w.registry_id, &w.target.host(), &images, &options).await;
    assert_eq!(
        outcomes.iter().filter(|o| o.result.is_ok()).count(),
        5,
        "{}",
        shown(&outcomes)
    );
    let failed = outcomes.iter().find(|o| o.result.is_err()).unwrap();
    assert!(failed
        .error_line()
        .unwrap()
        .ends_with("login as workspace with <redacted> refused"));

    // The password went to ARM, in the import's body, and nowhere else.
    let requests = w.arm.requests();
    for r in &requests {
        let in_body = r.body.contains(SOURCE_PASSWORD);
        assert_eq!(in_body, r.method == "POST", "{} {}", r.method, r.path);
        assert!(!r.path.contains("SECRET") && !r.query.contains("SECRET"));
    }
    // The data-plane check, as the operator (the source refuses us: noted,
    // the target alone checked).
    let checks = verify(&images, &client(&w.target.host(), None), SourceSide::Ask, 6).await;
    let landed: Vec<Landed> = checks.iter().map(|c| c.landed).collect();
    assert_eq!(
        landed.iter().filter(|l| **l == Landed::TargetOnly).count(),
        5,
        "{checks:#?}"
    );
    assert_eq!(landed.iter().filter(|l| **l == Landed::Missing).count(), 1);

    let everything = format!("{}{:?}{:?}{:?}", shown(&outcomes), checks, options, arm);
    assert_no_secret(&everything);
}

#[tokio::test]
async fn the_digest_check_skips_a_source_this_machine_cannot_reach_with_a_note() {
    let w = world().await;
    let arm = arm_client(&w.arm, ARM_TOKEN);
    let images = preset(&w);
    let outcomes = import_all(
        &arm,
        &w.registry_id,
        &w.target.host(),
        &images[..2],
        &options(Duration::from_secs(60)),
    )
    .await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()));

    let checks = verify(
        &images[..2],
        &client(&w.target.host(), None),
        SourceSide::Skip,
        2,
    )
    .await;
    for c in &checks {
        assert_eq!(c.landed, Landed::TargetOnly);
        assert!(c.ok());
        assert!(
            c.note.as_deref().unwrap().contains("source not asked"),
            "{c:?}"
        );
        assert!(c.target_digest.is_some());
    }

    // A source that does not answer (its registry gone): noted, not failed.
    let unreachable: Vec<PresetImage> = images[..1]
        .iter()
        .map(|i| PresetImage {
            source: registry_client::Repository::new("127.0.0.1:9", i.source.name()).unwrap(),
            ..i.clone()
        })
        .collect();
    let checks = verify(
        &unreachable,
        &client(&w.target.host(), None),
        SourceSide::Ask,
        1,
    )
    .await;
    assert_eq!(checks[0].landed, Landed::TargetOnly, "{:?}", checks[0]);
    assert!(
        checks[0]
            .note
            .as_deref()
            .unwrap()
            .contains("not reachable from here"),
        "{:?}",
        checks[0]
    );
}
