//! The real CNCF distribution registry (`docker-registry serve`), one process per test.
//!
//! Each instance has its own temporary directory (config, storage, log), listens on a free
//! 127.0.0.1 port, and is killed on drop.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::tls::TestCa;
use crate::token_server::{TokenServer, TokenServerOptions};

/// Environment variable naming the registry binary (default `docker-registry` on `PATH`).
pub const REGISTRY_BIN_ENV: &str = "MIRROR_TEST_REGISTRY_BIN";

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How clients must authenticate to the registry.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    /// Open registry: anyone may pull and push.
    #[default]
    None,
    /// Basic auth against an htpasswd file built from these `(user, password)` pairs.
    Htpasswd(Vec<(String, String)>),
    /// Bearer token auth: the registry challenges with `realm`/`service` and verifies JWTs
    /// signed by a certificate in `root_cert_bundle_path` and issued by `issuer`.
    /// [`TokenServer::registry_auth`] fills this in.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle_path: PathBuf,
    },
}

/// How to start a [`Registry`].
#[derive(Default)]
pub struct RegistryOptions<'a> {
    pub auth: RegistryAuth,
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost` issued by this CA.
    pub tls: Option<&'a TestCa>,
    /// Accept manifests whose layers carry `urls` (foreign layers), which 2.8 refuses by
    /// default (`validation.manifests.urls.allow: ['^https?://']`).
    pub allow_foreign_layer_urls: bool,
}

/// One line of the registry's access log (Apache combined format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub method: String,
    /// The request URI as sent: path and query.
    pub uri: String,
    pub status: u16,
    /// Response body bytes written.
    pub bytes: u64,
}

/// A running `docker-registry`. Dropping it kills the process and removes its storage.
pub struct Registry {
    // First: the process dies before its directory is removed.
    child: ChildGuard,
    port: u16,
    https: bool,
    log_path: PathBuf,
    storage_dir: PathBuf,
    _dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers (200, or 401 with auth).
    pub async fn start(opts: RegistryOptions<'_>) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("mirror-test-registry")
            .tempdir()?;
        let storage_dir = dir.path().join("storage");
        std::fs::create_dir(&storage_dir)?;
        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let auth = auth_config(&opts.auth, dir.path())?;
        let tls = match opts.tls {
            Some(ca) => {
                let (cert, key) = ca.issue_server_cert(&["127.0.0.1", "localhost"])?;
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    quote(&cert),
                    quote(&key)
                )
            }
            None => String::new(),
        };
        let validation = if opts.allow_foreign_layer_urls {
            "validation:\n  manifests:\n    urls:\n      allow:\n        - '^https?://'\n"
        } else {
            ""
        };

        // The port is chosen before the registry binds it; if someone takes it meanwhile,
        // try another.
        let https = opts.tls.is_some();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = crate::free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n{tls}\
                 {auth}{validation}",
                storage = quote(&storage_dir),
                secret = quote(format!("{:032x}", rand::random::<u128>())),
            );
            std::fs::write(&config_path, config)?;
            std::fs::write(&log_path, "")?;
            let mut child = spawn(&config_path, &log_path)?;
            let base_url = base_url(https, port);
            match wait_ready(&mut child, &base_url, opts.tls, &log_path).await {
                Ok(()) => {
                    return Ok(Registry {
                        child,
                        port,
                        https,
                        log_path,
                        storage_dir,
                        _dir: dir,
                    })
                }
                Err(e) if attempt < 3 && read_log(&log_path).contains("address already in use") => {
                    tracing::warn!(port, error = %e, "registry port taken, retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An open registry over plain HTTP.
    pub async fn start_open() -> anyhow::Result<Registry> {
        Self::start(RegistryOptions::default()).await
    }

    /// A registry with htpasswd basic auth for these users.
    pub async fn start_htpasswd(users: &[(&str, &str)]) -> anyhow::Result<Registry> {
        let users = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Self::start(RegistryOptions {
            auth: RegistryAuth::Htpasswd(users),
            ..Default::default()
        })
        .await
    }

    /// A [`TokenServer`] and a registry that trusts it (`opts.auth` is replaced).
    pub async fn start_with_token_auth(
        opts: RegistryOptions<'_>,
        token: TokenServerOptions,
    ) -> anyhow::Result<(Registry, TokenServer)> {
        let token_server = TokenServer::start(token).await?;
        let registry = Self::start(RegistryOptions {
            auth: token_server.registry_auth(),
            ..opts
        })
        .await?;
        Ok((registry, token_server))
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id, for tests that stop (`SIGSTOP`) or kill the registry mid-transfer.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `http://127.0.0.1:PORT`, or `https://` when started with TLS.
    pub fn base_url(&self) -> String {
        base_url(self.https, self.port)
    }

    /// The filesystem driver's root directory (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> &Path {
        &self.storage_dir
    }

    /// Path of the combined stdout/stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the registry printed so far (application log and access log).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The access log so far, one entry per answered request, oldest first.
    ///
    /// The registry writes a request's line when its handler returns, before the last
    /// buffered response bytes are flushed, so a request whose response the client has
    /// fully read is already here.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// How many requests with this method (case-insensitive) whose URI (path and query)
    /// contains `path_substring` the registry answered so far.
    pub fn count_requests(&self, method: &str, path_substring: &str) -> usize {
        self.matching(method, path_substring).count()
    }

    /// Response body bytes the registry sent for matching requests (see [`count_requests`]).
    ///
    /// [`count_requests`]: Registry::count_requests
    pub fn response_bytes(&self, method: &str, path_substring: &str) -> u64 {
        self.matching(method, path_substring).map(|e| e.bytes).sum()
    }

    /// Panics if the registry was asked to store anything (a `PUT` or `POST`
    /// under `/v2/`): for tests where a refusal must come before any write.
    #[track_caller]
    pub fn assert_nothing_written(&self) {
        assert_eq!(self.count_requests("PUT", "/v2/"), 0);
        assert_eq!(self.count_requests("POST", "/v2/"), 0);
    }

    fn matching<'a>(
        &self,
        method: &'a str,
        path_substring: &'a str,
    ) -> impl Iterator<Item = AccessLogEntry> + 'a {
        self.access_log().into_iter().filter(move |e| {
            e.method.eq_ignore_ascii_case(method) && e.uri.contains(path_substring)
        })
    }
}

fn base_url(https: bool, port: u16) -> String {
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let log = read_log(path);
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `GET /v2/` until it answers 200 or 401; fails early if the process exits.
async fn wait_ready(
    child: &mut ChildGuard,
    base_url: &str,
    ca: Option<&TestCa>,
    log_path: &Path,
) -> anyhow::Result<()> {
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2));
    if let Some(ca) = ca {
        client = client
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.reqwest_certificate());
    }
    let client = client.build()?;
    let url = format!("{base_url}/v2/");
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "docker-registry exited early ({status}); log tail:\n{}",
                log_tail(log_path, 30)
            );
        }
        match client.get(&url).send().await {
            Ok(r) if matches!(r.status().as_u16(), 200 | 401) => return Ok(()),
            Ok(r) => last_error = format!("GET /v2/ answered {}", r.status()),
            Err(e) => last_error = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!(
        "docker-registry not ready at {url} after {READY_TIMEOUT:?} ({last_error}); log tail:\n{}",
        log_tail(log_path, 30)
    )
}

/// The registry process; killed and reaped on drop so no test leaves one behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path, log_path: &Path) -> anyhow::Result<ChildGuard> {
    let bin = std::env::var_os(REGISTRY_BIN_ENV).unwrap_or_else(|| "docker-registry".into());
    let log: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // REGISTRY_* variables override the config file: keep the caller's out.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "starting {} (install with `apt-get install -y docker-registry`, or set {REGISTRY_BIN_ENV})",
            bin.to_string_lossy()
        )
    })?;
    Ok(ChildGuard(child))
}

fn auth_config(auth: &RegistryAuth, dir: &Path) -> anyhow::Result<String> {
    Ok(match auth {
        RegistryAuth::None => String::new(),
        RegistryAuth::Htpasswd(users) => {
            let path = dir.join("htpasswd");
            let mut file = String::new();
            for (user, password) in users {
                // Cost 4: the registry accepts any cost, and it checks on every request.
                file.push_str(&format!("{user}:{}\n", bcrypt::hash(password, 4)?));
            }
            std::fs::write(&path, file)?;
            format!(
                "auth:\n  htpasswd:\n    realm: mirror-test\n    path: {}\n",
                quote(&path)
            )
        }
        RegistryAuth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle_path,
        } => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            quote(realm),
            quote(service),
            quote(issuer),
            quote(root_cert_bundle_path)
        ),
    })
}

/// A YAML scalar: JSON string syntax is valid YAML, and escapes whatever the value holds.
fn quote(value: impl AsRef<std::ffi::OsStr>) -> String {
    serde_json::Value::String(value.as_ref().to_string_lossy().into_owned()).to_string()
}

/// Parses `127.0.0.1 - - [27/Nov/2026:17:19:31 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
/// The registry's other lines (`time="…" level=info msg="response completed" …`) yield `None`.
fn parse_access_line(line: &str) -> Option<AccessLogEntry> {
    let open = line.find("] \"")?;
    if line[..open].contains('=') {
        return None;
    }
    let rest = &line[open + 3..];
    let close = rest.find("\" ")?;
    let request = &rest[..close];
    let method = request.split(' ').next()?;
    let uri = request[method.len()..].trim_start();
    // The protocol is the last word; the URI may not contain spaces but be defensive.
    let uri = uri.rsplit_once(' ').map_or(uri, |(u, _)| u);
    let mut fields = rest[close + 2..].split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    Some(AccessLogEntry {
        method: method.to_string(),
        uri: uri.to_string(),
        status,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_lines() {
        let line = r#"127.0.0.1 - - [27/Nov/2026:17:19:43 +0000] "POST /v2/o/blobs/uploads/?mount=sha256:01&from=t HTTP/1.1" 202 0 "" "curl/7.88.1""#;
        assert_eq!(
            parse_access_line(line),
            Some(AccessLogEntry {
                method: "POST".into(),
                uri: "/v2/o/blobs/uploads/?mount=sha256:01&from=t".into(),
                status: 202,
                bytes: 0,
            })
        );
        let app = r#"time="2026-11-27T17:19:43Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/ http.response.status=200"#;
        assert_eq!(parse_access_line(app), None);
        let dash =
            r#"127.0.0.1 - alice [27/Nov/2026:17:19:43 +0000] "HEAD /v2/ HTTP/1.1" 401 - "" "x""#;
        assert_eq!(
            parse_access_line(dash).map(|e| (e.status, e.bytes)),
            Some((401, 0))
        );
    }
}
