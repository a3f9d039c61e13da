//! `mirror azureml … --workspace` and `azureml sync --server-side` on the
//! command line, against the ARM stand-in (`mirror_tests::arm_server`,
//! which imports for real with skopeo) and real docker-registry servers:
//! the workspace names the region and the registry; the registry imports
//! each image itself; the report, exit codes, dry run, lock and job
//! variables are the streaming sync's; no secret reaches any output.

use std::time::Duration;

use mirror_tests::arm_server::{ArmRequest, ArmServer};
use mirror_tests::azure_cli::{fake_az, path_with};
use mirror_tests::cli::{images_with_status, mirror, Run};
use mirror_tests::fixtures::{self, azureml_images, push_as, Scale};
use mirror_tests::images::digest_as;
use mirror_tests::{Registry, TokenServer, TokenServerOptions};
use registry_client::{Credential, Digest};
use serde_json::Value;

const RUNTIME: [&str; 6] = mirror::azureml::images::RUNTIME_REPOSITORIES;
const SUB: &str = "00000000-1111-2222-3333-444444444444";
const RG: &str = "ml-rg";
const ARM_TOKEN: &str = "arm-SECRET-token-1";
const SOURCE_PASSWORD: &str = "source-SECRET-2";
// The job variables carry it by design: no SECRET in it.
const PULL_PASSWORD: &str = "pull-pw-3";

/// The job's login and the variables as JSON.
const PULL: [&str; 6] = [
    "--pull-username",
    "puller",
    "--pull-password-env",
    "PULL_PW",
    "--format",
    "json",
];

/// A private source (the system registry: token auth, the workspace's
/// user, eastus's runtime images at its root), the customer's registry
/// (open), and ARM knowing workspace `ws` in East US with that registry
/// attached (`contoso`), and `bare`, in westus, without one.
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
    let images = fixtures::generate_all(&azureml_images("eastus", Scale::Fixture));
    push_as(
        &source,
        Some(Credential::basic("workspace", SOURCE_PASSWORD)),
        &images,
    )
    .await;
    let target = Registry::start_open().await.unwrap();
    let arm = ArmServer::start(ARM_TOKEN).await.unwrap();
    arm.add_contoso_workspaces(SUB, RG, &target.host());
    World {
        source,
        _source_tokens: tokens,
        target,
        arm,
    }
}

/// Owned words from borrowed ones.
fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl World {
    /// Resource Manager's flags: the stand-in's endpoint, the token from
    /// `$ARM_TOKEN`.
    fn arm_flags(&self) -> Vec<String> {
        words(&[
            "--subscription",
            SUB,
            "--cloud",
            &self.arm.endpoint(),
            "--arm-token",
            "env:ARM_TOKEN",
        ])
    }

    /// `--workspace NAME --resource-group RG` and Resource Manager's flags.
    fn workspace(&self, name: &str) -> Vec<String> {
        let mut all = words(&["--workspace", name, "--resource-group", RG]);
        all.extend(self.arm_flags());
        all
    }

    /// The private source and its login.
    fn private_source(&self) -> Vec<String> {
        words(&[
            "--source",
            &self.source.host(),
            "--source-username",
            "workspace",
            "--source-password-env",
            "SOURCE_PW",
        ])
    }

    /// `mirror WORDS…` with every secret's variable set, and `env`.
    async fn mirror(&self, words: &[String], env: &[(&str, &str)]) -> Run {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut all = vec![
            ("ARM_TOKEN", ARM_TOKEN),
            ("SOURCE_PW", SOURCE_PASSWORD),
            ("PULL_PW", PULL_PASSWORD),
        ];
        all.extend_from_slice(env);
        mirror(&args, &all).await
    }

    /// `azureml SUBCOMMAND` for workspace `ws` from the private source,
    /// then `extra`.
    async fn run(&self, subcommand: &str, extra: &[&str]) -> Run {
        let mut all = words(&["azureml", subcommand]);
        all.extend(self.workspace("ws"));
        all.extend(self.private_source());
        all.extend(words(extra));
        self.mirror(&all, &[]).await
    }

    async fn target_digest(&self, repo: &str, tag: &str) -> Option<Digest> {
        let host = self.target.host();
        digest_as(&host, None, &format!("{host}/{repo}:{tag}")).await
    }

    async fn source_digest(&self, repo: &str) -> Option<Digest> {
        let host = self.source.host();
        let cred = Credential::basic("workspace", SOURCE_PASSWORD);
        digest_as(&host, Some(cred), &format!("{host}/{repo}:eastus-stable")).await
    }

    /// Every runtime image's target tag holds the source's digest.
    async fn assert_all_landed(&self) {
        for repo in RUNTIME {
            let source = self.source_digest(repo).await;
            assert!(source.is_some(), "{repo}");
            assert_eq!(self.target_digest(repo, "stable").await, source, "{repo}");
        }
    }

    fn posts(&self) -> Vec<ArmRequest> {
        self.arm
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

fn assert_no_secret(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains("SECRET"), "a secret was shown: {text}");
    }
}

#[track_caller]
fn assert_said(run: &Run, texts: &[&str]) {
    for t in texts {
        assert!(run.stderr.contains(t), "{t:?} not in: {}", run.stderr);
    }
}

/// The registry the job variables point at.
fn job_registry(run: &Run) -> String {
    let vars: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("variables are JSON ({e}): {}\n{}", run.stdout, run.stderr));
    let over: Value = serde_json::from_str(
        vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    over["capabilities_registry"]["registry"]["url"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_workspace_gives_the_region_and_the_target_to_a_streaming_sync_and_check() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = PULL.to_vec();
    args.extend(["--report", report.to_str().unwrap(), "--progress", "none"]);
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert_said(
        &run,
        &[&format!(
            "workspace ws (resource group {RG}): region eastus, registry contoso ({})",
            w.target.host()
        )],
    );
    // East US's tags, streamed into the workspace's registry as `stable`.
    w.assert_all_landed().await;
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["copied"], 6, "{report:#}");
    assert_eq!(job_registry(&run), w.target.host());
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
    let mut args = words(&[
        "azureml",
        "env",
        "--username",
        "puller",
        "--password-env",
        "PULL_PW",
        "--format",
        "json",
    ]);
    args.extend(w.workspace("ws"));
    let run = w.mirror(&args, &[]).await;
    run.assert_code(0);
    assert_eq!(job_registry(&run), w.target.host());

    // An export of East US's tags from the source.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar");
    let mut args = words(&[
        "export",
        "--to",
        bundle.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    args.extend(w.workspace("ws"));
    args.extend(words(&[
        "--source",
        &w.source.host(),
        "--src-username",
        "workspace",
        "--src-password-env",
        "SOURCE_PW",
    ]));
    let run = w.mirror(&args, &[]).await;
    run.assert_code(0);
    assert_said(
        &run,
        &["workspace ws (resource group ml-rg): region eastus"],
    );
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

#[tokio::test]
async fn a_workspace_without_a_registry_needs_the_target_and_flags_must_agree_with_it() {
    let w = world().await;
    let sync = |name: &str, extra: &[&str]| {
        let mut all = words(&["azureml", "sync", "--progress", "none"]);
        all.extend(w.workspace(name));
        all.extend(words(extra));
        all
    };

    let run = w.mirror(&sync("bare", &[]), &[]).await;
    run.assert_code(2);
    assert_said(
        &run,
        &[
            "workspace bare in resource group ml-rg",
            "no container registry attached",
            "--target",
        ],
    );

    // With --target, the workspace still names the region: westus's tags
    // are looked for (the source has eastus's only: nothing to copy).
    let target = w.target.host();
    let run = w
        .mirror(
            &sync("bare", &["--target", &target, "--source", &w.source.host()]),
            &[],
        )
        .await;
    assert_said(&run, &["region westus", "westus-stable"]);

    let run = w.mirror(&sync("ws", &["--region", "westus"]), &[]).await;
    run.assert_code(2);
    assert_said(
        &run,
        &[
            "\"westus\" disagrees with workspace ws",
            "which is in eastus",
        ],
    );
    let run = w
        .mirror(
            &sync("ws", &["--target", "fabrikam.azurecr.io/azureml"]),
            &[],
        )
        .await;
    run.assert_code(2);
    assert_said(&run, &[&format!("whose registry is {target} (contoso)")]);

    let run = w.mirror(&sync("nope", &[]), &[]).await;
    run.assert_code(2);
    assert_said(&run, &["workspace nope in resource group ml-rg", "404"]);

    // A refused token exits 3, naming ARM's code, never the token.
    let mut args = sync("ws", &[]);
    for a in args.iter_mut().filter(|a| *a == "env:ARM_TOKEN") {
        *a = "env:WRONG".into();
    }
    let run = w.mirror(&args, &[("WRONG", "wrong-SECRET-token")]).await;
    run.assert_code(3);
    assert_said(&run, &["InvalidAuthenticationToken"]);
    assert_no_secret(&run);
    // No POST was ever made: lookups only.
    assert!(w.posts().is_empty());
}

#[tokio::test]
async fn resource_manager_asks_the_entra_login_s_source_for_its_own_scope() {
    let w = world().await;
    let bin = tempfile::tempdir().unwrap();
    let az_log = fake_az(bin.path(), ARM_TOKEN);
    let endpoint = w.arm.endpoint();
    let mut args = words(&[
        "azureml",
        "check",
        "--workspace",
        "ws",
        "--resource-group",
        RG,
    ]);
    args.extend(words(&[
        "--subscription",
        SUB,
        "--cloud",
        &endpoint,
        "--entra-token",
        "azure-cli",
        "--tenant",
        "contoso-tenant",
    ]));
    args.extend(w.private_source());
    let run = w.mirror(&args, &[("PATH", &path_with(bin.path()))]).await;
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
    w.assert_all_landed().await;
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(images_with_status(&json, "imported").len(), 6, "{json:#}");
    assert_eq!(json["copied"], 6, "{json:#}");
    assert_said(
        &run,
        &[
            "6 images: 0 current, 6 imported, 0 failed",
            "importImage copies no referrers",
        ],
    );
    // The job variables, after the job's pull was tried.
    assert_eq!(job_registry(&run), w.target.host());
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
    assert_said(&run, &["6 images: 6 current, 0 copied, 0 failed"]);
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
    assert_said(
        &run,
        &[
            &format!("FAILED      {}/{}", w.source.host(), RUNTIME[2]),
            "ImportSourceNotFound",
            "The source image was not found.",
            "5 imported, 1 failed",
        ],
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
    assert_no_secret(&run);
    assert_eq!(run.stdout, "", "no job variables");
    assert_said(
        &run,
        &[
            "AuthorizationFailed",
            "6 images: 0 current, 0 copied, 6 failed",
            "Microsoft.ContainerRegistry/registries/importImage/action on contoso",
        ],
    );
    assert!(
        !run.stderr.contains("docker login"),
        "no registry login hint for Resource Manager's refusal: {}",
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
    let run = w.run("sync", &args).await;
    run.assert_code(1);
    assert_said(
        &run,
        &[
            &format!("{}:stable: importing", RUNTIME[4]),
            "still InProgress at the deadline",
            "5 imported, 1 failed",
        ],
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
async fn a_dry_run_or_a_held_lock_asks_for_nothing() {
    let w = world().await;
    let mut args = vec!["--server-side", "--dry-run"];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(0);
    assert!(w.posts().is_empty());
    assert_said(
        &run,
        &[
            "dry run: would ask contoso to import",
            "dry run: 6 images: 0 current, 6 to copy",
        ],
    );
    assert!(w.target_digest(RUNTIME[0], "stable").await.is_none());

    // Another run holding the lock: exit 4, nothing asked.
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("azureml.lock");
    let _held = mirror::sync::lock::RunLock::acquire(&lock).unwrap();
    let mut args = vec!["--server-side", "--lock-file", lock.to_str().unwrap()];
    args.extend_from_slice(&PULL);
    let run = w.run("sync", &args).await;
    run.assert_code(4);
    assert!(w.posts().is_empty());
}

#[tokio::test]
async fn a_source_this_machine_cannot_reach_is_skipped_with_a_note() {
    let w = world().await;
    // Its only way out is a proxy that is not there; ARM and the target
    // are reached directly.
    let no_proxy = format!(
        "{},{}",
        w.arm.endpoint().trim_start_matches("http://"),
        w.target.host()
    );
    let env = [
        ("NO_PROXY", no_proxy.as_str()),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
    ];
    let mut args = words(&["azureml", "sync", "--server-side"]);
    args.extend(w.workspace("ws"));
    args.extend(w.private_source());
    args.extend(words(&PULL));
    let run = w.mirror(&args, &env).await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert_said(
        &run,
        &[
            "source not reachable from here, only the target checked",
            "6 imported, 0 failed",
        ],
    );
    w.assert_all_landed().await;

    // --no-source-check: not even tried; every image is imported again,
    // since nothing here can tell it is current.
    w.arm.clear_requests();
    args.push("--no-source-check".into());
    let run = w.mirror(&args, &env).await;
    run.assert_code(0);
    assert_said(&run, &["source not asked: this machine does not reach"]);
    assert_eq!(w.posts().len(), 6);
}

#[tokio::test]
async fn without_a_workspace_the_registry_is_named_by_its_resource_group() {
    let w = world().await;
    // The registry's name is the login server's first label.
    let host = w.target.host();
    let name = host.split('.').next().unwrap();
    w.arm.add_registry(SUB, "acr-rg", name, &host);
    let sync = |extra: &[&str]| {
        let mut all = words(&[
            "azureml",
            "sync",
            "--server-side",
            "--region",
            "eastus",
            "--target",
            &host,
        ]);
        all.extend(w.arm_flags());
        all.extend(w.private_source());
        all.extend(words(extra));
        all
    };

    let run = w.mirror(&sync(&[]), &[]).await;
    run.assert_code(2);
    assert_said(&run, &["--registry-resource-group GROUP"]);
    let run = w
        .mirror(&sync(&["--registry-resource-group", "wrong-rg"]), &[])
        .await;
    run.assert_code(2);
    assert_said(&run, &["not found"]);

    let run = w
        .mirror(&sync(&["--registry-resource-group", "acr-rg"]), &[])
        .await;
    run.assert_code(0);
    assert_no_secret(&run);
    assert_said(
        &run,
        &["6 imported, 0 failed", "warning: no pull credentials given"],
    );
    w.assert_all_landed().await;
    assert!(w.posts()[0].path.contains("/resourceGroups/acr-rg/"));
}
