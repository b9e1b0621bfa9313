//! The engine's API socket (`docker.sock`, mode 0600 in a 0700 directory): the Docker Engine
//! API (ping here; `/info` and `/version` in [`info`], each other family in its own module)
//! and Berth's own `/berth/v1/` extension for the VM. Errors are JSON `{"message": ...}` with
//! dockerd's status codes. Also a small client for the same socket ([`client`]), used by the
//! CLI and the tests.

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

/// The API version a request speaks: its `/vX.Y` prefix, else the newest, as dockerd assumes.
/// Handlers take it as an argument where dockerd's answer depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub const LATEST: ApiVersion = ApiVersion(1, 47);
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiVersion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion::LATEST))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another engine already serves {0}")]
    InUse(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// An error answer: status plus Docker's `{"message": ...}` body.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<VmError> for ApiError {
    fn from(e: VmError) -> Self {
        let status = match e {
            VmError::InvalidTransition(..) | VmError::Locked { .. } | VmError::DiskInUse { .. } => {
                StatusCode::CONFLICT
            }
            VmError::NotRunning => {
                return ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Berth VM is not running; start it with `berth vm start`".into(),
                );
            }
            VmError::Boot { ref log_tail, .. } if !log_tail.trim().is_empty() => {
                // The reason alone rarely says why; the guest's last words usually do.
                return ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "{e}\n--- the VM's last log lines ---\n{}",
                        log_tail.trim_end()
                    ),
                );
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// dockerd's status for an agent error: 404 unknown, 400 invalid, 409 conflict, 500 otherwise.
pub fn status_error(s: tonic::Status) -> ApiError {
    use tonic::Code;
    let status = match s.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, s.message().to_owned())
}

/// A boolean query value as dockerd reads one: `1` or `true` in any case.
pub fn truthy(v: &str) -> bool {
    v == "1" || v.eq_ignore_ascii_case("true")
}

/// Whether query flag `k` is set.
pub fn flag(q: &std::collections::HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| truthy(v))
}

/// A response whose body is JSON the agent already encoded.
pub fn json_body(json: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// Parses a JSON request body; a malformed one is a 400 with the parser's reason.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError::bad_request(e.to_string()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Renames the keys of the JSON object `value` that match one of `fields` but for case to
/// that field, as Go's `encoding/json` matches them (an exact match wins).
pub fn canonical_keys(value: &mut serde_json::Value, fields: &[&str]) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if let Some(field) = fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&key) && **f != key)
            && !obj.contains_key(*field)
            && let Some(v) = obj.remove(&key)
        {
            obj.insert((*field).to_owned(), v);
        }
    }
}

/// `1.47` as (1, 47).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Docker clients prefix paths with `/v1.NN`; routes are written without it. A version this
/// engine does not speak gets dockerd's 400 and message.
async fn strip_version_prefix(mut req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
        && let Some(version) = parse_version(&rest[..slash])
    {
        let shown = &rest[..slash];
        if version > parse_version(API_VERSION).expect("API_VERSION") {
            return ApiError::bad_request(format!(
                "client version {shown} is too new. Maximum supported API version is {API_VERSION}"
            ))
            .into_response();
        }
        if version < parse_version(MIN_API_VERSION).expect("MIN_API_VERSION") {
            return ApiError::bad_request(format!(
                "client version {shown} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))
            .into_response();
        }
        let new_path = rest[slash..].to_owned();
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        req.extensions_mut()
            .insert(ApiVersion(version.0, version.1));
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
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

async fn vm_status(State(sup): State<Supervisor>) -> Json<crate::vm::VmStatus> {
    Json(sup.status())
}

async fn vm_start(State(sup): State<Supervisor>) -> Result<Response, ApiError> {
    if sup.status().state == VmState::Running {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let report = sup.start().await?;
    Ok(Json(report).into_response())
}

async fn vm_stop(State(sup): State<Supervisor>) -> Result<Response, ApiError> {
    if sup.status().state == VmState::Stopped {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    sup.stop().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Berth's extension: every published port of running containers, on or off.
async fn ports_list(State(sup): State<Supervisor>) -> Json<Vec<crate::ports::PortView>> {
    Json(sup.ports().list())
}

/// Switches one published port's host listener `on` or `off`; the container is not touched.
async fn port_toggle(
    State(sup): State<Supervisor>,
    axum::extract::Path((container, port, state)): axum::extract::Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let on = match state.as_str() {
        "on" => true,
        "off" => false,
        other => return Err(ApiError::bad_request(format!("{other}: use on or off"))),
    };
    let resp = sup
        .agent()?
        .containers()
        .inspect(berth_agent_proto::v1::ContainerRef { id: container })
        .await
        .map_err(status_error)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)?;
    let id = doc["Id"].as_str().unwrap_or_default();
    let port = port.replace('_', "/");
    sup.ports().set_enabled(id, &port, on).await.map_err(|e| {
        if e.contains("publishes no port") {
            ApiError::not_found(e)
        } else {
            ApiError::internal(e)
        }
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("page not found: {}", uri.path()),
    )
}

pub fn router(sup: Supervisor) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(info::version))
        .route("/info", get(info::info))
        .route("/images/create", post(images::create))
        .route("/images/json", get(images::list))
        .route("/images/get", get(images::save_many))
        .route("/images/load", post(images::load))
        .route(
            "/images/{*rest}",
            get(image_get).post(image_post).delete(images::remove_path),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/changes", get(containers::changes))
        .route("/containers/{id}/update", post(containers::update))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::head).put(archive::put),
        )
        .route("/containers/{id}/export", get(archive::export))
        .route("/containers/{id}/exec", post(exec::exec_create))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/containers/{id}/{link}",
            axum::routing::delete(containers::remove_link),
        )
        .route("/exec/{id}/start", post(exec::exec_start))
        .route("/exec/{id}/resize", post(containers::exec_resize))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/commit", post(build::commit))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/events", get(system::events))
        .route("/system/df", get(system::df))
        .route("/auth", post(system::auth))
        .route("/images/prune", post(images::prune))
        .route("/exec/{id}/json", get(exec::exec_inspect))
        .merge(swarm::routes())
        .merge(plugins::routes())
        .route("/distribution/{*rest}", get(distribution::inspect))
        .route("/berth/v1/vm", get(vm_status))
        .route("/berth/v1/vm/start", post(vm_start))
        .route("/berth/v1/vm/stop", post(vm_stop))
        .route("/berth/v1/ports", get(ports_list))
        .route(
            "/berth/v1/ports/{container}/{port}/{state}",
            post(port_toggle),
        )
        .fallback(not_found)
        // dockerd answers a known path with the wrong method as a path it does not know.
        .method_not_allowed_fallback(not_found)
        .with_state(sup)
}

/// Binds the API socket with mode 0600, refusing to take over one that another engine serves.
pub async fn bind(path: &Path) -> Result<tokio::net::UnixListener, BindError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.display().to_string()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| BindError::Io {
        what: format!("binding {}", path.display()),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        BindError::Io {
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
    let follower = tokio::spawn(crate::ports::follow_events(sup.clone()));
    let ports = sup.ports().clone();
    let served = serve_on(listener, sup, shutdown).await;
    follower.abort();
    ports.close_all();
    served
}

/// Serves the same API on another listener (TCP, TLS) until `shutdown` resolves; the port
/// follower stays with [`serve`].
pub async fn serve_on<L>(
    listener: L,
    sup: Supervisor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    use tower::Layer;
    let app = axum::middleware::from_fn(strip_version_prefix).layer(router(sup));
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

pub mod archive;
pub mod build;
pub mod client;
pub mod containers;
pub mod defaults;
pub mod detach;
pub mod distribution;
pub mod exec;
pub mod goparse;
pub mod images;
pub mod info;
pub mod local_peer;
pub mod networks;
pub mod plugins;
pub mod swarm;
pub mod system;
pub mod tcp;
pub mod volumes;

/// Image names contain slashes (`127.0.0.1:5000/app`), so `/images/{name}/json` cannot be a
/// plain route: split the verb off the end.
fn split_image_path(rest: &str) -> (String, &str) {
    match rest.rsplit_once('/') {
        Some((name, verb @ ("json" | "history" | "tag" | "push" | "get"))) => {
            (name.to_owned(), verb)
        }
        _ => (rest.to_owned(), ""),
    }
}

async fn image_get(
    state: State<Supervisor>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    version: ApiVersion,
) -> Result<Response, ApiError> {
    match split_image_path(&rest) {
        (name, "json") => images::inspect(state, axum::extract::Path(name), version).await,
        (name, "history") => images::history(state, axum::extract::Path(name)).await,
        (name, "get") => images::save(state.0, vec![name]).await,
        _ => Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        ))),
    }
}

async fn image_post(
    state: State<Supervisor>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    match split_image_path(&rest) {
        (name, "tag") => images::tag(state, axum::extract::Path(name), query).await,
        (name, "push") => images::push(state.0, name, query.0, headers).await,
        _ => Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_match_fields_in_any_case_as_go_decodes_them() {
        let mut v =
            serde_json::json!({"detachKeys": "ctrl-p", "tty": true, "Cmd": ["x"], "cmd": 1});
        super::canonical_keys(&mut v, &["DetachKeys", "Tty", "Cmd"]);
        assert_eq!(
            v,
            serde_json::json!({"DetachKeys": "ctrl-p", "Tty": true, "Cmd": ["x"], "cmd": 1})
        );
    }

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
        let (status, body) = client::request(&sock, "GET", "/v1.99/version", None)
            .await
            .unwrap();
        assert_eq!(status, 400);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Maximum supported API version is 1.47")
        );
        let (status, _) = client::request(&sock, "GET", "/v1.12/version", None)
            .await
            .unwrap();
        assert_eq!(status, 400);
        let (status, _) = client::request(&sock, "POST", "/berth/v1/vm/stop", None)
            .await
            .unwrap();
        assert_eq!(status, 304);
        // A second engine on the same socket is refused.
        assert!(matches!(bind(&sock).await, Err(BindError::InUse(_))));
    }
}
