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
