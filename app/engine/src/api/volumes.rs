//! `/volumes`: Docker's volume routes, relayed to the agent's `Volumes` service; list and prune
//! filters are applied here.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{JsonRequest, VolumeRef};
use serde_json::{Value, json};

use super::system::{check_filters, label_matches, parse_filters, prune_labels_allow};
use super::{ApiError, ApiVersion, json_body, parse_body, status_error};
use crate::vm::Supervisor;

/// The label dockerd puts on a container's anonymous volumes.
const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const LIST_FILTERS: &[&str] = &["dangling", "driver", "label", "name"];
const PRUNE_FILTERS: &[&str] = &["all", "label", "label!"];

fn truthy(w: &str) -> bool {
    matches!(w, "true" | "1")
}

/// dockerd's volume list filters: name (substring), driver, label (`k` or `k=v`), dangling
/// (no container uses it).
pub fn volume_matches(v: &Value, filters: &HashMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, wanted)| {
        wanted.iter().any(|w| match key.as_str() {
            "name" => v["Name"].as_str().is_some_and(|n| n.contains(w.as_str())),
            "driver" => v["Driver"].as_str() == Some(w),
            "label" => label_matches(&v["Labels"], w),
            "dangling" => truthy(w) == (v["UsageData"]["RefCount"].as_i64() == Some(0)),
            _ => false,
        })
    })
}

/// Whether `docker volume prune` takes volume `v`: anonymous ones only unless `all`, as
/// dockerd does since API 1.42 (a client speaking an older version gets every unused volume,
/// as dockerd gives it), and those the label filters allow.
pub fn prunable(v: &Value, filters: &HashMap<String, Vec<String>>, version: ApiVersion) -> bool {
    let all = version < ApiVersion(1, 42)
        || filters
            .get("all")
            .is_some_and(|ws| ws.iter().any(|w| truthy(w)));
    let anonymous = v["Labels"].get(ANONYMOUS_LABEL).is_some();
    (all || anonymous) && prune_labels_allow(&v["Labels"], filters)
}

/// Every volume with its `UsageData` (sizes only when `size`).
pub async fn all(sup: &Supervisor, size: bool) -> Result<Vec<Value>, ApiError> {
    let resp = sup
        .agent()?
        .volumes()
        .list(JsonRequest {
            json: serde_json::to_vec(&json!({ "Size": size })).unwrap_or_default(),
        })
        .await
        .map_err(status_error)?;
    serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)
}

pub async fn list(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    check_filters(&filters, LIST_FILTERS)?;
    let kept: Vec<Value> = all(&sup, false)
        .await?
        .into_iter()
        .filter(|v| volume_matches(v, &filters))
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("UsageData");
            }
            v
        })
        .collect();
    Ok(axum::Json(json!({ "Volumes": kept, "Warnings": [] })).into_response())
}

pub async fn inspect(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .volumes()
        .inspect(VolumeRef { name })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

pub async fn create(State(sup): State<Supervisor>, body: Bytes) -> Result<Response, ApiError> {
    let value: Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the volume create body must be a JSON object",
        ));
    }
    let resp = sup
        .agent()?
        .volumes()
        .create(JsonRequest {
            json: body.to_vec(),
        })
        .await
        .map_err(status_error)?;
    Ok((StatusCode::CREATED, json_body(resp.into_inner().json)).into_response())
}

pub async fn remove(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    sup.agent()?
        .volumes()
        .remove(VolumeRef { name })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(
    State(sup): State<Supervisor>,
    version: ApiVersion,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    check_filters(&filters, PRUNE_FILTERS)?;
    let names: Vec<String> = all(&sup, false)
        .await?
        .iter()
        .filter(|v| prunable(v, &filters, version))
        .filter_map(|v| v["Name"].as_str().map(str::to_owned))
        .collect();
    let resp = sup
        .agent()?
        .volumes()
        .prune(JsonRequest {
            json: serde_json::to_vec(&names).unwrap_or_default(),
        })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_filters_and_prune_as_dockerd() {
        let named = json!({"Name": "web-data", "Driver": "local", "Labels": {"team": "web"},
            "UsageData": {"RefCount": 0, "Size": -1}});
        let anon = json!({"Name": "0123abcd", "Driver": "local",
            "Labels": {"com.docker.volume.anonymous": ""},
            "UsageData": {"RefCount": 1, "Size": -1}});
        let f = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(volume_matches(&named, &f("name", "data")));
        assert!(!volume_matches(&anon, &f("name", "data")));
        assert!(volume_matches(&named, &f("label", "team=web")));
        assert!(volume_matches(&named, &f("label", "team")));
        assert!(!volume_matches(&named, &f("label", "team=db")));
        assert!(volume_matches(&named, &f("dangling", "true")));
        assert!(volume_matches(&anon, &f("dangling", "false")));
        assert!(volume_matches(&named, &f("driver", "local")));

        let none = HashMap::new();
        let v = ApiVersion::LATEST;
        assert!(!prunable(&named, &none, v), "named volumes need all=true");
        assert!(prunable(&anon, &none, v));
        assert!(prunable(&named, &f("all", "true"), v));
        assert!(!prunable(&named, &f("label!", "team"), v));
        // Before API 1.42, dockerd prunes every unused volume, named or not.
        assert!(prunable(&named, &none, ApiVersion(1, 41)));
        assert!(!prunable(&named, &f("label!", "team"), ApiVersion(1, 41)));
        let mut both = f("all", "1");
        both.insert("label".into(), vec!["team=db".into()]);
        assert!(!prunable(&named, &both, v));
    }
}
