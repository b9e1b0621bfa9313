//! The swarm family (`/swarm`, `/services`, `/nodes`, `/tasks`, `/secrets`, `/configs`, and
//! the update of a cluster volume, `PUT /volumes/{name}`),
//! answered as dockerd 27 answers on a node that is in no swarm: the same checks of the
//! request first, then 503 with its words. Berth is never a swarm node, so `init` and `join`
//! are refused; compose is what Berth offers for multi-container applications. Owns no state.
//!
//! What dockerd 20.10 answers differently is noted where it differs: it reads an empty body
//! as "got EOF while reading request body" (400), where dockerd 23+ reads it as no body.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde_json::Value;

use super::goparse::{bool_value, filters, internal, parse_bool, parse_uint, read_json};
use super::{ApiError, ApiVersion};
use crate::vm::Supervisor;

/// dockerd's `errNoManager` for a node in no swarm (every manager-only call).
pub const NO_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// dockerd's `errNoSwarm` (`POST /swarm/leave`, with or without `force`).
pub const NO_SWARM: &str = "This node is not part of a swarm";
/// Berth's refusal of `swarm init` and `swarm join`.
pub const NO_SWARM_MODE: &str = "Berth does not run swarm mode: this node cannot init or join a swarm. Use docker compose to run multi-container applications.";

type Q = Query<HashMap<String, String>>;

fn no_manager() -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, NO_MANAGER.into())
}

/// What every read of cluster state answers.
async fn unavailable() -> ApiError {
    no_manager()
}

async fn init(body: Bytes) -> Result<(), ApiError> {
    read_json(&body, "swarm.InitRequest", "object")?;
    Err(ApiError(StatusCode::NOT_IMPLEMENTED, NO_SWARM_MODE.into()))
}

async fn join(body: Bytes) -> Result<(), ApiError> {
    read_json(&body, "swarm.JoinRequest", "object")?;
    Err(ApiError(StatusCode::NOT_IMPLEMENTED, NO_SWARM_MODE.into()))
}

/// dockerd: 503 whether or not `force` is set. docker-py's `leave_swarm(force=True)` treats
/// 503 (and 406, from dockerd 1.12) as "not in a swarm".
async fn leave() -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, NO_SWARM.into())
}

/// `?version=` of an update: dockerd's message names what is updated.
fn version(q: &HashMap<String, String>, what: &str) -> Result<u64, ApiError> {
    let raw = q.get("version").map_or("", String::as_str);
    parse_uint(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid {what} version '{raw}': {e}")))
}

/// `POST /swarm/update`: the spec, the version, the three rotation flags, then 503.
async fn update(Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    read_json(&body, "swarm.Spec", "object")?;
    version(&q, "swarm")?;
    for flag in [
        "rotateWorkerToken",
        "rotateManagerToken",
        "rotateManagerUnlockKey",
    ] {
        if let Some(v) = q.get(flag).filter(|v| !v.is_empty()) {
            parse_bool(v)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {flag}: {v}")))?;
        }
    }
    Err(no_manager())
}

async fn unlock(body: Bytes) -> Result<(), ApiError> {
    read_json(&body, "swarm.UnlockRequest", "object")?;
    Err(no_manager())
}

/// A list: its `filters` must parse, then 503.
async fn list(Query(q): Q) -> Result<(), ApiError> {
    filters(q.get("filters"))?;
    Err(no_manager())
}

async fn services(Query(q): Q, v: ApiVersion) -> Result<(), ApiError> {
    filters(q.get("filters"))?;
    // `status` is read from API 1.41 on.
    if v >= ApiVersion(1, 41)
        && let Some(s) = q.get("status").filter(|s| !s.is_empty())
    {
        parse_bool(s)
            .map_err(|e| ApiError::bad_request(format!("invalid value for status: {s}: {e}")))?;
    }
    Err(no_manager())
}

async fn service(Query(q): Q) -> Result<(), ApiError> {
    if let Some(s) = q.get("insertDefaults").filter(|s| !s.is_empty()) {
        parse_bool(s).map_err(|e| {
            ApiError::bad_request(format!("invalid value for insertDefaults: {s}: {e}"))
        })?;
    }
    Err(no_manager())
}

/// A service spec as dockerd checks it before asking the cluster.
fn service_spec(body: &[u8]) -> Result<(), ApiError> {
    let spec = read_json(body, "swarm.ServiceSpec", "object")?.unwrap_or(Value::Null);
    if spec["TaskTemplate"]["LogDriver"]["Name"] == "logentries" {
        return Err(ApiError::bad_request(
            "the logentries logging driver has been deprecated and removed",
        ));
    }
    Ok(())
}

async fn service_create(body: Bytes) -> Result<(), ApiError> {
    service_spec(&body)?;
    Err(no_manager())
}

async fn service_update(Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    service_spec(&body)?;
    version(&q, "service")?;
    Err(no_manager())
}

/// Service and task logs: at least one stream (dockerd answers a plain 500), then 503.
async fn logs(Query(q): Q) -> Result<(), ApiError> {
    if !bool_value(q.get("stdout")) && !bool_value(q.get("stderr")) {
        return Err(internal(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    Err(no_manager())
}

async fn node_update(Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    read_json(&body, "swarm.NodeSpec", "object")?;
    version(&q, "node")?;
    Err(no_manager())
}

/// Secret and config create: templating needs API 1.37.
fn templated_spec(body: &[u8], what: &str, v: ApiVersion) -> Result<(), ApiError> {
    let go_type = format!(
        "swarm.{}Spec",
        if what == "secret" { "Secret" } else { "Config" }
    );
    let spec = read_json(body, &go_type, "object")?.unwrap_or(Value::Null);
    if !spec["Templating"].is_null() && v < ApiVersion(1, 37) {
        return Err(ApiError::bad_request(format!(
            "{what} templating is not supported on the specified API version: {}.{}",
            v.0, v.1
        )));
    }
    Ok(())
}

async fn secret_create(v: ApiVersion, body: Bytes) -> Result<(), ApiError> {
    templated_spec(&body, "secret", v)?;
    Err(no_manager())
}

async fn config_create(v: ApiVersion, body: Bytes) -> Result<(), ApiError> {
    templated_spec(&body, "config", v)?;
    Err(no_manager())
}

/// Secret and config update: dockerd's message here does not repeat the value.
fn spec_update(q: &HashMap<String, String>, body: &[u8], what: &str) -> Result<(), ApiError> {
    let go_type = format!(
        "swarm.{}Spec",
        if what == "secret" { "Secret" } else { "Config" }
    );
    read_json(body, &go_type, "object")?;
    parse_uint(q.get("version").map_or("", String::as_str))
        .map_err(|_| ApiError::bad_request(format!("invalid {what} version")))?;
    Err(no_manager())
}

async fn secret_update(Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    spec_update(&q, &body, "secret")
}

async fn config_update(Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    spec_update(&q, &body, "config")
}

/// `PUT /volumes/{name}` updates only cluster volumes; dockerd checks for a swarm first.
async fn volume_update() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "volume update only valid for cluster volumes, but swarm is unavailable".into(),
    )
}

/// The routes, as dockerd's swarm router lays them out. `GET` and `DELETE` of
/// `/{kind}/create` reach dockerd's `/{kind}/{id}` routes, so they answer 503 here too.
pub fn routes() -> Router<Supervisor> {
    Router::new()
        .route("/swarm", get(unavailable))
        .route("/swarm/init", post(init))
        .route("/swarm/join", post(join))
        .route("/swarm/leave", post(leave))
        .route("/swarm/unlockkey", get(unavailable))
        .route("/swarm/update", post(update))
        .route("/swarm/unlock", post(unlock))
        .route("/services", get(services))
        .route(
            "/services/create",
            post(service_create).get(service).delete(unavailable),
        )
        .route("/services/{id}", get(service).delete(unavailable))
        .route("/services/{id}/update", post(service_update))
        .route("/services/{id}/logs", get(logs))
        .route("/nodes", get(list))
        .route("/nodes/{id}", get(unavailable).delete(unavailable))
        .route("/nodes/{id}/update", post(node_update))
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(unavailable))
        .route("/tasks/{id}/logs", get(logs))
        .route("/secrets", get(list))
        .route(
            "/secrets/create",
            post(secret_create).get(unavailable).delete(unavailable),
        )
        .route("/secrets/{id}", get(unavailable).delete(unavailable))
        .route("/secrets/{id}/update", post(secret_update))
        .route("/configs", get(list))
        .route(
            "/configs/create",
            post(config_create).get(unavailable).delete(unavailable),
        )
        .route("/configs/{id}", get(unavailable).delete(unavailable))
        .route("/configs/{id}/update", post(config_update))
        .route("/volumes/{name}", put(volume_update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// One request through the routes (no VM: none of them needs one).
    async fn call(method: &str, uri: &str, body: &str) -> (u16, String) {
        let home = tempfile::tempdir().unwrap();
        let app = routes().with_state(Supervisor::new(crate::paths::Paths::new(home.path())));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v["message"].as_str().unwrap_or_default().to_owned())
    }

    #[tokio::test]
    async fn a_node_in_no_swarm_answers_as_dockerd() {
        let no_manager = (503, NO_MANAGER.to_owned());
        for (method, uri, body) in [
            ("GET", "/swarm", ""),
            ("GET", "/swarm/unlockkey", ""),
            ("POST", "/swarm/unlock", "{}"),
            ("POST", "/swarm/update?version=1", "{}"),
            ("GET", "/services", ""),
            ("GET", "/services/web", ""),
            ("GET", "/services/create", ""),
            ("DELETE", "/services/web", ""),
            ("POST", "/services/create", "{}"),
            ("POST", "/services/web/update?version=3", "{}"),
            ("GET", "/services/web/logs?stdout=1", ""),
            ("GET", "/nodes", ""),
            ("GET", "/nodes/n1", ""),
            ("DELETE", "/nodes/n1?force=1", ""),
            ("POST", "/nodes/n1/update?version=1", "{}"),
            ("GET", "/tasks", ""),
            ("GET", "/tasks/t1", ""),
            ("GET", "/tasks/t1/logs?stderr=true", ""),
            ("GET", "/secrets", ""),
            ("POST", "/secrets/create", "{\"Name\":\"s\"}"),
            ("GET", "/secrets/s", ""),
            ("DELETE", "/secrets/s", ""),
            ("POST", "/secrets/s/update?version=1", "{}"),
            ("GET", "/configs", ""),
            ("POST", "/configs/create", ""),
            ("GET", "/configs/c", ""),
            ("DELETE", "/configs/c", ""),
            ("POST", "/configs/c/update?version=1", "{}"),
        ] {
            assert_eq!(call(method, uri, body).await, no_manager, "{method} {uri}");
        }
        assert_eq!(
            call("POST", "/swarm/leave?force=true", "").await,
            (503, NO_SWARM.to_owned())
        );
        assert_eq!(call("POST", "/swarm/leave", "").await.0, 503);
        assert_eq!(call("POST", "/swarm/init", "{}").await.0, 501);
        assert_eq!(call("POST", "/swarm/join", "{}").await.0, 501);
        assert_eq!(
            call("PUT", "/volumes/v?version=1", "{}").await,
            (
                503,
                "volume update only valid for cluster volumes, but swarm is unavailable".into()
            )
        );
    }

    /// Merged into the engine's router beside the routes that share their paths.
    #[tokio::test]
    async fn the_engines_router_serves_them() {
        let home = tempfile::tempdir().unwrap();
        let app = crate::api::router(Supervisor::new(crate::paths::Paths::new(home.path())));
        for (method, uri, status) in [
            ("GET", "/swarm", 503),
            ("PUT", "/volumes/v", 503),
            // Still the volume routes': the VM is down.
            ("GET", "/volumes/v", 503),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
        }
    }

    #[tokio::test]
    async fn requests_are_checked_first_with_dockerds_words() {
        assert_eq!(
            call("POST", "/swarm/update", "{}").await,
            (
                400,
                "invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax".into()
            )
        );
        assert_eq!(
            call(
                "POST",
                "/swarm/update?version=1&rotateWorkerToken=maybe",
                "{}"
            )
            .await,
            (400, "invalid value for rotateWorkerToken: maybe".into())
        );
        assert_eq!(
            call("POST", "/services/web/update", "{}").await,
            (
                400,
                "invalid service version '': strconv.ParseUint: parsing \"\": invalid syntax"
                    .into()
            )
        );
        assert_eq!(
            call("POST", "/nodes/n/update?version=x", "{}").await,
            (
                400,
                "invalid node version 'x': strconv.ParseUint: parsing \"x\": invalid syntax".into()
            )
        );
        assert_eq!(
            call("POST", "/secrets/s/update", "{}").await,
            (400, "invalid secret version".into())
        );
        assert_eq!(
            call("POST", "/configs/c/update", "{}").await,
            (400, "invalid config version".into())
        );
        assert_eq!(
            call("GET", "/services/web/logs", "").await,
            (
                500,
                "Bad parameters: you must choose at least one stream".into()
            )
        );
        assert_eq!(
            call("GET", "/services?filters=bad", "").await,
            (400, "invalid filter".into())
        );
        assert_eq!(
            call("GET", "/services?status=maybe", "").await,
            (
                400,
                "invalid value for status: maybe: strconv.ParseBool: parsing \"maybe\": invalid syntax"
                    .into()
            )
        );
        assert_eq!(
            call(
                "POST",
                "/services/create",
                r#"{"TaskTemplate":{"LogDriver":{"Name":"logentries"}}}"#
            )
            .await,
            (
                400,
                "the logentries logging driver has been deprecated and removed".into()
            )
        );
        assert_eq!(call("POST", "/services/create", "{bad").await.0, 400);
        assert_eq!(
            call("POST", "/secrets/create", "[]").await,
            (
                400,
                "invalid JSON: json: cannot unmarshal array into Go value of type swarm.SecretSpec"
                    .into()
            )
        );
    }
}
