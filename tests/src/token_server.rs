//! A purpose-built token server: the Docker token protocol (`GET /token`), the OAuth2 form
//! (`POST /token`, password and refresh-token grants) and ACR's AAD exchange
//! (`POST /oauth2/exchange`), issuing ES256 JWTs that the real registry verifies against
//! the certificate this server writes as the registry's `rootcertbundle`.
//!
//! No real server offers all three flows with scriptable users, hence this one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::gauge::{Gauge, InFlight};
use crate::registry::RegistryAuth;
use crate::server::{self, BoxError, Server};

/// The user name with which ACR says "the password is a refresh token".
pub const ACR_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// What the token server is told to do.
#[derive(Clone, Debug)]
pub struct TokenServerOptions {
    /// The `service` the registry names in its challenge and the JWT's `aud`.
    pub service: String,
    /// The JWT's `iss`, which the registry must be configured to trust.
    pub issuer: String,
    pub users: Vec<TokenUser>,
    /// Grant `pull` on repositories to requests without credentials.
    pub anonymous_pull: bool,
    /// Lifetime of issued access tokens, in seconds (`expires_in` and the JWT's `exp`).
    pub expires_in: u64,
    /// An "AAD access token" that `POST /oauth2/exchange` accepts.
    pub aad_token: Option<String>,
    /// Serve that AAD token at `GET /msi/token` as an Azure App Service
    /// managed identity endpoint does (`IDENTITY_ENDPOINT`), to callers
    /// sending this secret in `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
    pub managed_identity_secret: Option<String>,
    /// How long each answer takes, as a token endpoint across a network
    /// does: long enough that fetches a client makes at once overlap here.
    pub answer_delay: Duration,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        Self {
            service: "mirror-test-registry".into(),
            issuer: "mirror-test-token-server".into(),
            users: Vec::new(),
            anonymous_pull: false,
            expires_in: 300,
            aad_token: None,
            managed_identity_secret: None,
            answer_delay: Duration::ZERO,
        }
    }
}

impl TokenServerOptions {
    /// Adds a user with every action on everything.
    pub fn with_user(mut self, username: &str, password: &str) -> Self {
        self.users.push(TokenUser::new(username, password));
        self
    }

    /// Adds a user limited to `grants`.
    pub fn with_restricted_user(
        mut self,
        username: &str,
        password: &str,
        grants: Vec<Grant>,
    ) -> Self {
        self.users.push(TokenUser {
            grants: Some(grants),
            ..TokenUser::new(username, password)
        });
        self
    }

    pub fn with_anonymous_pull(mut self, allowed: bool) -> Self {
        self.anonymous_pull = allowed;
        self
    }

    pub fn with_expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = seconds;
        self
    }

    pub fn with_aad_token(mut self, token: &str) -> Self {
        self.aad_token = Some(token.into());
        self
    }

    /// Hand out the AAD token as a managed identity endpoint (see
    /// [`TokenServer::managed_identity_endpoint`]).
    pub fn with_managed_identity(mut self, secret: &str) -> Self {
        self.managed_identity_secret = Some(secret.into());
        self
    }

    pub fn with_answer_delay(mut self, delay: Duration) -> Self {
        self.answer_delay = delay;
        self
    }
}

/// A user of the token server.
#[derive(Clone, Debug)]
pub struct TokenUser {
    pub username: String,
    pub password: String,
    /// `None`: every requested action is granted. `Some`: only what a grant allows.
    pub grants: Option<Vec<Grant>>,
}

impl TokenUser {
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            grants: None,
        }
    }
}

/// Permission for a restricted user: actions on resources of one type whose name matches.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `repository` or `registry`.
    pub resource_type: String,
    /// An exact name, or a prefix followed by `*` (`"mirror/*"`, `"*"`).
    pub name: String,
    /// Allowed actions; `"*"` allows any.
    pub actions: Vec<String>,
}

impl Grant {
    /// A grant on repositories matching `name` (exact, or prefix ending in `*`).
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Self {
            resource_type: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Self {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    fn allows(&self, resource_type: &str, name: &str, action: &str) -> bool {
        let name_ok = match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        };
        self.resource_type == resource_type
            && name_ok
            && self.actions.iter().any(|a| a == "*" || a == action)
    }
}

/// One request the token server answered, for test assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    /// Every scope asked for (repeated `scope` parameters and space-separated lists).
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// The OAuth2 `grant_type` of a POST.
    pub grant_type: Option<String>,
    pub has_authorization: bool,
    /// The user name from Basic auth or the form, when one was given.
    pub username: Option<String>,
    pub status: u16,
}

/// Who a request authenticated as.
#[derive(Clone, Debug)]
enum Identity {
    Anonymous,
    User(String),
    /// Came in through the AAD exchange: may do anything, like an ACR owner.
    Aad,
}

struct State {
    opts: TokenServerOptions,
    key: SigningKey,
    /// Base64 (standard) DER of the signing certificate, for the JWT's `x5c` header.
    x5c: String,
    refresh_tokens: Mutex<HashMap<String, Identity>>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicUsize,
    in_flight: Arc<Gauge>,
}

/// A running token server; stops on drop.
pub struct TokenServer {
    state: Arc<State>,
    server: Server,
    _dir: TempDir,
    cert_path: PathBuf,
}

impl TokenServer {
    /// Generates a P-256 signing key and self-signed certificate, writes the certificate
    /// (the registry's `rootcertbundle`) to a temporary file and starts serving on loopback.
    pub async fn start(opts: TokenServerOptions) -> anyhow::Result<Self> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating token signing key")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, opts.issuer.clone());
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key_pair)?;
        let key = SigningKey::from_pkcs8_der(&key_pair.serialize_der())
            .map_err(|e| anyhow::anyhow!("loading token signing key: {e}"))?;

        let dir = tempfile::Builder::new()
            .prefix("mirror-test-token")
            .tempdir()?;
        let cert_path = dir.path().join("token-signing.pem");
        std::fs::write(&cert_path, cert.pem())?;

        let state = Arc::new(State {
            opts,
            key,
            x5c: STANDARD.encode(cert.der()),
            refresh_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            in_flight: Arc::default(),
        });
        let listener = server::bind_loopback().await?;
        let handler_state = state.clone();
        let server = Server::spawn(vec![listener], move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })?;
        Ok(Self {
            state,
            server,
            _dir: dir,
            cert_path,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The Docker token endpoint, `http://127.0.0.1:PORT/token` (also served as
    /// `/oauth2/token`, ACR's name for it).
    pub fn realm(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn service(&self) -> &str {
        &self.state.opts.service
    }

    /// `IDENTITY_ENDPOINT` for the managed identity this server plays.
    pub fn managed_identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url())
    }

    pub fn issuer(&self) -> &str {
        &self.state.opts.issuer
    }

    /// The signing certificate (PEM): the registry's `auth.token.rootcertbundle`.
    pub fn root_cert_bundle_path(&self) -> &Path {
        &self.cert_path
    }

    /// Token auth settings pointing a registry at this server.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm(),
            service: self.service().to_string(),
            issuer: self.issuer().to_string(),
            root_cert_bundle_path: self.cert_path.clone(),
        }
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// The most requests it was answering at once (see
    /// [`TokenServerOptions::answer_delay`]).
    pub fn max_in_flight(&self) -> usize {
        self.state.in_flight.max()
    }

    /// How many access tokens (JWTs) were issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }
}

type Reply = (StatusCode, Value);

fn unauthorized(message: &str) -> Reply {
    (
        StatusCode::UNAUTHORIZED,
        json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}),
    )
}

fn oauth_error(status: StatusCode, error: &str) -> Reply {
    (status, json!({"error": error}))
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<server::Body>, BoxError> {
        let _in_flight = InFlight::enter(&self.in_flight);
        tokio::time::sleep(self.opts.answer_delay).await;
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let identity_secret = req
            .headers()
            .get("x-identity-header")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req.into_body().collect().await?.to_bytes();
        if method == Method::POST {
            params.extend(url::form_urlencoded::parse(&body).into_owned());
        }
        let params = Params(params);

        let basic = authorization.as_deref().and_then(decode_basic);
        let mut record = TokenRequest {
            method: method.to_string(),
            path: path.clone(),
            scopes: params.scopes(),
            service: params.get("service").map(str::to_owned),
            grant_type: params.get("grant_type").map(str::to_owned),
            has_authorization: authorization.is_some(),
            username: basic
                .as_ref()
                .map(|(u, _)| u.clone())
                .or_else(|| params.get("username").map(str::to_owned)),
            status: 0,
        };

        let (status, body) = match (method, path.as_str()) {
            (Method::GET, "/token" | "/oauth2/token") => self.docker_token(&params, basic),
            (Method::POST, "/token" | "/oauth2/token") => self.oauth2_token(&params),
            (Method::POST, "/oauth2/exchange") => self.exchange(&params),
            (Method::GET, "/msi/token") => self.managed_identity(&params, identity_secret),
            _ => oauth_error(StatusCode::NOT_FOUND, "not_found"),
        };
        record.status = status.as_u16();
        self.requests.lock().unwrap().push(record);

        Ok(Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(server::full(body.to_string()))?)
    }

    /// `GET /token?service=..&scope=..`: Basic credentials or anonymous.
    fn docker_token(&self, params: &Params, basic: Option<(String, String)>) -> Reply {
        if let Some(reply) = self.check_service(params) {
            return reply;
        }
        let identity = match basic {
            None => Identity::Anonymous,
            Some((user, password)) => match self.authenticate(&user, &password) {
                Some(identity) => identity,
                None => return unauthorized("invalid username or password"),
            },
        };
        let mut reply = self.token_reply(&identity, &params.scopes());
        if params.get("offline_token") == Some("true") && !matches!(identity, Identity::Anonymous) {
            reply["refresh_token"] = self.new_refresh_token(identity).into();
        }
        (StatusCode::OK, reply)
    }

    /// `POST /token` (OAuth2 form): `password` and `refresh_token` grants.
    fn oauth2_token(&self, params: &Params) -> Reply {
        if let Some(reply) = self.check_service(params) {
            return reply;
        }
        let identity = match params.get("grant_type") {
            Some("password") => {
                let user = params.get("username").unwrap_or_default();
                let password = params.get("password").unwrap_or_default();
                match self.authenticate(user, password) {
                    Some(identity) => identity,
                    None => return unauthorized("invalid username or password"),
                }
            }
            Some("refresh_token") => {
                let token = params.get("refresh_token").unwrap_or_default();
                match self.refresh_tokens.lock().unwrap().get(token) {
                    Some(identity) => identity.clone(),
                    None => return unauthorized("unknown refresh token"),
                }
            }
            _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        };
        let mut reply = self.token_reply(&identity, &params.scopes());
        if let Value::Object(map) = &mut reply {
            map.remove("token");
        }
        if params.get("access_type") == Some("offline") {
            reply["refresh_token"] = self.new_refresh_token(identity).into();
        }
        (StatusCode::OK, reply)
    }

    /// `POST /oauth2/exchange`: an AAD access token for a refresh token (ACR).
    fn exchange(&self, params: &Params) -> Reply {
        if let Some(reply) = self.check_service(params) {
            return reply;
        }
        if params.get("grant_type") != Some("access_token") {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        match (&self.opts.aad_token, params.get("access_token")) {
            (Some(expected), Some(given)) if expected == given => (
                StatusCode::OK,
                json!({"refresh_token": self.new_refresh_token(Identity::Aad)}),
            ),
            _ => unauthorized("invalid AAD access token"),
        }
    }

    /// `GET /msi/token?api-version=2019-08-01&resource=...` with the
    /// endpoint's secret: the AAD token, for ACR's audience only.
    fn managed_identity(&self, params: &Params, secret: Option<String>) -> Reply {
        let (Some(expected), Some(token)) =
            (&self.opts.managed_identity_secret, &self.opts.aad_token)
        else {
            return oauth_error(StatusCode::NOT_FOUND, "not_found");
        };
        if secret.as_ref() != Some(expected) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid identity header");
        }
        let resource = params.get("resource").unwrap_or_default();
        if resource != "https://containerregistry.azure.net" {
            return oauth_error(StatusCode::BAD_REQUEST, "unexpected resource");
        }
        (
            StatusCode::OK,
            json!({
                "access_token": token,
                "expires_on": (unix_now() + 3600).to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        )
    }

    /// A request naming another service is a client bug worth failing loudly on.
    fn check_service(&self, params: &Params) -> Option<Reply> {
        match params.get("service") {
            Some(s) if s != self.opts.service => Some(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request: unknown service",
            )),
            _ => None,
        }
    }

    fn authenticate(&self, user: &str, password: &str) -> Option<Identity> {
        if user == ACR_TOKEN_USER {
            return self.refresh_tokens.lock().unwrap().get(password).cloned();
        }
        self.opts
            .users
            .iter()
            .find(|u| u.username == user && u.password == password)
            .map(|u| Identity::User(u.username.clone()))
    }

    fn new_refresh_token(&self, identity: Identity) -> String {
        let token = format!("refresh-{:032x}", rand::random::<u128>());
        self.refresh_tokens
            .lock()
            .unwrap()
            .insert(token.clone(), identity);
        token
    }

    fn allowed(&self, identity: &Identity, resource_type: &str, name: &str, action: &str) -> bool {
        match identity {
            Identity::Anonymous => {
                self.opts.anonymous_pull && resource_type == "repository" && action == "pull"
            }
            Identity::Aad => true,
            Identity::User(user) => {
                let Some(user) = self.opts.users.iter().find(|u| &u.username == user) else {
                    return false;
                };
                match &user.grants {
                    None => true,
                    Some(grants) => grants.iter().any(|g| g.allows(resource_type, name, action)),
                }
            }
        }
    }

    /// Grants the intersection of the requested scopes and the identity's permissions and
    /// signs a token for it.
    fn token_reply(&self, identity: &Identity, scopes: &[String]) -> Value {
        let mut access = Vec::new();
        for scope in scopes {
            let Some((resource_type, name, actions)) = parse_scope(scope) else {
                continue;
            };
            let granted: Vec<&str> = actions
                .iter()
                .copied()
                .filter(|a| self.allowed(identity, resource_type, name, a))
                .collect();
            if !granted.is_empty() {
                access.push(json!({"type": resource_type, "name": name, "actions": granted}));
            }
        }
        let subject = match identity {
            Identity::Anonymous => String::new(),
            Identity::User(u) => u.clone(),
            Identity::Aad => "aad-principal".into(),
        };
        let now = unix_now();
        let token = self.sign_jwt(&subject, access, now);
        self.issued.fetch_add(1, Ordering::SeqCst);
        json!({
            "token": token,
            "access_token": token,
            "expires_in": self.opts.expires_in,
            "issued_at": rfc3339(now),
        })
    }

    /// ES256 JWT in the shape distribution 2.8 verifies: `x5c` chain in the header,
    /// raw r||s signature.
    fn sign_jwt(&self, subject: &str, access: Vec<Value>, now: u64) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [self.x5c]});
        let claims = json!({
            "iss": self.opts.issuer,
            "sub": subject,
            "aud": self.opts.service,
            "exp": now + self.opts.expires_in,
            "nbf": now.saturating_sub(1),
            "iat": now,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Query and form parameters, in order, repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All `scope` values; OAuth2 clients put several in one, space-separated.
    fn scopes(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
            .collect()
    }
}

/// `type:name:action,action`; the name may itself contain `:` (a registry host with port).
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (resource_type, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        resource_type,
        name,
        actions.split(',').filter(|a| !a.is_empty()).collect(),
    ))
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, to avoid a date crate for one field).
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(("repository", "a/b", vec!["pull", "push"]))
        );
        assert_eq!(
            parse_scope("repository:localhost:5000/a:pull"),
            Some(("repository", "localhost:5000/a", vec!["pull"]))
        );
        assert_eq!(
            parse_scope("registry:catalog:*"),
            Some(("registry", "catalog", vec!["*"]))
        );
        assert_eq!(parse_scope("nonsense"), None);
    }

    #[test]
    fn grants_match_prefixes() {
        let g = Grant::repository("mirror/*", &["pull"]);
        assert!(g.allows("repository", "mirror/a", "pull"));
        assert!(!g.allows("repository", "mirror/a", "push"));
        assert!(!g.allows("repository", "other", "pull"));
        assert!(Grant::catalog().allows("registry", "catalog", "*"));
    }
}
