//! Credentials: what we know about a registry's user ([`Credential`]) and
//! where that comes from ([`CredentialStore`]: given explicitly, docker's
//! and podman's auth files, a chain of them). The handshake itself (the
//! challenge, token requests and their cache per registry and scope) is
//! the client's business and not public.

mod authenticator;
mod challenge;
pub mod docker_config;
mod scope;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::sync::Arc;

pub(crate) use authenticator::Authenticator;
pub(crate) use challenge::Challenge;
pub use docker_config::{AuthFiles, DockerConfig};
pub(crate) use scope::Scopes;

use crate::error::Error;
use crate::secret::Secret;

/// How to identify to one registry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Credential {
    /// No credentials: a registry's bearer challenge is answered with an
    /// anonymous token (public images), a basic one not at all.
    #[default]
    Anonymous,
    /// User name and password (an ACR admin user, a scoped token, htpasswd).
    Basic {
        /// The user name (shown in errors).
        username: String,
        /// The password (never shown).
        password: Secret,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the
    /// token endpoint with `grant_type=refresh_token`.
    IdentityToken(Secret),
    /// A bearer token used as it is (docker's `registrytoken`).
    RegistryToken(Secret),
    /// A Microsoft Entra access token, exchanged at the registry's
    /// `/oauth2/exchange` for an ACR refresh token.
    AcrAccessToken {
        /// The Entra tenant, when the exchange must name it.
        tenant: Option<String>,
        /// The access token (never shown).
        token: Secret,
    },
}

impl Credential {
    /// [`Credential::Basic`] from a user name and password.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Basic credentials from two environment variables; `None` when the
    /// user variable is unset. The variable names, not values, go in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the user variable is set and the password
    /// variable is not.
    pub fn basic_from_env(user_var: &str, password_var: &str) -> Result<Option<Self>, Error> {
        let Ok(username) = std::env::var(user_var) else {
            return Ok(None);
        };
        let password = std::env::var(password_var).map_err(|_| {
            Error::config(
                format!("credentials from ${user_var}"),
                format!("${password_var} is not set"),
            )
        })?;
        Ok(Some(Credential::basic(username, password)))
    }

    /// The first line of `input` (standard input, usually) as a secret, so
    /// passwords never need to be command-line arguments.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when reading fails, [`Error::Config`] for an empty line.
    pub fn read_secret(input: impl BufRead) -> Result<Secret, Error> {
        let mut line = String::new();
        let mut input = input;
        input
            .read_line(&mut line)
            .map_err(|e| Error::io("reading a secret from standard input", e))?;
        let value = line.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(Error::config(
                "reading a secret from standard input",
                "it was empty",
            ));
        }
        Ok(Secret::new(value))
    }

    /// Whether it is [`Credential::Anonymous`].
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credential::Anonymous)
    }

    /// Who this is, for error messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".into(),
            Credential::Basic { username, .. } => format!("user {username:?}"),
            Credential::IdentityToken(_) => "an identity (refresh) token".into(),
            Credential::RegistryToken(_) => "a registry token".into(),
            Credential::AcrAccessToken { .. } => "an Entra access token".into(),
        }
    }
}

/// A source of credentials, by registry name as written in references
/// (`docker.io`, `myacr.azurecr.io`, `127.0.0.1:5000`). It may block (a
/// credential helper runs a program); callers run it off the async threads.
///
/// The client asks once per registry and remembers the answer for its life.
/// Implement it to take credentials from elsewhere (a vault, a cloud SDK):
///
/// ```
/// use registry_client::{Credential, CredentialStore, Error};
///
/// #[derive(Debug)]
/// struct FromVault;
///
/// impl CredentialStore for FromVault {
///     fn credential(&self, registry: &str) -> Result<Credential, Error> {
///         Ok(match registry {
///             "myacr.azurecr.io" => Credential::basic("puller", "from-the-vault"),
///             _ => Credential::Anonymous,
///         })
///     }
/// }
/// ```
pub trait CredentialStore: Send + Sync + fmt::Debug {
    /// The credential for `registry`; [`Credential::Anonymous`] when the
    /// store knows none.
    ///
    /// # Errors
    ///
    /// When the store cannot answer (a helper failed, a file is
    /// unreadable); the request that needed it fails with this error.
    fn credential(&self, registry: &str) -> Result<Credential, Error>;
}

/// Credentials given explicitly, per registry (as written in references:
/// `docker.io`, `myacr.azurecr.io`, `127.0.0.1:5000`).
///
/// ```
/// use registry_client::{Credential, CredentialStore, StaticCredentials};
///
/// let store = StaticCredentials::new().with("myacr.azurecr.io", Credential::basic("u", "p"));
/// assert_eq!(store.credential("myacr.azurecr.io")?, Credential::basic("u", "p"));
/// assert!(store.credential("docker.io")?.is_anonymous());
/// // Secrets never show.
/// assert!(!format!("{store:?}").contains("\"p\""));
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct StaticCredentials(HashMap<String, Credential>);

impl StaticCredentials {
    /// No credentials: every registry is anonymous.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store with `credential` for `registry`.
    pub fn with(mut self, registry: &str, credential: Credential) -> Self {
        self.0.insert(registry.to_string(), credential);
        self
    }

    /// Set `credential` for `registry`, replacing any.
    pub fn insert(&mut self, registry: &str, credential: Credential) {
        self.0.insert(registry.to_string(), credential);
    }
}

impl CredentialStore for StaticCredentials {
    fn credential(&self, registry: &str) -> Result<Credential, Error> {
        Ok(self.0.get(registry).cloned().unwrap_or_default())
    }
}

/// Asks each store in turn; the first that knows the registry wins.
#[derive(Debug, Default, Clone)]
pub struct CredentialChain(
    /// The stores, in the order they are asked.
    pub Vec<Arc<dyn CredentialStore>>,
);

impl CredentialChain {
    /// Credentials given explicitly first, then the auth files: only
    /// `auth_file` when one is named (`--authfile`, as skopeo and podman
    /// read it), else those podman, skopeo and docker write, in their
    /// order ([`AuthFiles::discover`]).
    pub fn explicit_then_auth_files(
        explicit: StaticCredentials,
        auth_file: Option<&std::path::Path>,
    ) -> Result<Self, Error> {
        Ok(CredentialChain(vec![
            Arc::new(explicit),
            Arc::new(AuthFiles::named_or_discovered(auth_file)?),
        ]))
    }
}

impl CredentialStore for CredentialChain {
    fn credential(&self, registry: &str) -> Result<Credential, Error> {
        for store in &self.0 {
            let c = store.credential(registry)?;
            if !c.is_anonymous() {
                return Ok(c);
            }
        }
        Ok(Credential::Anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_every_credential_hides_the_secret() {
        for c in [
            Credential::basic("alice", "pw-SECRET"),
            Credential::IdentityToken(Secret::new("rt-SECRET")),
            Credential::RegistryToken(Secret::new("bt-SECRET")),
            Credential::AcrAccessToken {
                tenant: Some("t".into()),
                token: Secret::new("aad-SECRET"),
            },
        ] {
            let shown = format!("{c:?} {}", c.describe());
            assert!(!shown.contains("SECRET"), "{shown}");
        }
        let store = StaticCredentials::new().with("r", Credential::basic("u", "p-SECRET"));
        assert!(!format!("{store:?}").contains("SECRET"));
    }

    #[test]
    fn secret_from_stdin_is_the_first_line() {
        let s = Credential::read_secret(&b"pa$$word\nnext\n"[..]).unwrap();
        assert_eq!(s.expose(), "pa$$word");
        assert!(Credential::read_secret(&b"\n"[..]).is_err());
    }

    #[test]
    fn basic_credentials_from_environment_variables() {
        // Names unique to this test: the process environment is shared.
        std::env::set_var("MIRROR_TEST_ENV_USER", "svc");
        std::env::set_var("MIRROR_TEST_ENV_PASS", "from-env");
        let c = Credential::basic_from_env("MIRROR_TEST_ENV_USER", "MIRROR_TEST_ENV_PASS").unwrap();
        assert_eq!(c, Some(Credential::basic("svc", "from-env")));
        assert_eq!(
            Credential::basic_from_env("MIRROR_TEST_ENV_UNSET", "X").unwrap(),
            None
        );
        let err = Credential::basic_from_env("MIRROR_TEST_ENV_USER", "MIRROR_TEST_ENV_NOPASS")
            .unwrap_err();
        assert!(err.to_string().contains("$MIRROR_TEST_ENV_NOPASS"), "{err}");
    }

    #[test]
    fn chain_takes_the_first_known() {
        let a: Arc<dyn CredentialStore> = Arc::new(StaticCredentials::new());
        let b: Arc<dyn CredentialStore> =
            Arc::new(StaticCredentials::new().with("r", Credential::basic("u", "p")));
        let chain = CredentialChain(vec![a, b]);
        assert_eq!(chain.credential("r").unwrap(), Credential::basic("u", "p"));
        assert!(chain.credential("other").unwrap().is_anonymous());
    }
}
