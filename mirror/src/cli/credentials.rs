//! Who mirror is at each registry, as the command line says: a user name
//! with its password from an environment variable or standard input, a
//! bearer token from a variable, an auth file, for the source side
//! (`--src-*`) and the destination side (`--dest-*`), named as skopeo names
//! them. A password or token is never an argument: arguments show in `ps`
//! and in shell history, so skopeo's `--src-password`, `--src-creds
//! USER:PASSWORD` and `--src-registry-token TOKEN` are refused with a word
//! on what to write instead.
//!
//! A side's login goes to that side's registries only: the source's is
//! never sent to a destination host, nor the destination's to a source
//! host. Registries without one given are asked of the auth files (see
//! `registry_client::auth::docker_config`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use registry_client::auth::AuthFiles;
use registry_client::{
    Credential, CredentialChain, CredentialStore, ErrorKind, Secret, StaticCredentials,
};

use super::error::{login_hint, Failure};
use super::out::say;
use mirror::report::RunReport;

/// A secret from `$VAR` or standard input, or `None` when neither is asked.
/// The one reader of secrets the command line has; callers let at most one
/// `--*-password-stdin` through (standard input holds one line for one).
pub fn secret(
    env: Option<&str>,
    from_stdin: bool,
    stdin_flag: &str,
) -> Result<Option<Secret>, String> {
    if from_stdin {
        return Credential::read_secret(std::io::stdin().lock())
            .map(Some)
            .map_err(|e| format!("{stdin_flag}: {e}"));
    }
    match env {
        None => Ok(None),
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
            _ => Err(format!("${var} is not set")),
        },
    }
}

/// How mirror logs in to the source registries (`copy`, `export`).
#[derive(Debug, Args, Clone, Default)]
pub struct SrcLogin {
    /// Log in to the source registries as this user (the password from
    /// --src-password-env or --src-password-stdin).
    #[arg(long, value_name = "NAME", conflicts_with = "src_registry_token_env")]
    src_username: Option<String>,
    /// Read the source password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "src_username",
        conflicts_with = "src_password_stdin"
    )]
    src_password_env: Option<String>,
    /// Read the source password from the first line of standard input.
    #[arg(long, requires = "src_username")]
    src_password_stdin: bool,
    /// Send the bearer token in this environment variable to the source
    /// registries as it is (`Authorization: Bearer`, as skopeo's
    /// --src-registry-token sends it).
    #[arg(long, value_name = "VAR")]
    src_registry_token_env: Option<String>,
    /// Read the source registries' logins from this auth file alone
    /// (podman's auth.json or docker's config.json).
    #[arg(long, value_name = "PATH")]
    src_authfile: Option<PathBuf>,
    /// skopeo's `USER[:PASSWORD]`: the user alone is taken; a password is
    /// refused.
    #[arg(
        long,
        value_name = "USER",
        hide = true,
        conflicts_with = "src_username"
    )]
    src_creds: Option<String>,
    /// Refused: a password is never an argument.
    #[arg(long, value_name = "PASSWORD", hide = true)]
    src_password: Option<String>,
    /// Refused: a token is never an argument.
    #[arg(long, value_name = "TOKEN", hide = true)]
    src_registry_token: Option<String>,
}

/// How mirror logs in to the destination registries (`copy`, `import`).
#[derive(Debug, Args, Clone, Default)]
pub struct DestLogin {
    /// Log in to the destination registries as this user (the password
    /// from --dest-password-env or --dest-password-stdin).
    #[arg(long, value_name = "NAME", conflicts_with = "dest_registry_token_env")]
    dest_username: Option<String>,
    /// Read the destination password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "dest_username",
        conflicts_with = "dest_password_stdin"
    )]
    dest_password_env: Option<String>,
    /// Read the destination password from the first line of standard input.
    #[arg(long, requires = "dest_username")]
    dest_password_stdin: bool,
    /// Send the bearer token in this environment variable to the
    /// destination registries as it is (`Authorization: Bearer`).
    #[arg(long, value_name = "VAR")]
    dest_registry_token_env: Option<String>,
    /// Read the destination registries' logins from this auth file alone.
    #[arg(long, value_name = "PATH")]
    dest_authfile: Option<PathBuf>,
    /// skopeo's `USER[:PASSWORD]`: the user alone is taken; a password is
    /// refused.
    #[arg(
        long,
        value_name = "USER",
        hide = true,
        conflicts_with = "dest_username"
    )]
    dest_creds: Option<String>,
    /// Refused: a password is never an argument.
    #[arg(long, value_name = "PASSWORD", hide = true)]
    dest_password: Option<String>,
    /// Refused: a token is never an argument.
    #[arg(long, value_name = "TOKEN", hide = true)]
    dest_registry_token: Option<String>,
}

/// `--authfile`: one auth file for every registry of the run.
#[derive(Debug, Args, Clone, Default)]
pub struct AuthFileArg {
    /// Read registry logins from this auth file alone (podman's auth.json
    /// or docker's config.json), as podman and skopeo do. Default:
    /// $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.config/containers/auth.json and docker's config.json, the first
    /// holding a registry winning.
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
}

/// One side's flags, whichever side: what [`SrcLogin`] and [`DestLogin`]
/// hold, with the prefix their names carry.
struct SideFlags<'a> {
    prefix: &'static str,
    username: Option<&'a str>,
    password_env: Option<&'a str>,
    password_stdin: bool,
    token_env: Option<&'a str>,
    authfile: Option<&'a Path>,
    creds: Option<&'a str>,
    password_given: bool,
    token_given: bool,
}

impl SrcLogin {
    fn flags(&self) -> SideFlags<'_> {
        SideFlags {
            prefix: "src",
            username: self.src_username.as_deref(),
            password_env: self.src_password_env.as_deref(),
            password_stdin: self.src_password_stdin,
            token_env: self.src_registry_token_env.as_deref(),
            authfile: self.src_authfile.as_deref(),
            creds: self.src_creds.as_deref(),
            password_given: self.src_password.is_some(),
            token_given: self.src_registry_token.is_some(),
        }
    }
}

impl DestLogin {
    fn flags(&self) -> SideFlags<'_> {
        SideFlags {
            prefix: "dest",
            username: self.dest_username.as_deref(),
            password_env: self.dest_password_env.as_deref(),
            password_stdin: self.dest_password_stdin,
            token_env: self.dest_registry_token_env.as_deref(),
            authfile: self.dest_authfile.as_deref(),
            creds: self.dest_creds.as_deref(),
            password_given: self.dest_password.is_some(),
            token_given: self.dest_registry_token.is_some(),
        }
    }
}

/// Which side of a run a registry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// One side's login, read.
#[derive(Debug)]
struct SideLogin {
    prefix: &'static str,
    credential: Option<Credential>,
    authfile: Option<PathBuf>,
}

/// The run's logins, read (secrets and all): which credential and auth
/// file each side's registries get.
#[derive(Debug)]
pub struct Logins {
    source: Option<SideLogin>,
    destination: Option<SideLogin>,
    authfile: Option<PathBuf>,
}

impl Logins {
    /// Read the logins the flags give: the secrets from their variables or
    /// standard input (once: two sides cannot both read it), refusing a
    /// password or token written as an argument.
    pub fn read(
        source: Option<&SrcLogin>,
        destination: Option<&DestLogin>,
        authfile: &AuthFileArg,
    ) -> Result<Self, Failure> {
        let src = source.map(SrcLogin::flags);
        let dest = destination.map(DestLogin::flags);
        if let (Some(s), Some(d)) = (&src, &dest) {
            if s.password_stdin && d.password_stdin {
                return Err(Failure::usage(
                    "--src-password-stdin and --dest-password-stdin: standard input holds one password; give the other with --src-password-env VAR or --dest-password-env VAR",
                ));
            }
        }
        Ok(Logins {
            source: src.map(|f| side(&f)).transpose()?,
            destination: dest.map(|f| side(&f)).transpose()?,
            authfile: authfile.authfile.clone(),
        })
    }

    fn side(&self, side: Side) -> Option<&SideLogin> {
        match side {
            Side::Source => self.source.as_ref(),
            Side::Destination => self.destination.as_ref(),
        }
    }

    /// The credentials of a run whose source registries are `sources` and
    /// destination registries `destinations`: for each, `explicit` (a sync
    /// config's) first, then its side's login, then its side's auth file,
    /// else `--authfile`, else the auth files podman, skopeo and docker
    /// write. A side's login is asked for its own registries only. A
    /// registry on both sides takes the one login given for it; two that
    /// differ are refused.
    pub fn store(
        &self,
        sources: &[String],
        destinations: &[String],
        explicit: StaticCredentials,
    ) -> Result<Arc<dyn CredentialStore>, Failure> {
        let mut files = AuthFileCache::default();
        let default = files.get(self.authfile.as_deref())?;
        let explicit = Arc::new(explicit);
        let mut by_host: HashMap<String, Arc<dyn CredentialStore>> = HashMap::new();
        let mut hosts: Vec<&String> = sources.iter().chain(destinations).collect();
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            let on = |s: Side| {
                let list = if s == Side::Source {
                    sources
                } else {
                    destinations
                };
                list.contains(host).then(|| self.side(s)).flatten()
            };
            let logins: Vec<&SideLogin> = [on(Side::Source), on(Side::Destination)]
                .into_iter()
                .flatten()
                .collect();
            let credential = one_of(host, &logins, |l| l.credential.as_ref(), "login")?;
            let authfile = one_of(host, &logins, |l| l.authfile.as_ref(), "auth file")?;
            let mut chain: Vec<Arc<dyn CredentialStore>> = vec![explicit.clone()];
            if let Some(c) = credential {
                tracing::debug!(registry = %host, credential = %c.describe(), "login from the command line");
                chain.push(Arc::new(StaticCredentials::new().with(host, c.clone())));
            }
            chain.push(match authfile {
                Some(path) => files.get(Some(path))?,
                None => default.clone(),
            });
            by_host.insert(host.clone(), Arc::new(CredentialChain(chain)));
        }
        Ok(Arc::new(PerHost {
            by_host,
            default: Arc::new(CredentialChain(vec![explicit, default])),
        }))
    }

    /// The credentials of a run whose every registry is a source (`export`
    /// writes to a file): `explicit` first, then the source login, then
    /// the source's auth file, else `--authfile`, else the auth files.
    pub fn store_every_source(
        &self,
        explicit: StaticCredentials,
    ) -> Result<Arc<dyn CredentialStore>, Failure> {
        let mut files = AuthFileCache::default();
        let login = self.side(Side::Source);
        let mut chain: Vec<Arc<dyn CredentialStore>> = vec![Arc::new(explicit)];
        if let Some(c) = login.and_then(|l| l.credential.clone()) {
            chain.push(Arc::new(Everywhere(c)));
        }
        chain.push(
            files.get(
                login
                    .and_then(|l| l.authfile.as_deref())
                    .or(self.authfile.as_deref()),
            )?,
        );
        Ok(Arc::new(CredentialChain(chain)))
    }

    /// After a run: for each registry that refused its login, or asked for
    /// one none gave, how to log in (on standard error, once per registry).
    pub fn hint(&self, report: &RunReport, sources: &[String], destinations: &[String]) {
        let failed = report
            .images
            .iter()
            .filter(|i| i.error_kind == Some(ErrorKind::Auth))
            .filter_map(|i| i.error.as_deref());
        say_login_hints(
            failed,
            &[
                (sources, self.flags_for(Side::Source)),
                (destinations, self.flags_for(Side::Destination)),
            ],
        );
    }

    /// This command's own way to give `side`'s login, for a hint.
    fn flags_for(&self, side: Side) -> String {
        match self.side(side) {
            Some(l) => {
                let p = l.prefix;
                format!(
                    "--{p}-username NAME with --{p}-password-env VAR (or --{p}-password-stdin), --{p}-registry-token-env VAR, or --{p}-authfile PATH"
                )
            }
            None => "--authfile PATH".into(),
        }
    }
}

/// For each host among `sides` that an auth error names, once: how to log
/// in, with that side's `flags` (on standard error).
pub fn say_login_hints<'a>(
    auth_errors: impl Iterator<Item = &'a str>,
    sides: &[(&[String], String)],
) {
    let mut said: Vec<&str> = Vec::new();
    for error in auth_errors {
        for (hosts, flags) in sides {
            for host in hosts.iter().filter(|h| names_host(error, h)) {
                if said.contains(&host.as_str()) {
                    continue;
                }
                said.push(host);
                let missing = error.contains("anonymous");
                say!("{}", login_hint(host, missing, flags));
            }
        }
    }
}

/// Whether `error` names `host` (not as the start of a longer name:
/// `127.0.0.1:5000` is not in `127.0.0.1:50001`).
fn names_host(error: &str, host: &str) -> bool {
    error.match_indices(host).any(|(at, _)| {
        let next = error[at + host.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    })
}

/// The one value `logins` give for `host`, if any; two that differ refused.
fn one_of<'a, T: PartialEq + 'a>(
    host: &str,
    logins: &[&'a SideLogin],
    get: impl Fn(&'a SideLogin) -> Option<&'a T>,
    what: &str,
) -> Result<Option<&'a T>, Failure> {
    let values: Vec<&T> = logins.iter().filter_map(|l| get(l)).collect();
    match values.as_slice() {
        [a, b] if a != b => Err(Failure::usage(format!(
            "{host} is both a source and a destination, and --src-* and --dest-* give it a different {what}; give its {what} once"
        ))),
        [a, ..] => Ok(Some(a)),
        [] => Ok(None),
    }
}

/// One side's flags, read and checked.
fn side(f: &SideFlags<'_>) -> Result<SideLogin, Failure> {
    let p = f.prefix;
    if f.password_given {
        return Err(Failure::usage(format!(
            "--{p}-password: a password is never taken as an argument (it would show in ps and shell history); give --{p}-password-env VAR or --{p}-password-stdin"
        )));
    }
    if f.token_given {
        return Err(Failure::usage(format!(
            "--{p}-registry-token: a token is never taken as an argument (it would show in ps and shell history); put it in a variable and give --{p}-registry-token-env VAR"
        )));
    }
    let username = match f.creds {
        // The password part is not repeated: it is the secret.
        Some(c) if c.contains(':') => {
            return Err(Failure::usage(format!(
                "--{p}-creds USER:PASSWORD: a password is never taken as an argument (it would show in ps and shell history); give --{p}-username USER with --{p}-password-env VAR or --{p}-password-stdin"
            )))
        }
        Some(c) => Some(c),
        None => f.username,
    };
    if f.token_env.is_some() && username.is_some() {
        return Err(Failure::usage(format!(
            "--{p}-registry-token-env and --{p}-username/--{p}-creds: give one login"
        )));
    }
    let password = secret(
        f.password_env,
        f.password_stdin,
        &format!("--{p}-password-stdin"),
    )
    .map_err(Failure::usage)?;
    let credential = match (username, password) {
        (Some(u), Some(pw)) => Some(Credential::basic(u, pw)),
        (Some(_), None) => {
            return Err(Failure::usage(format!(
                "--{p}-username: give the password with --{p}-password-env VAR or --{p}-password-stdin (never on the command line)"
            )))
        }
        (None, Some(_)) => {
            return Err(Failure::usage(format!(
                "--{p}-password-env and --{p}-password-stdin need --{p}-username"
            )))
        }
        (None, None) => match f.token_env {
            Some(var) => Some(Credential::RegistryToken(
                secret(Some(var), false, "")
                    .map_err(|e| Failure::usage(format!("--{p}-registry-token-env: {e}")))?
                    .ok_or_else(|| Failure::usage("no token"))?,
            )),
            None => None,
        },
    };
    Ok(SideLogin {
        prefix: p,
        credential,
        authfile: f.authfile.map(Path::to_path_buf),
    })
}

/// Auth files loaded once each, however many registries name them.
#[derive(Default)]
struct AuthFileCache {
    loaded: HashMap<Option<PathBuf>, Arc<dyn CredentialStore>>,
}

impl AuthFileCache {
    /// `path` alone (`--authfile`), or the files found when `None`.
    fn get(&mut self, path: Option<&Path>) -> Result<Arc<dyn CredentialStore>, Failure> {
        let key = path.map(Path::to_path_buf);
        if let Some(s) = self.loaded.get(&key) {
            return Ok(s.clone());
        }
        let files = AuthFiles::named_or_discovered(path).map_err(Failure::usage)?;
        tracing::debug!(files = ?files.paths(), "auth files read");
        let store: Arc<dyn CredentialStore> = Arc::new(files);
        self.loaded.insert(key, store.clone());
        Ok(store)
    }
}

/// Each registry asks its own chain; one not named asks the default.
#[derive(Debug)]
struct PerHost {
    by_host: HashMap<String, Arc<dyn CredentialStore>>,
    default: Arc<dyn CredentialStore>,
}

impl CredentialStore for PerHost {
    fn credential(&self, registry: &str) -> Result<Credential, registry_client::Error> {
        self.by_host
            .get(registry)
            .unwrap_or(&self.default)
            .credential(registry)
    }
}

/// One credential for every registry asked about.
#[derive(Debug)]
struct Everywhere(Credential);

impl CredentialStore for Everywhere {
    fn credential(&self, _registry: &str) -> Result<Credential, registry_client::Error> {
        Ok(self.0.clone())
    }
}

/// The registry hosts among `endpoints` (files have none), each once.
pub fn hosts<'a>(
    endpoints: impl IntoIterator<Item = &'a mirror::endpoint::Endpoint>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in endpoints {
        if let mirror::endpoint::Endpoint::Registry { repository, .. } = e {
            let host = repository.registry().to_string();
            if !out.contains(&host) {
                out.push(host);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_named_only_whole() {
        assert!(names_host(
            "authentication to 127.0.0.1:5000 failed",
            "127.0.0.1:5000"
        ));
        assert!(!names_host(
            "GET http://127.0.0.1:50001/v2/",
            "127.0.0.1:5000"
        ));
        assert!(names_host(
            "GET http://127.0.0.1:5000/v2/",
            "127.0.0.1:5000"
        ));
    }

    #[test]
    fn a_password_as_an_argument_is_refused_without_repeating_it() {
        let login = SrcLogin {
            src_creds: Some("alice:hunter2-SECRET".into()),
            ..SrcLogin::default()
        };
        let err = Logins::read(Some(&login), None, &AuthFileArg::default()).unwrap_err();
        assert!(err.message.contains("--src-creds"), "{}", err.message);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let login = DestLogin {
            dest_password: Some("hunter2-SECRET".into()),
            ..DestLogin::default()
        };
        let err = Logins::read(None, Some(&login), &AuthFileArg::default()).unwrap_err();
        assert!(
            err.message.contains("--dest-password-env"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }

    #[test]
    fn standard_input_is_read_for_one_side_only() {
        let src = SrcLogin {
            src_username: Some("a".into()),
            src_password_stdin: true,
            ..SrcLogin::default()
        };
        let dest = DestLogin {
            dest_username: Some("b".into()),
            dest_password_stdin: true,
            ..DestLogin::default()
        };
        let err = Logins::read(Some(&src), Some(&dest), &AuthFileArg::default()).unwrap_err();
        assert_eq!(err.code, crate::cli::exit::USAGE);
        assert!(err.message.contains("one password"), "{}", err.message);
    }

    #[test]
    fn each_side_s_login_goes_to_its_own_hosts_only() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("auth.json");
        std::fs::write(&empty, "{}").unwrap();
        std::env::set_var("MIRROR_TEST_CRED_SRC", "src-SECRET");
        std::env::set_var("MIRROR_TEST_CRED_DEST", "dest-SECRET");
        let src = SrcLogin {
            src_username: Some("alice".into()),
            src_password_env: Some("MIRROR_TEST_CRED_SRC".into()),
            ..SrcLogin::default()
        };
        let dest = DestLogin {
            dest_username: Some("bob".into()),
            dest_password_env: Some("MIRROR_TEST_CRED_DEST".into()),
            ..DestLogin::default()
        };
        let file = AuthFileArg {
            authfile: Some(empty),
        };
        let logins = Logins::read(Some(&src), Some(&dest), &file).unwrap();
        let store = logins
            .store(
                &["src.example".into()],
                &["dest.example".into()],
                StaticCredentials::new(),
            )
            .unwrap();
        assert_eq!(
            store.credential("src.example").unwrap(),
            Credential::basic("alice", "src-SECRET")
        );
        assert_eq!(
            store.credential("dest.example").unwrap(),
            Credential::basic("bob", "dest-SECRET")
        );
        assert!(store.credential("other.example").unwrap().is_anonymous());
        assert!(!format!("{store:?} {logins:?}").contains("SECRET"));
        // One host on both sides with two logins: which to send is unclear.
        let err = logins
            .store(
                &["one.example".into()],
                &["one.example".into()],
                StaticCredentials::new(),
            )
            .unwrap_err();
        assert!(err.message.contains("one.example"), "{}", err.message);
    }
}
