//! A real forward proxy, Debian's `tinyproxy`, one process per test: its own
//! config file and log in a temporary directory, listening on a free
//! 127.0.0.1 port, killed on drop.
//!
//! tinyproxy closes the client connection after every forwarded answer
//! without saying `Connection: close`, refuses with 403 what its filter
//! denies, answers 407 without the right BasicAuth, and closes connections
//! idle for longer than its `Timeout`: the faults a corporate proxy shows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

/// How to start a [`Tinyproxy`].
#[derive(Clone, Debug, Default)]
pub struct TinyproxyOptions {
    /// Ask clients for these credentials (`BasicAuth user password`): a
    /// request without them gets 407.
    pub basic_auth: Option<(String, String)>,
    /// Refuse every destination (an empty filter with `FilterDefaultDeny
    /// Yes`): each request, CONNECT included, is answered 403.
    pub deny_all: bool,
    /// Close a connection idle this long (`Timeout`, whole seconds; the
    /// default is 600).
    pub idle_timeout: Option<Duration>,
}

/// One request the proxy logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// `GET`, `PUT`, `CONNECT`, ...
    pub method: String,
    /// The request target as sent: `http://host:port/path` or, for
    /// CONNECT, `host:port`.
    pub target: String,
}

/// A running tinyproxy. Dropping it kills the process and removes its files.
pub struct Tinyproxy {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Tinyproxy {
    /// Starts tinyproxy and waits until it accepts connections.
    pub async fn start(opts: TinyproxyOptions) -> anyhow::Result<Tinyproxy> {
        let mut last = None;
        // The port is found free, then bound by tinyproxy: another process
        // may take it in between, so try a few.
        for _ in 0..5 {
            match Self::try_start(&opts).await {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    /// An open proxy with tinyproxy's defaults.
    pub async fn start_open() -> anyhow::Result<Tinyproxy> {
        Self::start(TinyproxyOptions::default()).await
    }

    async fn try_start(opts: &TinyproxyOptions) -> anyhow::Result<Tinyproxy> {
        let dir = tempfile::Builder::new()
            .prefix("mirror-test-tinyproxy")
            .tempdir()?;
        let port = crate::free_port();
        let log_path = dir.path().join("tinyproxy.log");
        let timeout = opts.idle_timeout.map_or(600, |t| t.as_secs().max(1));
        let mut conf = String::new();
        writeln!(conf, "Port {port}")?;
        writeln!(conf, "Listen 127.0.0.1")?;
        writeln!(conf, "Timeout {timeout}")?;
        writeln!(conf, "LogFile \"{}\"", log_path.display())?;
        // Info: each request line is logged (as CONNECT-level lines).
        writeln!(conf, "LogLevel Info")?;
        writeln!(conf, "MaxClients 200")?;
        writeln!(conf, "Allow 127.0.0.1")?;
        if let Some((user, password)) = &opts.basic_auth {
            writeln!(conf, "BasicAuth {user} {password}")?;
        }
        if opts.deny_all {
            let filter = dir.path().join("filter");
            std::fs::write(&filter, "")?;
            writeln!(conf, "Filter \"{}\"", filter.display())?;
            writeln!(conf, "FilterDefaultDeny Yes")?;
            // Filter the whole URL, so plain-HTTP requests are refused too.
            writeln!(conf, "FilterURLs On")?;
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf)?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting tinyproxy (apt-get install tinyproxy)")?;
        let mut proxy = Tinyproxy {
            child,
            port,
            log_path,
            _dir: dir,
        };
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tinyproxy exited early ({status}); log:\n{}",
                    read(&self.log_path)
                );
            }
            if self.log().contains("Starting main loop")
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("tinyproxy did not start; log:\n{}", read(&self.log_path))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, the value for `--proxy` or `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.host())
    }

    /// Everything tinyproxy logged so far.
    pub fn log(&self) -> String {
        read(&self.log_path)
    }

    /// The log file, to show when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every request the proxy was sent so far, oldest first (CONNECT
    /// included; refused ones too).
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        // `CONNECT   Dec 02 14:49:55.639 [11035]: Request (file descriptor 5): GET http://h/p HTTP/1.1`
        self.log()
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once("]: Request (file descriptor ")?;
                let (_, line) = rest.split_once("): ")?;
                let mut parts = line.split(' ');
                Some(ProxiedRequest {
                    method: parts.next()?.to_string(),
                    target: parts.next()?.to_string(),
                })
            })
            .collect()
    }

    /// How many requests with this method had a target containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.target.contains(part))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
