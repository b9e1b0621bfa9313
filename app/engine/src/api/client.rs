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
