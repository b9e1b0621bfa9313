//! The engine's API socket (`docker.sock`, mode 0600 in a 0700 directory): the Docker Engine
//! API's `/_ping` and `/version` so far, and Berth's own `/berth/v1/` extension for the VM.
//! Errors are JSON `{"message": ...}` with a 4xx/5xx status, as dockerd answers. Also a small
//! client for the same socket, used by the CLI and the tests.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::vm::{Supervisor, VmError, VmState};

/// The newest Docker API version the server speaks, and the oldest.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("another engine already serves {0}")]
    InUse(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// An error answer: status plus Docker's `{"message": ...}` body.
struct ErrorResponse(StatusCode, String);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<VmError> for ErrorResponse {
    fn from(e: VmError) -> Self {
        let status = match e {
            VmError::InvalidTransition(..) | VmError::Locked { .. } | VmError::DiskInUse { .. } => {
                StatusCode::CONFLICT
            }
            VmError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ErrorResponse(status, e.to_string())
    }
}

/// Docker clients prefix paths with `/v1.NN`; routes are written without it.
async fn strip_version_prefix(mut req: Request) -> Request {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
        && rest[..slash]
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let new_path = rest[slash..].to_owned();
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

async fn ping() -> Response {
    let mut resp = "OK".into_response();
    let h = resp.headers_mut();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    resp
}

async fn version(State(sup): State<Supervisor>) -> Json<serde_json::Value> {
    let status = sup.status();
    let kernel = status.kernel.unwrap_or_default();
    Json(json!({
        "Platform": { "Name": "Berth" },
        "Version": crate::VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel,
        "Components": [{ "Name": "Engine", "Version": crate::VERSION, "Details": {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": kernel,
            "Experimental": "false",
            "VmState": status.state.to_string(),
            "AgentVersion": status.agent_version.unwrap_or_default(),
        }}],
    }))
}

async fn vm_status(State(sup): State<Supervisor>) -> Json<crate::vm::VmStatus> {
    Json(sup.status())
}

async fn vm_start(State(sup): State<Supervisor>) -> Result<Response, ErrorResponse> {
    if sup.status().state == VmState::Running {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let report = sup.start().await?;
    Ok(Json(report).into_response())
}

async fn vm_stop(State(sup): State<Supervisor>) -> Result<Response, ErrorResponse> {
    if sup.status().state == VmState::Stopped {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    sup.stop().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn not_found(uri: Uri) -> ErrorResponse {
    ErrorResponse(
        StatusCode::NOT_FOUND,
        format!("page not found: {}", uri.path()),
    )
}

pub fn router(sup: Supervisor) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/berth/v1/vm", get(vm_status))
        .route("/berth/v1/vm/start", post(vm_start))
        .route("/berth/v1/vm/stop", post(vm_stop))
        .fallback(not_found)
        .with_state(sup)
}

/// Binds the API socket with mode 0600, refusing to take over one that another engine serves.
pub async fn bind(path: &Path) -> Result<tokio::net::UnixListener, ApiError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ApiError::InUse(path.display().to_string()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| ApiError::Io {
        what: format!("binding {}", path.display()),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ApiError::Io {
            what: format!("chmod {}", path.display()),
            source,
        }
    })?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    sup: Supervisor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::Layer;
    let app = axum::middleware::map_request(strip_version_prefix).layer(router(sup));
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

pub mod client {
    //! A minimal HTTP/1 client for the API socket.

    use std::path::Path;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    #[derive(Debug, thiserror::Error)]
    pub enum ClientError {
        #[error("cannot reach the engine at {0}: {1}")]
        Connect(String, std::io::Error),
        #[error("engine request failed: {0}")]
        Http(#[from] hyper::Error),
        #[error("bad request: {0}")]
        Request(#[from] hyper::http::Error),
    }

    /// One request; returns the status and the body (JSON when the body is JSON).
    pub async fn request(
        socket: &Path,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| ClientError::Connect(socket.display().to_string(), e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "berth")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(bytes)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let data = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&data)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&data).into()));
        Ok((status, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    #[tokio::test]
    async fn socket_is_private_and_errors_are_json() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.ensure().unwrap();
        let sock = paths.docker_socket();
        let listener = bind(&sock).await.unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sup = Supervisor::new(paths.clone());
        tokio::spawn(serve(listener, sup, std::future::pending()));

        let (status, body) = client::request(&sock, "GET", "/v1.47/_ping", None)
            .await
            .unwrap();
        assert_eq!(
            (status, body),
            (200, serde_json::Value::String("OK".into()))
        );
        let (status, body) = client::request(&sock, "GET", "/v1.47/version", None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["ApiVersion"], API_VERSION);
        let (status, body) = client::request(&sock, "GET", "/nope", None).await.unwrap();
        assert_eq!(status, 404);
        assert!(body["message"].as_str().unwrap().contains("/nope"));
        let (status, body) = client::request(&sock, "GET", "/berth/v1/vm", None)
            .await
            .unwrap();
        assert_eq!((status, body["state"].as_str()), (200, Some("stopped")));
        // Stopping a VM that is not running is not an error; nothing changes.
        let (status, _) = client::request(&sock, "POST", "/berth/v1/vm/stop", None)
            .await
            .unwrap();
        assert_eq!(status, 304);
        // A second engine on the same socket is refused.
        assert!(matches!(bind(&sock).await, Err(ApiError::InUse(_))));
    }
}
