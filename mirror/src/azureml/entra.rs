//! Microsoft Entra access tokens for Azure Container Registry, from where
//! Azure users have them: an environment variable, the Azure CLI
//! (`az account get-access-token`), or the Azure SDK's credentials
//! (service principal in the environment, workload identity, managed
//! identity) through the official `azure_identity` crate. The token is
//! then exchanged at the registry's `/oauth2/exchange` for an ACR refresh
//! token ([`Credential::AcrAccessToken`]).

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{
    AsyncRawResponse, Body, ClientOptions, HttpClient, Method, Request, Transport,
};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, Executor, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use futures::TryStreamExt;
use registry_client::{Credential, Proxy, Secret};

/// The audience ACR accepts for the exchange.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// Where an Entra access token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The token itself, in this environment variable.
    Env(String),
    /// `az account get-access-token` (the Azure CLI must be logged in).
    AzureCli,
    /// The SDK's chain: `AZURE_CLIENT_ID`/`AZURE_TENANT_ID`/
    /// `AZURE_CLIENT_SECRET` (service principal), else
    /// `AZURE_FEDERATED_TOKEN_FILE` (workload identity), else the managed
    /// identity (user-assigned when `AZURE_CLIENT_ID` is set).
    AzureSdk,
}

impl std::str::FromStr for TokenSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "azure-cli" | "az" => Ok(TokenSource::AzureCli),
            "azure-sdk" | "sdk" => Ok(TokenSource::AzureSdk),
            _ => match s.strip_prefix("env:") {
                Some(var) if !var.is_empty() => Ok(TokenSource::Env(var.to_string())),
                _ => Err(format!(
                    "{s:?}: use env:VAR (the token in $VAR), azure-cli or azure-sdk"
                )),
            },
        }
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(var) => write!(f, "${var}"),
            TokenSource::AzureCli => f.write_str("the Azure CLI"),
            TokenSource::AzureSdk => f.write_str("the Azure SDK credential chain"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("getting a Microsoft Entra token from {source_name}: {message}")]
pub struct TokenError {
    source_name: String,
    message: String,
}

impl TokenSource {
    /// A credential for ACR: the token, to be exchanged at the registry.
    /// The SDK's requests go through the environment's proxy.
    pub async fn credential(&self, tenant: Option<&str>) -> Result<Credential, TokenError> {
        let proxy = Proxy::from_env().map_err(|e| self.fail(e.to_string()))?;
        self.credential_via(tenant, &proxy).await
    }

    /// [`TokenSource::credential`], the SDK's requests (Entra, the managed
    /// identity endpoint) going through `proxy`.
    pub async fn credential_via(
        &self,
        tenant: Option<&str>,
        proxy: &Proxy,
    ) -> Result<Credential, TokenError> {
        Ok(Credential::AcrAccessToken {
            tenant: tenant.map(str::to_string),
            token: self.token_via(tenant, proxy).await?,
        })
    }

    fn fail(&self, message: String) -> TokenError {
        TokenError {
            source_name: self.to_string(),
            message,
        }
    }

    /// An access token for [`ACR_SCOPE`], through the environment's proxy.
    pub async fn token(&self, tenant: Option<&str>) -> Result<Secret, TokenError> {
        let proxy = Proxy::from_env().map_err(|e| self.fail(e.to_string()))?;
        self.token_via(tenant, &proxy).await
    }

    /// An access token for [`ACR_SCOPE`], the SDK's requests through `proxy`.
    pub async fn token_via(
        &self,
        tenant: Option<&str>,
        proxy: &Proxy,
    ) -> Result<Secret, TokenError> {
        self.token_for(ACR_SCOPE, tenant, proxy).await
    }

    /// An access token for `scope` (Resource Manager's, say), the SDK's
    /// requests through `proxy`. A token from `env:VAR` is taken as it is:
    /// its audience is the giver's business.
    pub async fn token_for(
        &self,
        scope: &str,
        tenant: Option<&str>,
        proxy: &Proxy,
    ) -> Result<Secret, TokenError> {
        let fail = |message: String| self.fail(message);
        let credential: Arc<dyn TokenCredential> = match self {
            TokenSource::Env(var) => {
                return match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                    _ => Err(fail("it is not set".into())),
                };
            }
            TokenSource::AzureCli => AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: tenant.map(str::to_string),
                executor: Some(Arc::new(ProxiedCli::new(proxy))),
                ..Default::default()
            }))
            .map_err(|e| fail(e.to_string()))?,
            TokenSource::AzureSdk => sdk_chain(proxy).map_err(fail)?,
        };
        let token = credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| fail(first_line(&e.to_string())))?;
        Ok(Secret::new(token.token.secret()))
    }
}

/// The first credential of the chain whose environment is there.
fn sdk_chain(proxy: &Proxy) -> Result<Arc<dyn TokenCredential>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let transport = Arc::new(ReqwestTransport::new(proxy)?);
    let options = || ClientOptions {
        transport: Some(Transport::new(transport.clone())),
        ..Default::default()
    };
    let client_id = var("AZURE_CLIENT_ID");
    if let (Some(tenant), Some(id), Some(secret)) = (
        var("AZURE_TENANT_ID"),
        client_id.clone(),
        var("AZURE_CLIENT_SECRET"),
    ) {
        return ClientSecretCredential::new(
            &tenant,
            id,
            AzureSecret::new(secret),
            Some(ClientSecretCredentialOptions {
                client_options: options(),
            }),
        )
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| format!("service principal from AZURE_CLIENT_SECRET: {e}"));
    }
    if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let mut o = WorkloadIdentityCredentialOptions::default();
        o.credential_options.client_options = options();
        return WorkloadIdentityCredential::new(Some(o))
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| format!("workload identity from AZURE_FEDERATED_TOKEN_FILE: {e}"));
    }
    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options: options(),
    }))
    .map(|c| c as Arc<dyn TokenCredential>)
    .map_err(|e| format!("managed identity: {e}"))
}

/// Runs `az` with the run's proxy in its environment: the Azure CLI makes
/// its own requests and reads `HTTPS_PROXY`/`HTTP_PROXY` (and
/// `NO_PROXY`, inherited), so `--proxy URL` is set there and `--proxy
/// none` clears them. A proxy from the environment is the same there
/// already.
#[derive(Debug)]
struct ProxiedCli {
    /// `(https, http)`: the proxy for each scheme, when one is used.
    set: Option<(Option<Secret>, Option<Secret>)>,
}

impl ProxiedCli {
    fn new(proxy: &Proxy) -> ProxiedCli {
        // Probed with the Entra host az asks: no_proxy applies as for us.
        let via = |url: &str| {
            let url = reqwest::Url::parse(url).ok()?;
            proxy
                .for_url(&url)
                .map(|p| Secret::new(p.url().as_str().trim_end_matches('/')))
        };
        ProxiedCli {
            set: (!proxy.is_none()).then(|| {
                (
                    via("https://login.microsoftonline.com/"),
                    via("http://login.microsoftonline.com/"),
                )
            }),
        }
    }
}

#[async_trait::async_trait]
impl Executor for ProxiedCli {
    async fn run(
        &self,
        program: &std::ffi::OsStr,
        args: &[&std::ffi::OsStr],
    ) -> std::io::Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        let vars = ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"];
        match &self.set {
            None => {
                for v in vars.iter().chain(&["all_proxy", "ALL_PROXY"]) {
                    cmd.env_remove(v);
                }
            }
            Some((https, http)) => {
                for (names, value) in [(&vars[..2], https), (&vars[2..], http)] {
                    if let Some(value) = value {
                        for n in names {
                            cmd.env(n, value.expose());
                        }
                    }
                }
            }
        }
        cmd.output().await
    }
}

/// The SDK's errors run to paragraphs of troubleshooting links.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The SDK's HTTP requests over our reqwest (rustls with the system's
/// roots), so the binary carries one HTTP and TLS stack, through the
/// run's proxy as the registry client's requests are ([`Proxy::route`]
/// decides for both).
#[derive(Debug)]
struct ReqwestTransport(reqwest::Client);

impl ReqwestTransport {
    fn new(proxy: &Proxy) -> Result<Self, String> {
        http_client(proxy).map(ReqwestTransport)
    }
}

/// The HTTP client for Azure's own endpoints (Entra, the managed identity
/// endpoint, Resource Manager): rustls with the system's roots and the
/// proxy's CA files, through `proxy` as the registry client's requests
/// go, bounded connect and request times, no redirects (a bearer token
/// never follows one).
pub fn http_client(proxy: &Proxy) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mirror/", env!("CARGO_PKG_VERSION")));
    for path in proxy.ca_files() {
        let pem = std::fs::read(path)
            .map_err(|e| format!("the proxy's CA file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("the proxy's CA file {}: {e}", path.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b = if proxy.is_none() {
        b.no_proxy()
    } else {
        let p = proxy.clone();
        b.proxy(reqwest::Proxy::custom(move |url| p.route(url)))
    };
    b.build()
        .map_err(|e| format!("building the HTTP client for Azure: {e}"))
}

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::ErrorKind;
        let method = match request.method() {
            Method::Delete => reqwest::Method::DELETE,
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            other => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    format!("HTTP method {other:?} is not supported"),
                ))
            }
        };
        let mut req = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        match request.body() {
            Body::Bytes(bytes) => req = req.body(bytes.clone()),
            // Token requests are small forms; nothing here streams.
            Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "streamed request bodies are not supported",
                ))
            }
        }
        let response = req.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            azure_core::Error::with_error(kind, e, "sending the token request")
        })?;
        let status = response.status().as_u16();
        let headers: HashMap<HeaderName, HeaderValue> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v.to_str().ok()?.to_owned()),
                ))
            })
            .collect();
        let body = response.bytes_stream().map_err(|e| {
            azure_core::Error::with_error(ErrorKind::Io, e, "reading the token response")
        });
        Ok(AsyncRawResponse::new(
            status.into(),
            Headers::from(headers),
            Box::pin(body),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("env:AAD".parse(), Ok(TokenSource::Env("AAD".into())));
        assert_eq!("azure-cli".parse(), Ok(TokenSource::AzureCli));
        assert_eq!("azure-sdk".parse(), Ok(TokenSource::AzureSdk));
        assert!("env:".parse::<TokenSource>().is_err());
        assert!("keyring"
            .parse::<TokenSource>()
            .unwrap_err()
            .contains("env:VAR"));
    }

    /// The SDK's token requests go through the run's proxy: a listener
    /// standing in for it sees the CONNECT to the Entra host, and no
    /// request goes out directly.
    #[tokio::test]
    async fn the_sdk_transport_goes_through_the_proxy() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let proxy = Proxy::all(
            registry_client::ProxyUrl::parse(&format!("http://u:pw-entra@{addr}")).unwrap(),
        );
        let transport = ReqwestTransport::new(&proxy).unwrap();
        let url = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
            .parse()
            .unwrap();
        let request = Request::new(url, Method::Post);
        let err = transport.execute_request(&request).await.unwrap_err();
        let asked = seen.await.unwrap();
        assert!(
            asked.starts_with("CONNECT login.microsoftonline.com:443 HTTP/1.1"),
            "{asked}"
        );
        assert!(
            asked
                .to_ascii_lowercase()
                .contains("proxy-authorization: basic"),
            "{asked}"
        );
        assert!(!format!("{err:?}").contains("pw-entra"), "{err:?}");

        // With no proxy, nothing reaches the listener's address.
        assert!(ReqwestTransport::new(&Proxy::none()).is_ok());
    }

    #[tokio::test]
    async fn a_token_from_an_unset_variable_names_the_variable_not_a_value() {
        let err = TokenSource::Env("MIRROR_TEST_SURELY_UNSET_TOKEN".into())
            .token(None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "getting a Microsoft Entra token from $MIRROR_TEST_SURELY_UNSET_TOKEN: it is not set"
        );
    }
}
