//! `/containers/{id}/archive` (`docker cp` both ways: HEAD stats a path, GET streams a tar,
//! PUT unpacks one) and `/containers/{id}/export`, streamed to and from the agent, which does
//! the filesystem work confined to the container's rootfs.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_agent_proto::v1::{ArchivePutChunk, ArchiveRequest, ContainerRef};
use tokio_stream::StreamExt;

use super::{ApiError, flag, status_error};
use crate::vm::Supervisor;

type Q = Query<HashMap<String, String>>;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

fn path_of(q: &HashMap<String, String>) -> Result<String, ApiError> {
    match q.get("path").filter(|p| !p.is_empty()) {
        Some(p) if p.starts_with('/') => Ok(p.clone()),
        Some(p) => Ok(format!("/{p}")),
        None => Err(ApiError::bad_request("path must not be empty")),
    }
}

/// The stat header value: the agent's stat JSON, base64 as dockerd sends it.
async fn stat_header(sup: &Supervisor, id: &str, path: &str) -> Result<HeaderValue, ApiError> {
    let resp = sup
        .agent()?
        .containers()
        .archive_stat(ArchiveRequest {
            id: id.to_owned(),
            path: path.to_owned(),
        })
        .await
        .map_err(status_error)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(resp.into_inner().json);
    HeaderValue::from_str(&encoded).map_err(ApiError::internal)
}

pub async fn head(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let path = path_of(&q)?;
    let stat = stat_header(&sup, &id, &path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat);
    Ok(resp)
}

/// A body streaming the agent's data chunks; an error midway ends the body early, which the
/// client sees as a truncated tar.
fn tar_body(stream: tonic::Streaming<berth_agent_proto::v1::DataChunk>) -> Body {
    let chunks = stream.map_while(|c| c.ok().map(|c| Ok::<_, std::convert::Infallible>(c.data)));
    Body::from_stream(chunks)
}

pub async fn get(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let path = path_of(&q)?;
    let stat = stat_header(&sup, &id, &path).await?;
    let stream = sup
        .agent()?
        .containers()
        .archive_get(ArchiveRequest { id, path })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut resp = (
        [(header::CONTENT_TYPE, "application/x-tar")],
        tar_body(stream),
    )
        .into_response();
    resp.headers_mut().insert(STAT_HEADER, stat);
    Ok(resp)
}

pub async fn export(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stream = sup
        .agent()?
        .containers()
        .export(ContainerRef { id })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        tar_body(stream),
    )
        .into_response())
}

/// Unpacks the request's tar into a directory of the container.
pub async fn put(
    State(sup): State<Supervisor>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Result<Response, ApiError> {
    let path = path_of(&q)?;
    let copy_uid_gid = flag(&q, "copyUIDGID");
    let mut body = req.into_body().into_data_stream();
    let first = ArchivePutChunk {
        id,
        path,
        copy_uid_gid,
        data: Vec::new(),
    };
    let chunks = async_stream::stream! {
        yield first;
        while let Some(Ok(data)) = body.next().await {
            yield ArchivePutChunk { data: data.to_vec(), ..Default::default() };
        }
    };
    sup.agent()?
        .containers()
        .archive_put(chunks)
        .await
        .map_err(status_error)?;
    Ok(StatusCode::OK.into_response())
}
