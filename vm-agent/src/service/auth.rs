//! The agent's side of [`berth_agent_proto::auth`]: the key init hands over, and the admission
//! of vsock streams. A stream is served only when it comes from the host (CID 2) and the agent
//! has proved the key on it, so nothing the engine sends ever reaches a process that squats an
//! agent port, and the host's registry proxy only ever hears the agent.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_proto::auth::{self, Key};
use futures_util::Stream;
use tokio_vsock::{VMADDR_CID_HOST, VsockAddr, VsockListener, VsockStream};

/// The variable naming the descriptor init passes the key on (a pipe holding the key).
pub const KEY_FD_ENV: &str = "BERTH_KEY_FD";

/// How long a stream's proof may take.
const PROOF_WAIT: Duration = Duration::from_secs(10);

/// Reads the key from the pipe init gave this process, and closes it. `None` when there is
/// none: the agent then proves nothing and the engine talks to it not at all.
pub fn key_from_init() -> Option<Arc<Key>> {
    let fd: i32 = std::env::var(KEY_FD_ENV).ok()?.parse().ok()?;
    // SAFETY: init opened `fd` for this process (see `init::spawn_agent`) and nothing else in
    // the agent uses it; the File owns and closes it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = Vec::with_capacity(auth::KEY_LEN);
    if let Err(e) = pipe.read_to_end(&mut bytes) {
        tracing::error!("reading the agent key from init: {e}");
        return None;
    }
    Key::from_bytes(&bytes).map(Arc::new)
}

/// Admits one accepted stream: from the host, with the key proved on it.
pub async fn admit(
    stream: &mut VsockStream,
    peer: VsockAddr,
    key: Option<&Key>,
    port: u32,
) -> std::io::Result<()> {
    if peer.cid() != VMADDR_CID_HOST {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("refused a stream to port {port} from CID {}", peer.cid()),
        ));
    }
    prove(stream, key, port).await
}

/// Proves the key on a stream (accepted from, or opened to, the host).
pub async fn prove(stream: &mut VsockStream, key: Option<&Key>, port: u32) -> std::io::Result<()> {
    let key = key.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "init gave the agent no key, so it cannot prove itself to the host",
        )
    })?;
    tokio::time::timeout(PROOF_WAIT, auth::prove(stream, key, port))
        .await
        .map_err(|_| std::io::Error::other(format!("no challenge on port {port} in time")))?
}

/// The admitted streams of `listener`, for the gRPC server. Proofs run concurrently, so a
/// slow or silent peer holds up no one else.
pub fn admitted(
    listener: VsockListener,
    key: Option<Arc<Key>>,
    port: u32,
) -> impl Stream<Item = std::io::Result<VsockStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut backoff = berth_agent_proto::accept::AcceptBackoff::new("the agent's port");
        loop {
            let (mut stream, peer) = backoff.retry(|| listener.accept()).await;
            let (tx, key) = (tx.clone(), key.clone());
            tokio::spawn(async move {
                match admit(&mut stream, peer, key.as_deref(), port).await {
                    Ok(()) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
