//! Docker's `config.json`: `auths` (with `auth`, `username`/`password`,
//! `identitytoken`, `registrytoken`), `credHelpers` and `credsStore`, which
//! run `docker-credential-<name> get`. Found through `DOCKER_CONFIG` or
//! `~/.docker/config.json`, as docker does.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::{Credential, CredentialStore};
use crate::error::Error;
use crate::secret::Secret;

const HUB_KEY: &str = "https://index.docker.io/v1/";
const HUB_NAMES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

#[derive(Debug, Default, serde::Deserialize)]
struct File {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// A loaded docker config. Credential helpers run when asked, not at load.
#[derive(Debug, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    file: File,
    /// Where to find `docker-credential-*` programs; `None` means `PATH`.
    helper_dir: Option<PathBuf>,
}

impl DockerConfig {
    /// The config docker would use: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`. A missing file is an empty config.
    pub fn discover() -> Result<Self, Error> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        match dir {
            Some(d) => Self::load_or_empty(&d.join("config.json")),
            None => Ok(DockerConfig::default()),
        }
    }

    pub fn load_or_empty(path: &Path) -> Result<Self, Error> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(e) => Err(Error::io(
                format!("reading docker config {}", path.display()),
                e,
            )),
        }
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, Error> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| {
            Error::config(
                format!("docker config {}", path.display()),
                format!("not valid: {e}"),
            )
        })?;
        Ok(DockerConfig {
            path: Some(path.to_path_buf()),
            file,
            helper_dir: None,
        })
    }

    /// Look for credential helpers in `dir` instead of on `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    fn context(&self) -> String {
        match &self.path {
            Some(p) => format!("docker config {}", p.display()),
            None => "docker config".into(),
        }
    }

    fn auth_entry(&self, registry: &str) -> Option<&AuthEntry> {
        let wanted = normalize(registry);
        self.file
            .auths
            .iter()
            .find(|(k, _)| normalize(k) == wanted)
            .map(|(_, v)| v)
    }

    fn credential_in_entry(&self, registry: &str, e: &AuthEntry) -> Result<Credential, Error> {
        if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Credential::IdentityToken(Secret::new(t)));
        }
        if let Some(t) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Credential::RegistryToken(Secret::new(t)));
        }
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |why: &str| {
                Error::config(
                    self.context(),
                    format!("the \"auth\" entry for {registry} {why}"),
                )
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| bad("is not base64"))?;
            let raw = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
            let (user, pass) = raw.split_once(':').ok_or_else(|| bad("has no ':'"))?;
            return Ok(Credential::basic(user, pass));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Credential::basic(u.clone(), p.as_str()));
        }
        Ok(Credential::Anonymous)
    }

    fn run_helper(&self, helper: &str, registry: &str) -> Result<Credential, Error> {
        let program = format!("docker-credential-{helper}");
        let path = match &self.helper_dir {
            Some(d) => d.join(&program),
            None => PathBuf::from(&program),
        };
        let server = if HUB_NAMES.contains(&normalize(registry).as_str()) {
            HUB_KEY.to_string()
        } else {
            registry.to_string()
        };
        let ctx = || format!("credential helper {program} for {registry}");
        let mut child = Command::new(&path)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(ctx(), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .map_err(|e| Error::io(ctx(), e))?;
        }
        let out = child.wait_with_output().map_err(|e| Error::io(ctx(), e))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if msg.contains("credentials not found") {
                return Ok(Credential::Anonymous);
            }
            // The helper's words can be long; its stderr is not shown since
            // some helpers echo their input there.
            return Err(Error::config(
                ctx(),
                format!("failed ({}): {msg}", out.status),
            ));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let a: Answer = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::config(ctx(), format!("answered something that is not JSON: {e}"))
        })?;
        if a.username == "<token>" {
            return Ok(Credential::IdentityToken(Secret::new(a.secret)));
        }
        Ok(Credential::basic(a.username, a.secret))
    }
}

impl CredentialStore for DockerConfig {
    fn credential(&self, registry: &str) -> Result<Credential, Error> {
        let wanted = normalize(registry);
        let helper = self
            .file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize(k) == wanted)
            .map(|(_, v)| v.clone());
        if let Some(h) = helper {
            return self.run_helper(&h, registry);
        }
        if let Some(e) = self.auth_entry(registry) {
            let c = self.credential_in_entry(registry, e)?;
            if !c.is_anonymous() {
                return Ok(c);
            }
        }
        if let Some(store) = self.file.creds_store.clone().filter(|s| !s.is_empty()) {
            return self.run_helper(&store, registry);
        }
        Ok(Credential::Anonymous)
    }
}

/// `https://index.docker.io/v1/`, `docker.io` and `registry-1.docker.io`
/// are one registry; schemes and paths in keys are ignored.
fn normalize(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    if HUB_NAMES.contains(&host.as_str()) {
        "docker.io".into()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg(json: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("/x/config.json"), json.as_bytes()).unwrap()
    }

    #[test]
    fn reads_auth_username_password_and_tokens() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let c = cfg(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "reg.example:5000": {{"username": "bob", "password": "pw"}},
                "https://myacr.azurecr.io": {{"identitytoken": "rt"}},
                "tok.example": {{"registrytoken": "bt"}}
            }}}}"#
        ));
        assert_eq!(
            c.credential("docker.io").unwrap(),
            Credential::basic("alice", "s3:cret")
        );
        assert_eq!(
            c.credential("reg.example:5000").unwrap(),
            Credential::basic("bob", "pw")
        );
        assert_eq!(
            c.credential("myacr.azurecr.io").unwrap(),
            Credential::IdentityToken(Secret::new("rt"))
        );
        assert_eq!(
            c.credential("tok.example").unwrap(),
            Credential::RegistryToken(Secret::new("bt"))
        );
        assert!(c.credential("other.example").unwrap().is_anonymous());
    }

    #[test]
    fn bad_files_and_entries_are_named() {
        let err = DockerConfig::parse(Path::new("/x/config.json"), b"{not json").unwrap_err();
        assert!(err.to_string().contains("/x/config.json"), "{err}");
        let c = cfg(r#"{"auths": {"r.io": {"auth": "!!!"}}}"#);
        let err = c.credential("r.io").unwrap_err().to_string();
        assert!(err.contains("r.io") && err.contains("base64"), "{err}");
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn runs_cred_helpers_and_creds_store() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "acr",
            "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"<token>\\\",\\\"Secret\\\":\\\"rt-$server\\\"}\"\n",
        );
        helper(
            dir.path(),
            "store",
            "#!/bin/sh\nread server\nif [ \"$server\" = \"https://index.docker.io/v1/\" ]; then echo '{\"Username\":\"hub\",\"Secret\":\"hubpw\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        );
        helper(dir.path(), "broken", "#!/bin/sh\necho 'boom'\nexit 3\n");
        let c = cfg(r#"{"credHelpers": {"myacr.azurecr.io": "acr", "bad.io": "broken"}, "credsStore": "store"}"#)
            .with_helper_dir(dir.path());
        assert_eq!(
            c.credential("myacr.azurecr.io").unwrap(),
            Credential::IdentityToken(Secret::new("rt-myacr.azurecr.io"))
        );
        assert_eq!(
            c.credential("docker.io").unwrap(),
            Credential::basic("hub", "hubpw")
        );
        assert!(c.credential("elsewhere.io").unwrap().is_anonymous());
        let err = c.credential("bad.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-broken") && err.contains("bad.io"),
            "{err}"
        );
        let missing = cfg(r#"{"credsStore": "nope"}"#).with_helper_dir(dir.path());
        assert!(missing.credential("x.io").is_err());
    }

    #[test]
    fn docker_config_env_points_at_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"env.example": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        // The only test that reads DOCKER_CONFIG.
        std::env::set_var("DOCKER_CONFIG", dir.path());
        let c = DockerConfig::discover().unwrap();
        assert_eq!(
            c.credential("env.example").unwrap(),
            Credential::basic("u", "p")
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let c = DockerConfig::load_or_empty(Path::new("/nonexistent/config.json")).unwrap();
        assert!(c.credential("docker.io").unwrap().is_anonymous());
    }
}
