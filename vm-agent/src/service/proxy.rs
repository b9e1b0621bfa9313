//! The guest end of the registry proxy: a TCP listener on 127.0.0.1:3128 inside the guest whose
//! every connection becomes a guest-initiated vsock stream to the host's HTTP proxy (host CID 2,
//! port 1025). The agent's registry client uses it as its HTTP(S) proxy, so pulls go out through
//! the host's network. Owns only the byte splicing.

use tokio::net::TcpListener;
use tokio_vsock::{VsockAddr, VsockStream};

/// The host's proxy port on vsock (reached at `<hybrid socket>_1025` on the host).
pub const HOST_PROXY_PORT: u32 = 1025;
pub const LISTEN: &str = "127.0.0.1:3128";
const HOST_CID: u32 = 2;

pub async fn run() -> std::io::Result<()> {
    let listener = TcpListener::bind(LISTEN).await?;
    let mut backoff = berth_agent_proto::accept::AcceptBackoff::new("the registry proxy");
    loop {
        let (mut tcp, _) = backoff.retry(|| listener.accept()).await;
        tokio::spawn(async move {
            match VsockStream::connect(VsockAddr::new(HOST_CID, HOST_PROXY_PORT)).await {
                Ok(mut vsock) => {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut vsock).await;
                }
                Err(e) => tracing::warn!("host proxy unreachable over vsock: {e}"),
            }
        });
    }
}
