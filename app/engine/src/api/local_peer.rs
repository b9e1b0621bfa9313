//! The plain-TCP Docker API (`berth engine --insecure-tcp`) refuses what the VM sends it. Owns
//! the check of who opened each connection; serves nothing itself.
//!
//! The VM reaches the host's loopback through passt (that is what `host.docker.internal`
//! names), so without this check any container could drive the engine through the gateway
//! address (the pattern of CVE-2025-9074). A connection from another machine is served; one
//! from this machine is served only when its socket belongs to a process the engine can see
//! and that process is not passt. passt hides its descriptors from other processes of its
//! user, so what cannot be attributed is refused too.

use std::net::SocketAddr;

use berth_agent_proto::procnet;
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener that drops connections coming from the VM's NIC.
pub struct NotFromVm {
    inner: TcpListener,
}

impl NotFromVm {
    pub fn new(inner: TcpListener) -> Self {
        NotFromVm { inner }
    }
}

impl axum::serve::Listener for NotFromVm {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut backoff = crate::limits::AcceptBackoff::new("the TCP API");
        loop {
            let (stream, peer) = backoff.retry(|| self.inner.accept()).await;
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            match local_owner(local, peer) {
                Owner::Remote => return (stream, peer),
                Owner::Process(_, comm) if !comm.starts_with("passt") => return (stream, peer),
                owner => {
                    tracing::warn!(
                        %peer,
                        ?owner,
                        "refused a TCP API connection: it comes from the VM, or from a process \
                         Berth cannot identify"
                    );
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Who holds the other end of a connection to `local` from `peer`.
#[derive(Debug, PartialEq)]
enum Owner {
    /// Not a socket of this machine.
    Remote,
    /// Process `pid`, named `comm`.
    Process(u32, String),
    /// A socket of this machine whose process cannot be seen.
    Unknown,
}

fn local_owner(local: SocketAddr, peer: SocketAddr) -> Owner {
    match procnet::local_socket_inode(peer, local) {
        Err(_) => Owner::Unknown,
        Ok(None) => Owner::Remote,
        Ok(Some(inode)) => process_holding(inode).unwrap_or(Owner::Unknown),
    }
}

fn process_holding(inode: u64) -> Option<Owner> {
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if procnet::holds_socket(&proc.path(), inode) {
            let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
            return Some(Owner::Process(pid, comm.trim().to_owned()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_client_is_found_and_named() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let owner = local_owner(server.local_addr().unwrap(), peer);
        match owner {
            Owner::Process(pid, _) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            local_owner(addr, "10.9.9.9:1".parse().unwrap()),
            Owner::Remote
        );
    }
}
