//! A minimal HTTP/1 client for the API socket: one JSON answer, or a stream of JSON lines.

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

/// Sends `req` on a new connection to `socket`.
async fn send(
    socket: &Path,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| ClientError::Connect(socket.display().to_string(), e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// One request; returns the status and the body (JSON when the body is JSON).
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), ClientError> {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "berth")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(bytes)))?;
    let resp = send(socket, req).await?;
    let status = resp.status().as_u16();
    let data = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&data)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&data).into()));
    Ok((status, value))
}

/// A request answered with a stream of JSON lines (pull and push progress): the status, and
/// each line as it arrives. A body that is not JSON lines ends the stream with it as a string.
pub async fn json_lines(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, tokio::sync::mpsc::Receiver<serde_json::Value>), ClientError> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "berth");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send(socket, req.body(Full::new(Bytes::new()))?).await?;
    let status = resp.status().as_u16();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value = serde_json::from_slice(&line).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&line).trim().into())
                });
                if tx.send(value).await.is_err() {
                    return;
                }
            }
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            let value = serde_json::from_slice(&pending).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&pending).trim().into())
            });
            let _ = tx.send(value).await;
        }
    });
    Ok((status, rx))
}
