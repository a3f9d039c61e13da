//! The Azure Resource Manager (ARM) REST client the AzureML preset needs:
//! read a workspace and a registry, and have a registry import an image
//! itself (a server-side copy), following the long-running operation to
//! its end.
//!
//! What it speaks, from the public REST API specifications
//! (github.com/Azure/azure-rest-api-specs):
//!
//! - `Workspaces_Get`, api-version [`WORKSPACE_API_VERSION`] (stable),
//!   `specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2024-04-01/workspaceRP.json`:
//!   `GET /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`
//!   → `location`, `properties.containerRegistry` (an ARM resource id).
//! - `Registries_Get` and `Registries_ImportImage`, api-version
//!   [`REGISTRY_API_VERSION`] (stable),
//!   `specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/stable/2023-07-01/containerregistry.json`:
//!   `GET …/Microsoft.ContainerRegistry/registries/{name}` →
//!   `properties.loginServer`; `POST …/registries/{name}/importImage` with
//!   `ImportImageParameters` (`source: {registryUri | resourceId,
//!   sourceImage, credentials?: {username, password}}`, `targetTags`,
//!   `mode: NoForce | Force`) → 200 (done) or 202 with `Location`
//!   (`x-ms-long-running-operation`, `final-state-via: location`).
//! - ARM's asynchronous operations (the Resource Manager RPC, "Track
//!   asynchronous Azure operations"): a 201/202 answer carries
//!   `Azure-AsyncOperation` and/or `Location` and maybe `Retry-After`
//!   (seconds). With both, `Azure-AsyncOperation` is polled: it answers 200
//!   with `{status: InProgress | Succeeded | Failed | Canceled, error?:
//!   {code, message}}`. `Location` answers 202 while running, 200 or 204
//!   when done, and an error status with `{error: {code, message}}` when
//!   the operation failed.
//! - Errors everywhere: `{error: {code, message}}` (older services put
//!   `code` and `message` at the top level).
//!
//! Everything is bounded: each answer's body ([`ArmLimits::max_body`]),
//! each wait (a `Retry-After` is clamped to [`ArmLimits::min_poll`] ..
//! [`ArmLimits::max_poll`] and never runs past the caller's deadline), the
//! retries of a throttled (429) or unavailable (503) request (within the
//! deadline), and every message taken from an answer. The bearer token is
//! a [`Secret`]: it goes only into the Authorization header of requests to
//! the management endpoint (a polling URL on another host is refused, not
//! followed), never into a log line, an error or `Debug`; URLs are shown
//! without their query (ARM signs operation URLs there).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use registry_client::{parse_retry_after, Secret, Url};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

/// `Microsoft.MachineLearningServices/workspaces`, stable.
pub const WORKSPACE_API_VERSION: &str = "2024-04-01";
/// `Microsoft.ContainerRegistry/registries` (GET and importImage), stable.
pub const REGISTRY_API_VERSION: &str = "2023-07-01";

const AZURE_ASYNC_OPERATION: &str = "azure-asyncoperation";

/// GETs asked again after no answer (connection dropped, refused, reset).
const MAX_DROPPED: u32 = 3;

/// Which Azure cloud's Resource Manager to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloud {
    /// `AzureCloud`: management.azure.com.
    Public,
    /// `AzureChinaCloud`: management.chinacloudapi.cn.
    China,
    /// `AzureUSGovernment`: management.usgovcloudapi.net.
    UsGovernment,
    /// Another endpoint by its address (Azure Stack, a stand-in).
    Custom(Url),
}

impl std::str::FromStr for Cloud {
    type Err = String;
    /// The Azure CLI's cloud names (`az cloud list`), any case, or the
    /// endpoint's address: `https://…`, or `http://` on loopback only (a
    /// bearer token never crosses a network in the clear).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "azurecloud" | "public" => return Ok(Cloud::Public),
            "azurechinacloud" | "china" => return Ok(Cloud::China),
            "azureusgovernment" | "usgov" => return Ok(Cloud::UsGovernment),
            _ => {}
        }
        let url = Url::parse(t).map_err(|_| {
            format!(
                "{t:?}: use AzureCloud, AzureChinaCloud, AzureUSGovernment or the Resource Manager endpoint's https:// address"
            )
        })?;
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "{t:?}: the Resource Manager endpoint must be https://"
                ))
            }
        }
        if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{t:?}: an endpoint is a host, without credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{t:?}: an endpoint has no query or fragment"));
        }
        Ok(Cloud::Custom(url))
    }
}

impl Cloud {
    /// The Resource Manager endpoint, ending in `/`.
    pub fn endpoint(&self) -> Url {
        let text = match self {
            Cloud::Public => "https://management.azure.com/",
            Cloud::China => "https://management.chinacloudapi.cn/",
            Cloud::UsGovernment => "https://management.usgovcloudapi.net/",
            Cloud::Custom(url) => {
                let mut url = url.clone();
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                return url;
            }
        };
        // One of the three literals above, never outside input.
        Url::parse(text).expect("a constant URL parses")
    }

    /// The token scope for this endpoint: `https://management.azure.com/.default`.
    pub fn scope(&self) -> String {
        format!("{}.default", self.endpoint())
    }
}

/// Where the ARM bearer token comes from: the CLI plugs in the Entra
/// credential sources (`azure-cli`, `azure-sdk`, `env:VAR`); tests a fixed
/// token. Called once per client, with [`Cloud::scope`]; again only when
/// ARM says the token expired. Errors name the source, never a token.
#[async_trait::async_trait]
pub trait TokenProvider: Send + Sync {
    async fn token(&self, scope: &str) -> Result<Secret, String>;
}

/// A token given as it is (`env:VAR` already read, or a test's).
pub struct StaticToken(pub Secret);

#[async_trait::async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self, _scope: &str) -> Result<Secret, String> {
        Ok(self.0.clone())
    }
}

/// The bounds on every exchange with ARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmLimits {
    /// The largest answer body read (a workspace is a few KiB).
    pub max_body: usize,
    /// The shortest wait between polls, whatever `Retry-After` says.
    pub min_poll: Duration,
    /// The longest wait between polls (and after a 429), whatever
    /// `Retry-After` says.
    pub max_poll: Duration,
    /// The wait between polls when ARM gives no `Retry-After`.
    pub default_poll: Duration,
    /// The most answers of 429/503 taken for one request before giving up
    /// (the deadline usually comes first).
    pub max_throttled: u32,
    /// The deadline for a lookup (workspace, registry) and for the start
    /// of an import.
    pub request_deadline: Duration,
}

impl Default for ArmLimits {
    fn default() -> Self {
        ArmLimits {
            max_body: 1024 * 1024,
            min_poll: Duration::from_secs(1),
            max_poll: Duration::from_secs(120),
            default_poll: Duration::from_secs(5),
            max_throttled: 20,
            request_deadline: Duration::from_secs(120),
        }
    }
}

impl ArmLimits {
    /// A `Retry-After` (or the default) clamped to the bounds.
    pub fn poll_wait(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.default_poll)
            .clamp(self.min_poll, self.max_poll.max(self.min_poll))
    }
}

/// What went wrong, for callers that decide by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmErrorKind {
    /// 401/403: the token was refused or lacks a role.
    Auth,
    /// 404: no such resource (or operation).
    NotFound,
    /// 429/503 until the deadline, or more often than allowed.
    Throttled,
    /// The long-running operation ended `Failed` or `Canceled`.
    OperationFailed,
    /// The operation was still running at the deadline.
    Deadline,
    /// Any other error status.
    Http,
    /// No answer: connection, TLS, timeout.
    Transport,
    /// The token provider failed.
    Token,
    /// An answer the API does not allow (bad JSON, no polling URL, a
    /// polling URL on another host, too large).
    BadAnswer,
    /// The workspace has no container registry attached.
    NoRegistry,
}

/// An error from ARM, naming what was asked (`workspace ws in resource
/// group rg, subscription …`) and, when ARM said, its status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ArmError {
    pub what: String,
    pub kind: ArmErrorKind,
    pub status: Option<u16>,
    /// ARM's error code (`AuthorizationFailed`, `ResourceNotFound`, …).
    pub code: Option<String>,
    /// The whole sentence after `what`.
    pub detail: String,
}

impl ArmError {
    pub fn new(what: impl Into<String>, kind: ArmErrorKind, detail: impl Into<String>) -> Self {
        ArmError {
            what: what.into(),
            kind,
            status: None,
            code: None,
            detail: detail.into(),
        }
    }

    /// The same error with `secret` (a source password ARM might echo)
    /// replaced wherever it appears.
    pub fn redacting(mut self, secret: &Secret) -> Self {
        if secret.expose().len() >= 4 {
            self.detail = self.detail.replace(secret.expose(), "<redacted>");
            self.what = self.what.replace(secret.expose(), "<redacted>");
        }
        self
    }
}

/// ARM's `{error: {code, message}}`, or the older top-level `code` and
/// `message`; each bounded and on one line.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Inner {
        code: Option<Value>,
        message: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Inner>,
        code: Option<Value>,
        message: Option<Value>,
    }
    let Ok(outer) = serde_json::from_slice::<Outer>(body) else {
        return (None, None);
    };
    let (code, message) = match outer.error {
        Some(inner) => (inner.code, inner.message),
        None => (outer.code, outer.message),
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(one_line(&s, 120)).filter(|s| !s.is_empty()),
        _ => None,
    };
    let code = text(code);
    let message = match message {
        Some(Value::String(s)) => Some(one_line(&s, 600)).filter(|s| !s.is_empty()),
        _ => None,
    };
    (code, message)
}

/// `text` on one line, without control characters, at most `max` chars.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

/// The state of an asynchronous operation, as its status resource says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    /// `InProgress`, or any state not terminal (`Accepted`, `Running`, …:
    /// ARM lets resource providers name their own).
    Running(String),
    Succeeded,
    Failed {
        code: Option<String>,
        message: Option<String>,
    },
    Canceled {
        code: Option<String>,
        message: Option<String>,
    },
}

/// An `Azure-AsyncOperation` status body: `{status, error?: {code, message}}`.
pub fn parse_operation_status(body: &[u8]) -> Result<OperationStatus, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the status is not JSON: {e}"))?;
    let status = value
        .get("status")
        .and_then(Value::as_str)
        .ok_or("the status has no \"status\"")?;
    let (code, message) = parse_error_body(body);
    Ok(match status.to_ascii_lowercase().as_str() {
        "succeeded" => OperationStatus::Succeeded,
        "failed" => OperationStatus::Failed { code, message },
        "canceled" | "cancelled" => OperationStatus::Canceled { code, message },
        _ => OperationStatus::Running(one_line(status, 40)),
    })
}

/// An ARM resource id:
/// `/subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`
/// (the keys in any case, as ARM itself writes them both ways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    /// `Microsoft.ContainerRegistry`.
    pub namespace: String,
    /// `registries`.
    pub resource_type: String,
    pub name: String,
}

impl ResourceId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{:?} is not an ARM resource id ({why})",
                one_line(text, 300)
            )
        };
        let parts: Vec<&str> = text.trim().trim_matches('/').split('/').collect();
        if parts.len() != 8 {
            return Err(bad(
                "expected /subscriptions/ID/resourceGroups/RG/providers/NAMESPACE/TYPE/NAME",
            ));
        }
        let keys = [
            (0, "subscriptions"),
            (2, "resourceGroups"),
            (4, "providers"),
        ];
        for (i, key) in keys {
            if !parts[i].eq_ignore_ascii_case(key) {
                return Err(bad(&format!("{key:?} expected, found {:?}", parts[i])));
            }
        }
        for (i, part) in parts.iter().enumerate() {
            check_name(part).map_err(|e| bad(&format!("segment {}: {e}", i + 1)))?;
        }
        Ok(ResourceId {
            subscription: parts[1].into(),
            resource_group: parts[3].into(),
            namespace: parts[5].into(),
            resource_type: parts[6].into(),
            name: parts[7].into(),
        })
    }

    /// A container registry's id.
    pub fn registry(subscription: &str, resource_group: &str, name: &str) -> Self {
        ResourceId {
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            namespace: "Microsoft.ContainerRegistry".into(),
            resource_type: "registries".into(),
            name: name.into(),
        }
    }

    /// A Machine Learning workspace's id.
    pub fn workspace(subscription: &str, resource_group: &str, name: &str) -> Self {
        ResourceId {
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            namespace: "Microsoft.MachineLearningServices".into(),
            resource_type: "workspaces".into(),
            name: name.into(),
        }
    }

    /// Whether it names this kind of resource (`Microsoft.ContainerRegistry`,
    /// `registries`), in any case.
    pub fn is(&self, namespace: &str, resource_type: &str) -> bool {
        self.namespace.eq_ignore_ascii_case(namespace)
            && self.resource_type.eq_ignore_ascii_case(resource_type)
    }

    /// Every name in it is one ARM could hold (checked before a URL is built).
    pub fn check(&self) -> Result<(), String> {
        for (what, v) in [
            ("subscription", &self.subscription),
            ("resource group", &self.resource_group),
            ("provider namespace", &self.namespace),
            ("resource type", &self.resource_type),
            ("name", &self.name),
        ] {
            check_name(v).map_err(|e| format!("{what} {:?}: {e}", one_line(v, 100)))?;
        }
        Ok(())
    }

    /// `registry contoso in resource group rg, subscription …`.
    pub fn describe(&self, noun: &str) -> String {
        format!(
            "{noun} {} in resource group {}, subscription {}",
            self.name, self.resource_group, self.subscription
        )
    }

    fn segments(&self) -> [&str; 8] {
        [
            "subscriptions",
            &self.subscription,
            "resourceGroups",
            &self.resource_group,
            "providers",
            &self.namespace,
            &self.resource_type,
            &self.name,
        ]
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in self.segments() {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

/// A name that can be one segment of an ARM path.
fn check_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 260 {
        return Err("longer than 260 characters");
    }
    if s == "." || s == ".." {
        return Err("a dot path segment");
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '%'))
    {
        return Err("a character ARM names do not have");
    }
    Ok(())
}

/// What the workspace says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: ResourceId,
    /// `location`: the region (`eastus`).
    pub location: String,
    /// `properties.containerRegistry`, when a registry is attached.
    pub container_registry: Option<ResourceId>,
}

/// What a container registry says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub id: ResourceId,
    /// `properties.loginServer`: `contoso.azurecr.io`.
    pub login_server: String,
    pub location: Option<String>,
}

/// `mode` of an import: `Force` overwrites the target tags (what a
/// mirror does when the source moved); `NoForce` fails on any that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    #[default]
    Force,
    NoForce,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Force => "Force",
            ImportMode::NoForce => "NoForce",
        }
    }
}

/// Where an import reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportFrom {
    /// `registryUri`: a registry's address (`mcr.microsoft.com`).
    RegistryUri(String),
    /// `resourceId`: an Azure Container Registry, found by ARM (no
    /// credentials needed when the caller may read it).
    ResourceId(ResourceId),
}

/// `ImportImageParameters`. `Debug` shows the password redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub from: ImportFrom,
    /// `sourceImage`: `repo:tag` or `repo@sha256:…`.
    pub source_image: String,
    /// `source.credentials`, for a private registry by address.
    pub credentials: Option<(String, Secret)>,
    /// `targetTags`: `repo:tag` each.
    pub target_tags: Vec<String>,
    pub mode: ImportMode,
}

impl ImportRequest {
    /// The JSON body, the one place the password is written out.
    pub fn body(&self) -> Value {
        let mut source = serde_json::Map::new();
        match &self.from {
            ImportFrom::RegistryUri(uri) => {
                source.insert("registryUri".into(), json!(uri));
            }
            ImportFrom::ResourceId(id) => {
                source.insert("resourceId".into(), json!(id.to_string()));
            }
        }
        source.insert("sourceImage".into(), json!(self.source_image));
        if let Some((username, password)) = &self.credentials {
            source.insert(
                "credentials".into(),
                json!({"username": username, "password": password.expose()}),
            );
        }
        json!({
            "source": source,
            "targetTags": self.target_tags,
            "mode": self.mode.as_str(),
        })
    }

    /// `mcr.microsoft.com/azureml/…:eastus-stable`, for messages.
    pub fn source_text(&self) -> String {
        match &self.from {
            ImportFrom::RegistryUri(uri) => format!("{uri}/{}", self.source_image),
            ImportFrom::ResourceId(id) => format!("{} (registry {})", self.source_image, id.name),
        }
    }
}

/// A started import (or any long-running operation): where to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// What the operation does, for messages.
    pub what: String,
    pub azure_async_operation: Option<Url>,
    pub location: Option<Url>,
    /// The first wait, from the 202's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Operation {
    /// The operation's id, as ARM names it: the last segment of its status
    /// URL (`registries-0000…`).
    pub fn id(&self) -> Option<String> {
        self.azure_async_operation
            .as_ref()
            .or(self.location.as_ref())
            .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
            .filter(|s| !s.is_empty())
    }
}

/// How an import (or operation) ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The operation's id (none when ARM answered 200 at once).
    pub operation: Option<String>,
    /// How many status requests it took.
    pub polls: u32,
}

/// An answer, read within the limits.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The client: one endpoint, one token (fetched once), one `reqwest`
/// client (the caller's, with its proxy and TLS settings; it should not
/// follow redirects).
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    scope: String,
    tokens: Arc<dyn TokenProvider>,
    token: tokio::sync::Mutex<Option<Secret>>,
    limits: ArmLimits,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("scope", &self.scope)
            .field("token", &"<redacted>")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A `reqwest` client fit for ARM when the caller has none: no proxy
/// (see [`super::entra::http_client`] for one through a proxy).
pub fn default_http_client() -> Result<reqwest::Client, String> {
    super::entra::http_client(&registry_client::Proxy::none())
}

impl ArmClient {
    pub fn new(http: reqwest::Client, cloud: &Cloud, tokens: Arc<dyn TokenProvider>) -> Self {
        ArmClient {
            http,
            endpoint: cloud.endpoint(),
            scope: cloud.scope(),
            tokens,
            token: tokio::sync::Mutex::new(None),
            limits: ArmLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: ArmLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &ArmLimits {
        &self.limits
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `Workspaces_Get`.
    pub async fn workspace(&self, id: &ResourceId) -> Result<Workspace, ArmError> {
        let what = id.describe("workspace");
        let url = self.resource_url(id, WORKSPACE_API_VERSION, None, &what)?;
        let deadline = Instant::now() + self.limits.request_deadline;
        let answer = self.send(Method::GET, &url, None, &what, deadline).await?;
        let value = expect_json(answer, &what, id)?;
        let location = value
            .get("location")
            .and_then(Value::as_str)
            .map(|s| one_line(s, 80))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ArmError::new(
                    &what,
                    ArmErrorKind::BadAnswer,
                    "ARM's answer has no \"location\"",
                )
            })?;
        let container_registry = match value
            .pointer("/properties/containerRegistry")
            .and_then(Value::as_str)
            .map(str::trim)
        {
            None | Some("") => None,
            Some(text) => {
                let rid = ResourceId::parse(text).map_err(|e| {
                    ArmError::new(
                        &what,
                        ArmErrorKind::BadAnswer,
                        format!("properties.containerRegistry: {e}"),
                    )
                })?;
                if !rid.is("Microsoft.ContainerRegistry", "registries") {
                    return Err(ArmError::new(
                        &what,
                        ArmErrorKind::BadAnswer,
                        format!(
                            "properties.containerRegistry names a {}/{}, not a container registry",
                            rid.namespace, rid.resource_type
                        ),
                    ));
                }
                Some(rid)
            }
        };
        Ok(Workspace {
            id: id.clone(),
            location,
            container_registry,
        })
    }

    /// `Registries_Get`.
    pub async fn registry(&self, id: &ResourceId) -> Result<Registry, ArmError> {
        let what = id.describe("container registry");
        let url = self.resource_url(id, REGISTRY_API_VERSION, None, &what)?;
        let deadline = Instant::now() + self.limits.request_deadline;
        let answer = self.send(Method::GET, &url, None, &what, deadline).await?;
        let value = expect_json(answer, &what, id)?;
        let login_server = value
            .pointer("/properties/loginServer")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s.len() <= 255 && !s.contains(['/', ' ', '@']))
            .ok_or_else(|| {
                ArmError::new(
                    &what,
                    ArmErrorKind::BadAnswer,
                    "ARM's answer has no usable properties.loginServer",
                )
            })?;
        Ok(Registry {
            id: id.clone(),
            login_server,
            location: value
                .get("location")
                .and_then(Value::as_str)
                .map(|s| one_line(s, 80)),
        })
    }

    /// `Registries_ImportImage`: the registry `registry` copies the image
    /// itself. `Ok(None)`: done at once (200); `Ok(Some(op))`: follow it
    /// with [`ArmClient::wait`].
    pub async fn begin_import(
        &self,
        registry: &ResourceId,
        request: &ImportRequest,
        deadline: Instant,
    ) -> Result<Option<Operation>, ArmError> {
        let what = format!(
            "importing {} into {} as {}",
            request.source_text(),
            registry.name,
            request.target_tags.join(", ")
        );
        let url = self.resource_url(registry, REGISTRY_API_VERSION, Some("importImage"), &what)?;
        let body = serde_json::to_vec(&request.body()).map_err(|e| {
            ArmError::new(
                &what,
                ArmErrorKind::BadAnswer,
                format!("writing the request: {e}"),
            )
        })?;
        let answer = self
            .send(Method::POST, &url, Some(body), &what, deadline)
            .await?;
        match answer.status.as_u16() {
            200 | 204 => Ok(None),
            201 | 202 => {
                let op = self.operation_from(&answer, &what)?;
                Ok(Some(op))
            }
            _ => Err(status_error(&what, &answer, Some(registry))),
        }
    }

    /// Follows `op` until it ends or `deadline` passes, waiting between
    /// polls as `Retry-After` says (bounded).
    pub async fn wait(&self, op: &Operation, deadline: Instant) -> Result<Finished, ArmError> {
        let what = op.what.clone();
        let started = Instant::now();
        let mut next_wait = op.retry_after;
        let mut polls = 0u32;
        let mut last_state = "InProgress".to_string();
        // With both, Azure-AsyncOperation is the one to poll (ARM's rule).
        let (url, via_async) = match (&op.azure_async_operation, &op.location) {
            (Some(u), _) => (u.clone(), true),
            (None, Some(u)) => (u.clone(), false),
            (None, None) => {
                return Err(ArmError::new(
                    &what,
                    ArmErrorKind::BadAnswer,
                    "no status URL to poll",
                ))
            }
        };
        let mut url = url;
        loop {
            let wait = self.limits.poll_wait(next_wait);
            let now = Instant::now();
            if now + wait > deadline {
                return Err(ArmError::new(
                    &what,
                    ArmErrorKind::Deadline,
                    format!(
                        "still {last_state} at the deadline, {} after it was accepted ({polls} status requests); it may yet finish in Azure: {}",
                        human(now.saturating_duration_since(started)),
                        shown(&url)
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
            polls += 1;
            let answer = self.send(Method::GET, &url, None, &what, deadline).await?;
            let retry_after = retry_after(&answer.headers);
            if via_async {
                if answer.status != StatusCode::OK {
                    return Err(status_error(&what, &answer, None));
                }
                match parse_operation_status(&answer.body)
                    .map_err(|e| ArmError::new(&what, ArmErrorKind::BadAnswer, e))?
                {
                    OperationStatus::Succeeded => {
                        return Ok(Finished {
                            operation: op.id(),
                            polls,
                        })
                    }
                    OperationStatus::Running(state) => {
                        last_state = state;
                        next_wait = retry_after;
                    }
                    OperationStatus::Failed { code, message } => {
                        return Err(failed(&what, "Failed", code, message))
                    }
                    OperationStatus::Canceled { code, message } => {
                        return Err(failed(&what, "Canceled", code, message))
                    }
                }
            } else {
                match answer.status.as_u16() {
                    202 => {
                        // A new Location, when given, is the one to follow.
                        if let Some(next) =
                            self.header_url(&answer.headers, LOCATION.as_str(), &what)?
                        {
                            url = next;
                        }
                        next_wait = retry_after;
                    }
                    200 | 201 | 204 => {
                        // A body with a status may still say it failed.
                        if let Ok(status) = parse_operation_status(&answer.body) {
                            match status {
                                OperationStatus::Failed { code, message } => {
                                    return Err(failed(&what, "Failed", code, message))
                                }
                                OperationStatus::Canceled { code, message } => {
                                    return Err(failed(&what, "Canceled", code, message))
                                }
                                _ => {}
                            }
                        }
                        return Ok(Finished {
                            operation: op.id(),
                            polls,
                        });
                    }
                    401 | 403 | 404 => return Err(status_error(&what, &answer, None)),
                    _ => {
                        let (code, message) = parse_error_body(&answer.body);
                        let mut e = failed(&what, "Failed", code, message);
                        e.status = Some(answer.status.as_u16());
                        return Err(e);
                    }
                }
            }
        }
    }

    /// `begin_import` then `wait`, under one deadline.
    pub async fn import(
        &self,
        registry: &ResourceId,
        request: &ImportRequest,
        deadline: Instant,
    ) -> Result<Finished, ArmError> {
        match self.begin_import(registry, request, deadline).await? {
            None => Ok(Finished {
                operation: None,
                polls: 0,
            }),
            Some(op) => self.wait(&op, deadline).await,
        }
    }

    fn operation_from(&self, answer: &Answer, what: &str) -> Result<Operation, ArmError> {
        let azure_async_operation =
            self.header_url(&answer.headers, AZURE_ASYNC_OPERATION, what)?;
        let location = self.header_url(&answer.headers, LOCATION.as_str(), what)?;
        if azure_async_operation.is_none() && location.is_none() {
            return Err(ArmError::new(
                what,
                ArmErrorKind::BadAnswer,
                format!(
                    "ARM accepted it ({}) but gave neither Azure-AsyncOperation nor Location to follow",
                    answer.status.as_u16()
                ),
            ));
        }
        Ok(Operation {
            what: what.to_string(),
            azure_async_operation,
            location,
            retry_after: retry_after(&answer.headers),
        })
    }

    /// A polling URL from a header: absolute, or relative to the endpoint,
    /// and on the endpoint's own origin (the token goes nowhere else).
    fn header_url(
        &self,
        headers: &HeaderMap,
        name: &str,
        what: &str,
    ) -> Result<Option<Url>, ArmError> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        let bad = |why: String| {
            ArmError::new(
                what,
                ArmErrorKind::BadAnswer,
                format!("the {name} header {why}"),
            )
        };
        let text = value
            .to_str()
            .map_err(|_| bad("is not text".into()))?
            .trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.len() > 8192 {
            return Err(bad("is longer than 8 KiB".into()));
        }
        let url = self
            .endpoint
            .join(text)
            .map_err(|e| bad(format!("is not a URL ({e})")))?;
        if url.origin() != self.endpoint.origin() {
            return Err(bad(format!(
                "points at {}, not at the Resource Manager endpoint {}: not sending the token there",
                url.host_str().unwrap_or("?"),
                self.endpoint.host_str().unwrap_or("?")
            )));
        }
        Ok(Some(url))
    }

    /// `{endpoint}/subscriptions/…/{name}[/{action}]?api-version=…`, each
    /// segment encoded as one.
    fn resource_url(
        &self,
        id: &ResourceId,
        api_version: &str,
        action: Option<&str>,
        what: &str,
    ) -> Result<Url, ArmError> {
        id.check()
            .map_err(|e| ArmError::new(what, ArmErrorKind::BadAnswer, e))?;
        let mut url = self.endpoint.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|_| {
                ArmError::new(
                    what,
                    ArmErrorKind::BadAnswer,
                    "the endpoint cannot hold a path",
                )
            })?;
            segments.pop_if_empty();
            segments.extend(id.segments());
            if let Some(a) = action {
                segments.push(a);
            }
        }
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    async fn bearer(&self, refresh: bool) -> Result<Secret, ArmError> {
        let mut slot = self.token.lock().await;
        if refresh {
            *slot = None;
        }
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let token = self.tokens.token(&self.scope).await.map_err(|e| {
            ArmError::new(
                format!("getting a token for {}", self.scope),
                ArmErrorKind::Token,
                one_line(&e, 600),
            )
        })?;
        if token.is_empty() {
            return Err(ArmError::new(
                format!("getting a token for {}", self.scope),
                ArmErrorKind::Token,
                "the token is empty",
            ));
        }
        *slot = Some(token.clone());
        Ok(token)
    }

    /// One request, with the token, retried after 429/503 as `Retry-After`
    /// says within the deadline, and once with a new token when ARM says
    /// the token expired. Any other answer is returned for the caller to
    /// judge; no answer is a `Transport` error.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        what: &str,
        deadline: Instant,
    ) -> Result<Answer, ArmError> {
        let mut throttled = 0u32;
        let mut refreshed = false;
        let mut dropped = 0u32;
        loop {
            let token = self.bearer(false).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ArmError::new(
                    what,
                    ArmErrorKind::Deadline,
                    format!("the deadline passed before {method} {}", shown(url)),
                ));
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                .header(ACCEPT, "application/json");
            if let Some(b) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let sent = tokio::time::timeout(remaining, async {
                let response = request.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = read_limited(response, self.limits.max_body).await?;
                Ok::<_, ReadError>((status, headers, body))
            })
            .await;
            let (status, headers, body) = match sent {
                Err(_) => {
                    return Err(ArmError::new(
                        what,
                        ArmErrorKind::Deadline,
                        format!("no answer to {method} {} before the deadline", shown(url)),
                    ))
                }
                Ok(Err(ReadError::Http(e))) => {
                    // A GET (a lookup, a poll) is asked again after a dropped
                    // connection, a few times within the deadline: the
                    // operation goes on in Azure meanwhile. A POST is not: it
                    // may have been taken.
                    dropped += 1;
                    let wait = self.limits.min_poll * 2u32.pow(dropped.min(6));
                    if method == Method::GET
                        && dropped <= MAX_DROPPED
                        && Instant::now() + wait < deadline
                    {
                        tracing::debug!(url = %shown(url), error = %error_chain(&e.without_url()), "ARM request failed; asking again");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(ArmError::new(
                        what,
                        ArmErrorKind::Transport,
                        format!("{method} {}: {}", shown(url), error_chain(&e.without_url())),
                    ));
                }
                Ok(Err(ReadError::TooLarge(limit))) => {
                    return Err(ArmError::new(
                        what,
                        ArmErrorKind::BadAnswer,
                        format!(
                            "the answer to {method} {} is larger than {limit} bytes",
                            shown(url)
                        ),
                    ))
                }
                Ok(Ok(v)) => v,
            };
            tracing::debug!(%method, url = %shown(url), status = status.as_u16(), "ARM");
            let answer = Answer {
                status,
                headers,
                body,
            };
            match status.as_u16() {
                429 | 503 => {
                    throttled += 1;
                    let wait = self
                        .limits
                        .poll_wait(retry_after(&answer.headers).or(Some(self.limits.min_poll)));
                    if throttled > self.limits.max_throttled || Instant::now() + wait > deadline {
                        let (code, message) = parse_error_body(&answer.body);
                        let mut e = ArmError::new(
                            what,
                            ArmErrorKind::Throttled,
                            format!(
                                "{} {} ({}{}), {throttled} times; gave up{}",
                                if status.as_u16() == 429 {
                                    "throttled"
                                } else {
                                    "unavailable"
                                },
                                status.as_u16(),
                                code.clone().unwrap_or_else(|| "no code".into()),
                                message.map(|m| format!(": {m}")).unwrap_or_default(),
                                if throttled > self.limits.max_throttled {
                                    String::new()
                                } else {
                                    format!(" before the deadline (Retry-After {})", human(wait))
                                }
                            ),
                        );
                        e.status = Some(status.as_u16());
                        e.code = code;
                        return Err(e);
                    }
                    tracing::debug!(url = %shown(url), wait = ?wait, "ARM throttled; waiting");
                    tokio::time::sleep(wait).await;
                }
                401 if !refreshed && {
                    let (code, _) = parse_error_body(&answer.body);
                    code.as_deref() == Some("ExpiredAuthenticationToken")
                } =>
                {
                    refreshed = true;
                    self.bearer(true).await?;
                }
                _ => return Ok(answer),
            }
        }
    }
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge(usize),
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> Self {
        ReadError::Http(e)
    }
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    one_line(&text, 600)
}

/// A URL for messages: no query (ARM signs operation URLs there).
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// `5m 0s`, `1.5s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if d.subsec_millis() > 0 && secs < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{secs}s")
    }
}

fn failed(what: &str, state: &str, code: Option<String>, message: Option<String>) -> ArmError {
    let mut e = ArmError::new(
        what,
        ArmErrorKind::OperationFailed,
        format!(
            "the operation ended {state} ({}){}",
            code.clone().unwrap_or_else(|| "no code".into()),
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
    );
    e.code = code;
    e
}

/// An error status, named for what it means.
fn status_error(what: &str, answer: &Answer, resource: Option<&ResourceId>) -> ArmError {
    let status = answer.status.as_u16();
    let (code, message) = parse_error_body(&answer.body);
    let code_text = code.clone().unwrap_or_else(|| "no code".into());
    let message_text = message.map(|m| format!(": {m}")).unwrap_or_default();
    let (kind, detail) = match status {
        401 => (
            ArmErrorKind::Auth,
            format!("the token was refused ({status} {code_text}){message_text}"),
        ),
        403 => (
            ArmErrorKind::Auth,
            format!("not authorized ({status} {code_text}){message_text}"),
        ),
        404 => (
            ArmErrorKind::NotFound,
            match resource {
                Some(id) => format!(
                    "not found ({status} {code_text}){message_text} (check the name, the resource group {} and the subscription {})",
                    id.resource_group, id.subscription
                ),
                None => format!("not found ({status} {code_text}){message_text}"),
            },
        ),
        _ => (
            ArmErrorKind::Http,
            format!("ARM answered {status} ({code_text}){message_text}"),
        ),
    };
    let mut e = ArmError::new(what, kind, detail);
    e.status = Some(status);
    e.code = code;
    e
}

fn expect_json(answer: Answer, what: &str, id: &ResourceId) -> Result<Value, ArmError> {
    if answer.status != StatusCode::OK {
        return Err(status_error(what, &answer, Some(id)));
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        ArmError::new(
            what,
            ArmErrorKind::BadAnswer,
            format!("ARM's answer is not JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY_ID: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234/providers/Microsoft.ContainerRegistry/registries/testRegistry";

    #[test]
    fn resource_ids_parse_in_either_case_and_print_back() {
        let id = ResourceId::parse(REGISTRY_ID).unwrap();
        assert_eq!(id.subscription, "00000000-1111-2222-3333-444444444444");
        assert_eq!(id.resource_group, "workspace-1234");
        assert_eq!(id.name, "testRegistry");
        assert!(id.is("microsoft.containerregistry", "REGISTRIES"));
        assert_eq!(id.to_string(), REGISTRY_ID);
        // az prints lower-case keys and provider names.
        let lower = ResourceId::parse(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerregistry/registries/acr/",
        )
        .unwrap();
        assert!(lower.is("Microsoft.ContainerRegistry", "registries"));
        assert_eq!(lower.name, "acr");
    }

    #[test]
    fn resource_ids_that_are_not_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "expected /subscriptions"),
            ("/subscriptions/s/resourceGroups/rg", "expected /subscriptions"),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/a/b",
                "expected",
            ),
            (
                "/tenants/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/a",
                "\"subscriptions\" expected",
            ),
            (
                "/subscriptions/s/resourceGroups/../providers/Microsoft.ContainerRegistry/registries/a",
                "dot path segment",
            ),
            (
                "/subscriptions/s/resourceGroups/r?g/providers/Microsoft.ContainerRegistry/registries/a",
                "character",
            ),
        ] {
            let err = ResourceId::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn error_bodies_give_code_and_message_on_one_bounded_line() {
        let body = br#"{"error":{"code":"AuthorizationFailed","message":"The client 'x' does not have\nauthorization","details":[]}}"#;
        assert_eq!(
            parse_error_body(body),
            (
                Some("AuthorizationFailed".into()),
                Some("The client 'x' does not have authorization".into())
            )
        );
        assert_eq!(
            parse_error_body(br#"{"code":"ResourceNotFound","message":"gone"}"#),
            (Some("ResourceNotFound".into()), Some("gone".into()))
        );
        assert_eq!(parse_error_body(b"<html>502</html>"), (None, None));
        assert_eq!(parse_error_body(br#"{"error":{"code":7}}"#), (None, None));
        let long = format!(
            r#"{{"error":{{"code":"X","message":"{}"}}}}"#,
            "a".repeat(5000)
        );
        let (_, m) = parse_error_body(long.as_bytes());
        assert!(m.unwrap().chars().count() <= 601);
    }

    #[test]
    fn async_status_bodies() {
        assert_eq!(
            parse_operation_status(br#"{"status":"InProgress"}"#),
            Ok(OperationStatus::Running("InProgress".into()))
        );
        assert_eq!(
            parse_operation_status(br#"{"status":"Succeeded","startTime":"x"}"#),
            Ok(OperationStatus::Succeeded)
        );
        assert_eq!(
            parse_operation_status(
                br#"{"status":"Failed","error":{"code":"ImportImageFailed","message":"no such tag"}}"#
            ),
            Ok(OperationStatus::Failed {
                code: Some("ImportImageFailed".into()),
                message: Some("no such tag".into())
            })
        );
        assert!(matches!(
            parse_operation_status(br#"{"status":"Canceled"}"#),
            Ok(OperationStatus::Canceled { .. })
        ));
        // A provider's own non-terminal state is still running.
        assert_eq!(
            parse_operation_status(br#"{"status":"Accepted"}"#),
            Ok(OperationStatus::Running("Accepted".into()))
        );
        assert!(parse_operation_status(b"{}").is_err());
        assert!(parse_operation_status(b"not json").is_err());
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_bounded() {
        let limits = ArmLimits::default();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        // An HTTP date (here one long past: no wait).
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let epoch_plus = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", epoch_plus(784_111_747)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", epoch_plus(1_709_164_790)),
            Some(Duration::from_secs(10))
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "-5",
            "",
        ] {
            assert_eq!(parse_retry_after(bad, SystemTime::now()), None, "{bad}");
        }
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        assert_eq!(limits.poll_wait(None), limits.default_poll);
        assert_eq!(limits.poll_wait(Some(Duration::ZERO)), limits.min_poll);
        assert_eq!(
            limits.poll_wait(Some(Duration::from_secs(86_400))),
            limits.max_poll
        );
        assert_eq!(
            limits.poll_wait(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn clouds_by_name_or_address() {
        assert_eq!(
            "AzureCloud".parse::<Cloud>().unwrap().endpoint().as_str(),
            "https://management.azure.com/"
        );
        assert_eq!(
            "azurechinacloud".parse::<Cloud>().unwrap().scope(),
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(
            "AzureUSGovernment".parse::<Cloud>().unwrap().scope(),
            "https://management.usgovcloudapi.net/.default"
        );
        let stack: Cloud = "https://management.local.azurestack.external"
            .parse()
            .unwrap();
        assert_eq!(
            stack.endpoint().as_str(),
            "https://management.local.azurestack.external/"
        );
        assert_eq!(
            stack.scope(),
            "https://management.local.azurestack.external/.default"
        );
        assert!("http://127.0.0.1:8080".parse::<Cloud>().is_ok());
        for bad in [
            "http://management.example.com",
            "AzureGermanCloud",
            "https://u:p@h",
            "ftp://x",
        ] {
            assert!(bad.parse::<Cloud>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_import_body_is_the_spec_s_shape_and_debug_hides_the_password() {
        let req = ImportRequest {
            from: ImportFrom::RegistryUri("mcr.microsoft.com".into()),
            source_image: "azureml/runtime/cap/lifecycler/installed:eastus-stable".into(),
            credentials: Some(("user".into(), Secret::new("pw-SECRET"))),
            target_tags: vec!["cap/lifecycler/installed:stable".into()],
            mode: ImportMode::Force,
        };
        assert_eq!(
            req.body(),
            json!({
                "source": {
                    "registryUri": "mcr.microsoft.com",
                    "sourceImage": "azureml/runtime/cap/lifecycler/installed:eastus-stable",
                    "credentials": {"username": "user", "password": "pw-SECRET"}
                },
                "targetTags": ["cap/lifecycler/installed:stable"],
                "mode": "Force"
            })
        );
        assert!(!format!("{req:?}").contains("SECRET"));
        let by_id = ImportRequest {
            from: ImportFrom::ResourceId(ResourceId::parse(REGISTRY_ID).unwrap()),
            credentials: None,
            mode: ImportMode::NoForce,
            ..req
        };
        let body = by_id.body();
        assert_eq!(body["source"]["resourceId"], REGISTRY_ID);
        assert!(body["source"].get("credentials").is_none());
        assert_eq!(body["mode"], "NoForce");
    }

    #[test]
    fn urls_are_built_one_segment_per_name_and_shown_without_their_query() {
        let client = ArmClient::new(
            reqwest::Client::new(),
            &"http://127.0.0.1:9".parse().unwrap(),
            Arc::new(StaticToken(Secret::new("t-SECRET"))),
        );
        let id = ResourceId::registry("sub", "my rg", "acr");
        let url = client
            .resource_url(&id, REGISTRY_API_VERSION, Some("importImage"), "x")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/subscriptions/sub/resourceGroups/my%20rg/providers/Microsoft.ContainerRegistry/registries/acr/importImage?api-version=2023-07-01"
        );
        assert_eq!(
            shown(&Url::parse("https://m/op/1?api-version=1&s=sig").unwrap()),
            "https://m/op/1"
        );
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("127.0.0.1:9"),
            "{debug}"
        );
        let bad = ResourceId::registry("sub", "..", "acr");
        assert!(client.resource_url(&bad, "1", None, "x").is_err());
    }

    #[test]
    fn polling_urls_stay_on_the_endpoint() {
        let client = ArmClient::new(
            reqwest::Client::new(),
            &"https://management.azure.com".parse().unwrap(),
            Arc::new(StaticToken(Secret::new("t"))),
        );
        let mut h = HeaderMap::new();
        h.insert(LOCATION, "https://management.azure.com/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/eastus/operationResults/registries-1?api-version=2023-07-01".parse().unwrap());
        assert!(client.header_url(&h, "location", "x").unwrap().is_some());
        h.insert(
            LOCATION,
            "/subscriptions/s/operationResults/2".parse().unwrap(),
        );
        assert_eq!(
            client
                .header_url(&h, "location", "x")
                .unwrap()
                .unwrap()
                .as_str(),
            "https://management.azure.com/subscriptions/s/operationResults/2"
        );
        h.insert(LOCATION, "https://evil.example/op".parse().unwrap());
        let err = client.header_url(&h, "location", "x").unwrap_err();
        assert_eq!(err.kind, ArmErrorKind::BadAnswer);
        assert!(
            err.to_string().contains("not sending the token there"),
            "{err}"
        );
        h.insert(LOCATION, "http://management.azure.com/op".parse().unwrap());
        assert!(
            client.header_url(&h, "location", "x").is_err(),
            "a downgrade to http"
        );
    }

    #[test]
    fn operation_ids_are_the_last_segment_of_the_status_url() {
        let op = Operation {
            what: "x".into(),
            azure_async_operation: None,
            location: Some(
                Url::parse(
                    "https://m/subscriptions/s/operationResults/registries-42?api-version=1",
                )
                .unwrap(),
            ),
            retry_after: None,
        };
        assert_eq!(op.id().as_deref(), Some("registries-42"));
    }

    #[test]
    fn hostile_answers_never_panic() {
        // xorshift noise, and noise spliced into plausible bodies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let len = (next() % 200) as usize;
            let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let text = String::from_utf8_lossy(&noise).into_owned();
            let spliced = match round % 4 {
                0 => format!(r#"{{"error":{{"code":"{text}","message":{text:?}}}}}"#),
                1 => format!(r#"{{"status":{text:?},"error":{{"message":[{text:?}]}}}}"#),
                2 => format!("/subscriptions/{text}/resourceGroups/rg/providers/{text}/x/{text}"),
                _ => text.clone(),
            };
            for body in [noise.as_slice(), spliced.as_bytes()] {
                let _ = parse_error_body(body);
                let _ = parse_operation_status(body);
                let _ = ResourceId::parse(&String::from_utf8_lossy(body));
                let _ = parse_retry_after(&String::from_utf8_lossy(body), SystemTime::now());
                let _ = String::from_utf8_lossy(body).parse::<Cloud>();
            }
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", SystemTime::UNIX_EPOCH)
                .map(|d| d > Duration::ZERO),
            Some(true)
        );
    }

    #[test]
    fn errors_redact_an_echoed_secret() {
        let e = ArmError::new(
            "importing a",
            ArmErrorKind::OperationFailed,
            "login as u with pw-SECRET-9 failed",
        )
        .redacting(&Secret::new("pw-SECRET-9"));
        assert_eq!(
            e.to_string(),
            "importing a: login as u with <redacted> failed"
        );
    }
}
