//! The host end of the registry proxy: an HTTP proxy served on the Unix socket where
//! guest-initiated vsock connections to port 1025 arrive (`<hybrid socket>_1025`). `CONNECT`
//! tunnels (HTTPS registries) and absolute-form requests (plain-HTTP registries such as one on
//! the host's 127.0.0.1) both go out through the host's own network stack, so pulls use the
//! host's network, DNS, proxies and VPN. Owns only forwarding; knows nothing of registries.
//!
//! Only the agent may use it: every stream must first prove this boot's agent key
//! ([`berth_agent_proto::auth`]), so a process in the VM that reaches vsock (root in the VM, a
//! privileged container) cannot make the host connect anywhere. Inside the guest, the agent's
//! forwarder serves only the agent's own sockets.

use std::path::Path;
use std::time::Duration;

use berth_agent_proto::auth::{self, Key};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpStream, UnixListener};

/// The vsock port the guest's forwarder connects to.
pub const PROXY_PORT: u32 = 1025;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp
}

async fn handle(
    mut req: Request<Incoming>,
    client: Client<HttpConnector, Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port".into(),
            ));
        };
        let target = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ok(text(StatusCode::BAD_GATEWAY, format!("{authority}: {e}"))),
            Err(_) => {
                return Ok(text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("{authority}: timed out"),
                ));
            }
        };
        tokio::spawn(async move {
            match hyper::upgrade::on(&mut req).await {
                Ok(upgraded) => {
                    let mut upgraded = TokioIo::new(upgraded);
                    let mut target = target;
                    let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut target).await;
                }
                Err(e) => tracing::debug!("proxy upgrade: {e}"),
            }
        });
        return Ok(Response::new(Empty::new().map_err(|e| match e {}).boxed()));
    }
    if req.uri().scheme().is_none() {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "proxy requests need an absolute URI".into(),
        ));
    }
    for h in [
        "proxy-connection",
        "proxy-authorization",
        "connection",
        "keep-alive",
    ] {
        req.headers_mut().remove(h);
    }
    match tokio::time::timeout(Duration::from_secs(120), client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp.map(|b| b.boxed())),
        Ok(Err(e)) => Ok(text(StatusCode::BAD_GATEWAY, e.to_string())),
        Err(_) => Ok(text(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream timed out".into(),
        )),
    }
}

/// How long a guest stream may take to prove the key.
const PROOF_WAIT: Duration = Duration::from_secs(10);

/// Serves the proxy on `socket` (removed first if stale) until the task is dropped, to streams
/// that prove `key`.
pub fn spawn(socket: &Path, key: Key) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(tokio::spawn(async move {
        let mut backoff = crate::limits::AcceptBackoff::new("the registry proxy");
        loop {
            let (mut stream, _) = backoff.retry(|| listener.accept()).await;
            let client = client.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let proof = tokio::time::timeout(
                    PROOF_WAIT,
                    auth::challenge(&mut stream, &key, PROXY_PORT),
                )
                .await;
                if !matches!(proof, Ok(Ok(()))) {
                    tracing::warn!(
                        "refused a registry proxy stream from the VM: it did not prove the agent key"
                    );
                    return;
                }
                let service = hyper::service::service_fn(move |req| handle(req, client.clone()));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!("proxy connection: {e}");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn origin() -> (u16, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap();
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let first = req.lines().next().unwrap_or("").to_owned();
                    let body = format!("origin saw: {first}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(resp.as_bytes()).await.unwrap();
                });
            }
        });
        (port, h)
    }

    #[tokio::test]
    async fn absolute_form_and_connect_reach_the_hosts_loopback() {
        let (port, _origin) = origin().await;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.vsock_1025");
        let key = Key::generate().unwrap();
        let _proxy = spawn(&sock, key.clone()).unwrap();
        // What the agent's forwarder does first on every stream.
        let open = || async {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            auth::prove(&mut s, &key, PROXY_PORT).await.unwrap();
            s
        };

        // Plain HTTP through the proxy: origin-form reaches the server.
        let mut s = open().await;
        let req =
            format!("GET http://127.0.0.1:{port}/v2/ HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("origin saw: GET /v2/ HTTP/1.1"), "{resp}");

        // CONNECT: a raw tunnel.
        let mut s = open().await;
        let req = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        s.write_all(b"GET /tunnel HTTP/1.1\r\n\r\n").await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("origin saw: GET /tunnel"));

        // A closed port is a 502 with the reason, not a hang.
        let mut s = open().await;
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 502"));
    }

    /// A process in the VM without the key gets the nonce and a closed stream, never a
    /// connection to the host.
    #[tokio::test]
    async fn streams_without_the_agent_key_reach_nothing() {
        let (port, _origin) = origin().await;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.vsock_1025");
        let _proxy = spawn(&sock, Key::generate().unwrap()).unwrap();
        for proof in [None, Some(Key::generate().unwrap())] {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            match &proof {
                Some(wrong) => auth::prove(&mut s, wrong, PROXY_PORT).await.unwrap(),
                None => {
                    let mut nonce = [0u8; auth::NONCE_LEN];
                    s.read_exact(&mut nonce).await.unwrap();
                    s.write_all(&[0u8; 32]).await.unwrap();
                }
            }
            let req = format!(
                "GET http://127.0.0.1:{port}/v2/ HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n"
            );
            let _ = s.write_all(req.as_bytes()).await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
        }
    }
}
