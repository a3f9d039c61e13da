//! The AzureML job variables in every format, read back by the tools that
//! read them in real life: python-dotenv, a POSIX shell, PyYAML, Python
//! itself, and a JSON parser. A password with quotes, backslashes, `$`,
//! backticks and a newline must come back byte for byte.

use mirror::azureml::variables::{Format, JobVariables, CONFIG_OVERRIDE, USE_COMMON_RUNTIME};
use registry_client::Secret;

const NASTY: &str = "p'a\"s\\s$HOME `id` !{x} ${Y}\nend%20";

fn vars() -> JobVariables {
    JobVariables {
        registry: "contoso.azurecr.io".into(),
        username: "mirror-pull".into(),
        password: Secret::new(NASTY),
        repo_prefix: Some("azureml".into()),
        regional_tag_prefix: false,
    }
}

/// Run a Python program that prints a JSON object of the two variables.
fn python(program: &str, input: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input");
    std::fs::write(&file, input).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", program])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n--- input ---\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_round_trip(v: &serde_json::Value, format: Format) {
    assert_eq!(v[USE_COMMON_RUNTIME], "true", "{format:?}: {v}");
    let o: serde_json::Value = serde_json::from_str(v[CONFIG_OVERRIDE].as_str().unwrap())
        .unwrap_or_else(|e| panic!("{format:?}: the override is JSON: {e}: {v}"));
    let r = &o["capabilities_registry"];
    assert_eq!(r["registry"]["password"], NASTY, "{format:?}");
    assert_eq!(r["registry"]["url"], "contoso.azurecr.io");
    assert_eq!(r["repo_prefix"], "azureml");
}

#[test]
fn dotenv_reads_back_with_python_dotenv() {
    let out = vars().render(Format::Dotenv, true);
    let v = python(
        "import json,sys; from dotenv import dotenv_values; print(json.dumps(dotenv_values(sys.argv[1])))",
        &out,
    );
    assert_round_trip(&v, Format::Dotenv);
}

/// What `set -a; . ./vars.env` gives `name` in `shell` (`sh`, `bash`).
fn sourced(shell: &str, dotenv: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vars.env"), dotenv).unwrap();
    let o = std::process::Command::new(shell)
        .args([
            "-c",
            &format!("set -a; . ./vars.env; printf %s \"${name}\""),
        ])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("{shell} runs: {e}"));
    assert!(
        o.status.success(),
        "{shell}: {}\n--- vars.env ---\n{dotenv}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn dotenv_reads_the_same_in_python_dotenv_sh_and_bash() {
    let out = vars().render(Format::Dotenv, true);
    let dotenv = python(
        "import json,sys; from dotenv import dotenv_values; print(json.dumps(dotenv_values(sys.argv[1])))",
        &out,
    );
    let json: serde_json::Value = serde_json::from_str(&vars().render(Format::Json, true)).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(json[CONFIG_OVERRIDE].as_str().unwrap()).unwrap();
    for shell in ["sh", "bash"] {
        for name in [USE_COMMON_RUNTIME, CONFIG_OVERRIDE] {
            assert_eq!(
                sourced(shell, &out, name),
                dotenv[name].as_str().unwrap(),
                "{shell} and python-dotenv read {name} alike\n--- vars.env ---\n{out}"
            );
        }
    }
    let read: serde_json::Value =
        serde_json::from_str(dotenv[CONFIG_OVERRIDE].as_str().unwrap()).unwrap();
    assert_eq!(read, expected, "the same override as the JSON form");
    assert_round_trip(&dotenv, Format::Dotenv);
    // Nothing in a value that any reader's single quotes would touch.
    for line in out.lines() {
        let (_, value) = line.split_once('=').unwrap();
        let inner = &value[1..value.len() - 1];
        assert!(value.starts_with('\'') && value.ends_with('\''), "{line}");
        assert!(!inner.contains(['\'', '$', '`']), "{line}");
        assert!(!inner.contains(r"\\"), "{line}");
    }
}

#[test]
fn shell_reads_back_in_sh() {
    let out = vars().render(Format::Shell, true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.sh");
    std::fs::write(&file, &out).unwrap();
    let read = |name: &str| {
        let o = std::process::Command::new("sh")
            .args(["-c", &format!(". \"$1\"; printf %s \"${name}\""), "sh"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    let v = serde_json::json!({
        USE_COMMON_RUNTIME: read(USE_COMMON_RUNTIME),
        CONFIG_OVERRIDE: read(CONFIG_OVERRIDE),
    });
    assert_round_trip(&v, Format::Shell);
}

#[test]
fn json_and_yaml_read_back() {
    let v: serde_json::Value = serde_json::from_str(&vars().render(Format::Json, true)).unwrap();
    assert_round_trip(&v, Format::Json);
    let load = "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    assert_round_trip(
        &python(load, &vars().render(Format::Yaml, true)),
        Format::Yaml,
    );
    let job = python(load, &vars().render(Format::CliV2Yaml, true));
    assert_round_trip(&job["environment_variables"], Format::CliV2Yaml);
}

#[test]
fn python_sdk_snippets_run() {
    let run = "import json,sys; ns={}; exec(open(sys.argv[1]).read(), ns); print(json.dumps(ns['mirror_environment_variables']))";
    for f in [Format::PythonSdkV1, Format::PythonSdkV2] {
        assert_round_trip(&python(run, &vars().render(f, true)), f);
    }
}

mod command_line {
    use super::*;
    use mirror_tests::cli::{mirror, mirror_with_stdin};
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn env_takes_the_password_from_stdin_and_writes_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("job.env");
        std::fs::write(&out, "old").unwrap(); // an existing file is narrowed too
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        let run = mirror_with_stdin(
            &[
                "azureml",
                "env",
                "--target",
                "contoso.azurecr.io",
                "--username",
                "mirror-pull",
                "--password-stdin",
                "--prefix",
                "azureml",
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
            &format!("{}\n", NASTY.replace('\n', " ")),
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE="),
            "{text}"
        );
        assert!(run.stdout.is_empty(), "nothing on stdout with --out");
    }

    #[tokio::test]
    async fn env_wants_the_password_from_the_environment_or_stdin_only() {
        let args = [
            "azureml",
            "env",
            "--target",
            "c.azurecr.io",
            "--username",
            "u",
        ];
        let run = mirror(&args, &[]).await;
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("--password-env"), "{}", run.stderr);
        let mut with_flag = args.to_vec();
        with_flag.extend(["--password", "on-the-command-line"]);
        assert_eq!(mirror(&with_flag, &[]).await.code, 2, "no such flag");
        let mut from_env = args.to_vec();
        from_env.extend(["--password-env", "ACR_PULL_PASSWORD", "--format", "json"]);
        let run = mirror(&from_env, &[("ACR_PULL_PASSWORD", "from-env-1234")]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(v[CONFIG_OVERRIDE]
            .as_str()
            .unwrap()
            .contains("from-env-1234"));
    }

    #[tokio::test]
    async fn env_masks_the_password_on_a_terminal_unless_asked() {
        if std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("SKIPPED: no `script` to give mirror a terminal");
            return;
        }
        let bin = mirror_tests::cli::mirror_bin();
        let on_tty = |extra: &str| {
            let line = format!(
                "{} azureml env --target c.azurecr.io --username u --password-env ACR_PULL_PASSWORD {extra}",
                bin.display()
            );
            let o = std::process::Command::new("script")
                .args(["-qec", &line, "/dev/null"])
                .env("ACR_PULL_PASSWORD", "tty-secret-5678")
                .output()
                .unwrap();
            assert!(o.status.success());
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let masked = on_tty("");
        assert!(
            !masked.contains("tty-secret-5678") && masked.contains("********"),
            "{masked}"
        );
        assert!(on_tty("--show-secret").contains("tty-secret-5678"));
    }
}
