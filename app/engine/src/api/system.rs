//! System routes beyond ping, version and info: `/events` (streamed from the agent, filtered
//! here as dockerd filters, its followers counted for `/info`), `/system/df` (composed from
//! the agent's image and container lists) and `/auth` (`docker login`, checked by the agent
//! through the host's proxy).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{
    EventsRequest, ListContainersRequest, ListImagesRequest, LoginRequest,
};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::{ApiError, parse_body, status_error};
use crate::vm::Supervisor;

/// A time as the docker CLI sends it (`1700000000`, `1700000000.123456789`) in nanoseconds.
pub fn parse_time(v: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid time value: {v}"));
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        nanos = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    }
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(bad)
}

/// Docker's `filters` query: `{"key": ["v", ...]}` or the older `{"key": {"v": true}}`.
/// A `label` filter value (`k` or `k=v`) against a Labels object.
pub fn label_matches(labels: &Value, w: &str) -> bool {
    match w.split_once('=') {
        Some((k, v)) => labels[k].as_str() == Some(v),
        None => labels.get(w).is_some(),
    }
}

/// Whether a prune's `label` and `label!` filters let an object with `labels` go: every
/// `label` matches and no `label!` does (dockerd's `matchLabels` for container and volume
/// prunes).
pub fn prune_labels_allow(labels: &Value, filters: &HashMap<String, Vec<String>>) -> bool {
    let with = filters
        .get("label")
        .is_none_or(|ws| ws.iter().all(|w| label_matches(labels, w)));
    let without = filters
        .get("label!")
        .is_some_and(|ws| ws.iter().any(|w| label_matches(labels, w)));
    with && !without
}

/// Refuses filter keys a route does not know, as dockerd does.
pub fn check_filters(
    filters: &HashMap<String, Vec<String>>,
    known: &[&str],
) -> Result<(), ApiError> {
    match filters.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

pub fn parse_filters(raw: Option<&String>) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
    let mut out = HashMap::new();
    for (k, vals) in obj {
        let list = match vals {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter value for {k}"
                )));
            }
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Whether an event passes dockerd's event filters (type, event/action, container, image,
/// label); values of one key are alternatives, keys must all match.
pub fn event_matches(ev: &Value, filters: &HashMap<String, Vec<String>>) -> bool {
    let attr = |k: &str| {
        ev["Actor"]["Attributes"][k]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let id = ev["Actor"]["ID"].as_str().unwrap_or("");
    let kind = ev["Type"].as_str().unwrap_or("");
    let action = ev["Action"].as_str().unwrap_or("");
    filters.iter().all(|(key, wanted)| {
        wanted.is_empty()
            || wanted.iter().any(|w| match key.as_str() {
                "type" => kind == w,
                // `exec_start: sh -c ...` matches `exec_start`.
                "event" => action == w || action.split(':').next() == Some(w.as_str()),
                "container" => {
                    kind == "container" && (id.starts_with(w.as_str()) || attr("name") == *w)
                }
                "image" => {
                    attr("image") == *w || (kind == "image" && (id == w || attr("name") == *w))
                }
                "label" => match w.split_once('=') {
                    Some((k, v)) => attr(k) == v,
                    None => ev["Actor"]["Attributes"].get(w.as_str()).is_some(),
                },
                _ => true,
            })
    })
}

static EVENT_LISTENERS: AtomicUsize = AtomicUsize::new(0);

/// Clients following `/events` now (dockerd's `NEventsListener`).
pub fn event_listeners() -> usize {
    EVENT_LISTENERS.load(Ordering::Relaxed)
}

/// Counts one `/events` client for as long as its stream lives.
struct Listener;

impl Listener {
    fn new() -> Self {
        EVENT_LISTENERS.fetch_add(1, Ordering::Relaxed);
        Listener
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        EVENT_LISTENERS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn events(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let since_ns = q
        .get("since")
        .filter(|v| !v.is_empty())
        .map(|v| parse_time(v))
        .transpose()?;
    let until_ns = q
        .get("until")
        .filter(|v| !v.is_empty())
        .map(|v| parse_time(v))
        .transpose()?;
    let filters = parse_filters(q.get("filters"))?;
    let listener = Listener::new();
    let stream = sup
        .agent()?
        .containers()
        .events(EventsRequest {
            since_ns: since_ns.unwrap_or(0),
            until_ns: until_ns.unwrap_or(0),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let lines = stream.map_while(|r| r.ok()).filter_map(move |r| {
        let _counted = &listener;
        let ev: Value = serde_json::from_slice(&r.json).ok()?;
        event_matches(&ev, &filters).then(|| Ok::<_, std::convert::Infallible>(format!("{ev}\n")))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// `docker system df`: images (with how many containers use each), containers and volumes
/// with their sizes, and the build cache.
pub async fn df(State(sup): State<Supervisor>) -> Result<Response, ApiError> {
    let agent = sup.agent()?;
    let images = agent
        .images()
        .list(ListImagesRequest { all: false })
        .await
        .map_err(status_error)?
        .into_inner();
    let containers = agent
        .containers()
        .list(ListContainersRequest {
            all: true,
            size: true,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut images: Vec<Value> =
        serde_json::from_slice(&images.json).map_err(ApiError::internal)?;
    let mut containers: Vec<Value> =
        serde_json::from_slice(&containers.json).map_err(ApiError::internal)?;
    for c in &mut containers {
        if let Some(ports) = c["Id"].as_str().and_then(|id| sup.ports().summary(id)) {
            c["Ports"] = ports;
        }
        super::defaults::container_summary(c);
    }
    let build_cache: Value = serde_json::from_slice(
        &agent
            .builds()
            .cache(berth_agent_proto::v1::Empty {})
            .await
            .map_err(status_error)?
            .into_inner()
            .json,
    )
    .map_err(ApiError::internal)?;
    let mut layers = 0i64;
    for img in &mut images {
        let id = img["Id"].as_str().unwrap_or("").to_owned();
        let users = containers
            .iter()
            .filter(|c| c["ImageID"] == id.as_str())
            .count();
        img["Containers"] = json!(users);
        layers += img["Size"].as_i64().unwrap_or(0);
    }
    // The build cache's size, which dockerd still writes beside the list.
    let builder_size: i64 = build_cache
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["Size"].as_i64()).sum())
        .unwrap_or(0);
    Ok(axum::Json(json!({
        "LayersSize": layers,
        "BuilderSize": builder_size,
        "Images": images,
        "Containers": containers,
        "Volumes": super::volumes::all(&sup, true).await?,
        "BuildCache": build_cache,
    }))
    .into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `docker login`: 200 with `Login Succeeded`, or 401 with the registry's refusal.
pub async fn auth(State(sup): State<Supervisor>, body: Bytes) -> Result<Response, ApiError> {
    let b: AuthBody = parse_body(&body)?;
    if b.username.is_empty() {
        return Err(ApiError::bad_request("username is required"));
    }
    let settings = sup.settings()?;
    let resp = sup
        .agent()?
        .images()
        .login(LoginRequest {
            server: b.serveraddress,
            username: b.username,
            password: b.password,
            insecure_registries: settings.insecure_registries,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(axum::Json(json!({ "Status": resp.status, "IdentityToken": "" })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_filters_as_the_docker_cli_sends_them() {
        assert_eq!(parse_time("12").unwrap(), 12_000_000_000);
        assert_eq!(parse_time("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_time("12.000000001").unwrap(), 12_000_000_001);
        assert!(parse_time("soon").is_err());
        // Found by the api_bodies fuzz target: too far out for nanoseconds.
        assert!(parse_time("99999999999999999").is_err());
        let f = parse_filters(Some(
            &r#"{"type":{"container":true},"event":["die"]}"#.into(),
        ))
        .unwrap();
        let die = json!({"Type":"container","Action":"die","Actor":{"ID":"abc123","Attributes":{"name":"web","image":"busybox"}}});
        let start = json!({"Type":"container","Action":"start","Actor":{"ID":"abc123","Attributes":{"name":"web"}}});
        assert!(event_matches(&die, &f));
        assert!(!event_matches(&start, &f));
        let by_name = parse_filters(Some(&r#"{"container":["web"]}"#.into())).unwrap();
        assert!(event_matches(&start, &by_name));
        let exec = json!({"Type":"container","Action":"exec_start: sh -c true","Actor":{"ID":"abc","Attributes":{}}});
        let f = parse_filters(Some(&r#"{"event":["exec_start"]}"#.into())).unwrap();
        assert!(event_matches(&exec, &f));
        assert!(parse_filters(Some(&"[1]".into())).is_err());
    }
}
