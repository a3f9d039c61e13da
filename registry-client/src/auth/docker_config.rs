//! The auth files `docker login`, `podman login` and `skopeo login` write,
//! and what they say about each registry.
//!
//! One file ([`DockerConfig`]) holds `auths` (with `auth`,
//! `username`/`password`, `identitytoken`, `registrytoken`), `credHelpers`
//! and `credsStore`, which run `docker-credential-<name> get`; podman's
//! `auth.json` is the same format. [`AuthFiles`] is the list of them read in
//! the order containers/image (podman, skopeo, buildah) reads them: an
//! explicit `--authfile` or `$REGISTRY_AUTH_FILE` alone, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/…`), docker's
//! `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`) and the legacy
//! `~/.dockercfg`; the first file that holds the registry wins.
//!
//! A helper is another program, and may hang (a keychain waiting for an
//! unlock nobody will give) or print without end. It gets
//! [`DEFAULT_HELPER_TIMEOUT`] (or what `MIRROR_CREDENTIAL_HELPER_TIMEOUT`
//! says) to answer and is killed after it; it may print at most
//! [`MAX_HELPER_OUTPUT`] bytes. What it prints is never shown in an error
//! when it could be the secret, and neither is a file's value that does not
//! parse.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::{Credential, CredentialStore};
use crate::error::Error;
use crate::secret::Secret;

/// How long a credential helper may take to answer, unless
/// [`HELPER_TIMEOUT_ENV`] or [`DockerConfig::with_helper_timeout`] says.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The variable that sets how long credential helpers may take: `30s`,
/// `500ms`, `2m`, or a number of seconds.
pub const HELPER_TIMEOUT_ENV: &str = "MIRROR_CREDENTIAL_HELPER_TIMEOUT";
/// The most a credential helper may print (an answer is a few hundred bytes).
pub const MAX_HELPER_OUTPUT: u64 = 1024 * 1024;
/// The largest auth file read: real ones are a few KiB.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;
/// The variable podman and skopeo read as the default of `--authfile`.
pub const REGISTRY_AUTH_FILE_ENV: &str = "REGISTRY_AUTH_FILE";
/// How much of a failing helper's message an error repeats.
const MAX_SHOWN: usize = 200;

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

/// How an auth file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileFormat {
    /// `{"auths": {…}, "credHelpers": {…}, "credsStore": "…"}`: docker's
    /// `config.json` and podman's `auth.json`.
    #[default]
    Config,
    /// `{"HOST": {"auth": "…", "email": "…"}}`: docker's old `~/.dockercfg`.
    Legacy,
}

/// One auth file, loaded. Credential helpers run when asked, not at load.
#[derive(Debug, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    file: File,
    /// Where to find `docker-credential-*` programs; `None` means `PATH`.
    helper_dir: Option<PathBuf>,
    /// How long a helper may take; `None`: [`HELPER_TIMEOUT_ENV`], else
    /// [`DEFAULT_HELPER_TIMEOUT`].
    helper_timeout: Option<Duration>,
}

impl DockerConfig {
    /// The config docker alone would use: `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`. A missing file is an empty config.
    /// (Commands read every auth file: see [`AuthFiles::discover`].)
    pub fn discover() -> Result<Self, Error> {
        match docker_config_path(&|name| std::env::var_os(name)) {
            Some(p) => Self::load_or_empty(&p),
            None => Ok(DockerConfig::default()),
        }
    }

    /// The config at `path` (links followed: a mounted secret is one), at
    /// most [`MAX_CONFIG_SIZE`] bytes of a regular file; none there is an
    /// empty config.
    pub fn load_or_empty(path: &Path) -> Result<Self, Error> {
        Ok(Self::load(path, FileFormat::Config)?.unwrap_or_default())
    }

    /// The auth file at `path` in `format`, read as
    /// [`DockerConfig::load_or_empty`] reads it; `None` when there is none.
    pub fn load(path: &Path, format: FileFormat) -> Result<Option<Self>, Error> {
        let ctx = || format!("reading auth file {}", path.display());
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(Error::config(
                    format!("auth file {}", path.display()),
                    "is not a regular file",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(ctx(), e)),
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_SIZE + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::io(ctx(), e))?;
        if bytes.len() as u64 > MAX_CONFIG_SIZE {
            return Err(Error::config(
                format!("auth file {}", path.display()),
                format!("is larger than {MAX_CONFIG_SIZE} bytes"),
            ));
        }
        Self::parse_as(path, &bytes, format).map(Some)
    }

    /// `bytes` as a `config.json` (or `auth.json`) read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, Error> {
        Self::parse_as(path, bytes, FileFormat::Config)
    }

    /// `bytes` as an auth file in `format` read from `path`. An error names
    /// the file, the line and the column, never the value found there (it
    /// may be the secret).
    pub fn parse_as(path: &Path, bytes: &[u8], format: FileFormat) -> Result<Self, Error> {
        let invalid = |e: serde_json::Error| {
            Error::config(format!("auth file {}", path.display()), not_json(&e))
        };
        let file = match format {
            FileFormat::Config => serde_json::from_slice::<File>(bytes).map_err(invalid)?,
            FileFormat::Legacy => File {
                auths: serde_json::from_slice(bytes).map_err(invalid)?,
                ..File::default()
            },
        };
        Ok(DockerConfig {
            path: Some(path.to_path_buf()),
            file,
            helper_dir: None,
            helper_timeout: None,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Look for credential helpers in `dir` instead of on `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// Give credential helpers `timeout` to answer (instead of
    /// [`HELPER_TIMEOUT_ENV`] or [`DEFAULT_HELPER_TIMEOUT`]).
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = Some(timeout);
        self
    }

    fn helper_timeout(&self) -> Result<Duration, Error> {
        if let Some(t) = self.helper_timeout {
            return Ok(t);
        }
        match std::env::var(HELPER_TIMEOUT_ENV) {
            Ok(v) if !v.trim().is_empty() => parse_timeout(&v).ok_or_else(|| {
                Error::config(
                    HELPER_TIMEOUT_ENV,
                    format!("{v:?} is not a time greater than zero (say 30s, 500ms, 2m or 45)"),
                )
            }),
            _ => Ok(DEFAULT_HELPER_TIMEOUT),
        }
    }

    fn context(&self) -> String {
        match &self.path {
            Some(p) => format!("auth file {}", p.display()),
            None => "auth file".into(),
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
        let timeout = self.helper_timeout()?;
        let out = run_bounded(&path, &server, timeout).map_err(|e| match e {
            HelperError::Io(e) => Error::io(ctx(), e),
            HelperError::TimedOut => Error::config(
                ctx(),
                format!(
                    "gave no answer within {}; it was stopped. {HELPER_TIMEOUT_ENV} sets how long helpers may take (default {}s)",
                    show_duration(timeout),
                    DEFAULT_HELPER_TIMEOUT.as_secs()
                ),
            ),
            HelperError::TooLong => Error::config(
                ctx(),
                format!("printed more than {MAX_HELPER_OUTPUT} bytes; it was stopped"),
            ),
        })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stdout);
            if msg.contains("credentials not found") {
                return Ok(Credential::Anonymous);
            }
            // The helper's words can be long; its stderr is not shown since
            // some helpers echo their input there, and what looks like an
            // answer is not shown since it may hold the secret.
            return Err(Error::config(
                ctx(),
                format!("failed ({}){}", out.status, shown(&msg)),
            ));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        // serde's message can quote the value it did not expect (the
        // secret itself): only where and what kind of error is shown.
        let a: Answer = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::config(
                ctx(),
                format!(
                    "answered something that is not a credential helper's JSON ({} at line {} column {}; the answer is not shown, as it may hold the secret)",
                    match e.classify() {
                        serde_json::error::Category::Io => "unreadable",
                        serde_json::error::Category::Syntax => "not JSON",
                        serde_json::error::Category::Data => "wrong fields",
                        serde_json::error::Category::Eof => "cut short",
                    },
                    e.line(),
                    e.column()
                ),
            )
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

/// One place an auth file may be, in the search order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPath {
    /// The file.
    pub path: PathBuf,
    /// Its layout.
    pub format: FileFormat,
}

/// Every auth file a command reads, in order. The first file that holds a
/// registry answers for it (a file holds a registry when its
/// `credHelpers`, `auths` or `credsStore` give a credential for it), as
/// containers/image reads them; files after it are not asked.
#[derive(Debug, Default)]
pub struct AuthFiles {
    files: Vec<DockerConfig>,
}

impl AuthFiles {
    /// The files podman and skopeo read, then docker's, found through this
    /// process's environment: `$REGISTRY_AUTH_FILE` alone when it is set,
    /// else every file of [`search_paths`] that exists.
    pub fn discover() -> Result<Self, Error> {
        Self::discover_with(&|name| std::env::var_os(name))
    }

    /// [`AuthFiles::discover`] with the environment `env` gives.
    pub fn discover_with(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Self, Error> {
        if let Some(p) = env(REGISTRY_AUTH_FILE_ENV).filter(|v| !v.is_empty()) {
            return Self::only_from(Path::new(&p), "$REGISTRY_AUTH_FILE");
        }
        let mut files = Vec::new();
        for p in search_paths(env) {
            if let Some(c) = DockerConfig::load(&p.path, p.format)? {
                files.push(c);
            }
        }
        Ok(AuthFiles { files })
    }

    /// Only the file at `path`, as `--authfile PATH` asks: podman and
    /// skopeo read no other then. It must exist (podman refuses a missing
    /// one too: a mistyped path would otherwise mean no login).
    pub fn only(path: &Path) -> Result<Self, Error> {
        Self::only_from(path, "--authfile")
    }

    fn only_from(path: &Path, given_by: &str) -> Result<Self, Error> {
        match DockerConfig::load(path, FileFormat::Config)? {
            Some(c) => Ok(AuthFiles { files: vec![c] }),
            None => Err(Error::config(
                format!("auth file {} (from {given_by})", path.display()),
                "does not exist (`podman login --authfile PATH HOST` writes one)",
            )),
        }
    }

    /// [`AuthFiles::only`] `path` when one is named, else
    /// [`AuthFiles::discover`].
    pub fn named_or_discovered(path: Option<&Path>) -> Result<Self, Error> {
        match path {
            Some(p) => Self::only(p),
            None => Self::discover(),
        }
    }

    /// These loaded files, in order.
    pub fn from_files(files: Vec<DockerConfig>) -> Self {
        AuthFiles { files }
    }

    /// The files read, in the order they are asked.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().filter_map(DockerConfig::path).collect()
    }

    /// Look for credential helpers in `dir` instead of on `PATH`.
    pub fn with_helper_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        AuthFiles {
            files: self
                .files
                .into_iter()
                .map(|f| f.with_helper_dir(dir.clone()))
                .collect(),
        }
    }
}

impl CredentialStore for AuthFiles {
    fn credential(&self, registry: &str) -> Result<Credential, Error> {
        for file in &self.files {
            let c = file.credential(registry)?;
            if !c.is_anonymous() {
                tracing::debug!(registry, file = %file.context(), "credentials found");
                return Ok(c);
            }
        }
        Ok(Credential::Anonymous)
    }
}

/// Where auth files are read when none is named, in the order
/// containers/image reads them (`pkg/docker/config`, `getAuthFilePaths`):
/// `$XDG_RUNTIME_DIR/containers/auth.json` (where `podman login` writes;
/// `/run/containers/$UID/auth.json` without the variable),
/// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/…`),
/// `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`, where `docker
/// login` and `az acr login` write) and `~/.dockercfg`. (Its
/// `/etc/containers/auth.json`, read by root under systemd, is left out.)
pub fn search_paths(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<AuthPath> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    let config = |path: PathBuf| AuthPath {
        path,
        format: FileFormat::Config,
    };
    let mut out = Vec::new();
    match var("XDG_RUNTIME_DIR") {
        Some(dir) => out.push(config(dir.join("containers/auth.json"))),
        None => {
            if let Some(uid) = user_id() {
                out.push(config(PathBuf::from(format!(
                    "/run/containers/{uid}/auth.json"
                ))));
            }
        }
    }
    if let Some(dir) = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        out.push(config(dir.join("containers/auth.json")));
    }
    if let Some(p) = docker_config_path(env) {
        out.push(config(p));
    }
    if let Some(h) = &home {
        out.push(AuthPath {
            path: h.join(".dockercfg"),
            format: FileFormat::Legacy,
        });
    }
    out
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("DOCKER_CONFIG")
        .or_else(|| var("HOME").map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"))
}

/// This process's user id (the owner of `/proc/self`), for podman's
/// per-user path.
fn user_id() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    None
}

/// Why a file is not the JSON it should be, as much as is safe to show:
/// serde's message for a value of the wrong type quotes the value, which
/// may be the secret, so only its position is given then.
fn not_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Syntax => return format!("not valid JSON: {e}"),
        Category::Data => "a value of the wrong type or shape (not shown: it may be a secret)",
        Category::Eof => "cut short",
        Category::Io => "unreadable",
    };
    format!(
        "not valid: {kind} at line {} column {}",
        e.line(),
        e.column()
    )
}

/// What a helper printed, as much as is safe to repeat in an error.
struct HelperOutput {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
}

enum HelperError {
    Io(std::io::Error),
    TimedOut,
    TooLong,
}

/// Run `program get` with `server` on its standard input; its standard
/// output (at most [`MAX_HELPER_OUTPUT`] bytes) and exit status within
/// `timeout`, else the child is killed.
fn run_bounded(
    program: &Path,
    server: &str,
    timeout: Duration,
) -> Result<HelperOutput, HelperError> {
    let deadline = Instant::now() + timeout;
    let child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Not shown (some helpers echo their input there), so not kept:
        // an unread pipe would stall a helper that writes much there.
        .stderr(Stdio::null())
        .spawn()
        .map_err(HelperError::Io)?;
    // Killed and reaped on every way out but a clean exit.
    let mut running = Running { child, done: false };
    let stdin = running.child.stdin.take();
    let stdout = running.child.stdout.take();
    if let Some(mut stdin) = stdin {
        // A helper that exits without reading its input is answered by
        // its exit status, not by a broken pipe here.
        match stdin.write_all(server.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(HelperError::Io(e)),
            _ => {}
        }
    }
    let Some(stdout) = stdout else {
        return Err(HelperError::Io(std::io::Error::other("no standard output")));
    };
    // Read on a thread, so the deadline holds even when the helper (or a
    // program it started, holding the pipe) never closes it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let read = stdout
            .take(MAX_HELPER_OUTPUT + 1)
            .read_to_end(&mut buf)
            .map(|_| buf);
        let _ = tx.send(read);
    });
    let stdout = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return Err(HelperError::Io(e)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(HelperError::TimedOut),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err(HelperError::Io(std::io::Error::other(
                "reading its output failed",
            )))
        }
    };
    if stdout.len() as u64 > MAX_HELPER_OUTPUT {
        return Err(HelperError::TooLong);
    }
    // Output closed: the exit is near, but a helper may still hang.
    loop {
        match running.child.try_wait().map_err(HelperError::Io)? {
            Some(status) => {
                running.done = true;
                return Ok(HelperOutput { status, stdout });
            }
            None if Instant::now() >= deadline => return Err(HelperError::TimedOut),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A helper's process; killed (and reaped) when given up on before it
/// exited.
struct Running {
    child: Child,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `: <message>` from a failing helper: its first line, without control
/// characters, cut to [`MAX_SHOWN`] characters; nothing when it looks like
/// an answer (JSON: it may hold the secret).
fn shown(msg: &str) -> String {
    let line = msg.trim().lines().next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('{') || line.starts_with('[') {
        return String::new();
    }
    let mut clean: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN)
        .collect();
    if line.chars().count() > MAX_SHOWN {
        clean.push('…');
    }
    format!(": {clean}")
}

/// `30s`, `500ms`, `2m` or `45` (seconds); zero is no time.
fn parse_timeout(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
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
    fn a_helper_that_hangs_is_stopped_at_its_timeout_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        helper(dir.path(), "hang", "#!/bin/sh\nexec sleep 600\n");
        // Output closed, but the helper never exits.
        helper(
            dir.path(),
            "linger",
            "#!/bin/sh\nexec 1>&-\nexec sleep 600\n",
        );
        let c = cfg(r#"{"credHelpers": {"a.io": "hang", "b.io": "linger"}}"#)
            .with_helper_dir(dir.path())
            .with_helper_timeout(Duration::from_millis(300));
        for (registry, program) in [
            ("a.io", "docker-credential-hang"),
            ("b.io", "docker-credential-linger"),
        ] {
            let started = Instant::now();
            let err = c.credential(registry).unwrap_err().to_string();
            assert!(started.elapsed() < Duration::from_secs(10), "{err}");
            assert!(
                err.contains(program)
                    && err.contains(registry)
                    && err.contains("within 300ms")
                    && err.contains(HELPER_TIMEOUT_ENV),
                "{err}"
            );
        }
    }

    #[test]
    fn a_helper_that_prints_without_end_is_stopped_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "chatty",
            "#!/bin/sh\nwhile :; do echo 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'; done\n",
        );
        let c = cfg(r#"{"credsStore": "chatty"}"#)
            .with_helper_dir(dir.path())
            .with_helper_timeout(Duration::from_secs(60));
        let started = Instant::now();
        let err = c.credential("x.io").unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(30), "{err}");
        assert!(
            err.contains("docker-credential-chatty")
                && err.contains(&format!("more than {MAX_HELPER_OUTPUT} bytes")),
            "{err}"
        );
        assert!(err.len() < 1000, "the output is not repeated: {err}");
    }

    #[test]
    fn a_helper_answering_garbage_gets_an_error_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        // A string where an object belongs: serde's message quotes it.
        helper(dir.path(), "bare", "#!/bin/sh\necho '\"hunter2-secret\"'\n");
        helper(
            dir.path(),
            "typed",
            "#!/bin/sh\necho '{\"Username\": \"u\", \"Secret\": [\"hunter2-secret\"]}'\n",
        );
        helper(
            dir.path(),
            "cut",
            "#!/bin/sh\nprintf '{\"Username\": \"u\", \"Secret\": \"hunter2-secret'\n",
        );
        // An answer, with a failing status: not repeated either.
        helper(
            dir.path(),
            "failing",
            "#!/bin/sh\necho '{\"Username\": \"u\", \"Secret\": \"hunter2-secret\"}'\nexit 1\n",
        );
        let long = "x".repeat(5000);
        helper(
            dir.path(),
            "wordy",
            &format!("#!/bin/sh\necho 'keychain locked {long}'\nexit 1\n"),
        );
        let c = cfg(r#"{"credHelpers": {"bare.io": "bare", "typed.io": "typed", "cut.io": "cut", "failing.io": "failing", "wordy.io": "wordy"}}"#)
            .with_helper_dir(dir.path());
        for registry in ["bare.io", "typed.io", "cut.io", "failing.io"] {
            let err = c.credential(registry).unwrap_err();
            let msg = format!("{err} {err:?}");
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(msg.contains(registry), "{msg}");
        }
        let err = c.credential("cut.io").unwrap_err().to_string();
        assert!(err.contains("cut short") && err.contains("line 1"), "{err}");
        let err = c.credential("wordy.io").unwrap_err().to_string();
        assert!(err.contains("keychain locked"), "{err}");
        assert!(err.len() < 600, "a long message is cut: {err}");
    }

    #[test]
    fn helper_timeouts_parse_as_users_write_them() {
        assert_eq!(parse_timeout("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout(" 45 "), Some(Duration::from_secs(45)));
        assert_eq!(parse_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "0", "0s", "-1", "1h", "s", "99999999999999999999m"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_docker_config_that_is_not_a_regular_file_or_too_large_is_refused() {
        let err = DockerConfig::load_or_empty(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/zero") && err.contains("not a regular file"),
            "{err}"
        );
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

    /// An environment of these variables alone.
    fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn login(host: &str, user: &str) -> String {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)
    }

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn auth_files_are_searched_in_podman_s_order_then_docker_s() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let run = d.path().join("run");
        let env = env_of(&[("HOME", &home), ("XDG_RUNTIME_DIR", &run)]);
        let paths: Vec<PathBuf> = search_paths(&env).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            vec![
                run.join("containers/auth.json"),
                home.join(".config/containers/auth.json"),
                home.join(".docker/config.json"),
                home.join(".dockercfg"),
            ]
        );
        let cfg = d.path().join("cfg");
        let docker = d.path().join("docker");
        let env = env_of(&[
            ("HOME", &home),
            ("XDG_RUNTIME_DIR", &run),
            ("XDG_CONFIG_HOME", &cfg),
            ("DOCKER_CONFIG", &docker),
        ]);
        let paths: Vec<PathBuf> = search_paths(&env).into_iter().map(|p| p.path).collect();
        assert_eq!(paths[1], cfg.join("containers/auth.json"));
        assert_eq!(paths[2], docker.join("config.json"));
    }

    #[test]
    fn the_first_file_holding_the_registry_wins() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let run = d.path().join("run");
        put(
            &run.join("containers/auth.json"),
            &login("a.io", "from-runtime"),
        );
        put(
            &home.join(".config/containers/auth.json"),
            &login("b.io", "from-config"),
        );
        put(
            &home.join(".docker/config.json"),
            &login("a.io", "from-docker"),
        );
        put(
            &home.join(".dockercfg"),
            &format!(
                r#"{{"c.io": {{"auth": "{}", "email": "x@y"}}}}"#,
                base64::engine::general_purpose::STANDARD.encode("legacy:pw")
            ),
        );
        let files =
            AuthFiles::discover_with(&env_of(&[("HOME", &home), ("XDG_RUNTIME_DIR", &run)]))
                .unwrap();
        assert_eq!(files.paths().len(), 4);
        let user = |r: &str| match files.credential(r).unwrap() {
            Credential::Basic { username, .. } => username,
            other => other.describe(),
        };
        assert_eq!(user("a.io"), "from-runtime");
        assert_eq!(user("b.io"), "from-config");
        assert_eq!(user("c.io"), "legacy");
        assert_eq!(user("d.io"), "anonymous");
    }

    #[test]
    fn registry_auth_file_and_an_authfile_are_read_alone_and_must_exist() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        put(&home.join(".docker/config.json"), &login("a.io", "docker"));
        let named = d.path().join("named.json");
        put(&named, &login("b.io", "named"));
        let env = env_of(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &named)]);
        let files = AuthFiles::discover_with(&env).unwrap();
        assert_eq!(files.paths(), vec![named.as_path()]);
        assert!(files.credential("a.io").unwrap().is_anonymous());
        let files = AuthFiles::only(&named).unwrap();
        assert!(!files.credential("b.io").unwrap().is_anonymous());
        let missing = d.path().join("missing.json");
        let err = AuthFiles::only(&missing).unwrap_err().to_string();
        assert!(
            err.contains(&missing.display().to_string()) && err.contains("--authfile"),
            "{err}"
        );
        let env = env_of(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &missing)]);
        let err = AuthFiles::discover_with(&env).unwrap_err().to_string();
        assert!(err.contains("$REGISTRY_AUTH_FILE"), "{err}");
    }

    #[test]
    fn a_file_that_does_not_parse_is_named_by_line_without_its_values() {
        let bad = br#"{"auths": {"r.io": "hunter2-SECRET"}}"#;
        let err = DockerConfig::parse(Path::new("/x/auth.json"), bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/x/auth.json") && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = DockerConfig::parse_as(
            Path::new("/x/.dockercfg"),
            b"{\n  \"a\": [",
            FileFormat::Legacy,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/x/.dockercfg") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn helpers_work_in_a_containers_auth_file_too() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        put(
            &run.join("containers/auth.json"),
            r#"{"credHelpers": {"h.io": "fixed"}}"#,
        );
        helper(
            d.path(),
            "fixed",
            "#!/bin/sh\necho '{\"Username\":\"helped\",\"Secret\":\"s\"}'\n",
        );
        let files = AuthFiles::discover_with(&env_of(&[("XDG_RUNTIME_DIR", &run)]))
            .unwrap()
            .with_helper_dir(d.path());
        assert_eq!(
            files.credential("h.io").unwrap(),
            Credential::basic("helped", "s")
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let c = DockerConfig::load_or_empty(Path::new("/nonexistent/config.json")).unwrap();
        assert!(c.credential("docker.io").unwrap().is_anonymous());
    }
}
