//! `/networks`: Docker's network routes, relayed to the agent's `Networks` service; list and
//! prune filters are applied here.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{Empty, JsonRequest, NetworkConnectRequest, NetworkRef};
use serde_json::Value;

use super::system::{check_filters, label_matches, parse_filters};
use super::{ApiError, json_body, parse_body, status_error};
use crate::vm::Supervisor;

const KNOWN_FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// dockerd's network filters: name (substring), id (prefix), driver, label (`k` or `k=v`),
/// type (`custom` or `builtin`), scope (`local`), dangling (no containers).
pub fn network_matches(n: &Value, filters: &HashMap<String, Vec<String>>) -> bool {
    let builtin = matches!(n["Name"].as_str(), Some("bridge" | "host" | "none"));
    filters.iter().all(|(key, wanted)| {
        wanted.iter().any(|w| match key.as_str() {
            "name" => n["Name"].as_str().is_some_and(|v| v.contains(w.as_str())),
            "id" => n["Id"].as_str().is_some_and(|v| v.starts_with(w.as_str())),
            "driver" => n["Driver"].as_str() == Some(w),
            "scope" => w == "local",
            "type" => (w == "custom") != builtin && (w == "custom" || w == "builtin"),
            "label" => label_matches(&n["Labels"], w),
            "dangling" => {
                let empty = n["Containers"].as_object().is_none_or(|c| c.is_empty());
                (w == "true" || w == "1") == (empty && !builtin)
            }
            _ => false,
        })
    })
}

async fn all(sup: &Supervisor) -> Result<Vec<Value>, ApiError> {
    let resp = sup
        .agent()?
        .networks()
        .list(Empty {})
        .await
        .map_err(status_error)?;
    serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)
}

pub async fn list(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    check_filters(&filters, KNOWN_FILTERS)?;
    let kept: Vec<Value> = all(&sup)
        .await?
        .into_iter()
        .filter(|n| network_matches(n, &filters))
        .collect();
    Ok(axum::Json(kept).into_response())
}

pub async fn inspect(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .networks()
        .inspect(NetworkRef { id })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

pub async fn create(State(sup): State<Supervisor>, body: Bytes) -> Result<Response, ApiError> {
    let value: Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the network create body must be a JSON object",
        ));
    }
    let resp = sup
        .agent()?
        .networks()
        .create(JsonRequest {
            json: body.to_vec(),
        })
        .await
        .map_err(status_error)?;
    Ok((StatusCode::CREATED, json_body(resp.into_inner().json)).into_response())
}

pub async fn remove(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    sup.agent()?
        .networks()
        .remove(NetworkRef { id })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    check_filters(&filters, &["label", "label!"])?;
    let keep: Vec<String> = all(&sup)
        .await?
        .iter()
        .filter(|n| {
            let labels = |key: &str| {
                filters
                    .get(key)
                    .is_some_and(|ws| ws.iter().any(|w| label_matches(&n["Labels"], w)))
            };
            (filters.contains_key("label") && !labels("label")) || labels("label!")
        })
        .filter_map(|n| n["Id"].as_str().map(str::to_owned))
        .collect();
    let resp = sup
        .agent()?
        .networks()
        .prune(JsonRequest {
            json: serde_json::to_vec(&keep).unwrap_or_default(),
        })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

async fn connect_or_disconnect(
    sup: &Supervisor,
    network: String,
    body: &Bytes,
    connect: bool,
) -> Result<Response, ApiError> {
    let value: Value = parse_body(body)?;
    if !value["Container"].is_string() {
        return Err(ApiError::bad_request("the body must name a Container"));
    }
    let req = NetworkConnectRequest {
        network,
        json: body.to_vec(),
    };
    let mut client = sup.agent()?.networks();
    if connect {
        client.connect_container(req).await
    } else {
        client.disconnect_container(req).await
    }
    .map_err(status_error)?;
    Ok(StatusCode::OK.into_response())
}

pub async fn connect(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    connect_or_disconnect(&sup, id, &body, true).await
}

pub async fn disconnect(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    connect_or_disconnect(&sup, id, &body, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn network_filters_as_dockerd() {
        let custom = json!({"Name": "front-net", "Id": "abc123", "Driver": "bridge",
            "Labels": {"team": "web"}, "Containers": {}});
        let builtin = json!({"Name": "bridge", "Id": "def456", "Driver": "bridge",
            "Labels": {}, "Containers": {}});
        let f = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(network_matches(&custom, &f("name", "front")));
        assert!(network_matches(&custom, &f("id", "abc")));
        assert!(!network_matches(&custom, &f("id", "bc")));
        assert!(network_matches(&custom, &f("type", "custom")));
        assert!(!network_matches(&builtin, &f("type", "custom")));
        assert!(network_matches(&builtin, &f("type", "builtin")));
        assert!(network_matches(&custom, &f("label", "team=web")));
        assert!(network_matches(&custom, &f("label", "team")));
        assert!(!network_matches(&custom, &f("label", "team=db")));
        assert!(network_matches(&custom, &f("dangling", "true")));
        assert!(!network_matches(&builtin, &f("dangling", "true")));
    }
}
