//! `/containers/...` and `/exec/...`: create, start, stop, restart, kill, pause, remove, list,
//! inspect, wait, logs, attach and exec, forwarded to the agent (which keeps every container).
//! Attach and exec start hijack the connection (`Upgrade: tcp`) and write Docker's multiplexed
//! stdout/stderr frames when the container has no TTY.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{
    AttachRequest, ContainerRef, CreateContainerRequest, KillContainerRequest,
    ListContainersRequest, LogsRequest, OutputChunk, RemoveContainerRequest, ResizeRequest,
    StdinChunk, StopContainerRequest, WaitContainerRequest,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::{ApiError, flag, json_body, parse_body, status_error};
use crate::agent::AgentClient;
use crate::vm::Supervisor;

type Q = Query<HashMap<String, String>>;

/// The agent's output of a container or an exec, however it was asked for.
pub(super) type ChunkStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<OutputChunk, tonic::Status>> + Send>>;

fn num(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, ApiError> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<f64>()
            .map(|f| Some(f as i64))
            .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v}"))),
    }
}

/// 304 for "already started/stopped", as dockerd answers.
fn not_modified(status: tonic::Status) -> Result<Response, ApiError> {
    if status.code() == tonic::Code::AlreadyExists {
        Ok(StatusCode::NOT_MODIFIED.into_response())
    } else {
        Err(status_error(status))
    }
}

fn no_content<T>(r: Result<T, tonic::Status>) -> Result<Response, ApiError> {
    match r {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(s) => not_modified(s),
    }
}

pub async fn create(
    State(sup): State<Supervisor>,
    q: Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut value: serde_json::Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the create body must be a JSON object",
        ));
    }
    let hidden = crate::shares::hidden(sup.paths());
    crate::shares::check_binds(&mut value, &sup.shares(), &hidden)
        .map_err(ApiError::bad_request)?;
    crate::published::check(&value).map_err(ApiError::bad_request)?;
    // docker-py sends `runtime=` at the top level of the body: taken as HostConfig's when
    // that has none (dockerd ignores it, and answers its default, `runc`, which it is there).
    if let Some(top) = value
        .as_object_mut()
        .and_then(|o| o.remove("Runtime"))
        .filter(|r| r.as_str().is_some_and(|r| !r.is_empty()))
        && value["HostConfig"]["Runtime"]
            .as_str()
            .is_none_or(str::is_empty)
        && let Some(body) = value.as_object_mut()
    {
        let hc = body.entry("HostConfig").or_insert_with(|| json!({}));
        if let Some(hc) = hc.as_object_mut() {
            hc.insert("Runtime".into(), top);
        }
    }
    // As dockerd: an unset runtime is the default one, an unknown one is refused.
    match value["HostConfig"]["Runtime"].as_str().unwrap_or_default() {
        "" => {
            if let Some(hc) = value.get_mut("HostConfig").and_then(|h| h.as_object_mut()) {
                hc.insert("Runtime".into(), json!(super::info::RUNTIME));
            }
        }
        r if super::info::RUNTIMES.contains(&r) => {}
        r => {
            return Err(ApiError::bad_request(format!(
                "unknown or invalid runtime name: {r}"
            )));
        }
    }
    let resp = sup
        .agent()?
        .containers()
        .create(CreateContainerRequest {
            name: q.get("name").cloned().unwrap_or_default(),
            config_json: serde_json::to_vec(&value).map_err(ApiError::internal)?,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    // The host keeps what to publish: listeners never come from the guest's documents.
    sup.paths()
        .published()
        .record(&resp.id, &value)
        .map_err(|e| ApiError::internal(format!("keeping the published ports: {e}")))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "Id": resp.id, "Warnings": resp.warnings })),
    )
        .into_response())
}

pub async fn start(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let agent = sup.agent()?;
    start_publishing(&sup, &agent, &id).await
}

/// Binds the container's published ports, then starts it; a port in use fails the start
/// with dockerd's message and nothing runs. A start that fails closes the ports again.
async fn start_publishing(
    sup: &Supervisor,
    agent: &AgentClient,
    id: &str,
) -> Result<Response, ApiError> {
    let doc = inspect_value(agent, id).await?;
    let full_id = doc["Id"].as_str().unwrap_or(id).to_owned();
    let running = doc["State"]["Running"].as_bool().unwrap_or(false);
    let bindings = sup
        .paths()
        .published()
        .bindings(&full_id, &doc)
        .map_err(ApiError::internal)?;
    if !running && !bindings.is_empty() {
        let name = doc["Name"].as_str().unwrap_or("").trim_start_matches('/');
        let expose = sup.settings()?.expose_ports_on_lan;
        sup.ports().set_starting(&full_id, true);
        sup.ports()
            .open(&full_id, name, bindings, sup.paths().vsock_socket(), expose)
            .await
            .map_err(|e| {
                sup.ports().set_starting(&full_id, false);
                ApiError::internal(e)
            })?;
    }
    let result = agent
        .containers()
        .start(ContainerRef {
            id: full_id.clone(),
        })
        .await;
    sup.ports().set_starting(&full_id, false);
    if result.is_err() && !running {
        sup.ports().close(&full_id);
    }
    no_content(result)
}

async fn stop_request(
    agent: &AgentClient,
    id: String,
    q: &HashMap<String, String>,
) -> Result<tonic::Response<berth_agent_proto::v1::Empty>, tonic::Status> {
    let timeout = num(q, "t")
        .ok()
        .flatten()
        .map_or(-1, |t| t.clamp(-1, i32::MAX as i64) as i32);
    agent
        .containers()
        .stop(StopContainerRequest {
            id,
            timeout,
            signal: q.get("signal").cloned().unwrap_or_default(),
            for_shutdown: false,
        })
        .await
}

pub async fn stop(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    num(&q, "t")?;
    no_content(stop_request(&sup.agent()?, id, &q).await)
}

pub async fn restart(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    num(&q, "t")?;
    let agent = sup.agent()?;
    if let Err(s) = stop_request(&agent, id.clone(), &q).await
        && s.code() != tonic::Code::AlreadyExists
    {
        return Err(status_error(s));
    }
    crate::ports::reconcile(&sup).await;
    start_publishing(&sup, &agent, &id).await
}

pub async fn kill(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let signal = q.get("signal").cloned().unwrap_or_default();
    no_content(
        sup.agent()?
            .containers()
            .kill(KillContainerRequest { id, signal })
            .await,
    )
}

pub async fn rename(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let name = q.get("name").cloned().unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    sup.agent()?
        .containers()
        .rename(berth_agent_proto::v1::RenameContainerRequest { id, name })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `docker container prune`: every container that is not running or paused (created, exited,
/// dead), narrowed by dockerd's `until`, `label` and `label!` filters. Reclaims their
/// writable layers' size; `ContainersDeleted` is null when nothing went, as dockerd says.
pub async fn prune(State(sup): State<Supervisor>, Query(q): Q) -> Result<Response, ApiError> {
    let filters = super::system::parse_filters(q.get("filters"))?;
    super::system::check_filters(&filters, &["until", "label", "label!"])?;
    let until = match filters.get("until").map(Vec::as_slice) {
        None | Some([]) => None,
        Some([v]) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i128;
            Some(super::goparse::get_timestamp(v, now).map_err(ApiError::bad_request)?)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "more than one until filter specified",
            ));
        }
    };
    let agent = sup.agent()?;
    let resp = agent
        .containers()
        .list(ListContainersRequest {
            all: true,
            size: true,
        })
        .await
        .map_err(status_error)?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in rows.iter().filter(|c| prunable(c, &filters, until)) {
        let id = c["Id"].as_str().unwrap_or_default().to_owned();
        let removed = agent
            .containers()
            .remove(RemoveContainerRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await;
        // One that started or went meanwhile is left, as dockerd leaves it.
        if removed.is_ok() {
            reclaimed += c["SizeRw"].as_u64().unwrap_or(0);
            deleted.push(id);
        }
    }
    let deleted = (!deleted.is_empty()).then_some(deleted);
    Ok(
        axum::Json(json!({ "ContainersDeleted": deleted, "SpaceReclaimed": reclaimed }))
            .into_response(),
    )
}

/// Whether prune takes container `c`: not running or paused, created before `until` (ns),
/// with every `label` and none of the `label!` filters.
fn prunable(
    c: &serde_json::Value,
    filters: &HashMap<String, Vec<String>>,
    until: Option<i128>,
) -> bool {
    let stopped = matches!(c["State"].as_str(), Some("created" | "exited" | "dead"));
    let old_enough =
        until.is_none_or(|u| i128::from(c["Created"].as_i64().unwrap_or(0)) * 1_000_000_000 < u);
    stopped && old_enough && super::system::prune_labels_allow(&c["Labels"], filters)
}

pub async fn pause(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    no_content(sup.agent()?.containers().pause(ContainerRef { id }).await)
}

pub async fn unpause(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    no_content(sup.agent()?.containers().unpause(ContainerRef { id }).await)
}

pub async fn remove(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let force = flag(&q, "force");
    let volumes = flag(&q, "v");
    if flag(&q, "link") {
        // dockerd's words and status for a name that is no link.
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Conflict, cannot remove the default link name of the container".into(),
        ));
    }
    let agent = sup.agent()?;
    let full_id = inspect_value(&agent, &id).await?["Id"]
        .as_str()
        .map(str::to_owned);
    agent
        .containers()
        .remove(RemoveContainerRequest {
            id,
            force,
            volumes,
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    if let Some(full_id) = full_id {
        sup.paths().published().forget(&full_id);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /containers/{parent}/{alias}?link=1` (`docker rm --link`): removes a legacy link.
/// A link name is no container here otherwise.
pub async fn remove_link(
    State(sup): State<Supervisor>,
    Path((parent, alias)): Path<(String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    if !flag(&q, "link") {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("No such container: {parent}/{alias}"),
        ));
    }
    sup.agent()?
        .containers()
        .remove(RemoveContainerRequest {
            id: parent,
            link: alias,
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list(State(sup): State<Supervisor>, Query(q): Q) -> Result<Response, ApiError> {
    let limit = num(&q, "limit")?.unwrap_or(-1);
    let all = flag(&q, "all") || limit > 0;
    let size = flag(&q, "size");
    let filters = super::system::parse_filters(q.get("filters"))?;
    let resp = sup
        .agent()?
        .containers()
        .list(ListContainersRequest { all, size })
        .await
        .map_err(status_error)?;
    let json = resp.into_inner().json;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).map_err(ApiError::internal)?;
    let mut kept: Vec<_> = rows
        .into_iter()
        .filter(|c| container_matches(c, &filters))
        .map(|mut c| {
            if let Some(ports) = c["Id"].as_str().and_then(|id| sup.ports().summary(id)) {
                c["Ports"] = ports;
            }
            super::defaults::container_summary(&mut c);
            c
        })
        .collect();
    if limit > 0 {
        kept.truncate(limit as usize);
    }
    Ok(axum::Json(kept).into_response())
}

/// dockerd's `ps` filters: id and name (prefix and substring), status, label, ancestor,
/// exited; values of one key are alternatives, keys must all match.
pub fn container_matches(c: &serde_json::Value, filters: &HashMap<String, Vec<String>>) -> bool {
    let id = c["Id"].as_str().unwrap_or("");
    let names: Vec<&str> = c["Names"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let state = c["State"].as_str().unwrap_or("");
    filters.iter().all(|(key, wanted)| {
        wanted.is_empty()
            || wanted.iter().any(|w| match key.as_str() {
                "id" => id.starts_with(w.as_str()),
                "name" => names
                    .iter()
                    .any(|n| n.trim_start_matches('/').contains(w.as_str())),
                "status" => state == w,
                "label" => super::system::label_matches(&c["Labels"], w),
                // A volume by name, or any mount by its destination.
                "volume" => c["Mounts"].as_array().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m["Name"].as_str() == Some(w.as_str())
                            || m["Destination"].as_str() == Some(w.as_str())
                    })
                }),
                "ancestor" => {
                    c["Image"].as_str() == Some(w.as_str())
                        || c["ImageID"].as_str().is_some_and(|i| {
                            i.trim_start_matches("sha256:")
                                .starts_with(w.trim_start_matches("sha256:"))
                        })
                }
                "exited" => {
                    state == "exited"
                        && c["Status"]
                            .as_str()
                            .is_some_and(|s| s.starts_with(&format!("Exited ({w})")))
                }
                _ => true,
            })
    })
}

/// The container's inspect document.
async fn inspect_value(agent: &AgentClient, id: &str) -> Result<serde_json::Value, ApiError> {
    let resp = agent
        .containers()
        .inspect(ContainerRef { id: id.to_owned() })
        .await
        .map_err(status_error)?;
    serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)
}

pub async fn inspect(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut doc = inspect_value(&sup.agent()?, &id).await?;
    let full_id = doc["Id"].as_str().unwrap_or("").to_owned();
    if let Some(ports) = sup.ports().network_settings(&full_id) {
        doc["NetworkSettings"]["Ports"] = ports;
    }
    super::defaults::container(&mut doc);
    Ok(axum::Json(doc).into_response())
}

async fn stats_sample(agent: &AgentClient, id: &str) -> Result<serde_json::Value, tonic::Status> {
    let resp = agent
        .containers()
        .stats(ContainerRef { id: id.to_owned() })
        .await?;
    Ok(serde_json::from_slice(&resp.into_inner().json).unwrap_or_default())
}

/// Docker's stats: a sample with the previous one as `precpu_stats` (one second apart), once
/// (`stream=false`) or every second.
pub async fn stats(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let agent = sup.agent()?;
    let stream = q.get("stream").is_none_or(|v| v == "1" || v == "true");
    let one_shot = flag(&q, "one-shot");
    let mut prev = stats_sample(&agent, &id).await.map_err(status_error)?;
    let pair = |mut now: serde_json::Value, prev: &serde_json::Value| {
        now["precpu_stats"] = prev["cpu_stats"].clone();
        now["preread"] = prev["read"].clone();
        now
    };
    if !stream {
        if one_shot {
            // As dockerd: no previous sample, so zero counters and the zero time.
            let none = json!({
                "read": "0001-01-01T00:00:00Z",
                "cpu_stats": {
                    "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                    "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
                },
            });
            return Ok(axum::Json(pair(prev.clone(), &none)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = stats_sample(&agent, &id).await.map_err(status_error)?;
        return Ok(axum::Json(pair(now, &prev)).into_response());
    }
    let body = async_stream::stream! {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let Ok(now) = stats_sample(&agent, &id).await else { break };
            let line = pair(now.clone(), &prev);
            prev = now;
            yield Ok::<_, std::convert::Infallible>(format!("{line}\n"));
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Answers 200 at once and the exit status when it comes: the docker CLI waits for the headers
/// before it starts the container, so the wait is in place before the container can exit.
pub async fn wait(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let condition = q
        .get("condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!(
            "invalid condition: {condition}"
        )));
    }
    let agent = sup.agent()?;
    // Unknown containers get their 404 before the stream starts.
    let doc = inspect_value(&agent, &id).await?;
    let id = doc["Id"].as_str().unwrap_or(&id).to_owned();
    let body = async_stream::stream! {
        let result = agent
            .containers()
            .wait(WaitContainerRequest { id, condition })
            .await;
        let line = match result {
            Ok(r) => json!({ "StatusCode": r.into_inner().status_code, "Error": null }),
            Err(s) => json!({ "StatusCode": -1, "Error": { "Message": s.message() } }),
        };
        yield Ok::<_, std::convert::Infallible>(format!("{line}\n"));
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// One chunk as it goes on the wire: with Docker's 8-byte stream header unless a TTY.
pub(super) fn frame(chunk: &OutputChunk, tty: bool, timestamps: bool) -> Vec<u8> {
    let mut payload = Vec::with_capacity(chunk.data.len() + 32);
    if timestamps {
        payload.extend_from_slice(chunk.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&chunk.data);
    if tty {
        return payload;
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(if chunk.stream == 2 { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

pub(super) fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

pub async fn logs(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let (stdout, stderr) = (flag(&q, "stdout"), flag(&q, "stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let agent = sup.agent()?;
    let doc = inspect_value(&agent, &id).await?;
    let tty = doc["Config"]["Tty"].as_bool().unwrap_or(false);
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => -1,
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid tail: {t}")))?,
    };
    let mut stream = agent
        .containers()
        .logs(LogsRequest {
            id,
            follow: flag(&q, "follow"),
            stdout,
            stderr,
            since: num(&q, "since")?.unwrap_or(0),
            until: num(&q, "until")?.unwrap_or(0),
            tail,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let timestamps = flag(&q, "timestamps");
    let body = async_stream::stream! {
        while let Some(Ok(chunk)) = stream.next().await {
            yield Ok::<_, std::convert::Infallible>(frame(&chunk, tty, timestamps));
        }
    };
    Ok((
        [(header::CONTENT_TYPE, stream_type(tty))],
        Body::from_stream(body),
    )
        .into_response())
}

/// Answers 101 and hands the raw connection to `task` once hyper lets go of it.
pub(super) fn hijack<F, Fut>(req: &mut Request, tty: bool, task: F) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => task(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!("hijack: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, stream_type(tty))
        .body(Body::empty())
        .expect("static response")
}

pub async fn attach(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
    mut req: Request,
) -> Result<Response, ApiError> {
    let keys = q
        .get("detachKeys")
        .filter(|k| !k.is_empty())
        .map_or(super::detach::DEFAULT, String::as_str);
    let keys = super::detach::parse(keys).map_err(ApiError::bad_request)?;
    let agent = sup.agent()?;
    let doc = inspect_value(&agent, &id).await?;
    let tty = doc["Config"]["Tty"].as_bool().unwrap_or(false);
    let (stdout, stderr, logs) = (flag(&q, "stdout"), flag(&q, "stderr"), flag(&q, "logs"));
    // As dockerd: without `stream` only the log is sent. With it, a container that is not
    // running is followed into its next run (the docker CLI's `start -a`, and clients that
    // attach to a new container before they start it), except an exited one when the log was
    // asked for too: then the log is the answer and the attach ends (docker-py's
    // `attach(logs=True)` of a container that ran).
    let exited = matches!(doc["State"]["Status"].as_str(), Some("exited" | "dead"));
    let live = flag(&q, "stream") && !(exited && logs);
    let stream: ChunkStream = if live {
        Box::pin(
            agent
                .containers()
                .attach(AttachRequest {
                    id,
                    stdout,
                    stderr,
                    logs,
                })
                .await
                .map_err(status_error)?
                .into_inner(),
        )
    } else if logs {
        Box::pin(
            agent
                .containers()
                .logs(LogsRequest {
                    id,
                    follow: false,
                    stdout,
                    stderr,
                    since: 0,
                    until: 0,
                    tail: -1,
                })
                .await
                .map_err(status_error)?
                .into_inner(),
        )
    } else {
        Box::pin(tokio_stream::empty())
    };
    let stdin = (live && flag(&q, "stdin")).then(|| {
        (
            agent.clone(),
            doc["Id"].as_str().unwrap_or_default().to_owned(),
        )
    });
    // As dockerd: only a TTY's input is watched for the keys; a pipe's passes through.
    let scanner = tty.then(|| super::detach::Scanner::new(keys));
    Ok(hijack(&mut req, tty, move |io| {
        serve_session(io, stream, tty, stdin, false, scanner)
    }))
}

/// Why an exec could not run, as dockerd says it: on its stderr.
pub(super) fn error_chunk(status: &tonic::Status) -> OutputChunk {
    OutputChunk {
        stream: 2,
        data: format!("{}\n", status.message()).into_bytes(),
        ..Default::default()
    }
}

/// Serves an attach or a started exec (`exec`) on a hijacked connection: the client's input
/// goes to the stdin of `stdin`'s container or exec, watched for the detach keys by
/// `scanner`; `stream`'s output goes back framed (raw with `tty`) until it ends, the exec
/// exits, or the keys are typed (the session ends, the process runs on). An exec's failure to
/// run is told on its stderr; an attach's stream error ends it.
pub(super) async fn serve_session(
    io: TokioIo<hyper::upgrade::Upgraded>,
    mut stream: ChunkStream,
    tty: bool,
    stdin: Option<(AgentClient, String)>,
    exec: bool,
    scanner: Option<super::detach::Scanner>,
) {
    let (mut reader, mut writer) = tokio::io::split(io);
    // Set when the client typed the detach keys.
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    let mut watching = stdin.is_some();
    if let Some((agent, id)) = stdin {
        tokio::spawn(async move {
            if forward_stdin(&mut reader, agent, id, exec, scanner).await {
                let _ = detached_tx.send(());
            }
        });
    }
    loop {
        let item = tokio::select! {
            item = stream.next() => match item {
                Some(item) => item,
                None => break,
            },
            // Dropped unsent: the client's input ended without the keys; output goes on.
            said = &mut detached, if watching => match said {
                Ok(()) => break,
                Err(_) => {
                    watching = false;
                    continue;
                }
            },
        };
        let chunk = match item {
            Ok(chunk) if chunk.exited => break,
            Ok(chunk) => chunk,
            Err(status) if exec => error_chunk(&status),
            Err(_) => break,
        };
        if writer.write_all(&frame(&chunk, tty, false)).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Copies what the client sends on a hijacked connection into the stdin of the container (or,
/// with `exec`, of the exec'd process), until the client half-closes (or drops) the connection
/// or types the detach keys `detach` watches for; true when it detached.
pub(super) async fn forward_stdin<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    agent: AgentClient,
    id: String,
    exec: bool,
    mut detach: Option<super::detach::Scanner>,
) -> bool {
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let call = tokio::spawn(async move {
        let input = tokio_stream::wrappers::ReceiverStream::new(rx);
        if exec {
            agent.containers().write_exec_stdin(input).await
        } else {
            agent.containers().write_stdin(input).await
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    let mut detached = false;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 && !first {
            break;
        }
        let data = match detach.as_mut() {
            Some(scanner) => {
                let (data, done) = scanner.scan(&buf[..n]);
                detached = done;
                data
            }
            None => buf[..n].to_vec(),
        };
        let chunk = StdinChunk {
            id: if first { id.clone() } else { String::new() },
            data,
        };
        first = false;
        if tx.send(chunk).await.is_err() || n == 0 || detached {
            break;
        }
    }
    drop(tx);
    if let Ok(Err(e)) = call.await {
        tracing::debug!("stdin of {id}: {e}");
    }
    detached
}

/// `h` and `w` of a resize request.
fn terminal_size(q: &HashMap<String, String>) -> Result<(u32, u32), ApiError> {
    let get = |k: &str| -> Result<u32, ApiError> {
        q.get(k)
            .ok_or_else(|| ApiError::bad_request(format!("missing {k}")))?
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid {k}: not a number")))
    };
    Ok((get("h")?, get("w")?))
}

/// Resizes the terminal of a TTY container (or, with `exec`, a TTY exec).
async fn resize_terminal(
    sup: Supervisor,
    id: String,
    q: HashMap<String, String>,
    exec: bool,
) -> Result<Response, ApiError> {
    let (height, width) = terminal_size(&q)?;
    sup.agent()?
        .containers()
        .resize(ResizeRequest {
            id,
            exec,
            height,
            width,
        })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::OK.into_response())
}

pub async fn resize(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    resize_terminal(sup, id, q, false).await
}

/// An exec not started yet keeps the size for its start.
pub async fn exec_resize(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    resize_terminal(sup, id, q, true).await
}

/// `docker update`: resources and restart policy, kept and (while it runs) applied at once.
pub async fn update(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the update body must be a JSON object",
        ));
    }
    let resp = sup
        .agent()?
        .containers()
        .update(berth_agent_proto::v1::UpdateContainerRequest {
            id,
            json: serde_json::to_vec(&value).map_err(ApiError::internal)?,
        })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

/// `docker diff`: what the container changed in its image, as the agent reads its layer.
pub async fn changes(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .containers()
        .changes(ContainerRef { id })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

/// `docker top`: the container's processes in `ps -ef` columns.
pub async fn top(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .containers()
        .top(ContainerRef { id })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_takes_what_dockerd_takes() {
        let c = |state: &str, created: i64| json!({"Id": "x", "State": state, "Created": created, "Labels": {"team": "web"}});
        let none = HashMap::new();
        for state in ["created", "exited", "dead"] {
            assert!(prunable(&c(state, 10), &none, None), "{state}");
        }
        for state in ["running", "paused", "restarting", "removing"] {
            assert!(!prunable(&c(state, 10), &none, None), "{state}");
        }
        let s = 1_000_000_000i128;
        assert!(prunable(&c("exited", 10), &none, Some(11 * s)));
        assert!(!prunable(&c("exited", 10), &none, Some(10 * s)));
        let f = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(prunable(&c("exited", 10), &f("label", "team=web"), None));
        assert!(!prunable(&c("exited", 10), &f("label", "team=db"), None));
        assert!(!prunable(&c("exited", 10), &f("label!", "team"), None));
        assert!(prunable(&c("exited", 10), &f("label!", "tier"), None));
    }

    #[test]
    fn ps_filters_as_dockerd() {
        let c = json!({"Id": "abc123", "Names": ["/web-1"], "State": "exited",
            "Status": "Exited (3) 2 seconds ago", "Labels": {"app": "x"}, "Image": "busybox",
            "ImageID": "sha256:feed"});
        let f = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(container_matches(&c, &f("name", "web")));
        assert!(container_matches(&c, &f("id", "abc")));
        assert!(container_matches(&c, &f("status", "exited")));
        assert!(!container_matches(&c, &f("status", "running")));
        assert!(container_matches(&c, &f("label", "app=x")));
        assert!(container_matches(&c, &f("exited", "3")));
        assert!(container_matches(&c, &f("ancestor", "feed")));
        assert!(!container_matches(&c, &f("exited", "0")));
    }

    #[test]
    fn frames_carry_the_stream_header_unless_tty() {
        let chunk = OutputChunk {
            stream: 2,
            data: b"oops\n".to_vec(),
            time: "2026-01-01T00:00:00.000000001Z".into(),
            exited: false,
            exit_code: 0,
        };
        assert_eq!(
            frame(&chunk, false, false),
            b"\x02\x00\x00\x00\x00\x00\x00\x05oops\n"
        );
        assert_eq!(frame(&chunk, true, false), b"oops\n");
        let stamped = frame(&chunk, true, true);
        assert!(stamped.starts_with(b"2026-01-01T00:00:00.000000001Z oops"));
    }
}
