//! `mirror azureml sync` and `check` end to end, against real registries
//! laid out like the AzureML system registry (repositories at the root,
//! `{region}-stable` tags, credentials from the workspace), MCR (the same
//! repositories under `azureml/runtime`, anonymous) and a customer's ACR
//! (token auth with a push user, a pull-only token and Entra exchange).

use mirror_tests::azure_cli::{fake_az, path_with};
use mirror_tests::cli::{images_with_status, mirror, mirror_with_stdin, Run};
use mirror_tests::fixtures::{self, azureml_images, push_as, GeneratedImage, Scale};
use mirror_tests::images::client;
use mirror_tests::{Grant, Registry, TokenServer, TokenServerOptions};
use registry_client::{Credential, Digest, Reference};
use serde_json::Value;

const RUNTIME: [&str; 6] = mirror::azureml::images::RUNTIME_REPOSITORIES;
const WORKSPACE_PASSWORD: &str = "ws-SECRET-1";
const PUSH_PASSWORD: &str = "push-SECRET-2";
const PULL_PASSWORD: &str = "pull-SECRET-3";
const AAD_TOKEN: &str = "aad-SECRET-4";

/// The runtime images for `region`, under `prefix` when given.
fn runtime_images(region: &str, prefix: Option<&str>) -> Vec<GeneratedImage> {
    let mut specs = azureml_images(region, Scale::Fixture);
    for s in &mut specs {
        if let Some(p) = prefix {
            s.repository = format!("{p}/{}", s.repository);
        }
    }
    fixtures::generate_all(&specs)
}

/// The system registry: token auth, the workspace's user.
async fn system_registry() -> (Registry, TokenServer) {
    let (reg, tokens) = Registry::start_with_token_auth(
        Default::default(),
        TokenServerOptions::default().with_user("workspace", WORKSPACE_PASSWORD),
    )
    .await
    .unwrap();
    let cred = Some(Credential::basic("workspace", WORKSPACE_PASSWORD));
    push_as(&reg, cred.clone(), &runtime_images("eastus", None)).await;
    push_as(&reg, cred, &runtime_images("westus", None)).await;
    (reg, tokens)
}

/// The customer's registry: a push user, a pull-only token on the
/// `pullable` repositories, and an Entra token for the exchange (also
/// handed out by a managed identity endpoint).
async fn customer_registry(pullable: &[&str]) -> (Registry, TokenServer) {
    let grants = pullable
        .iter()
        .map(|r| Grant::repository(r, &["pull"]))
        .collect();
    Registry::start_with_token_auth(
        Default::default(),
        TokenServerOptions::default()
            .with_user("pusher", PUSH_PASSWORD)
            .with_restricted_user("puller", PULL_PASSWORD, grants)
            .with_aad_token(AAD_TOKEN)
            .with_managed_identity("msi-SECRET-5"),
    )
    .await
    .unwrap()
}

async fn digest_of(reg: &Registry, cred: Option<Credential>, reference: &str) -> Option<Digest> {
    client(&reg.host(), cred)
        .head_manifest(&Reference::parse(reference).unwrap())
        .await
        .unwrap()
        .map(|m| m.digest)
}

/// The override inside the JSON job variables.
fn override_of(run: &Run) -> Value {
    let vars: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("variables are JSON ({e}): {}\n{}", run.stdout, run.stderr));
    assert_eq!(vars["AZUREML_COMPUTE_USE_COMMON_RUNTIME"], "true");
    serde_json::from_str(
        vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

fn assert_no_secrets(texts: &[&str]) {
    for t in texts {
        // Every secret in these tests has SECRET in it.
        assert!(!t.contains("SECRET"), "a secret was shown: {t}");
    }
}

/// One more repository at the source, `cap/extra-capability/installed`,
/// for `--extra`.
async fn push_extra(source: &Registry) {
    let extra = azureml_images("eastus", Scale::Fixture)
        .into_iter()
        .map(|mut spec| {
            spec.repository = "cap/extra-capability/installed".into();
            spec
        })
        .take(1)
        .collect::<Vec<_>>();
    push_as(source, None, &fixtures::generate_all(&extra)).await;
}

#[tokio::test]
async fn system_registry_to_customer_registry_then_an_unchanged_rerun_costs_a_head_and_a_listing_per_image_per_side(
) {
    let (system, _system_tokens) = system_registry().await;
    let (customer, _tokens) = customer_registry(&["*"]).await;
    let (s, c) = (system.host(), customer.host());
    let args = [
        "azureml",
        "sync",
        "--region",
        "East US",
        "--source",
        &s,
        "--source-username",
        "workspace",
        "--source-password-stdin",
        "--target",
        &c,
        "--username",
        "pusher",
        "--password-env",
        "PUSH_PW",
        "--pull-username",
        "puller",
        "--pull-password-env",
        "PULL_PW",
        "--format",
        "json",
        "--progress",
        "plain",
    ];
    let env = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", PULL_PASSWORD)];
    let run = mirror_with_stdin(&args, &env, &format!("{WORKSPACE_PASSWORD}\n")).await;
    run.assert_code(0);
    assert!(run.stderr.contains("6 copied"), "{}", run.stderr);
    assert_no_secrets(&[&run.stderr]);

    let o = override_of(&run);
    let registry = &o["capabilities_registry"];
    assert_eq!(registry["registry"]["url"], c.as_str());
    assert_eq!(registry["registry"]["username"], "puller");
    assert_eq!(registry["registry"]["password"], PULL_PASSWORD);
    assert!(registry.get("repo_prefix").is_none(), "{o}");
    assert_eq!(registry["regional_tag_prefix"], false);

    let ws = Some(Credential::basic("workspace", WORKSPACE_PASSWORD));
    let push = Some(Credential::basic("pusher", PUSH_PASSWORD));
    for repo in RUNTIME {
        let source = digest_of(&system, ws.clone(), &format!("{s}/{repo}:eastus-stable")).await;
        let target = digest_of(&customer, push.clone(), &format!("{c}/{repo}:stable")).await;
        assert!(source.is_some());
        assert_eq!(source, target, "{repo}");
        // Only the region asked for, and only as `stable`.
        let regional = format!("{c}/{repo}:westus-stable");
        assert_eq!(digest_of(&customer, push.clone(), &regional).await, None);
    }

    // Unchanged: one HEAD per image at each side and one listing of its
    // referrers (on docker-registry the API probed once per registry, then
    // the tag-schema index read per image), nothing else (but the one 401
    // that tells a fresh process where each registry's tokens are), and at
    // the customer's the one pull tried as the job before the variables are
    // printed (its own client: its own 401). With --no-referrers, the HEADs
    // alone.
    for referrers in [true, false] {
        let mut args = args.to_vec();
        if !referrers {
            args.push("--no-referrers");
        }
        let before = (system.access_log().len(), customer.access_log().len());
        let run = mirror_with_stdin(&args, &env, &format!("{WORKSPACE_PASSWORD}\n")).await;
        run.assert_code(0);
        assert!(run.stderr.contains("6 current"), "{}", run.stderr);
        for (reg, skip, job) in [(&system, before.0, 0), (&customer, before.1, 1)] {
            let log = &reg.access_log()[skip..];
            let answered: Vec<String> = log
                .iter()
                .filter(|e| e.status != 401)
                .map(|e| format!("{} {}", e.method, e.uri))
                .collect();
            let heads = answered
                .iter()
                .filter(|r| r.starts_with("HEAD ") && r.contains("/manifests/"))
                .count();
            let probes = answered
                .iter()
                .filter(|r| r.starts_with("GET ") && r.contains("/referrers/sha256:"))
                .count();
            let indexes = answered
                .iter()
                .filter(|r| r.starts_with("GET ") && r.contains("/manifests/sha256-"))
                .count();
            assert_eq!(heads, 6 + job, "{referrers}: {answered:#?}");
            let listings = if referrers { (1, 6) } else { (0, 0) };
            assert_eq!((probes, indexes), listings, "{referrers}: {answered:#?}");
            assert_eq!(answered.len(), heads + probes + indexes, "{answered:#?}");
            assert_eq!(log.iter().filter(|e| e.status == 401).count(), 1 + job);
        }
    }
}

#[tokio::test]
async fn from_mcr_under_its_prefix_into_a_prefix_keeping_regional_tags() {
    let mcr = Registry::start_open().await.unwrap();
    push_as(
        &mcr,
        None,
        &runtime_images("westeurope", Some("azureml/runtime")),
    )
    .await;
    let target = Registry::start_open().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("job.env");
    let run = mirror(
        &[
            "azureml",
            "sync",
            "--region",
            "westeurope",
            "--source",
            &format!("{}/azureml/runtime", mcr.host()),
            "--target",
            &target.host(),
            "--prefix",
            "mirrors/azureml",
            "--regional-tags",
            "--pull-username",
            "puller",
            "--pull-password-env",
            "PULL_PW",
            "--out",
            out.to_str().unwrap(),
            "--progress",
            "none",
        ],
        &[("PULL_PW", PULL_PASSWORD)],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.stdout, "", "the variables went to the file");
    for repo in RUNTIME {
        let reference = format!("{}/mirrors/azureml/{repo}:westeurope-stable", target.host());
        assert!(
            digest_of(&target, None, &reference).await.is_some(),
            "{reference}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // python-dotenv reads the file the way `az ml` tooling would.
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys; from dotenv import dotenv_values; print(json.dumps(dotenv_values(sys.argv[1])))",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let vars: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let o: Value = serde_json::from_str(
        vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(o["capabilities_registry"]["repo_prefix"], "mirrors/azureml");
    assert_eq!(o["capabilities_registry"]["regional_tag_prefix"], true);
    assert_eq!(
        o["capabilities_registry"]["registry"]["password"],
        PULL_PASSWORD
    );
    // `azureml env` reads `--target HOST/PREFIX` as `sync` reads `--target
    // HOST --prefix PREFIX`: the same variables, byte for byte.
    let env_out = dir.path().join("env.env");
    let run = mirror(
        &[
            "azureml",
            "env",
            "--target",
            &format!("{}/mirrors/azureml", target.host()),
            "--regional-tags",
            "--username",
            "puller",
            "--password-env",
            "PULL_PW",
            "--out",
            env_out.to_str().unwrap(),
        ],
        &[("PULL_PW", PULL_PASSWORD)],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(&env_out).unwrap(),
        std::fs::read_to_string(&out).unwrap(),
        "azureml env and azureml sync print the same variables"
    );
}

#[tokio::test]
async fn an_entra_token_from_a_variable_the_azure_cli_or_a_managed_identity_is_exchanged() {
    let mcr = Registry::start_open().await.unwrap();
    push_as(
        &mcr,
        None,
        &runtime_images("eastus", Some("azureml/runtime")),
    )
    .await;
    let source = format!("{}/azureml/runtime", mcr.host());
    let bin = tempfile::tempdir().unwrap();
    let az_log = fake_az(bin.path(), AAD_TOKEN);
    let path = path_with(bin.path());

    for from in ["env:AAD", "azure-cli", "azure-sdk"] {
        let (customer, tokens) = customer_registry(&["*"]).await;
        let endpoint = tokens.managed_identity_endpoint();
        let env = [
            ("AAD", AAD_TOKEN),
            ("PULL_PW", PULL_PASSWORD),
            ("PATH", path.as_str()),
            ("IDENTITY_ENDPOINT", endpoint.as_str()),
            ("IDENTITY_HEADER", "msi-SECRET-5"),
            ("MIRROR_LOG", "trace"),
        ];
        let run = mirror(
            &[
                "azureml",
                "sync",
                "--region",
                "eastus",
                "--source",
                &source,
                "--target",
                &customer.host(),
                "--entra-token",
                from,
                "--tenant",
                "contoso-tenant",
                "--pull-username",
                "puller",
                "--pull-password-env",
                "PULL_PW",
                "--format",
                "json",
                "--progress",
                "none",
            ],
            &env,
        )
        .await;
        run.assert_code_of(from, 0);
        let exchanges: Vec<_> = tokens
            .requests()
            .into_iter()
            .filter(|q| q.path == "/oauth2/exchange")
            .collect();
        assert_eq!(exchanges.len(), 1, "{from}: {:?}", tokens.requests());
        assert_eq!(exchanges[0].status, 200, "{from}");
        let msi_calls = tokens
            .requests()
            .iter()
            .filter(|q| q.path == "/msi/token")
            .count();
        assert_eq!(msi_calls, usize::from(from == "azure-sdk"), "{from}");
        assert_no_secrets(&[&run.stderr]);
        for repo in RUNTIME {
            let reference = format!("{}/{repo}:stable", customer.host());
            let cred = Some(Credential::basic("pusher", PUSH_PASSWORD));
            assert!(
                digest_of(&customer, cred, &reference).await.is_some(),
                "{from}: {repo}"
            );
        }
    }
    let az_calls = std::fs::read_to_string(&az_log).unwrap();
    assert_eq!(az_calls.lines().count(), 1, "{az_calls}");
    assert!(
        az_calls.contains("account get-access-token")
            && az_calls.contains("--scope https://containerregistry.azure.net/.default")
            && az_calls.contains("--tenant contoso-tenant"),
        "{az_calls}"
    );
}

#[tokio::test]
async fn a_failed_image_is_reported_while_the_others_land_and_no_variables_are_printed() {
    let source = Registry::start_open().await.unwrap();
    let images = runtime_images("eastus", None);
    // The region lacks one image.
    push_as(&source, None, &images[..5]).await;
    let target = Registry::start_open().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let run = mirror(
        &[
            "azureml",
            "sync",
            "--region",
            "eastus",
            "--source",
            &source.host(),
            "--target",
            &target.host(),
            "--report",
            report.to_str().unwrap(),
            "--progress",
            "none",
        ],
        &[],
    )
    .await;
    run.assert_code(1);
    assert_eq!(run.stdout, "", "no job variables when an image is missing");
    assert!(
        run.stderr.contains("not printing the job variables"),
        "{}",
        run.stderr
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["copied"], 5, "{report:#}");
    assert_eq!(report["failed"], 1, "{report:#}");
    let failed = images_with_status(&report, "failed")[0];
    assert!(
        failed["source"].as_str().unwrap().contains(RUNTIME[5]),
        "{failed:#}"
    );
    for repo in &RUNTIME[..5] {
        let reference = format!("{}/{repo}:stable", target.host());
        assert!(
            digest_of(&target, None, &reference).await.is_some(),
            "{repo}"
        );
    }
}

async fn check(args: &[&str], env: &[(&str, &str)]) -> (Run, Vec<Value>) {
    let mut all = vec!["azureml", "check", "--output", "json"];
    all.extend_from_slice(args);
    let run = mirror(&all, env).await;
    let rows = match serde_json::from_str::<Value>(&run.stdout) {
        Ok(Value::Array(rows)) => rows,
        _ => panic!("check prints JSON rows: {}{}", run.stdout, run.stderr),
    };
    (run, rows)
}

fn row<'a>(rows: &'a [Value], image: &str) -> &'a Value {
    rows.iter().find(|r| r["image"] == image).unwrap()
}

#[tokio::test]
async fn check_finds_stale_missing_and_unpullable_images_and_passes_once_all_is_well() {
    let source = Registry::start_open().await.unwrap();
    push_as(&source, None, &runtime_images("eastus", None)).await;
    // The job's token can pull every runtime image but hosttools.
    let pullable: Vec<&str> = RUNTIME[..5].to_vec();
    let (customer, _tokens) = customer_registry(&pullable).await;
    let (s, c) = (source.host(), customer.host());
    let login = [
        "--region",
        "eastus",
        "--source",
        &s,
        "--target",
        &c,
        "--username",
        "pusher",
        "--password-env",
        "PUSH_PW",
    ];
    let env = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", PULL_PASSWORD)];
    let mut sync = vec!["azureml", "sync", "--progress", "none", "--format", "json"];
    sync.extend_from_slice(&login);
    let run = mirror(&sync, &env).await;
    run.assert_code(0);

    // The source moves on for one image; another repository is asked for
    // that was never mirrored.
    let mut newer = azureml_images("eastus", Scale::Fixture);
    newer[1].layers[1].seed += 1000;
    push_as(&source, None, &fixtures::generate_all(&newer[1..2])).await;
    push_extra(&source).await;

    let mut args = login.to_vec();
    args.extend([
        "--extra",
        "cap/extra-capability/installed",
        "--pull-username",
        "puller",
        "--pull-password-env",
        "PULL_PW",
    ]);
    let (run, rows) = check(&args, &env).await;
    run.assert_code(1);
    assert_eq!(rows.len(), 7);
    assert_eq!(row(&rows, RUNTIME[0])["standing"], "current");
    assert_eq!(row(&rows, RUNTIME[0])["pull"], "allowed");
    assert_eq!(row(&rows, RUNTIME[1])["standing"], "stale");
    assert_eq!(row(&rows, RUNTIME[5])["standing"], "current");
    assert_eq!(row(&rows, RUNTIME[5])["pull"], "denied");
    assert_eq!(
        row(&rows, "cap/extra-capability/installed")["standing"],
        "missing"
    );
    assert_no_secrets(&[&run.stdout, &run.stderr]);

    // The text table names each problem.
    let mut text = vec!["azureml", "check"];
    text.extend_from_slice(&args);
    let table = mirror(&text, &env).await;
    assert_eq!(table.code, 1);
    for word in [
        "STALE",
        "MISSING",
        "DENIED",
        "7 images: 5 current, 1 stale, 1 missing",
    ] {
        assert!(table.stdout.contains(word), "{word}: {}", table.stdout);
    }

    // Sync again and check with the variables a job would carry, for a
    // token that can pull everything: all is well.
    let run = mirror(&sync, &env).await;
    run.assert_code(0);
    let vars: Value = serde_json::from_str(&run.stdout).unwrap();
    let job_override = vars["AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE"]
        .as_str()
        .unwrap();
    assert!(
        job_override.contains("\"pusher\""),
        "the push user, given no pull user"
    );
    let (run, rows) = check(
        &login,
        &[
            ("PUSH_PW", PUSH_PASSWORD),
            ("AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE", job_override),
        ],
    )
    .await;
    run.assert_code(0);
    assert!(rows
        .iter()
        .all(|r| r["standing"] == "current" && r["pull"] == "allowed"));

    // Variables that point elsewhere are caught.
    let elsewhere = job_override.replace(&c, "contoso.azurecr.io");
    let run = mirror(
        &[&["azureml", "check"], &login[..]].concat(),
        &[
            ("PUSH_PW", PUSH_PASSWORD),
            ("AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE", &elsewhere),
        ],
    )
    .await;
    run.assert_code(2);
    assert!(run.stderr.contains("contoso.azurecr.io"), "{}", run.stderr);
    assert_no_secrets(&[&run.stdout, &run.stderr]);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_before_any_request() {
    let target = Registry::start_open().await.unwrap();
    let t = target.host();
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["--region", "westeurop", "--target", &t],
            2,
            "did you mean \"westeurope\"",
        ),
        (
            &["--region", "eastus", "--target", "contoso"],
            2,
            "registry host",
        ),
        (
            &["--region", "eastus", "--target", &t, "--username", "u"],
            2,
            "--password-env",
        ),
        (
            &[
                "--region",
                "eastus",
                "--target",
                &t,
                "--username",
                "u",
                "--password-env",
                "NOPE_UNSET",
            ],
            2,
            "$NOPE_UNSET is not set",
        ),
        (
            &[
                "--region",
                "eastus",
                "--target",
                &t,
                "--entra-token",
                "env:NOPE_UNSET",
            ],
            3,
            "$NOPE_UNSET: it is not set",
        ),
        (
            &[
                "--region",
                "eastus",
                "--target",
                &t,
                "--username",
                "u",
                "--password-stdin",
                "--pull-username",
                "p",
                "--pull-password-stdin",
            ],
            2,
            "cannot be used with",
        ),
    ];
    for (args, code, message) in cases {
        let run = mirror(&[&["azureml", "sync"], args].concat(), &[]).await;
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    let requests = target
        .access_log()
        .iter()
        .filter(|e| e.uri != "/v2/")
        .count();
    assert_eq!(requests, 0, "nothing was asked of the registry");
}

/// An open source with the runtime images, and the customer's registry
/// with htpasswd auth (basic, no token server): a push user and a pull user.
async fn open_source_and_htpasswd_customer() -> (Registry, Registry) {
    let source = Registry::start_open().await.unwrap();
    push_as(&source, None, &runtime_images("eastus", None)).await;
    let customer =
        Registry::start_htpasswd(&[("pusher", PUSH_PASSWORD), ("puller", PULL_PASSWORD)])
            .await
            .unwrap();
    (source, customer)
}

/// `azureml <command>` from `source` to `customer` as the push user, the
/// job pulling as `puller` with the password in `$PULL_PW`.
fn htpasswd_args<'a>(command: &'a str, source: &'a str, customer: &'a str) -> Vec<&'a str> {
    vec![
        "azureml",
        command,
        "--region",
        "eastus",
        "--source",
        source,
        "--target",
        customer,
        "--username",
        "pusher",
        "--password-env",
        "PUSH_PW",
        "--pull-username",
        "puller",
        "--pull-password-env",
        "PULL_PW",
    ]
}

#[tokio::test]
async fn check_with_a_wrong_pull_password_counts_no_image_pullable_and_names_every_state() {
    let (source, customer) = open_source_and_htpasswd_customer().await;
    let (s, c) = (source.host(), customer.host());
    let right = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", PULL_PASSWORD)];
    let mut sync = htpasswd_args("sync", &s, &c);
    sync.extend(["--progress", "none"]);
    mirror(&sync, &right).await.assert_code(0);
    // Two more images asked for: one the source has and the target lacks,
    // one the source lacks. Neither is there to try a pull on.
    push_extra(&source).await;
    let mut args = htpasswd_args("check", &s, &c);
    args.extend([
        "--extra",
        "cap/extra-capability/installed",
        "--extra",
        "cap/nowhere/installed",
    ]);

    let wrong = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", "wrong-SECRET-6")];
    let table = mirror(&args, &wrong).await;
    table.assert_code(1);
    assert_eq!(
        table.stdout.matches("DENIED").count(),
        6,
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("NOT AT SOURCE"), "{}", table.stdout);
    assert!(
        table.stdout.contains(
            "8 images: 6 current, 0 stale, 1 missing, 1 not at source; \
             signatures: 0 complete, 0 missing, 7 none at source; \
             the job can pull 0 (6 denied, 2 not tried)"
        ),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains("unknown"), "{}", table.stdout);
    assert!(
        table.stdout.contains("refused user \"puller\""),
        "the cause is shown: {}",
        table.stdout
    );
    assert_no_secrets(&[&table.stdout, &table.stderr]);

    let (run, rows) = check(&args[2..], &wrong).await;
    run.assert_code(1);
    for repo in RUNTIME {
        assert_eq!(row(&rows, repo)["standing"], "current");
        assert_eq!(row(&rows, repo)["pull"], "denied");
    }
    assert_eq!(
        row(&rows, "cap/nowhere/installed")["standing"],
        "not_at_source"
    );
    assert_eq!(row(&rows, "cap/nowhere/installed")["pull"], "not_checked");

    // The right password: every image there is pulled, and the two that
    // are not there are not counted as pullable.
    let table = mirror(&args, &right).await;
    table.assert_code(1);
    assert!(
        table.stdout.contains("; the job can pull 6 (2 not tried)"),
        "{}",
        table.stdout
    );
}

#[tokio::test]
async fn sync_tries_the_jobs_pull_before_printing_the_variables() {
    let (source, customer) = open_source_and_htpasswd_customer().await;
    let (s, c) = (source.host(), customer.host());
    let mut sync = htpasswd_args("sync", &s, &c);
    sync.extend(["--progress", "none", "--format", "json"]);

    // A wrong pull password: the images land, the variables do not.
    let wrong = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", "wrong-SECRET-6")];
    let run = mirror(&sync, &wrong).await;
    run.assert_code(3);
    assert_eq!(run.stdout, "", "no job variables the job cannot use");
    for word in [
        format!("the job cannot pull {c}/boot/vm-bootstrapper/binimage/linux:stable"),
        format!("from {c}"),
        "refused user \"puller\"".to_string(),
        "not printing the job variables".to_string(),
    ] {
        assert!(run.stderr.contains(&word), "{word}: {}", run.stderr);
    }
    assert_no_secrets(&[&run.stderr]);
    let push = Some(Credential::basic("pusher", PUSH_PASSWORD));
    for repo in RUNTIME {
        let reference = format!("{c}/{repo}:stable");
        assert!(digest_of(&customer, push.clone(), &reference)
            .await
            .is_some());
    }

    // The right one: the pull is tried, said, and the variables printed.
    let right = [("PUSH_PW", PUSH_PASSWORD), ("PULL_PW", PULL_PASSWORD)];
    let run = mirror(&sync, &right).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains(&format!(
            "the job's credentials (\"puller\") can pull {c}/boot/vm-bootstrapper/binimage/linux:stable"
        )),
        "{}",
        run.stderr
    );
    let o = override_of(&run);
    assert_eq!(o["capabilities_registry"]["registry"]["username"], "puller");
    assert_eq!(
        o["capabilities_registry"]["registry"]["password"],
        PULL_PASSWORD
    );
}
