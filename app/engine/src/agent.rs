//! The engine's client of the guest agent: gRPC over the hybrid-vsock Unix socket
//! (`CONNECT <port>\n` / `OK <port>\n`), retrying the handshake until a deadline because the
//! guest may not be listening yet, then the agent's proof of this boot's key
//! ([`berth_agent_proto::auth`]) before a byte of the engine's own is sent. Owns the
//! connection; knows the agent only through its proto.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_agent_proto::AGENT_PORT;
use berth_agent_proto::auth::{self, Key};
use berth_agent_proto::v1::{
    InfoRequest, InfoResponse, PingRequest, ShutdownRequest, SyncTimeRequest,
    builds_client::BuildsClient, containers_client::ContainersClient, debug_client::DebugClient,
    images_client::ImagesClient, networks_client::NetworksClient, system_client::SystemClient,
    volumes_client::VolumesClient,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent did not answer on {socket} within {waited:?}: {last}")]
    Unreachable {
        socket: PathBuf,
        waited: Duration,
        last: String,
    },
    #[error("agent call failed: {0}")]
    Call(#[from] tonic::Status),
    #[error("agent transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Where the key of the VM behind hybrid-vsock `socket` lies: beside it, 0600 in the runtime
/// directory, written by the engine that booted the VM.
pub fn key_path(socket: &Path) -> PathBuf {
    socket.with_file_name("agent.key")
}

/// The key of the VM behind `socket`.
pub fn read_key(socket: &Path) -> std::io::Result<Key> {
    let path = key_path(socket);
    let bytes = std::fs::read(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Key::from_bytes(&bytes).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold an agent key", path.display()),
        )
    })
}

/// How long the agent may take to prove the key once its port answered.
const PROOF_WAIT: Duration = Duration::from_secs(10);

/// One hybrid-vsock handshake: connect to the Unix socket, ask for `port`, expect `OK <port>`,
/// then have the agent prove this boot's key. A stream that fails the proof is dropped before
/// anything is sent on it.
pub async fn connect_once(socket: &Path, port: u32) -> std::io::Result<UnixStream> {
    let key = read_key(socket)?;
    let mut stream = hybrid_connect(socket, port).await?;
    tokio::time::timeout(PROOF_WAIT, auth::challenge(&mut stream, &key, port))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("guest port {port} did not prove the agent key within {PROOF_WAIT:?}"),
            )
        })?
        .inspect_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                tracing::warn!(port, "refused guest port {port}: {e}");
            }
        })?;
    Ok(stream)
}

/// The hybrid-vsock `CONNECT` handshake alone.
async fn hybrid_connect(socket: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).await?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await?;
    let line = tokio::time::timeout(Duration::from_secs(5), read_line_raw(&mut stream, 64))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake answer"))??
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("nothing listens on guest port {port} yet"),
            )
        })?;
    let line = String::from_utf8_lossy(&line);
    if !line.starts_with("OK ") {
        return Err(std::io::Error::other(format!(
            "unexpected handshake answer {line:?}"
        )));
    }
    Ok(stream)
}

/// Reads one line (without its `\n`, at most `limit` bytes) byte by byte, so that nothing after
/// it is consumed: what follows a handshake belongs to whoever uses the stream next. `None` when
/// the stream ends first.
pub async fn read_line_raw(
    stream: &mut UnixStream,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        if byte[0] == b'\n' || line.len() > limit {
            return Ok(Some(line));
        }
        line.push(byte[0]);
    }
}

/// Retries [`connect_once`] until `deadline` passes.
pub async fn connect_with_deadline(
    socket: &Path,
    port: u32,
    deadline: Duration,
) -> Result<UnixStream, AgentError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        match connect_once(socket, port).await {
            Ok(stream) => return Ok(stream),
            Err(e) if start.elapsed() + delay >= deadline => {
                return Err(AgentError::Unreachable {
                    socket: socket.to_owned(),
                    waited: start.elapsed(),
                    last: e.to_string(),
                });
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// A cheap-to-clone handle on the agent's services. The channel reconnects by itself (through
/// the retrying handshake) when the agent restarts.
#[derive(Clone, Debug)]
pub struct AgentClient {
    channel: Channel,
    socket: PathBuf,
    connect_deadline: Duration,
}

/// How long one readiness ping may take before a fresh connection is tried.
const PING_ATTEMPT: Duration = Duration::from_secs(10);

impl AgentClient {
    /// A lazily connecting client; each (re)connect retries the handshake for `connect_deadline`.
    pub fn new(socket: PathBuf, connect_deadline: Duration) -> Self {
        // No overall timeout: waits, logs and attach last as long as the container does.
        let endpoint = Endpoint::from_static("http://berth-agent").tcp_nodelay(true);
        let dial = socket.clone();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = dial.clone();
            async move {
                let stream = connect_with_deadline(&socket, AGENT_PORT, connect_deadline)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
        AgentClient {
            channel,
            socket,
            connect_deadline,
        }
    }

    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn networks(&self) -> NetworksClient<Channel> {
        NetworksClient::new(self.channel.clone())
    }

    pub fn builds(&self) -> BuildsClient<Channel> {
        BuildsClient::new(self.channel.clone())
    }

    pub fn volumes(&self) -> VolumesClient<Channel> {
        VolumesClient::new(self.channel.clone())
    }

    /// The Docker list rows of the running (and paused) containers; `None` when the agent does
    /// not answer.
    pub async fn running_containers(&self) -> Option<Vec<serde_json::Value>> {
        let list = self
            .containers()
            .list(berth_agent_proto::v1::ListContainersRequest {
                all: false,
                size: false,
            })
            .await
            .ok()?;
        Some(serde_json::from_slice(&list.into_inner().json).unwrap_or_default())
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn debug(&self) -> DebugClient<Channel> {
        DebugClient::new(self.channel.clone())
    }

    /// Pings until the agent answers or `deadline` passes; returns the agent's version. Each
    /// attempt uses a fresh connection and gets [`PING_ATTEMPT`], so one connection stuck in
    /// its handshake is given up rather than waited on for the whole deadline.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<String, AgentError> {
        let start = Instant::now();
        loop {
            let remaining = deadline.saturating_sub(start.elapsed());
            let probe = AgentClient::new(self.socket.clone(), self.connect_deadline.min(remaining));
            let attempt = tokio::time::timeout(
                PING_ATTEMPT.min(remaining).max(Duration::from_millis(100)),
                probe.system().ping(PingRequest {}),
            )
            .await;
            match attempt {
                Ok(Ok(resp)) => return Ok(resp.into_inner().agent_version),
                Ok(Err(e)) if start.elapsed() >= deadline => return Err(e.into()),
                Err(_) if start.elapsed() >= deadline => {
                    return Err(AgentError::Call(tonic::Status::deadline_exceeded(format!(
                        "no ping answer within {deadline:?}"
                    ))));
                }
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => {
                    tracing::debug!("no ping answer in {PING_ATTEMPT:?}; trying a fresh connection")
                }
            }
        }
    }

    pub async fn info(&self) -> Result<InfoResponse, AgentError> {
        Ok(self.system().info(InfoRequest {}).await?.into_inner())
    }

    /// Sets the guest clock from the host's; returns the previous offset in nanoseconds.
    pub async fn sync_time(&self) -> Result<i64, AgentError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let resp = self
            .system()
            .sync_time(SyncTimeRequest {
                realtime_ns: now.as_nanos() as i64,
            })
            .await?;
        Ok(resp.into_inner().previous_offset_ns)
    }

    pub async fn shutdown(&self) -> Result<(), AgentError> {
        self.system().shutdown(ShutdownRequest {}).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    /// A stand-in for vhost-device-vsock's Unix side and the agent behind it: answers `OK`
    /// only from the third attempt, then proves `key` (or, without one, answers garbage).
    fn stand_in(sock: &Path, key: Option<Key>) {
        let listener = tokio::net::UnixListener::bind(sock).unwrap();
        tokio::spawn(async move {
            for attempt in 0.. {
                let (stream, _) = listener.accept().await.unwrap();
                let mut reader = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                assert_eq!(line, "CONNECT 1024\n");
                if attempt >= 2 {
                    let stream = reader.get_mut();
                    stream.write_all(b"OK 1024\n").await.unwrap();
                    match &key {
                        Some(key) => auth::prove(stream, key, 1024).await.unwrap(),
                        None => {
                            let mut nonce = [0u8; auth::NONCE_LEN];
                            stream.read_exact(&mut nonce).await.unwrap();
                            stream.write_all(&nonce).await.unwrap();
                        }
                    }
                    stream.write_all(b"hello").await.unwrap();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }

    #[tokio::test]
    async fn handshake_retries_until_the_guest_listens_and_proves_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.vsock");
        let key = Key::generate().unwrap();
        std::fs::write(key_path(&sock), key.as_bytes()).unwrap();
        stand_in(&sock, Some(key));
        let mut stream = connect_with_deadline(&sock, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }

    /// What squats the agent's port without the key gets nothing but the nonce.
    #[tokio::test]
    async fn a_listener_without_the_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.vsock");
        let key = Key::generate().unwrap();
        std::fs::write(key_path(&sock), key.as_bytes()).unwrap();
        stand_in(&sock, None);
        let err = connect_with_deadline(&sock, 1024, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("agent key"), "{err}");
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("absent.vsock");
        let err = connect_with_deadline(&sock, 1024, Duration::from_millis(300))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("absent.vsock") && text.contains("No such file"),
            "{text}"
        );
    }
}
