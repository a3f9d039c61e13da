//! A stand-in for the Azure Resource Manager endpoints the AzureML preset
//! uses (no real ARM can run here), shaped as the public REST API
//! specifications say (azure-rest-api-specs: `Workspaces_Get` 2024-04-01,
//! `Registries_Get` and `Registries_ImportImage` 2023-07-01, and ARM's
//! asynchronous operations):
//!
//! - `GET …/Microsoft.MachineLearningServices/workspaces/{name}` and
//!   `GET …/Microsoft.ContainerRegistry/registries/{name}` from fixtures
//!   the test registers (a workspace with or without a registry);
//! - `POST …/registries/{name}/importImage` checks the bearer token and the
//!   body (`source.registryUri | resourceId`, `sourceImage`, `targetTags`,
//!   `mode`), answers 202 with `Azure-AsyncOperation` and `Location` (or
//!   one of them) and `Retry-After`, and performs the import for real:
//!   `skopeo copy --all --preserve-digests` from the source registry on
//!   loopback (standing in for mcr.microsoft.com) into the registry the
//!   fixture's `loginServer` names (a real docker-registry), logging in at
//!   the source with the request's `credentials` through an auth file,
//!   never an argument;
//! - `GET …/operationStatuses/{id}` (200, `{status, error?}`) and
//!   `GET …/operationResults/{id}` (202 while running, 200 when done, 400
//!   with `{error}` when failed).
//!
//! Told to, it throttles (429 with `Retry-After`, N times, on paths that
//! contain a string), fails an image's operation (status `Failed` with a
//! code and message), never finishes one (`InProgress` forever), refuses
//! the token (401 `InvalidAuthenticationToken` or 403
//! `AuthorizationFailed`), says it expired (401 `ExpiredAuthenticationToken`), or hands out polling URLs on another host. It
//! records every request (with its Authorization header and body) so tests
//! can check the waits and where each secret went.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::server::{self, BoxError, Server};

pub const WORKSPACE_API_VERSION: &str = "2024-04-01";
pub const REGISTRY_API_VERSION: &str = "2023-07-01";

/// Which polling headers a 202 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollHeaders {
    #[default]
    Both,
    AsyncOperationOnly,
    LocationOnly,
}

/// What the stand-in is told to do; change it with [`ArmServer::script`].
#[derive(Debug, Clone, Default)]
pub struct ArmScript {
    /// `Retry-After` (seconds) on a 202 and on a running status.
    pub retry_after: u64,
    /// Answer this many requests 429 ...
    pub throttle: usize,
    /// ... with this `Retry-After` ...
    pub throttle_retry_after: u64,
    /// ... when their path contains this (every request when empty).
    pub throttle_path: String,
    /// An import whose `sourceImage` contains the first string ends
    /// `Failed` with this code and message (nothing is copied).
    pub fail: Vec<(String, String, String)>,
    /// An import whose `sourceImage` contains one of these never ends.
    pub never_finish: Vec<String>,
    /// Refuse every request: 401 (`InvalidAuthenticationToken`) or 403
    /// (`AuthorizationFailed`).
    pub reject: Option<u16>,
    /// ... only requests whose path contains this (every one when empty).
    pub reject_path: String,
    /// Answer this many requests 401 `ExpiredAuthenticationToken`, as ARM
    /// does when a token outlives its hour.
    pub expire: usize,
    pub headers: PollHeaders,
    /// Polling URLs on this base (`http://127.0.0.1:PORT`) instead of ours.
    pub foreign_polling_base: Option<String>,
}

/// One request the stand-in answered.
#[derive(Debug, Clone)]
pub struct ArmRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OpState {
    Running,
    Succeeded,
    Failed(String, String),
}

#[derive(Debug, Clone)]
struct Op {
    state: OpState,
}

struct RegistryFixture {
    login_server: String,
    location: String,
    id: String,
}

struct State {
    base: String,
    token: String,
    workspaces: Mutex<HashMap<String, Value>>,
    registries: Mutex<HashMap<String, RegistryFixture>>,
    operations: Arc<Mutex<HashMap<String, Op>>>,
    script: Mutex<ArmScript>,
    requests: Mutex<Vec<ArmRequest>>,
    next_op: AtomicUsize,
}

/// A running ARM stand-in on 127.0.0.1; stops on drop (imports in
/// flight are abandoned).
pub struct ArmServer {
    state: Arc<State>,
    _server: Server,
}

impl ArmServer {
    /// Accepts `Authorization: Bearer {token}` only.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = server::bind_loopback().await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            base,
            token: token.to_string(),
            workspaces: Mutex::default(),
            registries: Mutex::default(),
            operations: Arc::default(),
            script: Mutex::new(ArmScript {
                retry_after: 1,
                throttle_retry_after: 1,
                ..ArmScript::default()
            }),
            requests: Mutex::default(),
            next_op: AtomicUsize::new(1),
        });
        let handler = state.clone();
        let server = Server::spawn(vec![listener], move |req| {
            let state = handler.clone();
            async move { state.handle(req).await }
        })?;
        Ok(ArmServer {
            state,
            _server: server,
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give the client.
    pub fn endpoint(&self) -> String {
        self.state.base.clone()
    }

    /// A registry resource whose `loginServer` is `login_server` (a real
    /// registry's `127.0.0.1:PORT`); returns its resource id.
    pub fn add_registry(
        &self,
        subscription: &str,
        rg: &str,
        name: &str,
        login_server: &str,
    ) -> String {
        let id = format!(
            "/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"
        );
        self.state.registries.lock().unwrap().insert(
            id.to_ascii_lowercase(),
            RegistryFixture {
                login_server: login_server.to_string(),
                location: "eastus".into(),
                id: id.clone(),
            },
        );
        id
    }

    /// A workspace in `location`, with `registry` (a resource id, as ARM
    /// writes it: here in lower case, as the Azure CLI shows it) or none.
    pub fn add_workspace(
        &self,
        subscription: &str,
        rg: &str,
        name: &str,
        location: &str,
        registry: Option<&str>,
    ) {
        let id = format!(
            "/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}"
        );
        let mut properties = json!({
            "friendlyName": name,
            "keyVault": format!("/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/kv"),
            "storageAccount": format!("/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/st"),
            "publicNetworkAccess": "Disabled",
            "provisioningState": "Succeeded",
        });
        if let Some(r) = registry {
            properties["containerRegistry"] = json!(r.to_ascii_lowercase().replace(
                "/providers/microsoft.containerregistry/registries/",
                "/providers/Microsoft.ContainerRegistry/registries/"
            ));
        }
        let body = json!({
            "id": id,
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "location": location,
            "identity": {"type": "SystemAssigned", "principalId": "00000000-0000-0000-0000-000000000001"},
            "properties": properties,
        });
        self.state
            .workspaces
            .lock()
            .unwrap()
            .insert(id.to_ascii_lowercase(), body);
    }

    /// The AzureML tests' fixtures: registry `contoso` (whose login server
    /// is `login_server`), workspace `ws` in East US with it attached, and
    /// workspace `bare` in westus without one. Returns the registry's id.
    pub fn add_contoso_workspaces(
        &self,
        subscription: &str,
        rg: &str,
        login_server: &str,
    ) -> String {
        let id = self.add_registry(subscription, rg, "contoso", login_server);
        self.add_workspace(subscription, rg, "ws", "East US", Some(&id));
        self.add_workspace(subscription, rg, "bare", "westus", None);
        id
    }

    /// Changes what it does from the next request on.
    pub fn script(&self, change: impl FnOnce(&mut ArmScript)) {
        change(&mut self.state.script.lock().unwrap());
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ArmRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

type Reply = (StatusCode, Vec<(header::HeaderName, String)>, Value);

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    (
        status,
        Vec::new(),
        json!({"error": {"code": code, "message": message}}),
    )
}

impl State {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<server::Body>, BoxError> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req.into_body().collect().await?.to_bytes();
        let body_text = String::from_utf8_lossy(&body).into_owned();

        let (status, headers, value) =
            self.answer(&method, &path, &query, authorization.as_deref(), &body);
        let retry_after = headers
            .iter()
            .find(|(n, _)| n == header::RETRY_AFTER)
            .and_then(|(_, v)| v.parse().ok());
        self.requests.lock().unwrap().push(ArmRequest {
            method: method.to_string(),
            path,
            query,
            authorization,
            body: body_text,
            status: status.as_u16(),
            retry_after,
            at: Instant::now(),
        });
        let mut response = Response::builder()
            .status(status)
            .header("x-ms-request-id", "00000000-0000-0000-0000-0000000000aa");
        for (name, v) in headers {
            response = response.header(name, v);
        }
        let bytes = if value.is_null() {
            Vec::new()
        } else {
            response = response.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
            value.to_string().into_bytes()
        };
        Ok(response.body(server::full(bytes))?)
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        auth: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let script = self.script.lock().unwrap().clone();
        {
            let mut s = self.script.lock().unwrap();
            if s.throttle > 0 && (s.throttle_path.is_empty() || path.contains(&s.throttle_path)) {
                s.throttle -= 1;
                let (status, mut headers, body) = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00.",
                );
                headers.push((header::RETRY_AFTER, s.throttle_retry_after.to_string()));
                return (status, headers, body);
            }
        }
        match auth {
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
            }
            Some(a) if a != format!("Bearer {}", self.token) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                )
            }
            _ => {}
        }
        {
            let mut s = self.script.lock().unwrap();
            if s.expire > 0 {
                s.expire -= 1;
                return error(
                    StatusCode::UNAUTHORIZED,
                    "ExpiredAuthenticationToken",
                    "The access token expiry UTC time '1/1/2025 1:00:00 AM' is earlier than current UTC time.",
                );
            }
        }
        let reject = script
            .reject
            .filter(|_| script.reject_path.is_empty() || path.contains(&script.reject_path));
        match reject {
            Some(401) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present.",
                )
            }
            Some(_) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "AuthorizationFailed",
                    &format!(
                        "The client 'mirror-test' with object id '00000000-0000-0000-0000-000000000002' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid.",
                        if path.ends_with("/importImage") {
                            "Microsoft.ContainerRegistry/registries/importImage/action"
                        } else {
                            "Microsoft.MachineLearningServices/workspaces/read"
                        },
                        path
                    ),
                )
            }
            None => {}
        }
        let api_version = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned());
        let lower = path.to_ascii_lowercase();
        if let Some(id) = lower.strip_suffix("/importimage") {
            if *method != Method::POST {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "POST only",
                );
            }
            if api_version.as_deref() != Some(REGISTRY_API_VERSION) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    "api-version 2023-07-01 expected",
                );
            }
            return self.import(id, body, &script);
        }
        if lower.contains("/operationstatuses/") || lower.contains("/operationresults/") {
            return self.status(&lower, &script);
        }
        if *method != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "GET only",
            );
        }
        if lower.contains("/providers/microsoft.machinelearningservices/workspaces/") {
            if api_version.as_deref() != Some(WORKSPACE_API_VERSION) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    "api-version 2024-04-01 expected",
                );
            }
            return match self.workspaces.lock().unwrap().get(&lower) {
                Some(v) => (StatusCode::OK, Vec::new(), v.clone()),
                None => not_found(path),
            };
        }
        if lower.contains("/providers/microsoft.containerregistry/registries/") {
            if api_version.as_deref() != Some(REGISTRY_API_VERSION) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    "api-version 2023-07-01 expected",
                );
            }
            return match self.registries.lock().unwrap().get(&lower) {
                Some(r) => (StatusCode::OK, Vec::new(), registry_body(r)),
                None => not_found(path),
            };
        }
        error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            "no such route",
        )
    }

    fn import(&self, registry_path: &str, body: &[u8], script: &ArmScript) -> Reply {
        let Some((login_server, subscription)) =
            self.registries.lock().unwrap().get(registry_path).map(|r| {
                (
                    r.login_server.clone(),
                    r.id.split('/').nth(2).unwrap_or("sub").to_string(),
                )
            })
        else {
            return not_found(registry_path);
        };
        let Ok(params) = serde_json::from_slice::<Value>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            );
        };
        let source = &params["source"];
        let Some(source_image) = source["sourceImage"].as_str().map(str::to_string) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameters",
                "source.sourceImage is required",
            );
        };
        let source_registry = match (
            source["registryUri"].as_str(),
            source["resourceId"].as_str(),
        ) {
            (Some(uri), None) => uri.to_string(),
            (None, Some(id)) => match self
                .registries
                .lock()
                .unwrap()
                .get(&id.to_ascii_lowercase())
            {
                Some(r) => r.login_server.clone(),
                None => return not_found(id),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameters",
                    "exactly one of source.registryUri and source.resourceId is required",
                )
            }
        };
        let credentials = match &source["credentials"] {
            Value::Null => None,
            c => match c["password"].as_str() {
                Some(p) => Some((
                    c["username"].as_str().unwrap_or("").to_string(),
                    p.to_string(),
                )),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameters",
                        "source.credentials.password is required",
                    )
                }
            },
        };
        let targets: Vec<String> = params["targetTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if targets.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameters",
                "targetTags is required",
            );
        }
        if !matches!(params["mode"].as_str(), Some("Force" | "NoForce") | None) {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameters",
                "mode is NoForce or Force",
            );
        }

        let id = format!(
            "registries-{:08x}-0000-0000-0000-{:012x}",
            self.next_op.fetch_add(1, Ordering::SeqCst),
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        let failure = script
            .fail
            .iter()
            .find(|(needle, _, _)| source_image.contains(needle.as_str()))
            .map(|(_, c, m)| (c.clone(), m.clone()));
        let never = script
            .never_finish
            .iter()
            .any(|n| source_image.contains(n.as_str()));
        let state = match failure {
            Some((c, m)) => OpState::Failed(c, m),
            None => OpState::Running,
        };
        self.operations.lock().unwrap().insert(
            id.clone(),
            Op {
                state: state.clone(),
            },
        );
        if state == OpState::Running && !never {
            let operations = self.operations.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let result = copy(
                    &source_registry,
                    &source_image,
                    &login_server,
                    &targets,
                    credentials,
                )
                .await;
                let state = match result {
                    Ok(()) => OpState::Succeeded,
                    Err(e) => OpState::Failed("ImportImageFailed".into(), e),
                };
                if let Some(op) = operations.lock().unwrap().get_mut(&id) {
                    op.state = state;
                }
            });
        }

        let base = script
            .foreign_polling_base
            .clone()
            .unwrap_or_else(|| self.base.clone());
        let prefix = format!("{base}/subscriptions/{subscription}/providers/Microsoft.ContainerRegistry/locations/eastus");
        let mut headers = vec![(header::RETRY_AFTER, script.retry_after.to_string())];
        if script.headers != PollHeaders::LocationOnly {
            headers.push((
                header::HeaderName::from_static("azure-asyncoperation"),
                format!("{prefix}/operationStatuses/{id}?api-version={REGISTRY_API_VERSION}&t=638000000000000000&s=SIGNATURE"),
            ));
        }
        if script.headers != PollHeaders::AsyncOperationOnly {
            headers.push((
                header::LOCATION,
                format!("{prefix}/operationResults/{id}?api-version={REGISTRY_API_VERSION}&t=638000000000000000&s=SIGNATURE"),
            ));
        }
        (StatusCode::ACCEPTED, headers, Value::Null)
    }

    fn status(&self, lower: &str, script: &ArmScript) -> Reply {
        let id = lower.rsplit('/').next().unwrap_or("");
        let Some(op) = self.operations.lock().unwrap().get(id).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                "no such operation",
            );
        };
        let retry = vec![(header::RETRY_AFTER, script.retry_after.to_string())];
        let doc = |status: &str| json!({"id": lower, "name": id, "status": status, "startTime": "2025-01-01T00:00:00Z"});
        if lower.contains("/operationstatuses/") {
            match op.state {
                OpState::Running => (StatusCode::OK, retry, doc("InProgress")),
                OpState::Succeeded => (StatusCode::OK, Vec::new(), doc("Succeeded")),
                OpState::Failed(code, message) => {
                    let mut d = doc("Failed");
                    d["error"] = json!({"code": code, "message": message});
                    (StatusCode::OK, Vec::new(), d)
                }
            }
        } else {
            match op.state {
                OpState::Running => (StatusCode::ACCEPTED, retry, Value::Null),
                OpState::Succeeded => (StatusCode::OK, Vec::new(), Value::Null),
                OpState::Failed(code, message) => error(StatusCode::BAD_REQUEST, &code, &message),
            }
        }
    }
}

fn not_found(path: &str) -> Reply {
    let name = path.rsplit('/').next().unwrap_or("");
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource '{name}' under the path '{path}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

fn registry_body(r: &RegistryFixture) -> Value {
    let name = r.id.rsplit('/').next().unwrap_or("");
    json!({
        "id": r.id,
        "name": name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": r.location,
        "sku": {"name": "Premium", "tier": "Premium"},
        "properties": {
            "loginServer": r.login_server,
            "provisioningState": "Succeeded",
            "adminUserEnabled": false,
            "publicNetworkAccess": "Disabled",
        }
    })
}

/// The import itself: skopeo from the source into each target tag, digests
/// kept, every platform of an index; credentials through an auth file.
async fn copy(
    source_registry: &str,
    source_image: &str,
    login_server: &str,
    targets: &[String],
    credentials: Option<(String, String)>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let authfile = dir.path().join("auth.json");
    let auths = match &credentials {
        Some((u, p)) => {
            json!({"auths": {source_registry: {"auth": STANDARD.encode(format!("{u}:{p}"))}}})
        }
        None => json!({"auths": {}}),
    };
    std::fs::write(&authfile, auths.to_string()).map_err(|e| e.to_string())?;
    for target in targets {
        let out = tokio::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("copy")
            .arg("--quiet")
            .arg("--all")
            .arg("--preserve-digests")
            .arg("--src-tls-verify=false")
            .arg("--dest-tls-verify=false")
            .arg("--src-authfile")
            .arg(&authfile)
            .arg(format!("docker://{source_registry}/{source_image}"))
            .arg(format!("docker://{login_server}/{target}"))
            .output()
            .await
            .map_err(|e| format!("running skopeo: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "Failed to import {source_registry}/{source_image}: {}",
                stderr.lines().last().unwrap_or("").trim()
            ));
        }
    }
    Ok(())
}
