//! `docker exec`: creating an exec (its body read as Go reads it), starting it (output raw or
//! in stdout/stderr frames as the start request's `Tty` says, streamed as it comes, input and
//! the detach keys on a hijacked connection) and inspecting it.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{ExecCreateRequest, ExecRef, ExecStartRequest};
use serde_json::json;
use tokio_stream::StreamExt;

use super::containers::{error_chunk, frame, hijack, serve_session, stream_type};
use super::{ApiError, json_body, parse_body, status_error};
use crate::vm::Supervisor;

/// The fields of an exec create body (`ExecConfig`).
const EXEC_FIELDS: &[&str] = &[
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ConsoleSize",
    "DetachKeys",
    "Tty",
    "Env",
    "Cmd",
    "Privileged",
    "User",
    "WorkingDir",
];

pub async fn exec_create(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut value: serde_json::Value = parse_body(&body)?;
    // Go's JSON decoding matches field names in any case, and clients rely on it (docker-py
    // sends `detachKeys`).
    super::canonical_keys(&mut value, EXEC_FIELDS);
    if !value["Cmd"].is_array() || value["Cmd"].as_array().is_some_and(|a| a.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if let Some(keys) = value["DetachKeys"].as_str().filter(|k| !k.is_empty()) {
        super::detach::parse(keys).map_err(ApiError::bad_request)?;
    }
    let resp = sup
        .agent()?
        .containers()
        .exec_create(ExecCreateRequest {
            container: id,
            config_json: serde_json::to_vec(&value).map_err(ApiError::internal)?,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok((StatusCode::CREATED, axum::Json(json!({ "Id": resp.id }))).into_response())
}

pub async fn exec_start(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let agent = sup.agent()?;
    let info: serde_json::Value = serde_json::from_slice(
        &agent
            .containers()
            .exec_inspect(ExecRef { id: id.clone() })
            .await
            .map_err(status_error)?
            .into_inner()
            .json,
    )
    .map_err(ApiError::internal)?;
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let start: serde_json::Value = parse_body(&body)?;
    let detach = !wants_upgrade && start["Detach"].as_bool().unwrap_or(false);
    // As dockerd: the start request's `Tty`, not the exec's, says whether the output comes
    // raw or in stdout/stderr frames (docker-py starts a TTY exec with `Tty: false` and reads
    // frames).
    let tty = start["Tty"].as_bool().unwrap_or(false);
    let mut stream = agent
        .containers()
        .exec_start(ExecStartRequest { id: id.clone() })
        .await
        .map_err(status_error)?
        .into_inner();
    if detach {
        // `exec -d`: answer now; the output goes nowhere, as with dockerd.
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        return Ok(StatusCode::OK.into_response());
    }
    if !wants_upgrade {
        // A plain client: the output streams as it comes (never held whole here), and ends
        // when the exec does.
        let body = async_stream::stream! {
            while let Some(item) = stream.next().await {
                let chunk = match item {
                    Ok(chunk) if chunk.exited => break,
                    Ok(chunk) => chunk,
                    Err(status) => error_chunk(&status),
                };
                yield Ok::<_, std::io::Error>(axum::body::Bytes::from(frame(&chunk, tty, false)));
            }
        };
        return Ok((
            [(header::CONTENT_TYPE, stream_type(tty))],
            axum::body::Body::from_stream(body),
        )
            .into_response());
    }
    let stdin = info["OpenStdin"]
        .as_bool()
        .unwrap_or(false)
        .then(|| (agent.clone(), id.clone()));
    // As with attach, the detach keys (the exec's own, or ctrl-p,ctrl-q) end a TTY exec's
    // session and leave the process running.
    let keys = info["DetachKeys"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or(super::detach::DEFAULT);
    let scanner = info["ProcessConfig"]["tty"]
        .as_bool()
        .unwrap_or(false)
        .then(|| super::detach::parse(keys).map(super::detach::Scanner::new))
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(hijack(&mut req, tty, move |io| {
        serve_session(io, Box::pin(stream), tty, stdin, true, scanner)
    }))
}

pub async fn exec_inspect(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .containers()
        .exec_inspect(ExecRef { id })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}
