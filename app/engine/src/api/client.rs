//! A minimal HTTP/1 client for the API socket: one JSON answer, or a stream of JSON lines.

use std::path::Path;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio_stream::{Stream, StreamExt};

/// A request body: whole, or streamed (an archive being uploaded).
type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn whole(data: Vec<u8>) -> ReqBody {
    Full::new(Bytes::from(data))
        .map_err(|never| match never {})
        .boxed_unsync()
}

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
    req: hyper::Request<ReqBody>,
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
    request_bytes(socket, method, path, "application/json", bytes.into_bytes()).await
}

/// One request with a body of `content_type` (a tar for an archive upload); returns the
/// status and the body, as [`request`].
pub async fn request_bytes(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, serde_json::Value), ClientError> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "berth")
        .header("Content-Type", content_type)
        .body(whole(body))?;
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
    lines_of(socket, method, path, headers, whole(Vec::new())).await
}

/// As [`json_lines`], sending `body` as it is read (`docker load` and `import` of an archive
/// that need not fit in memory).
pub async fn upload_json_lines<S>(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: S,
) -> Result<(u16, tokio::sync::mpsc::Receiver<serde_json::Value>), ClientError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let body = StreamBody::new(body.map(|chunk| chunk.map(Frame::data))).boxed_unsync();
    lines_of(socket, method, path, headers, body).await
}

async fn lines_of(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Result<(u16, tokio::sync::mpsc::Receiver<serde_json::Value>), ClientError> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "berth");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send(socket, req.body(body)?).await?;
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
