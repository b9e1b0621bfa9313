//! The guest end of the registry proxy: a TCP listener on 127.0.0.1:3128 inside the guest whose
//! every connection becomes a guest-initiated vsock stream to the host's HTTP proxy (host CID 2,
//! port 1025). The agent's registry client uses it as its HTTP(S) proxy, so pulls go out through
//! the host's network. Owns the byte splicing and who may use it: only sockets of the agent
//! itself (a host-network container or a build step also sees this loopback), and every stream
//! to the host starts with the agent's proof of the key ([`super::auth`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use berth_agent_proto::auth::Key;
use berth_agent_proto::procnet;
use tokio::net::TcpListener;
use tokio_vsock::{VsockAddr, VsockStream};

/// The host's proxy port on vsock (reached at `<hybrid socket>_1025` on the host).
pub const HOST_PROXY_PORT: u32 = 1025;
pub const LISTEN: &str = "127.0.0.1:3128";
const HOST_CID: u32 = 2;

/// Whether the client at `peer` of our socket at `local` is a socket of this process.
fn from_this_process(local: SocketAddr, peer: SocketAddr) -> bool {
    match procnet::local_socket_inode(peer, local) {
        Ok(Some(inode)) => procnet::holds_socket(Path::new("/proc/self"), inode),
        _ => false,
    }
}

pub async fn run(key: Option<Arc<Key>>) -> std::io::Result<()> {
    let listener = TcpListener::bind(LISTEN).await?;
    let mut backoff = berth_agent_proto::accept::AcceptBackoff::new("the registry proxy");
    loop {
        let (mut tcp, peer) = backoff.retry(|| listener.accept()).await;
        let key = key.clone();
        tokio::spawn(async move {
            let local = tcp.local_addr();
            if !local.is_ok_and(|local| from_this_process(local, peer)) {
                tracing::warn!(%peer, "refused a registry proxy connection: not the agent's own");
                return;
            }
            let mut vsock =
                match VsockStream::connect(VsockAddr::new(HOST_CID, HOST_PROXY_PORT)).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!("host proxy unreachable over vsock: {e}");
                        return;
                    }
                };
            if let Err(e) = super::auth::prove(&mut vsock, key.as_deref(), HOST_PROXY_PORT).await {
                tracing::warn!("host proxy: {e}");
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut vsock).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_sockets_are_told_from_another_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let own = std::net::TcpStream::connect(addr).unwrap();
        let (_s, peer) = listener.accept().unwrap();
        assert_eq!(peer, own.local_addr().unwrap());
        assert!(from_this_process(addr, peer));
        // Another process's connection: a child that connects and waits.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import socket,sys,time; s=socket.create_connection(('127.0.0.1',{})); \
                     print(s.getsockname()[1], flush=True); time.sleep(5)",
                    addr.port()
                ),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let (_s2, peer2) = listener.accept().unwrap();
        assert!(!from_this_process(addr, peer2));
        let _ = child.kill();
        let _ = child.wait();
    }
}
