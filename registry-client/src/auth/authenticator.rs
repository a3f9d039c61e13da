//! Per-registry auth state: the challenge each host answered with, the
//! credentials for it, and bearer tokens cached by scope set until expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::challenge::Challenge;
use super::scope::Scopes;
use super::token::{acr_exchange, fetch_token, Token, TokenRequest};
use super::{Credential, CredentialStore};
use crate::error::Error;
use crate::secret::Secret;

#[derive(Debug)]
pub struct Authenticator {
    store: Arc<dyn CredentialStore>,
    state: Mutex<State>,
    /// One token fetch per host and scope set at a time, so a burst of
    /// requests needing the same new scope asks the token endpoint once,
    /// while other repositories' tokens are fetched alongside (one after
    /// another, a run over 1,000 repositories paid 1,000 round trips to
    /// the token endpoint in a row). `None`: the host's one ACR exchange.
    fetch_locks: Mutex<HashMap<FetchKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// A host, and the scope set a token is fetched for (`None`: the exchange).
type FetchKey = (String, Option<Scopes>);

#[derive(Debug, Default)]
struct State {
    challenges: HashMap<String, Challenge>,
    credentials: HashMap<String, Credential>,
    tokens: HashMap<(String, Scopes), Token>,
    /// ACR refresh tokens obtained by exchange, per host.
    exchanged: HashMap<String, Secret>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        Authenticator {
            store,
            state: Mutex::default(),
            fetch_locks: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("auth state lock")
    }

    /// The credential for a registry, looked up once (helpers may be slow).
    async fn credential(&self, registry: &str) -> Result<Credential, Error> {
        if let Some(c) = self.state().credentials.get(registry) {
            return Ok(c.clone());
        }
        let store = self.store.clone();
        let name = registry.to_string();
        let c = tokio::task::spawn_blocking(move || store.credential(&name))
            .await
            .map_err(|e| Error::config(format!("credentials for {registry}"), e.to_string()))??;
        self.state()
            .credentials
            .insert(registry.to_string(), c.clone());
        Ok(c)
    }

    /// The Authorization header for a request, from what we already know
    /// about the host. `None` until the host has challenged us. `tls`: the
    /// registry is reached over TLS (see [`Authenticator::answer`]).
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        host: &str,
        registry: &str,
        scopes: &Scopes,
        tls: bool,
    ) -> Result<Option<HeaderValue>, Error> {
        let challenge = self.state().challenges.get(host).cloned();
        match challenge {
            None => Ok(None),
            Some(c) => self
                .header_for(http, host, registry, &c, scopes, None, tls)
                .await
                .map(Some),
        }
    }

    /// Answer a 401: remember the challenge and get a header other than the
    /// one refused (`refused`, if one was sent). Scopes the registry asks
    /// for in the challenge are added to ours. A token another request
    /// fetched meanwhile is reused, so a burst of first 401s asks once.
    ///
    /// `tls`: the registry is reached over TLS. Its token realm may be on
    /// another host (Docker Hub's is), but not on plain `http://`: a
    /// password, refresh token or Entra token is refused there rather
    /// than sent in clear (an anonymous token request, which carries no
    /// secret, still goes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn answer(
        &self,
        http: &reqwest::Client,
        host: &str,
        registry: &str,
        challenge: Challenge,
        scopes: &Scopes,
        refused: Option<&HeaderValue>,
        tls: bool,
    ) -> Result<HeaderValue, Error> {
        self.state()
            .challenges
            .insert(host.to_string(), challenge.clone());
        let wider = match &challenge {
            Challenge::Bearer { scope: Some(s), .. } => scopes.clone().merge(&Scopes::parse(s)),
            _ => scopes.clone(),
        };
        let header = self
            .header_for(http, host, registry, &challenge, &wider, Some(refused), tls)
            .await?;
        // Later requests with the narrower scopes find the wider token
        // first, instead of the one the registry just refused.
        if &wider != scopes {
            let mut st = self.state();
            if let Some(t) = st.tokens.get(&(host.to_string(), wider.clone())).cloned() {
                st.tokens.insert((host.to_string(), scopes.clone()), t);
            }
        }
        Ok(header)
    }

    /// Forget tokens for a host (after the registry refused one).
    pub(crate) fn forget_tokens(&self, host: &str) {
        self.state().tokens.retain(|(h, _), _| h != host);
    }

    #[allow(clippy::too_many_arguments)]
    async fn header_for(
        &self,
        http: &reqwest::Client,
        host: &str,
        registry: &str,
        challenge: &Challenge,
        scopes: &Scopes,
        // `Some(refused)` when answering a 401: a cached token is reused
        // only if it is not the one just refused.
        avoid: Option<Option<&HeaderValue>>,
        tls: bool,
    ) -> Result<HeaderValue, Error> {
        let credential = self.credential(registry).await?;
        match challenge {
            Challenge::Basic { .. } => match &credential {
                Credential::Basic { username, password } => Ok(basic_header(username, password)),
                other => Err(Error::Auth {
                    registry: registry.to_string(),
                    method: "GET".into(),
                    url: format!("{host}/v2/"),
                    reason: format!(
                        "the registry asks for a user name and password, and {} is configured",
                        other.describe()
                    ),
                }),
            },
            Challenge::Bearer { realm, service, .. } => {
                let usable = |t: Token| {
                    let h = bearer_header(&t.value);
                    match avoid {
                        Some(Some(refused)) if *refused == h => None,
                        _ => Some(h),
                    }
                };
                if avoid.is_none() {
                    if let Some(h) = self.cached(host, scopes).and_then(usable) {
                        return Ok(h);
                    }
                }
                let lock = self.fetch_lock(host, Some(scopes));
                let _guard = lock.lock().await;
                if let Some(h) = self.cached(host, scopes).and_then(usable) {
                    return Ok(h);
                }
                if tls && sends_a_secret(&credential) && realm_in_clear(realm) {
                    return Err(Error::Auth {
                        registry: registry.to_string(),
                        method: "GET".into(),
                        url: format!("{host}/v2/"),
                        reason: format!(
                            "the registry, reached over TLS, names a token realm on plain http ({}); refusing to send {} there in clear",
                            realm_shown(realm),
                            credential.describe()
                        ),
                    });
                }
                let req = TokenRequest {
                    registry,
                    realm,
                    service: service.as_deref(),
                    scopes,
                };
                let credential = self
                    .exchange_if_needed(http, host, &req, credential)
                    .await?;
                tracing::debug!(registry, scopes = %scopes, "fetching a bearer token");
                let token = fetch_token(http, &req, &credential).await?;
                let header = bearer_header(&token.value);
                self.state()
                    .tokens
                    .insert((host.to_string(), scopes.clone()), token);
                Ok(header)
            }
        }
    }

    /// An ACR Entra token becomes an identity token once, per host.
    async fn exchange_if_needed(
        &self,
        http: &reqwest::Client,
        host: &str,
        req: &TokenRequest<'_>,
        credential: Credential,
    ) -> Result<Credential, Error> {
        let Credential::AcrAccessToken { tenant, token } = &credential else {
            return Ok(credential);
        };
        let exchanged = || self.state().exchanged.get(host).cloned();
        if let Some(rt) = exchanged() {
            return Ok(Credential::IdentityToken(rt));
        }
        let lock = self.fetch_lock(host, None);
        let _guard = lock.lock().await;
        if let Some(rt) = exchanged() {
            return Ok(Credential::IdentityToken(rt));
        }
        tracing::debug!(
            registry = req.registry,
            "exchanging an Entra access token for an ACR refresh token"
        );
        let rt = acr_exchange(http, req, tenant.as_deref(), token).await?;
        self.state().exchanged.insert(host.to_string(), rt.clone());
        Ok(Credential::IdentityToken(rt))
    }

    fn cached(&self, host: &str, scopes: &Scopes) -> Option<Token> {
        let mut st = self.state();
        st.tokens.retain(|_, t| t.is_fresh());
        if let Some(t) = st.tokens.get(&(host.to_string(), scopes.clone())) {
            return Some(t.clone());
        }
        st.tokens
            .iter()
            .find(|((h, s), _)| h == host && s.covers(scopes))
            .map(|(_, t)| t.clone())
    }

    fn fetch_lock(&self, host: &str, scopes: Option<&Scopes>) -> Arc<tokio::sync::Mutex<()>> {
        self.fetch_locks
            .lock()
            .expect("fetch lock map")
            .entry((host.to_string(), scopes.cloned()))
            .or_default()
            .clone()
    }
}

/// Whether asking a token endpoint with this credential sends a secret
/// (a registry token is used as it is and goes to the registry only).
fn sends_a_secret(credential: &Credential) -> bool {
    matches!(
        credential,
        Credential::Basic { .. } | Credential::IdentityToken(_) | Credential::AcrAccessToken { .. }
    )
}

/// A realm that is not `https://` (an unparsable one is refused later,
/// by the token request itself).
fn realm_in_clear(realm: &str) -> bool {
    url::Url::parse(realm).is_ok_and(|u| u.scheme() != "https")
}

/// The realm for a message: its origin and path, no query.
fn realm_shown(realm: &str) -> String {
    match url::Url::parse(realm) {
        Ok(u) => format!("{}{}", u.origin().ascii_serialization(), u.path()),
        Err(_) => "an unparsable URL".into(),
    }
}

fn basic_header(username: &str, password: &Secret) -> HeaderValue {
    use base64::Engine as _;
    let raw = format!("{username}:{}", password.expose());
    let enc = base64::engine::general_purpose::STANDARD.encode(raw);
    sensitive(format!("Basic {enc}"))
}

fn bearer_header(token: &Secret) -> HeaderValue {
    sensitive(format!("Bearer {}", token.expose()))
}

/// Marked sensitive so HTTP-level debug output never prints it.
fn sensitive(value: String) -> HeaderValue {
    let mut v =
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    v.set_sensitive(true);
    v
}

impl Authenticator {
    /// Who we are to a registry, for messages (never the secret).
    pub(crate) fn describe_credential(&self, registry: &str) -> Option<String> {
        self.state().credentials.get(registry).map(|c| c.describe())
    }
}
