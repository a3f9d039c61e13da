//! `mirror azureml … --workspace` and `azureml sync --server-side` on the
//! command line, against the ARM stand-in (`mirror_tests::arm_server`,
//! which imports for real with skopeo) and real docker-registry servers:
//! the workspace names the region and the registry; the registry imports
//! each image itself; the report, exit codes, dry run and job variables are
//! the streaming sync's; no secret reaches any output.

use std::time::Duration;

use mirror_tests::arm_server::{ArmRequest, ArmServer};
use mirror_tests::cli::{images_with_status, mirror, Run};
use mirror_tests::fixtures::{self, azureml_images, GeneratedImage, Scale};
use mirror_tests::images::client;
use mirror_tests::{Registry, TokenServer, TokenServerOptions};
use registry_client::{Credential, Digest, Reference};
use serde_json::Value;

const RUNTIME: [&str; 6] = mirror::azureml::images::RUNTIME_REPOSITORIES;
const SUB: &str = "00000000-1111-2222-3333-444444444444";
const RG: &str = "ml-rg";
const ARM_TOKEN: &str = "arm-SECRET-token-1";
const SOURCE_PASSWORD: &str = "source-SECRET-2";
// The job variables carry it by design: no SECRET in it.
const PULL_PASSWORD: &str = "pull-pw-3";

/// The runtime images for eastus at the root of a registry (as the AzureML
/// system registry holds them).
fn runtime_images() -> Vec<GeneratedImage> {
    fixtures::generate_all(&azureml_images("eastus", Scale::Fixture))
}

async fn push(reg: &Registry, credential: Option<Credential>, images: &[GeneratedImage]) {
    fixtures::push(&client(&reg.host(), credential), &reg.host(), images)
        .await
        .expect("push");
}

/// A private source (the system registry: token auth, the workspace's
/// user), the customer's registry (open), and ARM knowing workspace `ws`
/// in East US with that registry attached (`contoso`), and `bare`, in
/// westus, without one.
struct World {
    source: Registry,
    _source_tokens: TokenServer,
    target: Registry,
    arm: ArmServer,
}

async fn world() -> World {
    let (source, tokens) = Registry::start_with_token_auth(
        Default::default(),
        TokenServerOptions::default().with_user("workspace", SOURCE_PASSWORD),
    )
    .await
    .unwrap();
    let cred = Credential::basic("workspace", SOURCE_PASSWORD);
    push(&source, Some(cred), &runtime_images()).await;
    let target = Registry::start_open().await.unwrap();
    let arm = ArmServer::start(ARM_TOKEN).await.unwrap();
    let id = arm.add_registry(SUB, RG, "contoso", &target.host());
    arm.add_workspace(SUB, RG, "ws", "East US", Some(&id));
    arm.add_workspace(SUB, RG, "bare", "westus", None);
    World {
        source,
        _source_tokens: tokens,
        target,
        arm,
    }
}

impl World {
    /// `azureml SUBCOMMAND` for workspace `ws` from the private source,
    /// then `extra`.
    async fn run(&self, subcommand: &str, extra: &[&str]) -> Run {
        let source = self.source.host();
        let endpoint = self.arm.endpoint();
        let mut args = vec![
            "azureml",
            subcommand,
            "--workspace",
            "ws",
            "--resource-group",
            RG,
            "--subscription",
            SUB,
            "--cloud",
            &endpoint,
            "--arm-token",
            "env:ARM_TOKEN",
            "--source",
            &source,
            "--source-username",
            "workspace",
            "--source-password-env",
            "SOURCE_PW",
        ];
        args.extend_from_slice(extra);
        mirror(
            &args,
            &[
                ("ARM_TOKEN", ARM_TOKEN),
                ("SOURCE_PW", SOURCE_PASSWORD),
                ("PULL_PW", PULL_PASSWORD),
            ],
        )
        .await
    }

    async fn target_digest(&self, repo: &str, tag: &str) -> Option<Digest> {
        head(
            &self.target.host(),
            None,
            &format!("{}/{repo}:{tag}", self.target.host()),
        )
        .await
    }

    async fn source_digest(&self, repo: &str) -> Option<Digest> {
        let cred = Credential::basic("workspace", SOURCE_PASSWORD);
        head(
            &self.source.host(),
            Some(cred),
            &format!("{}/{repo}:eastus-stable", self.source.host()),
        )
        .await
    }

    fn posts(&self) -> Vec<ArmRequest> {
        self.arm
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

async fn head(host: &str, cred: Option<Credential>, reference: &str) -> Option<Digest> {
    client(host, cred)
        .head_manifest(&Reference::parse(reference).unwrap())
        .await
        .unwrap()
        .map(|m| m.digest)
}

fn assert_no_secret(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains("SECRET"), "a secret was shown: {text}");
    }
}

/// The override inside the JSON job variables.
fn override_of(run: &Run) -> Value {
    let vars: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("variables are JSON ({e}): {}\n{}", run.stdout, run.stderr));
    serde_json::from_str(
        vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

const PULL: [&str; 6] = [
    "--pull-username",
    "puller",
    "--pull-password-env",
    "PULL_PW",
    "--format",
    "json",
];

#[tokio::test]
async fn the_workspace_gives_the_region_and_the_target_to_a_streaming_sync_check_and_env() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = PULL.to_vec();
    args.extend(["--report", report.to_str().unwrap(), "--progress", "none"]);
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert!(
        run.stderr.contains(&format!(
            "workspace ws (resource group {RG}): region eastus, registry contoso ({})",
            w.target.host()
        )),
        "{}",
        run.stderr
    );
    // East US's tags, streamed into the workspace's registry as `stable`.
    for repo in RUNTIME {
        let source = w.source_digest(repo).await;
        assert!(source.is_some(), "{repo}");
        assert_eq!(w.target_digest(repo, "stable").await, source, "{repo}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["copied"], 6, "{report:#}");
    assert_eq!(
        override_of(&run)["capabilities_registry"]["registry"]["url"],
        w.target.host().as_str()
    );
    // Two GETs (workspace, registry), with the token, and nothing else.
    let requests = w.arm.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[0].path.ends_with("/workspaces/ws"));
    assert!(requests[0].query.contains("api-version=2024-04-01"));
    assert!(requests[1].path.ends_with("/registries/contoso"));
    assert!(requests[1].query.contains("api-version=2023-07-01"));
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {ARM_TOKEN}"))));

    // check: the same target and region, all current.
    let run = w.run("check", &[]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("6 images: 6 current"), "{}", run.stdout);
    assert!(run.stdout.contains(&w.target.host()), "{}", run.stdout);
}

#[tokio::test]
async fn env_and_export_take_the_workspace_too() {
    let w = world().await;
    let endpoint = w.arm.endpoint();
    let ws = [
        "--workspace",
        "ws",
        "--resource-group",
        RG,
        "--subscription",
        SUB,
        "--cloud",
        &endpoint,
        "--arm-token",
        "env:ARM_TOKEN",
    ];
    let mut args = vec![
        "azureml",
        "env",
        "--username",
        "puller",
        "--password-env",
        "PULL_PW",
        "--format",
        "json",
    ];
    args.extend_from_slice(&ws);
    let run = mirror(
        &args,
        &[("ARM_TOKEN", ARM_TOKEN), ("PULL_PW", PULL_PASSWORD)],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        override_of(&run)["capabilities_registry"]["registry"]["url"],
        w.target.host().as_str()
    );

    // An export of East US's tags from the source.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar");
    let mut args = vec!["export"];
    args.extend_from_slice(&ws);
    let source = w.source.host();
    args.extend([
        "--source",
        &source,
        "--to",
        bundle.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    let auth = dir.path().join("auth.json");
    std::fs::write(
        &auth,
        serde_json::json!({"auths": {source.clone(): {"auth": base64_of(&format!("workspace:{SOURCE_PASSWORD}"))}}})
            .to_string(),
    )
    .unwrap();
    args.extend(["--authfile", auth.to_str().unwrap()]);
    let run = mirror(&args, &[("ARM_TOKEN", ARM_TOKEN)]).await;
    run.assert_code(0);
    let verify = mirror(&["verify", bundle.to_str().unwrap()], &[]).await;
    verify.assert_code(0);
    for repo in RUNTIME {
        assert!(
            verify.stdout.contains(&format!("{repo}:eastus-stable")),
            "{repo}: {}",
            verify.stdout
        );
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_workspace_without_a_registry_needs_the_target_and_flags_must_agree_with_it() {
    let w = world().await;
    let endpoint = w.arm.endpoint();
    let base = |name: &'static str| {
        vec![
            "azureml".to_string(),
            "sync".into(),
            "--workspace".into(),
            name.into(),
            "--resource-group".into(),
            RG.into(),
            "--subscription".into(),
            SUB.into(),
            "--cloud".into(),
            endpoint.clone(),
            "--arm-token".into(),
            "env:ARM_TOKEN".into(),
            "--progress".into(),
            "none".into(),
        ]
    };
    let run_with = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(|s| s.to_string()));
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mirror(&refs, &[("ARM_TOKEN", ARM_TOKEN)]).await
        }
    };

    let run = run_with(base("bare"), &[]).await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("workspace bare in resource group ml-rg")
            && run.stderr.contains("no container registry attached")
            && run.stderr.contains("--target"),
        "{}",
        run.stderr
    );

    // With --target, the workspace still names the region: westus's tags
    // are looked for (the source has eastus's only: nothing to copy).
    let run = run_with(
        base("bare"),
        &["--target", &w.target.host(), "--source", &w.source.host()],
    )
    .await;
    assert!(
        run.stderr.contains("region westus") && run.stderr.contains("westus-stable"),
        "{}",
        run.stderr
    );

    let run = run_with(base("ws"), &["--region", "westus"]).await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("\"westus\" disagrees with workspace ws")
            && run.stderr.contains("which is in eastus"),
        "{}",
        run.stderr
    );
    let run = run_with(base("ws"), &["--target", "fabrikam.azurecr.io/azureml"]).await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains(&format!("whose registry is {} (contoso)", w.target.host())),
        "{}",
        run.stderr
    );

    let run = run_with(base("nope"), &[]).await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("workspace nope in resource group ml-rg")
            && run.stderr.contains("404"),
        "{}",
        run.stderr
    );

    // A refused token exits 3, naming ARM's code, never the token.
    let mut args = base("ws");
    for a in args.iter_mut().filter(|a| *a == "env:ARM_TOKEN") {
        *a = "env:WRONG".into();
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mirror(&refs, &[("WRONG", "wrong-SECRET-token")]).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("InvalidAuthenticationToken"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run);
    // No POST was ever made: lookups only.
    assert!(w.posts().is_empty());
}

#[tokio::test]
async fn six_server_side_imports_land_then_a_rerun_imports_none() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = vec!["--server-side", "--report", report.to_str().unwrap()];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert_no_secret(&run);
    for repo in RUNTIME {
        let source = w.source_digest(repo).await;
        assert!(source.is_some(), "{repo}");
        assert_eq!(w.target_digest(repo, "stable").await, source, "{repo}");
    }
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(images_with_status(&json, "imported").len(), 6, "{json:#}");
    assert_eq!(json["copied"], 6, "{json:#}");
    assert!(
        run.stderr
            .contains("6 images: 0 current, 6 imported, 0 failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("importImage copies no referrers"),
        "{}",
        run.stderr
    );
    // The job variables, after the job's pull was tried.
    assert_eq!(
        override_of(&run)["capabilities_registry"]["registry"]["url"],
        w.target.host().as_str()
    );
    // Six imports, each naming the source by its address with the
    // workspace's credentials (ARM got the password; no output did).
    let posts = w.posts();
    assert_eq!(posts.len(), 6);
    let body: Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["source"]["registryUri"], w.source.host().as_str());
    assert_eq!(body["source"]["credentials"]["username"], "workspace");
    assert_eq!(body["mode"], "Force");

    // Unchanged: compared through the data plane, nothing imported.
    w.arm.clear_requests();
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("6 images: 6 current, 0 copied, 0 failed"),
        "{}",
        run.stderr
    );
    assert!(w.posts().is_empty(), "{:#?}", w.posts());
}

#[tokio::test]
async fn a_failed_import_is_named_while_the_others_land_and_no_variables_are_printed() {
    let w = world().await;
    w.arm.script(|s| {
        s.fail.push((
            RUNTIME[2].into(),
            "ImportSourceNotFound".into(),
            "The source image was not found.".into(),
        ))
    });
    let mut args = vec!["--server-side"];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(1);
    assert_no_secret(&run);
    assert_eq!(run.stdout, "", "no job variables when an image failed");
    assert!(
        run.stderr.contains("FAILED")
            && run.stderr.contains(RUNTIME[2])
            && run.stderr.contains("ImportSourceNotFound")
            && run.stderr.contains("The source image was not found."),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("5 imported, 1 failed"),
        "{}",
        run.stderr
    );
    for (i, repo) in RUNTIME.iter().enumerate() {
        let landed = w.target_digest(repo, "stable").await;
        assert_eq!(landed.is_some(), i != 2, "{repo}");
    }
}

#[tokio::test]
async fn an_import_the_identity_may_not_make_exits_3_naming_the_role() {
    let w = world().await;
    w.arm.script(|s| {
        s.reject = Some(403);
        s.reject_path = "importImage".into();
    });
    let mut args = vec!["--server-side"];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(3);
    assert!(
        !run.stderr.contains("docker login"),
        "no registry login hint for Resource Manager's refusal: {}",
        run.stderr
    );
    assert_no_secret(&run);
    assert_eq!(run.stdout, "", "no job variables");
    assert!(
        run.stderr.contains("AuthorizationFailed")
            && run
                .stderr
                .contains("6 images: 0 current, 0 copied, 6 failed")
            && run
                .stderr
                .contains("Microsoft.ContainerRegistry/registries/importImage/action on contoso"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn throttled_polls_wait_as_told_and_an_import_past_its_deadline_fails_named() {
    let w = world().await;
    w.arm.script(|s| {
        s.throttle = 2;
        s.throttle_retry_after = 2;
        s.throttle_path = "operationStatuses".into();
        s.never_finish.push(RUNTIME[4].into());
    });
    let mut args = vec!["--server-side", "--import-timeout", "6s"];
    args.extend_from_slice(&PULL);
    let started = std::time::Instant::now();
    let run = w.run("sync", &args).await;
    run.assert_code(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        run.stderr.contains(RUNTIME[4]) && run.stderr.contains("still InProgress at the deadline"),
        "the deadline is named: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("5 imported, 1 failed"),
        "{}",
        run.stderr
    );
    // After each 429 the next status request waited its Retry-After.
    let requests = w.arm.requests();
    for (i, r) in requests.iter().enumerate() {
        if r.status == 429 {
            let next = requests[i + 1..]
                .iter()
                .find(|n| n.path == r.path)
                .expect("asked again");
            assert!(
                next.at.duration_since(r.at) >= Duration::from_millis(1900),
                "{:?} after a 429 with Retry-After: 2",
                next.at.duration_since(r.at)
            );
        }
    }
    assert_eq!(requests.iter().filter(|r| r.status == 429).count(), 2);
}

#[tokio::test]
async fn a_dry_run_asks_for_no_import_and_a_source_out_of_reach_is_noted() {
    let w = world().await;
    let mut args = vec!["--server-side", "--dry-run"];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert!(w.posts().is_empty());
    assert!(
        run.stderr.contains("dry run: would ask contoso to import")
            && run
                .stderr
                .contains("dry run: 6 images: 0 current, 6 to copy"),
        "{}",
        run.stderr
    );
    assert!(w.target_digest(RUNTIME[0], "stable").await.is_none());

    // Another run holding the lock: exit 4, nothing asked.
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("azureml.lock");
    let held = mirror::sync::lock::RunLock::acquire(&lock).unwrap();
    let mut locked = vec!["--server-side", "--lock-file", lock.to_str().unwrap()];
    locked.extend_from_slice(&PULL);
    let run = w.run("sync", &locked).await;
    run.assert_code(4);
    assert!(w.posts().is_empty());
    drop(held);

    // This machine cannot reach the source (its only way out is a proxy
    // that is not there; ARM and the target are reached directly): the
    // source side is skipped with a note, and the imports still land.
    let no_proxy = format!(
        "{},{}",
        w.arm.endpoint().trim_start_matches("http://"),
        w.target.host()
    );
    let env = [
        ("ARM_TOKEN", ARM_TOKEN),
        ("SOURCE_PW", SOURCE_PASSWORD),
        ("PULL_PW", PULL_PASSWORD),
        ("NO_PROXY", no_proxy.as_str()),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
    ];
    let source = w.source.host();
    let endpoint = w.arm.endpoint();
    let base = [
        "azureml",
        "sync",
        "--workspace",
        "ws",
        "--resource-group",
        RG,
        "--subscription",
        SUB,
        "--cloud",
        &endpoint,
        "--arm-token",
        "env:ARM_TOKEN",
        "--source",
        &source,
        "--source-username",
        "workspace",
        "--source-password-env",
        "SOURCE_PW",
        "--server-side",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&PULL);
    let run = mirror(&args, &env).await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert!(
        run.stderr
            .contains("source not reachable from here, only the target checked"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("6 imported, 0 failed"),
        "{}",
        run.stderr
    );
    for repo in RUNTIME {
        assert_eq!(
            w.target_digest(repo, "stable").await,
            w.source_digest(repo).await,
            "{repo}"
        );
    }

    // --no-source-check: not even tried; every image is imported again,
    // since nothing here can tell it is current.
    w.arm.clear_requests();
    args.push("--no-source-check");
    let run = mirror(&args, &env).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("source not asked: this machine does not reach"),
        "{}",
        run.stderr
    );
    assert_eq!(w.posts().len(), 6);
}

#[tokio::test]
async fn without_a_workspace_the_registry_is_named_by_its_resource_group() {
    let w = world().await;
    // The registry's name is the login server's first label.
    let host = w.target.host();
    let name = host.split('.').next().unwrap();
    w.arm.add_registry(SUB, "acr-rg", name, &host);
    let (source, endpoint) = (w.source.host(), w.arm.endpoint());
    let args = |extra: &[&'static str]| {
        let mut all: Vec<String> = [
            "azureml",
            "sync",
            "--region",
            "eastus",
            "--target",
            &host,
            "--source",
            &source,
            "--source-username",
            "workspace",
            "--source-password-env",
            "SOURCE_PW",
            "--subscription",
            SUB,
            "--cloud",
            &endpoint,
            "--arm-token",
            "env:ARM_TOKEN",
            "--server-side",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let env = [("ARM_TOKEN", ARM_TOKEN), ("SOURCE_PW", SOURCE_PASSWORD)];
    let run_args = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        mirror(&refs, &env).await
    };

    let run = run_args(args(&[])).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("--registry-resource-group GROUP"),
        "{}",
        run.stderr
    );
    let run = run_args(args(&["--registry-resource-group", "wrong-rg"])).await;
    run.assert_code(2);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);

    let run = run_args(args(&["--registry-resource-group", "acr-rg"])).await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert!(
        run.stderr.contains("6 imported, 0 failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("warning: no pull credentials given"),
        "{}",
        run.stderr
    );
    for repo in RUNTIME {
        assert_eq!(
            w.target_digest(repo, "stable").await,
            w.source_digest(repo).await,
            "{repo}"
        );
    }
    assert!(w.posts()[0].path.contains("/resourceGroups/acr-rg/"));
}

/// A stand-in for the Azure CLI: logs its arguments, prints the token ARM
/// takes.
fn fake_az(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("az");
    let log = dir.join("az.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf '{{\"accessToken\": \"{ARM_TOKEN}\", \"expires_on\": %s, \"tokenType\": \"Bearer\"}}' $(( $(date +%s) + 3600 ))\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[tokio::test]
async fn resource_manager_asks_the_entra_login_s_source_for_its_own_scope() {
    let w = world().await;
    let bin = tempfile::tempdir().unwrap();
    let az_log = fake_az(bin.path());
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let endpoint = w.arm.endpoint();
    let source = w.source.host();
    let run = mirror(
        &[
            "azureml",
            "check",
            "--workspace",
            "ws",
            "--resource-group",
            RG,
            "--subscription",
            SUB,
            "--cloud",
            &endpoint,
            "--entra-token",
            "azure-cli",
            "--tenant",
            "contoso-tenant",
            "--source",
            &source,
            "--source-username",
            "workspace",
            "--source-password-env",
            "SOURCE_PW",
        ],
        &[("PATH", path.as_str()), ("SOURCE_PW", SOURCE_PASSWORD)],
    )
    .await;
    // Nothing mirrored yet: every image missing (exit 1), but the
    // workspace was read with the Azure CLI's token.
    run.assert_code(1);
    assert_no_secret(&run);
    assert!(run.stdout.contains("6 missing"), "{}", run.stdout);
    let calls = std::fs::read_to_string(&az_log).unwrap();
    let arm_call = calls
        .lines()
        .find(|l| l.contains(&format!("--scope {endpoint}/.default")))
        .unwrap_or_else(|| panic!("no token for Resource Manager's scope: {calls}"));
    assert!(
        arm_call.contains("account get-access-token")
            && arm_call.contains("--tenant contoso-tenant"),
        "{arm_call}"
    );
    assert_eq!(w.arm.requests().len(), 2);
}
