//! `/plugins`: Berth runs no Docker Engine plugins (volume, network, log or authorization
//! drivers from a registry). The list is empty; installing (`privileges`, `pull`, `create`) is
//! refused; every verb on a named plugin answers dockerd's 404 for a plugin it does not have,
//! after the same checks of the request dockerd makes first. Owns no state.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::ApiError;
use super::goparse::{atoi, filters, internal, read_json};
use crate::vm::Supervisor;

type Q = Query<HashMap<String, String>>;

/// Berth's refusal of a plugin install.
pub fn refused(what: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "Berth does not run Docker Engine plugins: installing {what:?} is refused. Berth has the local volume driver, the bridge, host and null networks and the json-file log driver built in."
        ),
    )
}

/// dockerd's answer for a plugin it does not have.
pub fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("plugin {name:?} not found"))
}

/// A remote reference as the plugin routes need one; an empty one is dockerd's plain error.
fn remote(q: &HashMap<String, String>) -> Result<String, ApiError> {
    match q.get("remote").map(|r| r.trim()).filter(|r| !r.is_empty()) {
        Some(r) => Ok(r.to_owned()),
        None => Err(internal("invalid reference format")),
    }
}

/// The name dockerd looks a plugin up by on upgrade (`getName`): a name without a tag gets
/// `:latest` in its short form; a digest is refused.
fn tagged_name(name: &str) -> Result<String, ApiError> {
    if name.contains('@') {
        return Err(internal("cannot use digest in plugin tag"));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        return Ok(name.to_owned());
    }
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    Ok(format!("{short}:latest"))
}

/// `GET /plugins`: empty, once the filters are ones dockerd knows (`enabled`, `capability`).
async fn list(Query(q): Q) -> Result<Response, ApiError> {
    let f = filters(q.get("filters"))?;
    if let Some(k) = f
        .keys()
        .find(|k| !matches!(k.as_str(), "enabled" | "capability"))
    {
        return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
    }
    if let Some(values) = f.get("enabled") {
        let t = values.iter().any(|v| v == "1" || v == "true");
        let f_ = values.iter().any(|v| v == "0" || v == "false");
        if t == f_ {
            let mut shown = values.clone();
            shown.sort();
            return Err(ApiError::bad_request(format!(
                "invalid filter 'enabled=[{}]'",
                shown.join(" ")
            )));
        }
    }
    Ok(Json(json!([])).into_response())
}

async fn get_rest(Path(rest): Path<String>, Query(q): Q) -> Result<Response, ApiError> {
    if rest == "privileges" {
        return Err(refused(&remote(&q)?));
    }
    match rest.strip_suffix("/json") {
        Some(name) => Err(not_found(name)),
        None => Err(ApiError::not_found(format!(
            "page not found: /plugins/{rest}"
        ))),
    }
}

async fn post_rest(Path(rest): Path<String>, Query(q): Q, body: Bytes) -> Result<(), ApiError> {
    match rest.as_str() {
        "pull" => {
            read_json(&body, "types.PluginPrivileges", "array")?;
            return Err(refused(&remote(&q)?));
        }
        "create" => {
            let name = q.get("name").map_or("", String::as_str);
            if name.is_empty() {
                return Err(internal(
                    "failed to parse reference : invalid reference format",
                ));
            }
            return Err(refused(name));
        }
        _ => {}
    }
    let Some((name, verb)) = rest.rsplit_once('/') else {
        return Err(ApiError::not_found(format!(
            "page not found: /plugins/{rest}"
        )));
    };
    match verb {
        "enable" => {
            atoi(q.get("timeout").map_or("", String::as_str)).map_err(internal)?;
            Err(not_found(name))
        }
        "disable" | "push" => Err(not_found(name)),
        "upgrade" => {
            read_json(&body, "types.PluginPrivileges", "array")?;
            remote(&q)?;
            Err(not_found(&tagged_name(name)?))
        }
        "set" => {
            read_json(&body, "[]string", "array")?;
            Err(not_found(name))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: /plugins/{rest}"
        ))),
    }
}

async fn delete_rest(Path(name): Path<String>) -> ApiError {
    not_found(&name)
}

/// Plugin names hold slashes (`vieux/sshfs`), so one wildcard route takes every path under
/// `/plugins/` and the verb is split off its end, as dockerd's `{name:.*}` routes match.
pub fn routes() -> Router<Supervisor> {
    Router::new().route("/plugins", get(list)).route(
        "/plugins/{*rest}",
        get(get_rest).post(post_rest).delete(delete_rest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(method: &str, uri: &str, body: &str) -> (u16, serde_json::Value) {
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
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn message(m: &str) -> serde_json::Value {
        json!({ "message": m })
    }

    /// dockerd 20.10's answers, checked against it (its filter errors say `Invalid`, 27's
    /// `invalid`).
    #[tokio::test]
    async fn no_plugins_and_dockerds_words_for_unknown_ones() {
        assert_eq!(call("GET", "/plugins", "").await, (200, json!([])));
        assert_eq!(
            call(
                "GET",
                "/plugins?filters=%7B%22enabled%22%3A%5B%22true%22%5D%7D",
                ""
            )
            .await,
            (200, json!([]))
        );
        assert_eq!(
            call(
                "GET",
                "/plugins?filters=%7B%22foo%22%3A%5B%22x%22%5D%7D",
                ""
            )
            .await,
            (400, message("invalid filter 'foo'"))
        );
        assert_eq!(
            call(
                "GET",
                "/plugins?filters=%7B%22enabled%22%3A%5B%22maybe%22%5D%7D",
                ""
            )
            .await,
            (400, message("invalid filter 'enabled=[maybe]'"))
        );
        let x = (404, message("plugin \"x\" not found"));
        assert_eq!(call("GET", "/plugins/x/json", "").await, x);
        assert_eq!(call("DELETE", "/plugins/x?force=1", "").await, x);
        assert_eq!(call("POST", "/plugins/x/enable?timeout=0", "").await, x);
        assert_eq!(call("POST", "/plugins/x/disable", "").await, x);
        assert_eq!(call("POST", "/plugins/x/push", "").await, x);
        assert_eq!(call("POST", "/plugins/x/set", "[]").await, x);
        assert_eq!(
            call("GET", "/plugins/vieux/sshfs/json", "").await,
            (404, message("plugin \"vieux/sshfs\" not found"))
        );
        assert_eq!(
            call("POST", "/plugins/x/upgrade?remote=x", "[]").await,
            (404, message("plugin \"x:latest\" not found"))
        );
        assert_eq!(
            call("GET", "/plugins/privileges/json", "").await,
            (404, message("plugin \"privileges\" not found"))
        );
        assert_eq!(
            call("POST", "/plugins/x/enable", "").await,
            (500, message("strconv.Atoi: parsing \"\": invalid syntax"))
        );
        assert_eq!(
            call("GET", "/plugins/privileges", "").await,
            (500, message("invalid reference format"))
        );
        assert_eq!(
            call("POST", "/plugins/create", "").await,
            (
                500,
                message("failed to parse reference : invalid reference format")
            )
        );
        assert_eq!(call("GET", "/plugins/x/nope", "").await.0, 404);
    }

    #[tokio::test]
    async fn the_engines_router_serves_them() {
        let home = tempfile::tempdir().unwrap();
        let app = crate::api::router(Supervisor::new(crate::paths::Paths::new(home.path())));
        let req = Request::builder()
            .uri("/plugins")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status().as_u16(), 200);
    }

    #[tokio::test]
    async fn installing_is_refused() {
        for (method, uri, body) in [
            ("GET", "/plugins/privileges?remote=vieux/sshfs", ""),
            ("POST", "/plugins/pull?remote=vieux/sshfs", "[]"),
            ("POST", "/plugins/create?name=vieux/sshfs", ""),
        ] {
            let (status, body) = call(method, uri, body).await;
            assert_eq!(status, 501, "{method} {uri}");
            let m = body["message"].as_str().unwrap();
            assert!(
                m.starts_with(
                    "Berth does not run Docker Engine plugins: installing \"vieux/sshfs\""
                ),
                "{m}"
            );
        }
        assert_eq!(tagged_name("docker.io/library/x").unwrap(), "x:latest");
        assert_eq!(
            tagged_name("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(tagged_name("x:v1").unwrap(), "x:v1");
        assert!(tagged_name("x@sha256:00").is_err());
    }
}
