//! Token endpoint calls: the Docker token GET, the OAuth2 refresh-token POST,
//! and Azure Container Registry's `/oauth2/exchange`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use url::Url;

use super::scope::Scopes;
use super::Credential;
use crate::error::{redact_url, ApiErrors, Error};
use crate::limits::MAX_TOKEN_LIFETIME;
use crate::secret::Secret;

/// The OAuth2 `client_id` we send; registries log it.
const CLIENT_ID: &str = "mirror";
/// The spec's default lifetime when a token endpoint names none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// A bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub value: Secret,
    pub expires_at: Instant,
}

impl Token {
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.expires_at
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Where and for what a token is asked.
pub(crate) struct TokenRequest<'a> {
    pub registry: &'a str,
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scopes: &'a Scopes,
}

pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
    credential: &Credential,
) -> Result<Token, Error> {
    let realm = Url::parse(req.realm).map_err(|e| Error::Protocol {
        method: "GET".into(),
        url: req.realm.to_string(),
        reason: format!("the registry's token realm is not a URL: {e}"),
    })?;
    match credential {
        Credential::RegistryToken(t) => Ok(Token {
            value: t.clone(),
            expires_at: Instant::now() + Duration::from_secs(24 * 3600),
        }),
        Credential::IdentityToken(refresh) => {
            refresh_grant(http, req, &realm, refresh, credential).await
        }
        Credential::AcrAccessToken { .. } => Err(Error::config(
            format!("credentials for {}", req.registry),
            "an Entra access token must be exchanged before asking for a token",
        )),
        Credential::Anonymous | Credential::Basic { .. } => {
            let mut url = realm.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = req.service {
                    q.append_pair("service", s);
                }
                for s in req.scopes.items() {
                    q.append_pair("scope", &s);
                }
                q.append_pair("client_id", CLIENT_ID);
            }
            let mut rb = http.get(url.clone());
            if let Credential::Basic { username, password } = credential {
                rb = rb.basic_auth(username, Some(password.expose()));
            }
            let resp = send(rb, "GET", &url).await?;
            parse_token(resp, "GET", &url, req, credential).await
        }
    }
}

async fn refresh_grant(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
    realm: &Url,
    refresh: &Secret,
    credential: &Credential,
) -> Result<Token, Error> {
    let scope = req.scopes.to_string();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.expose()),
        ("client_id", CLIENT_ID),
        ("scope", scope.as_str()),
    ];
    if let Some(s) = req.service {
        form.push(("service", s));
    }
    let rb = http.post(realm.clone()).form(&form);
    let resp = send(rb, "POST", realm).await?;
    parse_token(resp, "POST", realm, req, credential).await
}

/// ACR: trade an Entra access token for an ACR refresh token at
/// `/oauth2/exchange` beside the realm.
pub(crate) async fn acr_exchange(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
    tenant: Option<&str>,
    aad_token: &Secret,
) -> Result<Secret, Error> {
    let mut url = Url::parse(req.realm).map_err(|e| Error::Protocol {
        method: "POST".into(),
        url: req.realm.to_string(),
        reason: format!("the registry's token realm is not a URL: {e}"),
    })?;
    url.set_path("/oauth2/exchange");
    url.set_query(None);
    let service = req.service.unwrap_or(req.registry);
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", service),
        ("access_token", aad_token.expose()),
    ];
    if let Some(t) = tenant {
        form.push(("tenant", t));
    }
    let resp = send(http.post(url.clone()).form(&form), "POST", &url).await?;
    let status = resp.status().as_u16();
    let body = read_token_body(resp, "POST", &url).await?;
    if status == 401 || status == 403 {
        return Err(Error::Auth {
            registry: req.registry.to_string(),
            method: "POST".into(),
            url: redact_url(&url),
            reason: format!(
                "the ACR token exchange refused the Entra access token (HTTP {status}{})",
                codes(&body)
            ),
        });
    }
    if status != 200 {
        return Err(status_error("POST", &url, status, &body));
    }
    #[derive(serde::Deserialize)]
    struct Exchange {
        refresh_token: String,
    }
    let ex: Exchange = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        method: "POST".into(),
        url: redact_url(&url),
        reason: format!("the exchange answer has no refresh_token: {e}"),
    })?;
    Ok(Secret::new(ex.refresh_token))
}

async fn send(
    rb: reqwest::RequestBuilder,
    method: &str,
    url: &Url,
) -> Result<reqwest::Response, Error> {
    rb.send().await.map_err(|e| transport(method, url, e))
}

fn transport(method: &str, url: &Url, e: reqwest::Error) -> Error {
    Error::transport(method, url, e)
}

use crate::limits::MAX_TOKEN_BODY as TOKEN_BODY_LIMIT;

async fn read_token_body(
    resp: reqwest::Response,
    method: &str,
    url: &Url,
) -> Result<bytes::Bytes, Error> {
    crate::client::read_capped(resp, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| transport(method, url, e))?
        .ok_or_else(|| Error::TooLarge {
            what: "token answer".into(),
            url: redact_url(url),
            limit: TOKEN_BODY_LIMIT,
        })
}

fn codes(body: &[u8]) -> String {
    let c = ApiErrors::parse(body);
    if c.is_empty() {
        String::new()
    } else {
        format!(": {c}")
    }
}

fn status_error(method: &str, url: &Url, status: u16, body: &[u8]) -> Error {
    Error::Status {
        method: method.into(),
        url: redact_url(url),
        status,
        codes: ApiErrors::parse(body),
        retry_after: None,
    }
}

async fn parse_token(
    resp: reqwest::Response,
    method: &str,
    url: &Url,
    req: &TokenRequest<'_>,
    credential: &Credential,
) -> Result<Token, Error> {
    let status = resp.status().as_u16();
    let body = read_token_body(resp, method, url).await?;
    if status == 401 || status == 403 {
        return Err(Error::Auth {
            registry: req.registry.to_string(),
            method: method.into(),
            url: redact_url(url),
            reason: format!(
                "the token endpoint refused {} (HTTP {status}{})",
                credential.describe(),
                codes(&body)
            ),
        });
    }
    if status != 200 {
        return Err(status_error(method, url, status, &body));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        method: method.into(),
        url: redact_url(url),
        reason: format!("the token answer is not JSON: {e}"),
    })?;
    let value = parsed
        .access_token
        .or(parsed.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Protocol {
            method: method.into(),
            url: redact_url(url),
            reason: "the token answer has neither token nor access_token".into(),
        })?;
    let lifetime = lifetime_of(parsed.expires_in, &value);
    Ok(Token {
        value: Secret::new(value),
        expires_at: Instant::now() + safe_lifetime(lifetime),
    })
}

/// How long a token lives: `expires_in`, else the JWT's `exp`, else a
/// minute; never past [`MAX_TOKEN_LIFETIME`], whatever the server says.
fn lifetime_of(expires_in: Option<u64>, token: &str) -> Duration {
    expires_in
        .map(Duration::from_secs)
        .or_else(|| jwt_lifetime(token))
        .unwrap_or(DEFAULT_LIFETIME)
        .min(MAX_TOKEN_LIFETIME)
}

/// Stop using a token a little before it expires, so a request in flight
/// does not arrive with a dead one.
fn safe_lifetime(lifetime: Duration) -> Duration {
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    lifetime.saturating_sub(margin)
}

/// The time left until a JWT's `exp` claim, when the token is a JWT.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: u64,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(claims.exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_lifetime_is_clamped_instead_of_overflowing() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"none"}"#),
            b64(&format!(r#"{{"exp":{}}}"#, u64::MAX))
        );
        for lifetime in [
            lifetime_of(Some(u64::MAX), "opaque"),
            lifetime_of(None, &jwt),
        ] {
            assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
            // What the cache does with it: no overflow.
            let _ = Instant::now() + safe_lifetime(lifetime);
        }
        assert_eq!(lifetime_of(Some(300), "x"), Duration::from_secs(300));
    }

    #[test]
    fn jwt_exp_gives_the_lifetime() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = format!(r#"{{"exp":{}}}"#, now + 120);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        let life = jwt_lifetime(&format!("xx.{b64}.yy")).unwrap();
        assert!(life > Duration::from_secs(110) && life <= Duration::from_secs(120));
        assert!(jwt_lifetime("opaque-token").is_none());
        assert_eq!(
            safe_lifetime(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(
            safe_lifetime(Duration::from_secs(3600)),
            Duration::from_secs(3570)
        );
    }
}
